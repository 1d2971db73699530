"""optscribe's prompt templates (Jinja2, one per formalization stage) and worked examples.

The files here are data: ``app.formalize.prompts`` finds this folder through
``importlib.resources`` and renders the templates; ``examples/*.json`` are the few-shot
examples, each validated against the contract by ``tests/test_prompts.py``.
"""
