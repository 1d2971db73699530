"""Plain-language summaries of a solved model, built from the model itself (no LLM).

What to do (the nonzero decisions with their descriptions and units), what it achieves
(the objective, with its source sentence), and which requirements bind (constraints
with no slack left, quoted in the user's own sentences). For an infeasible model the
model core's explanation (conflict and relaxations) is the summary.
"""

from __future__ import annotations

import numpy as np

from solvers.errors import OptscribeError
from solvers.lower import lower
from solvers.model import Model
from solvers.result import Result, Status

MAX_LINES = 12


def _fmt(v: float) -> str:
    if abs(v - round(v)) < 1e-6:
        return f"{round(v):,}"
    return f"{v:,.4g}"


def binding_constraints(model: Model, result: Result, tol: float = 1e-6) -> list[str]:
    """Ids of constraints with at least one row at its bound in the plan."""
    try:
        inst = lower(model)
    except OptscribeError:
        return []
    names = inst.columns.names()
    x = np.array([result.values.get(n, 0.0) for n in names], dtype=np.float64)
    out: list[str] = []
    for b in inst.row_blocks:
        if b.aux or b.n == 0 or b.cid in out:
            continue
        act = np.bincount(b.rows, weights=b.coefs * x[b.cols], minlength=b.n)
        scale = np.maximum(1.0, np.abs(act))
        at_lo = np.isfinite(b.lower) & (np.abs(act - b.lower) <= tol * scale)
        at_hi = np.isfinite(b.upper) & (np.abs(act - b.upper) <= tol * scale)
        if bool(np.any(at_lo | at_hi)):
            out.append(b.cid)
    return out


def plan_summary(model: Model, result: Result) -> str:
    if result.status == Status.INFEASIBLE and result.explanation is not None:
        return result.explanation.summary
    if result.status not in (Status.OPTIMAL, Status.FEASIBLE):
        if result.explanation is not None:
            return result.explanation.summary
        return f"No plan: the solver answered {result.status.value}."
    lines: list[str] = []
    desc = {v.name: (v.description or "", v.unit or "") for v in model.variables}
    decisions = [(k, v) for k, v in result.values.items() if abs(v) > 1e-9]
    if decisions:
        lines.append("The plan:" if result.status == Status.OPTIMAL else "A plan (not proven best):")
        for name, v in decisions[:MAX_LINES]:
            base = name.split("[", 1)[0].split(".", 1)[0]
            d, unit = desc.get(base, ("", ""))
            extra = f" {unit}" if unit else ""
            about = f" ({d})" if d else ""
            lines.append(f"- {name} = {_fmt(v)}{extra}{about}")
        if len(decisions) > MAX_LINES:
            lines.append(f"- ... and {len(decisions) - MAX_LINES} more nonzero decisions")
    else:
        lines.append("The plan: every decision is zero.")
    if model.objective is not None and result.objective is not None:
        src = f' ("{model.objective.source}")' if model.objective.source else ""
        lines.append(f"Objective ({model.objective.sense}){src}: {_fmt(result.objective)}.")
    binding = binding_constraints(model, result)
    if binding:
        sources = {c.id: c.source for c in model.constraints}
        lines.append("What limits it (requirements met exactly):")
        for cid in binding[:MAX_LINES]:
            quote = sources.get(cid)
            lines.append(f'- "{quote}" ({cid})' if quote else f"- {cid}")
    return "\n".join(lines)
