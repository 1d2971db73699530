"""The expression language: parse expression strings into a small, whitelisted tree.

Strings such as ``sum(use[r, p] * x[p] for p in P) <= avail[r]`` are parsed with
Python's ``ast`` in eval mode and converted node by node into the classes below; any
node kind not listed here is rejected with a message that names it. Nothing is ever
evaluated by Python: ``solvers.lower`` walks these trees itself. Every node keeps its
character position in the original string so errors can point at the culprit.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from functools import lru_cache

from .errors import ExpressionError, Issue

MAX_DEPTH = 60  # brackets
# Tree depth: a written-out sum of n terms is a chain n deep, so this is well above
# MAX_DEPTH, yet low enough that the recursive walks here and in lowering stay far from
# Python's recursion limit.
MAX_TREE_DEPTH = 250
MAX_NODES = 20_000

#: Functions the language knows, with the number of arguments they take (None: any, or a
#: generator).
FUNCTIONS: dict[str, tuple[int, int]] = {
    "sum": (1, 1),
    "min": (1, 1000),
    "max": (1, 1000),
    "abs": (1, 1),
    "start": (1, 1),
    "end": (1, 1),
    "ord": (1, 1),
    "first": (1, 1),
    "last": (1, 1),
    "len": (1, 1),
}


@dataclass(frozen=True)
class Node:
    pos: int


@dataclass(frozen=True)
class Num(Node):
    value: float


@dataclass(frozen=True)
class Str(Node):
    value: str


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class Index(Node):
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Unary(Node):
    op: str  # '-', '+', 'not'
    operand: Node


@dataclass(frozen=True)
class Bin(Node):
    op: str  # '+', '-', '*', '/', '**'
    left: Node
    right: Node


@dataclass(frozen=True)
class Compare(Node):
    ops: tuple[str, ...]  # '<=', '>=', '==', '<', '>', '!=', 'in', 'not in'
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # 'and', 'or'
    values: tuple[Node, ...]


@dataclass(frozen=True)
class Tuple(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Loop:
    """``for targets in set_name if cond1 if cond2``."""

    targets: tuple[str, ...]
    set_name: str
    conds: tuple[Node, ...]
    pos: int


@dataclass(frozen=True)
class Gen(Node):
    elt: Node
    loops: tuple[Loop, ...]


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]


_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.Mod: "%"}
_CMPOPS = {
    ast.LtE: "<=",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.Lt: "<",
    ast.Gt: ">",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
}
_NODE_WORDS = {
    "Attribute": "attribute access (a.b)",
    "Lambda": "lambda",
    "ListComp": "list comprehension [...]",
    "List": "a list [...]",
    "Dict": "a dictionary",
    "Set": "a set literal",
    "IfExp": "a conditional expression (a if c else b)",
    "Subscript": "slicing",
    "Starred": "star arguments",
    "JoinedStr": "an f-string",
    "NamedExpr": "the := operator",
    "Await": "await",
    "Yield": "yield",
}


def _fail(where: str, text: str, pos: int | None, message: str, fix: str = "") -> ExpressionError:
    culprit = ""
    if pos is not None and 0 <= pos < len(text):
        culprit = text[pos : pos + 30]
    return ExpressionError(
        Issue(code="expression", message=message, where=where, culprit=culprit, fix=fix, position=pos)
    )


class _Converter:
    def __init__(self, text: str, where: str, offset: int = 0) -> None:
        self.text = text
        self.where = where
        self.offset = offset

    def pos(self, node: ast.AST) -> int:
        # never before the text: a wrapping bracket added by parse_list sits at -1
        return max(0, self.offset + getattr(node, "col_offset", 0))

    def err(self, node: ast.AST | None, message: str, fix: str = "") -> ExpressionError:
        p = self.pos(node) if node is not None else None
        return _fail(self.where, self.text, p, message, fix)

    def conv(self, n: ast.AST) -> Node:
        p = self.pos(n)
        if isinstance(n, ast.Constant):
            v = n.value
            if isinstance(v, bool) or v is None:
                if v is True:
                    return Num(p, 1.0)
                if v is False:
                    return Num(p, 0.0)
                raise self.err(n, "None is not a value in expressions")
            if isinstance(v, (int, float)):
                if isinstance(v, int) and abs(v) > 10**15:
                    raise self.err(n, f"the number {str(v)[:30]} is too large (limit 1e15)")
                f = float(v)
                if f != f or f in (float("inf"), float("-inf")) or abs(f) > 1e15:
                    raise self.err(n, f"the number {v!r} is too large or not finite (limit 1e15)")
                return Num(p, int(v) if isinstance(v, int) else f)
            if isinstance(v, str):
                if len(v) > 64:
                    raise self.err(n, "a quoted name is longer than 64 characters")
                return Str(p, v)
            raise self.err(n, f"{type(v).__name__} constants are not allowed")
        if isinstance(n, ast.Name):
            if n.id.startswith("__"):
                raise self.err(n, f"the name {n.id!r} is not allowed", "names may not start with '__'")
            if n.id in ("True", "False"):
                return Num(p, 1.0 if n.id == "True" else 0.0)
            return Name(p, n.id)
        if isinstance(n, ast.BinOp):
            op = _BINOPS.get(type(n.op))
            if op is None:
                raise self.err(
                    n, f"the operator {type(n.op).__name__} is not allowed", "use + - * / % or ** 2"
                )
            return Bin(p, op, self.conv(n.left), self.conv(n.right))
        if isinstance(n, ast.UnaryOp):
            if isinstance(n.op, ast.USub):
                return Unary(p, "-", self.conv(n.operand))
            if isinstance(n.op, ast.UAdd):
                return self.conv(n.operand)
            if isinstance(n.op, ast.Not):
                return Unary(p, "not", self.conv(n.operand))
            raise self.err(n, "the operator ~ is not allowed", "use 'not'")
        if isinstance(n, ast.Compare):
            ops = []
            for o in n.ops:
                s = _CMPOPS.get(type(o))
                if s is None:
                    raise self.err(n, f"the comparison {type(o).__name__} is not allowed")
                ops.append(s)
            return Compare(p, tuple(ops), tuple(self.conv(x) for x in [n.left, *n.comparators]))
        if isinstance(n, ast.BoolOp):
            return BoolOp(
                p, "and" if isinstance(n.op, ast.And) else "or", tuple(self.conv(v) for v in n.values)
            )
        if isinstance(n, ast.Tuple):
            return Tuple(p, tuple(self.conv(e) for e in n.elts))
        if isinstance(n, ast.Subscript):
            if not isinstance(n.value, ast.Name):
                raise self.err(n, "only names can be indexed, as in x[i] or cost[s, d]")
            if n.value.id.startswith("__"):
                raise self.err(n.value, f"the name {n.value.id!r} is not allowed")
            sl = n.slice
            if isinstance(sl, ast.Slice):
                raise self.err(n, "slices (a:b) are not allowed", "index with set elements")
            items = sl.elts if isinstance(sl, ast.Tuple) else [sl]
            return Index(p, n.value.id, tuple(self.conv(e) for e in items))
        if isinstance(n, ast.Call):
            return self.call(n)
        if isinstance(n, ast.GeneratorExp):
            return self.gen(n)
        kind = type(n).__name__
        raise self.err(n, f"{_NODE_WORDS.get(kind, kind)} is not allowed in expressions")

    def call(self, n: ast.Call) -> Node:
        p = self.pos(n)
        if not isinstance(n.func, ast.Name):
            raise self.err(n, "only the built-in functions can be called: " + ", ".join(FUNCTIONS))
        f = n.func.id
        if f not in FUNCTIONS:
            raise self.err(n, f"unknown function {f[:40]!r}", "the functions are: " + ", ".join(FUNCTIONS))
        if n.keywords:
            raise self.err(n, f"{f}() takes no keyword arguments")
        lo, hi = FUNCTIONS[f]
        if not lo <= len(n.args) <= hi:
            raise self.err(
                n, f"{f}() takes {lo if lo == hi else f'{lo} or more'} argument(s), got {len(n.args)}"
            )
        if f == "sum" and not isinstance(n.args[0], ast.GeneratorExp):
            raise self.err(n, "sum() takes a generator, as in sum(x[i] for i in S)")
        return Call(p, f, tuple(self.conv(a) for a in n.args))

    def gen(self, n: ast.GeneratorExp) -> Gen:
        loops = []
        for c in n.generators:
            if c.is_async:
                raise self.err(n, "async generators are not allowed")
            loops.append(self.loop(c))
        return Gen(self.pos(n), self.conv(n.elt), tuple(loops))

    def loop(self, c: ast.comprehension) -> Loop:
        t = c.target
        if isinstance(t, ast.Name):
            targets: tuple[str, ...] = (t.id,)
        elif isinstance(t, ast.Tuple) and all(isinstance(e, ast.Name) for e in t.elts):
            targets = tuple(e.id for e in t.elts)  # type: ignore[attr-defined]
        else:
            raise self.err(t, "a loop binds a name or a tuple of names, as in 'for (i, j) in A'")
        for name in targets:
            if name.startswith("__"):
                raise self.err(t, f"the name {name!r} is not allowed")
        if len(set(targets)) != len(targets):
            raise self.err(t, "a loop binds the same name twice")
        if not isinstance(c.iter, ast.Name):
            raise self.err(c.iter, "a loop runs over a set named in 'sets', as in 'for p in P'")
        if c.iter.id.startswith("__"):
            raise self.err(c.iter, f"the name {c.iter.id!r} is not allowed", "names may not start with '__'")
        return Loop(targets, c.iter.id, tuple(self.conv(x) for x in c.ifs), self.pos(c.target))


def _depth_ok(tree: ast.AST) -> int:
    """Node count, after checking the depth without recursion."""
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, d = stack.pop()
        count += 1
        if d > MAX_TREE_DEPTH:
            raise ValueError(
                f"the expression is nested more than {MAX_TREE_DEPTH} levels deep "
                "(a written-out sum counts one level per term)"
            )
        if count > MAX_NODES:
            raise ValueError(f"the expression has more than {MAX_NODES} parts")
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return count


def _parse_tree(text: str, where: str, offset: int = 0, prefix: int = 0) -> ast.expr:
    # Cheap guards before the Python parser sees the text: its own limits raise
    # assorted errors (and deep input can exhaust the C stack in old versions).
    depth = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _fail(
                    where,
                    text,
                    None,
                    f"the expression is nested more than {MAX_DEPTH} levels deep",
                    "simplify it or split it into several constraints",
                )
        elif ch in ")]}":
            depth -= 1
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        pos = None if e.offset is None else max(0, e.offset - 1 - prefix) + offset
        msg = (e.msg or "invalid syntax").replace("\n", " ")
        raise _fail(
            where,
            text,
            pos,
            f"cannot parse the expression: {msg}",
            "write it as Python-like algebra, e.g. sum(a[i] * x[i] for i in S) <= b",
        ) from None
    except (RecursionError, MemoryError) as e:
        raise _fail(
            where,
            text,
            None,
            f"the expression is nested too deeply to parse ({type(e).__name__})",
            "simplify it or split it into several constraints",
        ) from None
    except ValueError as e:  # e.g. a null character
        raise _fail(where, text, None, f"cannot parse the expression: {str(e)[:100]}", "remove it") from None
    try:
        _depth_ok(tree)
    except ValueError as e:
        raise _fail(where, text, None, str(e), "simplify it or split it into several constraints") from None
    return tree.body


@lru_cache(maxsize=4096)
def parse(text: str, where: str = "") -> Node:
    """Parse one expression string. Raises ExpressionError with position and fix."""
    if not isinstance(text, str):
        raise _fail(where, "", None, f"expected an expression string, got {type(text).__name__}")
    if not text.strip():
        raise _fail(where, text, None, "the expression is empty")
    if len(text) > 20_000:
        raise _fail(
            where,
            text[:100],
            None,
            "the expression is longer than 20000 characters",
            "use sum(...) over sets instead of writing terms out",
        )
    # Leading/trailing whitespace and newlines are harmless; ast positions are per line,
    # so join lines first to keep positions meaningful.
    flat = " ".join(text.split("\n"))
    body = _parse_tree(flat, where)
    return _Converter(flat, where).conv(body)


def _split_top_level_commas(text: str) -> list[tuple[int, str]]:
    """Split 's in S, d in D if c[s, d] > 0' at commas outside brackets."""
    pieces: list[tuple[int, str]] = []
    depth = 0
    start = 0
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        toks = []
    for tok in toks:
        if tok.type != tokenize.OP:
            continue
        col = tok.start[1]
        if tok.string in "([{":
            depth += 1
        elif tok.string in ")]}":
            depth -= 1
        elif tok.string == "," and depth == 0:
            pieces.append((start, text[start:col]))
            start = col + 1
    pieces.append((start, text[start:]))
    return pieces


@lru_cache(maxsize=1024)
def parse_for_each(text: str, where: str = "") -> tuple[Loop, ...]:
    """Parse a ``for_each`` string: one or more ``names in Set`` with optional ``if``."""
    flat = " ".join(text.split("\n"))
    if not flat.strip():
        raise _fail(where, text, None, "for_each is empty", "write e.g. 'r in R' or 's in S, d in D'")
    if len(flat) > 5000:
        raise _fail(where, flat[:100], None, "for_each is longer than 5000 characters")
    loops: list[Loop] = []
    for start, piece in _split_top_level_commas(flat):
        if not piece.strip():
            raise _fail(where, flat, start, "for_each has an empty part between commas")
        prefix = "(0 for "
        wrapped = prefix + piece + ")"
        try:
            tree = _parse_tree(wrapped, where, offset=start - len(prefix), prefix=0)
        except ExpressionError as e:
            raise _fail(
                where,
                flat,
                start,
                f"cannot read {piece.strip()[:60]!r} as 'name in Set'"
                f" (optionally followed by 'if condition'): {e.issue.message}",
                "write e.g. 's in S, d in D if cost[s, d] > 0'",
            ) from e
        if not isinstance(tree, ast.GeneratorExp):
            raise _fail(where, flat, start, f"cannot read {piece.strip()[:60]!r} as 'name in Set'")
        conv = _Converter(flat, where, offset=start - len(prefix))
        for c in tree.generators:
            loops.append(conv.loop(c))
    names = [t for lp in loops for t in lp.targets]
    if len(set(names)) != len(names):
        raise _fail(where, flat, None, "for_each binds the same name twice")
    return tuple(loops)


@lru_cache(maxsize=1024)
def parse_list(text: str, where: str = "") -> Gen:
    """A list field written as one comprehension string, e.g. ``op[j, m] for j in J``.

    Positions count from the start of ``text``, not of the bracketed form parsed."""
    flat = " ".join(text.split("\n"))
    if not flat.strip():
        raise _fail(where, text, None, "the list is empty", "write e.g. 'op[j, m] for j in J'")
    if len(flat) > 20_000:
        raise _fail(where, flat[:100], None, "the list is longer than 20000 characters")
    try:
        body = _parse_tree("(" + flat + ")", where, offset=-1)
    except ExpressionError as e:
        pos = e.issue.position
        raise _fail(where, flat, None if pos is None else max(0, pos), e.issue.message, e.issue.fix) from None
    node = _Converter(flat, where, offset=-1).conv(body)
    if not isinstance(node, Gen):
        raise _fail(where, text, None, "expected a list or a comprehension such as 'op[j, m] for j in J'")
    return node


def names_in(node: Node | Loop) -> set[str]:
    """Every free name (symbol or loop variable) used in a tree."""
    out: set[str] = set()
    stack: list[object] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Name):
            out.add(n.id)
        elif isinstance(n, Index):
            out.add(n.name)
            stack.extend(n.args)
        elif isinstance(n, Loop):
            out.add(n.set_name)
            stack.extend(n.conds)
        elif isinstance(n, Gen):
            stack.append(n.elt)
            stack.extend(n.loops)
        elif isinstance(n, (Unary,)):
            stack.append(n.operand)
        elif isinstance(n, Bin):
            stack.extend((n.left, n.right))
        elif isinstance(n, Compare):
            stack.extend(n.operands)
        elif isinstance(n, (BoolOp,)):
            stack.extend(n.values)
        elif isinstance(n, Tuple):
            stack.extend(n.items)
        elif isinstance(n, Call):
            stack.extend(n.args)
    return out
