"""Why a model has no solution (or no finite optimum), and what would change that.

Three parts:

* conflicts: an irreducible infeasible subset, reported as model constraint ids, variable
  bounds and integrality requirements with the sentences they came from. For an LP, HiGHS's
  own IIS (``iis_strategy`` "from LP" + "irreducible"; an empty answer is never accepted);
  for a MILP, the LP relaxation's IIS when the relaxation is already infeasible, otherwise a
  deletion filter with MIP feasibility checks under a time budget. Rows generated for one
  logic constraint stand or fall together, so they map back to that constraint's id.
* relaxations: an elastic model over the conflict (a nonnegative slack per finite side,
  weighted ``1/max(1, |rhs|)`` so the result does not depend on units), solved for the
  cheapest change of right-hand sides and bounds; the model is then re-solved with the
  changes to report the objective that the changes buy.
* ``summarize``: a plain-language summary built from the model and the explanation (no LLM),
  shared with the other backends, which fill an ``Explanation`` and call it.

HiGHS is imported only inside the functions that use it, so that a process running
CP-SAT can import ``summarize`` without loading highspy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .ir import FloatArray, Instance, IntArray
from .result import ConflictItem, Explanation, Relaxation, Status

if TYPE_CHECKING:
    from .backends.base import Compiled, SolveOptions
    from .backends.highs import HighsArrays, HighsInverse

__all__ = [
    "DEFAULT_TIME_BUDGET",
    "HIGHS_IIS_MAX",
    "MAX_CONFLICT_ITEMS",
    "explain_highs",
    "explain_infeasible",
    "explain_unbounded",
    "find_conflict",
    "suggest_relaxations",
    "summarize",
]

#: seconds allowed for conflict search plus relaxation when the options give no time limit
DEFAULT_TIME_BUDGET = 30.0
#: HiGHS's IIS is asked only for models with at most this many rows plus columns: it
#: cannot be interrupted, and on large conflicts it runs for minutes
HIGHS_IIS_MAX = 2000
#: the longest conflict listed in an explanation (a larger one is cut, and says so)
MAX_CONFLICT_ITEMS = 200
_IIS_STRATEGY = 2 | 4  # kIisStrategyFromLp | kIisStrategyIrreducible (highspy 1.13 bit flags)
_BOUND_LOWER, _BOUND_UPPER, _BOUND_BOXED = 2, 3, 4  # IisBoundStatus codes
_K_ROWS, _K_LOWER, _K_UPPER, _K_INT = 0, 1, 2, 3
_ZERO = 1e-9


# ------------------------------------------------------------------------ elements


@dataclass
class _Elements:
    """What a conflict may consist of, numbered: row groups, then bounds, then integrality.

    A row group is one row of a linear constraint, or all rows generated for one logic
    constraint instance. Rows marked ``aux`` (interval links, max/min rows) and the bounds
    and integrality of added binaries are hard: never part of a conflict, never relaxed.
    """

    row_elem: IntArray  # HiGHS row -> element id, -1 for hard rows
    rows_sorted: IntArray  # HiGHS rows of soft elements, grouped by element
    group_start: IntArray  # element e (< n_groups) owns rows_sorted[group_start[e]:group_start[e + 1]]
    logic_group: np.ndarray  # element id (< n_groups) -> rows come from a logic constraint
    lower_cols: IntArray
    upper_cols: IntArray
    int_cols: IntArray
    # logic group -> the bound elements its big-M values came from: with any of them off,
    # its rows are off too (they would be wrong), so the check can only err towards feasible
    group_deps: dict[int, IntArray] = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return int(self.group_start.shape[0]) - 1

    def rows_of(self, e: int) -> IntArray:
        return self.rows_sorted[int(self.group_start[e]) : int(self.group_start[e + 1])]

    @property
    def n(self) -> int:
        return self.n_groups + int(
            self.lower_cols.shape[0] + self.upper_cols.shape[0] + self.int_cols.shape[0]
        )

    def kind(self, e: int) -> int:
        g, lo, up = self.n_groups, self.lower_cols.shape[0], self.upper_cols.shape[0]
        if e < g:
            return _K_ROWS
        if e < g + lo:
            return _K_LOWER
        if e < g + lo + up:
            return _K_UPPER
        return _K_INT

    def col(self, e: int) -> int:
        g, lo, up = self.n_groups, self.lower_cols.shape[0], self.upper_cols.shape[0]
        k = self.kind(e)
        if k == _K_LOWER:
            return int(self.lower_cols[e - g])
        if k == _K_UPPER:
            return int(self.upper_cols[e - g - lo])
        if k == _K_INT:
            return int(self.int_cols[e - g - lo - up])
        raise ValueError("a row element has no column")

    def lower_elem(self, col: int) -> int | None:
        i = int(np.searchsorted(self.lower_cols, col))
        ok = i < self.lower_cols.shape[0] and int(self.lower_cols[i]) == col
        return self.n_groups + i if ok else None

    def upper_elem(self, col: int) -> int | None:
        i = int(np.searchsorted(self.upper_cols, col))
        ok = i < self.upper_cols.shape[0] and int(self.upper_cols[i]) == col
        return self.n_groups + self.lower_cols.shape[0] + i if ok else None

    def int_elem(self, col: int) -> int | None:
        i = int(np.searchsorted(self.int_cols, col))
        ok = i < self.int_cols.shape[0] and int(self.int_cols[i]) == col
        base = self.n_groups + self.lower_cols.shape[0] + self.upper_cols.shape[0]
        return base + i if ok else None


def _elements(inv: HighsInverse) -> _Elements:
    from .backends.linearize import LogicRows

    form, a = inv.form, inv.arrays
    m = a.n_rows
    row_elem = np.full(m, -1, dtype=np.int64)
    owner_of: dict[int, int] = {}  # logic group element -> its logic constraint index
    next_id = 0
    logic_flags: list[np.ndarray] = []
    for k, b in enumerate(form.blocks):
        if b.aux or b.n == 0:
            continue
        s = int(inv.block_start[k])
        if isinstance(b, LogicRows):
            owners, local = np.unique(b.owner, return_inverse=True)
            row_elem[s : s + b.n] = next_id + local
            logic_flags.append(np.ones(owners.shape[0], dtype=np.bool_))
            for k_owner, owner in enumerate(owners.tolist()):
                if owner in form.bigm_bounds:
                    owner_of[next_id + k_owner] = int(owner)
            next_id += int(owners.shape[0])
        else:
            row_elem[s : s + b.n] = next_id + np.arange(b.n)
            logic_flags.append(np.zeros(b.n, dtype=np.bool_))
            next_id += b.n
    # group rows by element with one sort
    rows_sorted = np.argsort(row_elem, kind="stable")
    elem_sorted = row_elem[rows_sorted]
    first = int(np.searchsorted(elem_sorted, 0))
    rows_sorted, elem_sorted = rows_sorted[first:], elem_sorted[first:]
    bounds = np.searchsorted(elem_sorted, np.arange(next_id + 1))

    cols = form.instance.columns
    soft = np.zeros(form.n_cols, dtype=np.bool_)  # columns whose bounds are the user's to change
    integral = np.zeros(form.n_cols, dtype=np.bool_)
    for blk in cols.blocks:
        sl = slice(blk.offset, blk.offset + blk.size)
        if blk.domain in ("continuous", "integer", "interval"):
            soft[sl] = True
        if blk.domain in ("integer", "binary", "boolean") or (
            blk.domain == "interval" and cols.integer[sl].any()
        ):
            integral[sl] = form.integer[sl]
    els = _Elements(
        row_elem=row_elem,
        rows_sorted=rows_sorted,
        group_start=bounds.astype(np.int64),
        logic_group=np.concatenate(logic_flags) if logic_flags else np.zeros(0, dtype=np.bool_),
        lower_cols=np.flatnonzero(soft & np.isfinite(a.col_lower)),
        upper_cols=np.flatnonzero(soft & np.isfinite(a.col_upper)),
        int_cols=np.flatnonzero(integral),
    )
    for e, owner in owner_of.items():
        deps = [
            d
            for c, side in form.bigm_bounds[owner]
            if (d := els.lower_elem(c) if side == "lower" else els.upper_elem(c)) is not None
        ]
        if deps:
            els.group_deps[e] = np.array(deps, dtype=np.int64)
    return els


# ------------------------------------------------------------------------ feasibility checks


class _Checker:
    """One HiGHS model (zero objective) whose elements can be switched off and on.

    Elements outside ``universe`` are switched off for good; ``infeasible(active)`` switches
    on exactly ``active`` (a subset of the universe) and asks HiGHS whether a point exists.
    """

    def __init__(
        self, inv: HighsInverse, els: _Elements, universe: list[int], mip: bool, deadline: float
    ) -> None:
        from .backends.highs import new_highs

        a = inv.arrays.copy()
        a.q_start = a.q_index = a.q_value = None
        if not mip:
            a.integer[:] = False
        self.a, self.els, self.mip, self.deadline = a, els, mip, deadline
        self.h: Any = new_highs(a, with_objective=False)
        if not mip:
            self.h.setOptionValue("presolve", "off")  # each check starts from the last basis
        self.checks = 0
        self.on = np.ones(els.n, dtype=np.bool_)  # what the HiGHS model holds now
        start = np.zeros(els.n, dtype=np.bool_)
        start[np.asarray(universe, dtype=np.int64)] = True
        self._apply(start)

    def _apply(self, on: np.ndarray) -> None:
        """Make the HiGHS model hold exactly the elements in ``on`` (plus the hard part)."""
        els, a, h = self.els, self.a, self.h
        if els.group_deps:
            on = on.copy()
            for g_elem, deps in els.group_deps.items():
                if on[g_elem] and not on[deps].all():
                    on[g_elem] = False
        changed = on != self.on
        if not changed.any():
            return
        g = els.n_groups
        lo_n, up_n = els.lower_cols.shape[0], els.upper_cols.shape[0]
        if g and changed[:g].any():
            rows = np.flatnonzero((els.row_elem >= 0) & changed[np.maximum(els.row_elem, 0)])
            keep = on[els.row_elem[rows]]
            lo = np.where(keep, a.row_lower[rows], -math.inf)
            up = np.where(keep, a.row_upper[rows], math.inf)
            h.changeRowsBounds(rows.shape[0], rows.astype(np.int32), lo, up)
        c_lo = changed[g : g + lo_n]
        c_up = changed[g + lo_n : g + lo_n + up_n]
        if c_lo.any() or c_up.any():
            cols = np.union1d(els.lower_cols[c_lo], els.upper_cols[c_up])
            lower = a.col_lower[cols].copy()
            upper = a.col_upper[cols].copy()
            for arr_cols, arr, off, inf in (
                (els.lower_cols, lower, g, -math.inf),
                (els.upper_cols, upper, g + lo_n, math.inf),
            ):
                if not arr_cols.shape[0]:
                    continue
                pos = np.minimum(np.searchsorted(arr_cols, cols), arr_cols.shape[0] - 1)
                arr[(arr_cols[pos] == cols) & ~on[off + pos]] = inf
            h.changeColsBounds(cols.shape[0], cols.astype(np.int32), lower, upper)
        base = g + lo_n + up_n
        if self.mip and changed[base:].any():
            c_int = changed[base:]
            cols_i = els.int_cols[c_int]
            types = on[base:][c_int].astype(np.uint8)
            h.changeColsIntegrality(cols_i.shape[0], cols_i.astype(np.int32), types)
        self.on = on.copy()

    def infeasible(self, active: list[int]) -> bool | None:
        """True: proven infeasible; False: a point exists; None: could not tell in time."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            return None
        on = np.zeros(self.els.n, dtype=np.bool_)
        on[np.asarray(active, dtype=np.int64)] = True
        self._apply(on)
        self.h.setOptionValue("time_limit", max(left, 0.01))
        self.h.run()
        self.checks += 1
        return _verdict(int(self.h.getModelStatus()), int(self.h.getInfo().primal_solution_status))


def _verdict(model_status: int, primal_status: int) -> bool | None:
    import highspy

    ms = highspy.HighsModelStatus
    if model_status in (int(ms.kInfeasible), int(ms.kUnboundedOrInfeasible)):
        return True  # the objective is zero, so "or unbounded" cannot be it
    if model_status in (int(ms.kOptimal), int(ms.kModelEmpty), int(ms.kUnbounded)) or primal_status == 2:
        return False
    return None


def _deletion_filter(check: _Checker, cand: list[int]) -> tuple[list[int], bool]:
    """Drop elements (in chunks, then one by one) while the rest stays infeasible.

    Returns the remaining elements and whether the filter finished (then every remaining
    element is necessary: dropping it was tried with a superset of the final set present).
    """
    cand = list(cand)
    chunk = max(1, len(cand) // 2)
    while True:
        i = 0
        dropped = False
        while i < len(cand):
            trial = cand[:i] + cand[i + chunk :]
            verdict = check.infeasible(trial)
            if verdict is None and time.monotonic() >= check.deadline:
                return cand, False
            if verdict:
                cand = trial
                dropped = True
            else:
                i += chunk
        if chunk == 1:
            return cand, True
        # halve the chunks while they pay; when none could go, most of what is left is
        # needed, and halving further would only repeat work: go one by one
        chunk = max(1, chunk // 2) if dropped else 1


def _highs_iis(
    inv: HighsInverse, els: _Elements, relax_integrality: bool, deadline: float
) -> tuple[list[int], bool]:
    """HiGHS's IIS of the LP (relaxation), as element ids (empty when HiGHS has none), and
    whether it maps one to one (no hard rows, no rows grouped into a logic constraint), so
    that HiGHS's own irreducibility carries over."""
    from .backends.highs import new_highs

    a = inv.arrays.copy()
    a.q_start = a.q_index = a.q_value = None
    if relax_integrality:
        a.integer[:] = False
    h: Any = new_highs(a, with_objective=False)
    h.setOptionValue("iis_strategy", _IIS_STRATEGY)
    h.setOptionValue("time_limit", max(deadline - time.monotonic(), 0.01))
    h.run()
    status, iis = h.getIis()
    if int(status) != 0 or not bool(iis.valid_):
        return [], False
    out: set[int] = set()
    exact = True
    for r in iis.row_index_:
        e = int(els.row_elem[int(r)])
        if e < 0 or bool(els.logic_group[e]):
            exact = False
        if e >= 0:
            out.add(e)
    for c, bound in zip(iis.col_index_, iis.col_bound_, strict=True):
        c, bound = int(c), int(bound)
        if bound in (_BOUND_LOWER, _BOUND_BOXED):
            lo = els.lower_elem(c)
            if lo is not None:
                out.add(lo)
        if bound in (_BOUND_UPPER, _BOUND_BOXED):
            up = els.upper_elem(c)
            if up is not None:
                out.add(up)
    # a logic constraint's rows stand only with the bounds their big-M values rest on
    return _closure(els, sorted(out)), exact


def _order(els: _Elements, ids: list[int]) -> list[int]:
    """Filter order: elements tried first are the likeliest to be dropped, so bounds
    first, then integrality, and rows (the user's sentences) last."""
    rank = {_K_LOWER: 0, _K_UPPER: 0, _K_INT: 1, _K_ROWS: 2}
    return sorted(ids, key=lambda e: (rank[els.kind(e)], e))


@dataclass
class _Conflict:
    elements: list[int]
    method: str
    els: _Elements


def _closure(els: _Elements, ids: list[int]) -> list[int]:
    """Add the bounds that the big-M values of the logic constraints in ``ids`` rest on."""
    out = set(ids)
    for e in ids:
        deps = els.group_deps.get(e)
        if deps is not None:
            out.update(int(d) for d in deps.tolist())
    return sorted(out)


def _shrink(
    inv: HighsInverse, els: _Elements, cand: list[int], mip: bool, deadline: float, how: str
) -> _Conflict | None:
    """Verify that ``cand`` is infeasible, then reduce it with the deletion filter."""
    if mip:
        support = _support(inv, els, cand)
        cand = sorted(set(cand) | {e for c in support.tolist() if (e := els.int_elem(int(c))) is not None})
    check = _Checker(inv, els, cand, mip, deadline)
    if not check.infeasible(cand):
        return None
    kept, done = _deletion_filter(check, _order(els, cand))
    kind = "MIP" if mip else "LP"
    return _Conflict(kept, f"{how}, then deletion filter ({kind})" + ("" if done else _STOPPED), els)


_STOPPED = ", stopped at the time budget (may not be irreducible)"


def _conflict(inv: HighsInverse, deadline: float) -> _Conflict:
    els = _elements(inv)
    a = inv.arrays
    everything = list(range(els.n))
    no_int = [e for e in everything if els.kind(e) != _K_INT]
    # HiGHS's IIS cannot be stopped once started and grows with the size of the set it
    # reduces: ask it on small models only; larger ones go through our elastic filter first
    small = a.n_rows + a.n_cols <= HIGHS_IIS_MAX
    if small:
        iis, exact = _highs_iis(inv, els, a.is_mip, deadline)
        if iis and not a.is_mip:
            check = _Checker(inv, els, iis, False, deadline)
            if check.infeasible(iis):
                if exact:
                    return _Conflict(iis, "HiGHS IIS", els)
                kept, done = _deletion_filter(check, _order(els, iis))
                return _Conflict(
                    kept, "HiGHS IIS, then deletion filter (LP)" + ("" if done else _STOPPED), els
                )
        elif iis:
            found = _shrink(inv, els, iis, True, deadline, "HiGHS IIS of the LP relaxation")
            if found is not None:
                return found
    # elastic filter on the LP (relaxation): an infeasible subset, usually a small one
    sub = _elastic_filter(inv, els, no_int, False, deadline)
    if sub:
        how = "elastic filter" if not a.is_mip else "elastic filter on the LP relaxation"
        found = _shrink(inv, els, _closure(els, sub), a.is_mip, deadline, how)
        if found is not None:
            return found
    if a.is_mip:
        # the LP relaxation is feasible: integrality is part of the reason
        sub = _elastic_filter(inv, els, everything, True, deadline)
        if sub:
            found = _shrink(inv, els, _closure(els, sub), True, deadline, "elastic filter (MIP)")
            if found is not None:
                return found
        check = _Checker(inv, els, everything, True, deadline)
        kept, done = _deletion_filter(check, _order(els, everything))
        return _Conflict(kept, "deletion filter (MIP)" + ("" if done else _STOPPED), els)
    check = _Checker(inv, els, no_int, False, deadline)
    kept, done = _deletion_filter(check, _order(els, no_int))
    return _Conflict(kept, "deletion filter (LP)" + ("" if done else _STOPPED), els)


def _support(inv: HighsInverse, els: _Elements, ids: list[int]) -> IntArray:
    """Columns that appear in the rows or bounds of the given elements."""
    a = inv.arrays
    parts: list[npt.NDArray[Any]] = []
    for e in ids:
        if els.kind(e) == _K_ROWS:
            for r in els.rows_of(e).tolist():
                parts.append(a.row_entries(int(r))[0])
        else:
            parts.append(np.array([els.col(e)], dtype=np.int64))
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def _items(inv: HighsInverse, c: _Conflict) -> list[ConflictItem]:
    form = inv.form
    inst = form.instance
    cols = inst.columns
    items: list[tuple[int, ConflictItem]] = []
    for e in c.elements:
        k = c.els.kind(e)
        if k == _K_ROWS:
            r = int(c.els.rows_of(e)[0])
            b = form.blocks[int(inv.row_block[r])]
            items.append(
                (
                    0,
                    ConflictItem(
                        kind="constraint",
                        id=b.cid,
                        name=inv.row_name(r),
                        source=b.source if b.source is not None else inst.sources.get(b.cid),
                        template=b.template,
                    ),
                )
            )
            continue
        j = c.els.col(e)
        vb = cols.block_of(j)
        name = cols.name(j)
        if k == _K_INT:
            items.append((2, ConflictItem(kind="integrality", id=vb.name, name=name, source=vb.source)))
        else:
            side = "lower" if k == _K_LOWER else "upper"
            items.append((1, ConflictItem(kind="bound", id=vb.name, name=f"{name}.{side}", source=vb.source)))
    items.sort(key=lambda t: t[0])
    return [it for _, it in items]


def find_conflict(
    compiled: Compiled, *, time_budget: float = DEFAULT_TIME_BUDGET
) -> tuple[list[ConflictItem], str]:
    """An irreducible infeasible subset of an infeasible HiGHS-compiled model, and the method."""
    from .backends.highs import inverse_of

    inv = inverse_of(compiled)
    c = _conflict(inv, time.monotonic() + time_budget)
    return _items(inv, c), c.method


# ------------------------------------------------------------------------ relaxations


def _integral_row(a: HighsArrays, row: int) -> bool:
    idx, val = a.row_entries(row)
    return bool(a.integer[idx].all() and np.all(val == np.round(val)))


def _outward(value: float, up: bool, whole: bool) -> float:
    if whole:
        return float(math.ceil(value - 1e-6) if up else math.floor(value + 1e-6))
    return float(f"{value:.9g}")


@dataclass
class _Slacks:
    """An elastic copy of the model: one nonnegative slack column per relaxable side."""

    h: Any
    first: int  # the first slack column
    row_idx: IntArray  # slack k < n_rows_slack: its row, side (+1 lower, -1 upper) and rhs
    row_side: FloatArray
    row_rhs: FloatArray
    col_idx: IntArray  # then one per relaxed bound: its column, side and bound
    col_side: FloatArray
    col_rhs: FloatArray
    elem: IntArray  # the element of each slack column

    @property
    def n(self) -> int:
        return int(self.elem.shape[0])


def _elastic_model(
    inv: HighsInverse, els: _Elements, present: np.ndarray, elastic: np.ndarray, mip: bool
) -> _Slacks | None:
    """The model with the ``present`` elements (others off), those also ``elastic`` with a
    slack per finite side, weighted ``1/max(1, |rhs|)``, as the (only) objective."""
    from .backends.highs import new_highs

    base = inv.arrays
    a = base.copy()
    a.q_start = a.q_index = a.q_value = None
    g, lo_n, up_n = els.n_groups, int(els.lower_cols.shape[0]), int(els.upper_cols.shape[0])
    soft = els.row_elem >= 0
    e_of = np.maximum(els.row_elem, 0)
    off_rows = soft & ~present[e_of] if g else np.zeros(a.n_rows, dtype=np.bool_)
    el_rows = soft & present[e_of] & elastic[e_of] if g else np.zeros(a.n_rows, dtype=np.bool_)
    a.row_lower[off_rows] = -math.inf
    a.row_upper[off_rows] = math.inf
    lo_on, up_on = present[g : g + lo_n], present[g + lo_n : g + lo_n + up_n]
    lo_el, up_el = lo_on & elastic[g : g + lo_n], up_on & elastic[g + lo_n : g + lo_n + up_n]
    a.col_lower[els.lower_cols[~lo_on | lo_el]] = -math.inf
    a.col_upper[els.upper_cols[~up_on | up_el]] = math.inf
    if mip:
        a.integer[els.int_cols[~present[g + lo_n + up_n :]]] = False
    else:
        a.integer[:] = False
    rows = np.flatnonzero(el_rows)
    r_lo = rows[np.isfinite(base.row_lower[rows])]
    r_up = rows[np.isfinite(base.row_upper[rows])]
    row_idx = np.concatenate([r_lo, r_up]).astype(np.int64)
    row_side = np.concatenate([np.ones(r_lo.shape[0]), -np.ones(r_up.shape[0])])
    c_lo, c_up = els.lower_cols[lo_el], els.upper_cols[up_el]
    col_idx = np.concatenate([c_lo, c_up]).astype(np.int64)
    col_side = np.concatenate([np.ones(c_lo.shape[0]), -np.ones(c_up.shape[0])])
    nr, nc = int(row_idx.shape[0]), int(col_idx.shape[0])
    if not nr and not nc:
        return None
    row_rhs = np.where(row_side > 0, base.row_lower[row_idx], base.row_upper[row_idx])
    col_rhs = np.where(col_side > 0, base.col_lower[col_idx], base.col_upper[col_idx])
    elem = np.concatenate(
        [els.row_elem[row_idx], g + np.flatnonzero(lo_el), g + lo_n + np.flatnonzero(up_el)]
    ).astype(np.int64)
    h: Any = new_highs(a, with_objective=False)
    if nr:
        # one slack column per row side, with its single entry in that row
        h.addCols(
            nr, 1.0 / np.maximum(1.0, np.abs(row_rhs)), np.zeros(nr), np.full(nr, math.inf), nr,
            np.arange(nr, dtype=np.int32), row_idx.astype(np.int32), row_side,
        )  # fmt: skip
    if nc:
        # a relaxed bound becomes a row: x_j + s >= lower, or x_j - s <= upper
        h.addCols(
            nc, 1.0 / np.maximum(1.0, np.abs(col_rhs)), np.zeros(nc), np.full(nc, math.inf), 0,
            np.zeros(nc, dtype=np.int32), np.zeros(0, dtype=np.int32), np.zeros(0),
        )  # fmt: skip
        idx = np.empty(2 * nc, dtype=np.int32)
        idx[0::2] = col_idx
        idx[1::2] = a.n_cols + nr + np.arange(nc)
        val = np.empty(2 * nc)
        val[0::2] = 1.0
        val[1::2] = col_side
        lo = np.where(col_side > 0, col_rhs, -math.inf)
        up = np.where(col_side > 0, math.inf, col_rhs)
        h.addRows(nc, lo, up, 2 * nc, np.arange(0, 2 * nc, 2, dtype=np.int32), idx, val)
    return _Slacks(h, a.n_cols, row_idx, row_side, row_rhs, col_idx, col_side, col_rhs, elem)


def _elastic_filter(
    inv: HighsInverse, els: _Elements, universe: list[int], mip: bool, deadline: float
) -> list[int] | None:
    """An infeasible subset of ``universe`` found by elastic filters: first with only the
    rows elastic (bounds held, and then added back for the columns the rows touch), then,
    if the rows alone are not the reason, with bounds elastic too."""
    sub = _elastic_pass(inv, els, universe, mip, deadline, bounds=False)
    if sub:
        uni = set(universe)
        bounds = [
            e
            for c in _support(inv, els, sub).tolist()
            for e in (els.lower_elem(int(c)), els.upper_elem(int(c)))
            if e is not None and e in uni
        ]
        return sorted(set(sub) | set(bounds))
    return _elastic_pass(inv, els, universe, mip, deadline, bounds=True)


def _elastic_pass(
    inv: HighsInverse, els: _Elements, universe: list[int], mip: bool, deadline: float, bounds: bool
) -> list[int] | None:
    """Chinneck's elastic filter: an infeasible subset of ``universe`` (None when the
    elastic model needs no slack, i.e. the universe is feasible, or time runs out).

    Every row side and bound of the universe gets a slack; elements whose slack is used
    are enforced (slack fixed at 0) and the model solved again, until it is infeasible:
    the enforced elements then cannot hold together.
    """
    import highspy

    present = np.zeros(els.n, dtype=np.bool_)
    present[np.asarray(universe, dtype=np.int64)] = True
    elastic = present.copy()
    elastic[els.n_groups if not bounds else els.n - int(els.int_cols.shape[0]) :] = False
    sl = _elastic_model(inv, els, present, elastic, mip)
    if sl is None:
        return None
    enforced = np.zeros(els.n, dtype=np.bool_)
    ms = highspy.HighsModelStatus
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sl.h.setOptionValue("time_limit", left)
        sl.h.run()
        status = int(sl.h.getModelStatus())
        if status in (int(ms.kInfeasible), int(ms.kUnboundedOrInfeasible)):
            return np.flatnonzero(enforced).tolist()
        if status != int(ms.kOptimal):
            return None
        sol = sl.h.getSolution()
        used = np.asarray(sol.col_value, dtype=np.float64)[sl.first :] > 1e-7
        if not mip and sol.dual_valid:
            # sensitivity filter: a row that prices the violation (nonzero dual) is part of
            # it too; enforcing those at once saves one round per shifted violation
            row_dual = np.abs(np.asarray(sol.row_dual, dtype=np.float64))
            nr = int(sl.row_idx.shape[0])
            used[:nr] |= row_dual[sl.row_idx] > 1e-9
            used[nr:] |= row_dual[inv.arrays.n_rows + np.arange(sl.n - nr)] > 1e-9
        new = np.unique(sl.elem[used & ~enforced[sl.elem]])
        if not new.shape[0]:
            return None  # no slack needed: feasible
        enforced[new] = True
        fix = np.flatnonzero(np.isin(sl.elem, new)) + sl.first
        sl.h.changeColsBounds(
            fix.shape[0], fix.astype(np.int32), np.zeros(fix.shape[0]), np.zeros(fix.shape[0])
        )
        if not mip:
            sl.h.setOptionValue("presolve", "off")  # warm start from the last basis


def _elastic(
    inv: HighsInverse, els: _Elements, ids: list[int], deadline: float
) -> tuple[list[Relaxation], dict[int, tuple[float, float]], dict[int, tuple[float, float]]] | None:
    """Cheapest weighted change of the rhs/bounds of ``ids``; None when that cannot restore feasibility."""
    import highspy

    base = inv.arrays
    inst = inv.form.instance
    cols = inst.columns
    chosen = np.zeros(els.n, dtype=np.bool_)
    chosen[np.asarray(ids, dtype=np.int64)] = True
    # a big-M value rests on a pinned bound: it cannot move without re-linearizing;
    # logic constraints and integrality are kept as they are
    for deps in els.group_deps.values():
        chosen[deps] = False
    chosen[: els.n_groups] &= ~els.logic_group
    sl = _elastic_model(inv, els, np.ones(els.n, dtype=np.bool_), chosen, base.is_mip)
    if sl is None:
        return None
    h = sl.h
    a = base
    nr = int(sl.row_idx.shape[0])
    row_idx, row_side, row_rhs = sl.row_idx, sl.row_side, sl.row_rhs
    col_idx, col_side, col_rhs = sl.col_idx, sl.col_side, sl.col_rhs
    h.setOptionValue("time_limit", max(deadline - time.monotonic(), 0.01))
    h.run()
    if int(h.getModelStatus()) != int(highspy.HighsModelStatus.kOptimal):
        return None
    s = np.asarray(h.getSolution().col_value, dtype=np.float64)[a.n_cols :]
    out: list[Relaxation] = []
    new_rows: dict[int, tuple[float, float]] = {}
    new_cols: dict[int, tuple[float, float]] = {}
    moved = np.flatnonzero(s[:nr] > 1e-7 * np.maximum(1.0, np.abs(row_rhs)))
    for k in moved.tolist():
        r, side, amount, cur = int(row_idx[k]), float(row_side[k]), float(s[k]), float(row_rhs[k])
        sug = _outward(cur - amount if side > 0 else cur + amount, side < 0, _integral_row(base, r))
        old_lo, old_up = new_rows.get(r, (float(base.row_lower[r]), float(base.row_upper[r])))
        if base.row_lower[r] == base.row_upper[r]:
            new_rows[r] = (sug, sug)  # an equality keeps being one, with the new right-hand side
        else:
            new_rows[r] = (sug, old_up) if side > 0 else (old_lo, sug)
        b = inv.form.blocks[int(inv.row_block[r])]
        out.append(
            Relaxation(
                id=b.cid,
                name=inv.row_name(r),
                kind="rhs",
                current=cur,
                suggested=sug,
                change=sug - cur,
                source=b.source if b.source is not None else inst.sources.get(b.cid),
            )
        )
    moved = np.flatnonzero(s[nr:] > 1e-7 * np.maximum(1.0, np.abs(col_rhs)))
    for k in moved.tolist():
        j, side, amount, cur = int(col_idx[k]), float(col_side[k]), float(s[nr + k]), float(col_rhs[k])
        sug = _outward(cur - amount if side > 0 else cur + amount, side < 0, bool(base.integer[j]))
        old_lo, old_up = new_cols.get(j, (float(base.col_lower[j]), float(base.col_upper[j])))
        new_cols[j] = (sug, old_up) if side > 0 else (old_lo, sug)
        vb = cols.block_of(j)
        kind = "lower" if side > 0 else "upper"
        out.append(
            Relaxation(
                id=vb.name,
                name=f"{cols.name(j)}.{kind}",
                kind=kind,
                current=cur,
                suggested=sug,
                change=sug - cur,
                source=vb.source,
            )
        )
    return out, new_rows, new_cols


def suggest_relaxations(
    compiled: Compiled, *, time_budget: float = DEFAULT_TIME_BUDGET
) -> tuple[list[Relaxation], float | None]:
    """Changes to rhs/bounds that restore feasibility, and the objective they then allow,
    with every linear row and bound of the model elastic (``explain_infeasible`` makes only
    the conflict elastic first, and widens to this when that is not enough)."""
    from .backends.highs import inverse_of

    inv = inverse_of(compiled)
    return _relax(inv, _elements(inv), None, time.monotonic() + time_budget)


def _relax(
    inv: HighsInverse, els: _Elements, conflict: list[int] | None, deadline: float
) -> tuple[list[Relaxation], float | None]:
    from .backends.highs import map_status, new_highs

    everything = list(range(els.n))
    got = _elastic(inv, els, conflict if conflict is not None else everything, deadline)
    if got is None and conflict is not None:
        got = _elastic(inv, els, everything, deadline)
    if got is None:
        return [], None
    relaxations, new_rows, new_cols = got
    if inv.form.objective is None or not relaxations:
        return relaxations, None
    a = inv.arrays.copy()
    for r, (lo, up) in new_rows.items():
        a.row_lower[r], a.row_upper[r] = lo, up
    for j, (lo, up) in new_cols.items():
        a.col_lower[j], a.col_upper[j] = lo, up
    h: Any = new_highs(a)
    left = deadline - time.monotonic()
    if left <= 0:
        return relaxations, None
    h.setOptionValue("time_limit", left)
    h.run()
    st = map_status(int(h.getModelStatus()), int(h.getInfo().primal_solution_status) == 2)
    if st in (Status.OPTIMAL, Status.FEASIBLE):
        return relaxations, a.sign * float(h.getInfo().objective_function_value)
    return relaxations, None


# ------------------------------------------------------------------------ entry points


def explain_infeasible(compiled: Compiled, *, time_budget: float = DEFAULT_TIME_BUDGET) -> Explanation:
    """Conflict, relaxations and summary for an infeasible HiGHS-compiled model."""
    from .backends.highs import inverse_of

    inv = inverse_of(compiled)
    start = time.monotonic()
    # the conflict search may take 70% of the budget; the relaxation gets what is left,
    # and at least 30% of it
    c = _conflict(inv, start + 0.7 * time_budget)
    items = _items(inv, c)
    method = c.method
    if len(items) > MAX_CONFLICT_ITEMS:
        method += f"; the first {MAX_CONFLICT_ITEMS} of {len(items)} members are listed"
        items = items[:MAX_CONFLICT_ITEMS]
    relax_deadline = max(start + time_budget, time.monotonic() + 0.3 * time_budget)
    relaxations, after = _relax(inv, c.els, c.elements, relax_deadline)
    ex = Explanation(
        kind="infeasible",
        summary="",
        conflict=items,
        conflict_method=method,
        relaxations=relaxations,
        objective_after_relaxation=after,
    )
    ex.summary = summarize(compiled.instance, ex)
    return ex


def explain_unbounded(compiled: Compiled) -> Explanation:
    """A direction along which the objective improves without limit, named by columns."""
    from .backends.highs import inverse_of, new_highs

    inv = inverse_of(compiled)
    h: Any = compiled.solver_model
    ray: FloatArray | None = None
    try:
        _, has, values = h.getPrimalRay()
        if has:
            ray = np.asarray(values, dtype=np.float64)
    except RuntimeError:
        ray = None
    if ray is None:
        # MIPs and presolved LPs give no ray: ask the LP relaxation without presolve
        a = inv.arrays.copy()
        a.integer[:] = False
        if not a.is_qp:
            lp: Any = new_highs(a)
            lp.setOptionValue("presolve", "off")
            lp.setOptionValue("time_limit", 10.0)
            lp.run()
            _, has, values = lp.getPrimalRay()
            if has:
                ray = np.asarray(values, dtype=np.float64)
    direction: dict[str, float] = {}
    if ray is not None and ray.shape[0] == inv.form.n_cols:
        ray = np.where(inv.form.hidden(), 0.0, ray)
        peak = float(np.abs(ray).max()) if ray.shape[0] else 0.0
        if peak > _ZERO:
            ray = ray / peak
            idx = np.flatnonzero(np.abs(ray) > 1e-7)
            idx = idx[np.argsort(-np.abs(ray[idx]), kind="stable")][:20]
            direction = {inv.form.column_name(int(j)): float(f"{ray[j]:.6g}") for j in idx}
    ex = Explanation(kind="unbounded", summary="", unbounded_direction=direction)
    ex.summary = summarize(compiled.instance, ex)
    return ex


def explain_highs(compiled: Compiled, status: Status, options: SolveOptions) -> Explanation | None:
    """The explanation the HiGHS backend attaches to a result with this status."""
    if not options.explain and status in (Status.INFEASIBLE, Status.UNBOUNDED):
        return None
    budget = DEFAULT_TIME_BUDGET
    if options.time_limit:
        budget = min(max(float(options.time_limit), 5.0), 120.0)
    if status is Status.INFEASIBLE:
        return explain_infeasible(compiled, time_budget=budget)
    if status is Status.UNBOUNDED:
        return explain_unbounded(compiled)
    kind = {Status.INFEASIBLE_OR_UNBOUNDED: "infeasible_or_unbounded", Status.TIME_LIMIT: "time_limit"}.get(
        status
    )
    if kind is None:
        return None
    ex = Explanation(kind=kind, summary="")
    ex.summary = summarize(compiled.instance, ex)
    return ex


# ------------------------------------------------------------------------ summaries


def _num(x: float) -> str:
    if math.isinf(x):
        return "no limit" if x > 0 else "minus infinity"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}"


def _bound_value(instance: Instance, item: ConflictItem) -> float | None:
    cols = instance.columns
    col_name, _, side = item.name.rpartition(".")
    for b in cols.blocks:
        if b.name != item.id:
            continue
        for j in range(b.offset, b.offset + b.size):
            if cols.name(j) == col_name:
                return float(cols.lower[j] if side == "lower" else cols.upper[j])
    return None


def _quote(text: str | None) -> str:
    return f'"{text.strip()}"' if text else ""


def summarize(instance: Instance, explanation: Explanation) -> str:
    """A plain-language summary of an explanation, built from the model (no LLM).

    Any backend can fill an ``Explanation`` (kind, conflict, relaxations, direction) and
    call this for its ``summary``.
    """
    kind = explanation.kind
    if kind == "infeasible":
        return _summary_infeasible(instance, explanation)
    if kind == "unbounded":
        return _summary_unbounded(instance, explanation)
    if kind == "infeasible_or_unbounded":
        return (
            "The solver could not tell whether the model has no solution at all or an objective "
            "that can improve without limit. Check two things: that every variable in the "
            "objective has a realistic bound (a capacity, a budget, a maximum amount), and that "
            "no two constraints contradict each other (for example a minimum above a maximum). "
            "Giving every variable sensible bounds and solving again yields a definite answer."
        )
    if kind == "time_limit":
        return (
            "The time limit ran out before the solver found a feasible plan. The model may be "
            "infeasible or just hard: allow more time, or tighten variable bounds so the search "
            "space is smaller."
        )
    return explanation.summary


_SUMMARY_LINES = 12  # items of one kind quoted in a summary; the rest are counted


def _capped(lines: list[str], what: str) -> list[str]:
    if len(lines) <= _SUMMARY_LINES:
        return lines
    return [*lines[:_SUMMARY_LINES], f"- ... and {len(lines) - _SUMMARY_LINES} more {what}"]


def _summary_infeasible(instance: Instance, ex: Explanation) -> str:
    parts = ["No plan satisfies every requirement of the model."]
    if not ex.conflict:
        parts.append(
            "No smaller set of conflicting requirements could be isolated; the requirements "
            "as a whole cannot be met together."
        )
    else:
        parts.append("These requirements cannot all hold at once:")
        by_id: dict[str, list[ConflictItem]] = {}
        for it in ex.conflict:
            if it.kind == "constraint":
                by_id.setdefault(it.id, []).append(it)
        rows: list[str] = []
        for cid, its in by_id.items():
            src = its[0].source or instance.sources.get(cid)
            shown = [i.name for i in its[:_SUMMARY_LINES]]
            more = f" and {len(its) - len(shown)} more" if len(its) > len(shown) else ""
            names = ", ".join(shown) + more
            where = f"({names})" if names != cid else f"({cid})"
            rows.append(f"- {_quote(src) or cid} {where}".rstrip())
        parts += _capped(rows, "constraints")
        bounds: list[str] = []
        whole: list[str] = []
        for it in ex.conflict:
            if it.kind == "bound":
                side = "at least" if it.name.endswith(".lower") else "at most"
                var = it.name.rpartition(".")[0]
                value = _bound_value(instance, it) if len(bounds) < _SUMMARY_LINES else None
                text = (
                    f"- {var} must be {side} {_num(value)}" if value is not None else f"- the bound {it.name}"
                )
                bounds.append(text + (f" ({_quote(it.source)})" if it.source else ""))
            elif it.kind == "integrality":
                src = f" ({_quote(it.source)})" if it.source else ""
                whole.append(f"- {it.name} must be a whole number{src}")
        parts += _capped(bounds, "bounds") + _capped(whole, "whole-number requirements")
    if ex.relaxations:
        parts.append("The smallest changes that make the model feasible:")
        changes: list[str] = []
        for r in ex.relaxations:
            what = "right-hand side" if r.kind == "rhs" else f"{r.kind} bound"
            sign = "+" if r.change > 0 else ""
            changes.append(
                f"- {r.name}: change the {what} from {_num(r.current)} to {_num(r.suggested)} "
                f"({sign}{_num(r.change)})" + (f", in {_quote(r.source)}" if r.source else "")
            )
        parts += _capped(changes, "changes")
        if ex.objective_after_relaxation is not None:
            parts.append(
                f"With these changes the best objective value would be {_num(ex.objective_after_relaxation)}."
            )
    return "\n".join(parts)


def _summary_unbounded(instance: Instance, ex: Explanation) -> str:
    obj = instance.objective
    sense = obj.sense if obj is not None else "minimize"
    grows = "grow" if sense == "maximize" else "fall"
    parts = [
        f"The objective can {grows} without limit ({sense}): nothing in the model stops it, "
        "so there is no best plan."
    ]
    if obj is not None and obj.source:
        parts.append(f"Objective: {_quote(obj.source)}.")
    if ex.unbounded_direction:
        moves = ", ".join(
            f"{name} {'up' if v > 0 else 'down'}" + (f" (x{_num(abs(v))})" if abs(v) != 1 else "")
            for name, v in ex.unbounded_direction.items()
        )
        parts.append(f"Moving {moves} keeps every constraint satisfied while the objective keeps improving.")
        parts.append(
            "Add the limit the text implies: an upper bound on these variables, or the "
            "capacity, budget or demand constraint that is missing."
        )
    else:
        parts.append(
            "Check the variables with an objective coefficient and no upper bound (or no lower "
            "bound), and add the capacity, budget or demand constraint that is missing."
        )
    return "\n".join(parts)
