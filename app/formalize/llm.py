"""The LLM client: one JSON answer, validated against a pydantic model, from any OpenAI-compatible endpoint.

This module owns everything between a list of chat messages and a validated pydantic object:
the ``openai`` client and its configuration, structured output and its fallbacks, retries and
their time budget, JSON extraction, re-asking with the validation errors, token accounting and
the on-disk answer cache. It knows nothing of optimization models; the stages above it pick the
schema and write the prompts.

Structured output degrades in a fixed order, and the client remembers the first mode the
endpoint answers in:

1. ``json_schema``: ``response_format={"type": "json_schema", ...}`` with the model's JSON Schema,
   made strict-compatible where possible (OpenAI, vLLM, recent Ollama and llama.cpp servers);
2. ``json_object``: ``{"type": "json_object", "schema": ...}``, which llama-cpp-python's server
   (0.3.x) understands; it answers ``json_schema`` with HTTP 500;
3. ``plain``: no ``response_format``; the schema travels in the prompt.

In every mode the answer is parsed leniently (code fences, leading prose, ``<think>`` blocks)
and validated; a bad answer is shown back to the model with the validation errors.

Retries are ours, not the ``openai`` client's (it runs with ``max_retries=0``), so each one is
counted and the whole exchange stays inside one time budget (:class:`Budget`).
"""

from __future__ import annotations

import copy
import email.utils
import hashlib
import json
import logging
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, cast

import httpx2
import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError

from app.errors import LLMBadOutput, LLMBudgetExceeded, LLMNotConfigured, LLMUnavailable
from app.settings import Settings, get_settings

__all__ = [
    "Budget",
    "LLMAnswer",
    "LLMClient",
    "Message",
    "Mode",
    "Usage",
    "describe_validation_error",
    "extract_json",
    "strict_json_schema",
]

log = logging.getLogger(__name__)

Mode = Literal["json_schema", "json_object", "plain"]
MODES: tuple[Mode, ...] = ("json_schema", "json_object", "plain")

Message = Mapping[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": "..."}``."""

T = TypeVar("T", bound=BaseModel)

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Local servers ignore the key, but the openai client refuses to start without one.
NO_KEY = "not-needed"
CACHE_FORMAT = 1

# Status codes worth repeating the same request for; everything else in 4xx is final.
_RETRY_STATUS = frozenset({408, 409, 429})
# Status codes with which an endpoint refuses a response_format it does not understand.
_REJECT_STATUS = frozenset({400, 415, 422, 501})


@dataclass(frozen=True)
class Usage:
    """Tokens spent, and how many answers they bought; ``a + b`` and ``sum(...)`` add them up."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    calls: int = 0

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            self.calls + other.calls,
        )

    def __radd__(self, other: object) -> Usage:
        # sum() starts from 0.
        if other == 0:
            return self
        if isinstance(other, Usage):
            return other + self
        return NotImplemented

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "calls": self.calls,
        }


@dataclass(frozen=True)
class LLMAnswer(Generic[T]):
    """One validated answer and what it took.

    ``attempts`` counts HTTP requests sent for it (failed ones included; 0 for a cache hit);
    ``usage.calls`` counts the answers among them that the endpoint billed.
    """

    value: T
    raw: str
    usage: Usage
    mode: Mode
    cached: bool
    attempts: int


class Budget:
    """A wall-clock allowance shared by every LLM call of one formalization."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._deadline = clock() + seconds

    def remaining(self) -> float:
        return self._deadline - self._clock()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0


class _Failure(Exception):
    """A request that got no answer; ``retry`` says whether repeating it may help."""

    def __init__(
        self, text: str, *, retry: bool, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(text)
        self.text = text
        self.retry = retry
        self.status = status
        self.retry_after = retry_after


class LLMClient:
    """Validated JSON answers from the configured endpoint.

    Built from :class:`~app.settings.Settings` (``get_settings()`` by default). Tests inject
    the transport: ``transport=`` (an ``httpx2`` transport such as ``MockTransport``),
    ``http_client=`` (an ``httpx2.Client``, which this client then owns and closes) or
    ``openai_client=`` (an ``openai.OpenAI``, which stays the caller's). ``clock`` and
    ``sleep`` drive budgets and backoff.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        openai_client: openai.OpenAI | None = None,
        http_client: httpx2.Client | None = None,
        transport: httpx2.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if sum(x is not None for x in (openai_client, http_client, transport)) > 1:
            raise ValueError("pass at most one of openai_client, http_client and transport")
        self.settings = settings if settings is not None else get_settings()
        s = self.settings
        if not s.llm_model:
            raise LLMNotConfigured("no model is set (OPTSCRIBE_LLM_MODEL)")
        self.model: str = s.llm_model
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._usage = Usage()
        self._mode: Mode = "json_schema" if s.llm_structured_mode == "auto" else s.llm_structured_mode
        self._owns_client = openai_client is None
        if openai_client is not None:
            # Our retries replace the client's, so that each one is counted and budgeted.
            self._openai = openai_client.with_options(max_retries=0)
            self.base_url = str(openai_client.base_url).rstrip("/")
            return
        self.base_url = (s.llm_base_url or OPENAI_BASE_URL).rstrip("/")
        key = s.llm_api_key.get_secret_value() if s.llm_api_key is not None else None
        if not key:
            if httpx2.URL(self.base_url).host == httpx2.URL(OPENAI_BASE_URL).host:
                raise LLMNotConfigured(
                    f"no API key for {self.base_url} (set OPTSCRIBE_LLM_API_KEY or OPENAI_API_KEY)"
                )
            key = NO_KEY
        if transport is not None:
            http_client = openai.DefaultHttpxClient(transport=transport)
        self._openai = openai.OpenAI(
            api_key=key,
            base_url=self.base_url,
            timeout=s.llm_timeout,
            max_retries=0,
            http_client=http_client,
        )

    # -- lifecycle and counters ---------------------------------------------------------------

    def close(self) -> None:
        if self._owns_client:
            self._openai.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def usage(self) -> Usage:
        """Everything this client has spent so far."""
        return self._usage

    @property
    def mode(self) -> Mode:
        """The structured-output mode the next call starts in (the last one that worked)."""
        return self._mode

    def budget(self, seconds: float | None = None) -> Budget:
        """A fresh time budget (``llm_total_budget_s`` by default) to share across calls."""
        return Budget(self.settings.llm_total_budget_s if seconds is None else seconds, self._clock)

    # -- the one public call ------------------------------------------------------------------

    def complete_json(
        self,
        messages: Sequence[Message],
        schema: type[T],
        *,
        name: str,
        temperature: float | None = None,
        budget: Budget | None = None,
        sample: int = 0,
    ) -> LLMAnswer[T]:
        """Ask until the answer validates as ``schema``, within bounded retries and ``budget``.

        ``name`` names the answer (the json_schema name, logs, errors). ``temperature``
        overrides the setting for this call. ``budget`` is shared with the other calls of the
        same formalization (a fresh ``llm_total_budget_s`` one when omitted). ``sample``
        tells self-consistency draws apart in the cache.

        Raises :class:`LLMUnavailable` (or :class:`LLMBudgetExceeded`) when no answer came,
        :class:`LLMBadOutput` when no answer was usable, and :class:`LLMNotConfigured` when
        the endpoint rejects the key or does not know the model.
        """
        if not messages:
            raise ValueError("complete_json needs at least one message")
        s = self.settings
        budget = budget if budget is not None else self.budget()
        temp = s.llm_temperature if temperature is None else temperature
        conversation = [dict(m) for m in messages]
        plain_schema = schema.model_json_schema()
        strict_schema, strict = strict_json_schema(schema)

        key = self._cache_key(name, conversation, plain_schema, temp, sample)
        hit = self._cache_get(key, schema)
        if hit is not None:
            return hit

        auto = s.llm_structured_mode == "auto"
        mode = self._mode
        probing = False  # json_schema got a 5xx; this json_object request tells whether it was the mode
        probed = False
        usage = Usage()
        attempts = failures = answers = 0
        last_error = ""
        last_raw: str | None = None
        while True:
            remaining = budget.remaining()
            if remaining <= 0:
                raise LLMBudgetExceeded(
                    self.base_url,
                    last_error,
                    budget_s=budget.seconds,
                    attempts=attempts,
                    usage=usage,
                    last_raw=last_raw,
                )
            attempts += 1
            try:
                completion = self._send(
                    conversation,
                    mode=mode,
                    name=name,
                    plain_schema=plain_schema,
                    strict_schema=strict_schema,
                    strict=strict,
                    temperature=temp,
                    timeout=min(s.llm_timeout, remaining),
                )
                raw, answer_usage, finish = _read_completion(completion)
            except _Failure as f:
                last_error = f.text
                log.info("LLM %s: attempt %d in %s mode failed: %s", name, attempts, mode, f.text)
                if f.status in (401, 403):
                    raise LLMNotConfigured(
                        f"the endpoint {self.base_url} rejected the API key ({f.text})"
                    ) from None
                if f.status == 404:
                    raise LLMNotConfigured(
                        f"the endpoint {self.base_url} does not know model {self.model!r} or the "
                        f"path /chat/completions ({f.text}); check OPTSCRIBE_LLM_MODEL, and that "
                        "OPTSCRIBE_LLM_BASE_URL ends in /v1"
                    ) from None
                if auto and mode != "plain" and f.status in _REJECT_STATUS:
                    mode = MODES[MODES.index(mode) + 1]
                    probing = False
                    log.info("LLM %s: endpoint refused that response_format; trying %s", name, mode)
                    continue
                if auto and mode == "json_schema" and f.status is not None and f.status >= 500 and not probed:
                    # llama-cpp-python answers json_schema with a 500: ask once in json_object
                    # straight away, and keep that mode only if it then answers.
                    mode, probing, probed = "json_object", True, True
                    continue
                if not f.retry:
                    where = f" in {mode} mode" if mode != "plain" else ""
                    hint = (
                        "; OPTSCRIBE_LLM_STRUCTURED_MODE=auto lets optscribe fall back to a mode it accepts"
                        if not auto and mode != "plain"
                        else ""
                    )
                    raise LLMUnavailable(
                        self.base_url,
                        f.text + hint,
                        attempts=attempts,
                        usage=usage,
                        status_code=f.status,
                        detail=f"refused the request{where}",
                        advice="The request itself was refused; the error says why.",
                    ) from None
                if probing:
                    mode, probing = "json_schema", False
                failures += 1
                if failures > s.llm_max_retries:
                    raise LLMUnavailable(
                        self.base_url, f.text, attempts=attempts, usage=usage, status_code=f.status
                    ) from None
                delay = self._backoff(failures, f.retry_after)
                if delay >= budget.remaining():
                    raise LLMBudgetExceeded(
                        self.base_url,
                        f.text,
                        budget_s=budget.seconds,
                        attempts=attempts,
                        usage=usage,
                        last_raw=last_raw,
                    ) from None
                self._sleep(delay)
                continue

            usage += answer_usage
            answers += 1
            probing = False
            with self._lock:
                self._usage += answer_usage
                if auto and self._mode != mode:
                    log.info("LLM endpoint %s: structured output mode is now %s", self.base_url, mode)
                    self._mode = mode
            last_raw = raw
            value, errors = _parse(raw, schema, finish)
            if value is not None:
                answer = LLMAnswer(
                    value=value, raw=raw, usage=usage, mode=mode, cached=False, attempts=attempts
                )
                self._cache_put(key, name, answer)
                return answer
            last_error = "unusable answer: " + "; ".join(errors)
            log.info("LLM %s: answer %d unusable: %s", name, answers, "; ".join(errors))
            if answers > s.llm_max_retries:
                raise LLMBadOutput(name, attempts=attempts, usage=usage, last_raw=raw, errors=errors)
            conversation += [
                {"role": "assistant", "content": raw},
                {"role": "user", "content": _reask(errors)},
            ]

    # -- one request ----------------------------------------------------------------------------

    def _send(
        self,
        conversation: list[dict[str, str]],
        *,
        mode: Mode,
        name: str,
        plain_schema: dict[str, Any],
        strict_schema: dict[str, Any],
        strict: bool,
        temperature: float | None,
        timeout: float,
    ) -> object:
        s = self.settings
        body: dict[str, Any] = {}
        messages = conversation
        if mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": _schema_name(name),
                    "schema": strict_schema if strict else plain_schema,
                    "strict": strict,
                },
            }
        else:
            messages = _with_schema_instruction(conversation, plain_schema)
            if mode == "json_object":
                body["response_format"] = {"type": "json_object", "schema": plain_schema}
        if temperature is not None:
            body["temperature"] = temperature
        if s.llm_max_tokens is not None:
            body["max_tokens"] = s.llm_max_tokens
        try:
            return self._openai.chat.completions.create(
                model=self.model,
                messages=cast(Any, messages),
                timeout=timeout,
                **body,
            )
        except openai.APITimeoutError:
            raise _Failure(f"timed out after {timeout:.3g} s", retry=True) from None
        except openai.APIConnectionError as e:
            cause = e.__cause__
            raise _Failure(f"connection failed: {cause or e}", retry=True) from None
        except openai.APIStatusError as e:
            status = e.status_code
            raise _Failure(
                f"HTTP {status}: {_error_text(e)}",
                retry=status in _RETRY_STATUS or status >= 500,
                status=status,
                retry_after=_retry_after(e.response.headers),
            ) from None

    def _backoff(self, failures: int, retry_after: float | None) -> float:
        s = self.settings
        if retry_after is not None and retry_after >= 0:
            return retry_after  # the server knows best; the budget caps it
        delay = min(s.llm_backoff_base_s * 2.0 ** (failures - 1), s.llm_backoff_max_s)
        return delay * (1 - 0.25 * random.random())

    # -- cache ----------------------------------------------------------------------------------

    def _cache_key(
        self,
        name: str,
        conversation: list[dict[str, str]],
        schema: dict[str, Any],
        temperature: float | None,
        sample: int,
    ) -> str:
        material = {
            "format": CACHE_FORMAT,
            "base_url": self.base_url,
            "model": self.model,
            "name": name,
            "messages": conversation,
            "schema": schema,
            "temperature": temperature,
            "max_tokens": self.settings.llm_max_tokens,
            "sample": sample,
        }
        text = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        d = self.settings.llm_cache_dir
        return None if d is None else d / f"{key}.json"

    def _cache_get(self, key: str, schema: type[T]) -> LLMAnswer[T] | None:
        path = self._cache_path(key)
        if path is None or not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            value = schema.model_validate(entry["value"])
            mode = entry["mode"]
            if mode not in MODES:
                return None
            raw = str(entry["raw"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            # A stale or damaged entry is a miss; the fresh answer overwrites it.
            log.warning("ignoring LLM cache entry %s: %s", path, e)
            return None
        return LLMAnswer(value=value, raw=raw, usage=Usage(), mode=mode, cached=True, attempts=0)

    def _cache_put(self, key: str, name: str, answer: LLMAnswer[T]) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        entry = {
            "format": CACHE_FORMAT,
            "name": name,
            "model": self.model,
            "base_url": self.base_url,
            "mode": answer.mode,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "usage": answer.usage.to_dict(),
            "raw": answer.raw,
            "value": answer.value.model_dump(mode="json"),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so that a reader never sees half an entry.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f, ensure_ascii=False, indent=1)
            os.replace(tmp, path)
        except OSError as e:
            log.warning("could not write LLM cache entry %s: %s", path, e)


# -- helpers (pure) ---------------------------------------------------------------------------


def _read_completion(completion: object) -> tuple[str, Usage, str | None]:
    """The answer's text, its usage and finish reason; an answer without a choice is a failure."""
    choices = getattr(completion, "choices", None) if isinstance(completion, ChatCompletion) else None
    if not choices:
        excerpt = str(completion)[:200]
        raise _Failure(f"the endpoint answered without a completion: {excerpt!r}", retry=True)
    choice = choices[0]
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    if content is None:
        content = getattr(message, "refusal", None) or ""
    u = getattr(completion, "usage", None)
    prompt = int(getattr(u, "prompt_tokens", 0) or 0)
    completion_tokens = int(getattr(u, "completion_tokens", 0) or 0)
    total = int(getattr(u, "total_tokens", 0) or 0) or prompt + completion_tokens
    finish = getattr(choice, "finish_reason", None)
    return (
        str(content),
        Usage(prompt, completion_tokens, total, 1),
        finish if isinstance(finish, str) else None,
    )


def _parse(raw: str, schema: type[T], finish: str | None) -> tuple[T | None, list[str]]:
    try:
        data = extract_json(raw)
    except ValueError as e:
        errors = [str(e)]
    else:
        try:
            return schema.model_validate(data), []
        except ValidationError as e:
            errors = describe_validation_error(e)
    if finish == "length":
        errors.append(
            "the answer was cut off at the token limit: answer more briefly (no comments, no repetition)"
        )
    return None, errors


_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\r?\n(.*?)```", re.DOTALL)


def extract_json(text: str) -> object:
    """The JSON object in an answer, tolerating code fences, prose around it and ``<think>`` blocks.

    Raises ``ValueError`` with a message meant for the model (it is sent back in a re-ask).
    """
    text = _THINK.sub("", text).strip()
    if not text:
        raise ValueError("the answer was empty: answer with a JSON object")
    try:
        return cast(object, json.loads(text))
    except json.JSONDecodeError as e:
        first = e
    for block in _FENCE.findall(text):
        try:
            return cast(object, json.loads(block))
        except json.JSONDecodeError:
            pass
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    if "{" not in text:
        raise ValueError("the answer contains no JSON object: answer with a JSON object only")
    raise ValueError(
        f"the answer is not valid JSON ({first.msg} at line {first.lineno}, column {first.colno}): "
        "answer with one complete JSON object, with double-quoted keys and no comments"
    )


def describe_validation_error(error: ValidationError, limit: int = 20) -> list[str]:
    """One line per problem: where in the JSON, what is wrong, and what was given."""
    out: list[str] = []
    for e in error.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in e["loc"]) or "the top level"
        line = f"at {where}: {e['msg']}"
        if e["type"] not in ("missing", "extra_forbidden") and "input" in e:
            given = json.dumps(e["input"], ensure_ascii=False, default=str)
            line += f" (got {given[:80] + '...' if len(given) > 80 else given})"
        out.append(line)
    if error.error_count() > limit:
        out.append(f"... and {error.error_count() - limit} more")
    return out


def _reask(errors: Sequence[str]) -> str:
    listed = "\n".join(f"- {e}" for e in errors)
    return (
        "Your previous answer could not be used:\n"
        f"{listed}\n"
        "Answer again with the complete, corrected JSON object only."
    )


def _with_schema_instruction(
    conversation: list[dict[str, str]], schema: dict[str, Any]
) -> list[dict[str, str]]:
    """The conversation with the schema in its system message (chat templates of local models
    often allow only one system message, and only first)."""
    note = (
        "Answer with one JSON object and nothing else: no prose, no code fences. "
        "It must conform to this JSON Schema:\n" + json.dumps(schema, ensure_ascii=False)
    )
    out = [dict(m) for m in conversation]
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{out[0].get('content', '')}\n\n{note}"
    else:
        out.insert(0, {"role": "system", "content": note})
    return out


def _schema_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "answer"


def _error_text(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
        if message:
            return str(message)[:500]
    if isinstance(body, str) and body:
        return body[:500]
    return e.message[:500]


def _retry_after(headers: httpx2.Headers) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(when.tzinfo or UTC)).total_seconds())


# -- JSON Schema for structured output --------------------------------------------------------

# Value constraints that OpenAI's strict mode rejects; pydantic checks them on our side anyway.
_DROP_FOR_STRICT = frozenset({"minLength", "maxLength", "uniqueItems", "minContains", "maxContains"})
# Shapes strict mode cannot express at all.
_NOT_STRICT = frozenset(
    {
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "unevaluatedProperties",
        "unevaluatedItems",
        "prefixItems",
        "contains",
        "if",
        "then",
        "else",
        "not",
        "dependentRequired",
        "dependentSchemas",
    }
)


def strict_json_schema(model: type[BaseModel]) -> tuple[dict[str, Any], bool]:
    """The model's JSON Schema in the shape strict structured output wants, and whether it fits.

    Strict mode needs closed objects (``additionalProperties: false``) whose properties are all
    required; optional fields stay optional in effect since they are nullable or carry
    defaults that pydantic fills. Free-form maps (``dict[str, X]``), ``Any`` and tuples cannot
    be strict: then the plain schema comes back, for the caller to send with ``strict: false``.
    """
    plain = model.model_json_schema()
    root = copy.deepcopy(plain)
    ok = True
    defs = root.get("$defs")
    if isinstance(defs, dict):
        for sub in defs.values():
            ok = isinstance(sub, dict) and _strictify(sub, root, frozenset()) and ok
    ok = _strictify(root, root, frozenset()) and ok
    return (root, True) if ok else (plain, False)


def _strictify(node: dict[str, Any], root: dict[str, Any], inlining: frozenset[str]) -> bool:
    """Rewrite ``node`` in place for strict mode; False where it cannot be made strict."""
    ok = True
    if not node:
        return False  # Any: nothing to constrain
    if any(k in node for k in _NOT_STRICT):
        ok = False
    for k in _DROP_FOR_STRICT & node.keys():
        del node[k]
    if "default" in node and node["default"] is None:
        del node["default"]
    node.pop("discriminator", None)
    if "oneOf" in node:
        # pydantic writes discriminated unions as oneOf; their branches exclude each other.
        node["anyOf"] = node.pop("oneOf")
    ref = node.get("$ref")
    if isinstance(ref, str):
        if len(node) == 1:
            return ok  # the definition itself is made strict once, under $defs
        # Strict mode takes no keywords beside a $ref ("description" from a Field): inline it.
        target = _resolve(root, ref)
        if target is None or ref in inlining:
            return False
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node.clear()
        node.update(copy.deepcopy(target))
        node.update(siblings)
        return _strictify(node, root, inlining | {ref}) and ok
    if "allOf" in node:
        parts = node.pop("allOf")
        if isinstance(parts, list) and len(parts) == 1 and isinstance(parts[0], dict):
            merged = {**parts[0], **node}
            node.clear()
            node.update(merged)
            return _strictify(node, root, inlining) and ok
        return False
    if node.get("type") == "object" or "properties" in node:
        props = node.get("properties")
        extra = node.get("additionalProperties", False)
        if not isinstance(props, dict) or not props or extra is not False:
            return False
        node["additionalProperties"] = False
        node["required"] = list(props)
        for sub in props.values():
            ok = isinstance(sub, dict) and _strictify(sub, root, inlining) and ok
    if node.get("type") == "array":
        items = node.get("items")
        ok = isinstance(items, dict) and _strictify(items, root, inlining) and ok
    branches = node.get("anyOf")
    if isinstance(branches, list):
        for b in branches:
            ok = isinstance(b, dict) and _strictify(b, root, inlining) and ok
    return ok


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any] | None:
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None
