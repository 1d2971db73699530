"""The Pyomo backend: same answers as HiGHS (objective, plan, duals, conflicts), explicit
status maps, options handed to the solver, and another solver picked by name."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from solvers.api import SolveOptions, solve_model
from solvers.backends.pyomo import (
    CONTRIB_TERMINATION_MAP,
    ENV_SOLVER,
    LEGACY_TERMINATION_MAP,
    PyomoBackend,
    map_termination,
    solver_name,
)
from solvers.errors import BackendError
from solvers.lower import lower
from solvers.model import Model
from solvers.result import Status

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _model(**parts: Any) -> dict[str, Any]:
    return {"schema": "optscribe.model/v1", "name": "t", **parts}


LP_MAX = _model(
    sets={"P": ["a", "b"]},
    parameters={"p": {"index": ["P"], "values": {"a": 3, "b": 2}}},
    variables=[{"name": "x", "index": ["P"]}],
    objective={"sense": "maximize", "expression": "sum(p[i] * x[i] for i in P)"},
    constraints=[
        {"id": "cap", "template": "linear", "expression": "x['a'] + 2 * x['b'] <= 4"},
        {"id": "cap2", "template": "linear", "expression": "3 * x['a'] + x['b'] <= 6"},
        {"id": "eq", "template": "balance", "expression": "x['a'] - x['b'] == 0.5"},
    ],
)
LP_MIN = _model(
    variables=[{"name": "x"}, {"name": "y"}],
    objective={"sense": "minimize", "expression": "2 * x + 3 * y + 7"},
    constraints=[
        {"id": "c1", "template": "linear", "expression": "x + y >= 4"},
        {"id": "c2", "template": "linear", "expression": "1 <= x <= 3"},
    ],
)
QP = _model(
    variables=[{"name": "x"}, {"name": "y"}],
    objective={"sense": "minimize", "expression": "x*x + y*y - 2*x - 4*y + x*y"},
)
INFEASIBLE = _model(
    variables=[{"name": "x"}],
    objective={"sense": "minimize", "expression": "x"},
    constraints=[
        {"id": "lo", "template": "lower_bound", "expression": "x >= 5", "source": "At least five."},
        {"id": "hi", "template": "upper_bound", "expression": "x <= 3", "source": "At most three."},
    ],
)
UNBOUNDED_MILP = _model(
    variables=[{"name": "x", "domain": "integer", "lower": None}, {"name": "y", "lower": None}],
    objective={"sense": "minimize", "expression": "x + 2 * y"},
    constraints=[{"id": "c", "template": "linear", "expression": "x + y >= 1.5"}],
)


def _both(model: Any, **opts: Any) -> tuple[Any, Any]:
    options = SolveOptions(**opts)
    return solve_model(model, backend="highs", options=options), solve_model(
        model, backend="pyomo", options=options
    )


@pytest.mark.parametrize("name", ["furniture", "workshop_schedule"])
def test_examples_match_highs(name: str) -> None:
    h, p = _both(EXAMPLES / f"{name}.json")
    assert p.status == h.status == Status.OPTIMAL
    assert p.objective == pytest.approx(h.objective, rel=1e-9)
    assert set(p.values) == set(h.values)
    assert p.backend == "pyomo" and "pyomo" in p.solver_version


def test_values_are_keyed_by_model_names() -> None:
    r = solve_model(EXAMPLES / "furniture.json", backend="pyomo")
    assert r.values == {"x[chair]": 20.0, "x[table]": 15.0, "big_batch": 0.0}
    assert r.objective == 1350.0 and r.bound == 1350.0 and r.gap == 0.0


@pytest.mark.parametrize("model", [LP_MAX, LP_MIN], ids=["max", "min"])
def test_lp_duals_and_reduced_costs_match_highs(model: dict[str, Any]) -> None:
    h, p = _both(model)
    assert p.status == Status.OPTIMAL
    assert p.objective == pytest.approx(h.objective)
    assert set(p.duals) == set(h.duals) and p.duals
    for k in h.duals:
        assert p.duals[k] == pytest.approx(h.duals[k], abs=1e-7), k
    for k in h.reduced_costs:
        assert p.reduced_costs[k] == pytest.approx(h.reduced_costs[k], abs=1e-7), k


def test_lp_dual_signs() -> None:
    # maximize 3a + 2b: one more unit of cap2 is worth 1.25; the equality costs 0.75
    p = solve_model(LP_MAX, backend="pyomo")
    assert p.duals == pytest.approx({"cap": 0.0, "cap2": 1.25, "eq": -0.75})


def test_mip_has_no_duals() -> None:
    r = solve_model(EXAMPLES / "furniture.json", backend="pyomo")
    assert r.duals == {}


def test_convex_qp() -> None:
    h, p = _both(QP)
    assert p.status == Status.OPTIMAL
    assert p.objective == pytest.approx(h.objective, abs=1e-6)
    assert p.objective == pytest.approx(-4.0, abs=1e-6)


def test_nonconvex_qp_is_refused() -> None:
    m = _model(variables=[{"name": "x", "upper": 3}], objective={"sense": "maximize", "expression": "x*x"})
    with pytest.raises(BackendError, match="concave"):
        solve_model(m, backend="pyomo")


def test_infeasible_is_a_result_with_conflict_and_sources() -> None:
    r = solve_model(INFEASIBLE, backend="pyomo")
    assert r.status == Status.INFEASIBLE
    assert r.explanation is not None
    assert {c.id for c in r.explanation.conflict} == {"lo", "hi"}
    assert {c.source for c in r.explanation.conflict} == {"At least five.", "At most three."}
    assert r.explanation.relaxations


def test_infeasible_without_explain() -> None:
    r = solve_model(INFEASIBLE, backend="pyomo", options=SolveOptions(explain=False))
    assert r.status == Status.INFEASIBLE and r.explanation is None


def test_example_infeasible_matches_highs() -> None:
    h, p = _both(EXAMPLES / "staffing_infeasible.json")
    assert p.status == h.status == Status.INFEASIBLE
    assert p.explanation is not None and h.explanation is not None
    assert {c.name for c in p.explanation.conflict} == {c.name for c in h.explanation.conflict}


def test_unbounded_is_told_apart_from_infeasible() -> None:
    # HiGHS's MIP presolve says "infeasible or unbounded" here; the backend finds out
    r = solve_model(UNBOUNDED_MILP, backend="pyomo")
    assert r.status == Status.UNBOUNDED
    lp = _model(variables=[{"name": "x"}], objective={"sense": "maximize", "expression": "x"})
    assert solve_model(lp, backend="pyomo").status == Status.UNBOUNDED


def test_feasibility_model_without_objective() -> None:
    m = _model(
        variables=[{"name": "x", "domain": "integer", "upper": 5}],
        constraints=[{"id": "c", "template": "linear", "expression": "2 * x >= 3"}],
    )
    r = solve_model(m, backend="pyomo")
    assert r.status == Status.OPTIMAL and r.objective is None
    assert r.values["x"] >= 2


def test_unused_variable_gets_a_value_in_its_bounds() -> None:
    m = _model(
        variables=[
            {"name": "x", "upper": 5},
            {"name": "z", "lower": 2, "upper": 9},
            {"name": "w", "lower": None},
        ],
        objective={"sense": "minimize", "expression": "x"},
    )
    h, p = _both(m)
    assert p.values == h.values == {"x": 0.0, "z": 2.0, "w": 0.0}


def test_row_decided_by_the_data() -> None:
    # the for_each inside the sum selects nothing: the row reads 0 >= 1
    m = _model(
        sets={"P": ["a", "b"]},
        parameters={"cost": {"index": ["P"], "values": {"a": 1, "b": 2}}},
        variables=[{"name": "x", "index": ["P"], "upper": 4}],
        objective={"sense": "maximize", "expression": "sum(x[p] for p in P)"},
        constraints=[
            {"id": "pricey", "template": "sum", "expression": "sum(x[p] for p in P if cost[p] > 10) >= 1"}
        ],
    )
    h, p = _both(m)
    assert p.status == h.status


def test_logic_templates_through_linearization() -> None:
    m = _model(
        variables=[
            {"name": "x", "domain": "integer", "upper": 10},
            {"name": "y", "domain": "integer", "upper": 10},
            {"name": "b", "domain": "binary"},
        ],
        objective={"sense": "maximize", "expression": "x + y + 3 * b"},
        constraints=[
            {"id": "one", "template": "either_or", "options": ["x <= 2", "y <= 2"]},
            {"id": "imp", "template": "implication", "if": "b == 1", "then": "x + y <= 9"},
        ],
    )
    h, p = _both(m)
    assert p.status == Status.OPTIMAL
    assert p.objective == pytest.approx(h.objective)
    assert not any(k.startswith("__") for k in p.values)


def test_accepts_like_highs() -> None:
    m = Model.model_validate(
        _model(
            sets={"I": [1, 2, 3]},
            variables=[{"name": "v", "index": ["I"], "domain": "integer", "upper": 3}],
            constraints=[{"id": "diff", "template": "all_different", "terms": "v[i] for i in I"}],
        )
    )
    why = PyomoBackend().accepts(lower(m))
    assert why is not None and "all_different" in why
    with pytest.raises(BackendError):
        solve_model(m, backend="pyomo")


# ----------------------------------------------------------------------- status maps


def test_contrib_map_covers_every_termination_condition() -> None:
    from pyomo.contrib.solver.common.results import TerminationCondition

    assert {t.name for t in TerminationCondition} == set(CONTRIB_TERMINATION_MAP)


def test_legacy_map_covers_every_termination_condition() -> None:
    from pyomo.opt.results.solver import TerminationCondition

    assert {t.value for t in TerminationCondition} == set(LEGACY_TERMINATION_MAP)


def test_map_termination() -> None:
    assert map_termination("convergenceCriteriaSatisfied") is Status.OPTIMAL
    assert map_termination("provenInfeasible") is Status.INFEASIBLE
    assert map_termination("locallyInfeasible") is Status.UNKNOWN  # not a proof
    assert map_termination("maxTimeLimit") is Status.TIME_LIMIT
    assert map_termination("maxTimeLimit", has_solution=True) is Status.FEASIBLE
    assert map_termination("somethingNew") is Status.UNKNOWN
    assert map_termination("infeasible", legacy=True) is Status.INFEASIBLE
    assert map_termination("maxTimeLimit", True, legacy=True) is Status.FEASIBLE
    assert map_termination("somethingNew", legacy=True) is Status.UNKNOWN


class _FakeSolver:
    """Stands in for a pyomo.contrib solver: records the options, stops at the time limit."""

    calls: list[dict[str, Any]] = []

    def __init__(self) -> None:
        from pyomo.contrib.solver.common.config import PersistentBranchAndBoundConfig

        self.config = PersistentBranchAndBoundConfig()

    def available(self) -> bool:
        return True

    def solve(self, model: Any, **kwargs: Any) -> Any:
        from pyomo.contrib.solver.common.results import Results, SolutionStatus, TerminationCondition

        _FakeSolver.calls.append(kwargs)
        res = Results()
        res.termination_condition = TerminationCondition.maxTimeLimit
        res.solution_status = SolutionStatus.noSolution
        res.solver_version = (0, 1)
        res.solver_log = "fake log\nstopped"
        return res


def test_options_are_passed_and_time_limit_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyomo.contrib.solver.common.factory as factory

    class _Factory(dict[str, Any]):
        def __call__(self, name: str) -> Any:
            return _FakeSolver()

    monkeypatch.setattr(factory, "SolverFactory", _Factory(fake=_FakeSolver))
    _FakeSolver.calls.clear()
    options = SolveOptions(time_limit=2.5, threads=3, mip_gap=0.01)
    r = PyomoBackend("fake").solve(
        PyomoBackend("fake").compile(lower(Model.model_validate(LP_MAX)), options), options
    )
    assert _FakeSolver.calls == [
        {
            "load_solutions": False,
            "raise_exception_on_nonoptimal_result": False,
            "time_limit": 2.5,
            "threads": 3,
            "rel_gap": 0.01,
        }
    ]
    assert r.status is Status.TIME_LIMIT
    assert r.values == {} and r.log_tail.endswith("stopped")


# ----------------------------------------------------------------------- solver choice


def test_solver_name_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_SOLVER, raising=False)
    assert solver_name() == "highs"
    monkeypatch.setenv(ENV_SOLVER, "glpk")
    assert solver_name() == "glpk"
    assert PyomoBackend().solver == "glpk"
    assert PyomoBackend("cbc").solver == "cbc"


def test_classic_solver_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    # appsi_highs is registered with the classic SolverFactory, not pyomo.contrib.solver
    monkeypatch.setenv(ENV_SOLVER, "appsi_highs")
    r = solve_model(LP_MAX, backend="pyomo")
    assert r.status == Status.OPTIMAL
    assert r.objective == pytest.approx(7.125)
    assert "appsi_highs" in r.solver_version
    inf = solve_model(INFEASIBLE, backend="pyomo", options=SolveOptions(explain=False))
    assert inf.status == Status.INFEASIBLE


def test_missing_solver_is_a_backend_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SOLVER, "no_such_solver_xyz")
    with pytest.raises(BackendError, match="no_such_solver_xyz"):
        solve_model(LP_MAX, backend="pyomo")


def test_names_that_clash_with_python_or_pyomo() -> None:
    # 'name' and 'clone' are ConcreteModel attributes; set elements with spaces, quotes, commas
    m = _model(
        sets={"S": ["New York", "it's", "a,b"]},
        variables=[{"name": "clone", "index": ["S"], "upper": 3}, {"name": "name", "upper": 1}],
        objective={"sense": "maximize", "expression": "sum(clone[s] for s in S) + name"},
        constraints=[{"id": "block", "template": "sum", "expression": "sum(clone[s] for s in S) <= 5"}],
    )
    h, p = _both(m)
    assert p.status == Status.OPTIMAL
    assert p.objective == pytest.approx(h.objective) == pytest.approx(6.0)
    assert set(p.values) == {"clone[New York]", "clone[it's]", "clone[a,b]", "name"}
    assert set(p.duals) == {"block"}
    assert math.isclose(p.duals["block"], h.duals["block"], abs_tol=1e-9)


def test_model_without_variables_is_optimal_like_highs() -> None:
    h, p = _both(_model())
    assert p.status == h.status == Status.OPTIMAL
    assert p.values == {}
