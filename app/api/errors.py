"""The one mapper from errors to HTTP answers, and the API's own errors.

Every error answer has one shape::

    {"error": {"code": "check_failed", "message": "...", "issues": [...], "details": {...}}}

``issues`` (Issue dicts: code, message, where, fix, ...) and ``details`` appear only where
they say something. Domain code (``solvers``, ``app.formalize``) raises its own exceptions
and knows nothing of HTTP; the API layer raises :class:`ApiError` subclasses. :func:`to_response`
is the only place that decides a status code, and :func:`install` registers it for every
kind of error the service can meet, including FastAPI's request validation and Starlette's
404/405. :class:`CatchAll` turns anything unforeseen into a 500 with a generic message and
logs the traceback; no answer ever carries one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import (
    AppError,
    FormalizationFailed,
    LLMBadOutput,
    LLMBudgetExceeded,
    LLMNotConfigured,
    LLMUnavailable,
)
from app.jobs.store import (
    IdempotencyConflict,
    IdempotencyInProgress,
    InvalidCursor,
    NotAwaitingInput,
    StoreBusy,
)
from solvers.errors import BackendError, CheckFailed, Issue, ModelError, OptscribeError, SolverFailure

__all__ = [
    "ApiError",
    "BodyTooLarge",
    "CatchAll",
    "InvalidBatch",
    "JobsUnavailable",
    "NotFound",
    "NotReady",
    "RateLimited",
    "TooLargeForSync",
    "Unauthorized",
    "error_body",
    "install",
    "request_issues",
    "spent",
    "to_response",
]

log = logging.getLogger("optscribe.api")

INTERNAL_MESSAGE = "optscribe failed to answer this request; the error is logged on the server."

_PATH_PARAM = re.compile(r"\{[^{}/]+\}")  # a parameter in an OpenAPI path template
_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

# Codes for answers Starlette or FastAPI produce themselves (unknown route, wrong method, ...).
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class ApiError(Exception):
    """An error of the API layer itself (auth, limits); carries its status and code."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        self.details = dict(details or {})


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(
            f"too many requests from this caller: try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
        self.retry_after = seconds


class TooLargeForSync(ApiError):
    """A model or time limit beyond what POST /v1/solve takes; jobs take it."""

    status = 422
    code = "too_large_for_sync"


class NotReady(ApiError):
    """GET /readyz: a required part is down; ``details.checks`` has every probe's answer."""

    status = 503
    code = "not_ready"

    def __init__(self, checks: Mapping[str, Any]) -> None:
        down = [name for name, c in checks.items() if c.get("required") and not c.get("ok")]
        super().__init__(f"not ready: {', '.join(down)} down", details={"checks": dict(checks)})


class JobsUnavailable(ApiError):
    """The server runs without a job store (jobs and batches are off)."""

    status = 503
    code = "jobs_unavailable"


class NotFound(ApiError):
    """A job or batch that does not exist, or that another API key created."""

    status = 404
    code = "not_found"


class InvalidBatch(ApiError):
    """A batch upload with bad lines; ``issues`` name each by its line number."""

    status = 422
    code = "invalid_batch"

    def __init__(self, message: str, issues: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(message)
        self.issues = [dict(i) for i in issues]


class BodyTooLarge(StarletteHTTPException):
    """Raised by the body-size middleware while the body streams in.

    A Starlette ``HTTPException`` on purpose: FastAPI turns any other exception raised while
    it reads the body into a 400, and lets this one through to :func:`to_response`.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")
        self.limit = limit


def error_body(
    code: str,
    message: str,
    issues: Sequence[Mapping[str, Any]] | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The one error shape."""
    err: dict[str, Any] = {"code": code, "message": message}
    if issues:
        err["issues"] = [dict(i) for i in issues]
    if details:
        err["details"] = dict(details)
    return {"error": err}


def _answer(
    status: int,
    code: str,
    message: str,
    *,
    issues: Sequence[Mapping[str, Any]] | None = None,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, issues, details), status_code=status, headers=headers)


def request_issues(errors: Sequence[Any], limit: int = 20) -> list[dict[str, Any]]:
    """FastAPI's validation errors as Issue dicts, as ``solvers.api.validation_issues`` words them."""
    out: list[dict[str, Any]] = []
    for e in list(errors)[:limit]:
        loc = [str(p) for p in e.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            where = ".".join(loc[1:]) if loc[0] == "body" else f"{loc[0]}.{'.'.join(loc[1:])}"
        else:
            where = ".".join(loc)
        kind = e.get("type", "")
        msg = str(e.get("msg", "invalid"))
        fix = ""
        code = "schema"
        if kind == "extra_forbidden":
            msg = f"unknown field {loc[-1]!r}" if loc else "unknown field"
            fix = "remove it (GET /v1/schema/model lists the fields of the model contract)"
        elif kind == "missing":
            fix = "add it"
        elif kind == "json_invalid":
            code = "json"
            reason = (e.get("ctx") or {}).get("error")
            msg = f"malformed JSON: {reason}" if reason else "malformed JSON"
            fix = "check quotes, commas and brackets"
            where = ""
        issue = Issue(code=code, message=msg, where=where, fix=fix)
        out.append(issue.to_dict())
    return out


def _usage_details(usage: Any, attempts: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if usage is not None and hasattr(usage, "to_dict"):
        d["usage"] = usage.to_dict()
    if attempts is not None:
        d["attempts"] = attempts
    return d


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


def spent(exc: BaseException) -> Any:
    """The LLM tokens an error says were spent (a ``Usage``), or None.

    ``FormalizationFailed`` already includes the tokens of an unusable answer that ended it."""
    return getattr(exc, "usage", None)


def to_response(exc: BaseException) -> Response:
    """The HTTP answer for an error: the only place that picks a status code."""
    if isinstance(exc, InvalidBatch):
        return _answer(exc.status, exc.code, exc.message, issues=exc.issues, details=exc.details)
    if isinstance(exc, ApiError):
        return _answer(exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers)
    if isinstance(exc, RequestValidationError):
        errors = exc.errors()
        issues = request_issues(errors)
        if any(e.get("type") == "json_invalid" for e in errors):
            return _answer(422, "invalid_json", "the request body is not valid JSON", issues=issues)
        n = len(errors)
        return _answer(422, "invalid_request", f"the request has {n} problem(s)", issues=issues)
    if isinstance(exc, StarletteHTTPException):
        unreadable = _unreadable_body(exc)
        if unreadable is not None:
            return unreadable
        status = exc.status_code
        code = _HTTP_CODES.get(status, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else _phrase(status)
        if status == 404 and message == _phrase(404):
            message = "no such route: see /docs for the API"
        return _answer(status, code, message, headers=exc.headers)
    # -- the model core
    if isinstance(exc, CheckFailed):
        issues = [i.to_dict() for i in exc.issues]
        return _answer(422, "check_failed", f"the model has {len(issues)} problem(s)", issues=issues)
    if isinstance(exc, ModelError):
        return _answer(422, "invalid_model", str(exc), issues=[exc.issue.to_dict()])
    if isinstance(exc, BackendError):
        return _answer(422, "backend_refused", str(exc))
    if isinstance(exc, SolverFailure):
        log.error("solver failure: %s", exc, exc_info=exc)
        return _answer(500, "solver_failure", "the solver failed on this model; the error is logged")
    if isinstance(exc, OptscribeError):
        return _answer(422, "invalid_model", str(exc))
    # -- the formalization pipeline
    if isinstance(exc, LLMNotConfigured):
        return _answer(503, "llm_not_configured", str(exc), details={"reason": exc.reason})
    if isinstance(exc, LLMBudgetExceeded):
        return _answer(504, "llm_budget_exceeded", str(exc), details=_usage_details(exc.usage, exc.attempts))
    if isinstance(exc, LLMUnavailable):
        return _answer(503, "llm_unavailable", str(exc), details=_usage_details(exc.usage, exc.attempts))
    if isinstance(exc, LLMBadOutput):
        return _answer(502, "llm_bad_output", str(exc), details=_usage_details(exc.usage, exc.attempts))
    if isinstance(exc, FormalizationFailed) and isinstance(exc.__cause__, LLMBadOutput):
        # The pipeline wraps an unusable LLM answer; it is the endpoint's failure, not the text's.
        cause = exc.__cause__
        return _answer(502, "llm_bad_output", str(cause), details=_usage_details(spent(exc), cause.attempts))
    if isinstance(exc, FormalizationFailed):
        details = _usage_details(exc.usage, exc.attempts)
        if exc.findings:
            details["findings"] = exc.findings
        issues = [i.to_dict() for i in exc.issues]
        return _answer(422, "formalization_failed", str(exc), issues=issues, details=details)
    # -- the job store
    if isinstance(exc, IdempotencyConflict):
        return _answer(422, "idempotency_conflict", str(exc), details={"job_id": exc.job_id})
    if isinstance(exc, IdempotencyInProgress):
        return _answer(409, "idempotency_in_progress", str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, StoreBusy):
        return _answer(503, "store_busy", str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, InvalidCursor):
        return _answer(422, "invalid_cursor", str(exc))
    if isinstance(exc, NotAwaitingInput):
        return _answer(409, "not_awaiting_input", str(exc), details={"status": exc.status})
    if isinstance(exc, AppError):
        return _answer(422, "app_error", str(exc))
    log.error("unhandled error", exc_info=exc)
    return _answer(500, "internal", INTERNAL_MESSAGE)


def _unreadable_body(exc: StarletteHTTPException) -> Response | None:
    """The 422 for a body FastAPI or Starlette could not even parse, or None.

    FastAPI turns a body that ``json.loads`` rejects with a ``JSONDecodeError`` into a
    validation error (our 422 ``invalid_json``), but one that is not UTF-8, or nested past
    Python's recursion limit, into a bare 400 "There was an error parsing the body";
    Starlette answers a broken multipart body with a bare 400 too. Each is a request the
    service cannot read, answered like any other: 422 with an issue that says why.
    """
    if exc.status_code != 400:
        return None
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        message = f"malformed JSON: the body is not UTF-8 ({cause.reason} at byte {cause.start})"
        issue = Issue(code="json", message=message, fix="send the body encoded as UTF-8")
        return _answer(422, "invalid_json", "the request body is not valid JSON", issues=[issue.to_dict()])
    if isinstance(cause, RecursionError):
        message = "malformed JSON: arrays or objects nested too deeply to read"
        issue = Issue(code="json", message=message, fix="nest arrays and objects at most a few hundred deep")
        return _answer(422, "invalid_json", "the request body is not valid JSON", issues=[issue.to_dict()])
    # Starlette raises its 400 while handling the parser's exception: the context, not the cause.
    if isinstance(exc.__context__, MultiPartException):
        message = f"malformed multipart/form-data ({str(exc.detail).rstrip('.')})"
        fix = "send the file as a multipart/form-data part, as HTTP clients' file uploads do"
        issue = Issue(code="multipart", message=message, fix=fix)
        msg = "the request body is not valid multipart/form-data"
        return _answer(422, "invalid_request", msg, issues=[issue.to_dict()])
    return None


def _allowed_methods(request: Request) -> str | None:
    """The methods the API documents for the request's path, for ``Allow`` on a 405; None
    for a path it does not document.

    Starlette's 405 names only the methods of the first route that matched the path, so
    ``OPTIONS /v1/jobs`` would say ``Allow: POST`` although ``GET /v1/jobs`` exists too.
    """
    path = request.url.path
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = "[^/]+".join(re.escape(part) for part in _PATH_PARAM.split(template))
        if re.fullmatch(pattern, path):
            methods.update(m.upper() for m in item if m in _HTTP_METHODS)
    if "GET" in methods:
        methods.add("HEAD")  # Starlette answers HEAD wherever GET is routed
    return ", ".join(sorted(methods)) if methods else None


async def _handler(request: Request, exc: Exception) -> Response:
    response = to_response(exc)
    if response.status_code == 405:
        allowed = _allowed_methods(request)
        if allowed is not None:
            response.headers["Allow"] = allowed
    return response


def install(app: FastAPI) -> None:
    """Route every error the service knows through :func:`to_response`."""
    for kind in (ApiError, RequestValidationError, StarletteHTTPException, OptscribeError, AppError):
        app.add_exception_handler(kind, _handler)


class CatchAll:
    """ASGI middleware: an exception nobody handled becomes a logged 500 in the one shape.

    Sits inside Starlette's own ``ServerErrorMiddleware``, which would otherwise answer in
    plain text and re-raise to the server (which logs it a second time).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            response = to_response(exc)  # logs it: nothing registered handled it
            if started:
                # The answer is half sent; all we can do is end the connection.
                raise
            await response(scope, receive, send)
