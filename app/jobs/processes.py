"""The embedded job workers as processes: ``optscribe serve``'s default.

:class:`WorkerProcesses` starts ``workers`` child processes beside the API. Each child opens
its own job store and runs a one-worker :class:`~app.jobs.supervisor.Supervisor` (claim,
execute, sweep), so the work a job costs on the serving side (claiming, events, the result)
runs in its own interpreter: with threads in the API's process, the workers took turns at
one GIL and two of them did about 1.3 times the work of one.

The children share nothing with the API but the database: a job is written before the API
answers 202, a child leases it, and a cancel reaches the child through the store (its
heartbeat). A child whose parent died (``kill -9`` of ``serve``) finishes the job in hand and
exits; a child that died is started again by the parent's watcher, and its job is taken
again when its lease runs out. ``start()``, ``stop()`` and ``probe()`` are those the app's
lifespan and ``/readyz`` expect of a supervisor.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from app.settings import Settings

__all__ = ["WorkerProcesses"]

log = logging.getLogger("optscribe.jobs")

_CHECK_S = 0.5  # how often a child looks at its parent, and the parent at its children


class WorkerProcesses:
    """``workers`` job worker processes over the store the settings name."""

    def __init__(self, settings: Settings, workers: int | None = None) -> None:
        self.settings = settings
        self.workers = settings.workers if workers is None else workers
        if self.workers < 1:
            raise ValueError("at least one worker process is needed")
        self._ctx = multiprocessing.get_context("spawn")  # no locks or pools copied by fork
        self._procs: list[Any] = []
        # One pipe to each child: a message (or the pipe closing, when this process dies)
        # tells it to stop. Not a multiprocessing.Event: a child killed while waiting on one
        # leaves its condition waiting for a wake-up that never comes, and set() hangs.
        self._pipes: list[Any] = []
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self.restarts = 0

    def start(self) -> None:
        if self._procs:
            return
        self._stopping.clear()
        self._pipes = [None] * self.workers
        self._procs = [self._spawn(n) for n in range(self.workers)]
        self._watcher = threading.Thread(target=self._watch, name="worker-watcher", daemon=True)
        self._watcher.start()
        log.info("%d job worker process(es) started", self.workers)

    def _spawn(self, n: int) -> Any:
        reader, writer = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=worker_main,
            args=(self.settings, n, reader, os.getpid()),
            name=f"optscribe-worker-{n}",
            daemon=False,  # a daemon process may not start children (its solve pool)
        )
        proc.start()
        reader.close()
        old, self._pipes[n] = self._pipes[n], writer
        if old is not None:
            old.close()
        return proc

    def _watch(self) -> None:
        while not self._stopping.wait(_CHECK_S):
            for n, proc in enumerate(self._procs):
                if not proc.is_alive() and not self._stopping.is_set():
                    log.warning("job worker process %d exited (%s); starting another", n, proc.exitcode)
                    self.restarts += 1
                    self._procs[n] = self._spawn(n)

    def stop(self, timeout: float = 15.0) -> None:
        """Ask every child to stop after its current job; kill those still running at ``timeout``."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        for pipe in self._pipes:
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.send("stop")
                pipe.close()
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()  # its job's lease runs out and the job is taken again
                proc.join(5)
        self._procs = []
        self._pipes = []

    def probe(self) -> str | None:
        """For /readyz."""
        if not self._procs:
            return "the job workers are not running"
        down = sum(1 for p in self._procs if not p.is_alive())
        return f"{down} of {len(self._procs)} job worker processes are down (restarting)" if down else None


def worker_main(settings: Settings, n: int, stop: Connection, parent: int) -> None:
    """A child: one worker and a sweeper over its own store, until told to stop or orphaned."""
    from app.api.main import open_job_store

    from .execute import pipeline_factory
    from .supervisor import Supervisor

    # Ctrl-C reaches the whole process group: the server's shutdown stops us (after the job
    # in hand), not the signal in the middle of a solve.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker-{n} %(levelname)s %(message)s")
    store = open_job_store(settings)
    supervisor = Supervisor(store, settings, workers=1, pipeline_factory=pipeline_factory(settings))
    supervisor.start()
    try:
        while not stop.poll(_CHECK_S):  # a message, or EOF when the server's process is gone
            if os.getppid() != parent:  # the API's process died (kill -9): finish up and go
                log.warning("worker-%d: the server process is gone; stopping", n)
                break
    finally:
        supervisor.stop()
        store.close()
