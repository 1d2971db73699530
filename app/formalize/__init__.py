"""Formalization: plain-language text to a model in the contract, through an LLM.

``llm`` is the client (structured output, retries, budget, cache, token accounting); the
stages, their prompts and the pipeline that orders them build on it.
"""

from __future__ import annotations

from .llm import Budget, LLMAnswer, LLMClient, Usage

__all__ = ["Budget", "LLMAnswer", "LLMClient", "Usage"]
