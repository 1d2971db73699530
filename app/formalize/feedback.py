"""What the repair loop tells the LLM: everything a model gets wrong, as plain sentences.

Each finding names the culprit and the fix, in the same words a user would see. Sources:
the static checks of the model core, the solver's verdict (infeasible with the
conflicting sentences, unbounded, error), ``source`` quotes that do not occur in the
problem text, and numbers of the text that the model never uses.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from solvers.errors import Issue
from solvers.model import Model
from solvers.result import Result, Status

_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(\s*%|\s*percent)?")


@dataclass(frozen=True)
class Finding:
    """One thing to fix, with how serious it is."""

    kind: str  # check | solver | source | unused_number | schema
    message: str
    blocking: bool = True  # False: worth one repair round, never a failure

    def __str__(self) -> str:
        return self.message


def from_issues(issues: list[Issue]) -> list[Finding]:
    return [Finding("check", str(i), i.severity == "error") for i in issues]


def from_result(result: Result) -> list[Finding]:
    if result.status in (Status.OPTIMAL, Status.FEASIBLE):
        return []
    if result.status == Status.INFEASIBLE:
        parts = ["The solver says the model is infeasible: no plan satisfies all constraints together."]
        expl = result.explanation
        if expl is not None and expl.conflict:
            parts.append("These constraints conflict:")
            for c in expl.conflict:
                src = f' (from "{c.source}")' if c.source else ""
                parts.append(f"- {c.name}{src}")
        parts.append(
            "If the text really asks for something impossible, keep the model as it is; otherwise "
            "fix the constraint that was misread (direction of an inequality, a wrong number, a "
            "total that should be per item)."
        )
        return [Finding("solver", "\n".join(parts), blocking=False)]
    if result.status in (Status.UNBOUNDED, Status.INFEASIBLE_OR_UNBOUNDED):
        return [
            Finding(
                "solver",
                "The solver says the objective is unbounded: nothing limits it. A capacity, budget, "
                "demand or availability constraint from the text is probably missing, or an "
                "inequality points the wrong way.",
            )
        ]
    msg = result.message or result.status.value
    return [Finding("solver", f"The solver could not solve the model: {msg}")]


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^\w%$.,]+", " ", s.lower()).split())


def missing_quotes(quotes: list[tuple[str, str]], text: str) -> list[Finding]:
    """``source`` quotes (where, quote) that are not in the text, after normalising spaces."""
    hay = _norm(text)
    out: list[Finding] = []
    for where, src in quotes:
        if src and _norm(src).strip(" .") not in hay:
            out.append(
                Finding(
                    "source",
                    f"The source of {where} ({src[:120]!r}) is not a sentence of the text: quote the "
                    "text verbatim.",
                    blocking=False,
                )
            )
    return out


def text_numbers(text: str) -> list[tuple[str, list[float]]]:
    """Numbers written in digits, each with the values it may stand for (50% is 50 or 0.5)."""
    out: list[tuple[str, list[float]]] = []
    for m in _NUMBER.finditer(text):
        whole, frac, pct = m.group(1), m.group(2) or "", m.group(3)
        v = float(whole.replace(",", "") + frac)
        forms = [v, v / 100] if pct else [v]
        out.append((m.group(0).strip(), forms))
    return out


def model_numbers(model: Model) -> set[float]:
    nums: set[float] = set()

    def walk(x: Any) -> None:
        if isinstance(x, bool):
            return
        if isinstance(x, (int, float)):
            nums.add(float(x))
        elif isinstance(x, str):
            for m in re.finditer(r"\d+(?:\.\d+)?", x):
                nums.add(float(m.group(0)))
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    d = model.dump()
    for key in ("parameters", "variables", "objective", "constraints", "sets"):
        walk(d.get(key))
    return nums


def unused_numbers(model: Model, text: str) -> list[Finding]:
    """Numbers of the text that appear nowhere in the model (a missed constraint, often)."""
    have = model_numbers(model)

    def used(forms: list[float]) -> bool:
        return any(any(math.isclose(f, h, rel_tol=1e-9, abs_tol=1e-9) for h in have) for f in forms)

    missing = [raw for raw, forms in text_numbers(text) if not used(forms) and max(forms) > 1]
    if not missing:
        return []
    listed = ", ".join(dict.fromkeys(missing))
    return [
        Finding(
            "unused_number",
            f"The text mentions {listed}, but the model never uses "
            f"{'it' if len(missing) == 1 else 'them'}: check whether a parameter or constraint is "
            "missing (ignore this if a number only names something, like 'Product 2').",
            blocking=False,
        )
    ]
