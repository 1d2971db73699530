"""Hostile and malformed input: each is refused quickly with a clear ModelError or CheckFailed.

Never a RecursionError, MemoryError, OverflowError or a crash of the csv module: whatever a
user or an LLM sends, the answer is an issue that says what is wrong.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from solvers import expr as ex
from solvers.api import load_model
from solvers.errors import CheckFailed, ExpressionError, ModelError
from solvers.lower import lower

QUICK = 3.0  # seconds; every refusal here takes well under a second on a laptop
BIG = 100 * 2**20  # 100 MB
HUGE_INT = "1" + "0" * 400  # 10**400 written as a JSON number


def refused(source: Any, within: float = QUICK) -> str:
    """Load and lower; the refusal's text (which must come as ModelError or CheckFailed)."""
    t0 = time.perf_counter()
    with pytest.raises((ModelError, CheckFailed)) as info:
        lower(load_model(source))
    elapsed = time.perf_counter() - t0
    assert elapsed < within, f"took {elapsed:.2f}s"
    return str(info.value)


def model(**parts: Any) -> str:
    return json.dumps(parts)


# ----------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"sets": ', "EOF while parsing"),
        ('{"sets": {}} trailing', "trailing characters"),
        ("", "EOF while parsing"),
        ('{"sets": {"S": [1, 2,]}}', "not valid JSON"),
        ("{'sets': {}}", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
    ],
)
def test_malformed_json(text: str | bytes, words: str) -> None:
    msg = refused(text)
    assert "not valid JSON" in msg and words in msg
    assert "check quotes, commas, brackets" in msg


def test_json_that_is_not_an_object() -> None:
    assert "a model is a JSON object, not a list" in refused("[1, 2]")
    assert "a model is a JSON object, not a number" in refused("42")


@pytest.mark.parametrize(
    ("data", "where", "field"),
    [
        ({"foo": 1}, "foo", "foo"),
        ({"variables": [{"name": "x", "colour": "red"}]}, "variables.0.colour", "colour"),
        (
            {"constraints": [{"id": "c", "template": "linear", "expression": "1 <= 2", "weight": 3}]},
            "constraints.0.linear.weight",
            "weight",
        ),
        ({"parameters": {"p": {"value": 1, "units": "kg"}}}, "parameters.p.units", "units"),
        ({"sets": {"T": {"range": [1, 3], "step": 2}}}, "sets.T", "step"),
    ],
)
def test_unknown_fields_are_named_with_their_path(data: dict[str, Any], where: str, field: str) -> None:
    msg = refused(json.dumps(data))
    assert where in msg
    assert f"unknown field {field!r}" in msg or "Extra inputs are not permitted" in msg


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"variables": "x"}, "variables"),
        ({"sets": 5}, "sets"),
        (
            {"constraints": [{"id": "c", "template": "linear", "expression": 5}]},
            "constraints.0.linear.expression",
        ),
        ({"variables": [{"name": "x", "domain": "real"}]}, "variables.0.domain"),
        ({"objective": {"sense": "minimise", "expression": "1"}}, "objective.sense"),
        ({"constraints": [{"id": "c", "template": "quux", "expression": "1 <= 2"}]}, "constraints.0"),
        ({"variables": [{"name": 3}]}, "variables.0.name"),
        ({"schema": "optscribe.model/v2"}, "schema"),
        ({"parameters": {"p": {"value": "five"}}}, "parameters.p.value"),
    ],
)
def test_wrong_types_are_named_with_their_path(data: dict[str, Any], where: str) -> None:
    assert where in refused(json.dumps(data))


def test_several_schema_errors_come_together() -> None:
    msg = refused(json.dumps({"variables": [{"name": 3}], "sets": 5}))
    assert "problem(s)" in msg and "sets" in msg and "variables.0.name" in msg


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"parameters": {"p": {"value": 1e309}}}', "finite number"),
        ('{"parameters": {"p": {"value": ' + HUGE_INT + "}}}", "finite number"),
        ('{"variables": [{"name": "x", "upper": ' + HUGE_INT + "}]}", "finite number"),
        ('{"sets": {"S": {"range": [1, ' + HUGE_INT + "]}}}", "within +-10^12"),
        ('{"sets": {"S": [' + HUGE_INT + "]}}", "too large for a set element"),
        (
            '{"sets": {"S": ["a"]}, "parameters": {"p": {"index": ["S"], "values": {"a": '
            + HUGE_INT
            + "}}}}",
            "beyond 1e15",
        ),
        (
            '{"sets": {"S": ["a"]}, "parameters": {"p": {"index": ["S"], "values": [' + HUGE_INT + "]}}}",
            "beyond 1e15",
        ),
        (
            '{"tables": {"t": {"columns": {"a": ["x"], "v": [' + HUGE_INT + ']}}}, "sets": {"S": ["x"]}, '
            '"parameters": {"p": {"table": "t", "index": ["S"], "index_columns": ["a"], "column": "v"}}}',
            "not a number",
        ),
        (
            '{"tables": {"t": {"csv": "a,v\\nx,' + HUGE_INT + '\\n"}}, "sets": {"S": ["x"]}, '
            '"parameters": {"p": {"table": "t", "index": ["S"], "index_columns": ["a"], "column": "v"}}}',
            "not a number",
        ),
        ('{"parameters": {"p": {"value": 1e308}}}', "beyond 1e15"),
        (
            '{"sets": {"S": ["a", "b"]}, "parameters": {"p": {"index": ["S"], "values": [1, 1e308]}}}',
            "beyond 1e15",
        ),
    ],
)
def test_huge_numbers(text: str, words: str) -> None:
    assert words in refused(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"parameters": {"p": {"value": NaN}}}',
        '{"parameters": {"p": {"value": Infinity}}}',
        '{"parameters": {"p": {"value": -Infinity}}}',
        '{"variables": [{"name": "x", "lower": NaN}]}',
        '{"sets": {"S": ["a"]}, "parameters": {"p": {"index": ["S"], "values": {"a": NaN}}}}',
        '{"sets": {"S": ["a"]}, "parameters": {"p": {"index": ["S"], "values": [Infinity]}}}',
        '{"sets": {"S": ["a"]}, "parameters": {"p": {"index": ["S"], "values": [-Infinity]}}}',
        '{"tables": {"t": {"columns": {"a": [NaN]}}}}',
        '{"parameters": {"p": {"value": 1, "default": NaN}}}',
        '{"tables": {"t": {"csv": "a,v\\nx,inf\\n"}}, "sets": {"S": ["x"]}, '
        '"parameters": {"p": {"table": "t", "index": ["S"], "index_columns": ["a"], "column": "v"}}}',
    ],
)
def test_nan_and_infinity_tokens(text: str) -> None:
    msg = refused(text)
    assert "finite" in msg or "infinite" in msg


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("x <= 1e400", "too large or not finite"),
        ("x <= 10 ** 400", "not finite"),
        ("x <= 10.0 ** 10 ** 10", "not finite"),
        ("x <= " + " * ".join(["1e15"] * 25), "not finite"),
        ("x * " + " * ".join(["1e15"] * 25) + " <= 1", "not finite"),
        ("x <= " + HUGE_INT, "too large"),
        ("x <= (-8) ** 0.5", "not finite"),
        ("x <= 1 / 0", "division by zero"),
    ],
)
def test_numbers_that_overflow_inside_expressions(expression: str, words: str) -> None:
    msg = refused(
        model(
            variables=[{"name": "x"}],
            constraints=[{"id": "c", "template": "linear", "expression": expression}],
        )
    )
    assert words in msg and "constraint c" in msg


# ----------------------------------------------------------------------------- nesting


def test_ten_thousand_deep_json_arrays() -> None:
    deep = "[" * 10_000 + "]" * 10_000
    for text in (
        '{"sets": {"S": ' + deep + "}}",
        '{"sets": {"S": ["a"]}, "parameters": {"p": {"index": ["S"], "values": ' + deep + "}}}",
        '{"sets": {"S": ["a"]}, "parameters": {"p": {"index": ["S"], "values": '
        + '{"a": ' * 10_000
        + "1"
        + "}" * 10_000
        + "}}}",
    ):
        assert "recursion limit" in refused(text)


def test_deep_python_structures_handed_over_as_a_dict() -> None:
    deep: Any = 1
    for _ in range(10_000):
        deep = [deep]
    assert "sets.S" in refused({"sets": {"S": deep}})
    msg = refused({"sets": {"S": ["a"]}, "parameters": {"p": {"index": ["S"], "values": {"a": deep}}}})
    assert "is not a number" in msg


def test_ten_thousand_deep_parentheses_in_an_expression() -> None:
    deep = "(" * 10_000 + "x" + ")" * 10_000
    t0 = time.perf_counter()
    with pytest.raises(ExpressionError, match="longer than 20000"):
        ex.parse(deep)
    under_limit = "(" * 9_990 + "x" + ")" * 9_990
    with pytest.raises(ExpressionError, match="nested more than"):
        ex.parse(under_limit)
    with pytest.raises(ExpressionError, match="nested"):
        ex.parse("-" * 19_000 + "x")
    with pytest.raises(ExpressionError, match="nested"):
        ex.parse("not " * 4_000 + "x")
    assert time.perf_counter() - t0 < QUICK
    msg = refused(
        model(
            variables=[{"name": "x"}],
            constraints=[{"id": "c", "template": "linear", "expression": under_limit + " <= 1"}],
        )
    )
    assert "constraint c" in msg and "nested more than" in msg
    msg = refused(
        model(variables=[{"name": "x"}], constraints=[{"id": "c", "template": "linear", "expression": deep}])
    )
    assert "constraints.0.linear.expression" in msg and "at most 20000 characters" in msg


def test_deep_nesting_in_for_each_and_list_fields() -> None:
    deep = "(" * 5_000 + "1" + ")" * 5_000
    with pytest.raises(ExpressionError, match="longer than 5000"):
        ex.parse_for_each("s in S if " + deep)
    with pytest.raises(ExpressionError, match="nested"):
        ex.parse_for_each("s in S if " + "(" * 1_000 + "1" + ")" * 1_000)
    with pytest.raises(ExpressionError, match="nested"):
        ex.parse_list("x[s] for s in S if " + "(" * 9_000 + "1" + ")" * 9_000)


# ----------------------------------------------------------------------------- dunder names

BASE: dict[str, Any] = {
    "sets": {"S": ["a"]},
    "parameters": {"p": {"index": ["S"], "values": [1]}},
    "variables": [{"name": "x", "index": ["S"]}, {"name": "b", "domain": "binary"}],
    "constraints": [{"id": "c", "template": "linear", "for_each": "s in S", "expression": "x[s] <= p[s]"}],
}


def _with(change: Any) -> dict[str, Any]:
    m = json.loads(json.dumps(BASE))
    change(m)
    return m


def _con(extra: dict[str, Any]) -> Any:
    return lambda m: m["constraints"].append(extra)


def _expr(text: str) -> Any:
    return lambda m: m["constraints"][0].update(expression=text)


@pytest.mark.parametrize("name", ["__class__", "__import__", "__builtins__"])
@pytest.mark.parametrize(
    "place",
    [
        "set",
        "parameter",
        "variable",
        "constraint id",
        "table",
        "variable index",
        "parameter index",
        "bound",
        "duration",
        "k",
        "table of a set",
        "table of a parameter",
        "for_each name",
        "for_each set",
        "expression name",
        "indexed name",
        "function",
        "attribute",
        "loop name",
        "loop set",
        "objective",
        "if",
        "comprehension list",
        "clause literal",
        "number field",
        "interval window",
        "template",
    ],
)
def test_dunder_names_are_refused_in_every_place_a_name_can_go(place: str, name: str) -> None:
    change = {
        "set": lambda m: m["sets"].update({name: ["a"]}),
        "parameter": lambda m: m["parameters"].update({name: {"value": 1}}),
        "variable": lambda m: m["variables"].append({"name": name}),
        "constraint id": _con({"id": name, "template": "linear", "expression": "1 <= 2"}),
        "table": lambda m: m.update(tables={name: {"columns": {"a": [1]}}}),
        "variable index": lambda m: m["variables"][0].update(index=[name]),
        "parameter index": lambda m: m["parameters"]["p"].update(index=[name]),
        "bound": lambda m: m["variables"][0].update(upper=name),
        "duration": lambda m: m["variables"].append({"name": "iv", "domain": "interval", "duration": name}),
        "k": _con({"id": "k", "template": "at_most_k", "k": name, "options": ["b"]}),
        "table of a set": lambda m: m["sets"].update({"T": {"table": name, "column": "a"}}),
        "table of a parameter": lambda m: m["parameters"].update(
            {"q": {"table": name, "index": ["S"], "index_columns": ["a"], "column": "v"}}
        ),
        "for_each name": lambda m: m["constraints"][0].update(for_each=f"{name} in S"),
        "for_each set": lambda m: m["constraints"][0].update(for_each=f"s in {name}"),
        "expression name": _expr(f"x[s] <= {name}"),
        "indexed name": _expr(f"{name}[s] <= 1"),
        "function": _expr(f"{name}('os') <= 1"),
        "attribute": _expr(f"x.{name} <= 1"),
        "loop name": _expr(f"sum(x[t] for {name} in S) <= 1"),
        "loop set": _expr(f"sum(x[t] for t in {name}) <= 1"),
        "objective": lambda m: m.update(
            objective={"sense": "minimize", "expression": f"{name}.__subclasses__()"}
        ),
        "if": _con({"id": "i", "template": "implication", "if": name, "then": "b >= 1"}),
        "comprehension list": _con({"id": "i", "template": "either_or", "options": f"{name} for s in S"}),
        "clause literal": _con({"id": "i", "template": "clause", "literals": [f"not {name}"]}),
        "number field": _con(
            {"id": "i", "template": "fixed_charge", "variable": "x['a']", "indicator": "b", "upper": name}
        ),
        "interval window": lambda m: m["variables"].append(
            {"name": "iv", "domain": "interval", "duration": 1, "start": [name, 5]}
        ),
        "template": _con({"id": "i", "template": name, "expression": "1 <= 2"}),
    }[place]
    msg = refused(_with(change))
    assert name in msg or "attribute access" in msg or "only the built-in functions" in msg


def test_dunder_strings_as_set_elements_are_plain_data() -> None:
    m = _with(lambda m: m["sets"].update(S=["__class__", "__import__"]))
    m["parameters"]["p"]["values"] = {"__class__": 1, "__import__": 2}
    m["constraints"][0]["expression"] = "x[s] <= p[s] + p['__import__']"
    inst = lower(load_model(m))
    assert inst.columns.names()[:2] == ["x[__class__]", "x[__import__]"]


# ----------------------------------------------------------------------------- size


def test_a_100_mb_model_file_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text('{"description": "' + "x" * BIG + '"}')
    assert "at most 5000 characters" in refused(path)
    path.write_text("x" * BIG)
    assert "not valid JSON" in refused(path)


def test_a_100_mb_expression_is_refused_quickly() -> None:
    big = "x" * BIG
    t0 = time.perf_counter()
    for parse in (ex.parse, ex.parse_list, ex.parse_for_each):
        with pytest.raises(ExpressionError, match="longer than"):
            parse(big)
    assert time.perf_counter() - t0 < QUICK
    text = '{"constraints": [{"id": "c", "template": "linear", "expression": "' + big + '"}]}'
    assert "at most 20000 characters" in refused(text)
    assert "at most 20000 characters" in refused(text.encode())
    assert "at most 20000 characters" in refused(
        {"constraints": [{"id": "c", "template": "linear", "expression": big}]}
    )


def test_a_model_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    from solvers import api

    limit = api.MAX_MODEL_BYTES
    try:
        api.MAX_MODEL_BYTES = 1000
        assert "larger than" in refused("{" + " " * 2000 + "}")
        path = tmp_path / "m.json"
        path.write_text("{" + " " * 2000 + "}")
        assert "larger than" in refused(path)
    finally:
        api.MAX_MODEL_BYTES = limit
    assert "cannot read" in refused(tmp_path / "missing.json")


def test_a_csv_field_beyond_the_csv_module_limit() -> None:
    text = model(
        tables={"t": {"csv": "a,v\n" + "x" * 200_000 + ",1\n"}},
        sets={"S": {"table": "t", "column": "a"}},
    )
    assert "not valid CSV" in refused(text)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"sets": {"S": {"range": [1, 10**12]}}}, "more than 50000000 elements"),
        (
            {"sets": {"S": {"range": [1, 100_000]}}, "variables": [{"name": "x", "index": ["S", "S"]}]},
            "index combinations",
        ),
        (
            {
                "sets": {"S": {"range": [1, 10_000]}},
                "variables": [{"name": "x", "index": ["S"]}],
                "constraints": [
                    {
                        "id": "c",
                        "template": "linear",
                        "for_each": "s in S, t in S",
                        "expression": "x[s] <= x[t]",
                    }
                ],
            },
            "expands to 100000000 combinations",
        ),
        (
            {
                "sets": {"S": {"range": [1, 10_000]}},
                "variables": [{"name": "x", "index": ["S"]}],
                "constraints": [
                    {
                        "id": "c",
                        "template": "linear",
                        "for_each": "s in S",
                        "expression": "sum(x[t] for t in S) <= 1",
                    }
                ],
            },
            "expands to 100000000 combinations",
        ),
    ],
)
def test_models_that_would_expand_beyond_the_limits(data: dict[str, Any], words: str) -> None:
    assert words in refused(data)
