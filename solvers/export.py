"""Exports of a model (LP, MPS, Pyomo source, contract JSON) and imports of LP / MPS files.

``export(model, fmt)`` returns text:

* ``lp`` / ``mps``: the HiGHS backend compiles the model (so logic constraints are
  linearized exactly as when optscribe solves it), HiGHS writes the file, and the text is
  read back. The objective keeps the model's own sense (the backend hands HiGHS a negated
  maximization; the export undoes that). Rows and columns carry the model's instance
  names, rewritten for the LP grammar, where brackets, spaces and operators cannot appear
  in a name (see ``lp_name``): ``x[chair]`` becomes ``x(chair)``, ``y[New York,1]``
  becomes ``y(New_York,1)``, ``op[a].start`` becomes ``op(a).start``; a name that is an
  LP keyword gets a trailing ``_``, and a name that collides after rewriting (the rows of
  one logic constraint share its instance name) gets ``~2``, ``~3``, ...
* ``pyomo``: a self-contained Python script that builds the same linearized model with
  Pyomo, one ``Var`` per variable and one ``Constraint`` per constraint id, indexed by set
  elements, with the data written out, and that solves it with HiGHS through Pyomo and
  prints the status, the objective and the nonzero values. Nothing in it depends on
  optscribe.
* ``json``: the contract JSON of the model.

``import_lp_mps(path)`` reads an LP or MPS file with HiGHS, and ``solve_imported`` solves
it into the result contract: values keyed by the file's column names, duals by its row
names, statuses mapped as by the HiGHS backend, and for an infeasible LP the IIS that
HiGHS finds, by row and column names (files carry no source sentences).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import textwrap
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import highspy
import numpy as np

from .errors import Issue, ModelError
from .ir import Instance
from .model import Model
from .result import ConflictItem, Explanation, Result, Status

__all__ = ["FORMATS", "ImportedModel", "export", "import_lp_mps", "lp_name", "solve_imported"]

FORMATS = ("lp", "mps", "pyomo", "json")

# ----------------------------------------------------------------------------- entry point


def export(model: Model | Instance, fmt: str) -> str:
    """The model as text in ``fmt`` (lp | mps | pyomo | json)."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ModelError(
            Issue(
                code="format",
                message=f"unknown export format {fmt!r}",
                fix=f"use one of {', '.join(FORMATS)}",
            )
        )
    m = model.model if isinstance(model, Instance) else model
    if fmt == "json":
        return m.to_json() + "\n"
    instance = model if isinstance(model, Instance) else _lower(model)
    if fmt == "pyomo":
        return pyomo_source(instance)
    return solver_file(instance, fmt)


def _lower(model: Model) -> Instance:
    from .lower import lower

    return lower(model, collect=True)


# ----------------------------------------------------------------------------- LP / MPS

_LP_ALLOWED = re.compile(r"[^A-Za-z0-9_!#$%&(),.;?@{}|~]")
_LP_KEYWORDS = frozenset(
    {
        "max",
        "maximize",
        "maximise",
        "maximum",
        "min",
        "minimize",
        "minimise",
        "minimum",
        "st",
        "s.t.",
        "st.",
        "subject",
        "such",
        "bound",
        "bounds",
        "bin",
        "binary",
        "binaries",
        "gen",
        "general",
        "generals",
        "int",
        "integer",
        "integers",
        "semi",
        "semis",
        "semi-continuous",
        "sos",
        "end",
        "free",
        "inf",
        "infinity",
        "obj",
    }
)


def lp_name(name: str) -> str:
    """A model instance name rewritten for the LP (and free MPS) grammar.

    ``[`` and ``]`` become ``(`` and ``)``; any character the LP grammar reserves
    (spaces, ``+ - * / ^ < > = : [ ] ' "``) becomes ``_``; a name starting with a digit
    or a dot gets a leading ``_``; an LP keyword gets a trailing ``_``.
    """
    s = _LP_ALLOWED.sub("_", name.replace("[", "(").replace("]", ")"))
    if not s or s[0].isdigit() or s[0] == ".":
        s = "_" + s
    if s.lower() in _LP_KEYWORDS:
        s += "_"
    return s


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    used = set(names)
    out: list[str] = []
    for n in names:
        k = seen.get(n, 0) + 1
        seen[n] = k
        if k == 1:
            out.append(n)
            continue
        cand = f"{n}~{k}"
        while cand in used:
            k += 1
            cand = f"{n}~{k}"
        seen[n] = k
        used.add(cand)
        out.append(cand)
    return out


def solver_file(instance: Instance, fmt: str) -> str:
    """LP or MPS text of the model as the HiGHS backend compiles it, with model names."""
    from .backends.base import SolveOptions
    from .backends.highs import HighsBackend, inverse_of, new_highs

    compiled = HighsBackend().compile(instance, SolveOptions())
    inv = inverse_of(compiled)
    a = inv.arrays
    if a.sign < 0:  # the backend hands HiGHS the negated maximization: undo it
        a = replace(
            a,
            cost=-a.cost,
            offset=-a.offset,
            sign=1.0,
            q_value=None if a.q_value is None else -a.q_value,
        )
    h: Any = new_highs(a)
    if inv.arrays.sign < 0:
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
    form = inv.form
    col_names = _unique([lp_name(form.column_name(j)) for j in range(a.n_cols)])
    row_names = _unique([lp_name(inv.row_name(r)) for r in range(a.n_rows)])
    for j, n in enumerate(col_names):
        h.passColName(j, n)
    for r, n in enumerate(row_names):
        h.passRowName(r, n)
    fd, path = tempfile.mkstemp(prefix="optscribe-export-", suffix=f".{fmt}")
    os.close(fd)
    try:
        status = h.writeModel(path)
        if status == highspy.HighsStatus.kError:
            raise ModelError(Issue(code="export", message=f"HiGHS could not write the model as {fmt}"))
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    finally:
        os.unlink(path)
    return text


# ----------------------------------------------------------------------------- Pyomo source


def _lit(x: float) -> str:
    """A Python literal for a finite number, exact (repr round-trips)."""
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


def _key_text(key: Any) -> str:
    """How a Pyomo index is written inside brackets: 'chair', or 'a', 1 for a tuple."""
    if isinstance(key, tuple):
        return ", ".join(repr(k) for k in key)
    return repr(key)


def _comment(text: str | None, limit: int = 200) -> str:
    if not text:
        return ""
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 3] + "..."


class _Source:
    """Python source assembled line by line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str = "") -> None:
        self.lines.append(line)

    def extend(self, lines: Iterable[str]) -> None:
        self.lines.extend(lines)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


_LONG_ROW = 40  # terms; longer sums are written as one list, which Python parses flat


def pyomo_source(instance: Instance) -> str:
    """A Python script that builds and solves the (linearized) model with Pyomo."""
    from .backends.base import SolveOptions
    from .backends.highs import HighsBackend, inverse_of
    from .backends.pyomo import PyomoPlan, pyomo_plan, row_kind

    compiled = HighsBackend().compile(instance, SolveOptions())  # the same checks and rows as a solve
    hinv = inverse_of(compiled)
    plan: PyomoPlan = pyomo_plan(hinv.form, hinv.arrays, hinv.block_start)
    a = plan.arrays
    model = instance.model
    ref: list[str] = [""] * plan.form.n_cols
    for g in plan.vars:
        if g.keys is None:
            ref[int(g.cols[0])] = f"m.{g.name}"
        else:
            for c, k in zip(g.cols.tolist(), g.keys, strict=True):
                ref[c] = f"m.{g.name}[{_key_text(k)}]"

    out = _Source()
    out.add(f'"""The model {model.name!r}, built and solved with Pyomo.')
    out.add("")
    out.add("Generated by optscribe from its model contract (optscribe.model/v1). This script needs only")
    out.add("Pyomo and highspy (pip install pyomo highspy): it builds the model, solves it with HiGHS")
    out.add("through Pyomo and prints the status, the objective and the nonzero values.")
    if instance.logic:
        out.add("")
        out.add("Logic and scheduling constraints appear linearized (big-M rows and added binaries),")
        out.add("exactly as optscribe's HiGHS backend solves them.")
    out.add('"""')
    if model.description:
        out.add("")
        for line in textwrap.wrap(_comment(model.description, 2000), 96):
            out.add(f"# {line}")
    out.add("")
    out.add("import pyomo.environ as pyo")
    out.add("from pyomo.contrib.solver.common.factory import SolverFactory")
    out.add("")
    out.add(f"m = pyo.ConcreteModel(name={model.name!r})")

    # ------------------------------------------------------------------ variables
    out.add("")
    out.add("# " + "-" * 20 + " variables")
    for g in plan.vars:
        out.add("")
        _emit_var(out, g, a.col_lower, a.col_upper, a.integer)
    if plan.needs_zero:
        out.add("")
        out.add("# a variable fixed to 0, standing in for rows that the data alone decides")
        out.add(f"m.{plan.zero_name} = pyo.Var(bounds=(0, 0))")

    # ------------------------------------------------------------------ constraints
    out.add("")
    out.add("# " + "-" * 20 + " constraints")
    for cg in plan.cons:
        rows: list[tuple[Any, _Expr, str]] = []
        keys: list[Any] = [None] if cg.keys is None else list(cg.keys)
        for key, r, rname in zip(keys, cg.rows.tolist(), cg.row_names, strict=True):
            lo, hi = plan.row_bounds(r)
            kind = row_kind(lo, hi)
            if kind == "free":
                continue
            idx, vals = plan.row_entries(r)
            if idx.shape[0] == 0:
                if lo <= 0 <= hi:
                    continue
                body = _Expr([f"m.{plan.zero_name}"])
            else:
                body = _Expr.linear([(v, ref[j]) for j, v in zip(idx.tolist(), vals.tolist(), strict=True)])
            rows.append((key, body.relation(lo, hi, kind), rname))
        if not rows:
            continue
        out.add("")
        _emit_con_header(out, cg)
        if cg.keys is None:
            rows[0][1].render(out, f"m.{cg.name}", "pyo.Constraint(expr=", ")")
        else:
            _call(out, f"m.{cg.name}", "pyo.Constraint", [_seq(_index_text([k for k, _, _ in rows]))])
            for key, rel, rname in rows:
                note = f"  # {rname}" if cg.positional and rname != cg.cid else ""
                rel.render(out, f"m.{cg.name}[{_key_text(key)}]", note=note)

    # ------------------------------------------------------------------ objective
    out.add("")
    obj = model.objective
    if plan.sense is not None and obj is not None:
        lin, quad, const = plan.objective_terms()
        expr = _Expr.linear([(c, ref[j]) for j, c in lin])
        for i, j, q in quad:
            expr.add(q, f"{ref[i]} * {ref[j]}")
        expr.constant(const)
        out.add("# " + "-" * 20 + f" objective: {plan.sense}")
        if obj.source or obj.description:
            out.add(f"# {_comment(obj.description or obj.source)}")
        sense = "pyo.maximize" if plan.sense == "maximize" else "pyo.minimize"
        expr.render(out, f"m.{plan.objective_name}", "pyo.Objective(expr=", f", sense={sense})")
    else:
        out.add("# no objective: the model asks only whether a plan exists")

    out.add("")
    out.add("")
    out.add('if __name__ == "__main__":')
    out.add('    solver = SolverFactory("highs")')
    out.add("    # without these two settings Pyomo raises on an infeasible or unbounded model")
    out.add("    result = solver.solve(m, load_solutions=False, raise_exception_on_nonoptimal_result=False)")
    out.add('    print("status:", result.termination_condition.name)')
    out.add("    if result.incumbent_objective is not None:")
    out.add('        print("objective:", repr(result.incumbent_objective))')
    out.add('    if result.solution_status.name in ("feasible", "optimal"):')
    out.add("        result.solution_loader.load_vars()")
    out.add("        for v in m.component_data_objects(pyo.Var):")
    out.add("            if v.value is not None and abs(v.value) > 1e-9:")
    out.add('                print(f"  {v.name} = {v.value:.10g}")')
    return out.text()


class _Expr:
    """A sum of terms as source text: one line when short, one term per line when long,
    one flat list for ``pyo.quicksum`` when very long (Python nests ``a + b + ...`` and
    its parser gives up past a few thousand terms)."""

    def __init__(self, terms: list[str] | None = None) -> None:
        self.terms: list[str] = terms or []  # each with its sign: "2 * x", "- 3 * y", "+ y"
        self.coefs: list[tuple[float, str]] = []
        self.const = ""  # "+ 7" after the terms
        self.tail = ""  # " <= 5"
        self.range: tuple[str, str] | None = None  # (lo, hi) of a two-sided row

    @classmethod
    def linear(cls, items: list[tuple[float, str]]) -> _Expr:
        e = cls()
        for c, t in items:
            e.add(c, t)
        return e

    def add(self, coef: float, text: str) -> None:
        mag = abs(coef)
        body = text if mag == 1 else f"{_lit(mag)} * {text}"
        first = not self.terms
        if coef >= 0:
            self.terms.append(body if first else f"+ {body}")
        else:
            self.terms.append(f"-{body}" if first else f"- {body}")
        self.coefs.append((coef, text))

    def constant(self, c: float) -> None:
        if not self.terms:
            self.terms.append(_lit(c))
        elif c:
            self.const = f"+ {_lit(c)}" if c > 0 else f"- {_lit(-c)}"

    def relation(self, lo: float, hi: float, kind: str) -> _Expr:
        if kind == "range":
            self.range = (_lit(lo), _lit(hi))
        else:
            self.tail = {"eq": f" == {_lit(lo)}", "le": f" <= {_lit(hi)}", "ge": f" >= {_lit(lo)}"}[kind]
        return self

    def _long(self) -> bool:
        return len(self.coefs) > _LONG_ROW

    def _parts(self) -> list[str]:
        if self._long():
            head = "pyo.quicksum([" + ", ".join(f"{_lit(c)} * {t}" for c, t in self.coefs) + "])"
            return [head, self.const] if self.const else [head]
        return [*self.terms, self.const] if self.const else list(self.terms)

    def one_line(self) -> str:
        body = " ".join(self._parts())
        if self.range is not None:
            return f"pyo.inequality({self.range[0]}, {body}, {self.range[1]})"
        return body + self.tail

    def render(self, out: _Source, target: str, open_: str = "", close: str = "", note: str = "") -> None:
        """``target = open_ <expr> close``, split one term per line when it does not fit."""
        line = f"{target} = {open_}{self.one_line()}{close}{note}"
        parts = self._parts()
        if len(line) <= 100 or self._long() or len(parts) == 1:
            out.add(line)
            return
        if self.range is not None:
            out.add(f"{target} = {open_}pyo.inequality({note}")
            out.add(f"    {self.range[0]},")
            out.extend(f"    {t}" for t in parts[:-1])
            out.add(f"    {parts[-1]},")
            out.add(f"    {self.range[1]},")
            out.add(f"){close}")
            return
        out.add(f"{target} = {open_}({note}")
        out.extend(f"    {t}" for t in parts)
        out.add(f"){self.tail}{close}")


def _index_text(keys: list[Any]) -> list[str] | str:
    """An index set as source: ``range(n)`` for 0..n-1, else the list of its items."""
    if all(isinstance(k, int) for k in keys) and keys == list(range(len(keys))):
        return f"range({len(keys)})"
    return [repr(k) for k in keys]


def _seq(items: list[str] | str, open_: str = "[", close: str = "]", indent: str = "    ") -> str:
    """A list or dict display, on one line when short, else one item per line."""
    if isinstance(items, str):
        return items
    one = open_ + ", ".join(items) + close
    if len(one) <= 88:
        return one
    return open_ + "\n" + "".join(f"{indent}    {it},\n" for it in items) + indent + close


def _call(out: _Source, target: str, func: str, args: list[str]) -> None:
    """``target = func(args)``, wrapped one argument per line when long."""
    line = f"{target} = {func}({', '.join(args)})"
    if len(line) <= 100 and "\n" not in line:
        out.add(line)
        return
    out.add(f"{target} = {func}(")
    for a in args:
        out.add(f"    {a},")
    out.add(")")


def _emit_var(out: _Source, g: Any, lower: Any, upper: Any, integer: Any) -> None:
    lo = lower[g.cols]
    hi = upper[g.cols]
    ints = integer[g.cols]
    head = f"# {g.model_name or g.name}"
    desc = _comment(g.description)
    if desc:
        head += f": {desc}"
    if g.unit:
        head += f" [{g.unit}]"
    out.add(head)
    if g.labels:
        shown = g.labels[:50]
        for k, label in enumerate(shown):
            out.add(f"#   {k}: {label}")
        if len(g.labels) > len(shown):
            out.add(f"#   ... and {len(g.labels) - len(shown)} more")

    def domain(lo_: float, hi_: float, int_: bool) -> str:
        if int_:
            return "pyo.Binary" if lo_ >= 0 and hi_ <= 1 else "pyo.Integers"
        return "pyo.Reals"

    def bound(x: float) -> str:
        return _lit(x) if math.isfinite(x) else "None"

    doms = [domain(x, y, bool(z)) for x, y, z in zip(lo.tolist(), hi.tolist(), ints.tolist(), strict=True)]
    bnds = [f"({bound(x)}, {bound(y)})" for x, y in zip(lo.tolist(), hi.tolist(), strict=True)]
    args: list[str] = []
    if g.keys is not None:
        args.append(_seq(_index_text(g.keys)))
    if len(set(doms)) == 1:
        args.append(f"domain={doms[0]}")
    else:
        args.append("domain=" + _seq([f"{k!r}: {d}" for k, d in zip(g.keys, doms, strict=True)], "{", "}"))
    if len(set(bnds)) == 1:
        if doms[0] != "pyo.Binary" or bnds[0] != "(0, 1)":
            args.append(f"bounds={bnds[0]}")
    else:
        args.append("bounds=" + _seq([f"{k!r}: {b}" for k, b in zip(g.keys, bnds, strict=True)], "{", "}"))
    _call(out, f"m.{g.name}", "pyo.Var", args)


def _emit_con_header(out: _Source, cg: Any) -> None:
    if cg.aux and cg.cid == "__interval":
        out.add("# each interval: end = start + duration")
        return
    what = f"# {cg.cid} ({cg.template}{', linearized' if cg.template not in _LINEAR else ''})"
    if cg.aux:
        what += ", added by optscribe"
    src = _comment(cg.source)
    out.add(what + (f": {src}" if src else ""))


_LINEAR = frozenset({"upper_bound", "lower_bound", "linear", "sum", "ratio", "xby", "xy", "balance"})


# ----------------------------------------------------------------------------- LP / MPS import


@dataclass
class ImportedModel:
    """An LP or MPS file read by HiGHS, ready for ``solve_imported``."""

    path: Path
    highs: Any  # highspy.Highs holding the model
    col_names: list[str]
    row_names: list[str]
    is_mip: bool
    maximize: bool

    @property
    def name(self) -> str:
        return self.path.stem


def import_lp_mps(path: str | Path) -> ImportedModel:
    """Read an .lp or .mps file with HiGHS. Unreadable files raise ``ModelError``."""
    p = Path(path)
    if p.suffix.lower() not in (".lp", ".mps"):
        raise ModelError(
            Issue(
                code="io",
                message=f"{p} is not an .lp or .mps file",
                fix="name LP files *.lp and MPS files *.mps",
            )
        )
    if not p.is_file():
        raise ModelError(Issue(code="io", message=f"cannot read {p}: no such file"))
    h: Any = highspy.Highs()
    h.setOptionValue("output_flag", False)
    status = h.readModel(str(p))
    if status == highspy.HighsStatus.kError:
        raise ModelError(
            Issue(
                code="parse",
                message=f"HiGHS cannot read {p} as an {p.suffix[1:].upper()} file",
                fix="check the file's syntax (HiGHS reads CPLEX LP and free or fixed MPS)",
            )
        )
    lp = h.getLp()
    n, m = int(lp.num_col_), int(lp.num_row_)
    if n == 0:
        # HiGHS's LP reader takes text without any section as an empty model ("OK").
        raise ModelError(
            Issue(
                code="parse",
                message=f"{p} holds no variables: it is not an {p.suffix[1:].upper()} model",
                fix="an LP file has an objective section (Maximize/Minimize), Subject To and End",
            )
        )
    cols = list(lp.col_names_) if len(lp.col_names_) == n else [f"c{j}" for j in range(n)]
    rows = list(lp.row_names_) if len(lp.row_names_) == m else [f"r{i}" for i in range(m)]
    integrality = list(lp.integrality_)
    is_mip = any(int(t) != 0 for t in integrality)
    maximize = h.getObjectiveSense()[1] == highspy.ObjSense.kMaximize
    return ImportedModel(p, h, cols, rows, is_mip, maximize)


def solve_imported(model: ImportedModel, options: Any = None) -> Result:
    """Solve an imported LP/MPS model with HiGHS into the result contract."""
    from .backends.base import SolveOptions
    from .backends.highs import highs_version, map_status

    options = options or SolveOptions()
    h = model.highs
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(options.time_limit) if options.time_limit else math.inf)
    if options.mip_gap is not None:
        h.setOptionValue("mip_rel_gap", float(options.mip_gap))
    if options.threads:
        h.setOptionValue("threads", int(options.threads))
    t0 = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - t0
    info = h.getInfo()
    has_sol = int(info.primal_solution_status) == 2
    status = map_status(int(h.getModelStatus()), has_sol)
    result = Result(
        status=status,
        backend="highs",
        solver_version=highs_version(),
        solve_seconds=seconds,
        route_reason=f"{model.path.suffix[1:].upper()} file: read and solved by HiGHS",
    )
    if status in (Status.OPTIMAL, Status.FEASIBLE) and has_sol:
        sol = h.getSolution()
        x = np.asarray(sol.col_value, dtype=np.float64)
        if model.is_mip:
            ints = np.asarray([int(t) != 0 for t in h.getLp().integrality_], dtype=np.bool_)
            x = np.where(ints, np.round(x), x)
        x = np.where(np.abs(x) > 1e-9, x, 0.0)
        result.values = dict(zip(model.col_names, x.tolist(), strict=True))
        result.objective = float(info.objective_function_value)
        if model.is_mip:
            bound = float(info.mip_dual_bound)
            result.bound = bound if math.isfinite(bound) else None
            gap = float(info.mip_gap)
            result.gap = gap if math.isfinite(gap) else None
        elif status is Status.OPTIMAL:
            result.bound, result.gap = result.objective, 0.0
        if not model.is_mip and sol.dual_valid:
            # HiGHS reports duals in the file's own sense, the convention the backend uses
            d = np.asarray(sol.row_dual, dtype=np.float64)
            result.duals = dict(
                zip(model.row_names, np.where(np.abs(d) > 1e-9, d, 0.0).tolist(), strict=True)
            )
            rc = np.asarray(sol.col_dual, dtype=np.float64)
            result.reduced_costs = dict(
                zip(model.col_names, np.where(np.abs(rc) > 1e-9, rc, 0.0).tolist(), strict=True)
            )
    elif status is Status.INFEASIBLE and options.explain:
        result.explanation = _file_conflict(model)
    elif status in (Status.UNBOUNDED, Status.INFEASIBLE_OR_UNBOUNDED, Status.TIME_LIMIT):
        what = {
            Status.UNBOUNDED: "The objective can improve without limit.",
            Status.INFEASIBLE_OR_UNBOUNDED: "HiGHS could not tell infeasible from unbounded.",
            Status.TIME_LIMIT: "The time limit ran out before HiGHS found a feasible plan.",
        }[status]
        result.explanation = Explanation(kind=status.value, summary=what)
    return result


def _file_conflict(model: ImportedModel) -> Explanation:
    """HiGHS's IIS of the file's model (its LP relaxation for a MIP), by file names."""
    g: Any = highspy.Highs()
    g.setOptionValue("output_flag", False)
    g.passModel(model.highs.getLp())
    g.changeObjectiveSense(highspy.ObjSense.kMinimize)
    n = len(model.col_names)
    g.changeColsCost(n, np.arange(n, dtype=np.int32), np.zeros(n))
    if model.is_mip:
        g.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.zeros(n, dtype=np.uint8))
    g.setOptionValue("iis_strategy", 2 | 4)  # from the LP, irreducible
    g.setOptionValue("time_limit", 30.0)
    g.run()
    items: list[ConflictItem] = []
    try:
        status, iis = g.getIis()
        ok = int(status) == 0 and bool(iis.valid_)
    except (RuntimeError, AttributeError):
        ok = False
    if ok:
        for r in iis.row_index_:
            name = model.row_names[int(r)]
            items.append(ConflictItem(kind="constraint", id=name, name=name))
        for c, b in zip(iis.col_index_, iis.col_bound_, strict=True):
            name = model.col_names[int(c)]
            sides = {2: ["lower"], 3: ["upper"], 4: ["lower", "upper"]}.get(int(b), [])
            for side in sides:
                items.append(ConflictItem(kind="bound", id=name, name=f"{name}.{side}"))
    if items:
        names = ", ".join(i.name for i in items[:12])
        more = f" and {len(items) - 12} more" if len(items) > 12 else ""
        relax = " (in the LP relaxation, whole numbers aside)" if model.is_mip else ""
        summary = f"No plan satisfies every row of {model.path.name}. These cannot all hold together{relax}: "
        summary += names + more + "."
        method = "HiGHS IIS" + (" of the LP relaxation" if model.is_mip else "")
    else:
        summary = f"No plan satisfies every row of {model.path.name}."
        method = None
        if model.is_mip:
            summary += " Its LP relaxation is feasible: the whole-number requirements make it infeasible."
    return Explanation(kind="infeasible", summary=summary, conflict=items, conflict_method=method)
