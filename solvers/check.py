"""Static checks before any solve: each finding is an Issue with culprit and fix.

Most checks happen while lowering (unknown symbols, index arity, elements not in their
set, missing parameter values, nonlinear terms, division by variables, empty sets):
``lower(collect=True)`` gathers them. This module adds what needs the whole model (a
backend that cannot take it, unused declarations, constraints that expand to nothing).
"""

from __future__ import annotations

from .errors import CheckFailed, Issue, ModelError
from .expr import Loop, names_in, parse, parse_for_each, parse_list
from .ir import Instance
from .lower import lower
from .model import Model


def check(model: Model, backend: str | None = None) -> tuple[list[Issue], Instance | None]:
    """All issues found (errors and warnings), and the instance when lowering succeeded."""
    issues: list[Issue] = []
    instance: Instance | None = None
    try:
        instance = lower(model, collect=True)
    except CheckFailed as e:
        issues.extend(e.issues)
    except ModelError as e:
        issues.append(e.issue)
    if instance is not None:
        issues.extend(_warnings(model, instance))
        if backend is not None:
            from .api import get_backend

            reason = get_backend(backend).accepts(instance)
            if reason:
                issues.append(
                    Issue(
                        code="backend",
                        message=reason,
                        where=f"backend {backend}",
                        fix="choose another backend or let optscribe route the model",
                    )
                )
    return issues, instance


def errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity == "error"]


def _warnings(model: Model, instance: Instance) -> list[Issue]:
    out: list[Issue] = []
    used: set[str] = set()
    texts: list[str] = []
    if model.objective is not None:
        texts.append(model.objective.expression)
    for c in model.constraints:
        for v in c.model_dump(by_alias=True).values():
            if isinstance(v, str):
                texts.append(v)
            elif isinstance(v, list):
                texts.extend(x for x in v if isinstance(x, str))
    for t in texts:
        used |= _names_of_text(t)
    bounds = (
        {v.lower for v in model.variables}
        | {v.upper for v in model.variables}
        | {v.duration for v in model.variables}
    )
    for v in model.variables:
        if v.name not in used:
            out.append(
                Issue(
                    code="unused",
                    severity="warning",
                    where=f"variable {v.name}",
                    message=f"variable {v.name!r} is not used by the objective or any constraint",
                    fix="remove it, or add the constraint that was meant to use it",
                )
            )
    for p in model.parameters:
        if p not in used and p not in bounds:
            out.append(
                Issue(
                    code="unused",
                    severity="warning",
                    where=f"parameter {p}",
                    message=f"parameter {p!r} is never used",
                    fix="a number in the problem that the model ignores is often a missed constraint",
                )
            )
    counts: dict[str, int] = {}
    for b in instance.row_blocks:
        if not b.aux:
            counts[b.cid] = counts.get(b.cid, 0) + b.n
    for lc in instance.logic:
        counts[lc.cid] = counts.get(lc.cid, 0) + 1
    for c in model.constraints:
        if counts.get(c.id, 0) == 0:
            out.append(
                Issue(
                    code="empty",
                    severity="warning",
                    where=f"constraint {c.id}",
                    message=f"constraint {c.id!r} expands to no rows: its for_each selects nothing",
                    fix="check the for_each condition",
                )
            )
    return out


def _names_of_text(text: str) -> set[str]:
    """Names used by an expression, a for_each, or a list field written as a comprehension."""
    for parser in (parse, parse_list):
        try:
            return names_in(parser(text))
        except ModelError:
            pass
    try:
        loops: tuple[Loop, ...] = parse_for_each(text)
    except ModelError:
        return set()
    out: set[str] = set()
    for lp in loops:
        out |= names_in(lp)
    return out
