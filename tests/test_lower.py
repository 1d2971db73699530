"""Lowering: contract models become ground rows, columns, logic constraints and intervals."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest

from solvers.api import load_model
from solvers.errors import CheckFailed, ModelError
from solvers.ir import And, Atom, Const, Instance, LinTerm, Lit, Or
from solvers.lower import lower

INF = math.inf


def low(data: dict[str, Any]) -> Instance:
    return lower(load_model(data))


def fails(data: dict[str, Any]) -> ModelError:
    with pytest.raises(ModelError) as info:
        low(data)
    return info.value


def col(inst: Instance, name: str) -> int:
    return inst.columns.names().index(name)


def rows(inst: Instance, cid: str, aux: bool = False) -> dict[str, tuple[dict[str, float], float, float]]:
    """Row name -> ({column name: coefficient}, lower, upper) for one constraint id."""
    names = inst.columns.names()
    out: dict[str, tuple[dict[str, float], float, float]] = {}
    for b in inst.row_blocks:
        if b.cid != cid or b.aux != aux:
            continue
        for i in range(b.n):
            terms: dict[str, float] = {}
            for r, c, v in zip(b.rows.tolist(), b.cols.tolist(), b.coefs.tolist(), strict=True):
                if r == i:
                    terms[names[c]] = terms.get(names[c], 0.0) + v
            name = b.row_name(inst.columns.interner, i)
            assert name not in out, f"row name {name} is used twice"
            out[name] = (
                {k: v for k, v in terms.items() if v != 0},
                float(b.lower[i]),
                float(b.upper[i]),
            )
    return out


def logic(inst: Instance, cid: str) -> dict[str, dict[str, Any]]:
    return {lc.name: lc.data for lc in inst.logic if lc.cid == cid}


FURNITURE: dict[str, Any] = {
    "schema": "optscribe.model/v1",
    "name": "furniture",
    "sets": {"P": ["chair", "table"], "R": ["wood", "labor"]},
    "parameters": {
        "profit": {"index": ["P"], "values": {"chair": 30, "table": 50}},
        "use": {
            "index": ["R", "P"],
            "values": {"wood": {"chair": 2, "table": 4}, "labor": {"chair": 3, "table": 2}},
        },
        "avail": {"index": ["R"], "values": {"wood": 100, "labor": 90}},
        "min_tables": {"value": 5},
    },
    "variables": [
        {"name": "x", "index": ["P"], "domain": "integer", "lower": 0},
        {"name": "big_batch", "domain": "binary"},
    ],
    "objective": {"sense": "maximize", "expression": "sum(profit[p] * x[p] for p in P)"},
    "constraints": [
        {
            "id": "capacity",
            "template": "linear",
            "for_each": "r in R",
            "expression": "sum(use[r, p] * x[p] for p in P) <= avail[r]",
            "source": "The shop has 100 units of wood and 90 hours of labor.",
        },
        {"id": "tables_min", "template": "lower_bound", "expression": "x['table'] >= min_tables"},
        {
            "id": "batch_rule",
            "template": "implication",
            "if": "big_batch == 1",
            "then": "x['chair'] >= 20",
        },
    ],
}


def with_constraints(*cons: dict[str, Any], base: dict[str, Any] = FURNITURE) -> dict[str, Any]:
    m = copy.deepcopy(base)
    m["constraints"] = list(cons)
    return m


# ============================================================================ the design example


def test_design_example_lowers_to_named_rows_columns_and_logic() -> None:
    inst = low(FURNITURE)
    assert inst.columns.names() == ["x[chair]", "x[table]", "big_batch"]
    assert inst.columns.integer.tolist() == [True, True, True]
    assert inst.columns.upper.tolist() == [INF, INF, 1.0]
    assert rows(inst, "capacity") == {
        "capacity[wood]": ({"x[chair]": 2, "x[table]": 4}, -INF, 100),
        "capacity[labor]": ({"x[chair]": 3, "x[table]": 2}, -INF, 90),
    }
    assert rows(inst, "tables_min") == {"tables_min": ({"x[table]": 1}, 5, INF)}
    assert logic(inst, "batch_rule") == {"batch_rule": {"if": Lit(2), "then": Atom((0,), (1.0,), 20.0, INF)}}
    obj = inst.objective
    assert obj is not None and obj.sense == "maximize"
    assert dict(zip(obj.cols.tolist(), obj.coefs.tolist(), strict=True)) == {0: 30, 1: 50}
    assert inst.sources["capacity"] == "The shop has 100 units of wood and 90 hours of labor."
    assert inst.templates["batch_rule"] == "implication"
    assert inst.features() == {"integer", "implication"}


# ============================================================================ for_each and sets


def test_for_each_over_two_sets_with_a_condition_on_a_parameter() -> None:
    m = {
        "sets": {"S": ["s1", "s2"], "D": ["d1", "d2", "d3"]},
        "parameters": {
            "cost": {"index": ["S", "D"], "values": [[1, 0, 2], [0, 3, 0]]},
            "cap": {"index": ["S"], "values": [10, 20]},
        },
        "variables": [{"name": "x", "index": ["S", "D"]}],
        "constraints": [
            {
                "id": "lane",
                "template": "upper_bound",
                "for_each": "s in S, d in D if cost[s, d] > 0 and s != 's2'",
                "expression": "x[s, d] <= cap[s] * cost[s, d]",
            }
        ],
    }
    inst = low(m)
    assert rows(inst, "lane") == {
        "lane[s1,d1]": ({"x[s1,d1]": 1}, -INF, 10),
        "lane[s1,d3]": ({"x[s1,d3]": 1}, -INF, 20),
    }


def test_conditions_inside_sum_and_several_loops() -> None:
    m = {
        "sets": {"I": {"range": [1, 3]}, "J": {"range": [1, 3]}},
        "variables": [{"name": "x", "index": ["I", "J"]}],
        "constraints": [
            {
                "id": "upper_triangle",
                "template": "sum",
                "expression": "sum(x[i, j] for i in I for j in J if j > i) <= 1",
            },
            {
                "id": "row",
                "template": "sum",
                "for_each": "i in I if i != 2",
                "expression": "sum((j - i) * x[i, j] for j in J if j >= i if j < 3) >= 0",
            },
        ],
    }
    inst = low(m)
    assert rows(inst, "upper_triangle") == {
        "upper_triangle": ({"x[1,2]": 1, "x[1,3]": 1, "x[2,3]": 1}, -INF, 1)
    }
    assert rows(inst, "row") == {"row[1]": ({"x[1,2]": 1}, 0, INF), "row[3]": ({}, 0, INF)}


def test_tuple_sets_in_loops_and_in_membership_conditions() -> None:
    m = {
        "sets": {
            "N": ["a", "b", "c"],
            "A": [["a", "b"], ["b", "c"], ["a", "c"]],
        },
        "parameters": {"dist": {"index": ["A"], "values": {"a": {"b": 2, "c": 5}, "b": {"c": 1}}}},
        "variables": [{"name": "f", "index": ["A"]}, {"name": "g", "index": ["N", "N"]}],
        "objective": {"sense": "minimize", "expression": "sum(dist[i, j] * f[i, j] for (i, j) in A)"},
        "constraints": [
            {
                "id": "out_of",
                "template": "balance",
                "for_each": "n in N if n != 'c'",
                "expression": "sum(f[i, j] for (i, j) in A if i == n) == 1",
            },
            {
                "id": "arcs_only",
                "template": "upper_bound",
                "for_each": "i in N, j in N if (i, j) in A",
                "expression": "g[i, j] <= 1",
            },
            {
                "id": "no_arc",
                "template": "upper_bound",
                "for_each": "i in N, j in N if (i, j) not in A and i != j",
                "expression": "g[i, j] <= 0",
            },
        ],
    }
    inst = low(m)
    assert rows(inst, "out_of") == {
        "out_of[a]": ({"f[a,b]": 1, "f[a,c]": 1}, 1, 1),
        "out_of[b]": ({"f[b,c]": 1}, 1, 1),
    }
    assert set(rows(inst, "arcs_only")) == {"arcs_only[a,b]", "arcs_only[b,c]", "arcs_only[a,c]"}
    assert set(rows(inst, "no_arc")) == {"no_arc[b,a]", "no_arc[c,a]", "no_arc[c,b]"}
    obj = inst.objective
    assert obj is not None
    assert dict(zip(obj.cols.tolist(), obj.coefs.tolist(), strict=True)) == {
        col(inst, "f[a,b]"): 2,
        col(inst, "f[b,c]"): 1,
        col(inst, "f[a,c]"): 5,
    }


def test_ranges_shifted_index_and_time_conditions() -> None:
    m = {
        "sets": {"T": {"range": [1, 4]}},
        "parameters": {"demand": {"index": ["T"], "values": {"1": 4, "2": 5, "3": 6, "4": 7}}},
        "variables": [{"name": "stock", "index": ["T"]}, {"name": "make", "index": ["T"]}],
        "constraints": [
            {
                "id": "flow",
                "template": "balance",
                "for_each": "t in T if t > 1",
                "expression": "stock[t] == stock[t - 1] + make[t] - demand[t]",
            },
            {
                "id": "cumulative",
                "template": "lower_bound",
                "for_each": "t in T",
                "expression": "sum(make[tau] for tau in T if tau <= t)"
                " >= sum(demand[tau] for tau in T if tau <= t)",
            },
            {"id": "begin", "template": "balance", "expression": "stock[first(T)] == 0"},
            {"id": "finish", "template": "lower_bound", "expression": "stock[last(T)] >= len(T)"},
            {
                "id": "ramp",
                "template": "upper_bound",
                "for_each": "t in T",
                "expression": "make[t] <= 2 * ord(t)",
            },
        ],
    }
    inst = low(m)
    assert rows(inst, "flow") == {
        f"flow[{t}]": ({f"stock[{t}]": 1, f"stock[{t - 1}]": -1, f"make[{t}]": -1}, -d, -d)
        for t, d in ((2, 5), (3, 6), (4, 7))
    }
    cum = rows(inst, "cumulative")
    assert cum["cumulative[3]"] == ({"make[1]": 1, "make[2]": 1, "make[3]": 1}, 15, INF)
    assert rows(inst, "begin") == {"begin": ({"stock[1]": 1}, 0, 0)}
    assert rows(inst, "finish") == {"finish": ({"stock[4]": 1}, 4, INF)}
    assert [r[2] for r in rows(inst, "ramp").values()] == [2, 4, 6, 8]


def test_ord_counts_positions_in_a_named_set() -> None:
    m = {
        "sets": {"S": ["z", "y", "x"]},
        "variables": [{"name": "v", "index": ["S"]}],
        "constraints": [
            {
                "id": "pos",
                "template": "linear",
                "for_each": "s in S",
                "expression": "v[s] <= ord(s)",
            },
            {"id": "ends", "template": "linear", "expression": "v[first(S)] + v[last(S)] <= 1"},
        ],
    }
    inst = low(m)
    assert {k: v[2] for k, v in rows(inst, "pos").items()} == {"pos[z]": 1, "pos[y]": 2, "pos[x]": 3}
    assert rows(inst, "ends") == {"ends": ({"v[z]": 1, "v[x]": 1}, -INF, 1)}


def test_two_sided_comparisons() -> None:
    inst = low(
        with_constraints({"id": "band", "template": "linear", "expression": "2 <= x['chair'] + 1 <= 7"})
    )
    assert rows(inst, "band") == {"band": ({"x[chair]": 1}, 1, 6)}
    inst = low(with_constraints({"id": "band", "template": "linear", "expression": "7 >= x['chair'] >= 2"}))
    assert rows(inst, "band") == {"band": ({"x[chair]": 1}, 2, 7)}


def test_arithmetic_on_both_sides_is_moved_into_the_bounds() -> None:
    inst = low(
        with_constraints(
            {
                "id": "mix",
                "template": "ratio",
                "expression": "(x['chair'] + 4) / 2 >= 3 * x['table'] - 2 ** 3 + min_tables",
            }
        )
    )
    # x/2 + 2 >= 3y - 8 + 5  ->  x/2 - 3y >= -5
    assert rows(inst, "mix") == {"mix": ({"x[chair]": 0.5, "x[table]": -3}, -5, INF)}


def test_a_constraint_whose_for_each_selects_nothing_has_no_rows() -> None:
    inst = low(
        with_constraints(
            {
                "id": "none",
                "template": "linear",
                "for_each": "r in R if avail[r] > 1000",
                "expression": "x['chair'] <= avail[r]",
            }
        )
    )
    assert rows(inst, "none") == {}


def test_string_set_elements_that_look_like_dunders_are_only_data() -> None:
    m = {
        "sets": {"S": ["__class__", "__import__"]},
        "variables": [{"name": "x", "index": ["S"]}],
        "constraints": [{"id": "c", "template": "linear", "expression": "x['__import__'] <= 1"}],
    }
    assert rows(low(m), "c") == {"c": ({"x[__import__]": 1}, -INF, 1)}


# ============================================================================ parameters and data


def test_parameter_as_nested_dicts_lists_and_range_keys() -> None:
    m = {
        "sets": {"R": ["wood", "labor"], "P": ["chair", "table"], "T": {"range": [3, 5]}},
        "parameters": {
            "nested": {
                "index": ["R", "P"],
                "values": {"wood": {"chair": 2, "table": 4}, "labor": {"chair": 3, "table": 1}},
            },
            "dense": {"index": ["R", "P"], "values": [[2, 4], [3, 1]]},
            "mixed": {"index": ["R", "P"], "values": {"wood": [2, 4], "labor": {"chair": 3, "table": 1}}},
            "by_t": {"index": ["T"], "values": {"3": 30, "4": 40, "5": 50}},
            "list_t": {"index": ["T"], "values": [30, 40, 50]},
        },
        "variables": [{"name": "x", "index": ["R", "P"]}, {"name": "y", "index": ["T"]}],
        "constraints": [
            {
                "id": f"use_{p}",
                "template": "linear",
                "for_each": "r in R",
                "expression": f"sum({p}[r, q] * x[r, q] for q in P) <= 10",
            }
            for p in ("nested", "dense", "mixed")
        ]
        + [
            {"id": f"t_{p}", "template": "linear", "for_each": "t in T", "expression": f"y[t] <= {p}[t]"}
            for p in ("by_t", "list_t")
        ],
    }
    inst = low(m)
    expect = {
        "wood": ({"x[wood,chair]": 2, "x[wood,table]": 4}, -INF, 10),
        "labor": ({"x[labor,chair]": 3, "x[labor,table]": 1}, -INF, 10),
    }
    for p in ("nested", "dense", "mixed"):
        assert rows(inst, f"use_{p}") == {f"use_{p}[{k}]": v for k, v in expect.items()}
    for p in ("by_t", "list_t"):
        assert [v[2] for v in rows(inst, f"t_{p}").values()] == [30, 40, 50]


def test_defaults_fill_missing_values() -> None:
    m = copy.deepcopy(FURNITURE)
    m["parameters"]["profit"] = {"index": ["P"], "values": {"chair": 30}, "default": 7}
    obj = low(m).objective
    assert obj is not None and obj.coefs.tolist() == [30, 7]


def test_bounds_from_parameters_numbers_and_null() -> None:
    m = {
        "sets": {"P": ["a", "b"]},
        "parameters": {
            "cap": {"index": ["P"], "values": {"a": 3, "b": 4}},
            "floor": {"value": 1},
        },
        "variables": [
            {"name": "x", "index": ["P"], "upper": "cap", "lower": "floor"},
            {"name": "free", "lower": None},
            {"name": "b", "index": ["P"], "domain": "binary", "upper": 5},
            {"name": "n", "domain": "integer", "lower": -2, "upper": 2.5},
        ],
        "constraints": [
            {"id": "c", "template": "linear", "expression": "x['a'] + free + b['a'] + b['b'] + n <= 10"}
        ],
    }
    cols = low(m).columns
    assert cols.lower.tolist() == [1, 1, -INF, 0, 0, -2]
    assert cols.upper.tolist() == [3, 4, INF, 1, 1, 2.5]
    assert cols.integer.tolist() == [False, False, False, True, True, True]


@pytest.mark.parametrize("kind", ["columns", "records", "csv"])
def test_tables_feed_sets_and_parameters(kind: str) -> None:
    table: dict[str, Any] = {
        "columns": {"columns": {"origin": ["A", "A", "B"], "dest": ["X", "Y", "X"], "cost": [1.5, 2, 3]}},
        "records": {
            "records": [
                {"origin": "A", "dest": "X", "cost": 1.5},
                {"origin": "A", "dest": "Y", "cost": 2},
                {"origin": "B", "dest": "X", "cost": 3},
            ]
        },
        "csv": {"csv": "origin,dest,cost\nA,X,1.5\nA,Y,2\n\nB,X,3\n"},
    }[kind]
    m = {
        "tables": {"routes": table},
        "sets": {
            "R": {"table": "routes", "columns": ["origin", "dest"]},
            "O": {"table": "routes", "column": "origin"},
        },
        "parameters": {
            "cost": {"table": "routes", "index": ["R"], "index_columns": ["origin", "dest"], "column": "cost"}
        },
        "variables": [{"name": "f", "index": ["R"]}],
        "objective": {"sense": "minimize", "expression": "sum(cost[o, d] * f[o, d] for (o, d) in R)"},
        "constraints": [
            {
                "id": "supply",
                "template": "linear",
                "for_each": "o in O",
                "expression": "sum(f[a, d] for (a, d) in R if a == o) <= 10",
            }
        ],
    }
    inst = low(m)
    assert inst.columns.names() == ["f[A,X]", "f[A,Y]", "f[B,X]"]
    obj = inst.objective
    assert obj is not None and obj.coefs.tolist() == [1.5, 2, 3]
    assert rows(inst, "supply") == {
        "supply[A]": ({"f[A,X]": 1, "f[A,Y]": 1}, -INF, 10),
        "supply[B]": ({"f[B,X]": 1}, -INF, 10),
    }


def test_table_parameter_over_two_sets_with_default() -> None:
    m = {
        "tables": {"t": {"csv": "o,d,c\nA,X,1\nB,Y,2\n"}},
        "sets": {"O": ["A", "B"], "D": ["X", "Y"]},
        "parameters": {
            "c": {"table": "t", "index": ["O", "D"], "index_columns": ["o", "d"], "column": "c", "default": 9}
        },
        "variables": [{"name": "x", "index": ["O", "D"]}],
        "objective": {"sense": "minimize", "expression": "sum(c[o, d] * x[o, d] for o in O for d in D)"},
    }
    obj = low(m).objective
    assert obj is not None and obj.coefs.tolist() == [1, 9, 9, 2]


# ============================================================================ intervals


def test_interval_variables_start_end_and_horizon() -> None:
    m = {
        "sets": {"J": ["a", "b"]},
        "parameters": {"d": {"index": ["J"], "values": {"a": 2, "b": 3}}},
        "variables": [
            {"name": "t", "index": ["J"], "domain": "interval", "duration": "d"},
            {"name": "late", "domain": "interval", "duration": 1, "start": [4, 6], "end": [5, 9]},
        ],
        "constraints": [
            {"id": "seq", "template": "linear", "expression": "start(t['b']) >= end(t['a']) + 1"},
            {"id": "after", "template": "precedence", "before": "t['b']", "after": "late", "lag": 2},
        ],
        "objective": {"sense": "minimize", "expression": "end(late)"},
    }
    inst = low(m)
    names = inst.columns.names()
    assert names == ["t[a].start", "t[a].end", "t[b].start", "t[b].end", "late.start", "late.end"]
    iv = inst.intervals
    assert iv.names == ["t[a]", "t[b]", "late"]
    assert iv.start_col.tolist() == [0, 2, 4] and iv.end_col.tolist() == [1, 3, 5]
    assert iv.duration.tolist() == [2, 3, 1]
    horizon = 4 + 2 + 3 + 1 + 2  # latest release + durations + lags
    lo, hi = inst.columns.lower.tolist(), inst.columns.upper.tolist()
    assert lo[:4] == [0, 2, 0, 3]
    assert hi[:4] == [horizon - 2, horizon, horizon - 3, horizon]
    assert (lo[4], hi[4], lo[5], hi[5]) == (4, 6, 5, 9)
    assert rows(inst, "seq") == {"seq": ({"t[b].start": 1, "t[a].end": -1}, 1, INF)}
    assert logic(inst, "after") == {"after": {"before": 1, "after": 2, "lag": 2.0}}
    assert "interval" in inst.features()


def test_interval_errors() -> None:
    base = {"variables": [{"name": "t", "domain": "interval", "duration": 2}, {"name": "x"}]}
    for expr, words in [
        ("t <= 3", "number or a linear expression"),
        ("start(x) <= 3", "start() takes an interval variable"),
        ("t + 1 <= 3", "interval"),
    ]:
        m = copy.deepcopy(base)
        m["constraints"] = [{"id": "c", "template": "linear", "expression": expr}]
        e = fails(m)
        assert words in e.issue.message, (expr, e.issue.message)
        assert e.issue.code == "type"
    with pytest.raises(ModelError, match="belong to interval variables"):
        load_model({"variables": [{"name": "x", "duration": 3}]})
    with pytest.raises(ModelError, match="needs a 'duration'"):
        load_model({"variables": [{"name": "x", "domain": "interval"}]})


# ============================================================================ min / max / abs


def test_max_below_a_bound_becomes_auxiliary_rows() -> None:
    inst = low(
        with_constraints(
            {"id": "peak", "template": "linear", "expression": "max(x[p] for p in P) <= 8"},
        )
    )
    (z,) = [a.col for a in inst.aux]
    assert inst.aux[0].kind == "max" and inst.columns.is_aux(z)
    assert rows(inst, "peak") == {"peak": ({inst.columns.name(z): 1}, -INF, 8)}
    zname = inst.columns.name(z)
    aux = rows(inst, "peak", aux=True)
    assert sorted(aux.values(), key=str) == sorted(
        [({zname: 1, "x[chair]": -1}, 0, INF), ({zname: 1, "x[table]": -1}, 0, INF)], key=str
    )


def test_min_above_and_abs_below_a_bound() -> None:
    inst = low(
        with_constraints(
            {"id": "low", "template": "linear", "expression": "min(x['chair'], x['table'] + 1) >= 2"},
            {"id": "gap", "template": "linear", "expression": "abs(x['chair'] - x['table']) <= 3"},
        )
    )
    assert [a.kind for a in inst.aux] == ["min", "max"]
    zmin, zabs = (inst.columns.name(a.col) for a in inst.aux)
    assert sorted(rows(inst, "low", aux=True).values(), key=str) == sorted(
        [({zmin: 1, "x[chair]": -1}, -INF, 0), ({zmin: 1, "x[table]": -1}, -INF, 1)], key=str
    )
    assert sorted(rows(inst, "gap", aux=True).values(), key=str) == sorted(
        [
            ({zabs: 1, "x[chair]": -1, "x[table]": 1}, 0, INF),
            ({zabs: 1, "x[chair]": 1, "x[table]": -1}, 0, INF),
        ],
        key=str,
    )


def test_min_max_abs_of_data_are_numbers() -> None:
    inst = low(
        with_constraints(
            {
                "id": "c",
                "template": "linear",
                "expression": "x['chair'] <= max(avail[r] for r in R) + min(1, 2) + abs(-3)",
            }
        )
    )
    assert rows(inst, "c") == {"c": ({"x[chair]": 1}, -INF, 104)}
    assert inst.aux == []


@pytest.mark.parametrize(
    "expression",
    [
        "max(x['chair'], x['table']) >= 2",
        "min(x['chair'], x['table']) <= 2",
        "abs(x['chair'] - 3) >= 1",
        "max(x['chair'], x['table']) == 2",
        "-max(x['chair'], x['table']) <= 2",
        "3 <= max(x['chair'], x['table']) <= 5",
    ],
)
def test_nonconvex_uses_of_min_max_abs_in_constraints_are_refused(expression: str) -> None:
    e = fails(with_constraints({"id": "c", "template": "linear", "expression": expression}))
    assert e.issue.code == "nonconvex"
    assert e.issue.where == "constraint c"
    assert e.issue.fix


@pytest.mark.parametrize(
    ("sense", "expression", "ok"),
    [
        ("minimize", "max(x[p] for p in P)", True),
        ("maximize", "min(x[p] for p in P)", True),
        ("minimize", "abs(x['chair'] - 3) + x['table']", True),
        ("maximize", "-max(x[p] for p in P)", True),
        ("maximize", "max(x[p] for p in P)", False),
        ("minimize", "min(x[p] for p in P)", False),
        ("maximize", "abs(x['chair'])", False),
        ("minimize", "-abs(x['chair'])", False),
        ("minimize", "max(x['chair'], 1) * x['table']", False),
    ],
)
def test_min_max_abs_in_the_objective(sense: str, expression: str, ok: bool) -> None:
    m = copy.deepcopy(FURNITURE)
    m["objective"] = {"sense": sense, "expression": expression}
    if ok:
        inst = low(m)
        assert inst.aux and all(a.where == "objective" for a in inst.aux)
        assert rows(inst, "objective", aux=True)
    else:
        e = fails(m)
        assert e.issue.code == "nonconvex"
        assert e.issue.where == "objective"
        assert e.issue.fix


def test_min_max_of_variables_inside_logic_templates_is_refused() -> None:
    m = with_constraints(
        {"id": "c", "template": "implication", "if": "big_batch", "then": "max(x[p] for p in P) >= 3"}
    )
    e = fails(m)
    assert e.issue.code == "nonconvex"
    assert e.issue.where.startswith("constraint c")


def test_max_over_an_empty_selection() -> None:
    e = fails(
        with_constraints(
            {"id": "c", "template": "linear", "expression": "max(x[p] for p in P if 1 > 2) <= 1"}
        )
    )
    assert e.issue.code == "empty"


# ============================================================================ quadratic objective


def test_quadratic_objective_terms() -> None:
    m = {
        "sets": {"I": ["a", "b"]},
        "variables": [{"name": "x", "index": ["I"], "lower": None}],
        "objective": {
            "sense": "minimize",
            "expression": "sum((x[i] - 1) ** 2 for i in I) + 2 * x['a'] * x['b'] + 3",
        },
    }
    inst = low(m)
    obj = inst.objective
    assert obj is not None and obj.is_quadratic
    lin: dict[int, float] = {}
    for c, v in zip(obj.cols.tolist(), obj.coefs.tolist(), strict=True):
        lin[c] = lin.get(c, 0) + v
    assert lin == {0: -2, 1: -2}
    assert obj.const == 5
    quad: dict[tuple[int, int], float] = {}
    for c1, c2, v in zip(obj.qcols1.tolist(), obj.qcols2.tolist(), obj.qcoefs.tolist(), strict=True):
        key = (min(c1, c2), max(c1, c2))
        quad[key] = quad.get(key, 0) + v
    assert quad == {(0, 0): 1, (1, 1): 1, (0, 1): 2}
    assert "quadratic" in inst.features()


@pytest.mark.parametrize(
    ("expression", "code"),
    [
        ("x['chair'] * x['table'] <= 4", "nonlinear"),
        ("x['chair'] ** 2 <= 4", "nonlinear"),
        ("x['chair'] ** 3 <= 4", "nonlinear"),
        ("x['chair'] / x['table'] <= 4", "division-by-variable"),
        ("x['chair'] / 0 <= 4", "division-by-zero"),
    ],
)
def test_products_and_divisions_of_variables_in_constraints(expression: str, code: str) -> None:
    e = fails(with_constraints({"id": "c", "template": "linear", "expression": expression}))
    assert e.issue.code == code
    assert e.issue.position == 0
    assert e.issue.fix or code == "division-by-zero"


def test_cubic_objective_is_refused() -> None:
    m = copy.deepcopy(FURNITURE)
    m["objective"] = {"sense": "minimize", "expression": "x['chair'] * x['chair'] * x['table']"}
    assert fails(m).issue.code == "nonlinear"


def test_no_objective_is_a_feasibility_model() -> None:
    m = copy.deepcopy(FURNITURE)
    del m["objective"]
    inst = low(m)
    assert inst.objective is None and "feasibility" in inst.features()


# ============================================================================ logic templates

LOGIC_BASE: dict[str, Any] = {
    "sets": {"J": ["a", "b", "c"], "M": ["m1", "m2"]},
    "parameters": {
        "dem": {"index": ["J"], "values": [1, 2, 1]},
        "K": {"value": 2},
        "d": {"index": ["J"], "values": {"a": 2, "b": 3, "c": 1.5}},
    },
    "variables": [
        {"name": "u", "index": ["J"], "domain": "binary"},
        {"name": "z", "domain": "boolean"},
        {"name": "q", "index": ["J"], "domain": "integer", "upper": 10},
        {"name": "w", "upper": 50},
        {"name": "op", "index": ["J", "M"], "domain": "interval", "duration": 2},
        {"name": "t", "index": ["J"], "domain": "interval", "duration": "d"},
    ],
}


def lg(*cons: dict[str, Any]) -> Instance:
    return low(with_constraints(*cons, base=LOGIC_BASE))


def c_(inst: Instance, name: str) -> int:
    return col(inst, name)


def test_implication_per_for_each_row() -> None:
    inst = lg(
        {"id": "imp", "template": "implication", "for_each": "j in J", "if": "u[j] == 1", "then": "q[j] >= 3"}
    )
    got = logic(inst, "imp")
    assert list(got) == ["imp[a]", "imp[b]", "imp[c]"]
    assert got["imp[b]"] == {"if": Lit(c_(inst, "u[b]")), "then": Atom((c_(inst, "q[b]"),), (1.0,), 3.0, INF)}
    assert all(lc.template == "implication" for lc in inst.logic)


def test_implication_with_and_or_not() -> None:
    inst = lg(
        {
            "id": "imp",
            "template": "implication",
            "if": "z and not u['a']",
            "then": "q['a'] + q['b'] <= 4 or q['c'] >= 1",
        }
    )
    qa, qb, qc = (c_(inst, f"q[{j}]") for j in "abc")
    assert logic(inst, "imp")["imp"] == {
        "if": And((Lit(c_(inst, "z")), Lit(c_(inst, "u[a]"), True))),
        "then": Or((Atom((qa, qb), (1.0, 1.0), -INF, 4.0), Atom((qc,), (1.0,), 1.0, INF))),
    }


def test_strict_comparisons_on_integer_expressions_in_logic() -> None:
    inst = lg({"id": "s", "template": "implication", "if": "q['a'] > 2", "then": "q['b'] != 3"})
    qa, qb = c_(inst, "q[a]"), c_(inst, "q[b]")
    assert logic(inst, "s")["s"] == {
        "if": Atom((qa,), (1.0,), 3.0, INF),
        "then": Or((Atom((qb,), (1.0,), -INF, 2.0), Atom((qb,), (1.0,), 4.0, INF))),
    }
    e = fails(
        with_constraints({"id": "s", "template": "implication", "if": "z", "then": "w < 3"}, base=LOGIC_BASE)
    )
    assert e.issue.code == "strict"


def test_conditions_decided_by_data_become_constants() -> None:
    inst = lg(
        {"id": "c", "template": "implication", "for_each": "j in J", "if": "dem[j] >= 2", "then": "u[j] == 1"}
    )
    got = logic(inst, "c")
    assert got["c[a]"]["if"] == Const(False) and got["c[b]"]["if"] == Const(True)
    assert got["c[b]"]["then"] == Lit(c_(inst, "u[b]"))


def test_either_or_and_counting_templates() -> None:
    inst = lg(
        {"id": "eo", "template": "either_or", "options": ["q['a'] <= 2", "q['b'] >= 5"]},
        {"id": "amk", "template": "at_most_k", "k": 1, "options": "u[j] for j in J"},
        {"id": "alk", "template": "at_least_k", "k": "K", "options": ["u['a']", "u['b']", "q['c'] >= 2"]},
        {"id": "exk", "template": "exactly_k", "k": 1, "options": ["u['a']", "not u['b']"]},
    )
    ua, ub, uc = (c_(inst, f"u[{j}]") for j in "abc")
    qa, qb, qc = (c_(inst, f"q[{j}]") for j in "abc")
    assert logic(inst, "eo")["eo"] == {
        "options": [Atom((qa,), (1.0,), -INF, 2.0), Atom((qb,), (1.0,), 5.0, INF)]
    }
    assert logic(inst, "amk")["amk"] == {"k": 1, "options": [Lit(ua), Lit(ub), Lit(uc)]}
    assert logic(inst, "alk")["alk"] == {"k": 2, "options": [Lit(ua), Lit(ub), Atom((qc,), (1.0,), 2.0, INF)]}
    assert logic(inst, "exk")["exk"] == {"k": 1, "options": [Lit(ua), Lit(ub, True)]}


def test_counting_k_must_be_whole() -> None:
    m = copy.deepcopy(LOGIC_BASE)
    m["parameters"]["K"] = {"value": 1.5}
    m["constraints"] = [{"id": "c", "template": "at_most_k", "k": "K", "options": ["u['a']", "u['b']"]}]
    assert fails(m).issue.code == "bad-value"


def test_comprehension_options_follow_the_for_each() -> None:
    inst = lg(
        {
            "id": "one",
            "template": "exactly_k",
            "for_each": "m in M",
            "k": 1,
            "options": "u[j] for j in J if j != 'c'",
        }
    )
    got = logic(inst, "one")
    assert list(got) == ["one[m1]", "one[m2]"]
    assert got["one[m2]"]["options"] == [Lit(c_(inst, "u[a]")), Lit(c_(inst, "u[b]"))]


def test_all_different_fixed_charge_semi_continuous_clause() -> None:
    inst = lg(
        {"id": "ad", "template": "all_different", "terms": "q[j] for j in J"},
        {"id": "ad2", "template": "all_different", "terms": ["q['a'] + 1", "2 * q['b']"]},
        {
            "id": "fc",
            "template": "fixed_charge",
            "for_each": "j in J",
            "variable": "q[j]",
            "indicator": "u[j]",
            "upper": "10 * dem[j]",
        },
        {"id": "sc", "template": "semi_continuous", "variable": "w", "lower": 5, "upper": "50"},
        {"id": "cl", "template": "clause", "literals": ["z", "not u['a']"]},
    )
    qa, qb, qc = (c_(inst, f"q[{j}]") for j in "abc")
    assert logic(inst, "ad")["ad"] == {
        "terms": [LinTerm((qa,), (1.0,)), LinTerm((qb,), (1.0,)), LinTerm((qc,), (1.0,))]
    }
    assert logic(inst, "ad2")["ad2"] == {"terms": [LinTerm((qa,), (1.0,), 1.0), LinTerm((qb,), (2.0,))]}
    assert logic(inst, "fc")["fc[b]"] == {
        "variable": LinTerm((qb,), (1.0,)),
        "indicator": Lit(c_(inst, "u[b]")),
        "upper": 20.0,
    }
    assert logic(inst, "sc")["sc"] == {
        "variable": LinTerm((c_(inst, "w"),), (1.0,)),
        "lower": 5.0,
        "upper": 50.0,
    }
    assert logic(inst, "cl")["cl"] == {
        "literals": [Lit(c_(inst, "z")), Lit(c_(inst, "u[a]"), True)],
        "always": False,
    }


@pytest.mark.parametrize(
    ("con", "code"),
    [
        (
            {"id": "c", "template": "fixed_charge", "variable": "q['a']", "indicator": "w", "upper": 3},
            "not-a-condition",
        ),
        (
            {"id": "c", "template": "fixed_charge", "variable": "q['a']", "indicator": "not z", "upper": 3},
            "type",
        ),
        ({"id": "c", "template": "clause", "literals": ["z", "q['a'] >= 2"]}, "type"),
        ({"id": "c", "template": "semi_continuous", "variable": "w", "lower": "q['a']", "upper": 3}, "type"),
        ({"id": "c", "template": "implication", "if": "q['a']", "then": "z"}, "not-a-condition"),
        ({"id": "c", "template": "either_or", "options": ["q['a'] * q['b'] <= 2", "z"]}, "nonlinear"),
        ({"id": "c", "template": "no_overlap", "intervals": ["q['a']"]}, "type"),
    ],
)
def test_logic_template_misuse(con: dict[str, Any], code: str) -> None:
    e = fails(with_constraints(con, base=LOGIC_BASE))
    assert e.issue.code == code
    assert e.issue.where.startswith("constraint c")


def test_scheduling_templates() -> None:
    inst = lg(
        {"id": "no", "template": "no_overlap", "for_each": "m in M", "intervals": "op[j, m] for j in J"},
        {
            "id": "pr",
            "template": "precedence",
            "for_each": "j in J",
            "before": "op[j, 'm1']",
            "after": "op[j, 'm2']",
            "lag": 1,
        },
        {
            "id": "cu",
            "template": "cumulative",
            "intervals": "t[j] for j in J",
            "demands": "dem[j] for j in J",
            "capacity": 2,
        },
        {
            "id": "ls",
            "template": "implication",
            "if": "z",
            "then": "start(op['a', 'm1']) >= end(op['b', 'm1'])",
        },
    )
    names = inst.intervals.names
    iv = {n: k for k, n in enumerate(names)}
    assert logic(inst, "no") == {
        "no[m1]": {"intervals": [iv["op[a,m1]"], iv["op[b,m1]"], iv["op[c,m1]"]]},
        "no[m2]": {"intervals": [iv["op[a,m2]"], iv["op[b,m2]"], iv["op[c,m2]"]]},
    }
    assert logic(inst, "pr")["pr[c]"] == {"before": iv["op[c,m1]"], "after": iv["op[c,m2]"], "lag": 1.0}
    assert logic(inst, "cu")["cu"] == {
        "intervals": [iv["t[a]"], iv["t[b]"], iv["t[c]"]],
        "demands": [1.0, 2.0, 1.0],
        "capacity": 2.0,
    }
    then = logic(inst, "ls")["ls"]["then"]
    assert then == Atom((c_(inst, "op[a,m1].start"), c_(inst, "op[b,m1].end")), (1.0, -1.0), 0.0, INF)


def test_cumulative_needs_one_demand_per_interval() -> None:
    e = fails(
        with_constraints(
            {
                "id": "cu",
                "template": "cumulative",
                "intervals": "t[j] for j in J",
                "demands": ["1"],
                "capacity": 2,
            },
            base=LOGIC_BASE,
        )
    )
    assert e.issue.code == "arity" and "demand" in e.issue.fix


# ============================================================================ collecting errors


def test_collect_gathers_every_issue_instead_of_stopping() -> None:
    m = with_constraints(
        {"id": "a", "template": "linear", "expression": "xx['chair'] <= 1"},
        {"id": "b", "template": "linear", "expression": "x['chair'] * x['table'] <= 1"},
        {"id": "c", "template": "linear", "expression": "x['chair'] <= 1"},
    )
    with pytest.raises(CheckFailed) as info:
        lower(load_model(m), collect=True)
    assert [(i.where, i.code) for i in info.value.issues] == [
        ("constraint a", "unknown-symbol"),
        ("constraint b", "nonlinear"),
    ]
    with pytest.raises(ModelError) as first:
        lower(load_model(m))
    assert first.value.issue.where == "constraint a"


def test_a_broken_declaration_is_reported_once_not_at_every_use() -> None:
    m = copy.deepcopy(FURNITURE)
    m["parameters"]["avail"]["values"] = {"wood": 100, "labor": "many"}
    with pytest.raises(CheckFailed) as info:
        lower(load_model(m), collect=True)
    assert [(i.where, i.code) for i in info.value.issues] == [("parameter avail", "bad-value")]


# ============================================================================ scale


def test_lowering_is_batched_for_large_index_sets() -> None:
    n = 300
    m = {
        "sets": {"S": {"range": [1, n]}, "D": {"range": [1, n]}},
        "parameters": {
            "cost": {"index": ["S", "D"], "values": np.arange(n * n, dtype=float).reshape(n, n).tolist()},
            "supply": {"index": ["S"], "values": [float(n)] * n},
        },
        "variables": [{"name": "x", "index": ["S", "D"]}],
        "objective": {"sense": "minimize", "expression": "sum(cost[s, d] * x[s, d] for s in S for d in D)"},
        "constraints": [
            {
                "id": "sup",
                "template": "linear",
                "for_each": "s in S",
                "expression": "sum(x[s, d] for d in D) <= supply[s]",
            },
            {
                "id": "dem",
                "template": "linear",
                "for_each": "d in D",
                "expression": "sum(x[s, d] for s in S) >= 1",
            },
        ],
    }
    inst = low(m)
    assert inst.columns.n == n * n and inst.n_rows == 2 * n
    sup = next(b for b in inst.row_blocks if b.cid == "sup")
    assert len(sup.coefs) == n * n
    assert np.array_equal(np.bincount(sup.rows, minlength=n), np.full(n, n))
    obj = inst.objective
    assert obj is not None and obj.coefs[obj.cols == n + 2].tolist() == [n + 2]
