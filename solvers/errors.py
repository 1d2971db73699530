"""The exceptions of the model core, split by who must act.

::

    OptscribeError
    ├── ModelError            the model is wrong: the user (or the LLM) must change it
    │   ├── ExpressionError   an expression string cannot be parsed or does not make sense
    │   └── CheckFailed       static checks found issues (carries the list of Issue objects)
    ├── BackendError          the chosen backend cannot take this model (names a backend that can)
    └── SolverFailure         the solver itself failed unexpectedly (our bug or the solver's)

Infeasible, unbounded and time-limit outcomes are never exceptions: they are results.
Every message names the culprit and, where one exists, the fix; the same text is shown to
users and fed back to the LLM in a repair round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One problem found in a model: where, what, and how to fix it."""

    code: str
    message: str
    where: str = ""
    culprit: str = ""
    fix: str = ""
    position: int | None = None
    severity: str = "error"

    def __str__(self) -> str:
        parts = [f"{self.where}: " if self.where else "", self.message]
        if self.position is not None:
            near = f", at {self.culprit[:30]!r}" if self.culprit else ""
            parts.append(f" (character {self.position + 1}{near})")
        if self.fix:
            parts.append(f". Fix: {self.fix}")
        return "".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"code": self.code, "message": self.message, "severity": self.severity}
        for k in ("where", "culprit", "fix"):
            if getattr(self, k):
                d[k] = getattr(self, k)
        if self.position is not None:
            d["position"] = self.position
        return d


class OptscribeError(Exception):
    """Base of every error the model core raises on purpose."""


class ModelError(OptscribeError):
    """The model is wrong; the message says where and how to fix it."""

    def __init__(self, issue: Issue) -> None:
        super().__init__(str(issue))
        self.issue = issue


class ExpressionError(ModelError):
    """An expression cannot be parsed or evaluated."""


@dataclass
class CheckFailed(OptscribeError):
    """Static checks found one or more errors."""

    issues: list[Issue] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.__str__())

    def __str__(self) -> str:
        head = f"the model has {len(self.issues)} problem(s)"
        return head + ":\n" + "\n".join(f"- {i}" for i in self.issues)


class BackendError(OptscribeError):
    """The chosen backend cannot take this model as it is."""


class SolverFailure(OptscribeError):
    """A solver failed in a way that is not a normal outcome."""
