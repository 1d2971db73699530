"""The exceptions of the app layer, split by who must act, each carrying its evidence.

::

    AppError
    ├── LLMError                  the language model could not give a usable answer
    │   ├── LLMNotConfigured      the operator must configure the endpoint (the message says how)
    │   ├── LLMUnavailable        the endpoint is down, times out or refuses, after bounded retries
    │   │   └── LLMBudgetExceeded the time budget of one formalization ran out first
    │   └── LLMBadOutput          the endpoint answered, but never with JSON that fits the schema
    └── FormalizationFailed       the LLM answered, but its model never passed the checks

The model core raises its own tree (``solvers.errors``); infeasible, unbounded and time-limit
outcomes are results there, never exceptions. Domain code raises these classes, never HTTP
errors: one mapper in the API turns them into HTTP answers. ``LLMBadOutput`` and
``FormalizationFailed`` carry the attempts made, the tokens spent and the last raw answer, so
a caller can show what the model said and what it cost (as instructor's
``InstructorRetryException`` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.formalize.llm import Usage
    from solvers.errors import Issue

__all__ = [
    "AppError",
    "FormalizationFailed",
    "LLMBadOutput",
    "LLMBudgetExceeded",
    "LLMError",
    "LLMNotConfigured",
    "LLMUnavailable",
]

CONFIGURE_LLM = """\
optscribe talks to any OpenAI-compatible endpoint, configured by environment variables:
  OPTSCRIBE_LLM_MODEL     the model name (required)
  OPTSCRIBE_LLM_BASE_URL  the endpoint (or OPENAI_BASE_URL; default https://api.openai.com/v1)
  OPTSCRIBE_LLM_API_KEY   the API key (or OPENAI_API_KEY; local servers need none)
  OPTSCRIBE_LLM_TIMEOUT   seconds per call (default 120)
For example:
  OpenAI:     OPENAI_API_KEY=sk-...  OPTSCRIBE_LLM_MODEL=gpt-4o-mini
  Ollama:     OPTSCRIBE_LLM_BASE_URL=http://localhost:11434/v1  OPTSCRIBE_LLM_MODEL=qwen2.5:14b
  llama.cpp:  OPTSCRIBE_LLM_BASE_URL=http://localhost:8080/v1  OPTSCRIBE_LLM_MODEL=local
              (llama-server -m model.gguf --port 8080)
  vLLM:       OPTSCRIBE_LLM_BASE_URL=http://localhost:8000/v1  OPTSCRIBE_LLM_MODEL=<served model name>"""


class AppError(Exception):
    """Base of every error the app layer raises on purpose."""


class LLMError(AppError):
    """The language model could not give a usable answer."""


class LLMNotConfigured(LLMError):
    """No usable endpoint configuration: no model, no key for OpenAI, or a key or model rejected."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.advice = CONFIGURE_LLM
        super().__init__(f"The LLM is not configured: {reason}.\n{CONFIGURE_LLM}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _usage_text(usage: Usage | None) -> str:
    if usage is None or not usage.calls:
        return ""
    return f" ({_plural(usage.calls, 'answer')}, {_plural(usage.total_tokens, 'token')})"


class LLMUnavailable(LLMError):
    """The endpoint gave no answer: down, timing out, overloaded or refusing, after bounded retries."""

    def __init__(
        self,
        url: str,
        last_error: str,
        *,
        attempts: int,
        usage: Usage | None = None,
        status_code: int | None = None,
        detail: str = "",
        advice: str = "Check that the server is running and reachable from here, or raise "
        "OPTSCRIBE_LLM_TIMEOUT / OPTSCRIBE_LLM_MAX_RETRIES.",
    ) -> None:
        self.url = url
        self.last_error = last_error
        self.attempts = attempts
        self.usage = usage
        self.status_code = status_code
        what = detail or f"gave no answer after {_plural(attempts, 'attempt')}"
        super().__init__(
            f"The LLM endpoint {url} {what}{_usage_text(usage)}; last error: {last_error}. {advice}"
        )


class LLMBudgetExceeded(LLMUnavailable):
    """The time budget for one formalization (``OPTSCRIBE_LLM_TOTAL_BUDGET_S``) ran out."""

    def __init__(
        self,
        url: str,
        last_error: str,
        *,
        budget_s: float,
        attempts: int,
        usage: Usage | None = None,
        last_raw: str | None = None,
    ) -> None:
        self.budget_s = budget_s
        self.last_raw = last_raw
        super().__init__(
            url,
            last_error or "none",
            attempts=attempts,
            usage=usage,
            detail=f"used up the time budget of {budget_s:g} s in {_plural(attempts, 'attempt')}",
            advice="Raise OPTSCRIBE_LLM_TOTAL_BUDGET_S, or use a faster model or endpoint.",
        )


class LLMBadOutput(LLMError):
    """Every answer was unusable: not JSON, or JSON that does not fit the schema."""

    def __init__(
        self,
        name: str,
        *,
        attempts: int,
        usage: Usage,
        last_raw: str,
        errors: Sequence[str],
    ) -> None:
        self.name = name
        self.attempts = attempts
        self.usage = usage
        self.last_raw = last_raw
        self.errors = list(errors)
        shown = "; ".join(self.errors[:5]) + (" ..." if len(self.errors) > 5 else "")
        super().__init__(
            f"The LLM gave no usable {name!r} answer in {_plural(usage.calls, 'answer')} "
            f"({_plural(attempts, 'attempt')}, {_plural(usage.total_tokens, 'token')}); "
            f"the last one: {shown}. "
            "A stronger model, or OPTSCRIBE_LLM_STRUCTURED_MODE=json_schema on an endpoint "
            "that supports it, usually helps."
        )


class FormalizationFailed(AppError):
    """The LLM answered, but its model still failed the checks after the last repair round."""

    def __init__(
        self,
        message: str | None = None,
        *,
        attempts: int,
        usage: Usage,
        last_raw: str | None,
        issues: Sequence[Issue],
        findings: Sequence[str] = (),
        partial: Any = None,
    ) -> None:
        self.attempts = attempts
        self.usage = usage
        self.last_raw = last_raw
        self.issues = list(issues)
        self.findings = list(findings)
        # The pipeline's last Formalization (model, result, attempts), for callers that show it.
        self.partial = partial
        if message is None:
            problems = [str(i) for i in self.issues] or self.findings
            shown = "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
            message = (
                f"No formalization passed the checks after {_plural(attempts, 'attempt')}"
                f"{_usage_text(usage)}; the last one still has: {shown or 'no usable model'}. "
                "Rephrase the problem, or answer the clarifying questions."
            )
        super().__init__(message)
