"""The Pyomo backend: the linearized model as a Pyomo ``ConcreteModel``, solved by a Pyomo solver.

This module owns two things. ``pyomo_plan`` lays the linearized form (``linearize.py``,
stacked by the HiGHS backend's ``build_arrays``, so both backends see the same rows) out
as Pyomo components: one ``Var`` per declared variable, indexed by its set elements
(``x['chair']``; an interval variable gets a last index ``'start'`` / ``'end'``), one
``Var`` for the binaries that linearization adds, and one ``Constraint`` per row block,
named after the constraint id and indexed by the ``for_each`` elements, so that
``m.capacity['wood']`` is the row ``capacity[wood]``. ``solvers.export`` writes the same
plan out as Python source. ``PyomoBackend`` builds the plan in memory and solves it.

The solver is Pyomo's HiGHS interface over highspy (``pyomo.contrib.solver``'s
``highs``) unless ``OPTSCRIBE_PYOMO_SOLVER`` (or the constructor) names another: a name
registered with ``pyomo.contrib.solver`` is used through that interface, any other name
through the classic ``pyomo.environ.SolverFactory`` (glpk, cbc, ...). The new interface
raises on anything but an optimum unless told ``raise_exception_on_nonoptimal_result=False``
and ``load_solutions=False`` (see ``_solve_contrib``), and leaves variables that no
constraint or objective uses out of its solution; those get the value HiGHS would give
them (0 clipped into their bounds). Termination conditions map through explicit tables;
anything unmapped is ``unknown``. Infeasible models are explained on the HiGHS side
(``solvers.explain``), by constraint ids and source sentences as everywhere else.
"""

from __future__ import annotations

import keyword
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from ..errors import BackendError, SolverFailure
from ..ir import FloatArray, Instance, IntArray, Interner, RowBlock
from ..result import Explanation, Result, Status
from .base import Compiled, SolveOptions
from .highs import HighsArrays, HighsBackend, build_arrays
from .linearize import LinearForm, LogicRows, linearize

__all__ = [
    "CONTRIB_TERMINATION_MAP",
    "DEFAULT_SOLVER",
    "ENV_SOLVER",
    "LEGACY_TERMINATION_MAP",
    "ConGroup",
    "PyomoBackend",
    "PyomoPlan",
    "PyomoInverse",
    "VarGroup",
    "build_model",
    "map_termination",
    "pyomo_plan",
    "row_kind",
    "solver_name",
]

ENV_SOLVER = "OPTSCRIBE_PYOMO_SOLVER"
DEFAULT_SOLVER = "highs"

#: ``pyomo.contrib.solver`` TerminationCondition (by member name) -> result status.
CONTRIB_TERMINATION_MAP: dict[str, Status] = {
    "convergenceCriteriaSatisfied": Status.OPTIMAL,
    "maxTimeLimit": Status.TIME_LIMIT,
    "iterationLimit": Status.TIME_LIMIT,
    "objectiveLimit": Status.UNKNOWN,
    "minStepLength": Status.UNKNOWN,
    "unbounded": Status.UNBOUNDED,
    "provenInfeasible": Status.INFEASIBLE,
    "locallyInfeasible": Status.UNKNOWN,  # no proof that no solution exists
    "infeasibleOrUnbounded": Status.INFEASIBLE_OR_UNBOUNDED,
    "error": Status.ERROR,
    "interrupted": Status.UNKNOWN,
    "licensingProblems": Status.ERROR,
    "emptyModel": Status.OPTIMAL,
    "unknown": Status.UNKNOWN,
}

#: classic ``pyomo.opt`` TerminationCondition (by value) -> result status.
LEGACY_TERMINATION_MAP: dict[str, Status] = {
    "optimal": Status.OPTIMAL,
    "globallyOptimal": Status.OPTIMAL,
    "locallyOptimal": Status.OPTIMAL,
    "feasible": Status.FEASIBLE,
    "maxTimeLimit": Status.TIME_LIMIT,
    "maxIterations": Status.TIME_LIMIT,
    "maxEvaluations": Status.TIME_LIMIT,
    "minFunctionValue": Status.UNKNOWN,
    "minStepLength": Status.UNKNOWN,
    "unbounded": Status.UNBOUNDED,
    "infeasible": Status.INFEASIBLE,
    "infeasibleOrUnbounded": Status.INFEASIBLE_OR_UNBOUNDED,
    "invalidProblem": Status.ERROR,
    "intermediateNonInteger": Status.UNKNOWN,
    "noSolution": Status.UNKNOWN,
    "solverFailure": Status.ERROR,
    "internalSolverError": Status.ERROR,
    "error": Status.ERROR,
    "licensingProblems": Status.ERROR,
    "userInterrupt": Status.UNKNOWN,
    "resourceInterrupt": Status.UNKNOWN,
    "other": Status.UNKNOWN,
    "unknown": Status.UNKNOWN,
}

# conditions that stop a search early: with a feasible point in hand the answer is a plan
_STOPPED = frozenset(
    {
        "maxTimeLimit",
        "iterationLimit",
        "objectiveLimit",
        "interrupted",
        "maxIterations",
        "maxEvaluations",
        "userInterrupt",
        "resourceInterrupt",
    }
)
_ZERO = 1e-9


def map_termination(condition: str, has_solution: bool = False, legacy: bool = False) -> Status:
    """The result status for a Pyomo termination condition name; unknown names are ``unknown``."""
    table = LEGACY_TERMINATION_MAP if legacy else CONTRIB_TERMINATION_MAP
    status = table.get(condition, Status.UNKNOWN)
    if has_solution and condition in _STOPPED:
        return Status.FEASIBLE
    return status


def solver_name(explicit: str | None = None) -> str:
    return explicit or os.environ.get(ENV_SOLVER, "").strip() or DEFAULT_SOLVER


# ----------------------------------------------------------------------------- the plan

Elem = Union[str, int]
Key = Union[Elem, tuple[Elem, ...]]


@dataclass
class VarGroup:
    """One Pyomo ``Var``: a declared variable, or the binaries linearization added."""

    name: str  # the Pyomo component name (a Python identifier)
    keys: list[Key] | None  # None: a scalar Var
    cols: IntArray  # the column of each key (one entry for a scalar)
    model_name: str  # the model's variable name ('' for added binaries)
    description: str | None = None
    unit: str | None = None
    labels: list[str] = field(default_factory=list)  # added binaries: what each one is


@dataclass
class ConGroup:
    """One Pyomo ``Constraint``: the rows of one row block (one constraint id)."""

    name: str  # the Pyomo component name
    keys: list[Key] | None  # None: a scalar Constraint
    rows: IntArray  # stacked row index of each key
    row_names: list[str]  # the model's instance name of each row (capacity[wood])
    cid: str
    template: str
    source: str | None
    aux: bool
    positional: bool = False  # keys are row positions, not set elements


@dataclass
class PyomoPlan:
    """The linearized model laid out as Pyomo components (see the module docstring)."""

    form: LinearForm
    arrays: HighsArrays
    vars: list[VarGroup]
    cons: list[ConGroup]
    objective_name: str
    col_group: IntArray  # column -> index into vars
    col_pos: IntArray  # column -> position within its group
    zero_name: str  # a Var fixed to 0, used only by rows without any variable
    needs_zero: bool

    @property
    def sense(self) -> str | None:
        return None if self.form.objective is None else self.form.objective.sense

    def row_entries(self, row: int) -> tuple[npt.NDArray[np.integer[Any]], FloatArray]:
        return self.arrays.row_entries(row)

    def row_bounds(self, row: int) -> tuple[float, float]:
        return float(self.arrays.row_lower[row]), float(self.arrays.row_upper[row])

    def objective_terms(self) -> tuple[list[tuple[int, float]], list[tuple[int, int, float]], float]:
        """Linear terms (col, coef), quadratic terms (col1, col2, coef) and the constant, in
        the model's own sense (not negated)."""
        obj = self.form.objective
        if obj is None:
            return [], [], 0.0
        lin: dict[int, float] = {}
        for c, a in zip(obj.cols.tolist(), obj.coefs.tolist(), strict=True):
            lin[c] = lin.get(c, 0.0) + a
        quad: dict[tuple[int, int], float] = {}
        for i, j, q in zip(obj.qcols1.tolist(), obj.qcols2.tolist(), obj.qcoefs.tolist(), strict=True):
            k = (min(i, j), max(i, j))
            quad[k] = quad.get(k, 0.0) + q
        return (
            [(c, a) for c, a in lin.items() if a != 0],
            [(i, j, q) for (i, j), q in quad.items() if q != 0],
            float(obj.const),
        )


_IDENT = re.compile(r"[^A-Za-z0-9_]")


def _ident(name: str) -> str:
    s = _IDENT.sub("_", name)
    if not s or s[0].isdigit():
        s = "_" + s
    return s


class _Names:
    """Unique Pyomo component names that are Python identifiers (``m.name`` must parse in
    the exported source), not keywords, and do not shadow a ConcreteModel attribute."""

    def __init__(self, taken: Sequence[str] = ()) -> None:
        import pyomo.environ as pyo

        probe = pyo.ConcreteModel()
        self.used: set[str] = set(taken)
        self.probe = probe

    def take(self, want: str) -> str:
        base = _ident(want)
        name, k = base, 1
        while name in self.used or hasattr(self.probe, name) or keyword.iskeyword(name):
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name


def _key(values: Sequence[Elem]) -> Key:
    return values[0] if len(values) == 1 else tuple(values)


def _elements(interner: Interner, codes: IntArray) -> list[Elem]:
    return [interner.value(int(c)) for c in codes]


def pyomo_plan(
    form: LinearForm, arrays: HighsArrays | None = None, block_start: IntArray | None = None
) -> PyomoPlan:
    """Lay ``form`` out as Pyomo components (names, indices, which rows and columns)."""
    if arrays is None or block_start is None:
        arrays, inverse = build_arrays(form)
        block_start = inverse.block_start
    inst = form.instance
    interner = inst.columns.interner
    names = _Names()  # declared variables come first, so they keep their names

    n = form.n_cols
    col_group = np.full(n, -1, dtype=np.int64)
    col_pos = np.zeros(n, dtype=np.int64)
    groups: list[VarGroup] = []
    for b in inst.columns.blocks:
        gi = len(groups)
        arity = int(b.keys.shape[1])
        cols = np.arange(b.offset, b.offset + b.size, dtype=np.int64)
        if b.domain == "interval":
            keys: list[Key] | None = [
                _key([*_elements(interner, b.keys[k // 2]), "start" if k % 2 == 0 else "end"])
                for k in range(b.size)
            ]
        elif arity == 0:
            keys = None
        else:
            keys = [_key(_elements(interner, b.keys[k])) for k in range(b.size)]
        groups.append(
            VarGroup(
                names.take(b.name), keys, cols, b.name if b.domain != "aux" else "", b.description, b.unit
            )
        )
        col_group[cols] = gi
        col_pos[cols] = np.arange(b.size, dtype=np.int64)
    if n > form.n_model:
        cols = np.arange(form.n_model, n, dtype=np.int64)
        gi = len(groups)
        groups.append(
            VarGroup(
                names.take("logic_binary"),
                list(range(cols.shape[0])),
                cols,
                "",
                "binaries added to linearize the logic constraints",
                labels=list(form.added_names),
            )
        )
        col_group[cols] = gi
        col_pos[cols] = np.arange(cols.shape[0], dtype=np.int64)

    cons: list[ConGroup] = []
    needs_zero = False
    for k, blk in enumerate(form.blocks):
        if blk.n == 0:
            continue
        start = int(block_start[k])
        rows = np.arange(start, start + blk.n, dtype=np.int64)
        row_names = [blk.row_name(interner, i) for i in range(blk.n)]
        ckeys: list[Key] | None
        if isinstance(blk, LogicRows):
            ckeys = _logic_keys(blk.cid, row_names)
        elif blk.keys.shape[1] == 0:
            ckeys = None if blk.n == 1 else list(range(blk.n))
        else:
            ckeys = [_key(_elements(interner, blk.keys[i])) for i in range(blk.n)]
            if len(set(ckeys)) != len(ckeys):  # a for_each that binds one element twice
                ckeys = list(range(blk.n))
        cname = names.take(_con_base(blk))
        positional = (
            ckeys is not None
            and ckeys == list(range(blk.n))
            and (isinstance(blk, LogicRows) or blk.keys.shape[1] == 0 or len(set(row_names)) != blk.n)
        )
        cons.append(
            ConGroup(cname, ckeys, rows, row_names, blk.cid, blk.template, blk.source, blk.aux, positional)
        )
        for r in rows.tolist():
            idx, _ = arrays.row_entries(r)
            if idx.shape[0] == 0:
                lo, hi = float(arrays.row_lower[r]), float(arrays.row_upper[r])
                if lo > 0 or hi < 0:
                    needs_zero = True
    return PyomoPlan(
        form=form,
        arrays=arrays,
        vars=groups,
        cons=cons,
        objective_name=names.take("objective"),
        col_group=col_group,
        col_pos=col_pos,
        zero_name=names.take("zero"),
        needs_zero=needs_zero,
    )


def _logic_keys(cid: str, row_names: list[str]) -> list[Key] | None:
    """Index generated rows by their instance's elements (``cut_then_paint['door']``) when
    each instance has one row; otherwise by position (one instance may own several rows)."""
    if len(set(row_names)) == len(row_names):
        if len(row_names) == 1 and row_names[0] == cid:
            return None
        inner = [n[len(cid) + 1 : -1] for n in row_names if n.startswith(cid + "[") and n.endswith("]")]
        if len(inner) == len(row_names):
            return list(inner)
    return list(range(len(row_names)))


def _con_base(blk: RowBlock) -> str:
    if blk.cid == "__interval":
        return "interval_duration"
    return blk.cid + blk.suffix


def row_kind(lo: float, hi: float) -> str:
    """'eq', 'range', 'le', 'ge' or 'free' for row bounds lo <= a.x <= hi."""
    if lo == hi:
        return "eq"
    if math.isfinite(lo) and math.isfinite(hi):
        return "range"
    if math.isfinite(hi):
        return "le"
    if math.isfinite(lo):
        return "ge"
    return "free"


# ----------------------------------------------------------------------------- building


@dataclass
class PyomoInverse:
    plan: PyomoPlan
    colvars: list[Any]  # column -> Pyomo VarData
    rowcons: list[tuple[Any, int]]  # (ConstraintData, stacked row) for each row given to Pyomo


def build_model(plan: PyomoPlan) -> tuple[Any, PyomoInverse]:
    """The plan as a Pyomo ConcreteModel, and the way back to model names."""
    import pyomo.environ as pyo

    a = plan.arrays
    m = pyo.ConcreteModel(name=plan.form.instance.model.name)
    colvars: list[Any] = [None] * plan.form.n_cols
    for g in plan.vars:
        col_lo = a.col_lower[g.cols]
        col_hi = a.col_upper[g.cols]
        integer = a.integer[g.cols]
        if g.keys is None:
            var = pyo.Var()
            m.add_component(g.name, var)
            datas = [var]
        else:
            var = pyo.Var(g.keys, dense=True)
            m.add_component(g.name, var)
            datas = [var[k] for k in g.keys]
        for vd, lo_, hi_, int_ in zip(datas, col_lo.tolist(), col_hi.tolist(), integer.tolist(), strict=True):
            vd.domain = (pyo.Binary if lo_ >= 0 and hi_ <= 1 else pyo.Integers) if int_ else pyo.Reals
            vd.setlb(lo_ if math.isfinite(lo_) else None)
            vd.setub(hi_ if math.isfinite(hi_) else None)
        for c, vd in zip(g.cols.tolist(), datas, strict=True):
            colvars[c] = vd
    zero = None
    if plan.needs_zero:
        zero = pyo.Var(bounds=(0, 0))
        m.add_component(plan.zero_name, zero)

    rowcons: list[tuple[Any, int]] = []
    for cg in plan.cons:
        exprs: dict[Any, Any] = {}
        keys: list[Any] = [None] if cg.keys is None else list(cg.keys)
        for key, r in zip(keys, cg.rows.tolist(), strict=True):
            lo, hi = plan.row_bounds(r)
            kind = row_kind(lo, hi)
            if kind == "free":
                continue
            idx, vals = plan.row_entries(r)
            if idx.shape[0] == 0:
                if lo <= 0 <= hi:
                    continue  # always holds
                body: Any = zero
            else:
                body = pyo.quicksum(v * colvars[j] for j, v in zip(idx.tolist(), vals.tolist(), strict=True))
            exprs[key] = _relation(pyo, body, lo, hi, kind)
        if not exprs:
            continue
        if cg.keys is None:
            con = pyo.Constraint(expr=exprs[None])
            m.add_component(cg.name, con)
            rowcons.append((con, int(cg.rows[0])))
        else:
            con = pyo.Constraint(list(exprs), rule=lambda _m, *k, _e=exprs: _e[k[0] if len(k) == 1 else k])
            m.add_component(cg.name, con)
            for key, r in zip(keys, cg.rows.tolist(), strict=True):
                if key in exprs:
                    rowcons.append((con[key], r))

    lin, quad, const = plan.objective_terms()
    if plan.sense is not None:
        expr = (
            pyo.quicksum(a_ * colvars[c] for c, a_ in lin)
            + pyo.quicksum(q * colvars[i] * colvars[j] for i, j, q in quad)
            + const
        )
        m.add_component(
            plan.objective_name,
            pyo.Objective(expr=expr, sense=pyo.maximize if plan.sense == "maximize" else pyo.minimize),
        )
    return m, PyomoInverse(plan, colvars, rowcons)


def _relation(pyo: Any, body: Any, lo: float, hi: float, kind: str) -> Any:
    if kind == "eq":
        return body == lo
    if kind == "range":
        return pyo.inequality(lo, body, hi)
    if kind == "le":
        return body <= hi
    return body >= lo


# ----------------------------------------------------------------------------- solving


@dataclass
class _Outcome:
    condition: str
    has_solution: bool
    objective: float | None
    bound: float | None
    values: dict[int, float]  # column -> value
    duals: dict[int, float]  # stacked row -> dual
    reduced: dict[int, float]  # column -> reduced cost
    log: str
    version: str
    dual_valid: bool = False


class PyomoBackend:
    """The linearized model through Pyomo (default solver: HiGHS via highspy)."""

    name = "pyomo"

    def __init__(self, solver: str | None = None) -> None:
        self.solver = solver_name(solver)

    def accepts(self, instance: Instance) -> str | None:
        # the same models as HiGHS: the linearized form, no all_different / cumulative
        return HighsBackend().accepts(instance)

    def compile(self, instance: Instance, options: SolveOptions) -> Compiled:
        why = HighsBackend().accepts(instance)
        if why is not None:
            raise BackendError(why)
        form = linearize(instance)
        arrays, inverse = build_arrays(form)
        if arrays.is_qp and self.solver == DEFAULT_SOLVER:
            from .highs import _check_convex

            _check_convex(arrays, form)
        plan = pyomo_plan(form, arrays, inverse.block_start)
        model, pinv = build_model(plan)
        return Compiled(
            backend=self.name,
            solver_model=model,
            instance=instance,
            inverse={"pyomo": pinv, "solver": self.solver},
        )

    def solve(self, compiled: Compiled, options: SolveOptions) -> Result:
        inv = compiled.inverse.get("pyomo")
        if not isinstance(inv, PyomoInverse):
            raise SolverFailure("this compiled model was not made by the Pyomo backend")
        solver = str(compiled.inverse.get("solver") or self.solver)
        plan = inv.plan
        a = plan.arrays
        is_mip = a.is_mip
        if plan.form.n_cols == 0 and not plan.needs_zero:
            return _empty_result(plan, self.name)
        t0 = time.perf_counter()
        if _is_contrib(solver):
            out = _solve_contrib(solver, compiled.solver_model, inv, options, want_duals=not is_mip)
        else:
            out = _solve_legacy(solver, compiled.solver_model, inv, options, want_duals=not is_mip)
        seconds = time.perf_counter() - t0
        legacy = not _is_contrib(solver)
        status = map_termination(out.condition, out.has_solution, legacy=legacy)
        if status is Status.INFEASIBLE_OR_UNBOUNDED and plan.sense is not None:
            status = _disambiguate(solver, compiled.solver_model, inv, options, legacy)
        result = Result(
            status=status,
            backend=self.name,
            solver_version=out.version,
            solve_seconds=seconds,
            log_tail="\n".join(out.log.splitlines()[-options.log_lines :]) if options.log_lines > 0 else "",
        )
        if status in (Status.OPTIMAL, Status.FEASIBLE) and out.has_solution:
            _fill(result, plan, out, status, is_mip)
            if status is Status.FEASIBLE:
                result.message = (
                    f"{solver} stopped early ({out.condition}) with a plan that may not be optimal"
                )
        elif status is Status.TIME_LIMIT:
            result.message = f"the limit ran out ({out.condition}) before {solver} found a feasible plan"
        elif status in (Status.ERROR, Status.UNKNOWN):
            result.message = f"the Pyomo solver {solver!r} stopped with {out.condition!r}"
        if status in (Status.INFEASIBLE, Status.UNBOUNDED) and options.explain:
            result.explanation = _explain_on_highs(compiled.instance, status, options)
        elif status in (Status.INFEASIBLE_OR_UNBOUNDED, Status.TIME_LIMIT):
            result.explanation = _short_explanation(compiled.instance, status)
        return result


def _empty_result(plan: PyomoPlan, backend: str) -> Result:
    """No variables, and every row holds: optimal, as HiGHS says (Pyomo would say 'unknown')."""
    objective = plan.objective_terms()[2] if plan.sense is not None else None
    return Result(
        status=Status.OPTIMAL,
        objective=objective,
        bound=objective,
        gap=0.0 if objective is not None else None,
        backend=backend,
        solver_version=f"no solver needed, pyomo {_pyomo_version()}",
        message="the model has no variables",
    )


def _is_contrib(solver: str) -> bool:
    from pyomo.contrib.solver.common.factory import SolverFactory

    return solver in SolverFactory


def _solve_contrib(
    solver: str, model: Any, inv: PyomoInverse, options: SolveOptions, want_duals: bool
) -> _Outcome:
    from pyomo.contrib.solver.common.factory import SolverFactory
    from pyomo.contrib.solver.common.results import SolutionStatus

    opt = SolverFactory(solver)
    if not opt.available():
        raise BackendError(
            f"the Pyomo solver {solver!r} is not available here: install it, or set "
            f"{ENV_SOLVER} to a solver you have (default {DEFAULT_SOLVER!r})"
        )
    # the new interface raises NoOptimalSolutionError on anything but an optimum unless
    # told not to, and NoFeasibleSolutionError when asked to load a missing solution
    kwargs: dict[str, Any] = {"load_solutions": False, "raise_exception_on_nonoptimal_result": False}
    if options.time_limit:
        kwargs["time_limit"] = float(options.time_limit)
    if options.threads:
        kwargs["threads"] = int(options.threads)
    if options.mip_gap is not None and "rel_gap" in opt.config:
        kwargs["rel_gap"] = float(options.mip_gap)
    res = opt.solve(model, **kwargs)
    has_sol = res.solution_status in (SolutionStatus.feasible, SolutionStatus.optimal)
    values: dict[int, float] = {}
    duals: dict[int, float] = {}
    reduced: dict[int, float] = {}
    dual_valid = False
    if has_sol:
        got = res.solution_loader.get_vars()
        for c, vd in enumerate(inv.colvars):
            v = got.get(vd)
            values[c] = _idle_value(vd) if v is None else float(v)
        if want_duals and res.solution_status == SolutionStatus.optimal:
            duals, reduced, dual_valid = _contrib_duals(res, inv)
    version = ".".join(str(x) for x in (res.solver_version or ()))
    return _Outcome(
        condition=res.termination_condition.name,
        has_solution=has_sol,
        objective=_num(res.incumbent_objective),
        bound=_num(res.objective_bound),
        values=values,
        duals=duals,
        reduced=reduced,
        log=str(res.solver_log or ""),
        version=f"{solver} {version} via pyomo {_pyomo_version()}".replace("  ", " "),
        dual_valid=dual_valid,
    )


def _contrib_duals(res: Any, inv: PyomoInverse) -> tuple[dict[int, float], dict[int, float], bool]:
    """Row duals and reduced costs, when the solver has them (LPs)."""
    from pyomo.contrib.solver.common.util import NoDualsError, NoReducedCostsError

    duals: dict[int, float] = {}
    reduced: dict[int, float] = {}
    try:
        d = res.solution_loader.get_duals() if inv.rowcons else {}
        rc = res.solution_loader.get_reduced_costs()
    except (NoDualsError, NoReducedCostsError, NotImplementedError):
        return duals, reduced, False
    for con, r in inv.rowcons:
        if con in d:
            duals[r] = float(d[con])
    for c, vd in enumerate(inv.colvars):
        v = rc.get(vd)
        if v is not None:
            reduced[c] = float(v)
    return duals, reduced, True


def _solve_legacy(
    solver: str, model: Any, inv: PyomoInverse, options: SolveOptions, want_duals: bool
) -> _Outcome:
    import pyomo.environ as pyo

    opt = pyo.SolverFactory(solver)
    if opt is None or not opt.available(exception_flag=False):
        raise BackendError(
            f"the Pyomo solver {solver!r} is not available here: install it, or set "
            f"{ENV_SOLVER} to a solver you have (default {DEFAULT_SOLVER!r})"
        )
    if want_duals and model.component("dual") is None:
        model.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    # option names differ from solver to solver: limits are not passed to classic solvers
    # (the solve runs in a child process with its own deadline)
    res = opt.solve(model, load_solutions=False, tee=False)
    condition = str(getattr(res.solver.termination_condition, "value", res.solver.termination_condition))
    has_sol = len(res.solution) > 0 and LEGACY_TERMINATION_MAP.get(condition) in (
        Status.OPTIMAL,
        Status.FEASIBLE,
        Status.TIME_LIMIT,
    )
    values: dict[int, float] = {}
    duals: dict[int, float] = {}
    objective = None
    dual_valid = False
    if has_sol:
        model.solutions.load_from(res)
        for c, vd in enumerate(inv.colvars):
            values[c] = _idle_value(vd) if vd.value is None else float(vd.value)
        objs = list(model.component_data_objects(pyo.Objective, active=True))
        objective = float(pyo.value(objs[0])) if objs else None
        suffix = model.component("dual")
        if want_duals and suffix is not None and len(suffix):
            dual_valid = True
            for con, r in inv.rowcons:
                if con in suffix:
                    duals[r] = float(suffix[con])
    return _Outcome(
        condition=condition,
        has_solution=has_sol,
        objective=objective,
        bound=None,
        values=values,
        duals=duals,
        reduced={},
        log=str(getattr(res.solver, "message", "") or ""),
        version=f"{solver} via pyomo {_pyomo_version()}",
        dual_valid=dual_valid,
    )


def _disambiguate(solver: str, model: Any, inv: PyomoInverse, options: SolveOptions, legacy: bool) -> Status:
    """The solver could not tell infeasible from unbounded: solve without the objective."""
    import pyomo.environ as pyo

    objs = list(model.component_objects(pyo.Objective, active=True))
    for o in objs:
        o.deactivate()
    try:
        if legacy:
            out = _solve_legacy(solver, model, inv, options, want_duals=False)
        else:
            out = _solve_contrib(solver, model, inv, options, want_duals=False)
    finally:
        for o in objs:
            o.activate()
    st = map_termination(out.condition, out.has_solution, legacy=legacy)
    if st is Status.INFEASIBLE:
        return Status.INFEASIBLE
    if st in (Status.OPTIMAL, Status.FEASIBLE) and out.has_solution:
        return Status.UNBOUNDED
    return Status.INFEASIBLE_OR_UNBOUNDED


def _fill(result: Result, plan: PyomoPlan, out: _Outcome, status: Status, is_mip: bool) -> None:
    form, a = plan.form, plan.arrays
    has_obj = form.objective is not None
    x = np.array([out.values.get(c, 0.0) for c in range(form.n_cols)], dtype=np.float64)
    if is_mip:
        x = np.where(a.integer, np.round(x), x)
    if has_obj:
        result.objective = out.objective
        if result.objective is None:
            result.objective = _objective_at(plan, x)
    if is_mip:
        if has_obj:
            result.bound = out.bound if out.bound is not None and math.isfinite(out.bound) else None
            result.gap = _gap(result.objective, result.bound)
            if status is Status.OPTIMAL and result.bound is None:
                result.bound, result.gap = result.objective, 0.0
        else:
            result.gap = 0.0
    elif status is Status.OPTIMAL:
        result.bound = result.objective
        result.gap = 0.0 if has_obj else None
    visible = np.flatnonzero(~form.hidden())
    vals = np.where(np.abs(x[visible]) > _ZERO, x[visible], 0.0)
    result.values = {
        form.column_name(int(c)): v for c, v in zip(visible.tolist(), vals.tolist(), strict=True)
    }
    if not is_mip and out.dual_valid:
        duals: dict[str, float] = {}
        aux_rows = _aux_rows(plan)
        for cg in plan.cons:
            if cg.aux:
                continue
            for r, name in zip(cg.rows.tolist(), cg.row_names, strict=True):
                if r in aux_rows:
                    continue
                d = out.duals.get(r, 0.0)
                d = d if abs(d) > _ZERO else 0.0
                duals[name] = duals.get(name, 0.0) + d
        result.duals = duals
        if out.reduced:
            rcs = np.array([out.reduced.get(int(c), 0.0) for c in visible.tolist()], dtype=np.float64)
            rcs = np.where(np.abs(rcs) > _ZERO, rcs, 0.0)
            result.reduced_costs = dict(zip(result.values, rcs.tolist(), strict=True))


def _aux_rows(plan: PyomoPlan) -> set[int]:
    return {r for cg in plan.cons if cg.aux for r in cg.rows.tolist()}


def _objective_at(plan: PyomoPlan, x: FloatArray) -> float:
    lin, quad, const = plan.objective_terms()
    return float(const + sum(a * x[c] for c, a in lin) + sum(q * x[i] * x[j] for i, j, q in quad))


def _gap(objective: float | None, bound: float | None) -> float | None:
    if objective is None or bound is None:
        return None
    diff = abs(objective - bound)
    if diff <= 1e-9 * max(1.0, abs(objective)):
        return 0.0
    return diff / abs(objective) if objective != 0 else math.inf


def _idle_value(vd: Any) -> float:
    """What HiGHS gives a variable that nothing uses: 0 clipped into its bounds."""
    lo, hi = vd.lb, vd.ub
    v = 0.0
    if lo is not None and v < lo:
        v = float(lo)
    if hi is not None and v > hi:
        v = float(hi)
    return v


def _num(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _pyomo_version() -> str:
    import pyomo.version

    return str(pyomo.version.version)


def _explain_on_highs(instance: Instance, status: Status, options: SolveOptions) -> Explanation | None:
    """Conflicts, relaxations and unbounded directions come from the HiGHS side, on the
    same linearized rows, so they read exactly as the HiGHS backend's."""
    from .. import explain

    compiled = HighsBackend().compile(instance, options)
    return explain.explain_highs(compiled, status, options)


def _short_explanation(instance: Instance, status: Status) -> Explanation:
    from .. import explain

    ex = Explanation(kind=status.value, summary="")
    ex.summary = explain.summarize(instance, ex)
    return ex
