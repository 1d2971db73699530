"""Conflicts, relaxations and summaries for models solved with HiGHS (``solvers.explain``)."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import highspy
import numpy as np
import pytest

from solvers import explain
from solvers.backends.base import Compiled, SolveOptions
from solvers.backends.highs import HighsBackend, inverse_of
from solvers.ir import Instance
from solvers.lower import lower
from solvers.model import Model
from solvers.result import ConflictItem, Explanation, Relaxation, Result, Status


def _model(constraints: list[dict[str, Any]], variables: list[dict[str, Any]], **extra: Any) -> Instance:
    data = {"name": "m", "variables": variables, "constraints": constraints, **extra}
    return lower(Model.model_validate(data))


def _solve(inst: Instance, **opts: Any) -> tuple[Result, Compiled]:
    be = HighsBackend()
    options = SolveOptions(**opts)
    compiled = be.compile(inst, options)
    return be.solve(compiled, options), compiled


def _constraints(r: Result) -> set[str]:
    assert r.explanation is not None
    return {c.name for c in r.explanation.conflict if c.kind == "constraint"}


# 40 production lines with pairwise minimums: feasible on their own, they only pad the model
LINES: dict[str, Any] = {
    "sets": {"I": {"range": [1, 40]}},
    "parameters": {"capacity": {"index": ["I"], "values": [50 + i for i in range(40)]}},
}
LINE_VARS = [{"name": "x", "index": ["I"], "upper": 100}, {"name": "a"}, {"name": "b"}]
LINE_ROWS: list[dict[str, Any]] = [
    {
        "id": "cap",
        "template": "upper_bound",
        "for_each": "i in I",
        "expression": "x[i] <= capacity[i]",
        "source": "Each line makes at most its capacity.",
    },
    {
        "id": "pairs",
        "template": "linear",
        "for_each": "i in I if i > 1",
        "expression": "x[i] + x[i - 1] >= 10",
        "source": "Neighbouring lines make at least 10 together.",
    },
]
CONFLICT3: list[dict[str, Any]] = [
    {
        "id": "demand",
        "template": "lower_bound",
        "expression": "a + b >= 15",
        "source": "At least 15 units of a and b are needed.",
    },
    {"id": "cap_a", "template": "upper_bound", "expression": "a <= 5", "source": "At most 5 units of a."},
    {"id": "cap_b", "template": "upper_bound", "expression": "b <= 6", "source": "At most 6 units of b."},
]
LINE_OBJ = {"sense": "minimize", "expression": "sum(x[i] for i in I) + a + b"}


def test_lp_three_row_conflict_among_many_rows() -> None:
    inst = _model(LINE_ROWS + CONFLICT3, LINE_VARS, objective=LINE_OBJ, **LINES)
    assert inst.n_rows > 80
    r, _ = _solve(inst)
    assert r.status is Status.INFEASIBLE
    ex = r.explanation
    assert ex is not None and ex.kind == "infeasible"
    assert ex.conflict_method == "HiGHS IIS"
    assert {(c.kind, c.id, c.name) for c in ex.conflict} == {
        ("constraint", "demand", "demand"),
        ("constraint", "cap_a", "cap_a"),
        ("constraint", "cap_b", "cap_b"),
    }
    assert all(c.source and c.template for c in ex.conflict)
    # the cheapest scale-free change: demand 15 -> 11 (4/15) beats a: 5 -> 9 (4/5) and b: 6 -> 10 (4/6)
    assert [(x.id, x.kind, x.current, x.suggested, x.change) for x in ex.relaxations] == [
        ("demand", "rhs", 15.0, 11.0, -4.0)
    ]
    assert ex.relaxations[0].source == "At least 15 units of a and b are needed."
    assert ex.objective_after_relaxation == pytest.approx(200.0 + 11.0)
    for sentence in (
        "At least 15 units of a and b are needed.",
        "At most 5 units of a.",
        "At most 6 units of b.",
    ):
        assert sentence in ex.summary
    assert "from 15 to 11" in ex.summary and "211" in ex.summary


def test_highs_iis_strategy_gives_a_nonempty_irreducible_set() -> None:
    """The default strategy may answer with a valid but empty IIS; the one used must not."""
    inst = _model(LINE_ROWS + CONFLICT3, LINE_VARS, objective=LINE_OBJ, **LINES)
    _, compiled = _solve(inst, explain=False)
    inv = inverse_of(compiled)
    h: Any = compiled.solver_model
    h.setOptionValue("iis_strategy", explain._IIS_STRATEGY)
    status, iis = h.getIis()
    assert status == highspy.HighsStatus.kOk and iis.valid_
    assert sorted(inv.row_name(int(r)) for r in iis.row_index_) == ["cap_a", "cap_b", "demand"]


def test_an_empty_highs_iis_is_never_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(explain, "_highs_iis", lambda *args, **kw: ([], False))
    inst = _model(LINE_ROWS + CONFLICT3, LINE_VARS, objective=LINE_OBJ, **LINES)
    r, _ = _solve(inst)
    assert r.explanation is not None
    assert r.explanation.conflict_method == "elastic filter, then deletion filter (LP)"
    assert _constraints(r) == {"demand", "cap_a", "cap_b"}
    assert not [c for c in r.explanation.conflict if c.kind != "constraint"]


def test_variable_bound_in_a_conflict() -> None:
    inst = _model(
        [{"id": "need", "template": "lower_bound", "expression": "x >= 8", "source": "We need 8 of x."}],
        [{"name": "x", "upper": 5, "source": "x is at most 5"}, {"name": "y"}],
        objective={"sense": "minimize", "expression": "x + y"},
    )
    r, _ = _solve(inst)
    ex = r.explanation
    assert ex is not None
    assert {(c.kind, c.id, c.name) for c in ex.conflict} == {
        ("constraint", "need", "need"),
        ("bound", "x", "x.upper"),
    }
    bound = next(c for c in ex.conflict if c.kind == "bound")
    assert bound.source == "x is at most 5"
    assert "x must be at most 5" in ex.summary
    # 3/8 (the rhs) is cheaper than 3/5 (the bound)
    assert [(x.name, x.suggested) for x in ex.relaxations] == [("need", 5.0)]
    assert ex.objective_after_relaxation == pytest.approx(5.0)


def test_bound_relaxation_when_it_is_the_cheaper_change() -> None:
    inst = _model(
        [{"id": "need", "template": "lower_bound", "expression": "x >= 100", "source": "We need 100 of x."}],
        [{"name": "x", "upper": 99}],
        objective={"sense": "minimize", "expression": "x"},
    )
    r, _ = _solve(inst)
    ex = r.explanation
    assert ex is not None
    assert [(x.id, x.name, x.kind, x.current, x.suggested) for x in ex.relaxations] in (
        [("x", "x.upper", "upper", 99.0, 100.0)],
        [("need", "need", "rhs", 100.0, 99.0)],
    )


def test_relaxation_weights_are_scale_free() -> None:
    picks = []
    for scale in (1, 1000):
        inst = _model(
            [
                {
                    "id": "budget",
                    "template": "upper_bound",
                    "expression": f"{scale} * x <= {scale}",
                    "source": "The budget allows one unit.",
                },
                {
                    "id": "demand",
                    "template": "lower_bound",
                    "expression": "x >= 3",
                    "source": "Three are needed.",
                },
            ],
            [{"name": "x"}],
            objective={"sense": "minimize", "expression": "x"},
        )
        r, _ = _solve(inst)
        assert r.explanation is not None
        picks.append([(x.id, x.suggested) for x in r.explanation.relaxations])
    assert picks[0] == picks[1] == [("demand", 1.0)]


def test_every_conflict_is_relaxed_when_there_are_several() -> None:
    inst = _model(
        [
            {"id": "a_min", "template": "lower_bound", "expression": "a >= 15"},
            {"id": "a_max", "template": "upper_bound", "expression": "a <= 5"},
            {"id": "b_min", "template": "lower_bound", "expression": "b >= 10"},
            {"id": "b_max", "template": "upper_bound", "expression": "b <= 2"},
        ],
        [{"name": "a"}, {"name": "b"}],
        objective={"sense": "minimize", "expression": "a + b"},
    )
    r, _ = _solve(inst)
    ex = r.explanation
    assert ex is not None and len(_constraints(r)) == 2
    assert {x.id for x in ex.relaxations} & {"a_min", "a_max"} and {x.id for x in ex.relaxations} & {
        "b_min",
        "b_max",
    }
    assert ex.objective_after_relaxation is not None


# ------------------------------------------------------------------------ MILP


def test_milp_integrality_conflict() -> None:
    inst = _model(
        [
            {
                "id": "even",
                "template": "balance",
                "expression": "2 * x + 2 * y == 3",
                "source": "Twice x plus twice y is exactly 3.",
            },
            {"id": "other", "template": "upper_bound", "expression": "x + z <= 8"},
        ],
        [
            {"name": "x", "domain": "integer", "upper": 10, "source": "whole crates of x"},
            {"name": "y", "domain": "integer", "upper": 10},
            {"name": "z", "upper": 10},
        ],
        objective={"sense": "minimize", "expression": "x + y + z"},
    )
    r, _ = _solve(inst)
    assert r.status is Status.INFEASIBLE
    ex = r.explanation
    assert ex is not None
    # the LP relaxation is feasible: the filters work on the MIP itself
    assert ex.conflict_method == "elastic filter (MIP), then deletion filter (MIP)"
    assert _constraints(r) == {"even"}
    assert {c.name for c in ex.conflict if c.kind == "integrality"} == {"x", "y"}
    assert not [c for c in ex.conflict if c.kind == "bound"]
    assert "x must be a whole number" in ex.summary and "whole crates of x" in ex.summary
    (relax,) = ex.relaxations
    assert relax.id == "even" and relax.suggested in (2.0, 4.0)
    assert ex.objective_after_relaxation == pytest.approx(relax.suggested / 2)


def test_milp_conflict_starts_from_the_lp_relaxation_iis() -> None:
    furniture = {
        "sets": {"P": ["chair", "table"], "R": ["wood", "labor"]},
        "parameters": {
            "use": {
                "index": ["R", "P"],
                "values": {"wood": {"chair": 2, "table": 4}, "labor": {"chair": 3, "table": 2}},
            },
            "avail": {"index": ["R"], "values": {"wood": 100, "labor": 90}},
        },
        "objective": {"sense": "maximize", "expression": "30 * x['chair'] + 50 * x['table']"},
    }
    inst = _model(
        [
            {
                "id": "capacity",
                "template": "linear",
                "for_each": "r in R",
                "expression": "sum(use[r, p] * x[p] for p in P) <= avail[r]",
                "source": "The shop has 100 units of wood and 90 hours of labor.",
            },
            {
                "id": "tables_min",
                "template": "lower_bound",
                "expression": "x['table'] >= 30",
                "source": "At least 30 tables must be made.",
            },
        ],
        [{"name": "x", "index": ["P"], "domain": "integer"}],
        **furniture,
    )
    r, _ = _solve(inst)
    ex = r.explanation
    assert ex is not None and ex.conflict_method is not None
    assert ex.conflict_method.startswith("HiGHS IIS of the LP relaxation")
    assert {c.name for c in ex.conflict} == {"capacity[wood]", "tables_min", "x[chair].lower"}
    assert "The shop has 100 units of wood and 90 hours of labor." in ex.summary
    assert ex.relaxations and ex.objective_after_relaxation is not None


def test_rows_of_a_logic_constraint_map_back_to_its_id() -> None:
    inst = _model(
        [
            {
                "id": "batch_rule",
                "template": "implication",
                "if": "big_batch == 1",
                "then": "x >= 20",
                "source": "A big batch means at least 20 chairs.",
            },
            {
                "id": "chairs_max",
                "template": "upper_bound",
                "expression": "x <= 10",
                "source": "No more than 10 chairs fit.",
            },
            {
                "id": "go_big",
                "template": "lower_bound",
                "expression": "big_batch >= 1",
                "source": "We run a big batch.",
            },
        ],
        [{"name": "x", "domain": "integer", "upper": 100}, {"name": "big_batch", "domain": "binary"}],
        objective={"sense": "maximize", "expression": "x"},
    )
    r, _ = _solve(inst)
    ex = r.explanation
    assert ex is not None
    by_id = {c.id: c for c in ex.conflict if c.kind == "constraint"}
    assert set(by_id) == {"batch_rule", "chairs_max", "go_big"}
    assert by_id["batch_rule"].template == "implication"
    assert by_id["batch_rule"].source == "A big batch means at least 20 chairs."
    # the logic constraint itself is kept as it is; a plain rhs changes instead
    assert ex.relaxations and all(x.id in ("chairs_max", "go_big") for x in ex.relaxations)


def test_scheduling_conflict_names_the_machine_and_the_deadlines() -> None:
    inst = _model(
        [
            {
                "id": "machine",
                "template": "no_overlap",
                "intervals": "t[j] for j in J",
                "source": "The press runs one job at a time.",
            }
        ],
        [
            {
                "name": "t",
                "index": ["J"],
                "domain": "interval",
                "duration": 3,
                "end": [0, 5],
                "source": "each job takes 3 hours and must end by hour 5",
            }
        ],
        sets={"J": ["a", "b"]},
    )
    r, _ = _solve(inst)
    assert r.status is Status.INFEASIBLE
    ex = r.explanation
    assert ex is not None
    assert _constraints(r) == {"machine"}
    # the big-M rows of no_overlap rest on the windows: earliest starts and latest ends
    assert {c.name for c in ex.conflict if c.kind == "bound"} == {
        "t[a].start.lower",
        "t[b].start.lower",
        "t[a].end.upper",
        "t[b].end.upper",
    }
    assert "The press runs one job at a time." in ex.summary


def test_find_conflict_and_suggest_relaxations_are_callable_directly() -> None:
    inst = _model(LINE_ROWS + CONFLICT3, LINE_VARS, objective=LINE_OBJ, **LINES)
    _, compiled = _solve(inst, explain=False)
    items, method = explain.find_conflict(compiled, time_budget=10)
    assert method == "HiGHS IIS" and {c.id for c in items} == {"demand", "cap_a", "cap_b"}
    relaxations, after = explain.suggest_relaxations(compiled, time_budget=10)
    assert relaxations and after is not None


def test_no_explanation_when_not_asked() -> None:
    inst = _model(CONFLICT3, [{"name": "a"}, {"name": "b"}])
    r, _ = _solve(inst, explain=False)
    assert r.status is Status.INFEASIBLE and r.explanation is None


# ------------------------------------------------------------------------ unbounded


def test_unbounded_lp_reports_a_direction_by_column_names() -> None:
    inst = _model(
        [{"id": "spread", "template": "linear", "expression": "x - y <= 4"}],
        [{"name": "x"}, {"name": "y"}, {"name": "z", "upper": 3}],
        objective={"sense": "maximize", "expression": "x + 2 * y + z", "source": "Make as much as possible."},
    )
    r, _ = _solve(inst)
    assert r.status is Status.UNBOUNDED
    ex = r.explanation
    assert ex is not None and ex.kind == "unbounded"
    d = ex.unbounded_direction
    assert d and max(abs(v) for v in d.values()) == pytest.approx(1.0)
    assert set(d) <= {"x", "y"} and d["y"] > 0
    assert d.get("x", 0.0) >= 0
    assert "grow without limit (maximize)" in ex.summary
    assert "Make as much as possible." in ex.summary and "y up" in ex.summary


def test_unbounded_milp_gets_its_direction_from_the_relaxation() -> None:
    inst = _model(
        [{"id": "floor", "template": "lower_bound", "expression": "x >= 2"}],
        [{"name": "x", "domain": "integer", "lower": None}, {"name": "y", "domain": "integer", "upper": 5}],
        objective={"sense": "minimize", "expression": "-x + y"},
    )
    r, _ = _solve(inst)
    assert r.status is Status.UNBOUNDED
    assert r.explanation is not None
    assert r.explanation.unbounded_direction == {"x": 1.0}
    assert "fall without limit (minimize)" in r.explanation.summary


# ------------------------------------------------------------------------ summaries for every backend


def _bare_instance() -> Instance:
    return _model(
        [
            {
                "id": "cap",
                "template": "upper_bound",
                "for_each": "r in R",
                "expression": "x[r] <= 4",
                "source": "Each room holds 4.",
            }
        ],
        [{"name": "x", "index": ["R"], "domain": "integer", "upper": 9, "source": "people per room"}],
        sets={"R": ["north", "south"]},
        objective={"sense": "maximize", "expression": "sum(x[r] for r in R)"},
    )


def test_summarize_reads_a_hand_made_explanation() -> None:
    """What another backend (CP-SAT) fills in, summarized the same way."""
    inst = _bare_instance()
    ex = Explanation(
        kind="infeasible",
        summary="",
        conflict=[
            ConflictItem(kind="constraint", id="cap", name="cap[north]", source="Each room holds 4."),
            ConflictItem(kind="constraint", id="cap", name="cap[south]", source="Each room holds 4."),
            ConflictItem(kind="bound", id="x", name="x[north].upper", source="people per room"),
            ConflictItem(kind="integrality", id="x", name="x[south]"),
        ],
        relaxations=[Relaxation(id="cap", name="cap[north]", kind="rhs", current=4, suggested=6, change=2)],
        objective_after_relaxation=12.5,
    )
    text = explain.summarize(inst, ex)
    assert text.count('"Each room holds 4."') == 1 and "(cap[north], cap[south])" in text
    assert "x[north] must be at most 9" in text
    assert "x[south] must be a whole number" in text
    assert "cap[north]: change the right-hand side from 4 to 6 (+2)" in text
    assert "12.5" in text


@pytest.mark.parametrize("kind", ["infeasible_or_unbounded", "time_limit", "unbounded"])
def test_summaries_for_the_other_outcomes(kind: str) -> None:
    text = explain.summarize(_bare_instance(), Explanation(kind=kind, summary=""))
    assert text and "{" not in text


def test_explanations_for_ambiguous_and_time_limited_results() -> None:
    inst = _bare_instance()
    be = HighsBackend()
    compiled = be.compile(inst, SolveOptions())
    for status, kind in (
        (Status.INFEASIBLE_OR_UNBOUNDED, "infeasible_or_unbounded"),
        (Status.TIME_LIMIT, "time_limit"),
    ):
        ex = explain.explain_highs(compiled, status, SolveOptions())
        assert ex is not None and ex.kind == kind and ex.summary
    assert explain.explain_highs(compiled, Status.OPTIMAL, SolveOptions()) is None


def test_summaries_do_not_load_highspy() -> None:
    code = (
        "import sys\n"
        "from solvers.explain import summarize\n"
        "from solvers.result import Explanation\n"
        "assert 'highspy' not in sys.modules, 'explain imported highspy'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert np.isfinite(1.0)


# ------------------------------------------------------------------------ larger models, time budgets


def test_large_lp_conflict_goes_through_the_elastic_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(explain, "HIGHS_IIS_MAX", 0)  # as if the model were too large for HiGHS's IIS
    inst = _model(LINE_ROWS + CONFLICT3, LINE_VARS, objective=LINE_OBJ, **LINES)
    r, _ = _solve(inst)
    assert r.explanation is not None
    assert r.explanation.conflict_method == "elastic filter, then deletion filter (LP)"
    assert _constraints(r) == {"demand", "cap_a", "cap_b"}


def test_a_conflict_of_hundreds_of_rows_is_found_and_summarized_briefly() -> None:
    s = d = 50  # 2500 columns: beyond HiGHS's IIS, whose run time cannot be bounded
    inst = _model(
        [
            {"id": "supply", "template": "upper_bound", "for_each": "i in S",
             "expression": "sum(x[i, j] for j in D) <= 10", "source": "Each plant ships at most 10."},
            {"id": "demand", "template": "lower_bound", "for_each": "j in D",
             "expression": "sum(x[i, j] for i in S) >= 11", "source": "Each market needs 11."},
        ],
        [{"name": "x", "index": ["S", "D"]}],
        sets={"S": {"range": [1, s]}, "D": {"range": [1, d]}},
        objective={"sense": "minimize", "expression": "sum(x[i, j] for i in S for j in D)"},
    )  # fmt: skip
    t0 = time.monotonic()
    r, _ = _solve(inst, time_limit=20)
    assert time.monotonic() - t0 < 20
    ex = r.explanation
    assert ex is not None and ex.conflict_method == "elastic filter, then deletion filter (LP)"
    assert {c.id for c in ex.conflict} == {"supply", "demand"} and len(ex.conflict) == s + d
    assert "more" in ex.summary and len(ex.summary.splitlines()) < 40


def test_conflict_search_keeps_to_its_time_budget() -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(0, 100, (4, 30))
    rows = [
        {"id": f"split{i}", "template": "balance",
         "expression": " + ".join(f"{a[i, j]} * x[{j}]" for j in range(30)) + f" == {a[i].sum() // 2}"}
        for i in range(4)
    ]  # fmt: skip
    inst = _model(rows, [{"name": "x", "index": ["J"], "domain": "binary"}], sets={"J": {"range": [0, 29]}})
    compiled = HighsBackend().compile(inst, SolveOptions())
    t0 = time.monotonic()
    items, method = explain.find_conflict(compiled, time_budget=2.0)
    assert time.monotonic() - t0 < 5.0
    assert "time budget" in method and items
