"""Jobs and batches: the asynchronous request-reply routes over the job store.

``POST /v1/jobs`` persists the job (``JobStore.create_job`` commits before the answer) and
answers ``202 Accepted`` with ``Location`` (the job's status resource) and ``Retry-After``.
An ``Idempotency-Key`` header makes the submission safe to retry (the IETF draft): the same
key with the same body answers the same job (``Idempotent-Replayed: true``), another body
422, a first request still being accepted 409. Jobs run on whatever workers the server has
(the embedded supervisor, or Celery); these routes only read and write the store.

A job or batch is visible only to the API key that created it: any other caller gets the
same 404 as for one that does not exist.

``GET /v1/jobs/{id}/events`` streams the job's events (Server-Sent Events, ``id`` = the
event's sequence number, ``event`` = ``status`` | ``stage`` | ``log``, ``data`` = JSON) from
the store as they are written, resuming after ``Last-Event-ID``. The stream ends when the
job is terminal, or waits for answers (``needs_input``: reconnect with ``Last-Event-ID``
after answering).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.jobs.runner import TESTING_ENV
from app.jobs.store import BatchLine, BatchStatus, Job, JobKind, JobStore
from app.settings import Settings
from solvers.api import load_model
from solvers.errors import Issue
from solvers.model import Table

from .deps import CallerDep, JobStoreDep, Services, ServicesDep, SettingsDep, rate_limit
from .errors import ApiError, InvalidBatch, NotFound, request_issues
from .schemas import ErrorBody

__all__ = ["batches_router", "jobs_router", "job_view", "submit", "submit_answers", "submit_job"]

RETRY_AFTER = "1"
_SSE_POLL = 0.2  # seconds between looks at the store while a job is quiet
_SSE_KEEPALIVE = 15.0  # a comment line this often keeps proxies from closing the stream

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "API key missing or not valid (when keys are required)"},
    404: {"model": ErrorBody, "description": "no such job or batch for this API key"},
    413: {"model": ErrorBody, "description": "the request body is larger than the server accepts"},
    422: {"model": ErrorBody, "description": "the request is wrong; `issues` say where"},
    429: {"model": ErrorBody, "description": "rate limit; `Retry-After` says when to try again"},
    503: {"model": ErrorBody, "description": "no job store, or the store is busy (`Retry-After`)"},
}

jobs_router = APIRouter(
    prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(rate_limit)], responses=_ERRORS
)
batches_router = APIRouter(
    prefix="/v1/batches", tags=["batches"], dependencies=[Depends(rate_limit)], responses=_ERRORS
)

JobId = Annotated[str, Path(min_length=1, max_length=64, description="the job's id")]
BatchId = Annotated[str, Path(min_length=1, max_length=64, description="the batch's id")]


# ----------------------------------------------------------------------------- requests


class JobOptionsIn(BaseModel):
    """How to solve: all optional."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    time_limit: float | None = Field(default=None, gt=0, description="solver seconds")
    backend: Literal["highs", "cpsat", "pyomo", "auto"] | None = Field(
        default=None, description="unset: chosen from the model's features"
    )
    mip_gap: float | None = Field(default=None, ge=0, le=1, description="relative optimality gap")
    threads: int | None = Field(default=None, ge=1, le=64)
    explain: bool | None = Field(default=None, description="conflicts and relaxations for infeasible models")
    log_lines: int | None = Field(default=None, ge=0, le=10_000, description="solver log lines kept")
    testing: SkipJsonSchema[dict[str, Any] | None] = Field(default=None, alias="_testing")

    @field_validator("testing")
    @classmethod
    def _testing_only(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and os.environ.get(TESTING_ENV) != "1":
            raise ValueError("unknown option")
        return value

    def for_store(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, by_alias=True)


class JobIn(BaseModel):
    """A model to solve, or a problem in words to formalize and then solve (exactly one)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model": {"schema": "optscribe.model/v1", "...": "..."}, "options": {"time_limit": 10}},
                {"text": "A shop makes chairs ($30 profit) and tables ($50). ...", "tables": {}},
            ]
        },
    )

    model: dict[str, Any] | None = Field(default=None, description="a model (optscribe.model/v1 contract)")
    text: str | None = Field(default=None, min_length=1, description="a problem in plain language")
    source_text: str | None = Field(
        default=None,
        description="with a model: the problem in words the model was written from, kept with the job "
        "(the web form marks the model's sentences in it); it is not formalized",
    )
    tables: dict[str, Table] = Field(default_factory=dict, description="data tables by name (with text)")
    answers: dict[str, str] = Field(default_factory=dict, description="answers to questions, by question")
    mode: Literal["single", "staged"] | None = Field(default=None, description="formalization mode")
    options: JobOptionsIn = Field(default_factory=JobOptionsIn)

    @model_validator(mode="after")
    def _exactly_one(self) -> JobIn:
        if self.source_text is not None and self.model is None:
            raise ValueError("'source_text' goes with 'model'; to formalize words, send them as 'text'")
        if (self.model is None) == (self.text is None):
            raise ValueError("give exactly one of 'model' or 'text'")
        if self.model is not None and (self.tables or self.answers or self.mode):
            raise ValueError("'tables', 'answers' and 'mode' go with 'text', not with 'model'")
        return self

    def kind(self) -> JobKind:
        return "solve" if self.model is not None else "formalize"

    def for_store(self) -> dict[str, Any]:
        """The request as the job store keeps it (and hashes it for idempotency)."""
        if self.model is not None:
            out: dict[str, Any] = {"model": self.model, "options": self.options.for_store()}
            if self.source_text is not None:
                out["source_text"] = self.source_text
            return out
        body: dict[str, Any] = {
            "text": self.text,
            "tables": {name: t.model_dump(mode="json", exclude_none=True) for name, t in self.tables.items()},
            "options": self.options.for_store(),
        }
        if self.answers:
            body["answers"] = dict(self.answers)
        if self.mode is not None:
            body["mode"] = self.mode
        return body


class BatchLineIn(JobIn):
    custom_id: str = Field(min_length=1, max_length=255, description="yours, to match results to lines")


class AnswersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answers: dict[str, str] = Field(min_length=1, description="an answer to each question, by question")


# ----------------------------------------------------------------------------- views


def _ts(value: Any) -> Any:
    return value.isoformat() if value is not None else None


def job_view(job: Job) -> dict[str, Any]:
    """A job as the API shows it."""
    out: dict[str, Any] = {
        "id": job.id,
        "object": "job",
        "kind": job.kind,
        "status": job.status,
        "stage": job.stage,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "cancel_requested": job.cancel_requested,
        "created_at": _ts(job.created_at),
        "updated_at": _ts(job.updated_at),
        "finished_at": _ts(job.finished_at),
        "timestamps": {status: _ts(ts) for status, ts in job.timestamps.items()},
        "result": job.result,
        "error": job.error,
        "links": {"self": f"/v1/jobs/{job.id}", "events": f"/v1/jobs/{job.id}/events"},
    }
    if job.status == "needs_input" or job.questions:
        out["questions"] = job.questions
    if job.batch_id is not None:
        out["batch_id"] = job.batch_id
        out["custom_id"] = job.custom_id
    return out


def batch_view(batch: BatchStatus) -> dict[str, Any]:
    return {
        "id": batch.id,
        "object": "batch",
        "status": batch.status,
        "input_file_name": batch.input_file_name,
        "request_counts": {k: batch.counts[k] for k in ("total", "completed", "failed", "cancelled")},
        "counts": batch.counts,
        "created_at": _ts(batch.created_at),
        "in_progress_at": _ts(batch.in_progress_at),
        "completed_at": _ts(batch.completed_at),
        "timestamps": {name: _ts(ts) for name, ts in batch.timestamps.items()},
        "links": {"self": f"/v1/batches/{batch.id}", "results": f"/v1/batches/{batch.id}/results"},
    }


def _accepted(body: dict[str, Any], location: str, *, replayed: bool = False) -> JSONResponse:
    headers = {"Location": location, "Retry-After": RETRY_AFTER}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=202, headers=headers)


class TooLargeForJob(ApiError):
    """A job beyond the server's job limits (variables, text length, time limit)."""

    status = 422
    code = "too_large"


def validate_job(body: JobIn, settings: Settings) -> None:
    """What a job must pass before it is stored: a valid model within the job limits, a text
    within its length limit, a time limit the server allows. ``ModelError`` (422
    ``invalid_model`` through the mapper) or :class:`TooLargeForJob`."""
    limit = body.options.time_limit
    if limit is not None and limit > settings.job_time_limit_max:
        raise TooLargeForJob(
            f"a time limit of {limit:g} s is more than the {settings.job_time_limit_max:g} s a job may take",
            details={"time_limit": limit, "limit": settings.job_time_limit_max},
        )
    text = body.text if body.text is not None else body.source_text
    if text is not None and len(text) > settings.job_text_max_chars:
        raise TooLargeForJob(
            f"the problem text has {len(text)} characters; the limit is {settings.job_text_max_chars}",
            details={"characters": len(text), "limit": settings.job_text_max_chars},
        )
    if body.model is not None:
        from .routes_sync import estimate_columns

        model = load_model(body.model)
        columns = estimate_columns(model)
        if columns is not None and columns > settings.job_model_max_variables:
            raise TooLargeForJob(
                f"the model has {columns} variables; a job may have at most "
                f"{settings.job_model_max_variables}",
                details={"variables": columns, "limit": settings.job_model_max_variables},
            )


# ----------------------------------------------------------------------------- jobs


@jobs_router.post(
    "",
    status_code=202,
    summary="Submit a job: a model to solve, or text to formalize and solve",
    responses={
        202: {"description": "persisted; poll `Location`, or stream its events"},
        409: {"model": ErrorBody, "description": "a request with this Idempotency-Key is still in progress"},
    },
)
async def create_job(
    body: JobIn,
    store: JobStoreDep,
    caller: CallerDep,
    settings: SettingsDep,
    services: ServicesDep,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=255, description="makes retries safe"),
    ] = None,
) -> JSONResponse:
    """The job is written to the store before this answers 202; it will reach a terminal state
    (`succeeded`, `failed`, `cancelled`) even if a worker or the server dies meanwhile."""
    job, created = await submit(body, store, caller, settings, services, idempotency_key)
    return _accepted(job_view(job), f"/v1/jobs/{job.id}", replayed=not created)


async def submit(
    body: JobIn,
    store: JobStore,
    caller: str,
    settings: Settings,
    services: Services,
    idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """Validate, persist and dispatch a job (POST /v1/jobs, and the web form's submissions);
    the job, and whether it is new (False: an idempotent replay)."""
    await run_in_threadpool(validate_job, body, settings)
    job, created = await run_in_threadpool(
        lambda: store.create_job(
            caller,
            body.kind(),
            body.for_store(),
            idempotency_key=idempotency_key,
            max_attempts=settings.job_max_attempts,
        )
    )
    if created and services.dispatch is not None:
        await run_in_threadpool(services.dispatch, job.id)
    return job, created


async def submit_job(
    body: JobIn, store: JobStore, caller: str, settings: Settings, services: Services
) -> Job:
    """:func:`submit` without an idempotency key: the new job."""
    job, _ = await submit(body, store, caller, settings, services)
    return job


@jobs_router.get("", summary="List your jobs, newest first")
async def list_jobs(
    store: JobStoreDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500, description="`next_cursor` of the last page")] = None,
) -> JSONResponse:
    page, next_cursor = await run_in_threadpool(store.list_jobs, caller, limit, cursor or None)
    return JSONResponse(
        {
            "object": "list",
            "data": [job_view(j) for j in page],
            "next_cursor": next_cursor,
            "has_more": next_cursor is not None,
        }
    )


async def _owned_job(store: JobStore, job_id: str, caller: str) -> Job:
    job = await run_in_threadpool(store.get_job, job_id, caller)
    if job is None:
        raise NotFound(f"there is no job {job_id}")
    return job


@jobs_router.get("/{job_id}", summary="A job: status, timestamps, stage, attempts, result")
async def get_job(job_id: JobId, store: JobStoreDep, caller: CallerDep) -> JSONResponse:
    job = await _owned_job(store, job_id, caller)
    headers = {} if job.is_terminal or job.status == "needs_input" else {"Retry-After": RETRY_AFTER}
    return JSONResponse(job_view(job), headers=headers)


@jobs_router.post("/{job_id}/cancel", summary="Cancel a job, queued or running")
async def cancel_job(
    job_id: JobId, store: JobStoreDep, caller: CallerDep, services: ServicesDep
) -> JSONResponse:
    """Queued (or waiting for answers): `cancelled` at once. Running: the solver is stopped and
    the job ends `cancelled`, keeping the best plan found so far when there is one."""
    if services.cancel is not None:
        job = await run_in_threadpool(services.cancel, store, job_id, caller)
    else:
        job = await run_in_threadpool(store.request_cancel, job_id, caller)
    if job is None:
        raise NotFound(f"there is no job {job_id}")
    return JSONResponse(job_view(job))


@jobs_router.post(
    "/{job_id}/answers",
    summary="Answer a job's clarifying questions; it resumes",
    responses={409: {"model": ErrorBody, "description": "the job is not waiting for answers"}},
)
async def answer_job(
    job_id: JobId, body: AnswersIn, store: JobStoreDep, caller: CallerDep, services: ServicesDep
) -> JSONResponse:
    job = await submit_answers(store, job_id, caller, body.answers, services)
    return _accepted(job_view(job), f"/v1/jobs/{job.id}")


async def submit_answers(
    store: JobStore, job_id: str, caller: str, answers: Mapping[str, str], services: Services
) -> Job:
    """Store a job's answers and requeue it (POST /v1/jobs/{id}/answers, and the web form)."""
    job = await run_in_threadpool(store.answer, job_id, caller, dict(answers))
    if job is None:
        raise NotFound(f"there is no job {job_id}")
    if services.dispatch is not None:
        await run_in_threadpool(services.dispatch, job.id)
    return job


def _sse(seq: int, kind: str, data: Mapping[str, Any]) -> bytes:
    payload = json.dumps(dict(data), separators=(",", ":"), default=str)
    return f"id: {seq}\nevent: {kind}\ndata: {payload}\n\n".encode()


@jobs_router.get(
    "/{job_id}/events",
    summary="Stream a job's progress (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def job_events(
    job_id: JobId,
    store: JobStoreDep,
    caller: CallerDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> StreamingResponse:
    """Status changes, stage changes and solver log lines as they happen; resume after a
    disconnect with `Last-Event-ID`. Ends when the job is terminal or waits for answers."""
    await _owned_job(store, job_id, caller)
    try:
        start = min(max(0, int(last_event_id)), 2**62) if last_event_id else 0
    except ValueError:
        start = 0

    async def stream() -> AsyncIterator[bytes]:
        seq = start
        quiet_since = time.monotonic()
        while True:
            events = await run_in_threadpool(store.events_after, job_id, seq, 200)
            for e in events:
                seq = e.seq
                yield _sse(e.seq, e.type, {**e.data, "ts": _ts(e.ts)})
            if events:
                quiet_since = time.monotonic()
                continue
            job = await run_in_threadpool(store.load_job, job_id)
            if job is None:
                return
            if job.is_terminal or job.status == "needs_input":
                tail = await run_in_threadpool(store.events_after, job_id, seq, 1000)
                for e in tail:
                    seq = e.seq
                    yield _sse(e.seq, e.type, {**e.data, "ts": _ts(e.ts)})
                return
            if time.monotonic() - quiet_since >= _SSE_KEEPALIVE:
                quiet_since = time.monotonic()
                yield b": keep-alive\n\n"
            await asyncio.sleep(_SSE_POLL)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# ----------------------------------------------------------------------------- batches


def _issue(number: int, message: str, code: str = "batch_line") -> dict[str, Any]:
    return Issue(code=code, message=f"line {number}: {message}", where=f"line {number}").to_dict()


def parse_batch(
    items: list[tuple[int, Any]], settings: Settings
) -> tuple[list[BatchLine], list[dict[str, Any]]]:
    """Batch lines from ``(line number, parsed JSON or text)``; the problems, each by line."""
    lines: list[BatchLine] = []
    problems: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, raw in items:
        value = raw
        if isinstance(raw, str):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as e:
                problems.append(_issue(number, f"not valid JSON ({e.msg})", "json"))
                continue
        try:
            line = BatchLineIn.model_validate(value)
            validate_job(line, settings)
        except ValidationError as e:
            for issue in request_issues(e.errors(include_url=False), limit=5):
                where = issue.get("where") or ""
                problems.append(_issue(number, f"{where + ': ' if where else ''}{issue['message']}"))
            continue
        except TooLargeForJob as e:
            problems.append(_issue(number, e.message, e.code))
            continue
        except Exception as e:  # the model contract's own errors (ModelError)
            problems.append(_issue(number, str(e), "invalid_model"))
            continue
        if line.custom_id in seen:
            first = seen[line.custom_id]
            problems.append(_issue(number, f"custom_id {line.custom_id!r} is already used on line {first}"))
            continue
        seen[line.custom_id] = number
        lines.append(BatchLine(custom_id=line.custom_id, kind=line.kind(), request=line.for_store()))
    return lines, problems


async def _batch_items(request: Request) -> tuple[list[tuple[int, Any]], str | None]:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidBatch("send the JSONL file in the multipart field 'file'", [])
        data = await upload.read()
        name = upload.filename
        await form.close()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InvalidBatch("the batch file is not UTF-8 text", [_issue(1, str(e), "encoding")]) from None
        items: list[tuple[int, Any]] = [
            (n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()
        ]
        return items, name
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidBatch("the request body is not valid JSON", [_issue(1, str(e), "json")]) from None
    if not isinstance(body, dict) or not isinstance(body.get("lines"), list):
        raise InvalidBatch("send {'lines': [...]} as JSON, or a JSONL file as multipart field 'file'", [])
    extra = sorted(set(body) - {"lines", "input_file_name"})
    if extra:
        raise InvalidBatch(f"unknown field(s): {', '.join(extra)}", [])
    name = body.get("input_file_name")
    return list(enumerate(body["lines"], start=1)), name if isinstance(name, str) else None


@batches_router.post(
    "",
    status_code=202,
    summary="Submit a batch: JSONL, one problem per line with a custom_id",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "lines": {"type": "array", "items": {"type": "object"}},
                            "input_file_name": {"type": "string"},
                        },
                        "required": ["lines"],
                    }
                },
            },
        }
    },
)
async def create_batch(
    request: Request, store: JobStoreDep, caller: CallerDep, settings: SettingsDep, services: ServicesDep
) -> JSONResponse:
    """Each line is `{"custom_id", "model" | "text", "options"?}`. Lines with problems are
    reported by their line number, and then nothing is created."""
    items, name = await _batch_items(request)
    if not items:
        raise InvalidBatch("the batch has no lines", [])
    if len(items) > settings.batch_max_lines:
        raise InvalidBatch(f"a batch has at most {settings.batch_max_lines} lines, this one {len(items)}", [])
    lines, problems = await run_in_threadpool(parse_batch, items, settings)
    if problems:
        bad = len({p["where"] for p in problems})
        raise InvalidBatch(f"{bad} line(s) of the batch have problems; nothing was created", problems[:100])
    file_name = name[:255] if name else None
    attempts = settings.job_max_attempts
    batch = await run_in_threadpool(
        lambda: store.create_batch(caller, lines, input_file_name=file_name, max_attempts=attempts)
    )
    if services.dispatch is not None:
        dispatch = services.dispatch

        def send_all() -> None:
            for job in store.batch_results(batch.id, caller) or []:
                dispatch(job.id)

        await run_in_threadpool(send_all)
    return _accepted(batch_view(batch), f"/v1/batches/{batch.id}")


@batches_router.get("/{batch_id}", summary="A batch: status, counts, timestamps")
async def get_batch(batch_id: BatchId, store: JobStoreDep, caller: CallerDep) -> JSONResponse:
    batch = await run_in_threadpool(store.batch_status, batch_id, caller)
    if batch is None:
        raise NotFound(f"there is no batch {batch_id}")
    return JSONResponse(batch_view(batch))


def _result_line(job: Job) -> bytes:
    line: dict[str, Any] = {"custom_id": job.custom_id, "job_id": job.id, "status": job.status}
    if job.error is not None:
        line["error"] = job.error
    if job.result is not None or job.error is None:
        line["result"] = job.result
    return (json.dumps(line, separators=(",", ":"), default=str) + "\n").encode()


@batches_router.get(
    "/{batch_id}/results",
    summary="A batch's results as JSONL, in input order",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}},
)
async def batch_results(batch_id: BatchId, store: JobStoreDep, caller: CallerDep) -> StreamingResponse:
    """One line per input line: `custom_id`, `job_id`, `status`, and `result` or `error`
    (a line whose job has not ended yet has its status and a null result)."""
    jobs = await run_in_threadpool(store.batch_results, batch_id, caller)
    if jobs is None:
        raise NotFound(f"there is no batch {batch_id}")
    found: Iterator[Job] = jobs

    def lines() -> Iterator[bytes]:
        for job in found:
            yield _result_line(job)

    return StreamingResponse(lines(), media_type="application/x-ndjson")
