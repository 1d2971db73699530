"""Static checks: every finding names its code, where it is, the culprit and a fix."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from solvers.api import load_model
from solvers.check import check, errors
from solvers.errors import CheckFailed, Issue, ModelError

BASE: dict[str, Any] = {
    "sets": {
        "P": ["chair", "table"],
        "R": ["wood", "labor"],
        "T": {"range": [1, 4]},
        "A": [["chair", "wood"], ["table", "labor"]],
    },
    "parameters": {
        "profit": {"index": ["P"], "values": {"chair": 30, "table": 50}},
        "use": {
            "index": ["R", "P"],
            "values": {"wood": {"chair": 2, "table": 4}, "labor": {"chair": 3, "table": 2}},
        },
        "avail": {"index": ["R"], "values": {"wood": 100, "labor": 90}},
        "demand": {"index": ["T"], "values": [4, 5, 6, 7]},
    },
    "variables": [
        {"name": "x", "index": ["P"]},
        {"name": "stock", "index": ["T"]},
        {"name": "y", "index": ["A"]},
    ],
    "objective": {
        "sense": "maximize",
        "expression": "sum(profit[p] * x[p] for p in P) - sum(stock[t] for t in T)",
    },
    "constraints": [
        {
            "id": "capacity",
            "template": "linear",
            "for_each": "r in R",
            "expression": "sum(use[r, p] * x[p] for p in P) <= avail[r]",
        },
        {
            "id": "flow",
            "template": "balance",
            "for_each": "t in T if t > 1",
            "expression": "stock[t] == stock[t - 1] + demand[t]",
        },
        {"id": "pairs", "template": "linear", "expression": "sum(y[i, j] for (i, j) in A) <= 1"},
    ],
}


def model_with(extra: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    m = copy.deepcopy(BASE)
    m.update(copy.deepcopy(changes))
    if extra is not None:
        m["constraints"] = [*m["constraints"], extra]
    return m


def only_error(data: dict[str, Any]) -> Issue:
    issues, instance = check(load_model(data))
    errs = errors(issues)
    assert len(errs) == 1, errs
    assert instance is None
    return errs[0]


def test_the_base_model_is_clean() -> None:
    issues, instance = check(load_model(BASE))
    assert issues == []
    assert instance is not None and instance.n_rows == 2 + 3 + 1


# ----------------------------------------------------------------------------- symbols


@pytest.mark.parametrize(
    ("expression", "culprit", "suggestion", "pos"),
    [
        ("sum(profits[p] * x[p] for p in P) <= 1", "profits", "profit", 4),
        ("xx['chair'] <= 1", "xx", "x", 0),
        ("x['chair'] <= avial['wood']", "avial", "avail", 14),
        ("x['chair'] + stok[1] <= 5", "stok", "stock", 13),
    ],
)
def test_unknown_symbol_with_did_you_mean(expression: str, culprit: str, suggestion: str, pos: int) -> None:
    issue = only_error(model_with({"id": "c", "template": "linear", "expression": expression}))
    assert issue.code == "unknown-symbol"
    assert issue.where == "constraint c"
    assert issue.position == pos
    assert issue.culprit.startswith(culprit)
    assert repr(culprit) in issue.message
    assert issue.fix == f"did you mean {suggestion!r}?"


def test_unknown_set_in_a_loop_and_in_for_each() -> None:
    issue = only_error(
        model_with({"id": "c", "template": "linear", "expression": "sum(x[p] for p in PP) <= 1"})
    )
    assert (issue.code, issue.where, issue.position) == ("unknown-set", "constraint c", 13)
    assert "'PP'" in issue.message and issue.fix == "did you mean 'P'?"
    issue = only_error(
        model_with({"id": "c", "template": "linear", "for_each": "p in Q", "expression": "x[p] <= 1"})
    )
    assert (issue.code, issue.where, issue.position) == ("unknown-set", "constraint c (for_each)", 0)
    assert "'Q' is not declared" in issue.message and issue.fix
    issue = only_error(
        model_with({"id": "c", "template": "linear", "expression": "sum(x[p] for p in profit) <= 1"})
    )
    assert "'profit' is a parameter" in issue.message


def test_unknown_set_in_a_declaration() -> None:
    data = model_with()
    data["variables"][0]["index"] = ["PP"]
    issue = only_error(data)
    assert (issue.code, issue.where) == ("unknown-set", "variable x")
    assert "'PP'" in issue.message and issue.fix == "did you mean 'P'?"


def test_unknown_bound_parameter() -> None:
    data = model_with()
    data["variables"][0]["upper"] = "avial"
    issue = only_error(data)
    assert (issue.code, issue.where) == ("unknown-symbol", "variable x")
    assert "'avial'" in issue.message and issue.fix == "did you mean 'avail'?"


# ----------------------------------------------------------------------------- indexing


@pytest.mark.parametrize(
    ("expression", "pos", "words"),
    [
        ("x['chair', 'wood'] <= 1", 0, "'x' takes 1 index(es) (P), got 2"),
        ("x['chair'] <= use['wood']", 14, "'use' takes 2 index(es) (R, P), got 1"),
        ("x <= 1", 0, "'x' is indexed by ['P']"),
        ("x['chair'] <= profit", 14, "'profit' is indexed by ['P']"),
        ("y['chair'] <= 1", 0, "'y' takes 2 index(es) (A), got 1"),
    ],
)
def test_wrong_index_arity(expression: str, pos: int, words: str) -> None:
    issue = only_error(model_with({"id": "c", "template": "linear", "expression": expression}))
    assert issue.code == "arity"
    assert issue.where == "constraint c"
    assert issue.position == pos
    assert words in issue.message
    assert issue.culprit == expression[pos : pos + 30]


def test_wrong_arity_fix_shows_the_right_form() -> None:
    issue = only_error(
        model_with({"id": "c", "template": "linear", "expression": "x['chair'] <= use['wood']"})
    )
    assert "use[r, p]" in issue.fix


def test_loop_arity_over_a_tuple_set() -> None:
    issue = only_error(
        model_with({"id": "c", "template": "linear", "expression": "sum(y[a] for a in A) <= 1"})
    )
    assert (issue.code, issue.position) == ("arity", 13)
    assert "2-tuples" in issue.message and "for (i, j) in A" in issue.fix


@pytest.mark.parametrize(
    ("expression", "for_each", "pos", "words"),
    [
        ("x['sofa'] <= 1", None, 2, "'sofa' is not an element of any set"),
        ("x[r] <= 1", "r in R", 0, "x[wood]: the index is not in set 'P' (when r = wood)"),
        ("stock[t - 1] <= 1", "t in T", 0, "stock[0]: the index is not in set 'T' (when t = 1)"),
        ("stock[t + 1] <= 1", "t in T", 0, "stock[5]: the index is not in set 'T' (when t = 4)"),
        ("y['wood', 'chair'] <= 1", None, 0, "not in set 'A'"),
    ],
)
def test_index_value_not_in_its_set(expression: str, for_each: str | None, pos: int, words: str) -> None:
    con: dict[str, Any] = {"id": "c", "template": "linear", "expression": expression}
    if for_each:
        con["for_each"] = for_each
    issue = only_error(model_with(con))
    assert issue.code == "index-not-in-set"
    assert issue.where == "constraint c"
    assert issue.position == pos
    assert words in issue.message
    assert issue.fix


def test_parameter_value_for_an_element_outside_its_set() -> None:
    data = model_with()
    data["parameters"]["profit"]["values"]["sofa"] = 3
    issue = only_error(data)
    assert (issue.code, issue.where) == ("index-not-in-set", "parameter profit")
    assert "'sofa'" in issue.message and "'P'" in issue.message
    assert "add it to set 'P'" in issue.fix
    data["parameters"]["profit"]["values"] = {"chair": 30, "tabel": 50}
    assert only_error(data).fix == "did you mean 'table'?"


# ----------------------------------------------------------------------------- values


def test_missing_parameter_value() -> None:
    data = model_with()
    del data["parameters"]["avail"]["values"]["labor"]
    issue = only_error(data)
    assert issue.code == "missing-value"
    assert issue.where == "constraint capacity"
    assert issue.position == BASE["constraints"][0]["expression"].index("avail")
    assert "'avail'" in issue.message and "[labor]" in issue.message
    assert "default" in issue.fix and "[labor]" in issue.fix


def test_missing_value_in_the_objective() -> None:
    data = model_with()
    data["parameters"]["profit"]["values"] = {"chair": 30}
    issue = only_error(data)
    assert (issue.code, issue.where, issue.position) == ("missing-value", "objective", 4)
    assert "[table]" in issue.message


@pytest.mark.parametrize(
    ("values", "code", "words"),
    [
        ({"wood": "many", "labor": 1}, "bad-value", "'many' is not a number"),
        ([1, 2, 3], "bad-shape", "shape [3]"),
        ({"wood": [1, 2], "labor": 3}, "bad-value", "is not a number"),
    ],
)
def test_malformed_parameter_values(values: Any, code: str, words: str) -> None:
    data = model_with()
    data["parameters"]["avail"]["values"] = values
    issue = only_error(data)
    assert (issue.code, issue.where) == (code, "parameter avail")
    assert words in issue.message


def test_nested_values_shallower_than_the_index() -> None:
    data = model_with()
    data["parameters"]["use"]["values"]["wood"] = 5
    issue = only_error(data)
    assert (issue.code, issue.where) == ("bad-shape", "parameter use")
    assert "expected a dictionary or list at [wood]" in issue.message
    assert "['R', 'P']" in issue.fix


def test_bounds_from_a_parameter_indexed_differently() -> None:
    data = model_with()
    data["variables"][0]["upper"] = "avail"
    issue = only_error(data)
    assert (issue.code, issue.where) == ("index-mismatch", "variable x")
    assert "'avail'" in issue.message and issue.fix


def test_lower_bound_above_upper_bound() -> None:
    data = model_with()
    data["variables"][0].update({"lower": 5, "upper": 3})
    issue = only_error(data)
    assert (issue.code, issue.where) == ("bad-bounds", "variable x")
    assert "x[chair]" in issue.message


# ----------------------------------------------------------------------------- linearity


@pytest.mark.parametrize(
    ("expression", "code", "fix_words"),
    [
        ("x['chair'] * x['table'] <= 4", "nonlinear", "multiply variables only by data"),
        ("sum(x[p] * x[p] for p in P) <= 4", "nonlinear", "multiply variables only by data"),
        ("x['chair'] ** 2 <= 4", "nonlinear", "multiply variables only by data"),
        ("x['chair'] / x['table'] <= 2", "division-by-variable", "x <= 2 * y"),
        ("x['chair'] / (1 + x['table']) <= 2", "division-by-variable", "multiply both sides"),
    ],
)
def test_nonlinear_terms_and_division_by_variables(expression: str, code: str, fix_words: str) -> None:
    issue = only_error(model_with({"id": "c", "template": "ratio", "expression": expression}))
    assert issue.code == code
    assert issue.where == "constraint c"
    assert issue.position is not None and issue.culprit == expression[issue.position : issue.position + 30]
    assert fix_words in issue.fix


@pytest.mark.parametrize(
    ("expression", "code"),
    [
        ("x['chair'] < 3", "strict"),
        ("x['chair'] != 3", "strict"),
        ("x['chair'] + 1", "not-a-comparison"),
        ("1 <= x['chair'] == 3", "not-a-comparison"),
        ("x['chair'] in P", "type"),
    ],
)
def test_comparisons_a_solver_cannot_take(expression: str, code: str) -> None:
    issue = only_error(model_with({"id": "c", "template": "linear", "expression": expression}))
    assert (issue.code, issue.where, issue.position) == (code, "constraint c", 0)


def test_condition_on_a_variable() -> None:
    issue = only_error(
        model_with(
            {"id": "c", "template": "linear", "for_each": "p in P if x[p] >= 1", "expression": "x[p] <= 3"}
        )
    )
    assert (issue.code, issue.where, issue.position) == (
        "condition-on-variable",
        "constraint c (for_each)",
        10,
    )
    assert issue.culprit.startswith("x[p] >= 1")


def test_arithmetic_with_a_named_element() -> None:
    issue = only_error(
        model_with({"id": "c", "template": "linear", "for_each": "p in P", "expression": "x[p] + p <= 1"})
    )
    assert issue.code == "type"
    assert "'chair'" in issue.message and issue.fix


# ----------------------------------------------------------------------------- sets


def test_empty_set() -> None:
    data = model_with()
    data["sets"]["R"] = []
    issues, instance = check(load_model(data))
    assert instance is None
    assert [(i.code, i.where) for i in errors(issues)] == [("empty-set", "set R")]
    assert "'R'" in issues[0].message and issues[0].fix


def test_duplicate_set_element() -> None:
    data = model_with()
    data["sets"]["P"] = ["chair", "table", "chair"]
    issue = errors(check(load_model(data))[0])[0]
    assert (issue.code, issue.where) == ("duplicate-element", "set P")
    assert issue.fix


@pytest.mark.parametrize("bad", [[["a", "b"], "c"], ["a", ["b", "c"]], [1.5], [{"x": 1}]])
def test_malformed_set_elements_are_schema_errors_naming_the_set(bad: list[Any]) -> None:
    data = model_with()
    data["sets"]["Q"] = bad
    with pytest.raises((ModelError, CheckFailed)) as info:
        load_model(data)
    assert "sets.Q" in str(info.value)


# ----------------------------------------------------------------------------- duplicates


def test_duplicate_constraint_ids() -> None:
    data = model_with(dict(BASE["constraints"][0]))
    with pytest.raises(ModelError) as info:
        load_model(data)
    assert "'capacity'" in info.value.issue.message and "unique" in info.value.issue.message


def test_a_name_used_for_two_kinds_of_symbol() -> None:
    data = model_with()
    data["parameters"]["x"] = {"value": 1}
    with pytest.raises(ModelError, match="'x' is used for a parameter and a variable: rename one"):
        load_model(data)


def test_a_constraint_id_that_is_also_a_symbol() -> None:
    with pytest.raises(ModelError, match="constraint id 'avail' is also the name of a parameter"):
        load_model(model_with({"id": "avail", "template": "linear", "expression": "x['chair'] <= 1"}))


# ----------------------------------------------------------------------------- collecting


def test_check_collects_issues_from_every_part_of_the_model() -> None:
    data = model_with({"id": "c2", "template": "linear", "expression": "x['chair'] * x['table'] <= 4"})
    data["parameters"]["avail"]["values"] = {"wood": 100, "labor": "many"}
    data["variables"][0]["index"] = ["PP"]
    issues, instance = check(load_model(data))
    assert instance is None
    assert [(i.where, i.code) for i in issues] == [
        ("parameter avail", "bad-value"),
        ("variable x", "unknown-set"),
    ]


def test_every_error_issue_has_a_message_and_renders_with_where() -> None:
    data = model_with({"id": "c2", "template": "linear", "expression": "q['chair'] <= 4"})
    issues, _ = check(load_model(data))
    for i in issues:
        assert i.message
        assert str(i).startswith(i.where + ": ")
        assert i.to_dict()["code"] == i.code
    with pytest.raises(CheckFailed) as info:
        from solvers.lower import lower

        lower(load_model(data), collect=True)
    assert "1 problem(s)" in str(info.value)


# ----------------------------------------------------------------------------- warnings


def test_unused_variable_and_parameter_are_warnings() -> None:
    data = model_with()
    data["variables"].append({"name": "idle", "index": ["P"]})
    data["parameters"]["spare"] = {"value": 3}
    data["parameters"]["cap"] = {"index": ["P"], "values": [1, 2]}
    data["variables"][0]["upper"] = "cap"  # used as a bound: not unused
    issues, instance = check(load_model(data))
    assert instance is not None
    assert errors(issues) == []
    warned = {(i.code, i.where, i.severity) for i in issues}
    assert warned == {("unused", "variable idle", "warning"), ("unused", "parameter spare", "warning")}
    by_where = {i.where: i for i in issues}
    assert "'idle'" in by_where["variable idle"].message and by_where["variable idle"].fix
    assert "'spare'" in by_where["parameter spare"].message and by_where["parameter spare"].fix


def test_names_used_only_in_for_each_conditions_count_as_used() -> None:
    data = model_with()
    data["parameters"]["active"] = {"index": ["R"], "values": [1, 0]}
    data["constraints"][0]["for_each"] = "r in R if active[r] > 0"
    issues, _ = check(load_model(data))
    assert issues == []


def test_names_used_only_in_comprehension_list_fields_count_as_used() -> None:
    data = {
        "sets": {"J": ["a", "b"]},
        "parameters": {"dem": {"index": ["J"], "values": [1, 2]}},
        "variables": [
            {"name": "u", "index": ["J"], "domain": "binary"},
            {"name": "t", "index": ["J"], "domain": "interval", "duration": 1},
        ],
        "constraints": [
            {"id": "amk", "template": "at_most_k", "k": 1, "options": "u[j] for j in J"},
            {
                "id": "cu",
                "template": "cumulative",
                "intervals": "t[j] for j in J",
                "demands": "dem[j] for j in J",
                "capacity": 2,
            },
        ],
    }
    issues, instance = check(load_model(data))
    assert instance is not None
    assert issues == []


def test_constraint_that_expands_to_nothing_is_a_warning() -> None:
    data = model_with(
        {
            "id": "never",
            "template": "linear",
            "for_each": "r in R if avail[r] > 1000",
            "expression": "sum(x[p] for p in P) <= avail[r]",
        }
    )
    issues, instance = check(load_model(data))
    assert instance is not None
    assert [(i.code, i.where, i.severity) for i in issues] == [("empty", "constraint never", "warning")]
    assert "'never'" in issues[0].message and issues[0].fix
