"""A scripted OpenAI-compatible endpoint for tests: the real ``openai`` client, no network, no LLM.

:class:`ScriptedLLM` holds a queue of replies and serves them, in order, through an
``httpx2.MockTransport``; it records every request so a test can assert what was sent (the
``response_format``, the messages, how many calls). A reply is one of

* a ``str``: a 200 chat completion whose message content is that text (:func:`answer`);
* a :class:`Reply`: any status, a JSON or text body, headers, and an optional delay;
* an exception instance (``httpx2.ReadTimeout("...")``, ``httpx2.ConnectError("...")``):
  raised by the transport, as a real connection would;
* a callable taking the ``httpx2.Request`` and returning any of the above.

A request beyond the script fails the test with an ``AssertionError`` naming it.

Typical use::

    llm = ScriptedLLM('{"x": 1}', error(429), answer('{"x": 2}'))
    with llm.client() as client:          # an app LLMClient over this transport
        client.complete_json(messages, Schema, name="x")
    assert llm.count == 2
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import httpx2

from app.formalize.llm import LLMClient
from app.settings import Settings

__all__ = [
    "BASE_URL",
    "MODEL",
    "Reply",
    "ScriptedLLM",
    "answer",
    "cache_files",
    "chat_response",
    "error",
    "stub_settings",
]

# Never resolved: the transport answers before any connection would be made.
BASE_URL = "http://llm.invalid/v1"
MODEL = "test-model"


def chat_response(
    content: str | None,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    *,
    model: str = MODEL,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` JSON body with one choice."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": content},
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


@dataclass
class Reply:
    """One scripted HTTP answer. ``delay`` sleeps (real time) before answering."""

    status: int = 200
    json: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def response(self) -> httpx2.Response:
        if self.text is not None:
            return httpx2.Response(self.status, text=self.text, headers=self.headers)
        return httpx2.Response(self.status, json=self.json, headers=self.headers)


def answer(
    content: str | None,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    *,
    finish_reason: str = "stop",
    delay: float = 0.0,
) -> Reply:
    """A 200 chat completion carrying ``content``."""
    body = chat_response(content, prompt_tokens, completion_tokens, finish_reason=finish_reason)
    return Reply(200, json=body, delay=delay)


def error(
    status: int,
    message: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    text: str | None = None,
    delay: float = 0.0,
) -> Reply:
    """An error answer with an OpenAI-style body (or a raw ``text`` body, as some servers send)."""
    if text is not None:
        return Reply(status, text=text, headers=headers or {}, delay=delay)
    body = {"error": {"message": message or f"scripted {status}", "type": "scripted", "code": None}}
    return Reply(status, json=body, headers=headers or {}, delay=delay)


Item = Union[str, Reply, httpx2.Response, BaseException, Callable[[httpx2.Request], Any]]


def stub_settings(**changes: Any) -> Settings:
    """Settings for a client of the scripted endpoint, independent of the environment.

    Every LLM field is given explicitly, so no ``OPTSCRIBE_*`` or ``OPENAI_*`` variable of the
    machine running the tests leaks in; backoff is tiny.
    """
    values: dict[str, Any] = {
        "llm_base_url": BASE_URL,
        "llm_api_key": "sk-test",
        "llm_model": MODEL,
        "llm_timeout": 10.0,
        "llm_max_retries": 3,
        "llm_backoff_base_s": 0.001,
        "llm_backoff_max_s": 0.01,
        "llm_total_budget_s": 60.0,
        "llm_cache_dir": None,
        "llm_structured_mode": "auto",
        "llm_temperature": 0.0,
        "llm_max_tokens": 1024,
        "repair_rounds": 3,
        "samples": 1,
    }
    values.update(changes)
    return Settings(**values)


class ScriptedLLM:
    """A queue of replies behind an ``httpx2.MockTransport``, recording every request."""

    def __init__(self, *items: Item) -> None:
        self.script: list[Item] = list(items)
        self.requests: list[httpx2.Request] = []
        self.times: list[float] = []
        self._lock = threading.Lock()
        self.transport = httpx2.MockTransport(self._handle)

    def add(self, *items: Item) -> ScriptedLLM:
        self.script.extend(items)
        return self

    def client(self, settings: Settings | None = None, **changes: Any) -> LLMClient:
        """An app ``LLMClient`` whose requests all go to this script (close it, or use ``with``).

        ``changes`` adjust :func:`stub_settings`.
        """
        chosen = settings if settings is not None else stub_settings(**changes)
        return LLMClient(chosen, transport=self.transport)

    # -- what was sent ------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def left(self) -> int:
        """Replies not yet served."""
        return len(self.script)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def body(self, i: int = -1) -> dict[str, Any]:
        return dict(json.loads(self.requests[i].content))

    def messages(self, i: int = -1) -> list[dict[str, Any]]:
        return list(self.body(i)["messages"])

    def response_formats(self) -> list[str | None]:
        """The ``response_format`` type of each request (None when absent)."""
        return [(b.get("response_format") or {}).get("type") for b in self.bodies]

    def timeouts(self) -> list[float | None]:
        """The read timeout each request carried (what the client allowed it)."""
        out: list[float | None] = []
        for r in self.requests:
            t = r.extensions.get("timeout") or {}
            out.append(t.get("read"))
        return out

    # -- serving --------------------------------------------------------------------------------

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        with self._lock:
            self.requests.append(request)
            self.times.append(time.monotonic())
            n = len(self.requests)
            if not self.script:
                raise AssertionError(
                    f"the scripted LLM got request {n} ({request.method} {request.url}) "
                    f"beyond its script: {request.content[:300]!r}"
                )
            item = self.script.pop(0)
        return self._serve(item, request)

    def _serve(self, item: Item, request: httpx2.Request) -> httpx2.Response:
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, httpx2.Response):
            return item
        if isinstance(item, str):
            return answer(item).response()
        if isinstance(item, Reply):
            if item.delay:
                time.sleep(item.delay)
            return item.response()
        return self._serve(item(request), request)


def cache_files(directory: Path) -> list[Path]:
    """The entries of an on-disk LLM cache."""
    return sorted(p for p in directory.glob("*.json") if not p.name.startswith("."))
