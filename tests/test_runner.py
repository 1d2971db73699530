"""The solve runner, with real child processes: limits, kills, cancellation, events, the pool."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.jobs.runner import TESTING_ENV, Limits, RunOutcome, SolvePool, run_solve
from solvers.api import SolveOptions, solve_model

CORE = Path(__file__).parent / "golden" / "core"
FAST = Limits(time_limit=10.0, grace=0.5, term_grace=0.5, cancel_grace=0.5, build_seconds=20.0)


def _golden(name: str) -> dict[str, Any]:
    model: dict[str, Any] = json.loads((CORE / f"{name}.json").read_text())["model"]
    return model


def _market_split(m: int = 5, n: int = 40, seed: int = 7) -> dict[str, Any]:
    """Cornuejols-Dawande market split with slacks: a plan at once, optimality out of reach."""
    rng = random.Random(seed)
    a = [[rng.randrange(100) for _ in range(n)] for _ in range(m)]
    rows, cols = [f"r{i}" for i in range(m)], [f"j{j}" for j in range(n)]
    return {
        "schema": "optscribe.model/v1",
        "name": "market_split",
        "sets": {"M": rows, "N": cols},
        "parameters": {
            "a": {
                "index": ["M", "N"],
                "values": {rows[i]: dict(zip(cols, a[i], strict=True)) for i in range(m)},
            },
            "d": {"index": ["M"], "values": {rows[i]: sum(a[i]) // 2 for i in range(m)}},
        },
        "variables": [
            {"name": "x", "index": ["N"], "domain": "binary"},
            {"name": "over", "index": ["M"], "domain": "integer", "lower": 0, "upper": 10000},
            {"name": "under", "index": ["M"], "domain": "integer", "lower": 0, "upper": 10000},
        ],
        "objective": {"sense": "minimize", "expression": "sum(over[i] + under[i] for i in M)"},
        "constraints": [
            {
                "id": "split",
                "template": "balance",
                "for_each": "i in M",
                "expression": "sum(a[i, j] * x[j] for j in N) + over[i] - under[i] == d[i]",
                "source": "each market gets half",
            }
        ],
    }


def _big_lp(n: int) -> dict[str, Any]:
    return {
        "schema": "optscribe.model/v1",
        "name": "big",
        "sets": {"T": {"range": [1, n]}},
        "variables": [{"name": "x", "index": ["T"], "domain": "continuous", "lower": 0, "upper": 1}],
        "objective": {"sense": "maximize", "expression": "sum(x[t] for t in T)"},
        "constraints": [{"id": "c", "template": "linear", "for_each": "t in T", "expression": "x[t] <= 0.5"}],
    }


def _state(pid: int) -> str | None:
    """The process's state letter (Z: a zombie), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1]
    except OSError:
        return None
    return None


def _children() -> set[int | None]:
    return {p.pid for p in multiprocessing.active_children()}


def _vm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmSize")


def _comparable(result: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "status",
        "objective",
        "bound",
        "gap",
        "values",
        "duals",
        "reduced_costs",
        "backend",
        "solver_version",
    )
    out = {k: result[k] for k in keep}
    expl = result.get("explanation")
    if expl:
        out["conflict"] = expl["conflict"]
        out["relaxations"] = expl["relaxations"]
    return out


@pytest.fixture(scope="module", autouse=True)
def testing_env() -> Iterator[None]:
    old = os.environ.get(TESTING_ENV)
    os.environ[TESTING_ENV] = "1"
    yield
    if old is None:
        del os.environ[TESTING_ENV]
    else:
        os.environ[TESTING_ENV] = old


@pytest.fixture(scope="module")
def pool(testing_env: None) -> Iterator[SolvePool]:
    with SolvePool(2, limits=FAST) as p:
        p.wait_ready()
        yield p
    assert multiprocessing.active_children() == []


def _solve(
    pool: SolvePool, model: dict[str, Any], **options: Any
) -> tuple[RunOutcome, list[tuple[str, Any]]]:
    events: list[tuple[str, Any]] = []
    out = pool.solve(model, options, on_event=lambda kind, data: events.append((kind, data)))
    return out, events


# ------------------------------------------------------------------------ results


@pytest.mark.parametrize(
    ("name", "backend"),
    [("knapsack", "highs"), ("knapsack", "cpsat"), ("infeasible_lp", "highs"), ("infeasible_cp", "cpsat")],
)
def test_a_solve_in_a_child_answers_what_one_in_process_does(
    pool: SolvePool, name: str, backend: str
) -> None:
    model = _golden(name)
    out, _ = _solve(pool, model, backend=backend, time_limit=10)
    here = solve_model(model, backend, SolveOptions(time_limit=10, threads=1)).to_json_dict()
    assert out.reason == "completed" and not out.killed and not out.cancelled
    assert out.result is not None
    assert _comparable(out.result) == _comparable(here)
    assert out.peak_memory_mb is not None and out.peak_memory_mb > 10
    assert out.stage in ("solving", "explaining")


def test_a_refused_model_says_why_with_issues(pool: SolvePool) -> None:
    bad = {
        **_golden("knapsack"),
        "objective": {"sense": "maximize", "expression": "sum(value[i] * nope[i] for i in I)"},
    }
    out, events = _solve(pool, bad)
    assert out.reason == "invalid_model" and out.result is None
    assert (
        out.error is not None and out.error["kind"] in ("model", "check") and "nope" in out.error["message"]
    )
    assert events[-1] == ("stage", {"stage": "done", "reason": "invalid_model"})
    cont = _golden("knapsack")
    cont["variables"] = [{**cont["variables"][0], "domain": "continuous"}]
    out, _ = _solve(pool, cont, backend="cpsat")
    assert out.reason == "invalid_model" and out.error is not None and out.error["kind"] == "backend"


def test_options_are_checked_in_the_parent(pool: SolvePool, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown solve option"):
        pool.solve(_golden("knapsack"), {"timelimit": 3})
    with pytest.raises(ValueError, match="time_limit"):
        pool.solve(_golden("knapsack"), {"time_limit": -1})
    with pytest.raises(ValueError, match="unknown backend"):
        pool.solve(_golden("knapsack"), {"backend": "gurobi"})
    monkeypatch.delenv(TESTING_ENV)
    with pytest.raises(ValueError, match=TESTING_ENV):
        pool.solve(_golden("knapsack"), {"_testing": {"hang": 1}})


# ------------------------------------------------------------------------ limits


def test_a_solver_that_ignores_its_time_limit_is_killed_at_limit_plus_grace(pool: SolvePool) -> None:
    before = dict(pool.stats)
    out, events = _solve(pool, _golden("knapsack"), time_limit=0.3, _testing={"hang": 60})
    assert out.killed and out.reason == "timeout" and out.stage == "solving"
    assert out.result is not None and out.result["status"] == "error"
    assert out.result["message"].startswith("killed after ")
    assert out.result["message"].endswith("s (the solver ignored its time limit)")
    assert 0.8 <= out.seconds < 2.5  # 0.3 s limit + 0.5 s grace, then SIGTERM
    assert [e[1]["stage"] for e in events if e[0] == "stage"] == ["starting", "solving", "done"]
    assert pool.stats["killed"] == before["killed"] + 1 and pool.stats["replaced"] == before["replaced"] + 1
    assert _state(out.pid or 0) in (None,), "the killed worker is reaped, not a zombie"
    again, _ = _solve(pool, _golden("knapsack"))
    assert again.reason == "completed" and again.pid != out.pid


def test_sigkill_follows_when_sigterm_is_ignored(pool: SolvePool) -> None:
    out, _ = _solve(pool, _golden("knapsack"), time_limit=0.2, _testing={"ignore_sigterm": True, "hang": 60})
    assert out.killed and out.reason == "timeout"
    assert 1.2 <= out.seconds < 3.5  # 0.2 + 0.5 grace + 0.5 term grace, then SIGKILL
    assert _state(out.pid or 0) is None


def test_the_memory_limit_is_reported(pool: SolvePool) -> None:
    probe, _ = _solve(pool, _golden("knapsack"))
    cap = int(_vm_mb(probe.pid or 0)) + 256
    limits = Limits(time_limit=10.0, grace=0.5, memory_mb=cap)
    out = pool.solve(_golden("knapsack"), {"_testing": {"allocate_mb": 4096}}, limits)
    assert out.reason == "memory" and out.result is not None and out.result["status"] == "error"
    assert out.result["message"] == f"killed: memory limit of {cap} MB exceeded"
    # a real model too big for the cap (two million columns) fails the same way, in lowering
    out = pool.solve(_big_lp(2_000_000), {"backend": "highs"}, limits)
    assert out.reason == "memory" and out.result is not None
    assert out.result["message"] == f"killed: memory limit of {cap} MB exceeded"
    ok, _ = _solve(pool, _golden("knapsack"))
    assert ok.reason == "completed" and ok.result is not None and ok.result["status"] == "optimal"


def test_a_child_that_dies_or_throws_is_reported(pool: SolvePool) -> None:
    out, _ = _solve(pool, _golden("knapsack"), _testing={"exit": 3})
    assert out.reason == "crashed" and not out.killed
    assert out.result is not None and "exit code 3" in out.result["message"]
    before = pool.stats["replaced"]
    out, _ = _solve(pool, _golden("knapsack"), _testing={"raise": "boom"})
    assert out.reason == "error" and out.result is not None and out.result["status"] == "error"
    assert out.result["message"] == "the solver failed: RuntimeError: boom"
    assert pool.stats["replaced"] == before + 1  # a worker that threw is not trusted again


# ------------------------------------------------------------------------ cancellation


def _cancel_after_solving(delay: float) -> tuple[threading.Event, list[float], Any]:
    cancel = threading.Event()
    when: list[float] = []
    events: list[tuple[str, Any]] = []

    def on_event(kind: str, data: Any) -> None:
        events.append((kind, data))
        if kind == "stage" and data["stage"] == "solving":

            def fire() -> None:
                when.append(time.monotonic())
                cancel.set()

            threading.Timer(delay, fire).start()

    on_event.events = events  # type: ignore[attr-defined]
    return cancel, when, on_event


@pytest.mark.parametrize("backend", ["highs", "cpsat"])
def test_cancel_stops_the_solver_and_keeps_the_best_plan(pool: SolvePool, backend: str) -> None:
    cancel, when, on_event = _cancel_after_solving(0.6)
    out = pool.solve(
        _market_split(), {"backend": backend, "time_limit": 30}, on_event=on_event, cancel=cancel
    )
    returned = time.monotonic()
    assert when and returned - when[0] < 1.0
    assert out.cancelled and out.reason == "cancelled" and not out.killed
    assert out.result is not None and out.result["status"] == "feasible"
    assert len(out.result["values"]) == 50 and out.result["objective"] is not None
    assert out.result["message"].startswith("cancelled; the best plan found so far is kept")
    assert on_event.events[-1][1]["stage"] == "done"
    again, _ = _solve(pool, _golden("knapsack"), backend=backend)
    assert again.pid == out.pid and again.result is not None and again.result["status"] == "optimal"


def test_cancel_of_a_deaf_child_kills_it_within_a_second(pool: SolvePool) -> None:
    cancel, when, on_event = _cancel_after_solving(0.2)
    out = pool.solve(_golden("knapsack"), {"_testing": {"hang": 60}}, on_event=on_event, cancel=cancel)
    assert when and time.monotonic() - when[0] < 1.0
    assert out.cancelled and out.killed and out.reason == "cancelled"
    assert out.result is not None and out.result["status"] == "unknown" and out.result["values"] == {}
    assert "no plan was kept" in out.result["message"]


def test_cancel_before_a_worker_is_free_returns_at_once(testing_env: None) -> None:
    with SolvePool(1, limits=FAST) as one:
        one.wait_ready()
        busy = threading.Thread(target=one.solve, args=(_golden("knapsack"), {"_testing": {"hang": 1.0}}))
        busy.start()
        time.sleep(0.2)
        cancel = threading.Event()
        cancel.set()
        t0 = time.monotonic()
        out = one.solve(_golden("knapsack"), {}, cancel=cancel)
        assert time.monotonic() - t0 < 0.5
        assert out.reason == "cancelled" and out.result is not None and out.result["status"] == "unknown"
        busy.join()


# ------------------------------------------------------------------------ events


def test_events_arrive_in_order_with_log_lines(pool: SolvePool) -> None:
    out, events = _solve(pool, _golden("knapsack"), backend="highs")
    stages = [d["stage"] for k, d in events if k == "stage"]
    assert stages == ["starting", "solving", "done"]
    first_log = next(i for i, (k, _) in enumerate(events) if k == "log")
    solving = next(i for i, (k, d) in enumerate(events) if k == "stage" and d["stage"] == "solving")
    assert solving < first_log < len(events) - 1
    lines = [d["line"] for k, d in events if k == "log"]
    assert any("Presolving model" in ln for ln in lines) and any("Solving report" in ln for ln in lines)
    assert events[-1] == ("stage", {"stage": "done", "reason": "completed", "status": "optimal"})
    assert out.result is not None and out.result["log_tail"].splitlines()[-1].strip() in [
        ln.strip() for ln in lines
    ]

    _, events = _solve(pool, _golden("knapsack"), backend="cpsat")
    lines = [d["line"] for k, d in events if k == "log"]
    assert any("CP-SAT" in ln for ln in lines)

    _, events = _solve(pool, _golden("infeasible_lp"), backend="highs")
    assert [d["stage"] for k, d in events if k == "stage"] == ["starting", "solving", "explaining", "done"]


def test_log_events_are_bounded(pool: SolvePool) -> None:
    limits = Limits(time_limit=10.0, max_log_lines=5)
    events: list[tuple[str, Any]] = []
    pool.solve(_golden("knapsack"), {"backend": "cpsat"}, limits, on_event=lambda k, d: events.append((k, d)))
    lines = [d["line"] for k, d in events if k == "log"]
    assert len(lines) == 6 and lines[-1].endswith("more log lines were not sent)")


def test_a_failing_observer_does_not_lose_the_solve(
    pool: SolvePool, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(kind: str, data: Any) -> None:
        raise RuntimeError("observer down")

    out = pool.solve(_golden("knapsack"), {}, on_event=boom)
    assert out.reason == "completed" and "on_event raised" in caplog.text


# ------------------------------------------------------------------------ the pool


def test_the_pool_reuses_warm_workers(testing_env: None) -> None:
    # spawn pays the imports in the worker's first solve; reuse pays them never again
    with SolvePool(1, limits=FAST, context="spawn", warm=False) as one:
        t0 = time.perf_counter()
        first = one.solve(_golden("knapsack"), {"backend": "highs"})
        t1 = time.perf_counter()
        second = one.solve(_golden("knapsack"), {"backend": "highs"})
        t2 = time.perf_counter()
        assert first.pid == second.pid and one.stats["started"] == 1
        assert t2 - t1 < (t1 - t0) / 2
        pid = first.pid or 0
    assert _state(pid) is None and pid not in _children()


def test_a_worker_that_died_while_idle_is_replaced_before_use(pool: SolvePool) -> None:
    last, _ = _solve(pool, _golden("knapsack"))
    assert last.pid is not None
    os.kill(last.pid, signal.SIGKILL)  # the most recently used worker is the next one handed out
    deadline = time.monotonic() + 5
    while _state(last.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    out, _ = _solve(pool, _golden("knapsack"))
    assert out.reason == "completed" and out.pid != last.pid


def test_killed_workers_leave_no_zombies_behind(testing_env: None) -> None:
    """Spawned workers are this process's children: a killed one is reaped, and so is a stopped one."""
    with SolvePool(1, limits=FAST, context="spawn", warm=False) as one:
        killed = one.solve(_golden("knapsack"), {"time_limit": 0.1, "_testing": {"hang": 30}})
        assert killed.killed and killed.pid is not None and _state(killed.pid) is None
        ok = one.solve(_golden("knapsack"), {})
        assert ok.reason == "completed" and ok.pid not in (None, killed.pid) and one.stats["replaced"] == 1
    assert _state(ok.pid or 0) is None
    assert not {killed.pid, ok.pid} & _children()


def test_run_solve_without_a_pool_leaves_no_process_behind(testing_env: None) -> None:
    out = run_solve(_golden("furniture_design_example"), {"time_limit": 5}, FAST)
    assert out.reason == "completed" and out.result is not None and out.result["objective"] == 1350
    assert _state(out.pid or 0) is None and out.pid not in _children()
