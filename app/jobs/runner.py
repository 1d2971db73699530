"""Solves in child processes: bounded in time and memory, cancellable, with live events.

Every solve of the service runs in a worker process (DESIGN.md, non-negotiable 4). The
parent bounds each stage of a solve with a wall clock, and kills the child when one runs
over:

==============  =============================================  ===========================
stage           what the child does                            the parent's clock
==============  =============================================  ===========================
``starting``    load, check, lower and compile the model       ``build_seconds + grace``
``solving``     the solver runs under its own time limit       ``time limit + grace``
(after it)      the solution is read back into model names     ``build_seconds + grace``
``explaining``  conflicts, relaxations (infeasible models)     ``explain budget + grace``
``done``        the parent has the outcome                     --
==============  =============================================  ===========================

A child that overruns gets SIGTERM, then SIGKILL after ``term_grace``; the outcome is a
result with status ``error`` whose message says why ("killed after 12.0 s (the solver
ignored its time limit)"). The child's address space is capped with ``RLIMIT_AS``
(``memory_mb``): an allocation beyond it raises ``MemoryError`` in Python (C++ ``bad_alloc``
becomes one through pybind11), which the child reports before it retires; a child that dies
of a signal near the cap is reported the same way ("killed: memory limit of 1024 MB
exceeded"). The cap counts address space, not resident memory: a worker that has run both
solvers holds about 0.5 GB of it (libraries, thread stacks, malloc arenas) before it solves
anything.

**Processes.** Workers are started with multiprocessing's ``forkserver`` context, with the
solver modules preloaded in the fork server: the service's own process has threads (the
web server, database pools, HiGHS's scheduler when it ever solved in-process), and fork()
copies their locks in whatever state they are in, so it never forks itself. The fork
server is a single-threaded process (apart from OpenBLAS's pool, which numpy shuts down
around fork) that never solves; a worker forked from it starts with highspy, OR-Tools and
the model core already imported, in milliseconds, where ``spawn`` pays the imports each time
(0.5 to 1 s here). ``spawn`` stays available (``SolvePool(context="spawn")``). Workers are
kept warm in a :class:`SolvePool` and reused for many solves; one that was killed, ran out
of memory, died while idle or served ``max_tasks`` solves is replaced. As with any
``spawn``/``forkserver`` multiprocessing, a worker imports the parent's ``__main__`` module,
so a script that uses the pool keeps its work under ``if __name__ == "__main__":``.

**Cancellation.** The parent sends ``cancel``; a thread in the child stops the solver
through the solver's own interface: CP-SAT's ``CpSolver.stop_search()``, and for HiGHS
highspy's user interrupt (``cancelSolve()`` plus the simplex/IPM/MIP interrupt callbacks,
switched on only then, since they slow simplex down by about a third when always on). Both
return normally: a MIP or CP model with an incumbent comes back ``feasible`` with that plan,
one without comes back ``unknown`` with no values (an interrupted LP has no plan to keep).
A child that does not return within ``cancel_grace`` (a model still being built, a phase
that never looks for an interrupt, such as HiGHS's IIS) is killed, and the outcome is
``unknown`` with no values. To reach the solver objects that the backends create, a worker
replaces ``highspy.Highs`` and ``cp_model.CpSolver`` with subclasses that register
themselves with the running solve (see ``_install_hooks``); the backends are unchanged.

**Events.** ``on_event(type, data)`` is called in the parent, in the thread that called
``solve``, in order: ``("stage", {"stage": "starting"})``, ``("stage", {"stage": "solving",
"solver": "highs"})``, ``("log", {"line": ...})`` for each solver log line as it is written
(HiGHS's logging callback, CP-SAT's ``log_callback``; at most ``max_log_lines``),
``("stage", {"stage": "explaining"})`` when there is an explanation to compute, and
``("stage", {"stage": "done", "status": ..., "reason": ...})``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing as mp
import os
import queue
import resource
import signal
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from typing import Any

__all__ = [
    "EventCallback",
    "Limits",
    "RunOutcome",
    "SolvePool",
    "TESTING_ENV",
    "run_solve",
]

log = logging.getLogger(__name__)

EventCallback = Callable[[str, dict[str, Any]], None]

#: When this variable is "1" in the parent, ``options["_testing"]`` reaches the child
#: (test-only behaviours: hang, ignore SIGTERM, allocate memory, exit); otherwise that
#: option is refused like any unknown one.
TESTING_ENV = "OPTSCRIBE_TESTING"

#: Imported by the fork server before it forks any worker.
PRELOAD = [
    "app.jobs.runner",
    "solvers.api",
    "solvers.backends.highs",
    "solvers.backends.cpsat",
    "solvers.explain",
]

_OPTION_KEYS = frozenset({"time_limit", "backend", "mip_gap", "threads", "explain", "log_lines"})
_BACKENDS = frozenset({"highs", "cpsat", "pyomo"})
_TICK = 0.05  # the parent looks at cancel and the clock this often while a child is quiet
_SAMPLE = 0.2  # and at the child's memory this often
_MAX_LINE = 2000  # characters of one log line sent as an event


# ------------------------------------------------------------------------ limits and outcome


@dataclass(frozen=True)
class Limits:
    """The bounds of one solve (seconds and megabytes)."""

    time_limit: float = 60.0  # the solver's own limit when the options name none
    max_time_limit: float = 3600.0  # options asking for more get this
    grace: float = 2.0  # the hard kill comes this long after a stage's limit
    build_seconds: float = 60.0  # loading, lowering and compiling; reading the solution back
    explain_seconds: float | None = None  # None: as the backends budget it, min(max(limit, 5), 120)
    term_grace: float = 1.0  # SIGTERM, then SIGKILL this long after
    cancel_grace: float = 0.5  # how long a cancelled solver has to hand back its plan
    memory_mb: int | None = 2048  # RLIMIT_AS of the child (address space); None: no cap
    threads: int | None = 1  # solver threads when the options name none (None: the solver's default)
    max_log_lines: int = 10_000  # log events per solve; the rest are counted, not sent
    start_timeout: float = 120.0  # a new worker's imports and warm-up

    def __post_init__(self) -> None:
        for name in ("time_limit", "max_time_limit", "grace", "build_seconds", "term_grace", "start_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be positive")
        if self.cancel_grace < 0 or self.max_log_lines < 0:
            raise ValueError("Limits.cancel_grace and Limits.max_log_lines must not be negative")
        if self.memory_mb is not None and self.memory_mb < 64:
            raise ValueError("Limits.memory_mb must be at least 64 (or None for no cap)")
        if self.explain_seconds is not None and not self.explain_seconds > 0:
            raise ValueError("Limits.explain_seconds must be positive (or None)")

    def explain_budget(self, time_limit: float) -> float:
        if self.explain_seconds is not None:
            return self.explain_seconds
        # the HiGHS explanation's budget; CP-SAT's, max(2, min(60, limit)), is never larger
        return min(max(time_limit, 5.0), 120.0)


@dataclass
class RunOutcome:
    """How one solve in a child process ended.

    ``result`` is the result contract (a dict), or None when the model was refused before
    solving (``error`` then says why: kind ``model`` | ``check`` | ``backend``, a message, and
    the issues). ``reason``: ``completed`` (the solver answered, whatever the status),
    ``invalid_model``, ``timeout`` (killed at a stage's limit), ``memory``, ``cancelled``,
    ``crashed`` (the child died on its own), or ``error`` (an unexpected exception in the
    child). ``killed``: the child was stopped by a signal. ``peak_memory_mb``: the child's
    peak resident memory during this solve, when known.
    """

    result: dict[str, Any] | None
    killed: bool
    reason: str
    seconds: float
    peak_memory_mb: float | None = None
    cancelled: bool = False
    stage: str = ""
    error: dict[str, Any] | None = None
    pid: int | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def _error_result(backend: str, message: str, status: str = "error") -> dict[str, Any]:
    from solvers.result import Result, Status

    return Result(status=Status(status), backend=backend, message=message).to_json_dict()


def _task_payload(
    model_json: Mapping[str, Any], options: Mapping[str, Any] | None, limits: Limits, events: bool
) -> dict[str, Any]:
    """Check the options and fill in the limits: what the child is sent."""
    opts = dict(options or {})
    testing = opts.pop("_testing", None)
    if testing is not None and os.environ.get(TESTING_ENV) != "1":
        raise ValueError(f"option '_testing' is honoured only when {TESTING_ENV}=1")
    unknown = sorted(set(opts) - _OPTION_KEYS)
    if unknown:
        raise ValueError(f"unknown solve option(s): {', '.join(unknown)}")
    backend = opts.get("backend")
    if backend in (None, "", "auto"):
        backend = None
    elif backend not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(sorted(_BACKENDS))} or auto")
    asked = opts.get("time_limit")
    if asked is not None and (isinstance(asked, bool) or not isinstance(asked, int | float) or not asked > 0):
        raise ValueError("time_limit must be a positive number of seconds")
    time_limit = min(float(asked) if asked is not None else limits.time_limit, limits.max_time_limit)
    threads = opts.get("threads", limits.threads)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError("threads must be a positive whole number")
    mip_gap = opts.get("mip_gap")
    if mip_gap is not None and (
        isinstance(mip_gap, bool) or not isinstance(mip_gap, int | float) or mip_gap < 0
    ):
        raise ValueError("mip_gap must be a number >= 0")
    log_lines = opts.get("log_lines", 40)
    if isinstance(log_lines, bool) or not isinstance(log_lines, int) or not 0 <= log_lines <= 10_000:
        raise ValueError("log_lines must be a whole number from 0 to 10000")
    return {
        "model": dict(model_json),
        "backend": backend,
        "solve": {
            "time_limit": time_limit,
            "mip_gap": None if mip_gap is None else float(mip_gap),
            "threads": threads,
            "explain": bool(opts.get("explain", True)),
            "log_lines": log_lines,
        },
        "memory_mb": limits.memory_mb,
        "events": events,
        "max_log_lines": limits.max_log_lines,
        "testing": testing,
    }


# ======================================================================== the child


class _Outbox:
    """The child's side of the pipe: one lock for every sender, log lines sent in batches."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.tid: int | None = None
        self.lines: list[str] = []
        self.partial = ""
        self.budget = 0
        self.dropped = 0

    def start(self, tid: int, budget: int) -> None:
        with self.lock:
            self.tid, self.lines, self.partial, self.budget, self.dropped = tid, [], "", budget, 0

    def send(self, msg: tuple[Any, ...]) -> None:
        with self.lock:
            self._flush()
            self.conn.send(msg)

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def end(self) -> None:
        with self.lock:
            if self.partial.strip():
                self._add(self.partial)
            self.partial = ""
            if self.dropped:
                self.lines.append(f"({self.dropped} more log lines were not sent)")
                self.dropped = 0
            self._flush()
            self.tid = None

    def line(self, text: str) -> None:
        with self.lock:
            for ln in text.splitlines():
                self._add(ln)

    def fragment(self, text: str) -> None:
        """Text that may end mid-line (HiGHS writes some lines in pieces)."""
        with self.lock:
            text = self.partial + text
            *done, self.partial = text.split("\n")
            for ln in done:
                self._add(ln)

    def _add(self, ln: str) -> None:
        if self.tid is None:
            return
        if self.budget <= 0:
            self.dropped += 1
            return
        self.budget -= 1
        self.lines.append(ln.rstrip()[:_MAX_LINE])

    def _flush(self) -> None:
        if self.lines and self.tid is not None:
            lines, self.lines = self.lines, []
            self.conn.send(("log", self.tid, lines))


class _Task:
    """The child's state of the solve it is running (the solver hooks report to it)."""

    def __init__(self, tid: int, out: _Outbox, events: bool) -> None:
        self.tid = tid
        self.out = out
        self.events = events
        self.lock = threading.Lock()
        self.cancelled = False
        self.solvers: weakref.WeakSet[Any] = weakref.WeakSet()
        self.runs_started = 0
        self.runs_ended = 0
        self.stage_name = ""

    def stage(self, name: str, **data: Any) -> None:
        self.stage_name = name
        self.out.send(("stage", self.tid, {"stage": name, **data}))

    def register(self, solver: Any) -> None:
        with self.lock:
            self.solvers.add(solver)
            cancelled = self.cancelled
        if cancelled:
            _stop(solver)

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
        self.stop_all()

    def stop_all(self) -> None:
        with self.lock:
            solvers = list(self.solvers)
        for s in solvers:
            _stop(s)

    def run_started(self, solver: str) -> None:
        with self.lock:
            first = self.runs_started == 0
            after_main = self.runs_ended > 0
            self.runs_started += 1
        if first:
            self.stage("solving", solver=solver)
        elif after_main and self.stage_name == "solving":
            self.stage("explaining")

    def run_ended(self) -> None:
        with self.lock:
            self.runs_ended += 1
            first = self.runs_ended == 1
        if first and self.stage_name == "solving":
            self.out.send(("mark", self.tid, "run_end"))


_CURRENT: _Task | None = None
_HOOKED = False


def _stop(solver: Any) -> None:
    """Ask one solver object to stop (safe from any thread, any number of times)."""
    if hasattr(solver, "cancelSolve"):  # highspy.Highs
        if not getattr(solver, "_optscribe_stopped", False):
            solver._optscribe_stopped = True
            solver.cancelSolve()
            if not solver.HandleUserInterrupt:
                solver.HandleUserInterrupt = True
    else:  # CpSolver: a no-op before its search starts, hence repeated by the ticker
        solver.stop_search()


def _highs_log(event: Any) -> None:
    task = _CURRENT
    if task is not None and task.events:
        task.out.fragment(str(event.message))


def _install_hooks() -> None:
    """Make the solver objects the backends create report to the running solve.

    ``highspy.Highs`` and ``cp_model.CpSolver`` are replaced, in this worker process only, by
    subclasses that register with the running ``_Task`` (so a cancel can stop them), tell
    it when a run starts and ends (the stages), and copy their log lines to it. The
    backends look both names up at call time (``highspy.Highs()``, ``cp_model.CpSolver()``).
    """
    global _HOOKED
    if _HOOKED:
        return
    import highspy
    from ortools.sat.python import cp_model

    class Highs(highspy.Highs):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            task = _CURRENT
            if task is not None:
                if task.events:
                    self.cbLogging.subscribe(_highs_log)
                task.register(self)

        def run(self) -> Any:
            task = _CURRENT
            if task is None:
                return super().run()
            task.run_started("highs")
            try:
                return super().run()
            finally:
                task.run_ended()

    class CpSolver(cp_model.CpSolver):
        def solve(self, model: Any, solution_callback: Any = None) -> Any:
            task = _CURRENT
            if task is None:
                return super().solve(model, solution_callback)
            inner = self.log_callback
            if inner is not None and task.events:

                def both(line: str) -> None:
                    inner(line)
                    task.out.line(line)

                self.log_callback = both
            if task.cancelled:
                self.parameters.max_time_in_seconds = 0.0
            task.register(self)
            task.run_started("cpsat")
            try:
                return super().solve(model, solution_callback)
            finally:
                self.log_callback = inner
                task.solvers.discard(self)
                task.run_ended()

    highspy.Highs = Highs
    cp_model.CpSolver = CpSolver  # type: ignore[misc]
    _HOOKED = True


def _warm_up() -> None:
    """One tiny solve on each backend: first-use costs (schema caches, HiGHS's scheduler)."""
    from solvers.api import SolveOptions, solve_model

    model = {
        "schema": "optscribe.model/v1",
        "name": "warm",
        "variables": [{"name": "x", "domain": "integer", "lower": 0, "upper": 3}],
        "objective": {"sense": "maximize", "expression": "x"},
        "constraints": [{"id": "c", "template": "linear", "expression": "2 * x <= 5"}],
    }
    for backend in ("highs", "cpsat"):
        with contextlib.suppress(Exception):
            solve_model(model, backend, SolveOptions(time_limit=5.0, threads=1))


def _status_kb(pid: int | str, keys: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in keys:
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def _set_memory_cap(mb: int | None) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if mb is None:
        target = hard
    else:
        target = mb * 2**20 if hard == resource.RLIM_INFINITY else min(hard, mb * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (target, hard))


def _reset_peak() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # resets VmHWM, the peak resident size


def _testing_hooks(task: _Task, hooks: Mapping[str, Any]) -> None:
    """Behaviours that only tests ask for (see TESTING_ENV)."""
    if hooks.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "allocate_mb" in hooks:
        block = bytearray(int(hooks["allocate_mb"]) * 2**20)
        block[:: 2**12] = b"x" * len(range(0, len(block), 2**12))
        del block
    if "exit" in hooks:
        os._exit(int(hooks["exit"]))
    if "raise" in hooks:
        raise RuntimeError(str(hooks["raise"]))
    if "hang" in hooks:
        if task.stage_name != "solving":
            task.stage("solving", solver="test")
        end = time.monotonic() + float(hooks["hang"])
        while time.monotonic() < end:  # deaf to cancel: a solver that ignores everything
            time.sleep(0.01)


def _solve(task: _Task, p: Mapping[str, Any]) -> dict[str, Any]:
    from solvers.api import SolveOptions, load_model, solve_instance
    from solvers.lower import lower

    model = load_model(p["model"])
    instance = lower(model, collect=True)
    if task.cancelled:
        raise _Cancelled
    result = solve_instance(instance, p["backend"], SolveOptions(**p["solve"]))
    return result.to_json_dict()


class _Cancelled(Exception):
    pass


def _run_task(task: _Task, p: dict[str, Any]) -> bool:
    """Run one solve (already the current task); report it. True when this worker should retire."""
    from solvers.errors import BackendError, CheckFailed, ModelError

    global _CURRENT
    out, tid = task.out, task.tid
    out.start(tid, int(p["max_log_lines"]))
    report: dict[str, Any] = {}
    retire = False
    try:
        _reset_peak()
        _set_memory_cap(p["memory_mb"])
        task.stage("starting")
        if p.get("testing"):
            _testing_hooks(task, p["testing"])
        if task.cancelled:
            raise _Cancelled
        report["result"] = _solve(task, p)
    except MemoryError:
        report = {"memory": True}
        retire = True  # what the failed allocation left half-built is not worth trusting
    except _Cancelled:
        report = {"cancelled_before_solve": True}
    except CheckFailed as e:
        report["error"] = {"kind": "check", "message": str(e), "issues": [i.to_dict() for i in e.issues]}
    except ModelError as e:
        report["error"] = {"kind": "model", "message": str(e), "issues": [e.issue.to_dict()]}
    except BackendError as e:
        report["error"] = {"kind": "backend", "message": str(e), "issues": []}
    except Exception as e:  # noqa: BLE001 - reported to the parent, which says so in the result
        report["error"] = {"kind": "internal", "message": f"{type(e).__name__}: {e}", "issues": []}
        retire = True  # a solver that threw may have left state behind
    finally:
        _CURRENT = None
        _set_memory_cap(None)
    report["cancelled"] = task.cancelled
    report["peak_kb"] = _status_kb("self", ("VmHWM",)).get("VmHWM")
    out.end()
    out.send(("result", tid, report))
    return retire


def _worker_main(conn: Connection, warm: bool) -> None:
    """A worker: solves tasks from the pipe one at a time until told to stop."""
    global _CURRENT
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a worker ends
    t0 = time.perf_counter()
    _install_hooks()
    if warm:
        _warm_up()
    out = _Outbox(conn)
    tasks: queue.SimpleQueue[tuple[int, dict[str, Any]] | None] = queue.SimpleQueue()
    early_cancel: set[int] = set()
    lock = threading.Lock()

    def read() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                os._exit(0)  # the parent is gone: so is the work
            if msg[0] == "solve":
                tasks.put((msg[1], msg[2]))
            elif msg[0] == "cancel":
                with lock:
                    task = _CURRENT
                    if task is not None and task.tid == msg[1]:
                        task.cancel()
                    else:
                        early_cancel.add(msg[1])
            else:
                tasks.put(None)
                return

    def tick() -> None:
        while True:
            time.sleep(_TICK)
            try:
                out.flush()
            except OSError:
                os._exit(0)
            task = _CURRENT
            if task is not None and task.cancelled:
                task.stop_all()

    threading.Thread(target=read, name="optscribe-read", daemon=True).start()
    threading.Thread(target=tick, name="optscribe-tick", daemon=True).start()
    out.send(("ready", None, {"pid": os.getpid(), "seconds": time.perf_counter() - t0}))
    while True:
        item = tasks.get()
        if item is None:
            break
        tid, payload = item
        task = _Task(tid, out, bool(payload["events"]))
        with lock:
            task.cancelled = tid in early_cancel
            early_cancel.difference_update([t for t in early_cancel if t <= tid])
            _CURRENT = task
        if _run_task(task, payload):
            break
    conn.close()


# ======================================================================== the parent


class _Worker:
    """One child process and the parent's end of its pipe."""

    def __init__(self, ctx: Any, warm: bool) -> None:
        here, there = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(there, warm), name="optscribe-solver", daemon=True)
        self.proc.start()
        there.close()
        self.conn: Connection = here
        self.pid: int = self.proc.pid
        self.ready = False
        self.ready_seconds: float | None = None
        self.tasks = 0
        self.broken = False
        self.killed_by_us = False

    def wait_ready(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not self.ready:
            left = end - time.monotonic()
            if left <= 0 or not wait_for([self.conn, self.proc.sentinel], left):
                return False
            if not self.conn.poll():
                return False  # died before it was ready
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return False
            if msg[0] == "ready":
                self.ready = True
                self.ready_seconds = float(msg[2]["seconds"])
        return True

    def kill(self, term_grace: float) -> None:
        """SIGTERM, then SIGKILL after ``term_grace``; reaped either way."""
        self.broken = True
        if self.proc.exitcode is None:
            self.killed_by_us = True
            with contextlib.suppress(OSError):
                self.proc.terminate()
            self.proc.join(term_grace)
            if self.proc.exitcode is None:
                with contextlib.suppress(OSError):
                    self.proc.kill()
                self.proc.join(5.0)

    def stop(self, timeout: float = 2.0) -> None:
        if self.proc.exitcode is None and not self.broken:
            with contextlib.suppress(OSError):
                self.conn.send(("stop",))
            self.proc.join(timeout)
        self.kill(1.0)
        self.close()

    def close(self) -> None:
        self.conn.close()
        if self.proc.exitcode is not None:
            self.proc.close()


def _deliver(on_event: EventCallback | None, kind: str, data: dict[str, Any]) -> None:
    if on_event is None:
        return
    try:
        on_event(kind, data)
    except Exception:  # an observer's failure must not lose the solve
        log.exception("on_event raised; the solve goes on")


def _exit_text(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Watch:
    """The parent's view of one solve on one worker: the clock, cancel, and what comes back."""

    def __init__(
        self,
        w: _Worker,
        payload: dict[str, Any],
        limits: Limits,
        on_event: EventCallback | None,
        cancel: threading.Event | None,
        t0: float,
    ) -> None:
        self.w, self.limits, self.on_event, self.cancel, self.t0 = w, limits, on_event, cancel, t0
        self.backend: str = payload["backend"] or "auto"
        self.time_limit = float(payload["solve"]["time_limit"])
        self.memory_mb: int | None = payload["memory_mb"]
        self.stage = ""  # the last stage the child reported
        self.deadline, self.why = time.monotonic() + limits.build_seconds + limits.grace, "build"
        self.cancel_at: float | None = None
        self.peak_kb: int | None = None
        self.max_vm_kb = 0
        self.next_sample = 0.0

    # -------------------------------------------------------------- the loop

    def run(self, tid: int, payload: dict[str, Any]) -> RunOutcome:
        w = self.w
        w.tasks += 1
        try:
            w.conn.send(("solve", tid, payload))
        except OSError:
            w.broken = True
            return self.finish(self.error("the solver process was gone before the solve"), "crashed")
        while True:
            now = time.monotonic()
            if self.cancel is not None and self.cancel_at is None and self.cancel.is_set():
                self.cancel_at = now
                with contextlib.suppress(OSError):
                    w.conn.send(("cancel", tid))
            if self.stage and now >= self.next_sample:
                self.sample(now)
            limit_at = self.deadline
            if self.cancel_at is not None:
                limit_at = min(limit_at, self.cancel_at + self.limits.cancel_grace)
            if now >= limit_at:
                return self.overran(now)
            wait = min(limit_at, self.next_sample if self.stage else limit_at) - now
            if self.cancel is not None and self.cancel_at is None:
                wait = min(wait, _TICK)
            ready = wait_for([w.conn, w.proc.sentinel], max(wait, 0.001))
            if not ready:
                continue
            if w.conn.poll():
                try:
                    kind, mtid, data = w.conn.recv()
                except (EOFError, OSError):
                    return self.died()
                if mtid != tid:
                    continue  # a straggler from an earlier solve on this worker
                done = self.handle(kind, data)
                if done is not None:
                    return done
            elif w.proc.sentinel in ready:
                return self.died()

    def handle(self, kind: str, data: Any) -> RunOutcome | None:
        now = time.monotonic()
        lim = self.limits
        if kind == "log":
            for line in data:
                _deliver(self.on_event, "log", {"line": line})
        elif kind == "stage":
            self.stage = data["stage"]
            if self.stage == "solving":
                self.deadline, self.why = now + self.time_limit + lim.grace, "solve"
                if self.backend == "auto" and data.get("solver") in _BACKENDS:
                    self.backend = data["solver"]
            elif self.stage == "explaining":
                self.deadline, self.why = now + lim.explain_budget(self.time_limit) + lim.grace, "explain"
            _deliver(self.on_event, "stage", dict(data))
        elif kind == "mark" and data == "run_end" and self.stage == "solving":
            self.deadline, self.why = now + lim.build_seconds + lim.grace, "finish"
        elif kind == "result":
            if data.get("peak_kb"):
                self.peak_kb = int(data["peak_kb"])
            return self.reported(data)
        return None

    def sample(self, now: float) -> None:
        st = _status_kb(self.w.pid, ("VmHWM", "VmSize"))
        if "VmHWM" in st:
            self.peak_kb = max(self.peak_kb or 0, st["VmHWM"])
        self.max_vm_kb = max(self.max_vm_kb, st.get("VmSize", 0))
        self.next_sample = now + _SAMPLE

    # -------------------------------------------------------------- endings

    def error(self, message: str, status: str = "error") -> dict[str, Any]:
        return _error_result(self.backend, message, status)

    def finish(
        self,
        result: dict[str, Any] | None,
        reason: str,
        *,
        killed: bool = False,
        cancelled: bool = False,
        error: dict[str, Any] | None = None,
    ) -> RunOutcome:
        out = RunOutcome(
            result=result,
            killed=killed,
            reason=reason,
            seconds=time.monotonic() - self.t0,
            peak_memory_mb=None if self.peak_kb is None else round(self.peak_kb / 1024, 1),
            cancelled=cancelled or self.cancel_at is not None,
            stage=self.stage,
            error=error,
            pid=self.w.pid,
        )
        done: dict[str, Any] = {"stage": "done", "reason": reason}
        if result is not None:
            done["status"] = result["status"]
        _deliver(self.on_event, "stage", done)
        return out

    def overran(self, now: float) -> RunOutcome:
        lim = self.limits
        self.w.kill(lim.term_grace)
        secs = time.monotonic() - self.t0
        if self.cancel_at is not None and now >= self.cancel_at + lim.cancel_grace:
            msg = (
                f"cancelled; the solver did not stop within {lim.cancel_grace:g} s and was killed, "
                "so no plan was kept"
            )
            return self.finish(self.error(msg, "unknown"), "cancelled", killed=True)
        if self.why == "solve":
            msg = f"killed after {secs:.1f} s (the solver ignored its time limit)"
        elif self.why == "explain":
            budget = lim.explain_budget(self.time_limit)
            msg = f"killed after {secs:.1f} s (the explanation overran its budget of {budget:g} s)"
        else:
            msg = (
                f"killed after {secs:.1f} s (building the model or reading the solution took longer "
                f"than {lim.build_seconds:g} s)"
            )
        return self.finish(self.error(msg), "timeout", killed=True)

    def died(self) -> RunOutcome:
        w = self.w
        w.broken = True
        w.proc.join(self.limits.term_grace)
        code = w.proc.exitcode
        secs = time.monotonic() - self.t0
        by_signal = code is not None and code < 0
        near_cap = self.memory_mb is not None and self.max_vm_kb >= 0.85 * self.memory_mb * 1024
        if by_signal and near_cap:
            msg = f"killed: memory limit of {self.memory_mb} MB exceeded"
            return self.finish(self.error(msg), "memory", killed=True)
        if code == -signal.SIGKILL:
            msg = f"killed after {secs:.1f} s by SIGKILL from outside (likely the machine ran out of memory)"
            return self.finish(self.error(msg), "memory", killed=True)
        msg = f"the solver process died after {secs:.1f} s ({_exit_text(code)})"
        return self.finish(self.error(msg), "crashed", killed=by_signal)

    def reported(self, data: dict[str, Any]) -> RunOutcome:
        if data.get("memory"):
            self.w.broken = True  # it retires itself; make sure it is gone
            return self.finish(self.error(f"killed: memory limit of {self.memory_mb} MB exceeded"), "memory")
        if data.get("cancelled_before_solve"):
            msg = "cancelled before the solver started; no plan"
            return self.finish(self.error(msg, "unknown"), "cancelled", cancelled=True)
        err = data.get("error")
        if err is not None:
            if err["kind"] == "internal":
                self.w.broken = True
                return self.finish(self.error(f"the solver failed: {err['message']}"), "error")
            return self.finish(None, "invalid_model", error=err, cancelled=bool(data.get("cancelled")))
        result: dict[str, Any] = data["result"]
        if not data.get("cancelled"):
            return self.finish(result, "completed")
        if result["status"] in ("optimal", "infeasible", "unbounded", "infeasible_or_unbounded"):
            note = "cancelled after the solver had finished; the result stands"
        elif result.get("values"):
            note = "cancelled; the best plan found so far is kept"
        else:
            note = "cancelled before the solver found a plan"
        result["message"] = note + (f" ({result['message']})" if result.get("message") else "")
        return self.finish(result, "cancelled", cancelled=True)


# ------------------------------------------------------------------------ the pool


class SolvePool:
    """Warm worker processes, reused for many solves; thread-safe.

    ``solve`` blocks the calling thread until a worker is free and the solve has ended. A
    worker that was killed, failed, ran out of memory or has served ``max_tasks`` solves is
    replaced by a new one (forked from the warm fork server: milliseconds, not the imports'
    half second). ``close()`` stops the workers; the pool is also a context manager.
    """

    def __init__(
        self,
        size: int = 2,
        *,
        limits: Limits | None = None,
        context: str = "forkserver",
        warm: bool = True,
        max_tasks: int = 1000,
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one worker")
        if context not in ("forkserver", "spawn"):
            raise ValueError("context must be 'forkserver' or 'spawn' (fork is unsafe in a threaded service)")
        self.size = size
        self.limits = limits or Limits()
        self.context = context
        self.warm = warm
        self.max_tasks = max_tasks
        self._ctx: Any = mp.get_context(context)
        if context == "forkserver":
            self._ctx.set_forkserver_preload(PRELOAD)  # no effect once the fork server runs
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()  # the warmest first
        self._lock = threading.Lock()
        self._closed = False
        self._ids = itertools.count(1)
        self.stats = {"started": 0, "replaced": 0, "killed": 0, "solves": 0}
        self._workers: set[_Worker] = set()
        for _ in range(size):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        w = _Worker(self._ctx, self.warm)
        with self._lock:
            self.stats["started"] += 1
            self._workers.add(w)
        return w

    def pids(self) -> list[int]:
        """The process ids of the pool's live workers, idle and busy."""
        with self._lock:
            return sorted(w.pid for w in self._workers)

    def wait_ready(self, timeout: float | None = None) -> list[float]:
        """Block until every idle worker has started; their start-up seconds (imports, warm-up)."""
        workers: list[_Worker] = []
        while True:
            try:
                workers.append(self._idle.get_nowait())
            except queue.Empty:
                break
        try:
            for w in workers:
                if not w.wait_ready(timeout or self.limits.start_timeout):
                    raise RuntimeError(f"solver worker {w.pid} did not start")
            return [w.ready_seconds or 0.0 for w in workers]
        finally:
            for w in workers:
                self._idle.put(w)

    def solve(
        self,
        model_json: Mapping[str, Any],
        options: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
        *,
        on_event: EventCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> RunOutcome:
        limits = limits or self.limits
        payload = _task_payload(model_json, options, limits, on_event is not None)
        t0 = time.monotonic()
        backend = payload["backend"] or "auto"

        def refused(message: str, status: str, reason: str, killed: bool = False) -> RunOutcome:
            _deliver(on_event, "stage", {"stage": "done", "status": status, "reason": reason})
            return RunOutcome(
                _error_result(backend, message, status),
                killed,
                reason,
                time.monotonic() - t0,
                cancelled=reason == "cancelled",
            )

        w = self._acquire(cancel, limits)
        if w is None:
            if self._closed:
                raise RuntimeError("the solve pool is closed")
            return refused("cancelled before a solver process was free; no plan", "unknown", "cancelled")
        outcome: RunOutcome | None = None
        try:
            if not w.wait_ready(limits.start_timeout):
                w.kill(limits.term_grace)
                msg = f"the solver process did not start within {limits.start_timeout:g} s"
                outcome = refused(msg, "error", "crashed")
                return outcome
            outcome = _Watch(w, payload, limits, on_event, cancel, t0).run(next(self._ids), payload)
            return outcome
        finally:
            self._release(w, outcome)

    def _acquire(self, cancel: threading.Event | None, limits: Limits) -> _Worker | None:
        """An idle worker (the most recently used first), or None when cancelled or closed."""
        while not self._closed:
            if cancel is not None and cancel.is_set():
                return None
            try:
                w = self._idle.get(timeout=_TICK if cancel is not None else 0.5)
            except queue.Empty:
                continue
            if w.proc.exitcode is None:
                return w
            # it died while idle (the system's OOM killer, an operator): replace it, take the next
            w.broken = True
            self._release(w, None, solved=False)
        return None

    def _release(self, w: _Worker, outcome: RunOutcome | None, solved: bool = True) -> None:
        """Back to the idle workers, or stopped and replaced."""
        with self._lock:
            self.stats["solves"] += solved
            if w.killed_by_us:
                self.stats["killed"] += 1
        retire = w.broken or w.proc.exitcode is not None or w.tasks >= self.max_tasks
        if outcome is None and not retire:
            retire = True  # an exception mid-solve: the pipe may hold anything
        if self._closed or retire:
            w.stop()
            with self._lock:
                self._workers.discard(w)
                self.stats["replaced"] += not self._closed
            if not self._closed:
                self._idle.put(self._spawn())
        else:
            self._idle.put(w)

    def close(self) -> None:
        """Stop the idle workers now; busy ones stop when their solve ends."""
        self._closed = True
        while True:
            try:
                w = self._idle.get_nowait()
            except queue.Empty:
                break
            w.stop()
            with self._lock:
                self._workers.discard(w)

    def __enter__(self) -> SolvePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_solve(
    model_json: Mapping[str, Any],
    options: Mapping[str, Any] | None,
    limits: Limits,
    *,
    on_event: EventCallback | None = None,
    cancel: threading.Event | None = None,
    pool: SolvePool | None = None,
) -> RunOutcome:
    """Solve one model in a child process under ``limits``.

    With ``pool`` a warm worker of that pool does it; without, a worker is started for this
    solve alone (forked from the fork server, without warm-up) and stopped afterwards.
    """
    if pool is not None:
        return pool.solve(model_json, options, limits, on_event=on_event, cancel=cancel)
    with SolvePool(1, limits=limits, warm=False) as one:
        return one.solve(model_json, options, limits, on_event=on_event, cancel=cancel)
