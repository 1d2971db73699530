"""The expression parser: every whitelisted construct, every refusal, and where errors point."""

from __future__ import annotations

import pytest

from solvers import expr as ex
from solvers.errors import ExpressionError, ModelError


def _err(text: str, where: str = "constraint c") -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        ex.parse(text, where)
    return info.value


# ----------------------------------------------------------------------------- accepted


def test_numbers_names_and_strings() -> None:
    assert ex.parse("3") == ex.Num(0, 3)
    assert ex.parse("2.5") == ex.Num(0, 2.5)
    assert ex.parse("1e3") == ex.Num(0, 1000.0)
    assert ex.parse("x") == ex.Name(0, "x")
    assert ex.parse("'chair'") == ex.Str(0, "chair")
    assert ex.parse("True") == ex.Num(0, 1.0)
    assert ex.parse("False") == ex.Num(0, 0.0)


def test_indexing_keeps_every_argument_and_its_position() -> None:
    node = ex.parse("use[r, 'wood', t - 1]")
    assert isinstance(node, ex.Index)
    assert node.name == "use"
    a, b, c = node.args
    assert a == ex.Name(4, "r")
    assert b == ex.Str(7, "wood")
    assert isinstance(c, ex.Bin) and c.op == "-" and c.pos == 15


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "**", "%"])
def test_binary_operators(op: str) -> None:
    node = ex.parse(f"a {op} b")
    assert isinstance(node, ex.Bin)
    assert node.op == op
    assert node.left == ex.Name(0, "a")
    assert node.right == ex.Name(len(f"a {op} "), "b")


def test_unary_minus_not_and_plus() -> None:
    assert ex.parse("-x") == ex.Unary(0, "-", ex.Name(1, "x"))
    assert ex.parse("not b") == ex.Unary(0, "not", ex.Name(4, "b"))
    assert ex.parse("+x") == ex.Name(1, "x")  # unary plus is dropped


@pytest.mark.parametrize("op", ["<=", ">=", "==", "<", ">", "!=", "in", "not in"])
def test_comparisons(op: str) -> None:
    node = ex.parse(f"a {op} B")
    assert isinstance(node, ex.Compare)
    assert node.ops == (op,)
    assert [type(o) for o in node.operands] == [ex.Name, ex.Name]


def test_chained_comparison_and_boolean_operators() -> None:
    node = ex.parse("0 <= x <= 5")
    assert isinstance(node, ex.Compare) and node.ops == ("<=", "<=") and len(node.operands) == 3
    both = ex.parse("a and b or not c")
    assert isinstance(both, ex.BoolOp) and both.op == "or"
    assert isinstance(both.values[0], ex.BoolOp) and both.values[0].op == "and"
    assert both.values[1] == ex.Unary(11, "not", ex.Name(15, "c"))


def test_tuple_membership() -> None:
    node = ex.parse("(i, j) in A")
    assert isinstance(node, ex.Compare)
    left = node.operands[0]
    assert isinstance(left, ex.Tuple) and [x.id for x in left.items] == ["i", "j"]  # type: ignore[attr-defined]


def test_generator_with_tuple_targets_several_loops_and_conditions() -> None:
    node = ex.parse("sum(c[i, j] * x[i, j, t] for (i, j) in A if i != j if c[i, j] > 0 for t in T)")
    assert isinstance(node, ex.Call) and node.func == "sum"
    gen = node.args[0]
    assert isinstance(gen, ex.Gen)
    first, second = gen.loops
    assert first.targets == ("i", "j") and first.set_name == "A" and len(first.conds) == 2
    assert second.targets == ("t",) and second.set_name == "T" and second.conds == ()
    assert isinstance(gen.elt, ex.Bin) and gen.elt.op == "*"


@pytest.mark.parametrize(
    "text",
    [
        "min(a, b, 3)",
        "max(x[i] for i in S)",
        "abs(x - y)",
        "start(op[j, m])",
        "end(t)",
        "ord(t)",
        "first(T)",
        "last(T)",
        "len(T)",
    ],
)
def test_every_builtin_function(text: str) -> None:
    node = ex.parse(text)
    assert isinstance(node, ex.Call)
    assert node.func == text.split("(")[0]


def test_multiline_text_keeps_positions_on_the_joined_line() -> None:
    node = ex.parse("x\n+ y")
    assert isinstance(node, ex.Bin)
    assert node.right == ex.Name(4, "y")


def test_parse_is_cached_and_returns_equal_trees() -> None:
    assert ex.parse("a + b") is ex.parse("a + b")


def test_written_out_sum_of_many_terms_is_accepted() -> None:
    # LLMs write small models out term by term; a flat sum must not count as "nesting".
    text = " + ".join(f"{k} * x{k}" for k in range(200)) + " <= 10"
    assert isinstance(ex.parse(text), ex.Compare)


# ----------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    ("text", "pos", "words"),
    [
        ("x.y", 0, "attribute access"),
        ("a + x.__class__", 4, "attribute access"),
        ("lambda: 1", 0, "lambda"),
        ("f'{x}'", 0, "f-string"),
        ("[1, 2]", 0, "a list"),
        ("{1: 2}", 0, "dictionary"),
        ("{1, 2}", 0, "set literal"),
        ("a if c else b", 0, "conditional expression"),
        ("[x for x in S]", 0, "list comprehension"),
        ("(y := 3)", 1, ":="),
        ("x[1:2]", 0, "slices"),
        ("x[:]", 0, "slices"),
        ("a + foo(x)", 4, "unknown function 'foo'"),
        ("print(1)", 0, "unknown function 'print'"),
        ("__import__('os')", 0, "unknown function '__import__'"),
        ("getattr(x, 'y')", 0, "unknown function 'getattr'"),
        ("x.sum()", 0, "only the built-in functions"),
        ("x[i][j]", 0, "only names can be indexed"),
        ("x // 2", 0, "FloorDiv"),
        ("x @ y", 0, "MatMult"),
        ("x << 1", 0, "LShift"),
        ("~x", 0, "~"),
        ("x is y", 0, "Is"),
        ("None", 0, "None"),
        ("b'x'", 0, "bytes"),
        ("1j", 0, "complex"),
        ("x[...]", 2, "ellipsis"),
        ("sum(x)", 0, "generator"),
        ("max()", 0, "1 or more"),
        ("abs(x, y)", 0, "1 argument"),
        ("min(a, key=b)", 0, "keyword"),
        ("sum(x[i] for i.a in S)", 13, "binds a name"),
        ("sum(x[i] for i in range(3))", 18, "set named in 'sets'"),
        ("sum(x[i] for i in S.T)", 18, "set named in 'sets'"),
        ("sum(x[i] for i, i in S)", 13, "same name twice"),
        ("await x", 0, "await"),
    ],
)
def test_refused_constructs_name_the_construct_and_point_at_it(text: str, pos: int, words: str) -> None:
    e = _err(text)
    assert e.issue.code == "expression"
    assert e.issue.where == "constraint c"
    assert words in e.issue.message
    assert e.issue.position == pos
    assert e.issue.culprit == text[pos : pos + 30]
    assert isinstance(e, ModelError)
    assert "constraint c" in str(e)


@pytest.mark.parametrize(
    ("text", "pos"),
    [
        ("__class__", 0),
        ("x + __class__", 4),
        ("__import__[1]", 0),
        ("x[__builtins__]", 2),
        ("sum(x[i] for __i in S)", 13),
        ("sum(x[i] for i in __subclasses__)", 18),
        ("sum(x[i] for (i, __j) in A)", 13),
    ],
)
def test_dunder_names_are_refused_wherever_a_name_can_go(text: str, pos: int) -> None:
    e = _err(text)
    assert "is not allowed" in e.issue.message
    assert "__" in e.issue.message
    assert e.issue.position == pos


def test_unknown_function_lists_the_known_ones() -> None:
    e = _err("exp(x) <= 1")
    assert "exp" in e.issue.message
    for f in ex.FUNCTIONS:
        assert f in e.issue.fix


@pytest.mark.parametrize(
    ("text", "pos"),
    [
        ("x + * 2", 4),
        ("x[i", 1),
        ("sum(x[i] for i in S", 3),
    ],
)
def test_syntax_errors_carry_a_position_and_an_example_fix(text: str, pos: int) -> None:
    e = _err(text)
    assert e.issue.message.startswith("cannot parse the expression")
    assert e.issue.position == pos
    assert "sum(" in e.issue.fix


def test_empty_and_blank_expressions() -> None:
    for text in ("", "   ", "\n"):
        assert "empty" in _err(text).issue.message


def test_non_string_input_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="expected an expression string"):
        ex.parse(3)  # type: ignore[arg-type]


def test_numbers_beyond_the_limit() -> None:
    assert "too large" in _err("1e400").issue.message
    assert "too large" in _err("12345678901234567890").issue.message
    assert "too large" in _err("x <= 1e16").issue.message
    assert isinstance(ex.parse("1e15"), ex.Num)


def test_size_and_depth_limits() -> None:
    long = "x + " * 6000 + "x"
    assert "longer than" in _err(long).issue.message
    deep = "(" * (ex.MAX_DEPTH + 1) + "x" + ")" * (ex.MAX_DEPTH + 1)
    e = _err(deep)
    assert "nested" in e.issue.message and e.issue.fix
    assert isinstance(ex.parse("(" * ex.MAX_DEPTH + "x" + ")" * ex.MAX_DEPTH), ex.Name)
    chain = " + ".join(["x"] * (ex.MAX_TREE_DEPTH + 5))
    assert "nested more than" in _err(chain).issue.message
    unary = "-" * 5000 + "x"
    assert "nested" in _err(unary).issue.message
    assert "null" in _err("x\0").issue.message


def test_quoted_names_longer_than_64_characters() -> None:
    assert "longer than 64" in _err("x['" + "a" * 65 + "']").issue.message


# ----------------------------------------------------------------------------- for_each


def test_for_each_with_several_sets_and_a_condition() -> None:
    loops = ex.parse_for_each("s in S, d in D if cost[s, d] > 0", "constraint c (for_each)")
    assert [(lp.targets, lp.set_name, len(lp.conds), lp.pos) for lp in loops] == [
        (("s",), "S", 0, 0),
        (("d",), "D", 1, 8),
    ]
    cond = loops[1].conds[0]
    assert isinstance(cond, ex.Compare) and cond.pos == 18


def test_for_each_tuple_targets_and_conditions_on_each_part() -> None:
    loops = ex.parse_for_each("(i, j) in A if i != j, t in T if t > 1")
    assert loops[0].targets == ("i", "j") and loops[0].set_name == "A"
    assert loops[1].targets == ("t",) and loops[1].pos == 23
    assert isinstance(loops[1].conds[0], ex.Compare)


@pytest.mark.parametrize(
    ("text", "pos", "words"),
    [
        ("s in S, d in", 7, "as 'name in Set'"),
        ("s in S, , d in D", 7, "empty part"),
        ("s in S, d in D if foo(d)", 18, "unknown function 'foo'"),
        ("s in S, x.y in D", 8, "binds a name"),
        ("s in S, d in __D", 13, "'__D' is not allowed"),
        ("s in S, s in D", None, "same name twice"),
        ("", None, "empty"),
    ],
)
def test_for_each_errors(text: str, pos: int | None, words: str) -> None:
    with pytest.raises(ExpressionError) as info:
        ex.parse_for_each(text, "constraint c (for_each)")
    issue = info.value.issue
    assert words in issue.message
    assert issue.position == pos
    assert issue.where == "constraint c (for_each)"


# ----------------------------------------------------------------------------- list fields


def test_list_comprehension_positions_count_from_the_field_text() -> None:
    gen = ex.parse_list("op[j, m] for j in J if d[j] > 0")
    assert isinstance(gen, ex.Gen)
    assert gen.elt == ex.Index(0, "op", (ex.Name(3, "j"), ex.Name(6, "m")))
    assert gen.loops[0].pos == 13 and gen.loops[0].set_name == "J"
    with pytest.raises(ExpressionError) as info:
        ex.parse_list("x[i] for i in S if foo(i)")
    assert info.value.issue.position == 19
    assert info.value.issue.culprit.startswith("foo(i)")


def test_list_field_must_be_a_comprehension() -> None:
    with pytest.raises(ExpressionError, match="comprehension"):
        ex.parse_list("a, b")
    with pytest.raises(ExpressionError, match="empty"):
        ex.parse_list(" ")


# ----------------------------------------------------------------------------- names_in


def test_names_in_collects_symbols_loop_names_and_sets() -> None:
    node = ex.parse("sum(c[i] * x[i] for i in S if d[i] > k) + max(y, z) <= cap")
    assert ex.names_in(node) == {"c", "x", "i", "S", "d", "k", "y", "z", "cap"}


def test_issue_text_names_where_position_and_fix() -> None:
    e = _err("x + foo(y)", "constraint cap")
    text = str(e)
    assert text.startswith("constraint cap: unknown function 'foo'")
    assert "(character 5, at 'foo(y)')" in text
    assert "Fix: the functions are" in text
