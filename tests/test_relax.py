"""Applying suggested relaxations (``solvers.relax``): the new model is a valid contract
model, changes only what the suggestion names, and solves to the objective the
explanation promised."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solvers.api import SolveOptions, load_model, solve_model
from solvers.errors import ModelError
from solvers.ir import Instance
from solvers.lower import lower
from solvers.model import Model
from solvers.relax import FIX_MARK, apply_relaxation, apply_relaxations
from solvers.result import Relaxation, Result, Status

GOLDEN = Path(__file__).parent / "golden" / "core"


def _golden_infeasible() -> list[Any]:
    out = []
    for f in sorted(GOLDEN.glob("*.json")):
        spec = json.loads(f.read_text())
        if spec["expect"]["status"] == "infeasible":
            for backend in spec["backends"]:
                out.append(pytest.param(spec["model"], backend, id=f"{f.stem}-{backend}"))
    return out


def _solve(model: Model, backend: str | None = None) -> Result:
    return solve_model(model, backend=backend, options=SolveOptions(time_limit=30, threads=1))


def _rows(inst: Instance) -> dict[str, tuple[float, float, tuple[tuple[int, float], ...]]]:
    """Every linear row by name: its bounds and its (column, coefficient) entries."""
    out: dict[str, tuple[float, float, tuple[tuple[int, float], ...]]] = {}
    names = inst.columns.interner
    for b in inst.row_blocks:
        entries: dict[int, list[tuple[int, float]]] = {}
        for r, c, v in zip(b.rows.tolist(), b.cols.tolist(), b.coefs.tolist(), strict=True):
            entries.setdefault(int(r), []).append((int(c), float(v)))
        for i in range(b.n):
            out[b.row_name(names, i)] = (
                float(b.lower[i]),
                float(b.upper[i]),
                tuple(sorted(entries.get(i, []))),
            )
    return out


def _bounds(inst: Instance) -> dict[str, tuple[float, float]]:
    cols = inst.columns
    return {cols.name(j): (float(cols.lower[j]), float(cols.upper[j])) for j in range(cols.n)}


def _lags(inst: Instance) -> dict[str, float]:
    return {lc.name: float(lc.data["lag"]) for lc in inst.logic if lc.template == "precedence"}


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=rel)


def _roundtrip(model: Model) -> Model:
    """Through JSON text and ``load_model``: the same model comes back."""
    text = model.model_dump_json(by_alias=True, exclude_unset=True)
    back = load_model(text)
    assert back.model_dump(by_alias=True, mode="json") == model.model_dump(by_alias=True, mode="json")
    return back


def _assert_only(before: Instance, after: Instance, r: Relaxation) -> None:
    """Everything in ``after`` equals ``before`` except the one target of ``r``."""
    rows_b, rows_a = _rows(before), _rows(after)
    assert rows_b.keys() == rows_a.keys()
    bounds_b, bounds_a = _bounds(before), _bounds(after)
    assert bounds_b.keys() == bounds_a.keys()
    lags_b, lags_a = _lags(before), _lags(after)
    if r.kind == "rhs" and r.name in lags_b:
        assert _close(lags_a[r.name], r.suggested, 1e-9)
        lags_a[r.name] = lags_b[r.name]
        # interval bounds follow the horizon, which counts the lags
        for name in [n for n in bounds_b if n.endswith((".start", ".end"))]:
            del bounds_a[name], bounds_b[name]
    elif r.kind == "rhs":
        lo, hi, entries = rows_b[r.name]
        lo2, hi2, entries2 = rows_a[r.name]
        assert entries2 == entries
        if lo == hi:
            assert _close(lo2, r.suggested, 1e-9) and _close(hi2, r.suggested, 1e-9)
        elif _close(lo, r.current, 1e-9):
            assert _close(lo2, r.suggested, 1e-9) and hi2 == hi
        else:
            assert _close(hi2, r.suggested, 1e-9) and lo2 == lo
        rows_a[r.name] = rows_b[r.name]
    else:
        col = r.name.rpartition(".")[0]
        lo, hi = bounds_a[col]
        assert _close(lo if r.kind == "lower" else hi, r.suggested, 1e-9)
        bounds_a[col] = bounds_b[col]
    assert rows_a == rows_b
    assert bounds_a == bounds_b
    assert lags_a == lags_b


def _check_fixes(model: Model, backend: str | None = None, require: bool = True) -> Result:
    """Solve (infeasible, with suggestions), apply each alone (only its target changes), apply
    all (feasible, with the promised objective). Returns the first result."""
    before_json = model.model_dump_json(by_alias=True)
    result = _solve(model, backend)
    assert result.status is Status.INFEASIBLE
    ex = result.explanation
    assert ex is not None
    if not ex.relaxations and not require:
        # e.g. only clauses conflict: nothing to relax, and nothing to apply
        assert ex.conflict
        return result
    assert ex.relaxations, ex
    base = lower(model)
    for r in ex.relaxations:
        one = apply_relaxation(model, r)
        _assert_only(base, lower(_roundtrip(one)), r)
    fixed = _roundtrip(apply_relaxations(model, ex.relaxations))
    assert model.model_dump_json(by_alias=True) == before_json  # the input is untouched
    again = _solve(fixed, backend)
    if ex.objective_after_relaxation is not None:
        assert again.status in (Status.OPTIMAL, Status.FEASIBLE), again.message
        assert again.objective is not None
        assert _close(again.objective, ex.objective_after_relaxation), (
            again.objective,
            ex.objective_after_relaxation,
        )
    elif model.objective is not None and again.status is Status.UNBOUNDED:
        # feasible, but nothing bounds the objective: the fixed model without it must solve
        plain = fixed.model_copy(update={"objective": None})
        assert _solve(plain, backend).status is Status.OPTIMAL
    else:
        assert again.status in (Status.OPTIMAL, Status.FEASIBLE), again.message
    return result


# ------------------------------------------------------------------- the golden catalogue


@pytest.mark.parametrize(("data", "backend"), _golden_infeasible())
def test_golden_infeasible_models_become_feasible(data: dict[str, Any], backend: str) -> None:
    _check_fixes(load_model(data), backend, require=False)


def test_golden_catalogue_has_infeasible_models() -> None:
    assert len(_golden_infeasible()) >= 8


# ------------------------------------------------------------------- models built here

SHOP: dict[str, Any] = {
    "name": "shop",
    "sets": {"R": ["wood", "labor", "paint"], "P": ["chair", "table"]},
    "parameters": {
        "use": {
            "index": ["R", "P"],
            "values": {
                "wood": {"chair": 2, "table": 4},
                "labor": {"chair": 3, "table": 2},
                "paint": {"chair": 1, "table": 1},
            },
        },
        "avail": {"index": ["R"], "values": {"wood": 40, "labor": 90, "paint": 100}},
        "need": {"index": ["P"], "values": {"chair": 10, "table": 8}},
        "profit": {"index": ["P"], "values": {"chair": 30, "table": 50}},
    },
    "variables": [{"name": "x", "index": ["P"], "domain": "continuous", "upper": 1000}],
    "objective": {"sense": "maximize", "expression": "sum(profit[p] * x[p] for p in P)"},
    "constraints": [
        {
            "id": "capacity",
            "template": "linear",
            "for_each": "r in R",
            "expression": "sum(use[r, p] * x[p] for p in P) <= avail[r]",
            "source": "The shop has 40 units of wood, 90 hours of labor and 100 cans of paint.",
        },
        {
            "id": "orders",
            "template": "lower_bound",
            "for_each": "p in P",
            "expression": "x[p] >= need[p]",
            "source": "The orders ask for 10 chairs and 8 tables.",
        },
    ],
}


def _shop(**changes: Any) -> Model:
    data = json.loads(json.dumps(SHOP))
    data.update(changes)
    return load_model(data)


#: a second reader of ``avail``: with it, a fix cannot edit ``avail`` itself
TOTAL = {
    "id": "total",
    "template": "linear",
    "expression": "sum(x[p] for p in P) <= sum(avail[r] for r in R)",
}


def _shared_shop() -> Model:
    return _shop(constraints=[*SHOP["constraints"], TOTAL])


def test_indexed_rhs_moves_one_instance_through_a_parameter() -> None:
    model = _shared_shop()
    r = Relaxation(id="capacity", name="capacity[wood]", kind="rhs", current=40, suggested=52, change=12)
    new = apply_relaxation(model, r)
    c = next(c for c in new.constraints if c.id == "capacity")
    assert c.expression == "sum(use[r, p] * x[p] for p in P) <= avail[r] + relax_capacity[r]"  # type: ignore[union-attr]
    assert c.source == SHOP["constraints"][0]["source"] and c.template == "linear"
    assert c.description is not None and c.description.startswith(FIX_MARK)
    assert "capacity[wood]" in c.description
    p = new.parameters["relax_capacity"]
    assert p.index == ["R"] and p.default == 0 and p.values == {"wood": 12}
    assert p.description is not None and p.description.startswith(FIX_MARK)
    _assert_only(lower(model), lower(_roundtrip(new)), r)
    assert _solve(new).status is Status.OPTIMAL


def test_indexed_rhs_from_the_explanation() -> None:
    result = _check_fixes(_shop())
    assert result.explanation is not None
    assert {r.id for r in result.explanation.relaxations} <= {"capacity", "orders"}


def test_several_instances_share_one_parameter_and_sequential_fixes_reuse_it() -> None:
    model = _shared_shop()
    wood = Relaxation(id="capacity", name="capacity[wood]", kind="rhs", current=40, suggested=52, change=12)
    labor = Relaxation(
        id="capacity", name="capacity[labor]", kind="rhs", current=90, suggested=80, change=-10
    )
    together = apply_relaxations(model, [wood, labor])
    assert together.parameters["relax_capacity"].values == {"wood": 12, "labor": -10}
    one = apply_relaxation(model, wood)
    labor_then = Relaxation(
        id="capacity", name="capacity[labor]", kind="rhs", current=90, suggested=80, change=-10
    )
    both = apply_relaxation(one, labor_then)
    assert both.parameters["relax_capacity"].values == {"wood": 12, "labor": -10}
    assert both.constraints[0].expression == together.constraints[0].expression  # type: ignore[union-attr]
    assert _rows(lower(both)) == _rows(lower(together))
    # moving wood again adds to its value
    more = apply_relaxation(
        both, Relaxation(id="capacity", name="capacity[wood]", kind="rhs", current=52, suggested=60, change=8)
    )
    assert more.parameters["relax_capacity"].values == {"wood": 20, "labor": -10}
    assert "relax_capacity_2" not in more.parameters


def test_scalar_rhs_rewrites_the_number_or_appends_the_change() -> None:
    data = {
        "variables": [{"name": "x", "upper": 100}, {"name": "y", "upper": 100}],
        "parameters": {"lim": {"value": 10}},
        "constraints": [
            {"id": "a", "template": "linear", "expression": "x + y <= 10"},
            {"id": "b", "template": "linear", "expression": "x + y <= lim * 2"},
            {"id": "c", "template": "linear", "expression": "10 >= x - y"},
            {"id": "d", "template": "linear", "expression": "lim - 4 <= y"},
            {"id": "e", "template": "balance", "expression": "x - 2 * y == -3.5"},
            {"id": "f", "template": "linear", "expression": "(x) <= (7)"},
            {"id": "g", "template": "linear", "expression": "x <= y"},
        ],
    }
    model = load_model(data)
    rows = _rows(lower(model))
    cases = {
        "a": (13, "x + y <= 13"),
        "b": (25, "x + y <= lim * 2 + 5"),
        "c": (-13, "13 >= x - y"),  # row -x + y >= -10: the lower side moves to -13
        "d": (-2, "lim - 4 - 4 <= y"),  # row -y <= -6 (lim - 4 on the left): to -2
        "e": (-4, "x - 2 * y == -4"),
        "f": (6.5, "(x) <= (6.5)"),
        "g": (3, "x <= y + 3"),
    }
    for cid, (suggested, text) in cases.items():
        lo, hi, _ = rows[cid]
        current = hi if math.isinf(lo) or lo == hi else lo
        r = Relaxation(
            id=cid, name=cid, kind="rhs", current=current, suggested=suggested, change=suggested - current
        )
        new = apply_relaxation(model, r)
        c = next(c for c in new.constraints if c.id == cid)
        assert c.expression == text, (cid, c.expression)  # type: ignore[union-attr]
        assert c.description is not None and FIX_MARK in c.description
        assert not set(new.parameters) - set(model.parameters)
        _assert_only(lower(model), lower(_roundtrip(new)), r)


def test_newlines_and_non_ascii_elements_keep_their_places() -> None:
    data = {
        "sets": {"C": ["café", "bar"]},
        "variables": [{"name": "x", "index": ["C"], "upper": 100}],
        "constraints": [
            {"id": "a", "template": "linear", "expression": "x['café'] +\n x['bar'] <= 10"},
            {"id": "b", "template": "linear", "for_each": "c in C", "expression": "x[c] >= 2 * 3"},
        ],
    }
    model = load_model(data)
    r = Relaxation(id="a", name="a", kind="rhs", current=10, suggested=12, change=2)
    new = apply_relaxation(model, r)
    assert new.constraints[0].expression == "x['café'] +\n x['bar'] <= 12"  # type: ignore[union-attr]
    _assert_only(lower(model), lower(_roundtrip(new)), r)
    r = Relaxation(id="b", name="b[café]", kind="rhs", current=6, suggested=5, change=-1)
    new = apply_relaxation(model, r)
    assert new.constraints[1].expression == "x[c] >= 2 * 3 + relax_b[c]"  # type: ignore[union-attr]
    assert new.parameters["relax_b"].values == {"café": -1}
    _assert_only(lower(model), lower(_roundtrip(new)), r)


def test_a_fix_parameter_read_elsewhere_is_not_reused() -> None:
    model = _shared_shop()
    wood = Relaxation(id="capacity", name="capacity[wood]", kind="rhs", current=40, suggested=52, change=12)
    data = apply_relaxation(model, wood).model_dump(by_alias=True, mode="json", exclude_unset=True)
    data["constraints"].append(
        {"id": "extra", "template": "linear", "expression": "x['chair'] <= 100 + relax_capacity['wood']"}
    )
    edited = load_model(data)
    again = Relaxation(id="capacity", name="capacity[wood]", kind="rhs", current=52, suggested=55, change=3)
    new = apply_relaxation(edited, again)
    assert new.parameters["relax_capacity"].values == {"wood": 12}
    assert new.parameters["relax_capacity_2"].values == {"wood": 3}
    _assert_only(lower(edited), lower(new), again)


def test_two_sided_constraints_move_the_end_that_was_suggested() -> None:
    data = {
        "sets": {"M": ["jan", "feb"]},
        "parameters": {
            "lo": {"index": ["M"], "values": {"jan": 10, "feb": 20}},
            "hi": {"index": ["M"], "values": {"jan": 30, "feb": 20}},
        },
        "variables": [{"name": "make", "index": ["M"], "upper": 100}],
        "constraints": [
            {
                "id": "band",
                "template": "linear",
                "for_each": "m in M",
                "expression": "lo[m] <= make[m] <= hi[m]",
            },
            {
                "id": "rev",
                "template": "linear",
                "for_each": "m in M",
                "expression": "hi[m] >= make[m] + 1 >= lo[m]",
            },
            {"id": "plain", "template": "linear", "expression": "5 <= make['jan'] - make['feb'] <= 8"},
        ],
    }
    model = load_model(data)
    before = lower(model)
    rows = _rows(before)
    cases = [
        ("band", "band[jan]", "lower", 4.0, "lo[m] + relax_band[m] <= make[m] <= hi[m]"),
        ("band", "band[jan]", "upper", 35.0, "lo[m] <= make[m] <= hi[m] + relax_band[m]"),
        (
            "band",
            "band[feb]",
            "both",
            25.0,
            "lo[m] + relax_band_lower[m] <= make[m] <= hi[m] + relax_band_upper[m]",
        ),
        ("rev", "rev[jan]", "lower", 7.0, "hi[m] >= make[m] + 1 >= lo[m] + relax_rev[m]"),
        ("rev", "rev[jan]", "upper", 31.0, "hi[m] + relax_rev[m] >= make[m] + 1 >= lo[m]"),
        ("plain", "plain", "lower", 2.0, "2 <= make['jan'] - make['feb'] <= 8"),
        ("plain", "plain", "upper", 9.5, "5 <= make['jan'] - make['feb'] <= 9.5"),
    ]
    for cid, name, side, suggested, text in cases:
        lo, hi, _ = rows[name]
        current = hi if side == "upper" else lo
        r = Relaxation(
            id=cid, name=name, kind="rhs", current=current, suggested=suggested, change=suggested - current
        )
        new = apply_relaxation(model, r)
        c = next(c for c in new.constraints if c.id == cid)
        assert c.expression == text, (name, side, c.expression)  # type: ignore[union-attr]
        _assert_only(before, lower(_roundtrip(new)), r)


def test_pairs_and_ranges_index_the_relaxation_parameter() -> None:
    data = {
        "sets": {"A": [["a", "b"], ["b", "c"]], "T": {"range": [1, 3]}},
        "parameters": {"req": {"index": ["A"], "values": {"a": {"b": 5}, "b": {"c": 7}}}},
        "variables": [
            {"name": "flow", "index": ["A"], "upper": 6},
            {"name": "stock", "index": ["T"], "upper": 10},
        ],
        "objective": {
            "sense": "minimize",
            "expression": "sum(flow[i, j] for (i, j) in A) + sum(stock[t] for t in T)",
        },
        "constraints": [
            {
                "id": "meet",
                "template": "balance",
                "for_each": "(i, j) in A",
                "expression": "flow[i, j] == req[i, j]",
            },
            {
                "id": "grow",
                "template": "linear",
                "for_each": "t in T if t > 1",
                "expression": "stock[t] >= stock[t - 1] + 6",
            },
        ],
    }
    model = load_model(data)
    result = _check_fixes(model)
    assert result.explanation is not None
    new = apply_relaxations(model, result.explanation.relaxations)
    # req is read by meet alone, one element per instance: its element is edited
    assert new.parameters["req"].values == {"a": {"b": 5}, "b": {"c": 6}}
    assert not any(name.startswith("relax_meet") for name in new.parameters)
    for name, p in new.parameters.items():
        if name.startswith("relax_grow"):
            assert p.index == ["T"]
            assert isinstance(p.values, dict) and set(p.values) <= {"2", "3"}
    # the element (b, c) taking the default: a relaxation parameter indexed by the pairs
    data["parameters"]["req"] = {"index": ["A"], "values": {"a": {"b": 5}}, "default": 7}
    model = load_model(data)
    result = _check_fixes(model)
    assert result.explanation is not None
    new = apply_relaxations(model, result.explanation.relaxations)
    assert new.parameters["req"].values == {"a": {"b": 5}} and new.parameters["req"].default == 7
    assert new.parameters["relax_meet"].index == ["A"]
    assert new.parameters["relax_meet"].values == {"b": {"c": -1}}


def test_strict_comparison_moves_by_whole_numbers_only() -> None:
    data = {
        "variables": [{"name": "n", "domain": "integer", "upper": 50}],
        "constraints": [
            {"id": "few", "template": "upper_bound", "expression": "n < 10"},
            {"id": "many", "template": "lower_bound", "expression": "n >= 12"},
        ],
        "objective": {"sense": "minimize", "expression": "n"},
    }
    model = load_model(data)
    _check_fixes(model)
    r = Relaxation(id="few", name="few", kind="rhs", current=9, suggested=12, change=3)
    new = apply_relaxation(model, r)
    assert new.constraints[0].expression == "n < 13"  # type: ignore[union-attr]
    _assert_only(lower(model), lower(new), r)
    with pytest.raises(ModelError, match="whole number"):
        apply_relaxation(
            model, Relaxation(id="few", name="few", kind="rhs", current=9, suggested=9.5, change=0.5)
        )


# ------------------------------------------------------------------- a data side that is one parameter

STAFFING = Path(__file__).resolve().parents[1] / "examples" / "staffing_infeasible.json"

CALL_CENTRE: dict[str, Any] = {
    "name": "call_centre",
    "sets": {"S": ["early", "day", "late"]},
    "parameters": {
        "need": {"index": ["S"], "values": {"early": 4, "day": 7, "late": 5}},
        "pay": {"index": ["S"], "values": {"early": 110, "day": 100, "late": 120}},
        "team": {"value": 14, "unit": "agents", "description": "agents on the payroll"},
    },
    "variables": [{"name": "agents", "index": ["S"], "domain": "integer", "upper": 20}],
    "objective": {"sense": "minimize", "expression": "sum(pay[s] * agents[s] for s in S)"},
    "constraints": [
        {
            "id": "cover",
            "template": "lower_bound",
            "for_each": "s in S",
            "expression": "agents[s] >= need[s]",
        },
        {
            "id": "team_size",
            "template": "sum",
            "expression": "sum(agents[s] for s in S) <= team",
            "source": "The team has 14 agents.",
        },
    ],
}

TEAM_FIX = Relaxation(id="team_size", name="team_size", kind="rhs", current=14, suggested=16, change=2)


def _centre(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(CALL_CENTRE))
    data.update(changes)
    return data


def _expression(model: Model, cid: str) -> str:
    c = next(c for c in model.constraints if c.id == cid)
    return c.expression  # type: ignore[union-attr]


def test_the_staffing_example_gets_its_budget_edited() -> None:
    model = load_model(json.loads(STAFFING.read_text()))
    result = _check_fixes(model)
    assert result.explanation is not None
    new = apply_relaxations(model, result.explanation.relaxations)
    budget = new.parameters["budget"]
    assert budget.value == 4920 and budget.unit == "$"
    assert budget.description == f"{FIX_MARK} applied: 4000 -> 4920 (constraint budget_cap)."
    assert _expression(new, "budget_cap") == "sum(wage[s] * nurses[s] for s in S) <= budget"
    c = next(c for c in new.constraints if c.id == "budget_cap")
    assert c.description == f"{FIX_MARK} applied: budget_cap right-hand side +920 (budget 4000 -> 4920)."
    assert c.source == "The weekly wage budget is $4000."
    assert set(new.parameters) == set(model.parameters)
    assert model.parameters["budget"].value == 4000  # the input is untouched


def test_a_call_centre_team_size_is_edited_in_the_parameter() -> None:
    model = load_model(CALL_CENTRE)
    result = _check_fixes(model)
    assert result.explanation is not None
    assert [(r.name, r.current, r.suggested) for r in result.explanation.relaxations] == [
        ("team_size", 14, 16)
    ]
    new = apply_relaxation(model, TEAM_FIX)
    team = new.parameters["team"]
    assert team.value == 16 and team.unit == "agents"
    assert team.description == f"agents on the payroll {FIX_MARK} applied: 14 -> 16 (constraint team_size)."
    assert _expression(new, "team_size") == "sum(agents[s] for s in S) <= team"
    assert set(new.parameters) == set(model.parameters)
    _assert_only(lower(model), lower(_roundtrip(new)), TEAM_FIX)
    # fixed twice: the value moves again, the notes add up
    again = apply_relaxation(
        new, Relaxation(id="team_size", name="team_size", kind="rhs", current=16, suggested=18, change=2)
    )
    assert again.parameters["team"].value == 18
    assert (again.parameters["team"].description or "").endswith(
        f"14 -> 16 (constraint team_size). {FIX_MARK} applied: 16 -> 18 (constraint team_size)."
    )


@pytest.mark.parametrize(
    "reader",
    [
        {"constraints": [{"id": "spare", "template": "linear", "expression": "agents['late'] <= team - 10"}]},
        {"objective": {"sense": "minimize", "expression": "sum(agents[s] for s in S) - team"}},
        {"bound": "team"},
        {
            "constraints": [
                {
                    "id": "cap",
                    "template": "linear",
                    "for_each": "s in S if team > 0",
                    "expression": "agents[s] <= 20",
                }
            ]
        },
        {
            "constraints": [
                {"id": "ratio", "template": "linear", "for_each": "s in S", "expression": "agents[s] <= team"}
            ]
        },
    ],
    ids=["other_constraint", "objective", "variable_bound", "for_each_filter", "for_each_instances"],
)
def test_a_parameter_read_elsewhere_keeps_the_expression_rewrite(reader: dict[str, Any]) -> None:
    data = _centre()
    data["constraints"] += reader.get("constraints", [])
    if "objective" in reader:
        data["objective"] = reader["objective"]
    if "bound" in reader:
        data["variables"].append({"name": "lead", "upper": reader["bound"]})
    model = load_model(data)
    new = apply_relaxation(model, TEAM_FIX)
    assert _expression(new, "team_size") == "sum(agents[s] for s in S) <= team + 2"
    assert new.parameters["team"].value == 14
    assert new.parameters["team"].description == "agents on the payroll"
    _assert_only(lower(model), lower(_roundtrip(new)), TEAM_FIX)


def test_a_data_side_that_is_not_one_parameter_is_rewritten() -> None:
    for expression, text in [
        ("sum(agents[s] for s in S) <= team * 1", "sum(agents[s] for s in S) <= team * 1 + 2"),
        ("sum(agents[s] for s in S) <= team + 0", "sum(agents[s] for s in S) <= team + 0 + 2"),
    ]:
        data = _centre()
        data["constraints"][1]["expression"] = expression
        model = load_model(data)
        new = apply_relaxation(model, TEAM_FIX)
        assert _expression(new, "team_size") == text
        assert new.parameters["team"].value == 14


def test_the_data_on_the_left_or_an_equality_moves_the_value_the_right_way() -> None:
    data = _centre()
    data["constraints"][1]["expression"] = "team >= sum(agents[s] for s in S)"
    model = load_model(data)
    rows = _rows(lower(model))
    lo, hi, _ = rows["team_size"]
    current = lo if math.isfinite(lo) else hi
    r = Relaxation(id="team_size", name="team_size", kind="rhs", current=current, suggested=-16, change=-2)
    new = apply_relaxation(model, r)
    assert new.parameters["team"].value == 16
    assert _expression(new, "team_size") == "team >= sum(agents[s] for s in S)"
    _assert_only(lower(model), lower(_roundtrip(new)), r)
    data["constraints"][1]["expression"] = "sum(agents[s] for s in S) == team"
    data["constraints"][1]["template"] = "balance"
    model = load_model(data)
    new = apply_relaxation(model, TEAM_FIX)
    assert new.parameters["team"].value == 16
    _assert_only(lower(model), lower(_roundtrip(new)), TEAM_FIX)


def _per_site(cap: dict[str, Any], **extra: Any) -> Model:
    data: dict[str, Any] = {
        "sets": {"R": ["north", "south", "west"], "S": ["early", "late"]},
        "parameters": {"cap": cap},
        "variables": [{"name": "agents", "index": ["R", "S"], "domain": "integer", "upper": 30}],
        "constraints": [
            {
                "id": "site_cap",
                "template": "sum",
                "for_each": "r in R",
                "expression": "sum(agents[r, s] for s in S) <= cap[r]",
            }
        ],
        **extra,
    }
    return load_model(data)


def _site_fix(model: Model, site: str = "south", suggested: float = 12) -> tuple[Model, Relaxation]:
    name = f"site_cap[{site}]"
    current = _rows(lower(model))[name][1]
    r = Relaxation(
        id="site_cap", name=name, kind="rhs", current=current, suggested=suggested, change=suggested - current
    )
    new = apply_relaxation(model, r)
    _assert_only(lower(model), lower(_roundtrip(new)), r)
    return new, r


def test_an_indexed_parameter_gets_only_that_element_edited() -> None:
    model = _per_site(
        {"index": ["R"], "values": {"north": 8, "south": 9, "west": 10}, "description": "seats"}
    )
    new, _ = _site_fix(model)
    cap = new.parameters["cap"]
    assert cap.values == {"north": 8, "south": 12, "west": 10}
    assert cap.description == f"seats {FIX_MARK} applied: cap[south] 9 -> 12 (constraint site_cap[south])."
    assert _expression(new, "site_cap") == "sum(agents[r, s] for s in S) <= cap[r]"
    assert set(new.parameters) == {"cap"}
    c = new.constraints[0]
    assert (
        c.description is not None
        and "site_cap[south] right-hand side +3 (cap[south] 9 -> 12)" in c.description
    )
    # values as a list in set order: that entry
    listed = _per_site({"index": ["R"], "values": [8, 9, 10]})
    new, _ = _site_fix(listed, "west", 7.5)
    assert new.parameters["cap"].values == [8, 9, 7.5]
    # two instances at once
    model = _per_site({"index": ["R"], "values": {"north": 8, "south": 9, "west": 10}})
    rows = _rows(lower(model))
    both = [
        Relaxation(
            id="site_cap",
            name=f"site_cap[{r}]",
            kind="rhs",
            current=rows[f"site_cap[{r}]"][1],
            suggested=v,
            change=v - rows[f"site_cap[{r}]"][1],
        )
        for r, v in (("north", 11), ("west", 4))
    ]
    new = apply_relaxations(model, both)
    assert new.parameters["cap"].values == {"north": 11, "south": 9, "west": 4}
    assert set(new.parameters) == {"cap"}


def test_a_default_element_or_a_table_keeps_the_relaxation_parameter() -> None:
    model = _per_site({"index": ["R"], "values": {"north": 8}, "default": 9})
    new, _ = _site_fix(model)
    assert new.parameters["cap"].values == {"north": 8} and new.parameters["cap"].default == 9
    assert new.parameters["relax_site_cap"].values == {"south": 3}
    assert _expression(new, "site_cap") == "sum(agents[r, s] for s in S) <= cap[r] + relax_site_cap[r]"
    # one element edited, the other through the relaxation parameter
    rows = _rows(lower(model))
    mixed = [
        Relaxation(
            id="site_cap",
            name=f"site_cap[{r}]",
            kind="rhs",
            current=rows[f"site_cap[{r}]"][1],
            suggested=v,
            change=v - rows[f"site_cap[{r}]"][1],
        )
        for r, v in (("north", 11), ("west", 4))
    ]
    new = apply_relaxations(model, mixed)
    assert new.parameters["cap"].values == {"north": 11}
    assert new.parameters["relax_site_cap"].values == {"west": -5}
    tables = {"seats": {"columns": {"site": ["north", "south", "west"], "seats": [8, 9, 10]}}}
    table = _per_site(
        {"index": ["R"], "table": "seats", "index_columns": ["site"], "column": "seats"}, tables=tables
    )
    new, _ = _site_fix(table)
    assert new.parameters["cap"].table == "seats" and new.tables["seats"] == table.tables["seats"]
    assert new.parameters["relax_site_cap"].values == {"south": 3}


def test_an_element_read_by_several_instances_is_not_edited() -> None:
    data: dict[str, Any] = {
        "sets": {"R": ["north", "south"], "S": ["early", "late"]},
        "parameters": {"cap": {"index": ["R"], "values": {"north": 8, "south": 9}}},
        "variables": [{"name": "agents", "index": ["R", "S"], "domain": "integer", "upper": 30}],
        "constraints": [
            {
                "id": "shift_cap",
                "template": "upper_bound",
                "for_each": "r in R, s in S",
                "expression": "agents[r, s] <= cap[r]",
            }
        ],
    }
    model = load_model(data)
    r = Relaxation(
        id="shift_cap", name="shift_cap[south,late]", kind="rhs", current=9, suggested=12, change=3
    )
    new = apply_relaxation(model, r)
    assert new.parameters["cap"].values == {"north": 8, "south": 9}
    assert new.parameters["relax_shift_cap"].values == {"south": {"late": 3}}
    _assert_only(lower(model), lower(_roundtrip(new)), r)
    # a scalar parameter read by every instance of a for_each constraint
    data["parameters"] = {"cap": {"value": 9}}
    data["constraints"][0]["expression"] = "agents[r, s] <= cap"
    model = load_model(data)
    new = apply_relaxation(model, r)
    assert new.parameters["cap"].value == 9
    assert new.parameters["relax_shift_cap"].values == {"south": {"late": 3}}
    _assert_only(lower(model), lower(_roundtrip(new)), r)


def test_an_edit_that_does_not_lower_the_same_falls_back_to_the_rewrite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from solvers import relax

    monkeypatch.setattr(relax._Plan, "agrees", lambda self, ref, got: False)
    model = load_model(CALL_CENTRE)
    new = apply_relaxation(model, TEAM_FIX)
    assert _expression(new, "team_size") == "sum(agents[s] for s in S) <= team + 2"
    assert new.parameters["team"].value == 14


def test_a_lag_that_is_one_parameter_is_edited() -> None:
    scalar = json.loads(json.dumps(JOBS))
    scalar["parameters"]["gap"] = {"value": 1}
    scalar["constraints"] = [
        {"id": "seq", "template": "precedence", "before": "op['c', 1]", "after": "op['c', 2]", "lag": "gap"}
    ]
    model = load_model(scalar)
    r = Relaxation(id="seq", name="seq", kind="rhs", current=1, suggested=0, change=-1)
    new = apply_relaxation(model, r)
    assert new.constraints[0].lag == "gap"  # type: ignore[union-attr]
    assert new.parameters["gap"].value == 0
    assert new.parameters["gap"].description == f"{FIX_MARK} applied: 1 -> 0 (constraint seq)."
    _assert_only(lower(model), lower(_roundtrip(new)), r)
    indexed = json.loads(json.dumps(JOBS))
    indexed["parameters"]["gap"] = {"index": ["J"], "values": {"a": 1, "b": 1, "c": 1}}
    indexed["constraints"][0]["lag"] = "gap[j]"
    model = load_model(indexed)
    result = _check_fixes(model, "cpsat")
    assert result.explanation is not None
    new = apply_relaxations(model, result.explanation.relaxations)
    assert new.constraints[0].lag == "gap[j]"  # type: ignore[union-attr]
    moved = {r.name for r in result.explanation.relaxations}
    gap = new.parameters["gap"].values
    assert isinstance(gap, dict)
    assert {f"seq[{j}]" for j, v in gap.items() if v != 1} == moved


# ------------------------------------------------------------------- variable bounds


def _bound_model(upper: Any, parameters: dict[str, Any] | None = None, **extra: Any) -> Model:
    data = {
        "sets": {"S": ["s1", "s2", "s3"]},
        "parameters": parameters or {},
        "variables": [{"name": "x", "index": ["S"], "upper": upper}, {"name": "z", "upper": 4}],
        "objective": {"sense": "minimize", "expression": "sum(x[s] for s in S) + z"},
        "constraints": [
            {"id": "big_s2", "template": "lower_bound", "expression": "x['s2'] >= 1"},
            {"id": "z_min", "template": "lower_bound", "expression": "z >= 1"},
        ],
        **extra,
    }
    return load_model(data)


def _bound_fix(model: Model, name: str = "x[s2].upper", new: float = 9.0) -> tuple[Model, Relaxation]:
    bounds = _bounds(lower(model))
    col = name.rpartition(".")[0]
    side = name.rpartition(".")[2]
    cur = bounds[col][0 if side == "lower" else 1]
    var = col.partition("[")[0]
    r = Relaxation(id=var, name=name, kind=side, current=cur, suggested=new, change=new - cur)
    out = apply_relaxation(model, r)
    _assert_only(lower(model), lower(_roundtrip(out)), r)
    return out, r


def test_bound_of_a_scalar_variable_is_rewritten() -> None:
    model = _bound_model(5)
    new, _ = _bound_fix(model, "z.upper", 7)
    z = next(v for v in new.variables if v.name == "z")
    assert z.upper == 7 and z.description is not None and "z upper bound 4 -> 7" in z.description


def test_numeric_bound_of_an_indexed_variable_becomes_a_parameter() -> None:
    new, _ = _bound_fix(_bound_model(5))
    x = next(v for v in new.variables if v.name == "x")
    assert x.upper == "x_upper"
    p = new.parameters["x_upper"]
    assert p.index == ["S"] and p.default == 5 and p.values == {"s2": 9}


def test_scalar_parameter_bound_of_an_indexed_variable_keeps_the_parameter() -> None:
    model = _bound_model("cap", {"cap": {"value": 5}})
    new, _ = _bound_fix(model)
    assert new.parameters["cap"].value == 5
    assert new.parameters["x_upper"].default == 5 and new.parameters["x_upper"].values == {"s2": 9}


def test_unshared_indexed_bound_parameter_is_edited_in_place() -> None:
    model = _bound_model("cap", {"cap": {"index": ["S"], "values": {"s1": 5, "s2": 6}, "default": 3}})
    new, _ = _bound_fix(model)
    assert new.parameters["cap"].values == {"s1": 5, "s2": 9}
    assert set(new.parameters) == {"cap"}
    # an element that used the default gets its own value
    newer, _ = _bound_fix(model, "x[s3].upper", 4)
    assert newer.parameters["cap"].values == {"s1": 5, "s2": 6, "s3": 4}


def test_shared_bound_parameter_is_copied_not_changed() -> None:
    params = {"cap": {"index": ["S"], "values": {"s1": 5, "s2": 6, "s3": 7}}}
    model = _bound_model(
        "cap",
        params,
        constraints=[
            {
                "id": "total",
                "template": "linear",
                "expression": "sum(x[s] for s in S) <= sum(cap[s] for s in S)",
            }
        ],
    )
    new, _ = _bound_fix(model)
    assert new.parameters["cap"].values == {"s1": 5, "s2": 6, "s3": 7}
    assert new.parameters["x_upper"].values == {"s1": 5, "s2": 9, "s3": 7}


def test_table_and_list_bound_parameters_are_copied_with_their_values() -> None:
    tables = {"caps": {"columns": {"s": ["s1", "s2", "s3"], "cap": [5, 6, 7]}}}
    model = _bound_model(
        "cap",
        {"cap": {"index": ["S"], "table": "caps", "index_columns": ["s"], "column": "cap"}},
        tables=tables,
    )
    new, _ = _bound_fix(model)
    assert new.parameters["x_upper"].values == {"s1": 5, "s2": 9, "s3": 7}
    listed = _bound_model("cap", {"cap": {"index": ["S"], "values": [5, 6, 7]}})
    new, _ = _bound_fix(listed, "x[s1].upper", 8)
    assert new.parameters["cap"].values == [8, 6, 7]  # a list in set order, edited in place
    assert set(new.parameters) == {"cap"}


def test_lower_bound_suggested_by_the_explanation() -> None:
    data = {
        "sets": {"S": ["a", "b"]},
        "parameters": {"floor": {"index": ["S"], "values": {"a": 50, "b": 1}}},
        "variables": [{"name": "x", "index": ["S"], "lower": "floor", "upper": 1000}],
        "objective": {"sense": "minimize", "expression": "sum(x[s] for s in S)"},
        "constraints": [{"id": "small_a", "template": "upper_bound", "expression": "x['a'] <= 5"}],
    }
    model = load_model(data)
    result = _check_fixes(model)
    assert result.explanation is not None
    kinds = {(r.kind, r.name) for r in result.explanation.relaxations}
    assert ("lower", "x[a].lower") in kinds, kinds
    new = apply_relaxations(model, result.explanation.relaxations)
    assert new.parameters["floor"].values == {"a": 5, "b": 1}


# ------------------------------------------------------------------- CP-SAT: precedence lags

JOBS: dict[str, Any] = {
    "sets": {"J": ["a", "b", "c"], "K": [1, 2]},
    "parameters": {
        "dur": {
            "index": ["J", "K"],
            "values": {"a": {"1": 3, "2": 2}, "b": {"1": 4, "2": 2}, "c": {"1": 2, "2": 5}},
        }
    },
    "variables": [
        {"name": "op", "index": ["J", "K"], "domain": "interval", "duration": "dur", "end": [0, 7]}
    ],
    "objective": {"sense": "minimize", "expression": "sum(end(op[j, 2]) for j in J)"},
    "constraints": [
        {
            "id": "seq",
            "template": "precedence",
            "for_each": "j in J",
            "before": "op[j, 1]",
            "after": "op[j, 2]",
            "lag": 1,
        }
    ],
}


def test_precedence_lag_of_one_instance() -> None:
    model = load_model(JOBS)
    result = _check_fixes(model, "cpsat")
    assert result.explanation is not None
    new = apply_relaxations(model, result.explanation.relaxations)
    seq = new.constraints[0]
    assert seq.lag == "1 + relax_seq[j]"  # type: ignore[union-attr]
    scalar = json.loads(json.dumps(JOBS))
    scalar["constraints"] = [
        {"id": "seq", "template": "precedence", "before": "op['c', 1]", "after": "op['c', 2]", "lag": 1}
    ]
    model = load_model(scalar)
    r = Relaxation(id="seq", name="seq", kind="rhs", current=1, suggested=0, change=-1)
    new = apply_relaxation(model, r)
    assert new.constraints[0].lag == 0  # type: ignore[union-attr]
    _assert_only(lower(model), lower(new), r)
    # without time windows the horizon (and so the interval bounds) follows the lags
    del scalar["variables"][0]["end"]
    scalar["constraints"][0]["lag"] = "dur['a', 1] + 1"
    model = load_model(scalar)
    r = Relaxation(id="seq", name="seq", kind="rhs", current=4, suggested=2.5, change=-1.5)
    new = apply_relaxation(model, r)
    assert new.constraints[0].lag == "dur['a', 1] + 1 - 1.5"  # type: ignore[union-attr]
    _assert_only(lower(model), lower(_roundtrip(new)), r)


# ------------------------------------------------------------------- refusals


def _refused(model: Model, match: str, **fields: Any) -> None:
    r = {
        "id": "capacity",
        "name": "capacity[wood]",
        "kind": "rhs",
        "current": 40,
        "suggested": 50,
        "change": 10,
    }
    r.update(fields)
    before = model.model_dump_json(by_alias=True)
    with pytest.raises(ModelError, match=match) as info:
        apply_relaxation(model, r)
    assert info.value.issue.code == "relax"
    assert model.model_dump_json(by_alias=True) == before


def test_refusals_say_why() -> None:
    model = _shop()
    _refused(model, "no constraint 'nope'", id="nope", name="nope")
    _refused(model, "no instance 'capacity\\[steel\\]'", name="capacity[steel]")
    _refused(model, "starts from 41", current=41)
    _refused(model, "unknown relaxation kind", kind="both")
    _refused(model, "no variable 'y'", id="y", name="y.upper", kind="upper", current=1)
    _refused(model, "no element 'x\\[sofa\\]'", id="x", name="x[sofa].upper", kind="upper", current=1000)
    _refused(model, "not '<variable>.upper'", id="x", name="x[chair].lower", kind="upper", current=1000)
    _refused(model, "cross", id="x", name="x[chair].upper", kind="upper", current=1000, suggested=-5)
    _refused(model, "not a relaxation", current="forty")
    with pytest.raises(ModelError, match="two suggestions"):
        r = Relaxation(id="capacity", name="capacity[wood]", kind="rhs", current=40, suggested=50, change=10)
        apply_relaxations(model, [r, r])


def test_logic_templates_and_binary_or_interval_bounds_are_refused() -> None:
    data = {
        "variables": [{"name": "b", "domain": "binary"}, {"name": "x", "domain": "integer", "upper": 9}],
        "constraints": [{"id": "rule", "template": "implication", "if": "b == 1", "then": "x >= 3"}],
    }
    model = load_model(data)
    _refused(model, "'implication' constraint", id="rule", name="rule", current=3)
    _refused(model, "binary variable", id="b", name="b.upper", kind="upper", current=1)
    jobs = load_model(JOBS)
    _refused(jobs, "interval variable", id="op", name="op[a,1].start.upper", kind="upper", current=7)


def test_no_suggestions_give_an_equal_copy() -> None:
    model = _shop()
    new = apply_relaxations(model, [])
    assert new is not model
    assert new.model_dump(by_alias=True) == model.model_dump(by_alias=True)


# ------------------------------------------------------------------- property: any comparison form

_FORMS = [
    ("{lhs} <= {rhs}", 1),
    ("{lhs} >= {rhs}", 1),
    ("{lhs} == {rhs}", 1),
    ("{rhs} >= {lhs}", 0),
    ("{rhs} <= {lhs}", 0),
    ("{rhs} == {lhs}", 0),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    form=st.sampled_from(_FORMS),
    lhs=st.sampled_from(["x[i]", "2 * x[i] - y", "sum(x[j] for j in I) + 3", "(x[i] + y) / 2"]),
    rhs=st.sampled_from(["5", "-2.5", "b[i]", "b[i] * 2 - 1", "(b[i])", "0"]),
    indexed=st.booleans(),
    delta=st.one_of(st.integers(-50, 50), st.floats(-100, 100, allow_nan=False).map(lambda v: round(v, 3))),
    which=st.sampled_from(["e1", "e2", "e3"]),
)
def test_any_comparison_moves_exactly_the_suggested_row(
    form: tuple[str, int], lhs: str, rhs: str, indexed: bool, delta: float, which: str
) -> None:
    if delta == 0:
        return
    text = form[0].format(lhs=lhs, rhs=rhs)
    if not indexed:
        text = text.replace("[i]", f"['{which}']")
    con: dict[str, Any] = {"id": "c", "template": "linear", "expression": text}
    if indexed:
        con["for_each"] = "i in I"
    data = {
        "sets": {"I": ["e1", "e2", "e3"]},
        "parameters": {"b": {"index": ["I"], "values": {"e1": 1, "e2": 2.5, "e3": -4}}},
        "variables": [{"name": "x", "index": ["I"], "lower": None}, {"name": "y", "lower": None}],
        "constraints": [con],
    }
    model = load_model(data)
    before = lower(model)
    name = f"c[{which}]" if indexed else "c"
    lo, hi, _ = _rows(before)[name]
    current = lo if math.isfinite(lo) else hi
    r = Relaxation(id="c", name=name, kind="rhs", current=current, suggested=current + delta, change=delta)
    new = apply_relaxation(model, r)
    _assert_only(before, lower(_roundtrip(new)), r)
