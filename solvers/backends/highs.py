"""The HiGHS backend: LP, MILP and convex QP through highspy.

``compile`` linearizes the instance (``linearize.py``), stacks its row blocks into one
row-wise sparse matrix with numpy and hands it to HiGHS in bulk (one ``passModel``: no
Python loop over columns or nonzeros), keeping the inverse: HiGHS row ->
(row block, local row), HiGHS column -> model column. ``solve`` runs HiGHS under the
options, maps its model status through ``STATUS_MAP`` (anything unmapped is ``unknown``),
and reads values, duals, bound and gap back by model names. Infeasible and unbounded
outcomes are results; their explanation comes from ``solvers.explain``.

HiGHS always minimizes here: a maximization is passed negated and every objective value,
bound and dual is turned back, so that one code path serves LP, MILP and QP.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import highspy
import numpy as np
import numpy.typing as npt

from ..errors import BackendError, OptscribeError, SolverFailure
from ..ir import BoolArray, FloatArray, Instance, IntArray, RowBlock
from ..result import Explanation, Result, Status
from .base import Compiled, SolveOptions
from .linearize import REFUSED_TEMPLATES, LinearForm, linearize

__all__ = [
    "STATUS_MAP",
    "HighsArrays",
    "HighsBackend",
    "HighsInverse",
    "build_arrays",
    "highs_version",
    "inverse_of",
    "map_status",
    "new_highs",
]

I32 = npt.NDArray[np.int32]
_MS = highspy.HighsModelStatus

#: HiGHS model status (by integer code) -> result status. A limit status with a feasible
#: point becomes ``feasible`` (see ``map_status``); codes missing here are ``unknown``.
STATUS_MAP: dict[int, Status] = {
    int(_MS.kNotset): Status.UNKNOWN,
    int(_MS.kLoadError): Status.ERROR,
    int(_MS.kModelError): Status.ERROR,
    int(_MS.kPresolveError): Status.ERROR,
    int(_MS.kSolveError): Status.ERROR,
    int(_MS.kPostsolveError): Status.ERROR,
    int(_MS.kModelEmpty): Status.OPTIMAL,
    int(_MS.kOptimal): Status.OPTIMAL,
    int(_MS.kInfeasible): Status.INFEASIBLE,
    int(_MS.kUnboundedOrInfeasible): Status.INFEASIBLE_OR_UNBOUNDED,
    int(_MS.kUnbounded): Status.UNBOUNDED,
    int(_MS.kObjectiveBound): Status.UNKNOWN,
    int(_MS.kObjectiveTarget): Status.UNKNOWN,
    int(_MS.kTimeLimit): Status.TIME_LIMIT,
    int(_MS.kIterationLimit): Status.TIME_LIMIT,
    int(_MS.kUnknown): Status.UNKNOWN,
    int(_MS.kSolutionLimit): Status.TIME_LIMIT,
    int(_MS.kInterrupt): Status.UNKNOWN,
    int(_MS.kMemoryLimit): Status.ERROR,
    int(_MS.kHighsInterrupt): Status.UNKNOWN,
}
# statuses that stop a search early: with a feasible point in hand the answer is a plan
_STOPPED = frozenset(
    int(s)
    for s in (
        _MS.kTimeLimit,
        _MS.kIterationLimit,
        _MS.kSolutionLimit,
        _MS.kInterrupt,
        _MS.kHighsInterrupt,
        _MS.kObjectiveBound,
        _MS.kObjectiveTarget,
    )
)
_FEASIBLE_POINT = 2  # HighsInfo.primal_solution_status: kSolutionStatusFeasible

_INT32_MAX = int(np.iinfo(np.int32).max)

#: above this many columns (rows), values (duals) list only the nonzeros
FULL_LISTING_LIMIT = 100_000
_ZERO = 1e-9


def map_status(code: int, has_solution: bool = False) -> Status:
    """The result status for a HiGHS model status code; unknown codes map to ``unknown``."""
    status = STATUS_MAP.get(int(code), Status.UNKNOWN)
    if has_solution and int(code) in _STOPPED:
        return Status.FEASIBLE
    return status


def highs_version() -> str:
    return f"{highspy.HIGHS_VERSION_MAJOR}.{highspy.HIGHS_VERSION_MINOR}.{highspy.HIGHS_VERSION_PATCH}"


# ------------------------------------------------------------------------ arrays


@dataclass
class HighsArrays:
    """A MILP/QP in HiGHS's own terms: minimize ``cost.x + 0.5 x'Qx + offset``."""

    cost: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray
    integer: BoolArray
    row_lower: FloatArray
    row_upper: FloatArray
    start: I32  # CSR row starts, length n_rows + 1
    index: I32  # column of each nonzero
    value: FloatArray
    offset: float = 0.0
    sign: float = 1.0  # -1 when the model maximizes: HiGHS sees the negated objective
    q_start: IntArray | None = None  # Hessian, lower triangle, column-wise
    q_index: IntArray | None = None
    q_value: FloatArray | None = None

    @property
    def n_cols(self) -> int:
        return int(self.cost.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.row_lower.shape[0])

    @property
    def is_mip(self) -> bool:
        return bool(self.integer.any())

    @property
    def is_qp(self) -> bool:
        return self.q_value is not None and self.q_value.shape[0] > 0

    def row_entries(self, row: int) -> tuple[I32, FloatArray]:
        a, b = int(self.start[row]), int(self.start[row + 1])
        return self.index[a:b], self.value[a:b]

    def copy(self) -> HighsArrays:
        return replace(
            self,
            cost=self.cost.copy(),
            col_lower=self.col_lower.copy(),
            col_upper=self.col_upper.copy(),
            integer=self.integer.copy(),
            row_lower=self.row_lower.copy(),
            row_upper=self.row_upper.copy(),
        )


@dataclass
class HighsInverse:
    """The way back from HiGHS indices to the model."""

    form: LinearForm
    arrays: HighsArrays
    row_block: IntArray  # HiGHS row -> index into form.blocks
    row_local: IntArray  # HiGHS row -> row within its block
    block_start: IntArray  # first HiGHS row of each block
    col_model: IntArray  # HiGHS column -> instance column, -1 for added columns
    extra: dict[str, Any] = field(default_factory=dict)

    def row_name(self, row: int) -> str:
        b = self.form.blocks[int(self.row_block[row])]
        return b.row_name(self.form.instance.columns.interner, int(self.row_local[row]))


def _concat(parts: list[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
    if not parts:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(parts, dtype=dtype, casting="same_kind")


def build_arrays(form: LinearForm) -> tuple[HighsArrays, HighsInverse]:
    """Stack the form's row blocks into HiGHS arrays (vectorized over nonzeros)."""
    n = form.n_cols
    blocks = form.blocks
    sizes = np.array([b.n for b in blocks], dtype=np.int64)
    block_start = np.zeros(len(blocks) + 1, dtype=np.int64)
    np.cumsum(sizes, out=block_start[1:])
    m = int(block_start[-1])
    if n > _INT32_MAX or sum(b.rows.shape[0] for b in blocks) > _INT32_MAX:
        raise BackendError("the model has more than 2^31 nonzeros or columns: too large for HiGHS")
    start, index, value = _csr(blocks, block_start, n)
    row_lower = _concat([b.lower for b in blocks], np.float64)
    row_upper = _concat([b.upper for b in blocks], np.float64)

    obj = form.objective
    sign = -1.0 if obj is not None and obj.sense == "maximize" else 1.0
    cost = np.zeros(n, dtype=np.float64)
    offset = 0.0
    q_start = q_index = q_value = None
    if obj is not None:
        if obj.cols.shape[0]:
            cost = _cost(obj.cols, obj.coefs, n, sign)
        offset = sign * float(obj.const)
        if obj.is_quadratic:
            q_start, q_index, q_value = _hessian(obj.qcols1, obj.qcols2, sign * obj.qcoefs, n)
    arrays = HighsArrays(
        cost=cost,
        col_lower=np.asarray(form.lower, dtype=np.float64),
        col_upper=np.asarray(form.upper, dtype=np.float64),
        integer=np.asarray(form.integer, dtype=np.bool_),
        row_lower=row_lower,
        row_upper=row_upper,
        start=start,
        index=index,
        value=value,
        offset=offset,
        sign=sign,
        q_start=q_start,
        q_index=q_index,
        q_value=q_value,
    )
    row_block = np.repeat(np.arange(len(blocks), dtype=np.int64), sizes)
    row_local = np.arange(m, dtype=np.int64) - block_start[:-1][row_block]
    col_model = np.arange(n, dtype=np.int64)
    col_model[form.n_model :] = -1
    inverse = HighsInverse(form, arrays, row_block, row_local, block_start[:-1], col_model)
    return arrays, inverse


def _cost(cols: IntArray, coefs: FloatArray, n: int, sign: float) -> FloatArray:
    """``sign * (sum of coefs per column)``, making at most one array (with a million
    columns each array made costs milliseconds). It may be ``coefs`` itself: read-only."""
    m = cols.shape[0]
    if m == n and n and cols[0] == 0 and cols[-1] == n - 1 and bool((cols[1:] > cols[:-1]).all()):
        # every column once, in order (a sum over all of a variable): the coefs are the cost
        if sign == 1.0 and coefs.dtype == np.float64 and bool(coefs.all()):
            return coefs  # no zero, so no -0.0 that summing into zeros would turn into 0.0
        cost = np.add(coefs, 0.0, dtype=np.float64)  # + 0.0: -0.0 becomes 0.0, as in a sum
    else:
        cost = np.bincount(cols, weights=coefs, minlength=n).astype(np.float64, copy=False)
    if sign != 1.0:
        np.multiply(cost, sign, out=cost)
    return cost


def _csr(blocks: list[RowBlock], block_start: IntArray, n: int) -> tuple[I32, I32, FloatArray]:
    """Row-wise sparse arrays of the stacked blocks.

    Fast path (what ``lower`` produces): each block lists its nonzeros row by row with
    increasing columns and no zeros; that is checked in O(nnz) and the blocks are simply
    concatenated. Anything else is sorted and merged (repeated entries summed).
    """
    m = int(block_start[-1])
    nnz = 0
    starts: list[IntArray] = []
    fast = True
    for b in blocks:
        r = b.rows
        if r.shape[0] > 1 and not bool((r[1:] >= r[:-1]).all()):
            fast = False
            break
        starts.append(np.searchsorted(r, np.arange(b.n)) + nnz)
        nnz += int(r.shape[0])
    if fast:
        value = _concat([b.coefs for b in blocks], np.float64)
        if bool(value.all()):
            index = _concat([b.cols for b in blocks], np.int32)
            start = _concat([*starts, np.array([nnz])], np.int32)
            if nnz < 2:
                return start, index, value
            # columns increase within each row (the first entry of a row may drop back);
            # compared in place (no np.diff array), on the int32 copy HiGHS gets anyway
            increasing = index[1:] > index[:-1]
            new_row = start[1:-1] - 1  # the entry before each row's first one
            increasing[new_row[(new_row >= 0) & (new_row < nnz - 1)]] = True
            if bool(increasing.all()):
                return start, index, value
    rows = _concat(
        [b.rows.astype(np.int64, copy=False) + block_start[k] for k, b in enumerate(blocks)], np.int64
    )
    cols = _concat([b.cols for b in blocks], np.int64)
    vals = _concat([b.coefs for b in blocks], np.float64)
    key = rows * max(n, 1) + cols
    order = np.argsort(key, kind="stable")
    key, rows, cols, vals = key[order], rows[order], cols[order], vals[order]
    first = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1]))) if key.shape[0] else order
    if first.shape[0] != key.shape[0]:
        vals = np.add.reduceat(vals, first)
        rows, cols = rows[first], cols[first]
    nz = vals != 0
    rows, cols, vals = rows[nz], cols[nz], vals[nz]
    start64 = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=m), out=start64[1:])
    return start64.astype(np.int32), cols.astype(np.int32), vals


def _hessian(q1: IntArray, q2: IntArray, q: FloatArray, n: int) -> tuple[IntArray, IntArray, FloatArray]:
    """``sum(q * x[q1] * x[q2])`` as HiGHS's Q (objective has 0.5 x'Qx), lower triangle by column."""
    r = np.maximum(q1, q2).astype(np.int64)
    c = np.minimum(q1, q2).astype(np.int64)
    v = np.where(r == c, 2.0 * q, q).astype(np.float64)
    key = c * n + r
    uniq, inv = np.unique(key, return_inverse=True)
    vals = np.bincount(inv, weights=v, minlength=uniq.shape[0])
    cc, rr = uniq // n, uniq % n
    nz = vals != 0
    cc, rr, vals = cc[nz], rr[nz], vals[nz]
    start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(cc, minlength=n), out=start[1:])
    return start, rr, vals


def _check_convex(arrays: HighsArrays, form: LinearForm) -> None:
    """Refuse a non-convex objective up front (HiGHS only says so at solve time)."""
    assert arrays.q_start is not None and arrays.q_index is not None and arrays.q_value is not None
    n = arrays.n_cols
    cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(arrays.q_start))
    rows = arrays.q_index
    used = np.unique(np.concatenate([cols, rows]))
    sense = "maximize" if arrays.sign < 0 else "minimize"
    diag_bad = (rows == cols) & (arrays.q_value < 0)
    if diag_bad.any():
        name = form.column_name(int(cols[int(np.argmax(diag_bad))]))
        raise BackendError(_nonconvex_message(sense, f"the square of {name} has the wrong sign"))
    if used.shape[0] > 2000:
        return  # too large to check densely: HiGHS's own check applies at solve time
    pos = np.searchsorted(used, np.arange(n))
    dense = np.zeros((used.shape[0], used.shape[0]))
    np.add.at(dense, (pos[rows], pos[cols]), arrays.q_value)
    off = rows != cols
    np.add.at(dense, (pos[cols[off]], pos[rows[off]]), arrays.q_value[off])
    eig = np.linalg.eigvalsh(dense)
    scale = max(1.0, float(np.abs(eig).max()))
    if float(eig.min()) < -1e-9 * scale:
        raise BackendError(
            _nonconvex_message(sense, f"its quadratic part has a negative curvature ({eig.min():.3g})")
        )


def _nonconvex_message(sense: str, why: str) -> str:
    want = "convex (a sum of squares)" if sense == "minimize" else "concave (minus a sum of squares)"
    return (
        f"the objective is not {want}: {why}. HiGHS can {sense} only such quadratic objectives; "
        "rewrite the objective, or linearize it"
    )


def new_highs(arrays: HighsArrays, *, quiet: bool = True, with_objective: bool = True) -> highspy.Highs:
    """A Highs object holding ``arrays``, loaded in bulk."""
    h = highspy.Highs()
    if quiet:
        h.setOptionValue("output_flag", False)
    load(h, arrays, with_objective=with_objective)
    return h


def load(h: highspy.Highs, a: HighsArrays, *, with_objective: bool = True) -> None:
    """Pass the whole model in one ``passModel`` call (row-wise matrix, HiGHS transposes it).

    highspy's ``passModel`` needs a full-length integrality array even for an LP (an empty
    one is read past its end), so an LP goes in with all zeros; HiGHS then logs a harmless
    warning, which ``_Log`` drops.
    """
    n, m = a.n_cols, a.n_rows
    cost = a.cost if with_objective else np.zeros(n)
    offset = a.offset if with_objective else 0.0
    # an LP's all-zero array comes from calloc: pages HiGHS only reads are never made
    integrality = a.integer.astype(np.int32) if a.is_mip else np.zeros(n, dtype=np.int32)
    nnz = int(a.index.shape[0])
    rowwise, minimize = int(highspy.MatrixFormat.kRowwise), int(highspy.ObjSense.kMinimize)
    if with_objective and a.is_qp:
        assert a.q_start is not None and a.q_index is not None and a.q_value is not None
        status = h.passModel(
            n, m, nnz, int(a.q_value.shape[0]), rowwise, int(highspy.HessianFormat.kTriangular), minimize,
            offset, cost, a.col_lower, a.col_upper, a.row_lower, a.row_upper, a.start, a.index, a.value,
            a.q_start.astype(np.int32), a.q_index.astype(np.int32), a.q_value, integrality,
        )  # fmt: skip
    else:
        status = h.passModel(
            n, m, nnz, rowwise, minimize, offset, cost, a.col_lower, a.col_upper, a.row_lower,
            a.row_upper, a.start, a.index, a.value, integrality,
        )  # fmt: skip
    _ok(status, "passModel")


def _ok(status: highspy.HighsStatus, what: str) -> None:
    if status == highspy.HighsStatus.kError:
        raise SolverFailure(f"HiGHS refused the model data ({what})")


def inverse_of(compiled: Compiled) -> HighsInverse:
    inv = compiled.inverse.get("highs")
    if not isinstance(inv, HighsInverse):
        raise SolverFailure("this compiled model was not made by the HiGHS backend")
    return inv


# ------------------------------------------------------------------------ naming


def column_names(form: LinearForm, cols: Iterable[int]) -> list[str]:
    return [form.column_name(int(j)) for j in cols]


def _keyed(names: list[str], values: FloatArray) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in zip(names, values.tolist(), strict=True):
        out[k] = out.get(k, 0.0) + v  # rows of one instance share its name
    return out


# ------------------------------------------------------------------------ log capture


_LP_INTEGRALITY_WARNING = "No semi-integer/integer variables in model with non-empty integrality"


class _Log:
    """Send HiGHS's log to a temporary file (not the console) and keep its tail."""

    def __init__(self, h: highspy.Highs) -> None:
        fd, self.path = tempfile.mkstemp(prefix="optscribe-highs-", suffix=".log")
        os.close(fd)
        self.h = h
        h.setOptionValue("output_flag", True)
        h.setOptionValue("log_to_console", False)
        h.setOptionValue("log_file", self.path)

    def close(self, lines: int) -> str:
        self.h.setOptionValue("log_file", "")
        self.h.setOptionValue("output_flag", False)
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        finally:
            os.unlink(self.path)
        kept = [ln for ln in text.splitlines() if _LP_INTEGRALITY_WARNING not in ln]
        tail = kept[-lines:] if lines > 0 else []
        return "\n".join(tail)


# ------------------------------------------------------------------------ the backend


def _features_refusal(instance: Instance) -> str | None:
    feats = instance.features()
    for t, why in REFUSED_TEMPLATES.items():
        if t in feats:
            ids = sorted({c.cid for c in instance.logic if c.template == t})
            return f"{why} (constraint {', '.join(repr(i) for i in ids)})"
    if "quadratic" in feats:
        milp_logic = any(c.template != "precedence" for c in instance.logic)
        if "integer" in feats or milp_logic:
            return (
                "HiGHS cannot solve a quadratic objective together with integer variables or "
                "logic constraints (MIQP): make the variables continuous or the objective linear"
            )
    return None


class HighsBackend:
    """LP / MILP / convex QP with HiGHS."""

    name = "highs"

    def accepts(self, instance: Instance) -> str | None:
        why = _features_refusal(instance)
        if why is not None:
            return why
        if instance.logic:
            try:
                linearize(instance)
            except BackendError as e:
                return str(e)
        return None

    def compile(self, instance: Instance, options: SolveOptions) -> Compiled:
        why = _features_refusal(instance)
        if why is not None:
            raise BackendError(why)
        form = linearize(instance)
        arrays, inverse = build_arrays(form)
        if arrays.is_qp:
            _check_convex(arrays, form)
        h = new_highs(arrays)
        return Compiled(
            backend=self.name,
            solver_model=h,
            instance=instance,
            inverse={
                "highs": inverse,
                "row_block": inverse.row_block,
                "row_local": inverse.row_local,
                "col_model": inverse.col_model,
            },
        )

    def solve(self, compiled: Compiled, options: SolveOptions) -> Result:
        inv = inverse_of(compiled)
        h: highspy.Highs = compiled.solver_model
        a = inv.arrays
        _apply_options(h, options)
        log = _Log(h)
        t0 = time.perf_counter()
        try:
            run_status = h.run()
        finally:
            seconds = time.perf_counter() - t0
            log_tail = log.close(options.log_lines)
        if a.sign < 0 and log_tail:
            log_tail = (
                "(the model maximizes: HiGHS minimizes its negation, "
                "so the objective values below have the sign flipped)\n" + log_tail
            )
        ms = int(h.getModelStatus())
        info = h.getInfo()
        has_sol = info.primal_solution_status == _FEASIBLE_POINT
        status = map_status(ms, has_sol)
        base = {"backend": self.name, "solver_version": highs_version(), "log_tail": log_tail}
        if run_status == highspy.HighsStatus.kError and status in (Status.UNKNOWN, Status.ERROR):
            return Result(
                status=Status.ERROR, solve_seconds=seconds, message=_error_message(log_tail), **base
            )
        if status is Status.INFEASIBLE_OR_UNBOUNDED:
            status = _disambiguate(h, a, options)
        result = Result(status=status, solve_seconds=seconds, **base)
        if ms == int(_MS.kModelEmpty):
            # no columns at all: HiGHS does not evaluate the constant
            result.objective = float(inv.form.objective.const) if inv.form.objective is not None else None
            return result
        if status in (Status.OPTIMAL, Status.FEASIBLE) and has_sol:
            _fill_solution(result, h, inv, status)
        elif status is Status.TIME_LIMIT:
            result.message = "the time limit ran out before HiGHS found a feasible plan"
            bound = float(info.mip_dual_bound)
            if a.is_mip and math.isfinite(bound) and inv.form.objective is not None:
                result.bound = a.sign * bound
        if status in (Status.INFEASIBLE, Status.UNBOUNDED, Status.INFEASIBLE_OR_UNBOUNDED, Status.TIME_LIMIT):
            result.explanation = _explain(compiled, status, options)
        return result


def _apply_options(h: highspy.Highs, options: SolveOptions) -> None:
    h.setOptionValue("time_limit", float(options.time_limit) if options.time_limit else math.inf)
    if options.mip_gap is not None:
        h.setOptionValue("mip_rel_gap", float(options.mip_gap))
    if options.threads:
        h.setOptionValue("threads", int(options.threads))
        # the thread pool is global and fixed once started: restart it with this size
        highspy.Highs.resetGlobalScheduler(True)


def _error_message(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip().startswith("ERROR")]
    text = " ".join(ln.removeprefix("ERROR:").strip() for ln in lines)
    if "non-convex" in text or "not positive semidefinite" in text or "not negative semidefinite" in text:
        return (
            "the quadratic objective is not convex, and HiGHS solves only convex quadratic "
            f"objectives (minimize a sum of squares, or maximize minus one). HiGHS said: {text}"
        )
    return f"HiGHS failed: {text or 'no reason given (see the log)'}"


def _disambiguate(h: highspy.Highs, a: HighsArrays, options: SolveOptions) -> Status:
    """HiGHS could not tell infeasible from unbounded (typically in presolve): find out."""
    if not a.is_mip:
        h.setOptionValue("presolve", "off")
        h.clearSolver()
        h.run()
        h.setOptionValue("presolve", "choose")
        status = map_status(int(h.getModelStatus()))
        if status in (Status.INFEASIBLE, Status.UNBOUNDED):
            return status
    # with no objective the model cannot be unbounded: feasible means the objective was
    probe = new_highs(a, with_objective=False)
    if options.time_limit:
        probe.setOptionValue("time_limit", float(options.time_limit))
    probe.run()
    st = map_status(int(probe.getModelStatus()))
    if st is Status.INFEASIBLE:
        return Status.INFEASIBLE
    if st is Status.OPTIMAL:
        return Status.UNBOUNDED
    return Status.INFEASIBLE_OR_UNBOUNDED


def _fill_solution(result: Result, h: highspy.Highs, inv: HighsInverse, status: Status) -> None:
    form, a = inv.form, inv.arrays
    info = h.getInfo()
    sol = h.getSolution()
    x = np.asarray(sol.col_value, dtype=np.float64)
    has_obj = form.objective is not None
    if has_obj:
        result.objective = a.sign * float(info.objective_function_value)
    if a.is_mip:
        bound = float(info.mip_dual_bound)
        if has_obj and math.isfinite(bound):
            result.bound = a.sign * bound
        gap = float(info.mip_gap)
        result.gap = gap if has_obj and math.isfinite(gap) else None
        if not has_obj:
            result.gap = 0.0
        x = np.where(a.integer, np.round(x), x)
    elif status is Status.OPTIMAL:
        result.bound = result.objective
        result.gap = 0.0 if has_obj else None
    if result.objective is not None:
        result.objective = float(_snap(np.array([result.objective]))[0])
    visible = np.flatnonzero(~form.hidden())
    idx = visible
    if idx.shape[0] > FULL_LISTING_LIMIT:
        idx = idx[np.abs(x[idx]) > _ZERO]
    result.values = dict(zip(column_names(form, idx), _snap(x[idx]).tolist(), strict=True))
    if not a.is_mip and sol.dual_valid:
        _fill_duals(result, sol, inv, visible)


def _snap(v: FloatArray) -> FloatArray:
    """Zero out solver noise and put near-whole numbers on the whole number (8.999999999999998)."""
    r = np.round(v)
    v = np.where(np.abs(v - r) <= 1e-9 * np.maximum(1.0, np.abs(v)), r, v)
    return np.where(np.abs(v) > _ZERO, v, 0.0)


def _fill_duals(result: Result, sol: highspy.HighsSolution, inv: HighsInverse, cols: IntArray) -> None:
    form, a = inv.form, inv.arrays
    row_dual = a.sign * np.asarray(sol.row_dual, dtype=np.float64)
    col_dual = a.sign * np.asarray(sol.col_dual, dtype=np.float64)
    user = np.array([not b.aux for b in form.blocks], dtype=np.bool_)
    rows = np.flatnonzero(user[inv.row_block]) if inv.row_block.shape[0] else np.zeros(0, dtype=np.int64)
    if rows.shape[0] > FULL_LISTING_LIMIT:
        rows = _largest(rows, row_dual)
    result.duals = _keyed([inv.row_name(int(r)) for r in rows], _snap(row_dual[rows]))
    if cols.shape[0] > FULL_LISTING_LIMIT:
        cols = _largest(cols, col_dual)
    result.reduced_costs = dict(zip(column_names(form, cols), _snap(col_dual[cols]).tolist(), strict=True))


def _largest(idx: IntArray, v: FloatArray) -> IntArray:
    """The nonzero entries of a long listing, at most FULL_LISTING_LIMIT of them (largest first)."""
    idx = idx[np.abs(v[idx]) > _ZERO]
    if idx.shape[0] > FULL_LISTING_LIMIT:
        keep = np.argpartition(-np.abs(v[idx]), FULL_LISTING_LIMIT)[:FULL_LISTING_LIMIT]
        idx = np.sort(idx[keep])
    return idx


def _explain(compiled: Compiled, status: Status, options: SolveOptions) -> Explanation | None:
    from .. import explain  # late: explain builds HiGHS models with this module

    try:
        return explain.explain_highs(compiled, status, options)
    except (OptscribeError, RuntimeError) as e:
        # the outcome stands without its explanation: say why there is none
        return Explanation(kind=status.value, summary=f"No explanation could be computed: {e}")
