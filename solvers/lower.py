"""Lowering: a contract model becomes a ground ``Instance`` (see ``solvers.ir``).

This module owns the meaning of the expression language. Expressions are evaluated in
batches: a ``for_each`` or a ``sum(... for ...)`` becomes a table of bindings (one numpy
column per loop name, one row per combination), and every sub-expression is evaluated
once for all rows. A linear expression over n rows is a set of (row, column, coefficient)
arrays, so a constraint with a million terms costs a few numpy calls, not a million
Python steps. Errors name the constraint id, the position in the expression, the culprit
and the fix; ``lower(model, collect=True)`` gathers them all instead of stopping at the
first (that is what the static checker uses).
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import reprlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from . import expr as ex
from .errors import CheckFailed, Issue, ModelError
from .ir import (
    INF,
    MAX_INT_ELEMENT,
    STR_BASE,
    And,
    Atom,
    Aux,
    BoolArray,
    Columns,
    Const,
    FloatArray,
    Formula,
    Instance,
    IntArray,
    Interner,
    Intervals,
    LinTerm,
    Lit,
    LogicCon,
    Not,
    Objective,
    Or,
    RowBlock,
    VarBlock,
)
from .model import (
    AllDifferent,
    Clause,
    CountingConstraint,
    Cumulative,
    EitherOr,
    FixedCharge,
    Implication,
    LinearConstraint,
    Model,
    NoOverlap,
    Parameter,
    Precedence,
    RangeSet,
    SemiContinuous,
    TableSet,
)

MAX_SET_SIZE = 50_000_000
MAX_DOMAIN_SIZE = 50_000_000
MAX_EXPANSION = 50_000_000
MAX_COLUMNS = 20_000_000

_I64 = np.int64
_F64 = np.float64
# Shared empty arrays (an expression without variables has no terms; nothing can change
# an array without elements)
_NO_INTS = np.zeros(0, dtype=_I64)
_NO_FLOATS = np.zeros(0, dtype=_F64)


def _issue(
    code: str, message: str, where: str = "", fix: str = "", culprit: str = "", position: int | None = None
) -> ModelError:
    return ModelError(
        Issue(code=code, message=message, where=where, culprit=culprit, fix=fix, position=position)
    )


# ======================================================================= sets and indexing


class SetData:
    """A set's elements as codes, with a vectorized position lookup."""

    def __init__(self, name: str, codes: IntArray, is_range: bool = False) -> None:
        self.name = name
        self.codes = codes  # (n, arity)
        self.arity = int(codes.shape[1])
        self.size = int(codes.shape[0])
        self.is_range = is_range
        self.lo = int(codes[0, 0]) if is_range and self.size else 0
        self._lookup: tuple[list[IntArray], IntArray, IntArray] | None = None
        self._table: tuple[int, IntArray] | bool | None = None

    def _prepare(self) -> tuple[list[IntArray], IntArray, IntArray]:
        if self._lookup is None:
            uniq = [np.unique(self.codes[:, k]) for k in range(self.arity)]
            keys = np.zeros(self.size, dtype=_I64)
            for k in range(self.arity):
                keys = keys * len(uniq[k]) + np.searchsorted(uniq[k], self.codes[:, k])
            order = np.argsort(keys, kind="stable")
            self._lookup = (uniq, keys[order], order.astype(_I64))
        return self._lookup

    def _direct_table(self) -> tuple[int, IntArray] | None:
        """code - lo -> position, when the codes are compact (strings interned together)."""
        if self._table is None:
            c = self.codes[:, 0]
            lo, hi = int(c.min()), int(c.max())
            if hi - lo < 4 * self.size + 1024:
                tab = np.full(hi - lo + 1, -1, dtype=_I64)
                tab[c - lo] = np.arange(self.size, dtype=_I64)
                self._table = (lo, tab)
            else:
                self._table = False
        return self._table if isinstance(self._table, tuple) else None

    def positions(self, comps: Sequence[IntArray]) -> IntArray:
        """Position of each (component...) tuple in the set, -1 when it is not a member."""
        if self.is_range:
            q = comps[0]
            pos = q - self.lo
            return np.where((pos >= 0) & (pos < self.size), pos, -1).astype(_I64)
        n = len(comps[0])
        if self.arity == 1:
            table = self._direct_table()
            if table is not None:
                lo, tab = table
                q = comps[0] - lo
                if n and q.min() >= 0 and q.max() < len(tab):
                    return tab[q]
                inside = (q >= 0) & (q < len(tab))
                return np.where(inside, tab[np.where(inside, q, 0)], -1).astype(_I64)
        uniq, skeys, order = self._prepare()
        keys = np.zeros(n, dtype=_I64)
        ok = np.ones(n, dtype=bool)
        for k in range(self.arity):
            u = uniq[k]
            if len(u) == 0:
                return np.full(n, -1, dtype=_I64)
            r = np.searchsorted(u, comps[k])
            rc = np.minimum(r, len(u) - 1)
            ok &= u[rc] == comps[k]
            keys = keys * len(u) + rc
        if len(skeys) == 0:
            return np.full(n, -1, dtype=_I64)
        i = np.minimum(np.searchsorted(skeys, keys), len(skeys) - 1)
        ok &= skeys[i] == keys
        return np.where(ok, order[i], -1).astype(_I64)

    def label_codes(self, interner: Interner) -> list[dict[str, int]]:
        """Per component: the text of each element (as JSON keys write it) -> code."""
        out: list[dict[str, int]] = []
        for k in range(self.arity):
            out.append({interner.label(int(c)): int(c) for c in np.unique(self.codes[:, k])})
        return out


class Indexer:
    """The cross product of index sets, in row-major order, with vectorized lookup."""

    def __init__(self, sets: list[SetData]) -> None:
        self.sets = sets
        self.arity = sum(s.arity for s in sets)
        size = 1
        for s in sets:
            size *= s.size
        self.size = size
        strides = []
        acc = 1
        for s in reversed(sets):
            strides.append(acc)
            acc *= s.size
        self.strides = list(reversed(strides))

    def positions(self, comps: Sequence[IntArray]) -> tuple[IntArray, int]:
        """Positions (-1 where missing) and, on a miss, the index of the offending set."""
        n = len(comps[0]) if comps else 1
        pos = np.zeros(n, dtype=_I64)
        bad_set = -1
        k = 0
        missing: BoolArray | None = None
        for i, s in enumerate(self.sets):
            p = s.positions(comps[k : k + s.arity])
            k += s.arity
            if n and p.min() < 0:
                miss = p < 0
                if bad_set < 0:
                    bad_set = i
                missing = miss if missing is None else (missing | miss)
                p = np.where(miss, 0, p)
            if self.strides[i] == 1:
                pos += p
            else:
                pos += p * self.strides[i]
        if missing is not None:
            pos[missing] = -1
        return pos, bad_set

    def keys(self) -> IntArray:
        """Element codes of every position: shape (size, arity)."""
        if not self.sets:
            return np.zeros((1, 0), dtype=_I64)
        # written in place through a grid view (one axis per set): no repeat/tile temporaries
        out = np.empty((self.size, self.arity), dtype=_I64)
        grid = out.reshape(*(s.size for s in self.sets), self.arity)
        j = 0
        for i, s in enumerate(self.sets):
            shape = [s.size if a == i else 1 for a in range(len(self.sets))]
            for k in range(s.arity):
                grid[..., j] = s.codes[:, k].reshape(shape)
                j += 1
        return out


# ======================================================================= batched values


class _Loop:
    """One loop of an ``Env``: the names it binds, the set it runs over, and where its
    positions (in that set) come from: the grid axis it runs along, and for axis 0 (the
    listed rows) the positions themselves."""

    __slots__ = ("axis", "names", "pos", "set")

    def __init__(self, s: SetData, names: tuple[str, ...], axis: int, pos: IntArray | None) -> None:
        self.set = s
        self.names = names
        self.axis = axis
        self.pos = pos  # one per listed row when axis == 0; None: 0, 1, 2, ... along the axis


class Env:
    """A table of loop bindings: one row per combination.

    The rows form a grid, row-major: ``shape[0]`` listed rows (what a condition kept, with
    each loop's positions stored per row) times one axis per loop added since, whose
    positions are implicit (0, 1, ... along the axis). ``x[s, d]`` over ``for s in S for d
    in D`` is then column ``offset + arange(n)`` with no lookup and no per-row array at
    all; the per-row arrays (element codes, positions) are made only when something asks
    for them, since at a million rows each one costs milliseconds.
    """

    __slots__ = ("_cols", "loops", "n", "order", "sets", "shape")

    def __init__(
        self, n: int = 1, loops: list[_Loop] | None = None, shape: tuple[int, ...] | None = None
    ) -> None:
        self.shape = (n,) if shape is None else shape
        self.n = math.prod(self.shape)
        self.loops: list[_Loop] = loops or []
        self.sets: dict[str, SetData] = {}  # loop name -> the set it runs over
        self.order: list[str] = []  # loop names in binding order
        for lp in self.loops:
            for t in lp.names:
                self.sets[t] = lp.set
                self.order.append(t)
        self._cols: dict[str, IntArray] = {}

    def extend(self, s: SetData, names: tuple[str, ...]) -> Env:
        """Every row combined with every element of ``s`` (a new, innermost grid axis)."""
        shape = (*self.shape, s.size)
        return Env(loops=[*self.loops, _Loop(s, names, len(self.shape), None)], shape=shape)

    def take(self, idx: IntArray) -> Env:
        """The rows ``idx`` (in that order), as listed rows."""
        return Env(
            loops=[_Loop(lp.set, lp.names, 0, self._positions_at(lp, idx)) for lp in self.loops],
            shape=(len(idx),),
        )

    def _inner(self, axis: int) -> int:
        return math.prod(self.shape[axis + 1 :])

    def _axis_positions(self, lp: _Loop) -> IntArray:
        """The loop's positions along its own axis (one per grid index on that axis)."""
        return lp.pos if lp.pos is not None else np.arange(self.shape[lp.axis], dtype=_I64)

    def _positions_at(self, lp: _Loop, idx: IntArray) -> IntArray:
        """The loop's positions at the rows ``idx``, computed from the row numbers."""
        inner = self._inner(lp.axis)
        along = idx // inner if inner != 1 else idx
        if lp.pos is not None:
            return lp.pos[along]
        return along % self.shape[lp.axis] if lp.axis else along

    def spread(self, vec: IntArray, axis: int) -> IntArray:
        """Per row, ``vec`` at the row's index along ``axis`` (one array of n)."""
        view = vec.reshape([len(vec) if a == axis else 1 for a in range(len(self.shape))])
        out = np.empty(self.shape, dtype=vec.dtype)
        out[...] = view
        return out.reshape(-1)

    def col(self, name: str) -> IntArray:
        """The element codes bound to ``name``, one per row."""
        got = self._cols.get(name)
        if got is None:
            for lp in self.loops:
                if name in lp.names:
                    codes = lp.set.codes[:, lp.names.index(name)]
                    got = self._cols[name] = self.spread(codes[self._axis_positions(lp)], lp.axis)
                    break
            else:
                raise KeyError(name)
        return got

    def keys(self) -> IntArray:
        """The codes of every loop name, in binding order: shape (n, names)."""
        out = np.empty((self.n, len(self.order)), dtype=_I64)
        for j, name in enumerate(self.order):
            out[:, j] = self.col(name)
        return out

    def known_loop(self, args: Sequence[ex.Node], s: SetData) -> _Loop | None:
        """The loop over ``s`` when ``args`` are exactly the names it bound."""
        names = tuple(a.id if isinstance(a, ex.Name) else "" for a in args)
        for lp in self.loops:
            if lp.set is s and lp.names == names:
                return lp
        return None

    def combine(self, terms: list[tuple[_Loop, int]], base: int) -> IntArray | int:
        """``base + sum(stride * position)`` over (loop, stride) terms, per row.

        An int ``start`` means rows map to ``start, start + 1, ...``: the terms are the grid
        axes in order with row-major strides (``x[s, d] for s in S for d in D``), so a
        parameter is a slice and a variable a range, with no per-row array at all.
        """
        shape = self.shape
        start = base
        wide: dict[int, list[tuple[_Loop, int]]] = {}
        for lp, stride in terms:
            if shape[lp.axis] == 1:  # a single index along this axis: a constant
                if lp.pos is not None:
                    start += stride * int(lp.pos[0])
            else:
                wide.setdefault(lp.axis, []).append((lp, stride))
        contiguous = True
        inner = 1
        for axis in range(len(shape) - 1, -1, -1):
            if shape[axis] != 1:
                got = wide.get(axis)
                if axis == 0 or got is None or len(got) != 1 or got[0][1] != inner:
                    contiguous = False
                    break
            inner *= shape[axis]
        if contiguous:
            return start
        if not wide:
            return np.full(self.n, start, dtype=_I64)
        # sum one vector per axis by broadcasting: only the last addition is full size
        acc: IntArray | None = None
        for axis in sorted(wide, key=lambda a: shape[a]):
            vec: IntArray | None = None
            for lp, stride in wide[axis]:
                part = stride * self._axis_positions(lp)
                vec = part if vec is None else vec + part
            assert vec is not None
            view = vec.reshape([shape[axis] if b == axis else 1 for b in range(len(shape))])
            acc = view + start if acc is None else acc + view
        assert acc is not None
        if acc.shape != shape:
            full = np.empty(shape, dtype=_I64)
            full[...] = acc
            acc = full
        return acc.reshape(-1)


@dataclass
class Elems:
    codes: IntArray


@dataclass
class Nums:
    v: FloatArray


class Lin:
    """n batched linear expressions: row i is ``const[i] + sum(v[t] * x[c[t]])`` over the
    terms t with ``r[t] == i``.

    The common shapes stay implicit, because at a million terms every array made costs
    milliseconds (and page faults in a fresh process):

    - ``r`` None: the terms are grouped by row, ``per_row`` each (term t is in row
      t // per_row): ``x[i]`` has one term per row, ``sum(x[i, j] for j in J)`` len(J);
    - ``v`` None: every coefficient is 1;
    - ``const`` None: every constant is 0.0, or with ``zero_times`` s, 0.0 * s (what
      scaling a zero constant by s gives: a signed zero, NaN where s is not finite).

    Reading ``r``, ``v`` or ``const`` makes the array (once); arrays are never changed in
    place, so several values may share one.
    """

    __slots__ = ("_const", "_r", "_v", "c", "n", "per_row", "zero_times")

    def __init__(
        self,
        const: FloatArray | None,
        r: IntArray | None,
        c: IntArray,
        v: FloatArray | None,
        *,
        n: int | None = None,
        per_row: int = 1,
        zero_times: FloatArray | None = None,
    ) -> None:
        self._const = const
        self._r = r
        self.c = c
        self._v = v
        self.n = int(const.shape[0]) if const is not None else int(n if n is not None else 0)
        self.per_row = per_row
        self.zero_times = zero_times if const is None else None

    @property
    def const(self) -> FloatArray:
        if self._const is None:
            z = np.zeros(self.n)
            self._const = z if self.zero_times is None else z * self.zero_times
            self.zero_times = None
        return self._const

    @property
    def r(self) -> IntArray:
        if self._r is None:
            rows = np.arange(self.n, dtype=_I64)
            self._r = rows if self.per_row == 1 else rows.repeat(self.per_row)
        return self._r

    @property
    def v(self) -> FloatArray:
        if self._v is None:
            self._v = np.ones(self.c.shape[0])
        return self._v

    @property
    def zero(self) -> bool:
        """Every constant is exactly +0.0 (nothing made yet)."""
        return self._const is None and self.zero_times is None

    def coefs_finite(self) -> bool:
        return self._v is None or _all_finite(self._v)


@dataclass
class Quad:
    lin: Lin
    r: IntArray
    c1: IntArray
    c2: IntArray
    v: FloatArray


@dataclass
class Bools:
    mask: BoolArray


@dataclass
class IntervalRef:
    ids: IntArray


@dataclass
class SetRef:
    set: SetData


Value = Union[Elems, Nums, Lin, Quad, Bools, IntervalRef, SetRef]


# Batched formulas (logic templates): split per row into ir.Formula at the end.
@dataclass
class BAtom:
    lin: Lin
    lo: FloatArray
    hi: FloatArray


@dataclass
class BNode:
    op: str  # and | or | not
    items: list[BForm]


@dataclass
class BConst:
    mask: BoolArray


BForm = Union[BAtom, BNode, BConst]


def _all_finite(a: FloatArray) -> bool:
    """No inf and no NaN. On large arrays min and max (which propagate NaN) beat isfinite,
    which makes a temporary array; on small ones one call beats two."""
    if a.shape[0] < 4096:
        return bool(np.isfinite(a).all())
    return math.isfinite(a.min()) and math.isfinite(a.max())


def _whole(lin: Lin) -> bool:
    """Every coefficient is a whole number (all ones, when they were never made)."""
    return lin._v is None or bool(np.all(lin._v == np.round(lin._v)))


def _parent_array(parent: IntArray | int, n: int) -> IntArray:
    """The parent row of each sub-row; an int K stands for rows 0..n-1 repeated K times."""
    if isinstance(parent, int):
        return np.arange(n, dtype=_I64).repeat(parent)
    return parent


def _as_lin(x: Value, n: int) -> Lin:
    if isinstance(x, Lin):
        return x
    if isinstance(x, Nums):
        const = x.v if x.v.shape == (n,) and x.v.dtype == _F64 else np.broadcast_to(x.v, (n,)).astype(_F64)
        return Lin(const, _NO_INTS, _NO_INTS, _NO_FLOATS)
    raise TypeError(type(x).__name__)


def _lin_add(a: Lin, b: Lin, sign: float = 1.0) -> Lin:
    """``a + sign * b``; terms of a side without any are not copied."""
    # the constants are a.const + sign * b.const, skipped only where no value can change
    zero_times = None
    const: FloatArray | None
    if a.zero and b.zero:
        const = None  # 0.0 + 0.0 and 0.0 - 0.0 are both 0.0
    elif b.zero and sign < 0:
        const, zero_times = a._const, a.zero_times  # x - 0.0 is x, even for a signed zero
    else:
        const = a.const + sign * b.const
    if not b.c.shape[0]:
        return Lin(const, a._r, a.c, a._v, n=a.n, per_row=a.per_row, zero_times=zero_times)
    if not a.c.shape[0]:
        if sign == 1.0:
            v = b._v  # 1.0 * v is v
        else:
            v = np.full(b.c.shape[0], sign) if b._v is None else sign * b._v
        return Lin(const, b._r, b.c, v, n=a.n, per_row=b.per_row, zero_times=zero_times)
    return Lin(
        const,
        np.concatenate([a.r, b.r]),
        np.concatenate([a.c, b.c]),
        np.concatenate([a.v, sign * b.v]),
        n=a.n,
        zero_times=zero_times,
    )


def _lin_scale(a: Lin, s: FloatArray) -> Lin:
    """Row i times s[i]."""
    if a._r is None:
        per_term = s if a.per_row == 1 else s.repeat(a.per_row)
    else:
        per_term = s[a._r]
    v = per_term if a._v is None else a._v * per_term  # 1.0 * s is s: no product to make
    if a.zero:
        return Lin(None, a._r, a.c, v, n=a.n, per_row=a.per_row, zero_times=s)
    return Lin(a.const * s, a._r, a.c, v, n=a.n, per_row=a.per_row)


def _quad_of(x: Value, n: int) -> Quad:
    if isinstance(x, Quad):
        return x
    return Quad(_as_lin(x, n), _NO_INTS, _NO_INTS, _NO_INTS, _NO_FLOATS)


class _RowSplitter:
    """Terms of a batched Lin grouped by row, for per-row extraction."""

    def __init__(self, lin: Lin) -> None:
        if lin._r is None:  # already grouped by row
            c, v = lin.c, lin.v
            starts = np.arange(0, lin.n * lin.per_row + 1, lin.per_row)
        else:
            order = np.argsort(lin.r, kind="stable")
            c, v = lin.c[order], lin.v[order]
            starts = np.searchsorted(lin.r[order], np.arange(lin.n + 1))
        # rows are read one by one from Python: lists, not a numpy slice per row
        self.c: list[int] = c.tolist()
        self.v: list[float] = v.tolist()
        self.starts: list[int] = starts.tolist()
        self.const: list[float] = lin.const.tolist()

    def row(self, i: int) -> tuple[tuple[int, ...], tuple[float, ...], float]:
        a, b = self.starts[i], self.starts[i + 1]
        cols: dict[int, float] = {}
        for c, v in zip(self.c[a:b], self.v[a:b], strict=True):
            cols[c] = cols.get(c, 0.0) + v
        items = [(c, v) for c, v in cols.items() if v != 0.0]
        return tuple(c for c, _ in items), tuple(v for _, v in items), self.const[i]


# ======================================================================= the lowering


@dataclass
class _Var:
    name: str
    domain: str
    indexer: Indexer
    offset: int  # first column (for intervals: first interval id)
    block: VarBlock | None = None


class Lowering:
    """Holds the symbol tables of one model while it is lowered."""

    def __init__(self, model: Model, collect: bool = False) -> None:
        self.model = model
        self.collect = collect
        self.issues: list[Issue] = []
        self.interner = Interner()
        self.tables: dict[str, dict[str, list[Any]]] = {}
        self.sets: dict[str, SetData] = {}
        self.params: dict[str, tuple[Indexer, FloatArray]] = {}
        self.nan_free: set[str] = set()  # parameters known to have every value (no NaN)
        self.vars: dict[str, _Var] = {}
        self.lower_parts: list[FloatArray] = []
        self.upper_parts: list[FloatArray] = []
        self.int_parts: list[BoolArray] = []
        self._joined: tuple[FloatArray, FloatArray, BoolArray] | None = None  # see column_arrays
        self.blocks: list[VarBlock] = []
        self.ncols = 0
        self.row_blocks: list[RowBlock] = []
        self.logic: list[LogicCon] = []
        self.aux: list[Aux] = []
        self.iv_start: list[IntArray] = []
        self.iv_end: list[IntArray] = []
        self.iv_dur: list[FloatArray] = []
        self.iv_names: list[str] = []
        self.n_intervals = 0
        # per interval block: first column, count, start window, end window (n x 2), durations
        self.iv_bounds: list[tuple[int, int, FloatArray | None, FloatArray | None, FloatArray]] = []
        self.lags: list[float] = []
        # per-expression context
        self.where = ""
        self.text = ""
        self.allow_quad = False
        self.aux_here: list[Aux] = []
        self.aux_rows: list[tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray]] = []

    # ------------------------------------------------------------------ errors

    def fail(
        self, message: str, node: ex.Node | ex.Loop | None = None, fix: str = "", code: str = "expression"
    ) -> ModelError:
        pos = None if node is None else node.pos
        culprit = ""
        if pos is not None and 0 <= pos < len(self.text):
            culprit = self.text[pos : pos + 30]
        return _issue(code, message, self.where, fix, culprit, pos)

    def _guard(self, fn: Callable[[], None]) -> None:
        if not self.collect:
            fn()
            return
        try:
            fn()
        except CheckFailed as e:
            self.issues.extend(e.issues)
        except ModelError as e:
            self.issues.append(e.issue)

    def suggest(
        self,
        name: str,
        pool: Iterator[str] | list[str],
        otherwise: str = "declare it in sets, parameters or variables",
    ) -> str:
        close = difflib.get_close_matches(name, list(pool), n=1)
        return f"did you mean {close[0]!r}?" if close else otherwise

    # ------------------------------------------------------------------ tables

    def load_tables(self) -> None:
        for name, t in self.model.tables.items():
            self.where = f"table {name}"
            if t.columns is not None:
                self.tables[name] = {k: list(v) for k, v in t.columns.items()}
            elif t.records is not None:
                keys: list[str] = []
                for rec in t.records:
                    for k in rec:
                        if k not in keys:
                            keys.append(k)
                self.tables[name] = {k: [rec.get(k) for rec in t.records] for k in keys}
            else:
                self.tables[name] = _read_csv(t.csv or "", name)

    def table_column(self, table: str, column: str) -> list[Any]:
        if table not in self.tables:
            raise _issue(
                "unknown-table",
                f"table {table!r} is not in 'tables'",
                self.where,
                self.suggest(table, list(self.tables), "add it to 'tables'"),
            )
        cols = self.tables[table]
        if column not in cols:
            raise _issue(
                "unknown-column",
                f"table {table!r} has no column {column!r}",
                self.where,
                "its columns are: " + ", ".join(cols),
            )
        return cols[column]

    # ------------------------------------------------------------------ sets

    def element_code(self, v: Any) -> int:
        if type(v) is str:  # the common case first
            return self.interner.code(v)
        if isinstance(v, bool):
            raise ValueError("true/false is not a set element")
        if isinstance(v, float):
            if not v.is_integer():
                raise ValueError(f"{v} is not a whole number or a name")
            v = int(v)
        if isinstance(v, int):
            if abs(v) >= MAX_INT_ELEMENT:
                raise ValueError(f"{str(v)[:20]}... is too large for a set element")
            return v
        if isinstance(v, str):
            return self.interner.code(v)
        raise ValueError(f"{v!r} is not a set element")

    def load_sets(self) -> None:
        for name, sd in self.model.sets.items():
            self.where = f"set {name}"
            self._guard(lambda name=name, sd=sd: self._load_set(name, sd))  # type: ignore[misc]

    def _load_set(self, name: str, sd: Any) -> None:
        if isinstance(sd, RangeSet):
            lo, hi = sd.range
            if hi - lo + 1 > MAX_SET_SIZE:
                raise _issue(
                    "too-large", f"range {lo}..{hi} has more than {MAX_SET_SIZE} elements", self.where
                )
            codes = np.arange(lo, hi + 1, dtype=_I64).reshape(-1, 1)
            self.sets[name] = SetData(name, codes, is_range=True)
            return
        if isinstance(sd, TableSet):
            cols = [sd.column] if sd.column is not None else list(sd.columns or [])
            data = [self.table_column(sd.table, c) for c in cols]
            rows = list(zip(*data, strict=True))
            seen: dict[tuple[Any, ...], None] = dict.fromkeys(rows)
            elems: list[Any] = [r[0] if len(cols) == 1 else list(r) for r in seen]
        else:
            elems = list(sd)
        if not elems:
            raise _issue(
                "empty-set",
                f"set {name!r} is empty",
                self.where,
                "give it at least one element, or remove what uses it",
            )
        if len(elems) > MAX_SET_SIZE:
            raise _issue("too-large", f"set {name!r} has more than {MAX_SET_SIZE} elements", self.where)
        arity = len(elems[0]) if isinstance(elems[0], list) else 1
        single: list[int] | None = None  # the codes of a set of single elements
        try:
            if arity == 1 and not isinstance(elems[0], list):
                if all(type(e) is str for e in elems):  # names, the common case: intern them
                    code = self.interner.code
                    single = [code(e) for e in elems]
                else:
                    if any(isinstance(e, list) for e in elems):
                        raise ValueError("mixes single elements and tuples")
                    single = [self.element_code(e) for e in elems]
                codes = np.array(single, dtype=_I64).reshape(-1, 1)
            else:
                if any(not isinstance(e, list) or len(e) != arity for e in elems):
                    raise ValueError(f"every tuple must have {arity} components")
                if arity == 0:
                    raise ValueError("tuples may not be empty")
                codes = np.array([[self.element_code(x) for x in e] for e in elems], dtype=_I64)
        except ValueError as e:
            raise _issue("bad-set", f"set {name!r}: {e}", self.where) from None
        s = SetData(name, codes)
        # a Python set of the codes is quicker than sorting them (np.unique) for one component
        distinct = len(set(single)) if single is not None else len(np.unique(s._prepare()[1]))
        if distinct != s.size:
            raise _issue(
                "duplicate-element",
                f"set {name!r} lists an element twice",
                self.where,
                "list each element once",
            )
        self.sets[name] = s

    def index_sets(self, index: list[str], what: str) -> Indexer:
        sets = []
        for s in index:
            if s not in self.sets:
                if s in self.model.sets:  # failed to load: already reported
                    raise CheckFailed([])
                raise _issue(
                    "unknown-set",
                    f"{what} is indexed by {s!r}, which is not a set",
                    self.where,
                    self.suggest(s, list(self.sets)),
                )
            sets.append(self.sets[s])
        ix = Indexer(sets)
        if ix.size > MAX_DOMAIN_SIZE:
            raise _issue(
                "too-large", f"{what} has {ix.size} index combinations (limit {MAX_DOMAIN_SIZE})", self.where
            )
        return ix

    # ------------------------------------------------------------------ parameters

    def load_params(self) -> None:
        for name, p in self.model.parameters.items():
            self.where = f"parameter {name}"
            self._guard(lambda name=name, p=p: self._load_param(name, p))  # type: ignore[misc]

    def _table_index(self, name: str, p: Parameter) -> list[str]:
        """The sets of a table parameter that does not name them: those read from the same columns."""
        out: list[str] = []
        for col in p.index_columns or []:
            match = [
                s
                for s, sd in self.model.sets.items()
                if isinstance(sd, TableSet) and sd.table == p.table and sd.column == col
            ]
            if not match:
                raise _issue(
                    "unknown-set",
                    f"parameter {name!r} is indexed by column {col!r} of table {p.table!r}, "
                    "but no set is read from that column",
                    self.where,
                    f'declare a set {{"table": "{p.table}", "column": "{col}"}} '
                    "or name the sets in 'index'",
                )
            out.append(match[0])
        return out

    def _load_param(self, name: str, p: Parameter) -> None:
        index = p.index if p.index or p.table is None else self._table_index(name, p)
        ix = self.index_sets(index, f"parameter {name!r}")
        default = np.nan if p.default is None else float(p.default)
        dense = self._dense_values(name, p, ix) if p.value is None and p.table is None else None
        if dense is not None:
            arr = dense
        elif p.value is not None:
            arr = np.full(ix.size, float(p.value), dtype=_F64)
        elif p.table is not None:
            arr = np.full(ix.size, default, dtype=_F64)
            cols = [self.table_column(p.table, c) for c in (p.index_columns or [])]
            vals = self.table_column(p.table, p.column or "")
            if len(cols) != ix.arity:
                raise _issue(
                    "bad-shape",
                    f"parameter {name!r} is indexed by {p.index} ({ix.arity} component(s)) but names "
                    f"{len(cols)} index_columns",
                    self.where,
                    "name one table column per index component (a set of pairs takes two)",
                )
            try:
                comps = [np.array([self.element_code(v) for v in c], dtype=_I64) for c in cols]
                fv = np.array([np.nan if v is None or v == "" else float(v) for v in vals], dtype=_F64)
            except (TypeError, ValueError, OverflowError) as e:
                raise _issue(
                    "bad-value", f"parameter {name!r}: a table value is not a number ({e})", self.where
                ) from None
            self._fill(name, ix, arr, comps, fv)
        else:
            arr = np.full(ix.size, default, dtype=_F64)
            self._fill_values(name, p, ix, arr)
        # min and max (no temporary arrays; NaN comes through both) settle the common case
        lo, hi = (float(arr.min()), float(arr.max())) if arr.shape[0] else (0.0, 0.0)
        if dense is not None and not (math.isfinite(lo) and math.isfinite(hi)):
            raise _issue(
                "bad-value", f"parameter {name!r} has a value that is not a finite number", self.where
            )
        if math.isfinite(lo) and math.isfinite(hi):
            if max(-lo, hi) > 1e15:
                raise _issue(
                    "bad-value",
                    f"parameter {name!r} has a value beyond 1e15",
                    self.where,
                    "rescale the data (e.g. thousands instead of units)",
                )
            self.nan_free.add(name)
            self.params[name] = (ix, arr)
            return
        if not np.all(np.isfinite(arr) | np.isnan(arr)):
            raise _issue("bad-value", f"parameter {name!r} has an infinite value", self.where)
        if np.any(np.abs(arr[np.isfinite(arr)]) > 1e15):
            raise _issue(
                "bad-value",
                f"parameter {name!r} has a value beyond 1e15",
                self.where,
                "rescale the data (e.g. thousands instead of units)",
            )
        self.params[name] = (ix, arr)

    def _fill(self, name: str, ix: Indexer, arr: FloatArray, comps: list[IntArray], vals: FloatArray) -> None:
        pos, bad = ix.positions(comps) if comps else (np.zeros(len(vals), dtype=_I64), -1)
        if bad >= 0:
            i = int(np.argmax(pos < 0))
            key = ",".join(self.interner.label(int(c[i])) for c in comps)
            raise _issue(
                "index-not-in-set",
                f"parameter {name!r} has a value for [{key}], which is not in set {ix.sets[bad].name!r}",
                self.where,
                f"remove it or add the element to {ix.sets[bad].name}",
            )
        if len(np.unique(pos)) != len(pos):
            raise _issue(
                "duplicate-value", f"parameter {name!r} gives a value twice for one index", self.where
            )
        arr[pos] = vals

    def _dense_values(self, name: str, p: Parameter, ix: Indexer) -> FloatArray | None:
        """Fast path: values as dense nested lists in set order, read in one numpy call."""
        values = p.values
        shape = tuple(s.size for s in ix.sets)
        if not (isinstance(values, list) and all(s.arity == 1 for s in ix.sets)):
            return None
        try:
            dense = np.asarray(values, dtype=_F64)
        except (TypeError, ValueError, OverflowError):  # ragged, text, or an int beyond float
            return None
        if dense.shape == shape:
            return dense.reshape(-1)  # _load_param checks that every value is finite
        if dense.ndim >= 1:
            raise _issue(
                "bad-shape",
                f"parameter {name!r}: values have shape {list(dense.shape)}, "
                f"but the index sets {p.index} have sizes {list(shape)}",
                self.where,
                "give one value per element, in set order, or use a dictionary keyed by element",
            )
        return None

    def _fill_values(self, name: str, p: Parameter, ix: Indexer, arr: FloatArray) -> None:
        """Values given as nested dictionaries (or lists), walked element by element."""
        values = p.values
        labels = [d for s in ix.sets for d in s.label_codes(self.interner)]
        comp_set = [s.name for s in ix.sets for _ in range(s.arity)]
        keys: list[list[int]] = []
        vals: list[float] = []

        def walk(node: Any, depth: int, prefix: list[int]) -> None:
            if depth == len(labels):
                if isinstance(node, bool) or not isinstance(node, (int, float)):
                    raise _issue(
                        "bad-value",
                        f"parameter {name!r} at [{self._plabel(prefix)}]: "
                        f"{reprlib.repr(node)[:40]} is not a number",
                        self.where,
                    )
                # JSON integers are unbounded: math.isfinite(10**400) itself would overflow
                if (isinstance(node, int) and abs(node) > 10**15) or not math.isfinite(node):
                    raise _issue(
                        "bad-value",
                        f"parameter {name!r} at [{self._plabel(prefix)}] is not finite or beyond 1e15",
                        self.where,
                    )
                keys.append(prefix)
                vals.append(float(node))
                return
            if isinstance(node, list):
                s = ix.sets[_set_of_component(ix, depth)]
                if s.arity != 1:
                    raise _issue(
                        "bad-shape",
                        f"parameter {name!r}: a list cannot index the tuple set {s.name!r}",
                        self.where,
                        "use nested dictionaries keyed by element",
                    )
                if len(node) != s.size:
                    raise _issue(
                        "bad-shape",
                        f"parameter {name!r}: a list of {len(node)} values for set "
                        f"{s.name!r} of {s.size} elements",
                        self.where,
                        "give one value per element in set order, or a dictionary",
                    )
                for k, item in enumerate(node):
                    walk(item, depth + 1, [*prefix, int(s.codes[k, 0])])
                return
            if isinstance(node, dict):
                for key, item in node.items():
                    code = labels[depth].get(str(key))
                    if code is None:
                        raise _issue(
                            "index-not-in-set",
                            f"parameter {name!r}: {str(key)[:40]!r} is not an "
                            f"element of set {comp_set[depth]!r}",
                            self.where,
                            self.suggest(
                                str(key),
                                list(labels[depth]),
                                f"remove it or add it to set {comp_set[depth]!r}",
                            ),
                        )
                    walk(item, depth + 1, [*prefix, code])
                return
            raise _issue(
                "bad-shape",
                f"parameter {name!r}: expected a dictionary or list at "
                f"[{self._plabel(prefix)}], got {type(node).__name__}",
                self.where,
                f"nest values in the order of the index {p.index}",
            )

        walk(values, 0, [])
        if not keys:
            return
        karr = np.array(keys, dtype=_I64)
        self._fill(name, ix, arr, [karr[:, k] for k in range(karr.shape[1])], np.array(vals, dtype=_F64))

    def _plabel(self, codes: list[int]) -> str:
        return ",".join(self.interner.label(c) for c in codes)

    # ------------------------------------------------------------------ variables

    def load_vars(self) -> None:
        for v in self.model.variables:
            self.where = f"variable {v.name}"
            self._guard(lambda v=v: self._load_var(v))  # type: ignore[misc]

    def _bound_array(self, bound: Any, ix: Indexer, vname: str, which: str) -> FloatArray:
        if bound is None:
            return np.full(ix.size, -INF if which == "lower" else INF)
        if isinstance(bound, str):
            if bound not in self.params:
                if bound in self.model.parameters:
                    raise CheckFailed([])
                raise _issue(
                    "unknown-symbol",
                    f"the {which} bound {bound!r} of {vname!r} is not a parameter",
                    self.where,
                    self.suggest(bound, list(self.params)),
                )
            pix, arr = self.params[bound]
            if pix.size == 1 and not pix.sets:
                return np.full(ix.size, arr[0])
            if [s.name for s in pix.sets] != [s.name for s in ix.sets]:
                raise _issue(
                    "index-mismatch",
                    f"the {which} bound {bound!r} is indexed by "
                    f"{[s.name for s in pix.sets]}, but {vname!r} by {[s.name for s in ix.sets]}",
                    self.where,
                    "use a parameter indexed like the variable",
                )
            if np.isnan(arr).any():
                raise _issue(
                    "missing-value",
                    f"the {which} bound {bound!r} of {vname!r} lacks values",
                    self.where,
                    "give a value for every index or a 'default'",
                )
            return arr.copy()
        return np.full(ix.size, float(bound))

    def _load_var(self, v: Any) -> None:
        ix = self.index_sets(v.index, f"variable {v.name!r}")
        if self.ncols + ix.size > MAX_COLUMNS:
            raise _issue("too-large", f"the model has more than {MAX_COLUMNS} variables", self.where)
        keys = ix.keys()
        if v.domain == "interval":
            dur = self._bound_array(v.duration, ix, v.name, "duration")
            if np.any(dur < 0):
                raise _issue("bad-value", f"interval {v.name!r} has a negative duration", self.where)
            n = ix.size
            offset = self.ncols
            start_col = offset + 2 * np.arange(n, dtype=_I64)
            block = VarBlock(v.name, "interval", offset, 2 * n, keys, v.description, v.source, v.unit)
            lo = np.zeros(2 * n)
            hi = np.full(2 * n, INF)
            self._add_cols(block, lo, hi, np.zeros(2 * n, dtype=bool))
            self.iv_start.append(start_col)
            self.iv_end.append(start_col + 1)
            self.iv_dur.append(dur)
            self.iv_names.extend(block.column_name(self.interner, k) for k in range(n))
            windows: list[FloatArray | None] = []
            for which, pair in (("start", v.start), ("end", v.end)):
                if pair is None:
                    windows.append(None)
                    continue
                w = np.stack([self._bound_array(b, ix, v.name, f"{which} window") for b in pair], axis=1)
                if np.any(w[:, 0] > w[:, 1]):
                    raise _issue(
                        "bad-bounds",
                        f"interval {v.name!r}: the {which} window [earliest, latest] is reversed",
                        self.where,
                        "write [earliest, latest]",
                    )
                windows.append(w)
            self.iv_bounds.append((offset, n, windows[0], windows[1], dur))
            self.vars[v.name] = _Var(v.name, "interval", ix, self.n_intervals, block)
            self.n_intervals += n
            return
        lo = self._bound_array(v.lower, ix, v.name, "lower")
        hi = self._bound_array(v.upper, ix, v.name, "upper")
        integer = v.domain in ("integer", "binary", "boolean")
        if v.domain in ("binary", "boolean"):
            lo = np.maximum(lo, 0.0)
            hi = np.minimum(hi, 1.0)
        if np.any(lo > hi):
            k = int(np.argmax(lo > hi))
            raise _issue(
                "bad-bounds",
                f"{block_label(v.name, keys, k, self.interner)} has lower bound "
                f"{lo[k]:g} above its upper bound {hi[k]:g}",
                self.where,
                "fix the bounds",
            )
        block = VarBlock(v.name, v.domain, self.ncols, ix.size, keys, v.description, v.source, v.unit)
        self.vars[v.name] = _Var(v.name, v.domain, ix, self.ncols, block)
        self._add_cols(block, lo, hi, np.full(ix.size, integer))

    def _add_cols(self, block: VarBlock, lo: FloatArray, hi: FloatArray, integer: BoolArray) -> None:
        self.blocks.append(block)
        self.lower_parts.append(lo)
        self.upper_parts.append(hi)
        self.int_parts.append(integer)
        self.ncols += int(lo.shape[0])
        self._joined = None

    def new_aux(self, n: int, kind: str) -> IntArray:
        keys = np.zeros((n, 1), dtype=_I64) + np.arange(n, dtype=_I64).reshape(-1, 1)
        block = VarBlock(f"_{kind}{len(self.aux)}", "aux", self.ncols, n, keys)
        cols = self.ncols + np.arange(n, dtype=_I64)
        self._add_cols(block, np.full(n, -INF), np.full(n, INF), np.zeros(n, dtype=bool))
        for c in cols.tolist():
            a = Aux(int(c), kind, self.where)
            self.aux.append(a)
            self.aux_here.append(a)
        return cols

    # ------------------------------------------------------------------ environments

    def env_for(self, loops: Sequence[ex.Loop], base: Env | None = None) -> tuple[Env, IntArray]:
        """Expand ``base`` by loops (with conditions); return the new env and row parents."""
        env, parent = self.expand(loops, base)
        return env, _parent_array(parent, base.n if base is not None else 1)

    def expand(self, loops: Sequence[ex.Loop], base: Env | None = None) -> tuple[Env, IntArray | int]:
        """``env_for``, with the parents as an int K while no condition has dropped a row:
        row j of the new env then comes from row j // K of ``base`` (no array needed)."""
        env = base if base is not None else Env(1)
        parent: IntArray | int = 1
        for lp in loops:
            if lp.set_name not in self.sets:
                if lp.set_name in self.model.sets:
                    raise CheckFailed([])
                what = (
                    "a parameter"
                    if lp.set_name in self.params
                    else ("a variable" if lp.set_name in self.vars else "not declared")
                )
                raise self.fail(
                    f"loops run over sets; {lp.set_name!r} is {what}",
                    lp,
                    self.suggest(lp.set_name, list(self.sets)),
                    code="unknown-set",
                )
            s = self.sets[lp.set_name]
            if len(lp.targets) != s.arity:
                if s.arity > 1:
                    fix = f"write 'for ({', '.join('ijklmn'[: s.arity])}) in {s.name}'"
                else:
                    fix = f"write 'for i in {s.name}'"
                raise self.fail(
                    f"set {s.name!r} holds {s.arity}-tuples but the loop binds {len(lp.targets)} name(s)",
                    lp,
                    fix,
                    code="arity",
                )
            for t in lp.targets:
                if t in env.sets:
                    raise self.fail(
                        f"the loop name {t!r} is already bound by an outer loop",
                        lp,
                        "use another name",
                        code="shadowing",
                    )
                if t in self.sets or t in self.params or t in self.vars:
                    raise self.fail(
                        f"the loop name {t!r} is also the name of a set, parameter or variable",
                        lp,
                        "use another loop name",
                        code="shadowing",
                    )
            m = env.n * s.size
            if m > MAX_EXPANSION:
                raise self.fail(
                    f"this expands to {m} combinations (limit {MAX_EXPANSION})",
                    lp,
                    "add conditions or split the model",
                    code="too-large",
                )
            env = env.extend(s, tuple(lp.targets))
            parent = parent * s.size if isinstance(parent, int) else parent.repeat(s.size)
            for cond in lp.conds:
                mask = self.condition(cond, env)
                keep = np.flatnonzero(mask)
                env = env.take(keep)
                parent = keep // parent if isinstance(parent, int) else parent[keep]
        return env, parent

    def condition(self, node: ex.Node, env: Env) -> BoolArray:
        v = self.ev(node, env)
        if isinstance(v, Bools):
            return v.mask
        if isinstance(v, Nums):
            return np.asarray(v.v != 0, dtype=bool)
        if isinstance(v, (Lin, Quad)):
            raise self.fail(
                "a condition may test set elements and parameters, never variables",
                node,
                "move the test on variables into a constraint (or use an implication)",
                code="condition-on-variable",
            )
        raise self.fail("this condition is not true/false", node)

    # ------------------------------------------------------------------ evaluation

    def ev(self, node: ex.Node, env: Env) -> Value:
        n = env.n
        if isinstance(node, ex.Num):
            return Nums(np.full(n, float(node.value)))
        if isinstance(node, ex.Str):
            code = self.interner.lookup(node.value)
            if code is None:
                raise self.fail(
                    f"{node.value!r} is not an element of any set",
                    node,
                    "check the spelling against the sets",
                    code="index-not-in-set",
                )
            return Elems(np.full(n, code, dtype=_I64))
        if isinstance(node, ex.Name):
            return self.ev_name(node, env)
        if isinstance(node, ex.Index):
            return self.ev_index(node, env)
        if isinstance(node, ex.Unary):
            if node.op == "not":
                return Bools(~self.condition(node.operand, env))
            x = self.ev(node.operand, env)
            return self.arith("*", Nums(np.full(n, -1.0)), x, node, n)
        if isinstance(node, ex.Bin):
            left, right = self.ev(node.left, env), self.ev(node.right, env)
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
                res = self.arith(node.op, left, right, node, n)
            if isinstance(res, (Lin, Quad)):
                if isinstance(res, Lin):
                    finite = res.coefs_finite()
                else:
                    finite = _all_finite(res.v) and res.lin.coefs_finite()
                if not finite:
                    raise self.fail(
                        "a coefficient of this expression is not finite",
                        node,
                        "rescale the data (e.g. thousands instead of units)",
                        code="bad-value",
                    )
            return res
        if isinstance(node, ex.Compare):
            return self.compare_data(node, env)
        if isinstance(node, ex.BoolOp):
            masks = [self.condition(v, env) for v in node.values]
            out = masks[0]
            for m in masks[1:]:
                out = (out & m) if node.op == "and" else (out | m)
            return Bools(out)
        if isinstance(node, ex.Call):
            return self.ev_call(node, env)
        if isinstance(node, ex.Gen):
            raise self.fail("a generator needs a function around it, as in sum(... for i in S)", node)
        if isinstance(node, ex.Tuple):
            raise self.fail("a tuple is only allowed on the left of 'in', as in (i, j) in A", node)
        raise self.fail(f"unexpected {type(node).__name__}", node)

    def ev_name(self, node: ex.Name, env: Env) -> Value:
        name = node.id
        n = env.n
        if name in env.sets:
            return Elems(env.col(name))
        if name in self.params:
            ix, arr = self.params[name]
            if ix.sets:
                raise self.fail(
                    f"parameter {name!r} is indexed by {[s.name for s in ix.sets]}: write {name}[...]",
                    node,
                    code="arity",
                )
            if np.isnan(arr[0]):
                raise self.fail(f"parameter {name!r} has no value", node, code="missing-value")
            return Nums(np.full(n, arr[0]))
        if name in self.vars:
            var = self.vars[name]
            if var.indexer.sets:
                raise self.fail(
                    f"variable {name!r} is indexed by {[s.name for s in var.indexer.sets]}: "
                    f"write {name}[...]",
                    node,
                    code="arity",
                )
            if var.domain == "interval":
                return IntervalRef(np.full(n, var.offset, dtype=_I64))
            return Lin(None, None, np.full(n, var.offset, dtype=_I64), None, n=n)
        if name in self.sets:
            return SetRef(self.sets[name])
        if name in ("inf", "infinity"):
            return Nums(np.full(n, INF))
        if (
            name in self.model.parameters
            or name in self.model.sets
            or name in {v.name for v in self.model.variables}
        ):
            raise CheckFailed([])  # its own declaration failed and was reported
        pool = list(self.params) + list(self.vars) + list(self.sets) + list(env.sets)
        raise self.fail(f"unknown name {name!r}", node, self.suggest(name, pool), code="unknown-symbol")

    def index_codes(self, node: ex.Index, env: Env) -> list[IntArray]:
        comps: list[IntArray] = []
        for a in node.args:
            v = self.ev(a, env)
            if isinstance(v, Elems):
                comps.append(v.codes)
            elif isinstance(v, Nums):
                if not np.all(np.isfinite(v.v)) or not np.all(v.v == np.round(v.v)):
                    raise self.fail("an index must be a set element or a whole number", a, code="bad-index")
                comps.append(v.v.astype(_I64))
            else:
                raise self.fail(
                    "an index must be a set element (a loop name, a quoted name or a number), "
                    "not an expression of variables",
                    a,
                    code="bad-index",
                )
        return comps

    def locate(self, node: ex.Index, env: Env, ix: Indexer, what: str, base: int = 0) -> IntArray | int:
        """``base`` + the position of each row's index in ``ix``; an int ``start`` when the
        rows map to consecutive positions (see ``Env.combine``)."""
        if len(node.args) != ix.arity:
            raise self.fail(
                f"{what} {node.name!r} takes {ix.arity} index(es) "
                f"({', '.join(s.name for s in ix.sets) or 'none'}), got {len(node.args)}",
                node,
                f"write {node.name}[{', '.join(s.name.lower() for s in ix.sets)}] with one element per index"
                if ix.sets
                else f"write {node.name} without brackets",
                code="arity",
            )
        terms: list[tuple[_Loop, int]] = []
        k = 0
        for st, stride in zip(ix.sets, ix.strides, strict=True):
            lp = env.known_loop(node.args[k : k + st.arity], st)
            if lp is None:
                break
            terms.append((lp, stride))
            k += st.arity
        else:  # every index is a loop's own names: positions without any lookup
            return env.combine(terms, base)
        comps = self.index_codes(node, env)
        pos, bad = ix.positions(comps)
        if bad >= 0:
            i = int(np.argmax(pos < 0))
            key = ",".join(self.interner.label(int(c[i])) for c in comps)
            binding = ", ".join(f"{k} = {self.interner.label(int(env.col(k)[i]))}" for k in env.order)
            s = ix.sets[bad]
            raise self.fail(
                f"{node.name}[{key}]: the index is not in set {s.name!r}"
                + (f" (when {binding})" if binding else ""),
                node,
                f"restrict the loop with a condition, or add the element to {s.name}",
                code="index-not-in-set",
            )
        return pos + base if base else pos

    def ev_index(self, node: ex.Index, env: Env) -> Value:
        name = node.name
        n = env.n
        if name in self.params:
            ix, arr = self.params[name]
            pos = self.locate(node, env, ix, "parameter")
            vals = arr[pos : pos + n] if isinstance(pos, int) else arr[pos]
            if name not in self.nan_free and np.isnan(vals).any():
                i = int(np.argmax(np.isnan(vals)))
                if isinstance(pos, int):
                    pos = np.arange(pos, pos + n, dtype=_I64)
                key = (
                    ",".join(self.interner.label(int(k)) for k in ix.keys()[pos[i]])
                    if ix.size <= 10**6
                    else "?"
                )
                raise self.fail(
                    f"parameter {name!r} has no value for [{key}]",
                    node,
                    f"add a value for [{key}] to {name}, or give {name} a 'default'",
                    code="missing-value",
                )
            return Nums(vals)
        if name in self.vars:
            var = self.vars[name]
            pos = self.locate(node, env, var.indexer, "variable", base=var.offset)
            if isinstance(pos, int):
                pos = np.arange(pos, pos + n, dtype=_I64)
            if var.domain == "interval":
                return IntervalRef(pos)
            return Lin(None, None, pos, None, n=n)
        if name in self.sets:
            raise self.fail(
                f"{name!r} is a set and cannot be indexed",
                node,
                "use 'in' to test membership: (i, j) in A",
                code="bad-index",
            )
        if name in env.sets:
            raise self.fail(f"{name!r} is a loop name and cannot be indexed", node, code="bad-index")
        if name in self.model.parameters or name in {v.name for v in self.model.variables}:
            raise CheckFailed([])
        pool = list(self.params) + list(self.vars)
        raise self.fail(f"unknown name {name!r}", node, self.suggest(name, pool), code="unknown-symbol")

    def nums_of(self, x: Value, node: ex.Node) -> Nums | None:
        if isinstance(x, Nums):
            return x
        if isinstance(x, Elems):
            if np.any(x.codes >= STR_BASE):
                i = int(np.argmax(x.codes >= STR_BASE))
                raise self.fail(
                    f"cannot do arithmetic with the element {self.interner.label(int(x.codes[i]))!r}",
                    node,
                    "arithmetic works on whole-number elements (ranges) and parameters",
                    code="type",
                )
            return Nums(x.codes.astype(_F64))
        return None

    def arith(self, op: str, a: Value, b: Value, node: ex.Node, n: int) -> Value:
        for x in (a, b):
            if isinstance(x, (Bools, IntervalRef, SetRef)):
                what = {
                    Bools: "a true/false test",
                    IntervalRef: "an interval (use start(t) or end(t))",
                    SetRef: "a set",
                }[type(x)]
                raise self.fail(f"cannot do arithmetic with {what}", node, code="type")
        na, nb = self.nums_of(a, node), self.nums_of(b, node)
        if na is not None and nb is not None:
            if op in ("/", "%") and np.any(nb.v == 0):
                raise self.fail("division by zero", node, code="division-by-zero")
            fn = {
                "+": np.add,
                "-": np.subtract,
                "*": np.multiply,
                "/": np.divide,
                "**": np.power,
                "%": np.mod,
            }[op]
            with np.errstate(all="ignore"):
                r = fn(na.v, nb.v)
            # 'inf' may be written on purpose; a finite input that overflows (or nan) may not
            if np.any(~np.isfinite(r) & np.isfinite(na.v) & np.isfinite(nb.v)) or np.isnan(r).any():
                raise self.fail(
                    f"the {'power' if op == '**' else 'arithmetic'} gives a number that is not finite",
                    node,
                    "rescale the data (e.g. thousands instead of units)",
                    code="bad-value",
                )
            return Nums(r)
        va: Value = na if na is not None else a
        vb: Value = nb if nb is not None else b
        if op in ("+", "-"):
            sign = 1.0 if op == "+" else -1.0
            if isinstance(va, Quad) or isinstance(vb, Quad):
                qa, qb = _quad_of(va, n), _quad_of(vb, n)
                return Quad(
                    _lin_add(qa.lin, qb.lin, sign),
                    np.concatenate([qa.r, qb.r]),
                    np.concatenate([qa.c1, qb.c1]),
                    np.concatenate([qa.c2, qb.c2]),
                    np.concatenate([qa.v, sign * qb.v]),
                )
            return _lin_add(_as_lin(va, n), _as_lin(vb, n), sign)
        if op == "*":
            if isinstance(va, Nums) or isinstance(vb, Nums):
                s, other = (va, vb) if isinstance(va, Nums) else (vb, va)
                assert isinstance(s, Nums)
                if isinstance(other, Lin):
                    return _lin_scale(other, s.v)
                if isinstance(other, Quad):
                    return Quad(
                        _lin_scale(other.lin, s.v), other.r, other.c1, other.c2, other.v * s.v[other.r]
                    )
            if isinstance(va, Lin) and isinstance(vb, Lin):
                if not self.allow_quad:
                    raise self.fail(
                        "product of two expressions with variables: this is nonlinear",
                        node,
                        "constraints must be linear: multiply variables only by data, or model "
                        "the product with a binary variable and a fixed_charge/implication",
                        code="nonlinear",
                    )
                return self.lin_product(va, vb)
            raise self.fail("this product is of degree above two", node, code="nonlinear")
        if op == "/":
            if isinstance(vb, Nums):
                if np.any(vb.v == 0):
                    raise self.fail("division by zero", node, code="division-by-zero")
                inv = 1.0 / vb.v
                if isinstance(va, Lin):
                    return _lin_scale(va, inv)
                if isinstance(va, Quad):
                    return Quad(_lin_scale(va.lin, inv), va.r, va.c1, va.c2, va.v * inv[va.r])
            raise self.fail(
                "division by an expression with variables",
                node,
                "multiply both sides by the divisor instead (e.g. x / y <= 2 becomes x <= 2 * y)",
                code="division-by-variable",
            )
        if op == "**":
            if isinstance(vb, Nums) and np.all(vb.v == vb.v[0]) and vb.v[0] in (0.0, 1.0, 2.0):
                e = vb.v[0]
                if e == 0.0:
                    return Nums(np.ones(n))
                if e == 1.0:
                    return va
                if isinstance(va, Lin):
                    return self.arith("*", va, va, node, n)
            raise self.fail(
                "only the powers 0, 1 and 2 of an expression with variables are allowed",
                node,
                "constraints must be linear; only the objective may square a linear expression (** 2)",
                code="nonlinear",
            )
        if op == "%":
            raise self.fail(
                "modulo (%) works on data only (set elements and parameters), not on variables",
                node,
                "use it in indices and conditions, e.g. x[(t % 7) + 1]",
                code="nonlinear",
            )
        raise self.fail(f"unsupported operator {op}", node)

    def lin_product(self, a: Lin, b: Lin) -> Quad:
        n = a.n
        # (ca + sum a_i x_i)(cb + sum b_j x_j): cross terms row by row.
        lin = _lin_add(_lin_scale(a, b.const), _lin_scale(b, a.const))
        lin = Lin(a.const * b.const, lin.r, lin.c, lin.v)
        ra, rb = _RowSplitter(a), _RowSplitter(b)
        r1: list[int] = []
        c1: list[int] = []
        c2: list[int] = []
        vv: list[float] = []
        for i in range(n):
            ca, va, _ = ra.row(i)
            cb, vb, _ = rb.row(i)
            for x, u in zip(ca, va, strict=True):
                for y, w in zip(cb, vb, strict=True):
                    r1.append(i)
                    c1.append(x)
                    c2.append(y)
                    vv.append(u * w)
        return Quad(
            lin,
            np.array(r1, dtype=_I64),
            np.array(c1, dtype=_I64),
            np.array(c2, dtype=_I64),
            np.array(vv, dtype=_F64),
        )

    def compare_data(self, node: ex.Compare, env: Env) -> Value:
        out = np.ones(env.n, dtype=bool)
        # A tuple operand only makes sense left of 'in', where membership evaluates its items.
        vals: list[Value | None] = [
            None if isinstance(x, ex.Tuple) else self.ev(x, env) for x in node.operands
        ]
        for k, op in enumerate(node.ops):
            a, b = vals[k], vals[k + 1]
            if op in ("in", "not in") and b is not None:
                m = self.membership(node.operands[k], a, b, env, node)
                out &= m if op == "in" else ~m
                continue
            if a is None or b is None:
                raise self.fail(
                    "a tuple is only allowed on the left of 'in', as in (i, j) in A", node, code="type"
                )
            if isinstance(a, (Lin, Quad)) or isinstance(b, (Lin, Quad)):
                raise self.fail(
                    "this comparison involves variables; here only data may be compared",
                    node,
                    "write constraints as separate entries",
                    code="condition-on-variable",
                )
            if isinstance(a, Elems) and isinstance(b, Elems):
                x, y = a.codes, b.codes
            else:
                na, nb = self.nums_of(a, node), self.nums_of(b, node)
                if na is None or nb is None:
                    raise self.fail("cannot compare these", node, code="type")
                x, y = na.v, nb.v  # type: ignore[assignment]
            with np.errstate(invalid="ignore"):
                m = {"<=": x <= y, ">=": x >= y, "==": x == y, "<": x < y, ">": x > y, "!=": x != y}[op]
            out &= m
        return Bools(out)

    def membership(self, left: ex.Node, a: Value | None, b: Value, env: Env, node: ex.Node) -> BoolArray:
        if not isinstance(b, SetRef):
            raise self.fail("the right side of 'in' must be a set", node, code="type")
        s = b.set
        items = left.items if isinstance(left, ex.Tuple) else (left,)
        if len(items) != s.arity:
            raise self.fail(
                f"set {s.name!r} holds {s.arity}-tuples; the test gives {len(items)} value(s)",
                node,
                code="arity",
            )
        comps = []
        for it in items:
            v = self.ev(it, env)
            if isinstance(v, Elems):
                comps.append(v.codes)
            elif isinstance(v, Nums):
                comps.append(v.v.astype(_I64))
            else:
                raise self.fail("'in' tests set elements", it, code="type")
        return s.positions(comps) >= 0

    # ------------------------------------------------------------------ calls

    def ev_call(self, node: ex.Call, env: Env) -> Value:
        f = node.func
        n = env.n
        if f == "sum":
            gen = node.args[0]
            assert isinstance(gen, ex.Gen)
            sub, parent = self.expand(gen.loops, env)
            body = self.ev(gen.elt, sub)
            return self.aggregate(body, parent, n, gen.elt)
        if f in ("min", "max"):
            return self.minmax(node, env)
        if f == "abs":
            x = self.ev(node.args[0], env)
            nx = self.nums_of(x, node)
            if nx is not None:
                return Nums(np.abs(nx.v))
            if isinstance(x, Lin):
                neg = _lin_scale(x, np.full(n, -1.0))
                return self.aux_bound(
                    "max", [(x, np.arange(n, dtype=_I64)), (neg, np.arange(n, dtype=_I64))], n
                )
            raise self.fail("abs() takes a number or a linear expression", node, code="type")
        if f in ("start", "end"):
            x = self.ev(node.args[0], env)
            if not isinstance(x, IntervalRef):
                raise self.fail(
                    f"{f}() takes an interval variable",
                    node.args[0],
                    "declare the variable with domain 'interval'",
                    code="type",
                )
            cols = self.interval_cols(x.ids, f)
            return Lin(None, None, cols, None, n=n)
        if f == "ord":
            a = node.args[0]
            if isinstance(a, ex.Name) and a.id in env.sets:
                s = env.sets[a.id]
                if s.arity != 1:
                    raise self.fail("ord() takes an element of a set of single elements", a, code="type")
                pos = s.positions([env.col(a.id)])
                return Nums(pos.astype(_F64) + 1.0)
            raise self.fail("ord() takes a loop name, as in ord(t) for t in T", a, code="type")
        if f in ("first", "last", "len"):
            a = node.args[0]
            if not (isinstance(a, ex.Name) and a.id in self.sets):
                raise self.fail(f"{f}() takes the name of a set", a, code="type")
            s = self.sets[a.id]
            if f == "len":
                return Nums(np.full(n, float(s.size)))
            if s.arity != 1:
                raise self.fail(f"{f}() needs a set of single elements", a, code="type")
            return Elems(np.full(n, s.codes[0 if f == "first" else -1, 0], dtype=_I64))
        raise self.fail(f"unknown function {f}", node)

    def interval_cols(self, ids: IntArray, which: str) -> IntArray:
        starts = np.concatenate(self.iv_start) if self.iv_start else np.zeros(0, dtype=_I64)
        col = starts[ids]
        return col if which == "start" else col + 1

    def aggregate(self, body: Value, parent: IntArray | int, n: int, node: ex.Node) -> Value:
        """Sum the sub-rows of each row (``parent`` as returned by ``expand``)."""
        nb = self.nums_of(body, node) if not isinstance(body, (Lin, Quad)) else None
        if nb is not None:
            return Nums(np.bincount(_parent_array(parent, n), weights=nb.v, minlength=n).astype(_F64))
        if isinstance(body, Lin):
            const: FloatArray | None = None
            # a sum of zeros (signed or not) is 0.0; NaN (0 * inf) must come through
            if not (body.zero or (body.zero_times is not None and _all_finite(body.zero_times))):
                const = np.bincount(_parent_array(parent, n), weights=body.const, minlength=n).astype(_F64)
            if isinstance(parent, int):
                if body._r is None:  # still grouped by row: each row gets K times the terms
                    return Lin(const, None, body.c, body._v, n=n, per_row=body.per_row * parent)
                return Lin(const, body._r // parent, body.c, body._v, n=n)
            rows = parent if body._r is None and body.per_row == 1 else parent[body.r]
            return Lin(const, rows, body.c, body._v, n=n)
        if isinstance(body, Quad):
            lin = self.aggregate(body.lin, parent, n, node)
            assert isinstance(lin, Lin)
            return Quad(lin, _parent_array(parent, n)[body.r], body.c1, body.c2, body.v)
        raise self.fail("sum() adds numbers or expressions", node, code="type")

    def minmax(self, node: ex.Call, env: Env) -> Value:
        f = node.func
        n = env.n
        parts: list[tuple[Value, IntArray]] = []
        if len(node.args) == 1 and isinstance(node.args[0], ex.Gen):
            gen = node.args[0]
            sub, parent = self.env_for(gen.loops, env)
            if np.any(np.bincount(parent, minlength=n) == 0):
                raise self.fail(f"{f}() over an empty selection", node, code="empty")
            parts.append((self.ev(gen.elt, sub), parent))
        else:
            for a in node.args:
                parts.append((self.ev(a, env), np.arange(n, dtype=_I64)))
        if all(
            self.nums_of(v, node) is not None for v, _ in parts if not isinstance(v, (Lin, Quad))
        ) and not any(isinstance(v, (Lin, Quad)) for v, _ in parts):
            init = np.full(n, INF if f == "min" else -INF)
            for v, parent in parts:
                nv = self.nums_of(v, node)
                assert nv is not None
                (np.minimum if f == "min" else np.maximum).at(init, parent, nv.v)
            return Nums(init)
        lins: list[tuple[Lin, IntArray]] = []
        for v, parent in parts:
            if isinstance(v, Quad):
                raise self.fail(f"{f}() of a quadratic expression is not supported", node, code="nonlinear")
            m = len(parent)
            nv = self.nums_of(v, node) if not isinstance(v, Lin) else None
            lins.append((_as_lin(nv if nv is not None else v, m), parent))
        return self.aux_bound(f, lins, n)

    def aux_bound(self, kind: str, parts: list[tuple[Lin, IntArray]], n: int) -> Lin:
        """A column z per row with z >= each part (max) or z <= each part (min)."""
        z = self.new_aux(n, kind)
        for lin, parent in parts:
            m = lin.n
            # row j: z[parent[j]] - lin_j  (>= 0 for max, <= 0 for min)
            r = np.concatenate([np.arange(m, dtype=_I64), lin.r])
            c = np.concatenate([z[parent], lin.c])
            v = np.concatenate([np.ones(m), -lin.v])
            lo = np.where(kind == "max", lin.const, -INF) * np.ones(m)
            hi = np.where(kind == "max", INF, lin.const) * np.ones(m)
            self.aux_rows.append((r, c, v, lo, hi))
        return Lin(None, None, z, None, n=n)

    # ------------------------------------------------------------------ constraints

    def begin(self, where: str, text: str, allow_quad: bool = False) -> None:
        self.where = where
        self.text = text
        self.allow_quad = allow_quad

    def parse(self, text: str, where: str) -> ex.Node:
        self.begin(where, text)
        return ex.parse(text, where)

    def base_env(self, c: Any) -> Env:
        if not c.for_each:
            return Env(1)
        loops = ex.parse_for_each(c.for_each, f"constraint {c.id} (for_each)")
        self.begin(f"constraint {c.id} (for_each)", " ".join(c.for_each.split("\n")))
        env, _ = self.expand(loops)  # the parents (all row 0) are not needed
        return env

    def keys_of(self, env: Env) -> IntArray:
        return env.keys()

    def lower_constraints(self) -> None:
        for c in self.model.constraints:
            self._guard(lambda c=c: self._lower_constraint(c))  # type: ignore[misc]

    def _lower_constraint(self, c: Any) -> None:
        self.aux_here = []
        self.aux_rows = []
        env = self.base_env(c)
        where = f"constraint {c.id}"
        if isinstance(c, LinearConstraint):
            self.linear_rows(c, env, where)
        else:
            self.logic_con(c, env, where)
            if self.aux_here:
                # an epigraph column is exact only for one sign of use, which a condition
                # (or its negation) cannot promise
                raise self.fail(
                    "max(...), min(...) or abs(...) of variables cannot be used inside logic templates",
                    None,
                    "compare each term instead, e.g. 'a >= 3 or b >= 3' for max(a, b) >= 3",
                    code="nonconvex",
                )
        self.flush_aux_rows(c.id, c.template, c.source)

    def linear_rows(self, c: LinearConstraint, env: Env, where: str) -> None:
        node = self.parse(c.expression, where)
        lin, lo, hi = self.comparison(node, env)
        keys = self.keys_of(env)
        block = RowBlock(c.id, c.template, c.source, env.n, lin.r, lin.c, lin.v, lo, hi, keys)
        self.check_aux_signs(block, where)
        self.row_blocks.append(block)

    def comparison(self, node: ex.Node, env: Env) -> tuple[Lin, FloatArray, FloatArray]:
        """``a <= b`` / ``a >= b`` / ``a == b`` / ``lo <= e <= hi`` as rows lo <= A x <= hi."""
        n = env.n
        if not isinstance(node, ex.Compare):
            raise self.fail(
                "a constraint needs one comparison: <=, >= or ==",
                node,
                "write e.g. 'sum(x[i] for i in S) <= 10'",
                code="not-a-comparison",
            )
        if any(op in ("in", "not in") for op in node.ops):
            raise self.fail("'in' is for conditions on data, not constraints", node, code="type")
        for op in node.ops:
            if op == "!=":
                raise self.fail(
                    "'!=' on variables is not linear",
                    node,
                    "use either_or with x <= v - 1 and x >= v + 1, or all_different",
                    code="strict",
                )
        vals = [self.ev(x, env) for x in node.operands]
        for v, x in zip(vals, node.operands, strict=True):
            if isinstance(v, Quad):
                raise self.fail("quadratic terms are only allowed in the objective", x, code="nonlinear")
            if isinstance(v, (Bools, SetRef, IntervalRef)):
                raise self.fail(
                    "each side of a comparison must be a number or a linear expression",
                    x,
                    "intervals are compared through start(t) and end(t)",
                    code="type",
                )
        if len(node.ops) == 1:
            op = node.ops[0]
            na, nb = self.nums_of(vals[0], node), self.nums_of(vals[1], node)
            a = _as_lin(na if na is not None else vals[0], n)
            b = _as_lin(nb if nb is not None else vals[1], n)
            d = _lin_add(a, b, -1.0)
            if op in ("<", ">"):
                # Exact only when the variable part takes whole values: x > 5 means x >= 6.
                if not self.whole_valued(d):
                    raise self.fail(
                        f"strict '{op}' on an expression that can take fractional values cannot be "
                        "enforced exactly by a solver",
                        node,
                        f"use '{op}=' (or make the variables integer)",
                        code="strict",
                    )
                if op == "<":
                    return d, np.full(n, -INF), np.ceil(-d.const) - 1
                return d, np.floor(-d.const) + 1, np.full(n, INF)
            if op == "<=":
                return d, np.full(n, -INF), -d.const
            if op == ">=":
                return d, -d.const, np.full(n, INF)
            return d, -d.const, -d.const
        if len(node.ops) == 2:
            o1, o2 = node.ops
            if o1 != o2 or o1 == "==":
                raise self.fail(
                    "a two-sided comparison must read lo <= e <= hi or hi >= e >= lo",
                    node,
                    code="not-a-comparison",
                )
            lo_v, e_v, hi_v = vals if o1 in ("<=", "<") else vals[::-1]
            nlo, nhi = self.nums_of(lo_v, node), self.nums_of(hi_v, node)
            if nlo is None or nhi is None:
                raise self.fail(
                    "in lo <= e <= hi, the ends must be data (numbers, parameters)",
                    node,
                    "split it into two constraints",
                    code="not-a-comparison",
                )
            ne = self.nums_of(e_v, node)
            e = _as_lin(ne if ne is not None else e_v, n)
            return e, nlo.v - e.const, nhi.v - e.const
        raise self.fail("chains of more than two comparisons are not allowed", node, code="not-a-comparison")

    def check_aux_signs(self, block: RowBlock, where: str) -> None:
        if not self.aux_here:
            return
        kinds = {a.col: a.kind for a in self.aux_here}
        idx = np.flatnonzero(np.isin(block.cols, np.array(list(kinds), dtype=_I64)))
        for j in idx.tolist():
            col = int(block.cols[j])
            r = int(block.rows[j])
            coef = float(block.coefs[j])
            le = np.isinf(block.lower[r]) and not np.isinf(block.upper[r])
            ge = np.isinf(block.upper[r]) and not np.isinf(block.lower[r])
            up = (coef > 0 and le) or (coef < 0 and ge)  # expression kept from growing
            ok = up if kinds[col] == "max" else ((coef < 0 and le) or (coef > 0 and ge))
            if not ok:
                raise self.fail(
                    f"{kinds[col]}()/abs() appears where it cannot be modelled exactly "
                    "(only max(...) <= b, min(...) >= b, and abs(...) <= b are linear)",
                    None,
                    "rewrite with either_or, or bound each term separately",
                    code="nonconvex",
                )

    def flush_aux_rows(self, cid: str, template: str, source: str | None) -> None:
        for k, (r, c, v, lo, hi) in enumerate(self.aux_rows):
            m = len(lo)
            self.row_blocks.append(
                RowBlock(
                    cid,
                    template,
                    source,
                    m,
                    r,
                    c,
                    v,
                    lo,
                    hi,
                    # several rows of one block need distinct names: number them
                    np.zeros((m, 0), dtype=_I64) if m == 1 else np.arange(m, dtype=_I64).reshape(-1, 1),
                    aux=True,
                    suffix=f".aux{k}",
                )
            )
        self.aux_rows = []

    # ------------------------------------------------------------------ logic

    def formula(self, node: ex.Node, env: Env) -> BForm:
        n = env.n
        if isinstance(node, ex.BoolOp):
            return BNode(node.op, [self.formula(v, env) for v in node.values])
        if isinstance(node, ex.Unary) and node.op == "not":
            return BNode("not", [self.formula(node.operand, env)])
        if isinstance(node, ex.Compare):
            if any(op in ("in", "not in") for op in node.ops):
                return BConst(self.condition(node, env))
            try_data = [self.ev(x, env) for x in node.operands]
            if not any(isinstance(v, (Lin, Quad)) for v in try_data):
                return BConst(self.condition(node, env))
            if len(node.ops) == 1 and node.ops[0] in ("<", ">", "!="):
                return self.strict_atom(node, env)
            lin, lo, hi = self.comparison(node, env)
            return BAtom(lin, lo, hi)
        v = self.ev(node, env)
        if isinstance(v, Lin):
            # a bare binary/boolean variable reads as "is 1"
            self.require_binary(v, node)
            return BAtom(v, np.ones(n) - v.const, np.ones(n) - v.const)
        if isinstance(v, (Bools, Nums)):
            return BConst(v.mask if isinstance(v, Bools) else v.v != 0)
        raise self.fail(
            "expected a condition: a comparison, a binary variable, and/or/not", node, code="not-a-condition"
        )

    def strict_atom(self, node: ex.Compare, env: Env) -> BForm:
        """x < b, x > b, x != b: exact only when the expression takes whole values."""
        a = self.ev(node.operands[0], env)
        b = self.ev(node.operands[1], env)
        n = env.n
        na, nb = self.nums_of(a, node), self.nums_of(b, node)
        d = _lin_add(_as_lin(na if na is not None else a, n), _as_lin(nb if nb is not None else b, n), -1.0)
        cols = self.columns_integer()
        if not (np.all(cols[d.c]) and _whole(d) and np.all(d.const == np.round(d.const))):
            raise self.fail(
                f"strict '{node.ops[0]}' on an expression that can take fractional values",
                node,
                f"use '{'<=' if node.ops[0] == '<' else '>='}' or make the variables integer",
                code="strict",
            )
        op = node.ops[0]
        if op == "<":
            return BAtom(d, np.full(n, -INF), -d.const - 1)
        if op == ">":
            return BAtom(d, -d.const + 1, np.full(n, INF))
        return BNode(
            "or", [BAtom(d, np.full(n, -INF), -d.const - 1), BAtom(d, -d.const + 1, np.full(n, INF))]
        )

    def whole_valued(self, d: Lin) -> bool:
        """True when every term is an integer variable times a whole coefficient."""
        ints = self.columns_integer()
        return bool(np.all(ints[d.c]) and _whole(d))

    def column_arrays(self) -> tuple[FloatArray, FloatArray, BoolArray]:
        """Lower bounds, upper bounds and integrality of every column so far (read-only).

        Joined once and kept until a column is added: logic constraints ask per atom."""
        if self._joined is None:
            self._joined = (
                _join(self.lower_parts, _F64),
                _join(self.upper_parts, _F64),
                _join(self.int_parts, bool),
            )
        return self._joined

    def columns_integer(self) -> BoolArray:
        return self.column_arrays()[2]

    def require_binary(self, v: Lin, node: ex.Node) -> None:
        lo, hi, ints = self.column_arrays()
        ok = (
            len(v.c) == v.n
            and (v._v is None or np.all(v.v == 1.0))
            and np.all(ints[v.c])
            and np.all(lo[v.c] >= 0)
            and np.all(hi[v.c] <= 1)
        )
        if not ok:
            raise self.fail(
                "only a binary or boolean variable can stand alone as a condition",
                node,
                "compare it, e.g. x >= 1",
                code="not-a-condition",
            )

    def split_formula(self, f: BForm, i: int, cache: dict[int, _RowSplitter]) -> Formula:
        if isinstance(f, BConst):
            return Const(bool(f.mask[i]))
        if isinstance(f, BNode):
            items = tuple(self.split_formula(x, i, cache) for x in f.items)
            if f.op == "not":
                # "not b" of a binary is the negated literal (clauses accept only literals).
                if isinstance(items[0], Lit):
                    return Lit(items[0].col, not items[0].neg)
                if isinstance(items[0], Const):
                    return Const(not items[0].value)
                return Not(items[0])
            return And(items) if f.op == "and" else Or(items)
        sp = cache.get(id(f))
        if sp is None:
            sp = cache[id(f)] = _RowSplitter(f.lin)
        cols, coefs, _ = sp.row(i)
        lo, hi = float(f.lo[i]), float(f.hi[i])
        if not cols:
            return Const(lo <= 1e-9 and -1e-9 <= hi)
        if len(cols) == 1:
            lower, upper, ints = self.column_arrays()
            lb, ub = lower[cols[0]], upper[cols[0]]
            if ints[cols[0]] and lb >= 0 and ub <= 1:
                ok = [val for val in (0.0, 1.0) if lo - 1e-9 <= coefs[0] * val <= hi + 1e-9]
                if ok == [1.0]:
                    return Lit(cols[0])
                if ok == [0.0]:
                    return Lit(cols[0], True)
                return Const(bool(ok))
        return Atom(cols, coefs, lo, hi)

    def option_list(
        self, field_value: Any, env: Env, where: str, field_name: str, ev: Callable[[ex.Node, Env], Any]
    ) -> list[tuple[Any, IntArray]]:
        """A list field: each entry (batched value, parent rows); a comprehension expands."""
        out: list[tuple[Any, IntArray]] = []
        if isinstance(field_value, str):
            self.begin(f"{where} ({field_name})", field_value)
            gen = ex.parse_list(field_value, f"{where} ({field_name})")
            sub, parent = self.env_for(gen.loops, env)
            out.append((ev(gen.elt, sub), parent))
        else:
            for k, text in enumerate(field_value):
                node = self.parse(text, f"{where} ({field_name} {k + 1})")
                out.append((ev(node, env), np.arange(env.n, dtype=_I64)))
        return out

    def per_row(
        self, parts: list[tuple[Any, IntArray]], n: int, split: Callable[[Any, int], Any]
    ) -> list[list[Any]]:
        rows: list[list[Any]] = [[] for _ in range(n)]
        for val, parent in parts:
            for j, p in enumerate(parent.tolist()):
                rows[p].append(split(val, j))
        return rows

    def number_field(self, value: Any, env: Env, where: str, name: str) -> FloatArray:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return np.full(env.n, float(value))
        node = self.parse(str(value), f"{where} ({name})")
        v = self.ev(node, env)
        nv = self.nums_of(v, node) if not isinstance(v, (Lin, Quad)) else None
        if nv is None:
            raise self.fail(
                f"'{name}' must be data (a number or parameters), not variables", node, code="type"
            )
        return nv.v

    def term_field(self, text: str, env: Env, where: str, name: str) -> list[LinTerm]:
        node = self.parse(text, f"{where} ({name})")
        v = self.ev(node, env)
        nv = self.nums_of(v, node) if not isinstance(v, (Lin, Quad)) else None
        if isinstance(v, Quad) or (nv is None and not isinstance(v, Lin)):
            raise self.fail(f"'{name}' must be a linear expression", node, code="type")
        lin = _as_lin(nv if nv is not None else v, env.n)
        sp = _RowSplitter(lin)
        return [LinTerm(*sp.row(i)) for i in range(env.n)]

    def interval_field(self, text: str, env: Env, where: str, name: str) -> IntArray:
        node = self.parse(text, f"{where} ({name})")
        v = self.ev(node, env)
        if not isinstance(v, IntervalRef):
            raise self.fail(f"'{name}' must name an interval variable", node, code="type")
        return v.ids

    def logic_con(self, c: Any, env: Env, where: str) -> None:
        n = env.n
        keys = self.keys_of(env)
        names = [c.id if keys.shape[1] == 0 else f"{c.id}[{self._plabel(list(keys[i]))}]" for i in range(n)]
        cache: dict[int, _RowSplitter] = {}
        datas: list[dict[str, Any]] = [{} for _ in range(n)]

        def formulas(value: Any, fname: str) -> list[list[Formula]]:
            parts = self.option_list(value, env, where, fname, self.formula)
            return self.per_row(parts, n, lambda f, j: self.split_formula(f, j, cache))

        if isinstance(c, Implication):
            fi = self.formula(self.parse(c.if_, f"{where} (if)"), env)
            ft = self.formula(self.parse(c.then, f"{where} (then)"), env)
            for i in range(n):
                datas[i] = {"if": self.split_formula(fi, i, cache), "then": self.split_formula(ft, i, cache)}
        elif isinstance(c, EitherOr):
            rows = formulas(c.options, "options")
            for i in range(n):
                datas[i] = {"options": rows[i]}
        elif isinstance(c, CountingConstraint):
            rows = formulas(c.options, "options")
            k = self.number_field(c.k, env, where, "k")
            if not np.all(k == np.round(k)):
                raise self.fail("'k' must be a whole number", None, code="bad-value")
            for i in range(n):
                datas[i] = {"k": int(k[i]), "options": rows[i]}
        elif isinstance(c, AllDifferent):
            parts = self.option_list(c.terms, env, where, "terms", self._lin_value)
            rows = self.per_row(parts, n, _split_lin())
            for i in range(n):
                datas[i] = {"terms": rows[i]}
        elif isinstance(c, FixedCharge):
            var = self.term_field(c.variable, env, where, "variable")
            ind = self.formula(self.parse(c.indicator, f"{where} (indicator)"), env)
            up = self.number_field(c.upper, env, where, "upper")
            for i in range(n):
                lit = self.split_formula(ind, i, cache)
                if not isinstance(lit, Lit) or lit.neg:
                    raise self.fail(
                        "the indicator of a fixed_charge must be a binary variable", None, code="type"
                    )
                datas[i] = {"variable": var[i], "indicator": lit, "upper": float(up[i])}
        elif isinstance(c, SemiContinuous):
            var = self.term_field(c.variable, env, where, "variable")
            lo = self.number_field(c.lower, env, where, "lower")
            up = self.number_field(c.upper, env, where, "upper")
            for i in range(n):
                datas[i] = {"variable": var[i], "lower": float(lo[i]), "upper": float(up[i])}
        elif isinstance(c, Clause):
            rows = formulas(c.literals, "literals")
            for i in range(n):
                lits = rows[i]
                bad = [x for x in lits if not isinstance(x, (Lit, Const))]
                if bad:
                    raise self.fail(
                        "clause literals are binary/boolean variables or 'not' of one",
                        None,
                        'write e.g. ["a", "not b"]',
                        code="type",
                    )
                datas[i] = {
                    "literals": [x for x in lits if isinstance(x, Lit)],
                    "always": any(isinstance(x, Const) and x.value for x in lits),
                }
        elif isinstance(c, NoOverlap):
            parts = self.option_list(c.intervals, env, where, "intervals", self._interval_value)
            rows = self.per_row(parts, n, lambda v, j: int(v.ids[j]))
            for i in range(n):
                datas[i] = {"intervals": rows[i]}
        elif isinstance(c, Precedence):
            b = self.interval_field(c.before, env, where, "before")
            a = self.interval_field(c.after, env, where, "after")
            lag = self.number_field(c.lag, env, where, "lag")
            self.lags.extend(np.maximum(lag, 0).tolist())
            for i in range(n):
                datas[i] = {"before": int(b[i]), "after": int(a[i]), "lag": float(lag[i])}
        elif isinstance(c, Cumulative):
            ivs = self.per_row(
                self.option_list(c.intervals, env, where, "intervals", self._interval_value),
                n,
                lambda v, j: int(v.ids[j]),
            )
            dem = self.per_row(
                self.option_list(c.demands, env, where, "demands", self._num_value),
                n,
                lambda v, j: float(v[j]),
            )
            cap = self.number_field(c.capacity, env, where, "capacity")
            for i in range(n):
                if len(ivs[i]) != len(dem[i]):
                    raise self.fail(
                        f"cumulative has {len(ivs[i])} intervals but {len(dem[i])} demands",
                        None,
                        "give one demand per interval",
                        code="arity",
                    )
                datas[i] = {"intervals": ivs[i], "demands": dem[i], "capacity": float(cap[i])}
        else:  # pragma: no cover - the contract's union is closed
            raise self.fail(f"unknown template {c.template}", None)
        for i in range(n):
            self.logic.append(LogicCon(c.id, names[i], c.template, c.source, datas[i]))

    def _lin_value(self, node: ex.Node, env: Env) -> Lin:
        v = self.ev(node, env)
        nv = self.nums_of(v, node) if not isinstance(v, (Lin, Quad)) else None
        if isinstance(v, Quad) or (nv is None and not isinstance(v, Lin)):
            raise self.fail("expected a linear expression", node, code="type")
        return _as_lin(nv if nv is not None else v, env.n)

    def _interval_value(self, node: ex.Node, env: Env) -> IntervalRef:
        v = self.ev(node, env)
        if not isinstance(v, IntervalRef):
            raise self.fail("expected an interval variable", node, code="type")
        return v

    def _num_value(self, node: ex.Node, env: Env) -> FloatArray:
        v = self.ev(node, env)
        nv = self.nums_of(v, node) if not isinstance(v, (Lin, Quad)) else None
        if nv is None:
            raise self.fail("expected data (numbers or parameters)", node, code="type")
        return nv.v

    # ------------------------------------------------------------------ objective

    def lower_objective(self) -> Objective | None:
        o = self.model.objective
        if o is None:
            return None
        self.aux_here = []
        self.aux_rows = []
        node = self.parse(o.expression, "objective")
        self.allow_quad = True
        v = self.ev(node, Env(1))
        self.allow_quad = False
        nv = self.nums_of(v, node) if not isinstance(v, (Lin, Quad)) else None
        if nv is None and not isinstance(v, (Lin, Quad)):
            raise self.fail("the objective must be a number or an expression of variables", node, code="type")
        q = _quad_of(nv if nv is not None else v, 1)
        lin = q.lin
        sign_ok = {
            "max": 1.0 if o.sense == "minimize" else -1.0,
            "min": -1.0 if o.sense == "minimize" else 1.0,
        }
        kinds = {a.col: a.kind for a in self.aux_here}
        if kinds and np.isin(np.concatenate([q.c1, q.c2]), np.array(list(kinds), dtype=_I64)).any():
            # the epigraph column of max/min/abs is exact only when it appears linearly
            raise self.fail(
                "max(...), min(...) or abs(...) inside a product cannot be modelled exactly",
                node,
                "keep max/min/abs as a separate linear term of the objective",
                code="nonconvex",
            )
        if kinds:
            agg: dict[int, float] = {}
            for c, val in zip(lin.c.tolist(), lin.v.tolist(), strict=True):
                if c in kinds:
                    agg[c] = agg.get(c, 0.0) + val
            for c, val in agg.items():
                if val * sign_ok[kinds[c]] < 0:
                    raise self.fail(
                        f"{o.sense} of {kinds[c]}(...) (or abs(...)) cannot be modelled linearly",
                        node,
                        "linear forms are: minimize max(...), maximize min(...), minimize abs",
                        code="nonconvex",
                    )
        self.flush_aux_rows("objective", "objective", o.source)
        return Objective(o.sense, lin.c, lin.v, float(lin.const[0]), q.c1, q.c2, q.v, o.source)

    # ------------------------------------------------------------------ intervals

    def finish_intervals(self) -> Intervals:
        if not self.iv_start:
            z = np.zeros(0, dtype=_I64)
            return Intervals(z, z, np.zeros(0), [])
        dur = np.concatenate(self.iv_dur)
        lo = np.concatenate(self.lower_parts)
        hi = np.concatenate(self.upper_parts)
        # Without windows, every interval fits in [0, horizon]: the latest release plus every
        # duration and every positive lag is always long enough for some schedule.
        releases = [float(b[2][:, 0].max()) for b in self.iv_bounds if b[2] is not None]
        horizon = max([0.0, *releases]) + float(dur.sum()) + float(sum(self.lags))
        for offset, n, start, end, d in self.iv_bounds:
            s = offset + 2 * np.arange(n)
            e = s + 1
            lo[s] = start[:, 0] if start is not None else 0.0
            hi[s] = start[:, 1] if start is not None else horizon - d
            lo[e] = end[:, 0] if end is not None else lo[s] + d
            hi[e] = end[:, 1] if end is not None else horizon
            lo[e] = np.maximum(lo[e], lo[s] + d)
            hi[s] = np.minimum(hi[s], hi[e] - d)
        self.int_parts = [self.columns_integer()]
        self.lower_parts = [lo]
        self.upper_parts = [hi]
        self._joined = None
        starts = np.concatenate(self.iv_start)
        return Intervals(starts, starts + 1, dur, list(self.iv_names))

    # ------------------------------------------------------------------ driver

    def run(self) -> Instance:
        self.load_tables()
        self.load_sets()
        self.load_params()
        self.load_vars()
        self.lower_constraints()
        objective: list[Objective | None] = [None]

        def obj() -> None:
            objective[0] = self.lower_objective()

        self._guard(obj)
        if self.issues:
            raise CheckFailed(self.issues)
        intervals = self.finish_intervals()
        cols = Columns(
            *self.column_arrays(),
            self.blocks,
            self.interner,
        )
        return Instance(
            model=self.model,
            columns=cols,
            row_blocks=self.row_blocks,
            logic=self.logic,
            intervals=intervals,
            objective=objective[0],
            aux=self.aux,
            sources={c.id: c.source for c in self.model.constraints},
            templates={c.id: c.template for c in self.model.constraints},
        )


def _join(parts: list[Any], dtype: type) -> Any:
    """The parts end to end; a single part as it is (no copy)."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _split_lin() -> Callable[[Lin, int], LinTerm]:
    cache: dict[int, _RowSplitter] = {}

    def split(v: Lin, j: int) -> LinTerm:
        sp = cache.get(id(v))
        if sp is None:
            sp = cache[id(v)] = _RowSplitter(v)
        return LinTerm(*sp.row(j))

    return split


def _set_of_component(ix: Indexer, depth: int) -> int:
    k = 0
    for i, s in enumerate(ix.sets):
        k += s.arity
        if depth < k:
            return i
    return len(ix.sets) - 1


def block_label(name: str, keys: IntArray, k: int, interner: Interner) -> str:
    if keys.shape[1] == 0:
        return name
    return f"{name}[{','.join(interner.label(int(c)) for c in keys[k])}]"


def _read_csv(text: str, name: str) -> dict[str, list[Any]]:
    try:
        return _read_csv_rows(text, name)
    except csv.Error as e:  # e.g. a field beyond the csv module's size limit
        raise _issue(
            "bad-table", f"table {name!r} is not valid CSV: {e}", f"table {name}", "check quotes and sizes"
        ) from None


def _read_csv_rows(text: str, name: str) -> dict[str, list[Any]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise _issue("bad-table", f"table {name!r} is empty", f"table {name}") from None
    cols: dict[str, list[Any]] = {h.strip(): [] for h in header}
    keys = list(cols)
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(keys):
            raise _issue(
                "bad-table",
                f"table {name!r} line {lineno} has {len(row)} fields, the header {len(keys)}",
                f"table {name}",
            )
        for k, v in zip(keys, row, strict=True):
            cols[k].append(_csv_value(v.strip()))
    return cols


def _csv_value(v: str) -> Any:
    if v == "":
        return None
    try:
        i = int(v)
        return i
    except ValueError:
        pass
    try:
        f = float(v)
        return f if math.isfinite(f) else v
    except ValueError:
        return v


def lower(model: Model, collect: bool = False) -> Instance:
    """Ground a contract model. Raises ModelError (or CheckFailed with ``collect``)."""
    return Lowering(model, collect=collect).run()
