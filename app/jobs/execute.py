"""Run one claimed job to its end: the job code that every kind of worker shares.

:func:`execute_job` is called with a job that the caller has just leased (the embedded
supervisor's ``claim_next``, a Celery task's ``claim``). It

1. keeps the lease alive from a heartbeat thread; a heartbeat answering False means stop:
   either the client asked to cancel (the solve is stopped, the best plan kept, the job
   ends ``cancelled``) or the lease was lost to another worker (this worker drops the job
   without finishing it: the new holder owns it now);
2. for a ``formalize`` job, runs the formalization pipeline (stage ``formalizing``); open
   questions park the job as ``needs_input``; its answers requeue it, and the next run
   formalizes again with them;
3. solves the model through the :class:`~app.jobs.runner.SolvePool` (a child process
   bounded in time and memory), forwarding its stage changes and solver log lines as the
   job's events;
4. finishes the job: ``succeeded`` with the result contract (infeasible, unbounded and
   time-limit are results), ``failed`` with ``{code, message}`` when the model was refused or
   the solver was killed (the result, when there is one, is kept), ``cancelled`` with the
   best plan when one exists.

Nothing here knows HTTP or the worker that called it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.errors import (
    FormalizationFailed,
    LLMBadOutput,
    LLMBudgetExceeded,
    LLMNotConfigured,
    LLMUnavailable,
)
from app.formalize.pipeline import Formalization, Pipeline
from app.settings import Settings

from .runner import Limits, RunOutcome, SolvePool
from .store import EventType, Job, JobStore, StoreBusy, TerminalStatus

__all__ = ["ExecutionResult", "PipelineFactory", "execute_job", "job_limits"]

log = logging.getLogger("optscribe.jobs")

PipelineFactory = Callable[[], Pipeline]

#: How a job ended from this worker's point of view.
ExecutionResult = str  # succeeded | failed | cancelled | needs_input | lost

_FLUSH_LINES = 200  # events written to the store at once, at most
_FLUSH_SECONDS = 0.25  # an event waits at most about this long (a short job's go with its end)

_OUTCOME_ERRORS = {
    "invalid_model": "invalid_model",
    "timeout": "solve_timeout",
    "memory": "solve_memory_limit",
    "crashed": "solver_crashed",
    "error": "solver_error",
}

_LLM_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (LLMNotConfigured, "llm_not_configured"),
    (LLMBudgetExceeded, "llm_budget_exceeded"),
    (LLMUnavailable, "llm_unavailable"),
    (LLMBadOutput, "llm_bad_output"),
    (FormalizationFailed, "formalization_failed"),
)


def pipeline_factory(settings: Settings) -> PipelineFactory:
    """Pipelines with their own LLM client from ``settings`` (a worker process of its own)."""
    return lambda: Pipeline(settings=settings)


def job_limits(settings: Settings) -> Limits:
    """The solve limits of a job under ``settings``."""
    return Limits(
        time_limit=settings.solve_time_limit,
        max_time_limit=max(settings.job_time_limit_max, settings.solve_time_limit),
    )


class _Lease:
    """The heartbeat thread: extends the lease until stopped; sets ``stop`` when told to."""

    def __init__(self, store: JobStore, job_id: str, worker_id: str, lease_seconds: float) -> None:
        self.store = store
        self.job_id = job_id
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.stop = threading.Event()  # cancel the solve (cancelled or lost)
        self.lost = threading.Event()  # the lease went to someone else: do not finish
        self.on_tick: Callable[[], None] | None = None  # called a few times a second (events)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id[:8]}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        # The beat is also how a running job hears of a cancel: at least once a second.
        interval = max(0.05, min(1.0, self.lease_seconds / 3))
        tick = min(interval, _FLUSH_SECONDS)
        next_beat = time.monotonic() + interval
        while not self._done.wait(tick):
            if self.on_tick is not None:
                self.on_tick()
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + interval
                if not self.beat():
                    return

    def beat(self) -> bool:
        """One heartbeat; False (and ``stop`` set) when the job must stop."""
        try:
            if self.store.heartbeat(self.job_id, self.worker_id, self.lease_seconds):
                return True
            current = self.store.load_job(self.job_id)
        except StoreBusy:
            log.warning("job %s: heartbeat skipped, the store is busy", self.job_id)
            return True
        except Exception:
            log.exception("job %s: heartbeat failed", self.job_id)
            return True
        if current is None or current.lease_owner != self.worker_id or current.status != "running":
            self.lost.set()
        self.stop.set()
        return False


class _Events:
    """The solve's events (stages, log lines) into the store, in batches.

    An event waits until the oldest one waiting is ``_FLUSH_SECONDS`` old (the lease's
    ticker, or the next event, writes them then) or ``_FLUSH_LINES`` are waiting; what is
    still waiting at the end goes into the job's finish, in the same transaction. So a
    solve of a few milliseconds costs one commit at its end instead of one per stage, and a
    long one still shows its stages and log within about a quarter of a second.
    """

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store = store
        self.job_id = job_id
        self._pending: list[tuple[EventType, Mapping[str, Any]]] = []
        self._since: float | None = None  # when the oldest waiting event came
        self._lock = threading.Lock()  # the list
        self._writing = threading.Lock()  # one write at a time, in order

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        items: list[tuple[EventType, Mapping[str, Any]]]
        if kind == "stage":
            stage = str(data.get("stage") or "solving")
            extra = {k: v for k, v in data.items() if k != "stage"}
            if stage == "done":  # the job's finish sets its stage; its figures are a log line
                items = [("log", {"stage": "done", **extra})]
            else:
                items = [("stage", {"stage": stage})]
                if extra:
                    items.append(("log", {"stage": stage, **extra}))
        else:
            items = [("log", data)]
        with self._lock:
            self._pending.extend(items)
            if self._since is None:
                self._since = time.monotonic()
            full = len(self._pending) >= _FLUSH_LINES
        if full or self.due():
            self.flush()

    def due(self) -> bool:
        since = self._since
        return since is not None and time.monotonic() - since >= _FLUSH_SECONDS

    def flush_if_due(self) -> None:
        if self.due():
            self.flush()

    def flush(self) -> None:
        """Write what is waiting; a failure drops it (events are progress, never a reason to
        lose the solve)."""
        with self._writing:
            batch = self._take()
            if not batch:
                return
            try:
                self.store.append_events(self.job_id, batch)
            except StoreBusy:
                log.warning("job %s: %d event(s) dropped, the store is busy", self.job_id, len(batch))
            except Exception:
                log.exception("job %s: could not record %d event(s)", self.job_id, len(batch))

    def take(self) -> list[tuple[EventType, Mapping[str, Any]]]:
        """What is still waiting, for the job's finish (after any write in progress)."""
        with self._writing:
            return self._take()

    def _take(self) -> list[tuple[EventType, Mapping[str, Any]]]:
        with self._lock:
            batch, self._pending, self._since = self._pending, [], None
        return batch


def _finish(
    store: JobStore,
    job: Job,
    worker_id: str,
    status: TerminalStatus,
    result: Any = None,
    error: Mapping[str, Any] | None = None,
    events: Sequence[tuple[EventType, Mapping[str, Any]]] = (),
) -> bool:
    """Finish, retrying while the store is busy (a repeated finish is harmless); ``events``
    still waiting are written with it."""
    for attempt in range(20):
        try:
            return store.finish(job.id, worker_id, status, result=result, error=error, events=events)
        except StoreBusy:
            time.sleep(min(2.0, 0.1 * 2**attempt))
    log.error("job %s: could not record its end (%s); it runs again once its lease expires", job.id, status)
    return False


def _error(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **details}


def _llm_error(exc: BaseException) -> dict[str, Any]:
    for kind, code in _LLM_ERRORS:
        if isinstance(exc, kind):
            return _error(code, str(exc))
    return _error("formalization_failed", str(exc))


def _formalize(pipeline: Pipeline, request: Mapping[str, Any]) -> Formalization:
    from solvers.model import Table

    tables = {name: Table.model_validate(t) for name, t in (request.get("tables") or {}).items()}
    answers = request.get("answers") or None
    return pipeline.run(str(request["text"]), tables, answers=answers, mode=request.get("mode"))


def _formalization_info(out: Formalization) -> dict[str, Any]:
    info = out.to_dict()
    info.pop("result", None)
    info.pop("status", None)
    return info


def execute_job(
    store: JobStore,
    job: Job,
    worker_id: str,
    pool: SolvePool,
    pipeline_factory: PipelineFactory | None,
    settings: Settings,
    *,
    limits: Limits | None = None,
) -> ExecutionResult:
    """Run ``job`` (leased to ``worker_id``) to its end; answer how it ended.

    Never raises for the job's own failures: they end the job ``failed`` with a reason.
    Answers ``lost`` when the lease went to another worker before the end.
    """
    lease_seconds = settings.job_lease_seconds
    with _Lease(store, job.id, worker_id, lease_seconds) as lease:
        try:
            return _execute(store, job, worker_id, pool, pipeline_factory, settings, limits, lease)
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job.id)
            if lease.lost.is_set():
                return "lost"
            _finish(store, job, worker_id, "failed", error=_error("internal", f"the job failed: {exc!r}"))
            return "failed"


def _execute(
    store: JobStore,
    job: Job,
    worker_id: str,
    pool: SolvePool,
    pipeline_factory: PipelineFactory | None,
    settings: Settings,
    limits: Limits | None,
    lease: _Lease,
) -> ExecutionResult:
    request = job.request
    formalization: Formalization | None = None

    def stopped() -> ExecutionResult | None:
        if not lease.stop.is_set():
            lease.beat()  # a cancel that came while the LLM was answering, heard now
        if lease.lost.is_set():
            return "lost"
        if lease.stop.is_set():
            _finish(store, job, worker_id, "cancelled")
            return "cancelled"
        return None

    if job.cancel_requested:
        _finish(store, job, worker_id, "cancelled")
        return "cancelled"

    if job.kind == "formalize":
        store.set_stage(job.id, "formalizing")
        if pipeline_factory is None:
            err = _error("llm_not_configured", "this worker has no formalization pipeline (no LLM)")
            _finish(store, job, worker_id, "failed", error=err)
            return "failed"
        try:
            formalization = _formalize(pipeline_factory(), request)
        except Exception as exc:  # the LLM's and the pipeline's own failures
            end = stopped()
            if end is not None:
                return end
            log.info("job %s: formalization failed: %s", job.id, exc)
            _finish(store, job, worker_id, "failed", error=_llm_error(exc))
            return "failed"
        end = stopped()
        if end is not None:
            return end
        if formalization.status == "needs_input":
            if store.set_needs_input(job.id, worker_id, formalization.questions):
                return "needs_input"
            return "lost"
        if formalization.model is None:
            message = formalization.error or "the formalization produced no model"
            _finish(
                store,
                job,
                worker_id,
                "failed",
                result={"formalization": _formalization_info(formalization)},
                error=_error("formalization_failed", message),
            )
            return "failed"
        model_json: dict[str, Any] = formalization.model.dump()
    else:
        model_json = dict(request["model"])

    events = _Events(store, job.id)
    lease.on_tick = events.flush_if_due
    outcome: RunOutcome = pool.solve(
        model_json,
        request.get("options") or None,
        limits or job_limits(settings),
        on_event=events,
        cancel=lease.stop,
    )
    lease.on_tick = None
    last = events.take()  # written with the finish, in its transaction

    if lease.lost.is_set():
        return "lost"
    result: Any = outcome.result
    if formalization is not None:
        result = {**(result or {}), "formalization": _formalization_info(formalization)}

    if lease.stop.is_set() or outcome.cancelled:
        _finish(store, job, worker_id, "cancelled", result=result, events=last)
        return "cancelled"
    if outcome.reason == "completed":
        _finish(store, job, worker_id, "succeeded", result=result, events=last)
        return "succeeded"
    code = _OUTCOME_ERRORS.get(outcome.reason, "solver_error")
    message = ""
    if outcome.result is not None:
        message = str(outcome.result.get("message") or "")
    if outcome.error is not None:
        message = str(outcome.error.get("message") or message)
        details = {k: v for k, v in outcome.error.items() if k in ("kind", "issues")}
    else:
        details = {}
    error = _error(code, message or f"the solve ended: {outcome.reason}", **details)
    _finish(store, job, worker_id, "failed", result=result, error=error, events=last)
    return "failed"
