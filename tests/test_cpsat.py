"""The CP-SAT backend on ground instances built by hand (no ``solvers.lower`` needed)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from solvers.backends.base import SolveOptions
from solvers.backends.cpsat import CpSatBackend
from solvers.errors import BackendError
from solvers.ir import (
    INF,
    And,
    Atom,
    Aux,
    Columns,
    Const,
    Instance,
    Interner,
    Intervals,
    LinTerm,
    Lit,
    LogicCon,
    Not,
    Objective,
    Or,
    RowBlock,
    VarBlock,
)
from solvers.model import Model
from solvers.result import Result, Status

Key = tuple[Any, ...]


class IB:
    """A tiny hand builder of ``Instance`` objects for tests."""

    def __init__(self) -> None:
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.integer: list[bool] = []
        self.blocks: list[VarBlock] = []
        self.interner = Interner()
        self.row_blocks: list[RowBlock] = []
        self.logic: list[LogicCon] = []
        self.iv_start: list[int] = []
        self.iv_end: list[int] = []
        self.iv_dur: list[float] = []
        self.iv_names: list[str] = []
        self.aux: list[Aux] = []
        self.objective: Objective | None = None

    def _codes(self, keys: list[Key]) -> np.ndarray[Any, Any]:
        arity = len(keys[0]) if keys else 0
        arr = np.array([[self.interner.code(e) for e in k] for k in keys], dtype=np.int64)
        return arr.reshape(len(keys), arity)

    def var(
        self,
        name: str,
        domain: str = "integer",
        lb: float = 0.0,
        ub: float = INF,
        keys: list[Key] | None = None,
    ) -> dict[Key, int]:
        keys = keys if keys is not None else [()]
        off = len(self.lower)
        self.blocks.append(VarBlock(name, domain, off, len(keys), self._codes(keys)))
        if domain in ("binary", "boolean"):
            lb, ub = max(lb, 0.0), min(ub, 1.0)
        for _ in keys:
            self.lower.append(lb)
            self.upper.append(ub)
            self.integer.append(domain not in ("continuous", "aux"))
        return {k: off + i for i, k in enumerate(keys)}

    def interval(
        self, name: str, durations: dict[Key, float], start: tuple[float, float], end: tuple[float, float]
    ) -> dict[Key, int]:
        keys = list(durations)
        off = len(self.lower)
        self.blocks.append(VarBlock(name, "interval", off, 2 * len(keys), self._codes(keys)))
        out: dict[Key, int] = {}
        for i, k in enumerate(keys):
            s, e = off + 2 * i, off + 2 * i + 1
            self.lower += [start[0], end[0]]
            self.upper += [start[1], end[1]]
            self.integer += [False, False]
            out[k] = len(self.iv_start)
            self.iv_start.append(s)
            self.iv_end.append(e)
            self.iv_dur.append(durations[k])
            self.iv_names.append(f"{name}[{','.join(str(x) for x in k)}]" if k else name)
        return out

    def start(self, i: int) -> int:
        return self.iv_start[i]

    def end(self, i: int) -> int:
        return self.iv_end[i]

    def rows(
        self,
        cid: str,
        rows: list[tuple[dict[int, float], float, float]],
        keys: list[Key] | None = None,
        template: str = "linear",
        aux: bool = False,
        suffix: str = "",
        source: str | None = None,
    ) -> None:
        r_, c_, v_ = [], [], []
        for i, (terms, _, _) in enumerate(rows):
            for c, v in terms.items():
                r_.append(i)
                c_.append(c)
                v_.append(v)
        self.row_blocks.append(
            RowBlock(
                cid=cid,
                template=template,
                source=source or f"sentence of {cid}",
                n=len(rows),
                rows=np.array(r_, dtype=np.int64),
                cols=np.array(c_, dtype=np.int64),
                coefs=np.array(v_, dtype=np.float64),
                lower=np.array([lo for _, lo, _ in rows], dtype=np.float64),
                upper=np.array([hi for _, _, hi in rows], dtype=np.float64),
                keys=self._codes(keys) if keys else np.zeros((len(rows), 0), dtype=np.int64),
                aux=aux,
                suffix=suffix,
            )
        )

    def con(self, cid: str, template: str, data: dict[str, Any], name: str | None = None) -> None:
        self.logic.append(LogicCon(cid, name or cid, template, f"sentence of {cid}", data))

    def minimize(self, terms: dict[int, float], const: float = 0.0, sense: str = "minimize") -> None:
        e = np.zeros(0, dtype=np.int64)
        self.objective = Objective(
            sense=sense,
            cols=np.array(list(terms), dtype=np.int64),
            coefs=np.array(list(terms.values()), dtype=np.float64),
            const=const,
            qcols1=e,
            qcols2=e,
            qcoefs=np.zeros(0),
        )

    def maximize(self, terms: dict[int, float], const: float = 0.0) -> None:
        self.minimize(terms, const, sense="maximize")

    def build(self) -> Instance:
        cols = Columns(
            lower=np.array(self.lower, dtype=np.float64),
            upper=np.array(self.upper, dtype=np.float64),
            integer=np.array(self.integer, dtype=np.bool_),
            blocks=self.blocks,
            interner=self.interner,
        )
        iv = Intervals(
            start_col=np.array(self.iv_start, dtype=np.int64),
            end_col=np.array(self.iv_end, dtype=np.int64),
            duration=np.array(self.iv_dur, dtype=np.float64),
            names=self.iv_names,
        )
        return Instance(
            model=Model(name="test"),
            columns=cols,
            row_blocks=self.row_blocks,
            logic=self.logic,
            intervals=iv,
            objective=self.objective,
            aux=self.aux,
        )


def solve(inst: Instance, **kw: Any) -> Result:
    backend = CpSatBackend()
    assert backend.accepts(inst) is None
    opts = SolveOptions(**{"time_limit": 20.0, "threads": 2, **kw})
    return backend.solve(backend.compile(inst, opts), opts)


# ------------------------------------------------------------------ scheduling

FT06 = [
    [(2, 1), (0, 3), (1, 6), (3, 7), (5, 3), (4, 6)],
    [(1, 8), (2, 5), (4, 10), (5, 10), (0, 10), (3, 4)],
    [(2, 5), (3, 4), (5, 8), (0, 9), (1, 1), (4, 7)],
    [(1, 5), (0, 5), (2, 5), (3, 3), (4, 8), (5, 9)],
    [(2, 9), (1, 3), (4, 5), (5, 4), (0, 3), (3, 1)],
    [(1, 3), (3, 3), (5, 9), (0, 10), (4, 4), (2, 1)],
]


def job_shop(jobs: list[list[tuple[int, int]]]) -> tuple[IB, dict[Key, int]]:
    """Intervals op[j,k], precedence along each job, no_overlap per machine, min makespan."""
    ib = IB()
    horizon = float(sum(d for job in jobs for _, d in job))
    dur = {(j, k): float(d) for j, job in enumerate(jobs) for k, (_, d) in enumerate(job)}
    op = ib.interval("op", dur, (0, horizon), (0, horizon))
    for j, job in enumerate(jobs):
        for k in range(len(job) - 1):
            ib.con(
                "order",
                "precedence",
                {"before": op[j, k], "after": op[j, k + 1], "lag": 0.0},
                name=f"order[{j},{k}]",
            )
    machines = sorted({m for job in jobs for m, _ in job})
    for m in machines:
        ivs = [op[j, k] for j, job in enumerate(jobs) for k, (mm, _) in enumerate(job) if mm == m]
        ib.con("machine", "no_overlap", {"intervals": ivs}, name=f"machine[{m}]")
    z = ib.var("__makespan", "aux", lb=-INF)[()]
    ib.aux.append(Aux(col=z, kind="max", where="objective"))
    last = [op[j, len(job) - 1] for j, job in enumerate(jobs)]
    ib.rows(
        "objective",
        [({z: 1.0, ib.end(i): -1.0}, 0.0, INF) for i in last],
        aux=True,
        suffix=".max",
        keys=[(j,) for j in range(len(jobs))],
    )
    ib.minimize({z: 1.0})
    return ib, op


def test_ft06_optimum_55() -> None:
    ib, op = job_shop(FT06)
    res = solve(ib.build(), time_limit=60.0)
    assert res.status == Status.OPTIMAL
    assert res.objective == pytest.approx(55.0)
    assert res.bound == pytest.approx(55.0)
    assert res.gap == 0.0
    assert "op[0,0].start" in res.values and "op[5,5].end" in res.values
    assert not any(k.startswith("__makespan") for k in res.values)
    for j, job in enumerate(FT06):
        for k in range(len(job) - 1):
            assert res.values[f"op[{j},{k + 1}].start"] >= res.values[f"op[{j},{k}].end"]
        assert res.values[f"op[{j},0].end"] - res.values[f"op[{j},0].start"] == job[0][1]
    assert max(v for k, v in res.values.items() if k.endswith(".end")) == 55.0
    assert res.solver_version and res.backend == "cpsat" and res.log_tail


def test_cumulative_with_fractional_durations() -> None:
    # four tasks of 1.5 h and one of 0.5 h need 2 of 3 workers each: they run one after
    # another (6.5 h); a 6 h task needing 1 worker fits beside them
    ib = IB()
    dur = {("a",): 1.5, ("b",): 1.5, ("c",): 1.5, ("d",): 1.5, ("e",): 6.0, ("f",): 0.5}
    t = ib.interval("task", dur, (0, 20), (0, 20))
    demand = {"a": 2, "b": 2, "c": 2, "d": 2, "e": 1, "f": 2}
    ib.con(
        "crew",
        "cumulative",
        {"intervals": [t[k,] for k in demand], "demands": list(demand.values()), "capacity": 3.0},
    )
    z = ib.var("__mk", "aux", lb=-INF)[()]
    ib.aux.append(Aux(col=z, kind="max", where="objective"))
    ib.rows("objective", [({z: 1.0, ib.end(t[k,]): -1.0}, 0.0, INF) for k in demand], aux=True)
    ib.minimize({z: 1.0})
    backend = CpSatBackend()
    inst = ib.build()
    compiled = backend.compile(inst, SolveOptions())
    assert compiled.inverse["time_scale"] == 10
    res = backend.solve(compiled, SolveOptions(time_limit=20, threads=2))
    assert res.status == Status.OPTIMAL
    assert res.objective == pytest.approx(6.5)
    assert res.values["task[a].end"] - res.values["task[a].start"] == pytest.approx(1.5)


def test_integral_cumulative_known_optimum() -> None:
    ib = IB()
    dur = {(i,): float(d) for i, d in enumerate([3, 2, 2, 4, 1])}
    t = ib.interval("job", dur, (0, 50), (0, 50))
    ib.con("cap", "cumulative", {"intervals": list(t.values()), "demands": [2, 2, 1, 1, 3], "capacity": 3})
    # minimize total end time: energy bound and pairwise conflicts make 3+2+... checkable
    ib.minimize({ib.end(i): 1.0 for i in t.values()})
    res = solve(ib.build())
    assert res.status == Status.OPTIMAL
    ends = {k: res.values[f"job[{k[0]}].end"] for k in t}
    starts = {k: res.values[f"job[{k[0]}].start"] for k in t}
    demands = [2, 2, 1, 1, 3]
    for time_ in range(50):
        load = sum(demands[k[0]] for k in t if starts[k] <= time_ < ends[k])
        assert load <= 3
    # brute force on the grid confirms the optimum
    assert res.objective == pytest.approx(_brute_cumulative([3, 2, 2, 4, 1], demands, 3))


def _brute_cumulative(dur: list[int], dem: list[int], cap: int) -> float:
    best = [float("inf")]
    n = len(dur)
    horizon = sum(dur)

    def fits(starts: list[int]) -> bool:
        for tt in range(horizon + 1):
            if sum(dem[i] for i, s in enumerate(starts) if s <= tt < s + dur[i]) > cap:
                return False
        return True

    def rec(starts: list[int]) -> None:
        if len(starts) == n:
            if fits(starts):
                best[0] = min(best[0], sum(s + dur[i] for i, s in enumerate(starts)))
            return
        for s in range(horizon - dur[len(starts)] + 1):
            partial = sum(s2 + dur[i] for i, s2 in enumerate(starts)) + s + dur[len(starts)]
            if partial >= best[0]:
                break
            rec([*starts, s])

    rec([])
    return best[0]


# ------------------------------------------------------------------ infeasible models


def pigeons_linear(n_p: int = 4, n_h: int = 3) -> Instance:
    ib = IB()
    keys = [(p, h) for p in range(n_p) for h in range(n_h)]
    x = ib.var("x", "binary", keys=keys)
    ib.rows(
        "pigeon",
        [({x[p, h]: 1.0 for h in range(n_h)}, 1.0, 1.0) for p in range(n_p)],
        keys=[(p,) for p in range(n_p)],
        template="balance",
    )
    ib.rows(
        "hole",
        [({x[p, h]: 1.0 for p in range(n_p)}, -INF, 1.0) for h in range(n_h)],
        keys=[(h,) for h in range(n_h)],
        template="upper_bound",
    )
    return ib.build()


def test_pigeonhole_minimal_core_and_relaxation() -> None:
    res = solve(pigeons_linear())
    assert res.status == Status.INFEASIBLE
    ex = res.explanation
    assert ex is not None and ex.kind == "infeasible"
    assert ex.conflict_method == "cpsat-assumptions"
    names = sorted(c.name for c in ex.conflict)
    assert names == sorted([f"pigeon[{p}]" for p in range(4)] + [f"hole[{h}]" for h in range(3)])
    assert all(c.kind == "constraint" and c.source for c in ex.conflict)
    assert sum(abs(r.change) for r in ex.relaxations) == pytest.approx(1.0)
    assert ex.summary


def test_pigeonhole_with_clauses_and_counting() -> None:
    ib = IB()
    keys = [(p, h) for p in range(4) for h in range(3)]
    x = ib.var("x", "boolean", keys=keys)
    for p in range(4):
        ib.con("somewhere", "clause", {"literals": [Lit(x[p, h]) for h in range(3)]}, name=f"somewhere[{p}]")
    for h in range(3):
        ib.con(
            "alone", "at_most_k", {"k": 1, "options": [Lit(x[p, h]) for p in range(4)]}, name=f"alone[{h}]"
        )
    res = solve(ib.build())
    assert res.status == Status.INFEASIBLE
    assert res.explanation is not None
    assert len(res.explanation.conflict) == 7
    assert res.explanation.relaxations == []


def three_way_conflict() -> Instance:
    ib = IB()
    x = ib.var("x", ub=10)[()]
    y = ib.var("y", ub=10)[()]
    z = ib.var("z", ub=10)[()]
    b = ib.var("b", "binary")[()]
    ib.rows("harmless1", [({x: 1, z: 1}, -INF, 20)])
    ib.rows("harmless2", [({z: 1}, 1, INF)], template="lower_bound")
    ib.rows("harmless3", [({y: 1, z: -1}, -INF, 10)])
    ib.con("harmless4", "implication", {"if": Lit(b), "then": Atom((z,), (1.0,), 2, INF)})
    ib.con("harmless5", "either_or", {"options": [Atom((z,), (1.0,), -INF, 3), Lit(b)]})
    ib.rows("need", [({x: 1, y: 1}, 12, INF)], template="lower_bound")
    ib.rows("cap_x", [({x: 1}, -INF, 4)], template="upper_bound")
    ib.rows("cap_y", [({y: 1}, -INF, 5)], template="upper_bound")
    ib.minimize({x: 1, y: 1, z: 1})
    return ib.build()


def test_three_constraint_conflict_is_exactly_the_core() -> None:
    res = solve(three_way_conflict())
    assert res.status == Status.INFEASIBLE
    ex = res.explanation
    assert ex is not None
    assert sorted(c.id for c in ex.conflict) == ["cap_x", "cap_y", "need"]
    assert sum(abs(r.change) for r in ex.relaxations) == pytest.approx(3.0)
    assert {r.id for r in ex.relaxations} <= {"cap_x", "cap_y", "need"}
    # with the changes applied the model solves: x + y = 12 - (need relaxed) ... at least 10
    assert ex.objective_after_relaxation is not None
    assert ex.objective_after_relaxation == pytest.approx(
        max(9.0, 12.0 + sum(r.change for r in ex.relaxations if r.id == "need")) + 1.0
    )
    assert "need" in ex.summary or "sentence of need" in ex.summary


def test_precedence_lag_relaxation() -> None:
    ib = IB()
    t = ib.interval("t", {("a",): 5.0, ("b",): 5.0}, (0, 100), (0, 100))
    ib.con("after", "precedence", {"before": t["a",], "after": t["b",], "lag": 1.0})
    ib.rows("deadline", [({ib.end(t["b",]): 1.0}, -INF, 9)], template="upper_bound")
    ib.rows("noise", [({ib.start(t["a",]): 1.0}, -INF, 50)])
    res = solve(ib.build())
    assert res.status == Status.INFEASIBLE
    ex = res.explanation
    assert ex is not None
    assert sorted(c.id for c in ex.conflict) == ["after", "deadline"]
    assert sum(abs(r.change) for r in ex.relaxations) == pytest.approx(2.0)


def test_empty_domain_reports_bounds() -> None:
    ib = IB()
    ib.var("x", lb=0.2, ub=0.8)
    res = solve(ib.build())
    assert res.status == Status.INFEASIBLE
    assert res.explanation is not None
    assert {c.name for c in res.explanation.conflict} == {"x.lower", "x.upper"}
    assert all(c.kind == "bound" for c in res.explanation.conflict)


def test_interval_window_conflict_reports_bounds() -> None:
    ib = IB()
    ib.interval("t", {("a",): 5.0}, (0, 2), (0, 4))
    ib.var("y", ub=3)
    res = solve(ib.build())
    assert res.status == Status.INFEASIBLE
    ex = res.explanation
    assert ex is not None and ex.conflict_method == "cpsat-bounds"
    assert {c.name for c in ex.conflict} >= {"t[a].start.lower", "t[a].end.upper"}


# ------------------------------------------------------------------ numbers


def test_decimal_coefficients_are_scaled_exactly() -> None:
    ib = IB()
    x = ib.var("x")[()]
    y = ib.var("y")[()]
    ib.rows("budget", [({x: 0.5, y: 1.25}, -INF, 3.75)])
    ib.maximize({x: 0.3, y: 0.7})
    res = solve(ib.build())
    assert res.status == Status.OPTIMAL
    assert res.values == {"x": 5.0, "y": 1.0}
    assert res.objective == pytest.approx(2.2, abs=1e-12)


def test_fractional_rhs_of_whole_row_is_rounded_exactly() -> None:
    ib = IB()
    x = ib.var("x")[()]
    y = ib.var("y")[()]
    ib.rows("cap", [({x: 1, y: 1}, -INF, 3.5)])
    ib.maximize({x: 1, y: 2})
    res = solve(ib.build())
    assert res.objective == pytest.approx(6.0)


def test_unscalable_coefficient_raises_naming_the_constraint() -> None:
    ib = IB()
    x = ib.var("x")[()]
    ib.rows("third", [({x: 1 / 3}, -INF, 2)])
    inst = ib.build()
    backend = CpSatBackend()
    with pytest.raises(BackendError, match="third"):
        backend.compile(inst, SolveOptions())


def test_unscalable_objective_raises() -> None:
    ib = IB()
    x = ib.var("x", ub=3)[()]
    ib.minimize({x: 1e-7})
    with pytest.raises(BackendError, match="objective"):
        CpSatBackend().compile(ib.build(), SolveOptions())


def test_accepts_refuses_continuous_and_quadratic() -> None:
    ib = IB()
    ib.var("flow", "continuous")
    reason = CpSatBackend().accepts(ib.build())
    assert reason is not None and "flow" in reason and "highs" in reason
    ib = IB()
    x = ib.var("x", ub=4)[()]
    ib.minimize({x: 1})
    inst = ib.build()
    assert inst.objective is not None
    inst.objective.qcols1 = np.array([x])
    inst.objective.qcols2 = np.array([x])
    inst.objective.qcoefs = np.array([1.0])
    reason = CpSatBackend().accepts(inst)
    assert reason is not None and "quadratic" in reason
    with pytest.raises(BackendError):
        CpSatBackend().compile(inst, SolveOptions())


# ------------------------------------------------------------------ statuses


def test_time_limit_gives_feasible_or_time_limit() -> None:
    rnd = random.Random(7)
    jobs = []
    for _ in range(20):
        ms = list(range(15))
        rnd.shuffle(ms)
        jobs.append([(m, rnd.randint(1, 99)) for m in ms])
    ib, _ = job_shop(jobs)
    res = solve(ib.build(), time_limit=0.3, threads=1)
    assert res.status in (Status.FEASIBLE, Status.TIME_LIMIT)
    if res.status == Status.FEASIBLE:
        assert res.objective is not None and res.bound is not None
        assert res.gap is not None and res.gap > 0
        assert res.message and "time limit" in res.message
    assert res.solve_seconds < 5


def test_feasibility_model_reports_optimal() -> None:
    ib = IB()
    x = ib.var("x", ub=9)[()]
    y = ib.var("y", ub=9)[()]
    ib.rows("total", [({x: 1, y: 1}, 5, 5)], template="balance")
    res = solve(ib.build())
    assert res.status == Status.OPTIMAL
    assert res.objective is None
    assert res.values["x"] + res.values["y"] == 5


def test_unbounded_integer_objective() -> None:
    ib = IB()
    x = ib.var("x")[()]
    y = ib.var("y", ub=5)[()]
    ib.rows("link", [({x: 1, y: -1}, 0, INF)])
    ib.maximize({x: 1})
    res = solve(ib.build())
    assert res.status == Status.UNBOUNDED


def test_bounded_objective_is_not_called_unbounded() -> None:
    ib = IB()
    x = ib.var("x")[()]
    ib.var("free_and_useless", lb=-INF)
    ib.rows("cap", [({x: 2}, -INF, 9)])
    ib.maximize({x: 1}, const=1.5)
    res = solve(ib.build())
    assert res.status == Status.OPTIMAL
    assert res.objective == pytest.approx(5.5)


def test_gap_limit_and_threads_are_passed() -> None:
    ib, _ = job_shop(FT06)
    res = solve(ib.build(), mip_gap=0.5, threads=1)
    assert res.status in (Status.OPTIMAL, Status.FEASIBLE)
    assert res.objective is not None and res.objective <= 55 * 1.5 + 1e-9


# ------------------------------------------------------------------ logic templates


def test_implication_with_atom_condition() -> None:
    ib = IB()
    x = ib.var("x", ub=10)[()]
    y = ib.var("y", ub=10)[()]
    # x >= 5  =>  y >= 8 ; push x up, y down
    ib.con("rule", "implication", {"if": Atom((x,), (1.0,), 5, INF), "then": Atom((y,), (1.0,), 8, INF)})
    ib.maximize({x: 2, y: -1})
    res = solve(ib.build())
    assert res.values == {"x": 10.0, "y": 8.0}
    assert res.objective == pytest.approx(12.0)


def test_implication_condition_both_ways() -> None:
    ib = IB()
    x = ib.var("x", ub=10)[()]
    y = ib.var("y", ub=10)[()]
    # not (x <= 4)  =>  y == 0 ; objective prefers large y and large x
    ib.con("rule", "implication", {"if": Not(Atom((x,), (1.0,), -INF, 4)), "then": Atom((y,), (1.0,), 0, 0)})
    ib.maximize({x: 1, y: 1})
    res = solve(ib.build())
    assert res.objective == pytest.approx(14.0)
    assert res.values == {"x": 4.0, "y": 10.0}


def test_either_or_and_nested_formulas() -> None:
    ib = IB()
    x = ib.var("x", ub=10)[()]
    y = ib.var("y", ub=10)[()]
    b = ib.var("b", "boolean")[()]
    ib.con(
        "choice",
        "either_or",
        {
            "options": [
                And((Atom((x,), (1.0,), -INF, 2), Lit(b, neg=True))),
                Or((Atom((y,), (1.0,), -INF, 3), Const(False))),
            ]
        },
    )
    ib.rows("b_on", [({b: 1}, 1, 1)])
    ib.maximize({x: 1, y: 1})
    res = solve(ib.build())
    assert res.objective == pytest.approx(13.0)


def test_counting_templates() -> None:
    ib = IB()
    keys = [(i,) for i in range(5)]
    x = ib.var("x", ub=10, keys=keys)
    opts = [Atom((x[k],), (1.0,), 6, INF) for k in keys]
    ib.con("few_big", "at_most_k", {"k": 2, "options": opts})
    ib.con("some_big", "at_least_k", {"k": 2, "options": opts})
    zero = [Atom((x[(0,)],), (1.0,), 0, 0), Atom((x[(1,)],), (1.0,), 0, 0), Const(False)]
    ib.con("one_zero", "exactly_k", {"k": 1, "options": zero})
    ib.maximize({x[k]: 1 for k in keys})
    res = solve(ib.build())
    # two big at 10, one of x0/x1 zero, the rest at most 5
    assert res.objective == pytest.approx(10 + 10 + 5 + 5 + 0)


def test_all_different_with_affine_terms() -> None:
    ib = IB()
    keys = [(i,) for i in range(4)]
    x = ib.var("x", lb=1, ub=4, keys=keys)
    terms = [LinTerm((x[k],), (1.0,)) for k in keys[:3]] + [LinTerm((x[(3,)], x[(0,)]), (1.0, 0.5), 0.5)]
    ib.con("distinct", "all_different", {"terms": terms})
    ib.minimize({x[k]: 1 for k in keys[:3]})
    res = solve(ib.build())
    vals = [res.values[f"x[{i}]"] for i in range(3)]
    assert sorted(vals) == [1.0, 2.0, 3.0]
    last = res.values["x[3]"] + 0.5 * res.values["x[0]"] + 0.5
    assert last not in vals


def test_fixed_charge_and_semi_continuous() -> None:
    ib = IB()
    q = ib.var("q", ub=100)[()]
    open_ = ib.var("open", "binary")[()]
    r = ib.var("r", ub=100)[()]
    ib.con(
        "setup", "fixed_charge", {"variable": LinTerm((q,), (1.0,)), "indicator": Lit(open_), "upper": 40.0}
    )
    ib.con("batch", "semi_continuous", {"variable": LinTerm((r,), (1.0,)), "lower": 20.0, "upper": 30.0})
    ib.rows("demand", [({q: 1, r: 1}, 15, INF)])
    # opening costs 50; q costs 1; r costs 2 per unit
    ib.minimize({open_: 50, q: 1, r: 2})
    res = solve(ib.build())
    # options: r = 20 (cost 40) vs open + q = 15 (cost 65)
    assert res.values["r"] == 20.0 and res.values["open"] == 0.0 and res.values["q"] == 0.0
    assert res.objective == pytest.approx(40.0)


def test_names_of_cp_objects_follow_model_ids() -> None:
    inst = pigeons_linear(2, 2)
    compiled = CpSatBackend().compile(inst, SolveOptions())
    proto = compiled.solver_model.proto
    assert [v.name for v in proto.variables][:2] == ["x[0,0]", "x[0,1]"]
    assert {c.name for c in proto.constraints} == {"pigeon[0]", "pigeon[1]", "hole[0]", "hole[1]"}
    inv = compiled.inverse
    owner = inv["constraint_owner"]
    assert [inv["instances"][o] for o in owner] == [c.name for c in proto.constraints]
    assert inv["column_vars"].tolist() == [0, 1, 2, 3]


# ------------------------------------------------------------------ through solvers.lower


def test_contract_model_with_fractional_time() -> None:
    from solvers.api import load_model
    from solvers.lower import lower

    model = load_model(
        {
            "schema": "optscribe.model/v1",
            "name": "frac",
            "sets": {"T": ["a", "b", "c"]},
            "parameters": {"dur": {"index": ["T"], "values": {"a": 1.5, "b": 2.25, "c": 0.5}}},
            "variables": [{"name": "task", "index": ["T"], "domain": "interval", "duration": "dur"}],
            "objective": {"sense": "minimize", "expression": "max(end(task[t]) for t in T)"},
            "constraints": [
                {"id": "one_at_a_time", "template": "no_overlap", "intervals": "task[t] for t in T"},
                {
                    "id": "cool",
                    "template": "precedence",
                    "before": "task['a']",
                    "after": "task['b']",
                    "lag": 0.75,
                },
                {"id": "late", "template": "linear", "expression": "start(task['c']) >= 0.3"},
            ],
        }
    )
    backend = CpSatBackend()
    compiled = backend.compile(lower(model), SolveOptions())
    assert compiled.inverse["time_scale"] == 100
    res = backend.solve(compiled, SolveOptions(time_limit=10))
    assert res.status == Status.OPTIMAL
    assert res.objective == pytest.approx(4.5)
    assert res.values["task[b].start"] >= res.values["task[a].end"] + 0.75
    assert res.values["task[c].start"] >= 0.3


def test_float_noise_in_data_is_forgiven() -> None:
    ib = IB()
    x = ib.var("x", ub=10)[()]
    y = ib.var("y", ub=10)[()]
    # 0.30000000000000004 x + 5.4 y <= 3.0000000000000004 and x >= 3.0000000000000004
    ib.rows("mix", [({x: 0.1 + 0.2, y: 54 * 100 / 1000}, -INF, 0.1 * 3 * 10)])
    ib.rows("floor", [({x: 1.0}, 0.1 * 3 * 10, INF)])
    ib.minimize({x: 1.0, y: -1.0})
    res = solve(ib.build())
    assert res.status == Status.OPTIMAL
    assert res.values == {"x": 3.0, "y": 0.0}


def test_overflow_is_refused_naming_the_constraint() -> None:
    ib = IB()
    x = ib.var("x")[()]
    y = ib.var("y")[()]
    ib.rows("huge", [({x: 1e10, y: 1e10}, -INF, 5e11)])
    ib.maximize({x: 1})
    with pytest.raises(BackendError, match="'huge'.*overflow"):
        CpSatBackend().compile(ib.build(), SolveOptions())


def test_infeasible_without_explanation() -> None:
    res = solve(pigeons_linear(), explain=False)
    assert res.status == Status.INFEASIBLE
    assert res.explanation is None


def test_fallback_summary_reads_without_explain_module() -> None:
    from solvers.backends.cpsat import _fallback_summary
    from solvers.result import ConflictItem, Explanation, Relaxation

    expl = Explanation(
        kind="infeasible",
        summary="",
        conflict=[ConflictItem(kind="constraint", id="cap", name="cap[a]", source="At most 3 a.")],
        relaxations=[Relaxation(id="cap", name="cap[a]", kind="rhs", current=3, suggested=4, change=1)],
        objective_after_relaxation=7.0,
    )
    text = _fallback_summary(expl)
    assert "cap[a]" in text and "At most 3 a." in text and "from 3 to 4" in text and "7" in text
    bounds = Explanation(
        kind="infeasible", summary="", conflict=[ConflictItem(kind="bound", id="x", name="x.upper")]
    )
    assert "x.upper" in _fallback_summary(bounds)
