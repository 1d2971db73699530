"""Turn a ground instance into a purely linear MILP form, for MILP backends (HiGHS, ...).

The instance's own row blocks pass through untouched. Each logic, scheduling or clause
constraint becomes a few rows over its columns and some added binaries; those rows are
filed in a ``LogicRows`` block under the constraint's id, template and source, and each row
remembers the instance (``batch_rule[wood]``) it came from, so that conflicts and duals
read as model constraint ids. Interval variables get their ``end = start + duration``
rows, marked ``aux`` (internal: part of what an interval is, never a user's requirement).

Big-M values come from finite column bounds by interval arithmetic; where a bound that is
needed is infinite the message names the constraint, the variable and the bound to add.
A condition used in the reverse direction (``if x >= 5 then ...`` needs ``x < 5`` to
switch it off) needs a strict inequality, which is exact only for whole-number
expressions (``x <= 4``); anything else is refused rather than approximated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BackendError
from ..ir import (
    INF,
    And,
    Atom,
    BoolArray,
    Const,
    FloatArray,
    Formula,
    Instance,
    IntArray,
    Interner,
    LinTerm,
    Lit,
    LogicCon,
    Not,
    Objective,
    Or,
    RowBlock,
    VarBlock,
)

__all__ = ["LINEARIZED_TEMPLATES", "REFUSED_TEMPLATES", "LinearForm", "LogicRows", "linearize"]

#: Templates this module turns into rows.
LINEARIZED_TEMPLATES = frozenset(
    {
        "implication",
        "either_or",
        "at_most_k",
        "at_least_k",
        "exactly_k",
        "fixed_charge",
        "semi_continuous",
        "clause",
        "precedence",
        "no_overlap",
    }
)
#: Templates a MILP backend leaves to CP-SAT, with the reason.
REFUSED_TEMPLATES = {
    "all_different": "all_different is not linearized for MILP backends; CP-SAT takes it natively",
    "cumulative": "cumulative is not linearized for MILP backends; CP-SAT takes it natively",
}

_INTERVAL_CID = "__interval"
_TOL = 1e-9

# A literal: (column, negated). Its value is x[col], or 1 - x[col] when negated.
_Literal = tuple[int, bool]


@dataclass
class LogicRows(RowBlock):
    """Rows generated for the logic constraints of one id.

    ``names[i]`` is the instance (``LogicCon.name``) that row ``i`` belongs to and
    ``owner[i]`` its index in ``Instance.logic`` (-1 for internal rows such as interval
    links); rows of one instance stand or fall together in a conflict.
    """

    names: list[str] = field(default_factory=list)
    owner: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def row_name(self, interner: Interner, i: int) -> str:
        return self.names[i]


@dataclass
class LinearForm:
    """A MILP: columns (the instance's first, then added ones), row blocks, objective."""

    instance: Instance
    lower: FloatArray
    upper: FloatArray
    integer: BoolArray
    blocks: list[RowBlock]
    objective: Objective | None
    n_model: int  # columns below this index are the instance's own
    added_names: list[str] = field(default_factory=list)  # names of columns n_model, n_model+1, ...
    # logic constraint (index into Instance.logic) -> the column bounds ((col, "lower" or
    # "upper")) its big-M values came from: without them its rows would be wrong
    bigm_bounds: dict[int, list[tuple[int, str]]] = field(default_factory=dict)

    @property
    def n_cols(self) -> int:
        return int(self.lower.shape[0])

    @property
    def n_rows(self) -> int:
        return sum(b.n for b in self.blocks)

    def hidden(self) -> BoolArray:
        """Columns that are not the model's own decisions (aux columns, added binaries)."""
        mask = np.zeros(self.n_cols, dtype=np.bool_)
        mask[self.n_model :] = True
        for b in self.instance.columns.blocks:
            if b.domain == "aux":
                mask[b.offset : b.offset + b.size] = True
        return mask

    def column_name(self, col: int) -> str:
        if col >= self.n_model:
            return self.added_names[col - self.n_model]
        return self.instance.columns.name(col)


class _Sink:
    """Rows of one constraint id, gathered row by row and turned into arrays at the end."""

    def __init__(self, cid: str, template: str, source: str | None, aux: bool = False) -> None:
        self.cid = cid
        self.template = template
        self.source = source
        self.aux = aux
        self.cols: list[IntArray] = []
        self.coefs: list[FloatArray] = []
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.names: list[str] = []
        self.owner: list[int] = []

    def add(self, cols: IntArray, coefs: FloatArray, lo: float, hi: float, name: str, owner: int) -> None:
        self.cols.append(cols)
        self.coefs.append(coefs)
        self.lo.append(lo)
        self.hi.append(hi)
        self.names.append(name)
        self.owner.append(owner)

    def block(self) -> LogicRows:
        n = len(self.lo)
        counts = np.fromiter((c.shape[0] for c in self.cols), dtype=np.int64, count=n)
        cols = np.concatenate(self.cols) if n else np.zeros(0, dtype=np.int64)
        coefs = np.concatenate(self.coefs) if n else np.zeros(0, dtype=np.float64)
        return LogicRows(
            cid=self.cid,
            template=self.template,
            source=self.source,
            n=n,
            rows=np.repeat(np.arange(n, dtype=np.int64), counts),
            cols=cols.astype(np.int64, copy=False),
            coefs=coefs.astype(np.float64, copy=False),
            lower=np.asarray(self.lo, dtype=np.float64),
            upper=np.asarray(self.hi, dtype=np.float64),
            keys=np.zeros((n, 0), dtype=np.int64),
            aux=self.aux,
            names=self.names,
            owner=np.asarray(self.owner, dtype=np.int64),
        )


def _append(a: npt.NDArray[Any], x: float) -> npt.NDArray[Any]:
    """``np.append(a, x)`` for a 1-d ``a``, without its generic overhead (rows are short)."""
    return np.concatenate((a, [x]))


def _var_hint(block: VarBlock, side: str) -> str:
    if block.domain == "interval":
        return f"give {block.name} a horizon ('start' and 'end' bounds [earliest, latest])"
    return f"give {block.name} {'an upper' if side == 'upper' else 'a lower'} bound"


class _Linearizer:
    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.columns = inst.columns
        self.n_model = inst.columns.n
        self.add_lower: list[float] = []
        self.add_upper: list[float] = []
        self.add_names: list[str] = []
        self.sinks: dict[str, _Sink] = {}
        # the constraint being linearized, for rows and messages
        self.con: LogicCon | None = None
        self.con_index = -1
        self.deps: dict[int, set[tuple[int, str]]] = {}

    # ------------------------------------------------------------------ columns

    def bounds(self, col: int) -> tuple[float, float]:
        if col < self.n_model:
            return float(self.columns.lower[col]), float(self.columns.upper[col])
        k = col - self.n_model
        return self.add_lower[k], self.add_upper[k]

    def is_integer(self, col: int) -> bool:
        return col >= self.n_model or bool(self.columns.integer[col])

    def new_binary(self, what: str) -> int:
        assert self.con is not None
        col = self.n_model + len(self.add_lower)
        self.add_lower.append(0.0)
        self.add_upper.append(1.0)
        self.add_names.append(f"__{what}[{self.con.name}#{len(self.add_names)}]")
        return col

    def col_name(self, col: int) -> str:
        if col < self.n_model:
            return self.columns.name(col)
        return self.add_names[col - self.n_model]

    # ------------------------------------------------------------------ big-M

    def where(self) -> str:
        assert self.con is not None
        c = self.con
        return f"constraint {c.cid!r} ({c.template}, {c.name})"

    def range_of(self, cols: IntArray, coefs: FloatArray, side: str) -> float:
        """min (side='min') or max (side='max') of sum(coefs * x[cols]) over the bounds."""
        # rows have a few terms: per-element Python beats numpy calls, except for the sum
        # (np.dot, whose rounding the big-M values have always had)
        col_list, coef_list = cols.tolist(), coefs.tolist()
        use_lo = [a > 0 for a in coef_list] if side == "min" else [a < 0 for a in coef_list]
        picked: list[float] = []
        for j, u in zip(col_list, use_lo, strict=True):
            lo, hi = self.bounds(j)
            picked.append(lo if u else hi)
        self.deps.setdefault(self.con_index, set()).update(
            (j, "lower" if u else "upper")
            for j, u, a in zip(col_list, use_lo, coef_list, strict=True)
            if j < self.n_model and a != 0
        )
        bad = [
            k
            for k, (p, a) in enumerate(zip(picked, coef_list, strict=True))
            if a != 0 and not math.isfinite(p)
        ]
        if bad:
            j = col_list[bad[0]]
            needed = "lower" if picked[bad[0]] < 0 else "upper"
            name = self.col_name(j)
            block = self.columns.block_of(j) if j < self.n_model else None
            hint = _var_hint(block, needed) if block is not None else f"give {name} {needed} bound"
            raise BackendError(
                f"{self.where()}: a big-M value for HiGHS needs a finite {needed} bound on "
                f"{name}, which has none: {hint} (or solve with CP-SAT)"
            )
        return float(np.dot(coefs, np.array(picked, dtype=np.float64))) if cols.shape[0] else 0.0

    # ------------------------------------------------------------------ rows

    def row(self, cols: IntArray, coefs: FloatArray, lo: float, hi: float) -> None:
        assert self.con is not None
        c = self.con
        sink = self.sinks.get(c.cid)
        if sink is None:
            sink = self.sinks[c.cid] = _Sink(c.cid, c.template, c.source)
        # merge repeated columns: solvers reject duplicate entries in a row (rows are short:
        # a Python set finds repeats quicker than np.unique)
        if cols.shape[0] > 1 and len(set(cols.tolist())) != cols.shape[0]:
            u, inv = np.unique(cols, return_inverse=True)
            coefs = np.bincount(inv, weights=coefs, minlength=u.shape[0]).astype(np.float64)
            cols = u.astype(np.int64)
        # the callers' arrays are their own (made for this row): no copies needed
        sink.add(
            cols.astype(np.int64, copy=False),
            coefs.astype(np.float64, copy=False),
            lo,
            hi,
            c.name,
            self.con_index,
        )

    def lit_row(self, lits: list[_Literal], weights: list[float], lo: float, hi: float) -> None:
        """lo <= sum(w * value(lit)) <= hi."""
        cols = np.array([c for c, _ in lits], dtype=np.int64)
        w = np.array(weights, dtype=np.float64)
        if any(n for _, n in lits):
            neg = np.array([n for _, n in lits], dtype=np.bool_)
            const = float(w[neg].sum())
            w = np.where(neg, -w, w)
        else:
            const = 0.0  # what the sum of no negated weights is
        self.row(cols, w, lo - const, hi - const)

    def guarded(self, lit: _Literal | None, cols: IntArray, coefs: FloatArray, lo: float, hi: float) -> None:
        """Rows for ``lit => lo <= a.x <= hi`` (unconditional when lit is None)."""
        if lit is None:
            if math.isfinite(lo) or math.isfinite(hi):
                self.row(cols, coefs, lo, hi)
            return
        b, neg = lit
        # value(lit) = s * x_b + t
        s, t = (-1.0, 1.0) if neg else (1.0, 0.0)
        if math.isfinite(lo):
            m = self.range_of(cols, coefs, "min")
            if m < lo - _TOL:
                big = lo - m
                # a.x >= lo - big * (1 - value(lit))
                self.row(_append(cols, b), _append(coefs, -big * s), lo - big * (1.0 - t), INF)
        if math.isfinite(hi):
            m = self.range_of(cols, coefs, "max")
            if m > hi + _TOL:
                big = m - hi
                # a.x <= hi + big * (1 - value(lit))
                self.row(_append(cols, b), _append(coefs, big * s), -INF, hi + big * (1.0 - t))

    # ------------------------------------------------------------------ formulas

    def negate(self, f: Formula) -> Formula:
        if isinstance(f, Const):
            return Const(not f.value)
        if isinstance(f, Lit):
            return Lit(f.col, not f.neg)
        if isinstance(f, Not):
            return f.item
        if isinstance(f, And):
            return Or(tuple(self.negate(g) for g in f.items))
        if isinstance(f, Or):
            return And(tuple(self.negate(g) for g in f.items))
        # Atom: lo <= a.x <= hi is false when a.x < lo or a.x > hi: strict, so exact only
        # when a.x takes whole values
        whole = all(self.is_integer(c) for c in f.cols) and all(float(a).is_integer() for a in f.coefs)
        sides: list[Formula] = []
        if math.isfinite(f.lo) or math.isfinite(f.hi):
            if not whole:
                raise BackendError(
                    f"{self.where()}: the condition {self.atom_text(f)} is needed in the reverse "
                    "direction (its opposite must also be enforced), which takes a strict "
                    "inequality; HiGHS can make that exact only when the variables are integer "
                    "and the coefficients whole numbers: make them so, or state the opposite "
                    "case as its own constraint"
                )
        if math.isfinite(f.lo):
            sides.append(Atom(f.cols, f.coefs, -INF, math.ceil(f.lo - 1e-9) - 1.0))
        if math.isfinite(f.hi):
            sides.append(Atom(f.cols, f.coefs, math.floor(f.hi + 1e-9) + 1.0, INF))
        if not sides:
            return Const(False)
        return sides[0] if len(sides) == 1 else Or(tuple(sides))

    def atom_text(self, f: Atom) -> str:
        terms = " + ".join(f"{a:g}*{self.col_name(c)}" for c, a in zip(f.cols, f.coefs, strict=True))
        if f.lo == f.hi:
            return f"{terms} == {f.lo:g}"
        if not math.isfinite(f.hi):
            return f"{terms} >= {f.lo:g}"
        if not math.isfinite(f.lo):
            return f"{terms} <= {f.hi:g}"
        return f"{f.lo:g} <= {terms} <= {f.hi:g}"

    def enforce(self, lit: _Literal | None, f: Formula) -> None:
        """Rows such that ``lit`` true (or always, when lit is None) implies ``f``."""
        if isinstance(f, Const):
            if f.value:
                return
            if lit is None:
                self.row(np.zeros(0, dtype=np.int64), np.zeros(0), 1.0, INF)  # 0 >= 1: the data rules it out
            else:
                self.lit_row([lit], [1.0], -INF, 0.0)
            return
        if isinstance(f, Lit):
            if lit is None:
                self.lit_row([(f.col, f.neg)], [1.0], 1.0, INF)
            else:
                self.lit_row([lit, (f.col, f.neg)], [1.0, -1.0], -INF, 0.0)
            return
        if isinstance(f, Atom):
            cols = np.asarray(f.cols, dtype=np.int64)
            coefs = np.asarray(f.coefs, dtype=np.float64)
            self.guarded(lit, cols, coefs, f.lo, f.hi)
            return
        if isinstance(f, Not):
            self.enforce(lit, self.negate(f.item))
            return
        if isinstance(f, And):
            for g in f.items:
                self.enforce(lit, g)
            return
        # Or: one literal per item (a literal item is used as is), at least one holds
        lits: list[_Literal] = []
        for g in f.items:
            if isinstance(g, Const):
                if g.value:
                    return
                continue
            if isinstance(g, Lit):
                lits.append((g.col, g.neg))
                continue
            b = self.new_binary("or")
            self.enforce((b, False), g)
            lits.append((b, False))
        if not lits:
            self.enforce(lit, Const(False))
        elif lit is None:
            self.lit_row(lits, [1.0] * len(lits), 1.0, INF)
        else:
            self.lit_row([*lits, lit], [1.0] * len(lits) + [-1.0], 0.0, INF)

    def implied_literal(self, f: Formula) -> _Literal | bool:
        """A literal that ``f`` forces true (``f => lit``), or a bool when f is decided."""
        if isinstance(f, Const):
            return f.value
        if isinstance(f, Lit):
            return (f.col, f.neg)
        c = self.new_binary("cond")
        self.enforce((c, True), self.negate(f))  # c == 0 => not f
        return (c, False)

    def forcing_literal(self, f: Formula) -> _Literal | bool:
        """A literal that forces ``f`` (``lit => f``), or a bool when f is decided."""
        if isinstance(f, Const):
            return f.value
        if isinstance(f, Lit):
            return (f.col, f.neg)
        b = self.new_binary("opt")
        self.enforce((b, False), f)
        return (b, False)

    # ------------------------------------------------------------------ templates

    def linearize(self, index: int, con: LogicCon) -> None:
        self.con, self.con_index = con, index
        t = con.template
        d = con.data
        if t in REFUSED_TEMPLATES:
            raise BackendError(f"{self.where()}: {REFUSED_TEMPLATES[t]}")
        if t == "implication":
            cond = self.implied_literal(d["if"])
            if cond is False:
                return
            self.enforce(None if cond is True else cond, d["then"])
        elif t == "either_or":
            self.enforce(None, Or(tuple(d["options"])))
        elif t in ("at_least_k", "at_most_k", "exactly_k"):
            self.counting(t, int(d["k"]), list(d["options"]))
        elif t == "fixed_charge":
            self.fixed_charge(d["variable"], d["indicator"], float(d["upper"]))
        elif t == "semi_continuous":
            self.semi_continuous(d["variable"], float(d["lower"]), float(d["upper"]))
        elif t == "clause":
            lits: list[Lit] = list(d["literals"])
            self.enforce(None, Or(tuple(lits)))
        elif t == "precedence":
            iv = self.inst.intervals
            before, after = int(d["before"]), int(d["after"])
            lag = float(d.get("lag", 0.0))
            cols = np.array([iv.start_col[after], iv.end_col[before]], dtype=np.int64)
            self.row(cols, np.array([1.0, -1.0]), lag, INF)
        elif t == "no_overlap":
            self.no_overlap([int(i) for i in d["intervals"]])
        else:
            raise BackendError(f"{self.where()}: the template {t!r} is not known to the MILP linearizer")

    def counting(self, t: str, k: int, options: list[Formula]) -> None:
        lits: list[_Literal] = []
        fixed_true = 0
        for g in options:
            if t == "at_least_k":
                lit = self.forcing_literal(g)
            elif t == "at_most_k":
                lit = self.implied_literal(g)
            elif isinstance(g, (Const, Lit)):
                lit = g.value if isinstance(g, Const) else (g.col, g.neg)
            else:
                b = self.new_binary("opt")
                self.enforce((b, False), g)
                self.enforce((b, True), self.negate(g))
                lit = (b, False)
            if lit is True:
                fixed_true += 1
            elif lit is not False:
                lits.append(lit)
        lo = float(k - fixed_true) if t in ("at_least_k", "exactly_k") else -INF
        hi = float(k - fixed_true) if t in ("at_most_k", "exactly_k") else INF
        self.lit_row(lits, [1.0] * len(lits), lo, hi)

    def term(self, v: LinTerm) -> tuple[IntArray, FloatArray, float]:
        return np.asarray(v.cols, dtype=np.int64), np.asarray(v.coefs, dtype=np.float64), float(v.const)

    def fixed_charge(self, var: LinTerm, ind: Lit, upper: float) -> None:
        cols, coefs, const = self.term(var)
        b = ind.col
        s, t = (-1.0, 1.0) if ind.neg else (1.0, 0.0)
        if not math.isfinite(upper):
            upper = self.range_of(cols, coefs, "max") + const
        # v <= upper * value(ind)
        self.row(_append(cols, b), _append(coefs, -upper * s), -INF, upper * t - const)
        low = self.range_of(cols, coefs, "min") + const
        if low < -_TOL:
            # indicator 0 forces 0 from below too: v >= low * value(ind)
            self.row(_append(cols, b), _append(coefs, -low * s), low * t - const, INF)

    def semi_continuous(self, var: LinTerm, lower: float, upper: float) -> None:
        cols, coefs, const = self.term(var)
        if not math.isfinite(upper):
            upper = self.range_of(cols, coefs, "max") + const
        if not math.isfinite(lower):
            lower = self.range_of(cols, coefs, "min") + const
        y = self.new_binary("on")
        self.row(_append(cols, y), _append(coefs, -lower), -const, INF)  # v >= lower * y
        self.row(_append(cols, y), _append(coefs, -upper), -INF, -const)  # v <= upper * y

    def no_overlap(self, items: list[int]) -> None:
        iv = self.inst.intervals
        act = [i for i in items if iv.duration[i] > 0]  # empty intervals overlap nothing (as in CP-SAT)
        for p, i in enumerate(act):
            si, ei = int(iv.start_col[i]), int(iv.end_col[i])
            for j in act[p + 1 :]:
                sj, ej = int(iv.start_col[j]), int(iv.end_col[j])
                # big-M for "i before j" (end_i <= start_j) and "j before i"
                m1 = self.range_of(np.array([ei, sj]), np.array([1.0, -1.0]), "max")
                m2 = self.range_of(np.array([ej, si]), np.array([1.0, -1.0]), "max")
                if m1 <= _TOL or m2 <= _TOL:
                    continue  # the windows already order the pair
                z = self.new_binary("order")
                self.row(np.array([ei, sj, z]), np.array([1.0, -1.0, m1]), -INF, m1)
                self.row(np.array([ej, si, z]), np.array([1.0, -1.0, -m2]), -INF, 0.0)

    # ------------------------------------------------------------------ intervals

    def interval_rows(self) -> LogicRows | None:
        iv = self.inst.intervals
        n = iv.n
        if n == 0:
            return None
        rows = np.repeat(np.arange(n, dtype=np.int64), 2)
        cols = np.empty(2 * n, dtype=np.int64)
        cols[0::2] = iv.end_col
        cols[1::2] = iv.start_col
        coefs = np.tile(np.array([1.0, -1.0]), n)
        dur = iv.duration.astype(np.float64)
        return LogicRows(
            cid=_INTERVAL_CID,
            template="interval",
            source=None,
            n=n,
            rows=rows,
            cols=cols,
            coefs=coefs,
            lower=dur.copy(),
            upper=dur.copy(),
            keys=np.zeros((n, 0), dtype=np.int64),
            aux=True,
            names=[f"{name}.duration" for name in iv.names],
            owner=np.full(n, -1, dtype=np.int64),
        )


def linearize(inst: Instance) -> LinearForm:
    """The instance as a MILP: its rows, plus rows and binaries for each logic constraint.

    Raises ``BackendError`` for templates a MILP cannot take (all_different, cumulative),
    for a big-M that needs a bound the model does not give, and for a reverse-direction
    condition that is not whole-numbered.
    """
    lin = _Linearizer(inst)
    for i, con in enumerate(inst.logic):
        lin.linearize(i, con)
    blocks: list[RowBlock] = list(inst.row_blocks)
    ivb = lin.interval_rows()
    if ivb is not None:
        blocks.append(ivb)
    blocks.extend(s.block() for s in lin.sinks.values())
    k = len(lin.add_lower)
    cols = inst.columns
    lower = np.asarray(cols.lower, dtype=np.float64)
    upper = np.asarray(cols.upper, dtype=np.float64)
    integer = np.asarray(cols.integer, dtype=np.bool_)
    if k:
        lower = np.concatenate([lower, np.asarray(lin.add_lower, dtype=np.float64)])
        upper = np.concatenate([upper, np.asarray(lin.add_upper, dtype=np.float64)])
        integer = np.concatenate([integer, np.ones(k, dtype=np.bool_)])
    return LinearForm(
        instance=inst,
        lower=lower,  # the instance's own arrays when nothing is added: treat as read-only
        upper=upper,
        integer=integer,
        blocks=blocks,
        objective=inst.objective,
        n_model=cols.n,
        added_names=lin.add_names,
        bigm_bounds={i: sorted(c) for i, c in lin.deps.items() if c},
    )
