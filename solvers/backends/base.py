"""The backend interface: compile a ground instance, solve it, map the answer back.

A backend's ``compile`` returns a ``Compiled``: the solver's own model object plus the
inverse map (solver index -> model column / row names), in the manner of cvxpy's
reductions. ``solve`` runs it under the options and returns the result contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..ir import Instance
from ..result import Result


@dataclass
class SolveOptions:
    time_limit: float | None = None  # seconds
    mip_gap: float | None = None  # relative
    threads: int | None = None
    explain: bool = True  # compute conflicts / relaxations for infeasible models
    log_lines: int = 40  # how many lines of the solver log to keep


@dataclass
class Compiled:
    backend: str
    solver_model: Any
    instance: Instance
    inverse: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def accepts(self, instance: Instance) -> str | None:
        """None when the backend can take this instance, else the reason it cannot."""
        ...

    def compile(self, instance: Instance, options: SolveOptions) -> Compiled: ...

    def solve(self, compiled: Compiled, options: SolveOptions) -> Result: ...
