"""Job worker threads over one store, solves in the pool's children.

``optscribe serve`` runs one of these (with one worker) in each of its worker processes
(:mod:`app.jobs.processes`); with ``OPTSCRIBE_EMBEDDED_WORKERS=threads`` it runs one with
``workers`` threads in the API's own process, and tests run it in process too.

:class:`Supervisor` runs ``workers`` threads; each claims the next job from the store
(:meth:`JobStore.claim_next`, a lease) and runs it with :func:`~app.jobs.execute.execute_job`,
whose solve happens in a :class:`~app.jobs.runner.SolvePool` child process. A sweeper
thread puts jobs whose lease expired (their worker died: a killed server, a crashed host)
back in the queue with :meth:`JobStore.requeue_expired`, so every accepted job ends, also
after a restart on the same data directory: the jobs the dead process held are taken again
as soon as their leases run out.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any

from app.settings import Settings

from .execute import PipelineFactory, execute_job, job_limits
from .runner import Limits, SolvePool
from .store import JobStore, StoreBusy

__all__ = ["Supervisor"]

log = logging.getLogger("optscribe.jobs")


class Supervisor:
    """``workers`` job threads and a lease sweeper over one store; ``start()`` / ``stop()``."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        *,
        workers: int | None = None,
        pool: SolvePool | None = None,
        pipeline_factory: PipelineFactory | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.workers = settings.workers if workers is None else workers
        if self.workers < 1:
            raise ValueError("a supervisor needs at least one worker")
        self.limits = limits or job_limits(settings)
        self._own_pool = pool is None
        self._pool = pool
        self.pipeline_factory = pipeline_factory
        self.name = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ran: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def pool(self) -> SolvePool:
        if self._pool is None:
            raise RuntimeError("the supervisor has not started")
        return self._pool

    def start(self) -> None:
        """Start the pool (unless one was given), the workers and the sweeper."""
        if self._threads:
            return
        self._stop.clear()
        if self._pool is None:
            self._pool = SolvePool(self.workers, limits=self.limits)
        for n in range(self.workers):
            t = threading.Thread(target=self._work, args=(f"{self.name}-w{n}",), name=f"job-worker-{n}")
            t.daemon = True
            t.start()
            self._threads.append(t)
        sweeper = threading.Thread(target=self._sweep, name="job-sweeper", daemon=True)
        sweeper.start()
        self._threads.append(sweeper)
        log.info("job supervisor %s: %d workers on %s", self.name, self.workers, self.store.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; wait up to ``timeout`` for running jobs (unfinished ones are
        picked up again when their lease expires), then close an owned pool."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        if self._own_pool and self._pool is not None:
            self._pool.close()
            self._pool = None

    def alive(self) -> bool:
        """All worker threads are running (for /readyz)."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def probe(self) -> str | None:
        return None if self.alive() else "the job workers are not running"

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.ran[outcome] = self.ran.get(outcome, 0) + 1

    def _work(self, worker_id: str) -> None:
        poll = self.settings.job_poll_seconds
        while not self._stop.is_set():
            try:
                job = self.store.claim_next(worker_id, self.settings.job_lease_seconds)
            except StoreBusy:
                self._stop.wait(poll)
                continue
            except Exception:
                log.exception("worker %s: claiming a job failed", worker_id)
                self._stop.wait(max(poll, 1.0))
                continue
            if job is None:
                self._stop.wait(poll)
                continue
            try:
                outcome = execute_job(
                    self.store,
                    job,
                    worker_id,
                    self.pool,
                    self.pipeline_factory,
                    self.settings,
                    limits=self.limits,
                )
                self._count(outcome)
            except Exception:  # execute_job ends the job itself; this is a last resort
                log.exception("worker %s: job %s", worker_id, job.id)

    def _sweep(self) -> None:
        interval = max(0.1, min(5.0, self.settings.job_lease_seconds / 2))
        while not self._stop.wait(interval):
            try:
                changed = self.store.requeue_expired()
            except StoreBusy:
                continue
            except Exception:
                log.exception("the lease sweeper failed")
                continue
            for job in changed:
                log.warning("job %s: its worker died; now %s (attempt %d)", job.id, job.status, job.attempts)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"workers": self.workers, "ran": dict(self.ran)}
