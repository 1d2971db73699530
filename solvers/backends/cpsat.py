"""The OR-Tools CP-SAT backend: whole-number models, logic and scheduling posted natively.

This module owns the translation of a ground ``Instance`` into a CP-SAT model, the solve,
and the explanation of infeasible models by assumption cores. CP-SAT knows only whole
numbers, so every number is made whole *exactly* or the model is refused:

- Each linear row is multiplied by the smallest power of ten (at most 10^6) that makes its
  coefficients whole; decided on the shortest decimal text of each float (``repr``), so
  ``0.1`` is one decimal, not the binary fraction behind it. Its left side is then a whole
  number, so its bounds are rounded inwards (``x + y <= 3.5`` becomes ``<= 3``), which is
  exact. The objective is scaled the same way and its value scaled back. A number within
  float noise (relative 1e-9) of one with few decimals is taken as that number: data
  arithmetic turns ``54 * 100`` into ``5399.999999999999``, and no solver tells them apart.
- Time (the start/end columns of interval variables) is counted in units of 10^-T, with T
  the fewest decimals that make every duration, time window, precedence lag and bound of
  a row on time columns whole; CP-SAT sees ``start' = 10^T * start``.
- An auxiliary max/min column is made whole in units of 10^-k, with k the fewest decimals
  that make its arguments whole; then ``z >= max(args)`` stays exact.

Every CP-SAT object is named after the model: variables after columns (``x[chair]``,
``op[1,2].start``), constraints after the constraint instance (``capacity[wood]``).

Status choices: CP-SAT's FEASIBLE (a solution, optimality not proven, usually because the
time limit struck) is reported as ``feasible``, never ``time_limit``: a plan is in hand, and
``message`` says that the limit was hit and what the gap is. ``time_limit`` is kept for
"stopped by the limit with no solution" (CP-SAT's UNKNOWN after the limit). A model
without objective that has a solution is ``optimal``. A gap limit met is CP-SAT's
OPTIMAL; it stays ``optimal`` and ``gap`` tells the truth.

Integer columns without a bound get the box +-10^9 (in CP units); when an optimal
solution touches that box and a smaller box gives a worse objective, the model is
reported ``unbounded``.

Infeasible models are explained by a second, guarded model: one enforcement literal per
constraint instance (a row, or one logic/scheduling instance), all assumed true, a core
from ``sufficient_assumptions_for_infeasibility``, shrunk to an irreducible one by
deletion; then an elastic model (whole slack variables on the linear rows and precedence
lags of the core, weighted so that one unit of slack is one unit of the model's numbers)
suggests the smallest right-hand-side changes, and the objective after them.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from ortools.sat.python import cp_model
from ortools.util.python.sorted_interval_list import Domain

from ..errors import BackendError
from ..ir import (
    And,
    Atom,
    Const,
    FloatArray,
    Formula,
    Instance,
    IntArray,
    LinTerm,
    Lit,
    LogicCon,
    Not,
    Or,
    RowBlock,
)
from ..result import ConflictItem, Explanation, Relaxation, Result, Status
from .base import Compiled, SolveOptions

__all__ = ["CpSatBackend", "STATUS_MAP", "MAX_DECIMALS", "DEFAULT_BOUND"]

#: At most 10^MAX_DECIMALS is used to make a row, the objective or time whole.
MAX_DECIMALS = 6
#: The box given to integer columns without a bound (CP units).
DEFAULT_BOUND = 10**9
#: Finite bounds beyond this are treated as no bound (CP-SAT must not overflow int64).
_HUGE = 1e12
#: A number this close (relative) to one with few decimals is that number: float noise from
#: arithmetic in the data (``54 * 100`` computed as ``5399.999999999999``), far below any
#: solver's feasibility tolerance.
_NOISE = 1e-9
#: Whole coefficients must stay exact in a float.
_MAX_COEF = 2**52

#: CP-SAT status names -> the one status vocabulary. FEASIBLE and UNKNOWN are refined in
#: ``solve`` (no objective: optimal; UNKNOWN after the time limit: time_limit).
STATUS_MAP: dict[str, Status] = {
    "OPTIMAL": Status.OPTIMAL,
    "FEASIBLE": Status.FEASIBLE,
    "INFEASIBLE": Status.INFEASIBLE,
    "MODEL_INVALID": Status.ERROR,
    "UNKNOWN": Status.UNKNOWN,
}

SUPPORTED_TEMPLATES = frozenset(
    {
        "implication",
        "either_or",
        "at_most_k",
        "at_least_k",
        "exactly_k",
        "all_different",
        "fixed_charge",
        "semi_continuous",
        "clause",
        "no_overlap",
        "precedence",
        "cumulative",
    }
)
_SOLUTION = ("OPTIMAL", "FEASIBLE")


# ------------------------------------------------------------------ exact decimal scaling


def _frac(x: float) -> Fraction:
    """The number as written: the shortest decimal text of the float, exactly."""
    return Fraction(repr(float(x)))


def _frac_decimals(f: Fraction) -> int:
    """Decimal places ``f`` needs to be whole; a large number when no power of ten will do."""
    d = f.denominator
    twos = fives = 0
    while d % 2 == 0:
        d //= 2
        twos += 1
    while d % 5 == 0:
        d //= 5
        fives += 1
    return max(twos, fives) if d == 1 else 99


def _need(f: Fraction) -> int:
    """Decimal places ``f`` needs, forgiving float noise (see ``_NOISE``)."""
    d = _frac_decimals(f)
    if d <= MAX_DECIMALS:
        return d
    for k in range(MAX_DECIMALS + 1):
        v = f * 10**k
        if abs(v - round(v)) <= _NOISE * max(Fraction(1), abs(v)):
            return k
    return d


@lru_cache(maxsize=1 << 16)
def _decimals(x: float, shift: int = 0) -> int:
    """Decimal places of ``x / 10^shift``."""
    if x == 0:
        return 0
    if shift == 0 and float(x).is_integer():
        return 0
    return _need(_frac(x) / 10**shift)


def _snap(v: Fraction) -> int | None:
    n = round(v)
    return int(n) if abs(v - n) <= _NOISE * max(Fraction(1), abs(v)) else None


@lru_cache(maxsize=1 << 16)
def _ceil_scaled(x: float, k: int) -> int:
    if k == 0 and float(x).is_integer():
        return int(x)
    v = _frac(x) * 10**k
    n = _snap(v)
    return n if n is not None else int(math.ceil(v))


@lru_cache(maxsize=1 << 16)
def _floor_scaled(x: float, k: int) -> int:
    if k == 0 and float(x).is_integer():
        return int(x)
    v = _frac(x) * 10**k
    n = _snap(v)
    return n if n is not None else int(math.floor(v))


def _round_bounds(vals: FloatArray, exps: IntArray, *, up: bool) -> list[int | None]:
    """``ceil`` (up) or ``floor`` of ``vals * 10^exps``, exactly; None where there is no bound.

    Where the exponent is 0 the float's own floor/ceil is exact: the shortest decimal of a
    float and the float itself lie on the same side of every whole number. Values within
    float noise of a whole number are that number.
    """
    fin = np.isfinite(vals) & (np.abs(vals) < _HUGE)
    plain = fin & (exps == 0)
    safe = np.where(fin, vals, 0.0)
    near = np.rint(safe)
    noise = np.abs(safe - near) <= _NOISE * np.maximum(1.0, np.abs(safe))
    rounded = np.where(plain, np.where(noise, near, np.ceil(safe) if up else np.floor(safe)), 0.0).tolist()
    out: list[int | None] = [int(v) if p else None for v, p in zip(rounded, plain.tolist(), strict=True)]
    scale = _ceil_scaled if up else _floor_scaled
    for i in np.nonzero(fin & ~plain)[0].tolist():
        out[i] = scale(float(vals[i]), int(exps[i]))
    return out


def _finite(x: float) -> bool:
    return math.isfinite(x) and abs(x) < _HUGE


def _too_many(what: str, value: float, fix: str = "") -> BackendError:
    return BackendError(
        f"{what}: the number {value!r} needs more than {MAX_DECIMALS} decimal places to become "
        "whole, and CP-SAT works with whole numbers only. "
        + (fix or "Round the data to at most 6 decimals, or use the highs backend.")
    )


@dataclass
class _Scales:
    """Per-column exponents: CP-SAT's value of column j is ``10^col_exp[j] * x_j``."""

    col_exp: IntArray
    time_exp: int
    time_cols: IntArray


def _scales(inst: Instance) -> _Scales:
    """Decide the exponents of time and auxiliary columns; raise BackendError if none fits."""
    cols = inst.columns
    col_exp = np.zeros(cols.n, dtype=np.int64)
    iv = inst.intervals
    time_cols = np.unique(np.concatenate([iv.start_col, iv.end_col])).astype(np.int64)

    # time: every duration, window, lag and bound of a row on time columns must be whole
    if iv.n:
        vals: list[float] = [float(d) for d in np.unique(iv.duration)]
        for arr in (cols.lower[time_cols], cols.upper[time_cols]):
            vals.extend(float(v) for v in np.unique(arr) if _finite(float(v)))
        tset = set(time_cols.tolist())
        for c in inst.logic:
            if c.template == "precedence":
                vals.append(float(c.data.get("lag", 0.0)))
            for atom in _atoms(c.data):
                if tset.intersection(atom.cols):
                    vals.extend(v for v in (atom.lo, atom.hi) if _finite(v))
        for b in inst.row_blocks:
            touch = np.unique(b.rows[np.isin(b.cols, time_cols)])
            for arr in (b.lower[touch], b.upper[touch]):
                vals.extend(float(v) for v in np.unique(arr) if _finite(float(v)))
        t = 0
        for v in vals:
            d = _decimals(v)
            if d > MAX_DECIMALS:
                raise _too_many(
                    "time (interval durations, windows, lags)",
                    v,
                    "Express time in a finer unit with whole numbers, or round it.",
                )
            t = max(t, d)
        col_exp[time_cols] = t
    else:
        t = 0

    # auxiliary max/min columns: whole when their arguments are, in units of 10^-k
    where = {
        j: f"variable {blk.name!r}"
        for blk in cols.blocks
        if blk.domain == "aux"
        for j in range(blk.offset, blk.offset + blk.size)
    }
    where.update({a.col: a.where for a in inst.aux})
    aux_cols = np.array(sorted(where), dtype=np.int64)
    if aux_cols.size:
        aux_set = set(aux_cols.tolist())
        # each row that holds an aux column: (columns, coefficients, lower, upper)
        rows_of: dict[int, list[tuple[list[int], list[float], float, float]]] = {}
        for b in inst.row_blocks:
            mask = np.isin(b.cols, aux_cols)
            if not mask.any():
                continue
            hit = np.unique(b.rows[mask])
            order = np.argsort(b.rows, kind="stable")
            rs = b.rows[order]
            lo_i = np.searchsorted(rs, hit).tolist()
            hi_i = np.searchsorted(rs, hit, side="right").tolist()
            for r, i0, i1 in zip(hit.tolist(), lo_i, hi_i, strict=True):
                idx = order[i0:i1]
                rc, rv = b.cols[idx].tolist(), b.coefs[idx].tolist()
                entry = (rc, rv, float(b.lower[r]), float(b.upper[r]))
                for z in aux_set.intersection(rc):
                    rows_of.setdefault(z, []).append(entry)
        for _ in range(2):  # an aux column may use another: settle in two passes
            for z in aux_cols.tolist():
                need = 0
                for rc, rv, lo, hi in rows_of.get(z, []):
                    a = _frac(sum(w for j, w in zip(rc, rv, strict=True) if j == z))
                    if a == 0:
                        continue
                    for j, w in zip(rc, rv, strict=True):
                        if j != z and w != 0:
                            need = max(need, _need(_frac(w) / a / 10 ** int(col_exp[j])))
                    for bound in (lo, hi):
                        if _finite(bound):
                            need = max(need, _need(_frac(bound) / a))
                if need > MAX_DECIMALS:
                    raise BackendError(
                        f"the auxiliary variable of {where[z]} cannot be made whole: its "
                        f"arguments need more than {MAX_DECIMALS} decimal places (or a "
                        "division that no power of ten undoes). Round the data, or use the "
                        "highs backend."
                    )
                col_exp[z] = need
    return _Scales(col_exp=col_exp, time_exp=t, time_cols=time_cols)


def _atoms(data: dict[str, Any]) -> Iterable[Atom]:
    """Every Atom inside the formulas of one LogicCon's data."""
    stack: list[Any] = list(data.values())
    while stack:
        x = stack.pop()
        if isinstance(x, Atom):
            yield x
        elif isinstance(x, (And, Or)):
            stack.extend(x.items)
        elif isinstance(x, Not):
            stack.append(x.item)
        elif isinstance(x, (list, tuple)):
            stack.extend(x)


def _scale_terms(
    coefs: np.ndarray[Any, Any], exps: np.ndarray[Any, Any], what: Callable[[], str]
) -> tuple[int, list[int]]:
    """The smallest k with ``10^k * coefs / 10^exps`` whole, and those whole numbers."""
    k = 0
    if np.all(exps == 0) and np.all(coefs == np.rint(coefs)):
        pairs: list[tuple[float, int]] = []
    else:
        pairs = list(zip(coefs.tolist(), exps.tolist(), strict=True))
    for c, e in pairs:
        d = _decimals(float(c), int(e))
        if d > MAX_DECIMALS:
            raise _too_many(what(), float(c))
        k = max(k, d)
    ints = np.rint(coefs * np.power(10.0, k - exps)).astype(np.int64)
    if ints.size and int(np.abs(ints).max()) > _MAX_COEF:
        raise BackendError(f"{what()}: a coefficient becomes too large once made whole")
    return k, ints.tolist()


# ------------------------------------------------------------------ the build


@dataclass
class _Ref:
    """One constraint instance: a row of a RowBlock, or one LogicCon."""

    cid: str
    name: str
    template: str
    source: str | None
    kind: str  # "row" | "aux_row" | "logic"
    block: int = -1
    row: int = -1
    logic: int = -1
    exp: int = 0  # power of ten the row was scaled by
    lo: int | None = None  # CP bounds of the row (after scaling and rounding)
    hi: int | None = None


@dataclass
class _Slack:
    ref: int
    exp: int
    lo: Any = None  # slack that lowers the lower side
    hi: Any = None  # slack that raises the upper side


@dataclass
class _Built:
    """A CP-SAT model and the inverse map back to the instance."""

    model: Any
    vars: list[Any]
    refs: list[_Ref]
    guards: dict[int, Any] = field(default_factory=dict)  # ref index -> enforcement literal
    ct_owner: list[int] = field(default_factory=list)  # CP constraint index -> ref index
    empty_domains: list[int] = field(default_factory=list)  # columns with lower > upper
    boxed: dict[int, tuple[bool, bool]] = field(default_factory=dict)  # col -> (lo, hi) boxed
    obj_exp: int = 0
    obj_const: float = 0.0
    has_objective: bool = False
    slacks: list[_Slack] = field(default_factory=list)

    @property
    def column_vars(self) -> IntArray:
        """The CP-SAT variable index of each column."""
        return np.fromiter((int(v.index) for v in self.vars), dtype=np.int64, count=len(self.vars))


class _Builder:
    """Posts an instance into a fresh CpModel.

    ``guarded``: every constraint instance gets an enforcement literal (for cores).
    ``elastic``: ref indices whose linear rows / precedence lags get slack variables; the
    objective becomes the weighted slack sum unless ``fixed_slack`` pins the slacks (then
    the model's own objective is kept).
    """

    def __init__(
        self,
        inst: Instance,
        scales: _Scales,
        *,
        guarded: bool = False,
        elastic: set[int] | None = None,
        fixed_slack: dict[int, tuple[int, int]] | None = None,
        objective: bool = True,
        default_bound: int = DEFAULT_BOUND,
    ) -> None:
        self.inst = inst
        self.sc = scales
        self.guarded = guarded
        self.elastic = elastic or set()
        self.fixed_slack = fixed_slack
        self.want_objective = objective
        self.box = default_bound
        self.m = cp_model.CpModel()
        self.m.name = inst.model.name
        self.b = _Built(model=self.m, vars=[], refs=[])
        self._ref = -1
        self._name = ""
        self._nbool = 0

    # -------------------------------------------------------------- plumbing

    def _ct(self, ct: Any, enf: Sequence[Any] = ()) -> Any:
        """Name ``ct`` after the current instance, enforce it by ``enf``, remember its owner."""
        if enf:
            ct.only_enforce_if(list(enf))
        ct.with_name(self._name)
        owner = self.b.ct_owner
        idx = int(ct.index)
        if len(owner) <= idx:
            owner.extend([-1] * (idx + 1 - len(owner)))
        owner[idx] = self._ref
        return ct

    def _bool(self) -> Any:
        self._nbool += 1
        return self.m.new_bool_var(f"{self._name}#b{self._nbool}")

    def _begin(self, ref: int) -> list[Any]:
        """Make ``ref`` current; its enforcement literals (the guard, when guarded)."""
        self._ref = ref
        r = self.b.refs[ref]
        self._name = r.name
        if self.guarded and r.kind != "aux_row":
            g = self.m.new_bool_var(f"guard:{r.name}")
            self.b.guards[ref] = g
            return [g]
        return []

    def _false(self, enf: list[Any]) -> None:
        """Post 'false' under the enforcement literals (the conjunction of them is forbidden)."""
        self._ct(self.m.add_bool_or([False]), enf)

    def _lin(self, cols: Sequence[int], coefs: Sequence[float], what: str) -> tuple[Any, int]:
        """``10^k * sum(coefs * x)`` as a whole-number CP expression, and k."""
        c = np.asarray(coefs, dtype=np.float64)
        j = np.asarray(cols, dtype=np.int64)
        keep = c != 0
        c, j = c[keep], j[keep]
        k, ints = _scale_terms(c, self.sc.col_exp[j], lambda: what)
        expr = cp_model.LinearExpr.weighted_sum([self.b.vars[i] for i in j.tolist()], ints)
        return expr, k

    def _term(self, t: LinTerm, k: int) -> Any:
        """``10^k * t`` as a whole-number CP expression (k from ``_term_exp``)."""
        ws = [
            int(np.rint(float(c) * 10.0 ** (k - int(self.sc.col_exp[j]))))
            for j, c in zip(t.cols, t.coefs, strict=True)
        ]
        expr = cp_model.LinearExpr.weighted_sum([self.b.vars[j] for j in t.cols], ws)
        return expr + (_floor_scaled(float(t.const), k) if t.const else 0)

    def _term_exp(self, terms: Iterable[LinTerm], what: str, extra: Iterable[float] = ()) -> int:
        """One power of ten that makes all these terms (and extra numbers) whole."""
        k = 0
        for t in terms:
            for j, c in zip(t.cols, t.coefs, strict=True):
                k = max(k, _decimals(float(c), int(self.sc.col_exp[j])))
            k = max(k, _decimals(float(t.const)))
        for v in extra:
            if _finite(float(v)):
                k = max(k, _decimals(float(v)))
        if k > MAX_DECIMALS:
            raise BackendError(
                f"{what}: its numbers need more than {MAX_DECIMALS} decimal places to become "
                "whole; round the data or use the highs backend"
            )
        return k

    def _lit(self, lit: Lit) -> Any:
        v = self.b.vars[lit.col]
        return ~v if lit.neg else v

    # -------------------------------------------------------------- formulas

    def _atom(self, a: Atom) -> tuple[Any, int, int]:
        expr, k = self._lin(a.cols, a.coefs, f"constraint {self._name}")
        lo = _ceil_scaled(a.lo, k) if _finite(a.lo) else cp_model.INT_MIN
        hi = _floor_scaled(a.hi, k) if _finite(a.hi) else cp_model.INT_MAX
        return expr, lo, hi

    def _enforce(self, f: Formula, enf: list[Any]) -> None:
        """Post ``enf => f``."""
        if isinstance(f, Const):
            if not f.value:
                self._false(enf)
        elif isinstance(f, Lit):
            self._ct(self.m.add_bool_and([self._lit(f)]), enf)
        elif isinstance(f, Atom):
            expr, lo, hi = self._atom(f)
            if lo > hi:
                self._false(enf)
            elif lo == cp_model.INT_MIN and hi == cp_model.INT_MAX:
                return
            else:
                self._ct(self.m.add_linear_constraint(expr, lo, hi), enf)
        elif isinstance(f, And):
            for item in f.items:
                self._enforce(item, enf)
        elif isinstance(f, Or):
            lits = [self._half(item) for item in f.items]
            lits = [x for x in lits if x is not False]
            if any(x is True for x in lits):
                return
            if not lits:
                self._false(enf)
            else:
                self._ct(self.m.add_bool_or(lits), enf)
        elif isinstance(f, Not):
            g = f.item
            if isinstance(g, Atom):
                expr, lo, hi = self._atom(g)
                if lo > hi:
                    return
                dom = Domain(lo, hi).complement()
                if dom.is_empty():
                    self._false(enf)
                else:
                    self._ct(self.m.add_linear_expression_in_domain(expr, dom), enf)
            else:
                self._enforce(_negate(g), enf)
        else:  # pragma: no cover - Formula is closed
            raise BackendError(f"constraint {self._name}: unknown formula {f!r}")

    def _half(self, f: Formula) -> Any:
        """A literal that implies ``f`` (True/False for decided formulas)."""
        if isinstance(f, Const):
            return f.value
        if isinstance(f, Lit):
            return self._lit(f)
        if isinstance(f, Not) and isinstance(f.item, Lit):
            return ~self._lit(f.item)
        b = self._bool()
        self._enforce(f, [b])
        return b

    def _reify(self, f: Formula) -> Any:
        """A literal equivalent to ``f`` (True/False for decided formulas)."""
        if isinstance(f, Const):
            return f.value
        if isinstance(f, Lit):
            return self._lit(f)
        if isinstance(f, Not):
            inner = self._reify(f.item)
            return (not inner) if isinstance(inner, bool) else ~inner
        b = self._bool()
        self._enforce(f, [b])
        self._enforce(_negate(f), [~b])
        return b

    # -------------------------------------------------------------- the model

    def build(self) -> _Built:
        inst = self.inst
        self._columns()
        self._intervals()
        n_rows = 0
        for bi, blk in enumerate(inst.row_blocks):
            for i in range(blk.n):
                self.b.refs.append(
                    _Ref(
                        cid=blk.cid,
                        name=blk.row_name(inst.columns.interner, i),
                        template=blk.template,
                        source=blk.source if blk.source is not None else inst.sources.get(blk.cid),
                        kind="aux_row" if blk.aux else "row",
                        block=bi,
                        row=i,
                    )
                )
            n_rows += blk.n
        for li, con in enumerate(inst.logic):
            self.b.refs.append(
                _Ref(
                    cid=con.cid,
                    name=con.name,
                    template=con.template,
                    source=con.source if con.source is not None else inst.sources.get(con.cid),
                    kind="logic",
                    logic=li,
                )
            )
        ref = 0
        for blk in inst.row_blocks:
            self._rows(blk, ref)
            ref += blk.n
        for li, con in enumerate(inst.logic):
            self._logic(con, n_rows + li)
        self._objective()
        return self.b

    def _columns(self) -> None:
        cols = self.inst.columns
        names = cols.names()
        is_bool = np.zeros(cols.n, dtype=np.bool_)
        for blk in cols.blocks:
            if blk.domain in ("binary", "boolean"):
                is_bool[blk.offset : blk.offset + blk.size] = True
            elif blk.domain == "continuous":
                raise BackendError(
                    f"variable {blk.name!r} is continuous; CP-SAT works with whole numbers only: "
                    f"use the highs backend, or make {blk.name!r} integer"
                )
        self.doms: list[tuple[int, int]] = []
        los = _round_bounds(cols.lower, self.sc.col_exp, up=True)
        his = _round_bounds(cols.upper, self.sc.col_exp, up=False)
        bools = is_bool.tolist()
        for j in range(cols.n):
            lo_i, hi_i = los[j], his[j]
            lo_box, hi_box = lo_i is None, hi_i is None
            lo = -self.box if lo_i is None else lo_i
            hi = self.box if hi_i is None else hi_i
            if lo_box and hi < lo:
                lo = hi - self.box
            if hi_box and hi < lo:
                hi = lo + self.box
            if bools[j]:
                lo, hi = max(lo, 0), min(hi, 1)
            if lo_box or hi_box:
                self.b.boxed[j] = (lo_box, hi_box)
            if lo > hi:
                self.b.empty_domains.append(j)
                lo = hi = lo  # a placeholder; solve() answers infeasible from empty_domains
            self.doms.append((lo, hi))
            if bools[j] and lo == 0 and hi == 1:
                v = self.m.new_bool_var(names[j])
            else:
                v = self.m.new_int_var(lo, hi, names[j])
            self.b.vars.append(v)

    def _intervals(self) -> None:
        iv = self.inst.intervals
        t = self.sc.time_exp
        self.ivars: list[Any] = []
        for i in range(iv.n):
            size = np.rint(float(iv.duration[i]) * 10.0**t)
            self.ivars.append(
                self.m.new_interval_var(
                    self.b.vars[int(iv.start_col[i])],
                    int(size),
                    self.b.vars[int(iv.end_col[i])],
                    iv.names[i],
                )
            )

    def _rows(self, blk: RowBlock, ref0: int) -> None:
        exps = self.sc.col_exp[blk.cols]
        coefs = blk.coefs
        keep = coefs != 0
        rows, cols, coefs, exps = blk.rows[keep], blk.cols[keep], coefs[keep], exps[keep]
        # the power of ten of each row: the most decimals among its coefficients
        dec = np.zeros(rows.shape[0], dtype=np.int64)
        if not (np.all(exps == 0) and np.all(coefs == np.rint(coefs))):
            for e in np.unique(exps).tolist():
                sel = exps == e
                uc, inv = np.unique(coefs[sel], return_inverse=True)
                d = np.array([_decimals(float(c), int(e)) for c in uc.tolist()], dtype=np.int64)
                dec[sel] = d[inv]
        row_exp = np.zeros(blk.n, dtype=np.int64)
        np.maximum.at(row_exp, rows, dec)
        if row_exp.size and int(row_exp.max()) > MAX_DECIMALS:
            bad = int(np.argmax(row_exp))
            name = blk.row_name(self.inst.columns.interner, bad)
            sel = rows == bad
            worst = coefs[sel][np.argmax(dec[sel])]
            raise _too_many(f"constraint {blk.cid!r} (instance {name})", float(worst))
        ints = np.rint(coefs * np.power(10.0, row_exp[rows] - exps))
        if ints.size and float(np.abs(ints).max()) > _MAX_COEF:
            raise BackendError(f"constraint {blk.cid!r}: a coefficient becomes too large once made whole")
        ints_i = ints.astype(np.int64)
        order = np.argsort(rows, kind="stable")
        vars_ = self.b.vars
        row_vars = [vars_[c] for c in cols[order].tolist()]
        row_ints = ints_i[order].tolist()
        starts = np.searchsorted(rows[order], np.arange(blk.n + 1)).tolist()
        los = _round_bounds(blk.lower, row_exp, up=True)
        his = _round_bounds(blk.upper, row_exp, up=False)
        exps_l = row_exp.tolist()
        for i in range(blk.n):
            ref = ref0 + i
            enf = self._begin(ref)
            r = self.b.refs[ref]
            k = exps_l[i]
            lo, hi = los[i], his[i]
            r.exp, r.lo, r.hi = k, lo, hi
            a, z = starts[i], starts[i + 1]
            expr = cp_model.LinearExpr.weighted_sum(row_vars[a:z], row_ints[a:z])
            if ref in self.elastic:
                self._elastic_row(expr, lo, hi, ref, k)
                continue
            if lo is None and hi is None:
                continue
            if lo is not None and hi is not None and lo > hi:
                self._false(enf)
                continue
            self._ct(
                self.m.add_linear_constraint(
                    expr,
                    cp_model.INT_MIN if lo is None else lo,
                    cp_model.INT_MAX if hi is None else hi,
                ),
                enf,
            )

    def _slack_var(self, ref: int, side: str, most: int | None = None) -> Any:
        fixed = self.fixed_slack
        name = f"{self._name}#slack_{side}"
        if fixed is not None:
            v = fixed.get(ref, (0, 0))[0 if side == "lo" else 1]
            return self.m.new_int_var(v, v, name)
        return self.m.new_int_var(0, self.box if most is None else most, name)

    def _elastic_row(self, expr: Any, lo: int | None, hi: int | None, ref: int, k: int) -> None:
        s = _Slack(ref=ref, exp=k)
        if lo is not None:
            s.lo = self._slack_var(ref, "lo")
            self._ct(self.m.add(expr + s.lo >= lo))
        if hi is not None:
            s.hi = self._slack_var(ref, "hi")
            self._ct(self.m.add(expr - s.hi <= hi))
        self.b.slacks.append(s)

    def _logic(self, con: LogicCon, ref: int) -> None:
        enf = self._begin(ref)
        d = con.data
        what = f"constraint {con.cid!r} (instance {con.name})"
        tpl = con.template
        m = self.m
        if tpl == "implication":
            cond = self._reify(d["if"])
            if cond is False:
                return
            self._enforce(d["then"], enf if cond is True else [*enf, cond])
        elif tpl == "either_or":
            self._enforce(Or(tuple(d["options"])), enf)
        elif tpl in ("at_most_k", "at_least_k", "exactly_k"):
            k = int(d["k"])
            lits = [self._reify(f) for f in d["options"]]
            fixed = sum(1 for x in lits if x is True)
            free = [x for x in lits if not isinstance(x, bool)]
            total = cp_model.LinearExpr.sum(free) if free else 0
            lo = k - fixed if tpl in ("at_least_k", "exactly_k") else cp_model.INT_MIN
            hi = k - fixed if tpl in ("at_most_k", "exactly_k") else cp_model.INT_MAX
            if (lo != cp_model.INT_MIN and lo > len(free)) or (hi != cp_model.INT_MAX and hi < 0):
                self._false(enf)
            elif free:
                self._ct(m.add_linear_constraint(total, lo, hi), enf)
        elif tpl == "all_different":
            terms: list[LinTerm] = list(d["terms"])
            k = self._term_exp(terms, what)
            exprs = []
            for t in terms:
                expr = self._term(t, k)
                if len([c for c in t.coefs if c != 0]) > 1:
                    lo, hi = self._expr_range(t, k)
                    aux = m.new_int_var(lo, hi, f"{con.name}#term")
                    self._ct(m.add(aux == expr))
                    expr = aux
                exprs.append(expr)
            if len(exprs) > 1:
                self._ct(m.add_all_different(exprs), enf)
        elif tpl == "fixed_charge":
            var: LinTerm = d["variable"]
            upper = float(d["upper"])
            k = self._term_exp([var], what, [upper])
            expr = self._term(var, k)
            ind = self._lit(d["indicator"])
            self._ct(m.add(expr <= 0), [*enf, ~ind])
            if _finite(upper):
                self._ct(m.add(expr <= _floor_scaled(upper, k)), [*enf, ind])
        elif tpl == "semi_continuous":
            var = d["variable"]
            lo_f, hi_f = float(d["lower"]), float(d["upper"])
            k = self._term_exp([var], what, [lo_f, hi_f])
            expr = self._term(var, k)
            on = self._bool()
            self._ct(m.add(expr == 0), [*enf, ~on])
            lo = _ceil_scaled(lo_f, k) if _finite(lo_f) else cp_model.INT_MIN
            hi = _floor_scaled(hi_f, k) if _finite(hi_f) else cp_model.INT_MAX
            if lo > hi:
                self._ct(m.add_bool_and([~on]), enf)
            else:
                self._ct(m.add_linear_constraint(expr, lo, hi), [*enf, on])
        elif tpl == "clause":
            lits = [self._lit(x) for x in d["literals"]]
            self._ct(m.add_bool_or(lits), enf)
        elif tpl == "no_overlap":
            ivs = [self.ivars[int(i)] for i in d["intervals"]]
            if len(ivs) > 1:
                self._ct(m.add_no_overlap(ivs), enf)
        elif tpl == "precedence":
            iv = self.inst.intervals
            before, after = int(d["before"]), int(d["after"])
            lag = float(d.get("lag", 0.0))
            texp = self.sc.time_exp
            gap = self.b.vars[int(iv.start_col[after])] - self.b.vars[int(iv.end_col[before])]
            lag_i = _ceil_scaled(lag, texp)
            r = self.b.refs[ref]
            r.exp, r.lo = texp, lag_i
            if ref in self.elastic and lag_i > 0:
                # a lag may shrink to zero, never below: the order itself is not negotiable
                s = _Slack(ref=ref, exp=texp, lo=self._slack_var(ref, "lo", lag_i))
                self._ct(m.add(gap + s.lo >= lag_i))
                self.b.slacks.append(s)
            else:
                self._ct(m.add(gap >= lag_i), enf)
        elif tpl == "cumulative":
            ivs = [self.ivars[int(i)] for i in d["intervals"]]
            demands = [float(x) for x in d["demands"]]
            cap = float(d["capacity"])
            k = self._term_exp([], what, [*demands, cap])
            dem_i = [_ceil_scaled(x, k) for x in demands]
            cap_i = _floor_scaled(cap, k)
            self._ct(m.add_cumulative(ivs, dem_i, cap_i), enf)
        else:
            raise BackendError(f"{what}: template {tpl!r} is not supported by CP-SAT; use the highs backend")

    def _expr_range(self, t: LinTerm, k: int) -> tuple[int, int]:
        lo = hi = _floor_scaled(float(t.const), k) if t.const else 0
        for j, c in zip(t.cols, t.coefs, strict=True):
            vlo, vhi = self.doms[j]
            w = int(np.rint(float(c) * 10.0 ** (k - int(self.sc.col_exp[j]))))
            lo += min(w * vlo, w * vhi)
            hi += max(w * vlo, w * vhi)
        return lo, hi

    def _objective(self) -> None:
        obj = self.inst.objective
        m = self.m
        if self.elastic and self.fixed_slack is None:
            # weights: one unit of slack in a row scaled by 10^k is 10^-k of the model's units
            top = max((s.exp for s in self.b.slacks), default=0)
            terms, weights = [], []
            for s in self.b.slacks:
                for v in (s.lo, s.hi):
                    if v is not None:
                        terms.append(v)
                        weights.append(10 ** (top - s.exp))
            m.minimize(cp_model.LinearExpr.weighted_sum(terms, weights))
            self.b.obj_exp = top
            self.b.has_objective = True
            return
        if obj is None or not self.want_objective:
            return
        self._ref, self._name = -1, "objective"
        self.b.obj_const = float(obj.const)
        self.b.has_objective = True
        if obj.cols.size == 0 or not np.any(obj.coefs != 0):
            return
        expr, k = self._lin(obj.cols.tolist(), obj.coefs.tolist(), "the objective")
        self.b.obj_exp = k
        if obj.sense == "maximize":
            m.maximize(expr)
        else:
            m.minimize(expr)


def _negate(f: Formula) -> Formula:
    """``not f`` with the negation pushed one level down (atoms keep a ``Not``)."""
    if isinstance(f, Const):
        return Const(not f.value)
    if isinstance(f, Lit):
        return Lit(f.col, not f.neg)
    if isinstance(f, Not):
        return f.item
    if isinstance(f, And):
        return Or(tuple(_negate(i) for i in f.items))
    if isinstance(f, Or):
        return And(tuple(_negate(i) for i in f.items))
    return Not(f)


# ------------------------------------------------------------------ the backend


def _invalid_message(err: str) -> str:
    """CP-SAT's validation error, told by the constraint's name and with a fix."""
    m = re.search(r'name: "([^"]*)"', err)
    culprit = f"constraint {m.group(1)!r}" if m else "the model"
    if "overflow" in err:
        return (
            f"{culprit}: its coefficients times its variables' ranges overflow CP-SAT's 64-bit "
            f"whole numbers (a variable without a bound ranges over +-{DEFAULT_BOUND:g} here). "
            "Give the variables realistic bounds, scale the data down, or use the highs backend."
        )
    first = err.strip().splitlines()[0] if err.strip() else err
    return f"CP-SAT rejects {culprit}: {first}"


def _ortools_version() -> str:
    try:
        return version("ortools")
    except PackageNotFoundError:  # pragma: no cover - a source build
        return "unknown"


def _default_threads() -> int:
    return max(1, min(2, os.cpu_count() or 1))


@dataclass
class _Run:
    status: str
    solver: Any
    seconds: float


class CpSatBackend:
    """OR-Tools CP-SAT: integer, logic and scheduling models (see the module docstring)."""

    name = "cpsat"

    # -------------------------------------------------------------- protocol

    def accepts(self, instance: Instance) -> str | None:
        for blk in instance.columns.blocks:
            if blk.domain == "continuous":
                return (
                    f"variable {blk.name!r} is continuous, and CP-SAT works with whole numbers "
                    f"only: use the highs backend, or make {blk.name!r} integer"
                )
        obj = instance.objective
        if obj is not None and obj.is_quadratic:
            return "the objective is quadratic, which CP-SAT does not take: use the highs backend"
        for con in instance.logic:
            if con.template not in SUPPORTED_TEMPLATES:
                return f"constraint {con.cid!r} uses template {con.template!r}, unknown to CP-SAT"
        try:
            _scales(instance)
        except BackendError as exc:
            return str(exc)
        return None

    def compile(self, instance: Instance, options: SolveOptions) -> Compiled:
        reason = self.accepts(instance)
        if reason is not None:
            raise BackendError(reason)
        scales = _scales(instance)
        built = _Builder(instance, scales).build()
        err = built.model.validate()
        if err:
            raise BackendError(_invalid_message(err))
        return Compiled(
            backend=self.name,
            solver_model=built.model,
            instance=instance,
            inverse={
                "built": built,
                "scales": scales,
                "time_scale": 10**scales.time_exp,
                "objective_scale": 10**built.obj_exp,
                # column j is CP variable column_vars[j]; CP constraint c belongs to the
                # constraint instance instances[constraint_owner[c]] (-1: an interval's own)
                "column_vars": built.column_vars,
                "constraint_owner": np.asarray(built.ct_owner, dtype=np.int64),
                "instances": [r.name for r in built.refs],
            },
        )

    def solve(self, compiled: Compiled, options: SolveOptions) -> Result:
        inst = compiled.instance
        built: _Built = compiled.inverse["built"]
        scales: _Scales = compiled.inverse["scales"]
        solver_version = _ortools_version()
        if built.empty_domains:
            expl = self._explain_empty(inst, built)
            return Result(
                status=Status.INFEASIBLE,
                backend=self.name,
                solver_version=solver_version,
                message="some variables have no whole value between their bounds",
                explanation=expl,
            )
        tail: deque[str] = deque(maxlen=max(1, options.log_lines))
        run = self._run(built.model, options, log=tail)
        status = run.status
        mapped = STATUS_MAP.get(status, Status.UNKNOWN)
        res = Result(
            status=mapped,
            backend=self.name,
            solver_version=solver_version,
            solve_seconds=run.seconds,
            log_tail="\n".join(tail),
        )
        limit_hit = options.time_limit is not None and run.seconds >= 0.95 * options.time_limit
        if status in _SOLUTION:
            self._fill_solution(res, inst, built, scales, run.solver)
            if inst.objective is None:
                res.status = Status.OPTIMAL
            elif status == "FEASIBLE":
                why = "the time limit" if limit_hit else "a limit"
                res.message = f"stopped by {why} with a solution whose optimality is not proven" + (
                    f" (gap {res.gap:.3g})" if res.gap is not None else ""
                )
            if res.status == Status.OPTIMAL and inst.objective is not None:
                self._check_unbounded(res, inst, built, scales, run.solver, options)
        elif status == "UNKNOWN":
            if limit_hit:
                res.status = Status.TIME_LIMIT
                res.message = f"no solution found within the time limit of {options.time_limit:g} s"
            else:
                res.message = "CP-SAT stopped without a solution or a proof of infeasibility"
        elif status == "MODEL_INVALID":
            res.message = _invalid_message(str(built.model.validate()))
        elif status == "INFEASIBLE":
            res.message = "no assignment satisfies all constraints"
            if options.explain:
                t1 = time.monotonic()
                res.explanation = self._explain(inst, scales, options)
                res.message += f" (explained in {time.monotonic() - t1:.2f} s)"
        return res

    # -------------------------------------------------------------- solving

    def _run(
        self,
        model: Any,
        options: SolveOptions,
        *,
        log: deque[str] | None = None,
        time_limit: float | None = None,
        threads: int | None = None,
        deep_lp: bool = False,
    ) -> _Run:
        solver = cp_model.CpSolver()
        p = solver.parameters
        if deep_lp:
            # every linear row, enforced ones too, in the LP relaxation: without it cores and
            # elastic optima that the LP proves at once (pigeonhole 12/11) take exponential
            # search on one worker
            p.linearization_level = 2
        limit = time_limit if time_limit is not None else options.time_limit
        if limit is not None:
            p.max_time_in_seconds = max(0.01, float(limit))
        p.num_workers = threads or options.threads or _default_threads()
        if options.mip_gap is not None:
            p.relative_gap_limit = float(options.mip_gap)
        if log is not None:
            p.log_search_progress = True
            p.log_to_stdout = False
            solver.log_callback = log.append
        status = solver.solve(model)
        return _Run(status=str(status.name), solver=solver, seconds=float(solver.wall_time))

    def _fill_solution(
        self, res: Result, inst: Instance, built: _Built, scales: _Scales, solver: Any
    ) -> None:
        sol = np.asarray(solver.response_proto.solution, dtype=np.int64)
        idx = built.column_vars
        vals = sol[idx].astype(np.float64) / np.power(10.0, scales.col_exp)
        cols = inst.columns
        values: dict[str, float] = {}
        for blk in cols.blocks:
            if blk.domain == "aux":
                continue
            for j in range(blk.offset, blk.offset + blk.size):
                values[cols.name(j)] = float(vals[j])
        res.values = values
        if inst.objective is not None:
            scale = 10.0**built.obj_exp
            const = built.obj_const
            if built.model.has_objective():
                obj = float(solver.objective_value) / scale + const
                bound = float(solver.best_objective_bound) / scale + const
            else:
                obj = bound = const
            res.objective = obj
            res.bound = bound
            res.gap = 0.0 if obj == bound else abs(obj - bound) / max(abs(obj), 1e-10)

    def _check_unbounded(
        self,
        res: Result,
        inst: Instance,
        built: _Built,
        scales: _Scales,
        solver: Any,
        options: SolveOptions,
    ) -> None:
        """An optimum on the artificial box that a smaller box makes worse: unbounded."""
        touching = []
        for j, (lo_box, hi_box) in built.boxed.items():
            v = int(solver.value(built.vars[j]))
            if (lo_box and v <= -DEFAULT_BOUND) or (hi_box and v >= DEFAULT_BOUND):
                touching.append(j)
        if not touching or res.objective is None:
            return
        small = _Builder(inst, scales, default_bound=DEFAULT_BOUND // 1000).build()
        run = self._run(small.model, options, time_limit=options.time_limit or 10.0)
        if run.status not in _SOLUTION:
            return
        obj_small = float(run.solver.objective_value) / 10.0**small.obj_exp + small.obj_const
        worse = (
            obj_small < res.objective
            if inst.objective and inst.objective.sense == "maximize"
            else (obj_small > res.objective)
        )
        if worse:
            names = ", ".join(inst.columns.name(j) for j in touching[:5])
            res.status = Status.UNBOUNDED
            res.message = (
                f"the objective keeps improving as {names} grow(s) without bound (CP-SAT stopped "
                f"at its default box of {DEFAULT_BOUND:g}): add the missing bound or constraint"
            )

    # -------------------------------------------------------------- explanations

    def _explain_empty(self, inst: Instance, built: _Built) -> Explanation:
        items = [self._bound_item(inst, j, side) for j in built.empty_domains for side in ("lower", "upper")]
        expl = Explanation(
            kind="infeasible",
            summary="",
            conflict=items,
            conflict_method="cpsat-bounds",
        )
        expl.summary = self._summary(inst, expl)
        return expl

    def _bound_item(self, inst: Instance, col: int, side: str) -> ConflictItem:
        blk = inst.columns.block_of(col)
        name = inst.columns.name(col)
        val = float(inst.columns.lower[col] if side == "lower" else inst.columns.upper[col])
        return ConflictItem(
            kind="bound",
            id=blk.name,
            name=f"{name}.{side}",
            source=blk.source or f"{name} {'>=' if side == 'lower' else '<='} {val:g}",
            template=None,
        )

    def _domain_conflicts(self, inst: Instance, built: _Built) -> list[ConflictItem]:
        """Bounds that conflict with no constraint's help: interval windows too narrow."""
        items: list[ConflictItem] = []
        iv = inst.intervals
        cols = inst.columns
        for i in range(iv.n):
            s, e, d = int(iv.start_col[i]), int(iv.end_col[i]), float(iv.duration[i])
            if cols.lower[s] + d > cols.upper[e] or cols.upper[s] + d < cols.lower[e]:
                items += [self._bound_item(inst, s, "lower"), self._bound_item(inst, s, "upper")]
                items += [self._bound_item(inst, e, "lower"), self._bound_item(inst, e, "upper")]
        if not items:
            for j in built.empty_domains:
                items += [self._bound_item(inst, j, "lower"), self._bound_item(inst, j, "upper")]
        return items

    def _explain(self, inst: Instance, scales: _Scales, options: SolveOptions) -> Explanation:
        budget = min(60.0, options.time_limit or 30.0)
        deadline = time.monotonic() + max(2.0, budget)
        g = _Builder(inst, scales, guarded=True, objective=False).build()
        order = sorted(g.guards)
        model = g.model
        model.add_assumptions([g.guards[r] for r in order])
        run = self._run(model, options, time_limit=max(0.5, 0.4 * budget), threads=1, deep_lp=True)
        expl = Explanation(kind="infeasible", summary="", conflict_method="cpsat-assumptions")
        if run.status != "INFEASIBLE":
            expl.summary = (
                "No plan satisfies all constraints, but the search for the conflicting subset "
                "ran out of time."
            )
            return expl
        by_index = {int(g.guards[r].index): r for r in order}
        core = [by_index[i] for i in run.solver.sufficient_assumptions_for_infeasibility() if i in by_index]
        core, minimal = self._shrink(g, core, options, deadline)
        if not core:
            expl.conflict = self._domain_conflicts(inst, g)
            expl.conflict_method = "cpsat-bounds"
        else:
            expl.conflict = [self._item(g.refs[r]) for r in core]
            if not minimal:
                expl.conflict_method = "cpsat-assumptions (not proven irreducible: time limit)"
            self._relax(inst, scales, g, core, expl, options, deadline)
        expl.summary = self._summary(inst, expl)
        return expl

    def _assume(
        self, g: _Built, subset: list[int], options: SolveOptions, limit: float
    ) -> tuple[str, list[int]]:
        model = g.model
        model.clear_assumptions()
        model.add_assumptions([g.guards[r] for r in subset])
        run = self._run(model, options, time_limit=limit, threads=1, deep_lp=True)
        if run.status != "INFEASIBLE":
            return run.status, []
        by_index = {int(g.guards[r].index): r for r in subset}
        return run.status, [
            by_index[i] for i in run.solver.sufficient_assumptions_for_infeasibility() if i in by_index
        ]

    def _shrink(
        self, g: _Built, core: list[int], options: SolveOptions, deadline: float
    ) -> tuple[list[int], bool]:
        """Deletion filter: drop each member whose removal leaves the rest infeasible."""
        minimal = True
        i = 0
        while i < len(core):
            left = deadline - time.monotonic()
            if left <= 0:
                return core, False
            trial = core[:i] + core[i + 1 :]
            status, sub = self._assume(g, trial, options, max(0.1, left / (len(core) - i + 1)))
            if status == "INFEASIBLE":
                keep = set(sub)
                core = [r for r in trial if r in keep]
            else:
                if status not in _SOLUTION:
                    minimal = False
                i += 1
        return core, minimal

    def _item(self, r: _Ref) -> ConflictItem:
        return ConflictItem(kind="constraint", id=r.cid, name=r.name, source=r.source, template=r.template)

    def _relax(
        self,
        inst: Instance,
        scales: _Scales,
        g: _Built,
        core: list[int],
        expl: Explanation,
        options: SolveOptions,
        deadline: float,
    ) -> None:
        elastic = {
            r
            for r in core
            if g.refs[r].kind == "row" or (g.refs[r].kind == "logic" and g.refs[r].template == "precedence")
        }
        if not elastic:
            return
        left = max(0.5, deadline - time.monotonic())
        e = _Builder(inst, scales, elastic=elastic).build()
        run = self._run(e.model, options, time_limit=left / 2, threads=1, deep_lp=True)
        if run.status not in _SOLUTION:
            return
        solver = run.solver
        fixed: dict[int, tuple[int, int]] = {}
        relax: list[Relaxation] = []
        for s in e.slacks:
            r = e.refs[s.ref]
            lo_s = int(solver.value(s.lo)) if s.lo is not None else 0
            hi_s = int(solver.value(s.hi)) if s.hi is not None else 0
            fixed[s.ref] = (lo_s, hi_s)
            scale = 10.0**s.exp
            if r.kind == "logic":  # precedence: start(after) >= end(before) + lag
                if lo_s and r.lo is not None:
                    lag = float(inst.logic[r.logic].data.get("lag", 0.0))
                    relax.append(_rhs_relaxation(r, lag, (r.lo - lo_s) / scale))
                continue
            blk = inst.row_blocks[r.block]
            if lo_s and r.lo is not None:
                relax.append(_rhs_relaxation(r, float(blk.lower[r.row]), (r.lo - lo_s) / scale))
            if hi_s and r.hi is not None:
                relax.append(_rhs_relaxation(r, float(blk.upper[r.row]), (r.hi + hi_s) / scale))
        expl.relaxations = relax
        if inst.objective is not None and relax:
            after = _Builder(inst, scales, elastic=elastic, fixed_slack=fixed).build()
            left = max(0.5, deadline - time.monotonic())
            run = self._run(after.model, options, time_limit=left)
            if run.status in _SOLUTION:
                if after.model.has_objective():
                    expl.objective_after_relaxation = (
                        float(run.solver.objective_value) / 10.0**after.obj_exp + after.obj_const
                    )
                else:
                    expl.objective_after_relaxation = after.obj_const

    def _summary(self, inst: Instance, expl: Explanation) -> str:
        try:
            from ..explain import summarize  # type: ignore[import-not-found,attr-defined,unused-ignore]

            text = summarize(inst, expl)
            if isinstance(text, str) and text:
                return text
        except Exception:  # noqa: BLE001 - the summary is a courtesy; the data stands alone
            pass
        return _fallback_summary(expl)


def _fallback_summary(expl: Explanation) -> str:
    if not expl.conflict:
        return "No plan satisfies all constraints."
    kinds = {c.kind for c in expl.conflict}
    if kinds == {"bound"}:
        parts = [c.name for c in expl.conflict]
        head = "The variable bounds alone leave no possible value: " + ", ".join(parts) + "."
    else:
        parts = [f"{c.name}" + (f' ("{c.source}")' if c.source else "") for c in expl.conflict]
        head = (
            f"No plan satisfies all constraints. These {len(parts)} cannot hold together: "
            + "; ".join(parts)
            + "."
        )
    if expl.relaxations:
        changes = ", ".join(f"{r.name} from {r.current:g} to {r.suggested:g}" for r in expl.relaxations)
        head += f" Changing {changes} would restore feasibility"
        if expl.objective_after_relaxation is not None:
            head += f" (objective then {expl.objective_after_relaxation:g})"
        head += "."
    return head


def _rhs_relaxation(ref: _Ref, current: float, suggested: float) -> Relaxation:
    return Relaxation(
        id=ref.cid,
        name=ref.name,
        kind="rhs",
        current=current,
        suggested=suggested,
        change=suggested - current,
        source=ref.source,
    )
