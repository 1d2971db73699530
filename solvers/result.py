"""The result contract: one status vocabulary and one result shape for every backend."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    INFEASIBLE_OR_UNBOUNDED = "infeasible_or_unbounded"
    TIME_LIMIT = "time_limit"
    ERROR = "error"
    UNKNOWN = "unknown"


class ConflictItem(BaseModel):
    """One member of an irreducible infeasible subset."""

    kind: str  # "constraint" | "bound" | "integrality"
    id: str  # the constraint id, or the variable name for bounds
    name: str  # the instance: capacity[wood], x[chair].upper
    source: str | None = None
    template: str | None = None


class Relaxation(BaseModel):
    """A change to one right-hand side or bound that, with the others, restores feasibility."""

    id: str
    name: str
    kind: str  # "rhs" | "lower" | "upper"
    current: float
    suggested: float
    change: float
    source: str | None = None


class Explanation(BaseModel):
    kind: str  # "infeasible" | "unbounded" | "infeasible_or_unbounded" | "time_limit"
    summary: str
    conflict: list[ConflictItem] = Field(default_factory=list)
    conflict_method: str | None = None
    relaxations: list[Relaxation] = Field(default_factory=list)
    objective_after_relaxation: float | None = None
    unbounded_direction: dict[str, float] = Field(default_factory=dict)


class Result(BaseModel):
    model_config = ConfigDict(use_enum_values=False)

    status: Status
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    values: dict[str, float] = Field(default_factory=dict)
    duals: dict[str, float] = Field(default_factory=dict)
    reduced_costs: dict[str, float] = Field(default_factory=dict)
    backend: str
    solver_version: str = ""
    solve_seconds: float = 0.0
    route_reason: str | None = None
    message: str | None = None
    explanation: Explanation | None = None
    log_tail: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)
