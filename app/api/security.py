"""Who is calling, and how often: API keys checked against stored hashes, and rate limits.

Keys travel as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. The server keeps
only sha256 digests: :func:`hash_key` makes one (``optscribe`` operators put them in
``OPTSCRIBE_API_KEY_HASHES``). A :class:`KeyVerifier` maps a presented key to a caller id
or to nothing; :class:`HashedKeys` is the one backed by settings, and a store-backed one
(the ``api_keys`` table) can replace it without touching the routes.

:class:`RateLimiter` is a token bucket per caller (API key, or client address when keys are
off), in memory: each process limits on its own, which is what one machine needs.

:class:`BodyLimit` refuses a request body beyond ``max_body_bytes`` before it is read: at
once when ``Content-Length`` says so, and otherwise as soon as the streamed bytes pass it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import BodyTooLarge, to_response

__all__ = [
    "BodyLimit",
    "HashedKeys",
    "KeyVerifier",
    "RateLimiter",
    "caller_id",
    "hash_key",
    "key_from_headers",
]

ANONYMOUS = "anonymous"


def hash_key(key: str) -> str:
    """The stored form of an API key: its sha256 hex digest."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def caller_id(digest: str) -> str:
    """A stable, non-secret name for the holder of a key (logs, job ownership)."""
    return f"key-{digest[:16]}"


class KeyVerifier(Protocol):
    def caller(self, key: str) -> str | None:
        """The caller id for ``key``, or None when the key is not accepted."""
        ...


class HashedKeys:
    """Accepts the keys whose sha256 digest is in a fixed set."""

    def __init__(self, digests: Iterable[str]) -> None:
        self._digests = frozenset(d.lower() for d in digests)

    def caller(self, key: str) -> str | None:
        # A set lookup on the digest: timing tells an attacker at most about digests,
        # which cannot be turned back into keys.
        digest = hash_key(key)
        return caller_id(digest) if digest in self._digests else None


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key sent, from ``Authorization: Bearer`` first, then ``X-API-Key``."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None


class RateLimiter:
    """Token buckets per caller: ``per_minute`` refill, at most ``burst`` at once.

    :meth:`hit` spends one token and answers None, or the seconds until one is free. At most
    ``max_callers`` buckets are kept; the least recently seen are forgotten (a forgotten
    caller starts again with a full bucket, which errs on the side of serving).
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_callers: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_callers = max_callers
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def hit(self, caller: str) -> float | None:
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(caller, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[caller] = (tokens - 1.0, now)
                wait = None
            else:
                self._buckets[caller] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            while len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
        return wait


class BodyLimit:
    """ASGI middleware: 413 for a body larger than ``limit`` bytes, without reading it all."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await to_response(BodyTooLarge(self.limit))(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Raised inside the app's read of the body: the error mapper answers 413.
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
