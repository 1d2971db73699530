"""Routing: pick the backend that fits a model's features, and say why."""

from __future__ import annotations

from .ir import Instance

BACKENDS = ("highs", "cpsat", "pyomo")

_CP_ONLY = {"cumulative", "all_different"}
_LOGIC = {
    "implication",
    "either_or",
    "at_most_k",
    "at_least_k",
    "exactly_k",
    "fixed_charge",
    "semi_continuous",
    "clause",
    "no_overlap",
    "precedence",
}


def choose_backend(instance: Instance) -> tuple[str, str]:
    """The backend name and a one-line reason."""
    f = instance.features()
    cp_only = sorted(f & _CP_ONLY)
    if "continuous" in f or "quadratic" in f:
        why = "continuous variables" if "continuous" in f else "a quadratic objective"
        if cp_only:
            return "highs", (
                f"{why} need a MILP/QP solver; note that {', '.join(cp_only)} "
                "is only available on cpsat, so this model may be refused"
            )
        return "highs", f"the model has {why}: HiGHS solves LP, MILP and convex QP"
    if cp_only:
        return "cpsat", f"{', '.join(cp_only)} is native to CP-SAT"
    if "interval" in f:
        return "cpsat", "scheduling with interval variables is native to CP-SAT"
    logic = sorted(f & _LOGIC)
    if logic:
        return (
            "cpsat",
            (
                f"all variables are whole numbers and the model uses {', '.join(logic)}: "
                "CP-SAT posts logic natively"
            ),
        )
    if "feasibility" in f:
        return "cpsat", "a feasibility question over whole numbers suits CP-SAT"
    return "highs", "a linear model: HiGHS (LP/MILP)"
