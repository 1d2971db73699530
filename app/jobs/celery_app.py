"""Scale-out: the same job code on Celery with Redis (DESIGN.md, "Scale").

The job store stays the source of truth; Celery only carries job ids. ``enqueue(job_id)``
sends one ``optscribe.run_job`` message after the job was committed; a worker's task leases
that job by id (:meth:`JobStore.claim`) and runs :func:`~app.jobs.execute.execute_job`, the
code the embedded supervisor runs too. Nothing is lost when a worker dies:

* ``task_acks_late``: a message is acknowledged only once its task returned, so a worker
  killed mid-job (``kill -9``, the machine gone) leaves it unacknowledged, and Redis hands it
  to another worker when the ``visibility_timeout`` has passed;
* ``task_reject_on_worker_lost``: a pool process that dies (OOM killer, a signal) puts its
  message back at once instead of acknowledging it as failed;
* ``worker_prefetch_multiplier=1``: a worker holds one message per pool process, so a dead
  worker strands no queue of jobs behind it, and long solves do not block short ones;
* ``task_time_limit`` below the ``visibility_timeout``: a task still running is never handed
  to a second worker; its soft limit comes first and ends the job ``failed`` with the reason.

A redelivered message whose job is already terminal does nothing; one whose job still holds
a live lease (its worker may yet heartbeat) is retried after the lease would have run out.
Each claim counts an attempt, so a job whose workers keep dying fails with
``attempts_exhausted`` after ``job_max_attempts`` runs, exactly as in the embedded path.

Cancel: :func:`cancel` marks the job in the store (queued: ``cancelled`` at once; running:
``cancel_requested``, which the worker's next heartbeat sees, stopping the solve and keeping
the best plan), then revokes the task with ``terminate=True``. A pool process does not die of
that SIGTERM at once (an exception thrown into the middle of a solve or a store transaction
could leave either half done): it gives the job a grace period (a lease and a bit) to end
through the store's cancel, and only then exits hard; the job's message then goes back to the
queue (reject on worker lost), and the next claim settles the job as ``cancelled``.

Settings: the broker is ``OPTSCRIBE_BROKER_URL`` (default ``redis://localhost:6379/0``), also
the result backend unless ``OPTSCRIBE_RESULT_BACKEND`` is set; the store is ``job_store_url``
or ``data_dir``; ``OPTSCRIBE_CELERY_TASK_TIME_LIMIT``, ``OPTSCRIBE_CELERY_VISIBILITY_TIMEOUT``
and ``OPTSCRIBE_WORKER_CONCURRENCY`` tune the rest (see :class:`CeleryConfig`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any, Final

import kombu.connection
import kombu.pools
from celery import Celery, signals  # type: ignore[import-untyped]
from celery.exceptions import SoftTimeLimitExceeded  # type: ignore[import-untyped]

from app.settings import Settings, get_settings

from .runner import SolvePool
from .store import Job, JobStore

__all__ = [
    "TASK_NAME",
    "CeleryConfig",
    "cancel",
    "celery_app",
    "celery_config",
    "close_connections",
    "configure",
    "enqueue",
    "probe_broker",
    "probe_workers",
    "run_job",
    "task_id_for",
]

log = logging.getLogger("optscribe.jobs.celery")

TASK_NAME: Final = "optscribe.run_job"
QUEUE: Final = "optscribe"
DEFAULT_BROKER: Final = "redis://localhost:6379/0"

#: Seconds of margin kept by the defaults: soft limit before hard, hard before visibility.
_SOFT_MARGIN: Final = 30.0


@dataclass(frozen=True)
class CeleryConfig:
    """What the Celery app is built from; :func:`celery_config` reads it from the settings."""

    broker_url: str
    result_backend: str
    store_url: str
    concurrency: int
    task_time_limit: float  # the hard kill of a task (seconds)
    task_soft_time_limit: float  # SoftTimeLimitExceeded inside the task, before the hard kill
    visibility_timeout: float  # Redis redelivers an unacknowledged message after this long
    lease_seconds: float

    def __post_init__(self) -> None:
        if not 0 < self.task_soft_time_limit < self.task_time_limit:
            raise ValueError("the soft time limit must be positive and below the hard time limit")
        if not self.task_time_limit < self.visibility_timeout:
            raise ValueError(
                f"the task time limit ({self.task_time_limit:g} s) must be below the broker's "
                f"visibility timeout ({self.visibility_timeout:g} s), or a running task is redelivered"
            )
        if self.concurrency < 1:
            raise ValueError("a worker needs a concurrency of at least 1")


def _knob(settings: Settings, name: str) -> str | None:
    """A settings field when the Settings class has it, else ``OPTSCRIBE_<NAME>``; empty is unset."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(f"OPTSCRIBE_{name.upper()}")
    text = None if value is None else str(value).strip()
    return text or None


def store_url(settings: Settings) -> str:
    """The job store's URL: ``job_store_url``, else the SQLite file in ``data_dir``."""
    if settings.job_store_url:
        return settings.job_store_url
    from .store import DEFAULT_DB_FILENAME, sqlite_url

    return sqlite_url(settings.data_dir.expanduser().resolve() / DEFAULT_DB_FILENAME)


def celery_config(settings: Settings | None = None) -> CeleryConfig:
    """The Celery configuration under ``settings`` (default: the settings in force)."""
    settings = settings or get_settings()
    broker = _knob(settings, "broker_url") or DEFAULT_BROKER
    # The longest a job may take: its longest solve plus building, explaining and the LLM.
    longest = settings.job_time_limit_max + settings.llm_total_budget_s + 300.0
    hard = float(_knob(settings, "celery_task_time_limit") or longest)
    visibility = float(
        _knob(settings, "celery_visibility_timeout") or hard + settings.job_lease_seconds + 60.0
    )
    soft = float(_knob(settings, "celery_task_soft_time_limit") or max(hard - _SOFT_MARGIN, hard * 0.8))
    concurrency = int(_knob(settings, "worker_concurrency") or max(1, settings.workers))
    return CeleryConfig(
        broker_url=broker,
        result_backend=_knob(settings, "result_backend") or broker,
        store_url=store_url(settings),
        concurrency=concurrency,
        task_time_limit=hard,
        task_soft_time_limit=soft,
        visibility_timeout=visibility,
        lease_seconds=settings.job_lease_seconds,
    )


celery_app: Any = Celery("optscribe")


def configure(config: CeleryConfig | None = None) -> CeleryConfig:
    """Apply ``config`` (default: from the settings) to :data:`celery_app`; answer it."""
    cfg = config or celery_config()
    close_connections()  # connections opened under an earlier configuration
    transport: dict[str, Any] = {
        "visibility_timeout": cfg.visibility_timeout,
        # Look for messages of dead workers (unacknowledged past the visibility timeout) a
        # few times per timeout, on every sweep (kombu's defaults scan about every 100 s).
        "unacked_restore_interval": max(1, min(10, int(cfg.visibility_timeout / 5))),
        "unacked_restore_throttle": 1,
    }
    celery_app.conf.update(
        broker_url=cfg.broker_url,
        result_backend=cfg.result_backend,
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": cfg.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=cfg.task_time_limit,
        task_soft_time_limit=cfg.task_soft_time_limit,
        worker_concurrency=cfg.concurrency,
        # A pool process serves many jobs; its solver pool (and fork server) stays warm.
        worker_max_tasks_per_child=None,
        worker_hijack_root_logger=False,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_expires=24 * 3600,
        task_track_started=True,
        # The job store holds every job's result; Celery's results are only task bookkeeping.
        task_ignore_result=True,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        enable_utc=True,
    )
    global _config
    _config = cfg
    return cfg


_config: CeleryConfig | None = None


def close_connections() -> None:
    """Close the app's broker connections (producers, control); they reopen on next use."""
    pool = celery_app._pool
    celery_app._pool = None
    if pool is not None:
        pool.force_close_all()
    amqp = celery_app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    # Producer pools live in kombu's process-wide registry, keyed by broker URL: close and
    # forget them, or the next producer for the same URL is handed the closed pool.
    kombu.pools.reset()  # type: ignore[no-untyped-call]


def _current_config() -> CeleryConfig:
    return _config if _config is not None else configure()


# ------------------------------------------------------------------------------ per process

# One store and one solver pool per (pool) process: the engine's connections and the fork
# server must not cross a fork, so both are opened lazily in the process that uses them.
_process: dict[str, Any] = {}
_process_lock = threading.Lock()


def _resources() -> tuple[JobStore, SolvePool]:
    with _process_lock:
        if _process.get("pid") != os.getpid():
            from .execute import job_limits

            settings = get_settings()
            _process.clear()
            store = JobStore(_current_config().store_url)
            try:
                pool = SolvePool(1, limits=job_limits(settings))
            except BaseException:
                store.close()
                raise
            _process.update(pid=os.getpid(), store=store, pool=pool)
        return _process["store"], _process["pool"]


def _release_resources() -> None:
    with _process_lock:
        if _process.get("pid") == os.getpid():
            _process["pool"].close()
            _process["store"].close()
        _process.clear()


_running: dict[str, Any] = {}  # the job this pool process runs now: {"job_id": ...}
_terminated: list[float] = []  # when SIGTERM came (revoke with terminate), while a job ran


_pool_process: dict[str, Any] = {}  # {"previous": billiard's SIGTERM handler} in a pool process


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Only a plain append here: a signal handler runs between two bytecodes of whatever the
    # main thread was doing (holding a lock, inside a transaction); the watchdog does the rest.
    if _running:
        _terminated.append(time.monotonic())
        return
    # Idle (the pool is shutting down): end as a pool process normally would.
    previous = _pool_process.get("previous")
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _catch_sigterm() -> None:
    """In a pool process's main thread: take SIGTERM over from billiard (once)."""
    if "init" in _pool_process and "previous" not in _pool_process:
        if threading.current_thread() is threading.main_thread():
            _pool_process["previous"] = signal.signal(signal.SIGTERM, _on_sigterm)


def _watchdog() -> None:
    """Exit hard when a job told to terminate has not ended within its grace period."""
    while True:
        time.sleep(0.2)
        if not _terminated:
            continue
        job_id = _running.get("job_id")
        if job_id is None:  # the job ended
            _terminated.clear()
            continue
        grace = 2 * _current_config().lease_seconds + 5.0
        if time.monotonic() - _terminated[0] > grace:
            log.error("job %s: still running %g s after SIGTERM; this pool process exits", job_id, grace)
            # The task counts as revoked, so its message will not come back: settle a cancel here.
            with contextlib.suppress(Exception):
                store: JobStore = _process["store"]
                current = store.load_job(job_id)
                if current is not None and current.cancel_requested:
                    store.finish(job_id, _running["worker_id"], "cancelled", result=current.result)
            with contextlib.suppress(Exception):
                _process["pool"].close()
            os._exit(70)


@signals.worker_process_init.connect  # type: ignore[untyped-decorator]
def _init_pool_process(**_: Any) -> None:
    """In each pool process: SIGTERM (revoke with terminate) ends the job, not the process."""
    _process.clear()
    # Celery's pool processes are daemonic, and multiprocessing refuses children to daemonic
    # processes; but a job's solves must run in a child process of its own (the SolvePool),
    # which this pool process stops itself (SolvePool.close at shutdown; the fork server
    # exits with its parent).
    # billiard also puts its own AuthenticationString (which refuses pickling) in the process's
    # config, where multiprocessing's fork server client expects its own kind.
    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    config["daemon"] = False
    config["authkey"] = multiprocessing.process.AuthenticationString(os.urandom(32))  # type: ignore[attr-defined]
    _terminated.clear()
    # billiard installs its own SIGTERM handler after this signal; the first task replaces it.
    _pool_process.clear()
    _pool_process["init"] = True
    threading.Thread(target=_watchdog, name="optscribe-terminate-watchdog", daemon=True).start()


@signals.worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _shutdown_pool_process(**_: Any) -> None:
    try:
        _release_resources()
    except Exception:  # the process is ending; a pool that will not close is killed with it
        log.exception("could not close the job resources of pool process %s", os.getpid())


# ------------------------------------------------------------------------------------ task


def task_id_for(job_id: str) -> str:
    """The Celery task id of a job: one per job, so that cancel can name it."""
    return f"optscribe-job-{job_id}"


@celery_app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)  # type: ignore[untyped-decorator]
def run_job(self: Any, job_id: str) -> str:
    """Lease the job ``job_id`` and run it to its end; answer how it ended (or why not run)."""
    from .execute import execute_job, pipeline_factory

    try:
        store, pool = _resources()
    except Exception as exc:  # no store or no solver process yet: the job stays queued; try later
        log.exception("job %s: this worker cannot run jobs now", job_id)
        raise self.retry(countdown=5.0, exc=exc) from exc
    settings = get_settings()
    cfg = _current_config()
    worker_id = f"celery:{socket.gethostname()}:{os.getpid()}:{self.request.id}"
    job = store.claim(job_id, worker_id, cfg.lease_seconds)
    if job is None:
        return _unclaimable(self, store, job_id, cfg)
    _catch_sigterm()
    _running.update(job_id=job_id, worker_id=worker_id)
    try:
        return str(execute_job(store, job, worker_id, pool, pipeline_factory(settings), settings))
    except SoftTimeLimitExceeded:
        return _timed_out(store, job, worker_id)
    finally:
        _running.clear()
        _terminated.clear()


def _unclaimable(task: Any, store: JobStore, job_id: str, cfg: CeleryConfig) -> str:
    """A message whose job could not be leased: nothing to do, or try again after its lease."""
    current = store.load_job(job_id)
    if current is None:
        log.warning("job %s: not in the store; message dropped", job_id)
        return "missing"
    if current.is_terminal or current.status == "needs_input":
        return "skipped"
    # Running under another worker's live lease: if that worker died, the lease runs out and
    # this retry takes the job over; if it lives, the retry finds the job ended.
    raise task.retry(countdown=cfg.lease_seconds + 1.0)


def _timed_out(store: JobStore, job: Job, worker_id: str) -> str:
    """The task ran into its soft time limit: end the job (``cancelled`` if that was asked)."""
    current = store.load_job(job.id)
    if current is None or current.is_terminal or current.lease_owner != worker_id:
        return "stopped"
    if current.cancel_requested:
        store.finish(job.id, worker_id, "cancelled", result=current.result)
        return "cancelled"
    limit = _current_config().task_soft_time_limit
    error = {"code": "job_timeout", "message": f"the job ran past the worker's time limit of {limit:g} s"}
    store.finish(job.id, worker_id, "failed", result=current.result, error=error)
    return "failed"


# ------------------------------------------------------------------------------ producers


def enqueue(job_id: str, *, countdown: float | None = None) -> str:
    """Send the job's task (after the job was committed); answer the task id."""
    _current_config()
    task_id = task_id_for(job_id)
    run_job.apply_async(args=(job_id,), task_id=task_id, countdown=countdown)
    return task_id


def probe_broker(timeout: float = 2.0) -> str | None:
    """For GET /readyz: None when the broker answers within ``timeout`` seconds (raises or
    answers the reason otherwise)."""
    cfg = _current_config()
    with kombu.connection.Connection(cfg.broker_url, connect_timeout=timeout) as conn:  # type: ignore[no-untyped-call]
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
    return None


def probe_workers(timeout: float = 0.5) -> str | None:
    """For GET /readyz: None when at least one Celery worker answers a ping; else why not."""
    _current_config()
    replies = celery_app.control.ping(timeout=timeout)
    if not replies:
        return f"no worker answered within {timeout:g} s: start one with `optscribe worker`"
    return None


def cancel(store: JobStore, job_id: str, owner: str) -> Job | None:
    """Cancel a job: in the store first, then revoke its task (terminating a running one).

    Answers the job as the store has it (None: not the owner's job). A queued job is
    ``cancelled`` at once and its message is discarded when a worker receives it; a running
    one gets ``cancel_requested``, and its pool process is sent SIGTERM, which ends the job
    ``cancelled``.
    """
    job = store.request_cancel(job_id, owner)
    if job is None:
        return None
    _current_config()
    terminate = job.status == "running"
    celery_app.control.revoke(task_id_for(job_id), terminate=terminate, signal="SIGTERM")
    return job


# `celery -A app.jobs.celery_app worker` and `optscribe worker` both get a configured app.
configure()
