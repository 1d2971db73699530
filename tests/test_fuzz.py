"""Property tests: whatever text or model comes in, the core answers with issues, not crashes.

(a) The parser, fed strings from a grammar of the language, mutations of them and plain
    garbage, returns a tree or raises ExpressionError, nothing else.
(b) Random small models (some deliberately wrong) go through ``check`` without raising, and
    ``lower`` raises only ModelError / CheckFailed.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solvers import expr as ex
from solvers.api import load_model
from solvers.check import check
from solvers.errors import CheckFailed, ExpressionError, ModelError
from solvers.ir import Instance
from solvers.lower import lower

# database=None: no .hypothesis folder left in the checkout; the runs stay short and seeded anew
FAST = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

# ----------------------------------------------------------------------------- expression grammar

SYMBOLS = ["x", "y", "b", "t", "p", "q", "cap", "S", "T", "A", "i", "j", "k", "zz", "__class__", "sum", "if"]
FUNCS = [
    "sum",
    "min",
    "max",
    "abs",
    "start",
    "end",
    "ord",
    "first",
    "last",
    "len",
    "foo",
    "exp",
    "__import__",
]
CMP = ["<=", ">=", "==", "<", ">", "!=", "in", "not in"]
BINOPS = ["+", "-", "*", "/", "**", "%", "//", "@"]

numbers = st.one_of(
    st.integers(-10, 10).map(str),
    st.sampled_from(
        ["0", "1.5", "1e3", "1e400", "10**400", "1e15", "-0.0", "2 ** 0.5", "123456789012345678"]
    ),
)
names = st.sampled_from(SYMBOLS)
quoted = st.sampled_from(["'a'", "'b'", "'wood'", '"x"', "'__class__'", "''"])


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    args = st.lists(children, min_size=1, max_size=3).map(", ".join)
    loop = st.builds(
        lambda t, s, c: f" for {t} in {s}" + (f" if {c}" if c else ""),
        st.sampled_from(["i", "j", "(i, j)", "t", "x", "i.a", "__k"]),
        st.sampled_from(["S", "T", "A", "p", "range(3)", "__S"]),
        st.one_of(st.none(), children),
    )
    return st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", children, st.sampled_from(BINOPS), children),
        st.builds(lambda a, op, b: f"{a} {op} {b}", children, st.sampled_from(CMP), children),
        st.builds(lambda a, b, c: f"{a} <= {b} <= {c}", children, children, children),
        st.builds(lambda a, op, b: f"{a} {op} {b}", children, st.sampled_from(["and", "or"]), children),
        st.builds(lambda op, a: f"{op}{a}", st.sampled_from(["-", "+", "not ", "~"]), children),
        st.builds(lambda a: f"({a})", children),
        st.builds(lambda n, a: f"{n}[{a}]", names, args),
        st.builds(lambda f, a: f"{f}({a})", st.sampled_from(FUNCS), args),
        st.builds(lambda f, e, lp: f"{f}({e}{lp})", st.sampled_from(FUNCS), children, loop),
        st.builds(lambda a, b: f"({a}, {b})", children, children),
        st.builds(lambda a, n: f"{a}.{n}", children, names),
        st.builds(lambda a, b: f"{a}[{b}:]", names, children),
        st.builds(lambda a, b, c: f"{a} if {b} else {c}", children, children, children),
        st.builds(lambda a: f"lambda: {a}", children),
        st.builds(lambda a: f"[{a}]", children),
    )


expressions = st.recursive(st.one_of(numbers, names, quoted), _extend, max_leaves=12)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A grammatical string with a few characters inserted, deleted or replaced."""
    text = draw(expressions)
    for _ in range(draw(st.integers(1, 3))):
        if not text:
            break
        k = draw(st.integers(0, len(text) - 1))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = draw(
            st.sampled_from(list("()[]{},:.'\"\\=<>!*+-/%@#$&|^~`;\n\t\0 ") + list(string.ascii_letters))
        )
        if op == "insert":
            text = text[:k] + ch + text[k:]
        elif op == "delete":
            text = text[:k] + text[k + 1 :]
        else:
            text = text[:k] + ch + text[k + 1 :]
    return text


any_text = st.one_of(
    expressions, mutated(), st.text(max_size=80), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))
)


def _only_expression_errors(fn: Any, text: str) -> Any:
    try:
        return fn(text, "fuzz")
    except ExpressionError as e:
        issue = e.issue
        assert issue.message
        assert issue.where == "fuzz"
        assert issue.position is None or issue.position >= 0
        return None


@FAST
@given(any_text)
def test_parse_returns_a_tree_or_an_expression_error(text: str) -> None:
    node = _only_expression_errors(ex.parse, text)
    if node is not None:
        assert isinstance(node, ex.Node)
        assert all(not n.startswith("__") for n in ex.names_in(node))


@FAST
@given(any_text)
def test_for_each_and_list_parsers_return_trees_or_expression_errors(text: str) -> None:
    loops = _only_expression_errors(ex.parse_for_each, text)
    if loops is not None:
        assert all(isinstance(lp, ex.Loop) for lp in loops)
    gen = _only_expression_errors(ex.parse_list, text)
    if gen is not None:
        assert isinstance(gen, ex.Gen)


@FAST
@given(st.builds(lambda head, loops: f"{head} in S" + loops, st.sampled_from(["s", "(i, j)", "t"]), any_text))
def test_for_each_with_random_tails(text: str) -> None:
    _only_expression_errors(ex.parse_for_each, text)


# ----------------------------------------------------------------------------- random models

ELEMENTS = st.sampled_from(["a", "b", "c", "wood", 1, 2, 3])


@st.composite
def models(draw: st.DrawFn) -> dict[str, Any]:
    sets: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(["S", "T", "A", "R"]), max_size=3, unique=True)):
        kind = draw(st.sampled_from(["list", "range", "pairs"] * 6 + ["empty", "dup"]))
        if kind == "list":
            sets[name] = draw(st.lists(ELEMENTS, min_size=1, max_size=4, unique=True))
        elif kind == "range":
            lo = draw(st.integers(-2, 3))
            sets[name] = {"range": [lo, lo + draw(st.integers(0, 4))]}
        elif kind == "pairs":
            pairs = st.lists(st.tuples(ELEMENTS, ELEMENTS), min_size=1, max_size=4, unique=True)
            sets[name] = [list(pr) for pr in draw(pairs)]
        elif kind == "empty":
            sets[name] = []
        else:
            sets[name] = ["a", "a"]
    set_names = list(sets) * 6 + ["Q"]  # Q is never declared
    index = st.lists(st.sampled_from(set_names), max_size=2) if sets else st.just([])
    value = st.one_of(
        st.integers(-5, 5), st.floats(-10, 10, allow_nan=False), st.sampled_from(["x", None, 1e300, True])
    )

    params: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(["p", "q", "cap"]), max_size=3, unique=True)):
        idx = draw(index)
        if not idx:
            params[name] = {"value": draw(st.floats(-10, 10, allow_nan=False))}
            continue
        kind = draw(st.sampled_from(["dict", "list", "flat", "default"]))
        if kind == "list":
            values: Any = draw(st.lists(value, max_size=4))
        elif kind == "flat":
            values = draw(st.dictionaries(st.sampled_from(["a", "b", "1", "2", "zz"]), value, max_size=4))
        else:
            values = draw(
                st.dictionaries(
                    st.sampled_from(["a", "b", "1", "2"]),
                    st.one_of(
                        value, st.dictionaries(st.sampled_from(["a", "b", "1", "2"]), value, max_size=3)
                    ),
                    max_size=4,
                )
            )
        params[name] = {"index": idx, "values": values}
        if kind == "default":
            params[name]["default"] = draw(st.floats(-5, 5, allow_nan=False))

    variables: list[dict[str, Any]] = []
    for name in draw(st.lists(st.sampled_from(["x", "y", "b", "t"]), min_size=1, max_size=4, unique=True)):
        domain = draw(st.sampled_from(["continuous", "integer", "binary", "boolean", "interval"]))
        v: dict[str, Any] = {"name": name, "index": draw(index), "domain": domain}
        if domain == "interval":
            v["duration"] = draw(st.one_of(st.integers(0, 5), st.sampled_from(["p", "cap", "nope"])))
        else:
            v["lower"] = draw(st.one_of(st.none(), st.integers(-3, 3), st.sampled_from(["p", "cap"])))
            v["upper"] = draw(st.one_of(st.none(), st.integers(-3, 10), st.sampled_from(["p", "q"])))
        variables.append(v)

    loops = st.sampled_from(
        ["s in S", "t in T", "(i, j) in A", "s in S, t in T if t > 1", "r in R if p[r] > 0"]
    )
    expr = st.one_of(expressions, mutated())
    cons: list[dict[str, Any]] = []
    for k in range(draw(st.integers(0, 4))):
        template = draw(
            st.sampled_from(
                [
                    "linear",
                    "balance",
                    "implication",
                    "either_or",
                    "at_most_k",
                    "clause",
                    "fixed_charge",
                    "no_overlap",
                    "precedence",
                    "all_different",
                ]
            )
        )
        c: dict[str, Any] = {"id": f"c{k}", "template": template}
        if draw(st.booleans()):
            c["for_each"] = draw(st.one_of(loops, expr))
        if template in ("linear", "balance"):
            c["expression"] = draw(expr)
        elif template == "implication":
            c["if"], c["then"] = draw(expr), draw(expr)
        elif template in ("either_or", "at_most_k", "clause", "all_different", "no_overlap"):
            field = {
                "either_or": "options",
                "at_most_k": "options",
                "clause": "literals",
                "all_different": "terms",
                "no_overlap": "intervals",
            }[template]
            c[field] = draw(st.one_of(st.lists(expr, max_size=3), expr))
            if template == "at_most_k":
                c["k"] = draw(st.one_of(st.integers(0, 3), st.sampled_from(["p", "cap"])))
        elif template == "fixed_charge":
            c["variable"], c["indicator"], c["upper"] = draw(expr), draw(expr), draw(st.integers(0, 9))
        else:
            c["before"], c["after"] = draw(expr), draw(expr)
        cons.append(c)
    data: dict[str, Any] = {"sets": sets, "parameters": params, "variables": variables, "constraints": cons}
    if draw(st.booleans()):
        data["objective"] = {
            "sense": draw(st.sampled_from(["minimize", "maximize"])),
            "expression": draw(expr),
        }
    return data


@st.composite
def grounded_models(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed: every symbol declared, expressions drawn over them."""
    n = draw(st.integers(1, 3))
    data: dict[str, Any] = {
        "sets": {"S": ["a", "b", "c"][:n], "T": {"range": [1, n + 1]}, "A": [["a", "b"], ["b", "c"]]},
        "parameters": {
            "p": {"index": ["S"], "values": draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))},
            "cap": {"value": draw(st.integers(0, 9))},
        },
        "variables": [
            {"name": "x", "index": ["S"], "upper": 10},
            {"name": "y", "index": ["T"], "domain": "integer", "lower": -5, "upper": 5},
            {"name": "b", "index": ["S"], "domain": "binary"},
            {"name": "z", "lower": None},
        ],
    }
    free = [
        "z",
        "cap",
        "x['a']",
        "len(T)",
        "x[first(S)]",
        "y[last(T)]",
        "sum(x[i] for i in S)",
        "2.5",
        "0",
        "-1",
    ]
    bound = [
        "x[s]",
        "y[t]",
        "b[s]",
        "p[s]",
        "y[t - 1]",
        "ord(s)",
        "sum(y[u] for u in T if u <= t)",
        "sum(b[i] for (i, j) in A if j == s)",
    ]
    rare = ["max(x[i] for i in S)", "min(y[t], z)", "abs(z - cap)"]  # convex in one direction only

    def sides(pool: list[str]) -> st.SearchStrategy[str]:
        atom = st.sampled_from(pool * 6 + rare)
        term = st.builds(lambda c, a: f"{c} * {a}", st.sampled_from(["1", "2", "-3", "0.5"]), atom) | atom
        return st.lists(term, min_size=1, max_size=3).map(" + ".join)

    side = sides(free + bound)
    comparison = st.builds(
        lambda a, op, b: f"{a} {op} {b}", side, st.sampled_from(["<=", ">=", "=="] * 5 + ["<"]), side
    )
    cons = []
    for k in range(draw(st.integers(1, 4))):
        fe = draw(
            st.sampled_from(["s in S, t in T", "s in S, t in T if t > 1", "s in S, t in T if p[s] > 0"])
        )
        if draw(st.booleans()):
            cons.append({"id": f"c{k}", "template": "linear", "for_each": fe, "expression": draw(comparison)})
        else:
            cons.append(
                {
                    "id": f"c{k}",
                    "template": "implication",
                    "for_each": fe,
                    "if": "b[s]",
                    "then": draw(comparison),
                }
            )
    data["constraints"] = cons
    objective_side = sides(free)
    obj = st.one_of(objective_side, st.builds(lambda a: f"({a}) ** 2", objective_side))
    data["objective"] = {"sense": draw(st.sampled_from(["minimize", "maximize"])), "expression": draw(obj)}
    return data


def _check_and_lower(data: dict[str, Any]) -> None:
    try:
        m = load_model(data)
    except (ModelError, CheckFailed):
        return
    issues, instance = check(m)
    assert isinstance(issues, list)
    assert all(i.message and i.code for i in issues)
    has_errors = any(i.severity == "error" for i in issues)
    assert (instance is None) == has_errors
    if instance is not None:
        assert isinstance(instance, Instance)
    try:
        inst = lower(m)
    except (ModelError, CheckFailed):
        assert has_errors
        return
    assert not has_errors
    assert inst.columns.n == instance.columns.n if instance is not None else True
    for blk in inst.row_blocks:
        assert len(blk.rows) == len(blk.cols) == len(blk.coefs)
        assert (
            not np.isnan(blk.coefs).any() and not np.isnan(blk.lower).any() and not np.isnan(blk.upper).any()
        )
        assert ((blk.cols >= 0) & (blk.cols < inst.columns.n)).all()
        assert ((blk.rows >= 0) & (blk.rows < blk.n)).all()


@MODELS
@given(models())
def test_random_models_give_issues_not_exceptions(data: dict[str, Any]) -> None:
    _check_and_lower(data)


@MODELS
@given(grounded_models())
def test_random_well_declared_models_give_issues_not_exceptions(data: dict[str, Any]) -> None:
    _check_and_lower(data)
