"""Wire schemas: what the API takes and answers, beyond the model and result contracts.

The model contract (``solvers.model.Model``) and the result contract (``solvers.result.Result``)
go over the wire as they are; the classes here wrap them in requests and describe the other
answers. Every request object forbids unknown fields, so a misspelt option is a 422 with the
field named, never silently ignored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from solvers.model import Model, Table
from solvers.result import Result

__all__ = [
    "ErrorBody",
    "ErrorDetail",
    "ExportFormat",
    "ExportRequest",
    "FormalizeRequest",
    "FormalizeResponse",
    "HealthResponse",
    "IssueOut",
    "ReadyCheck",
    "ReadyResponse",
    "SolveOptionsIn",
    "SolveRequest",
    "UsageOut",
]

_FORBID = ConfigDict(extra="forbid")

FURNITURE: dict[str, Any] = {
    "schema": "optscribe.model/v1",
    "name": "furniture",
    "sets": {"P": ["chair", "table"], "R": ["wood", "labor"]},
    "parameters": {
        "profit": {"index": ["P"], "values": {"chair": 30, "table": 50}},
        "use": {
            "index": ["R", "P"],
            "values": {"wood": {"chair": 2, "table": 4}, "labor": {"chair": 3, "table": 2}},
        },
        "avail": {"index": ["R"], "values": {"wood": 100, "labor": 90}},
    },
    "variables": [{"name": "x", "index": ["P"], "domain": "integer", "description": "units produced"}],
    "objective": {"sense": "maximize", "expression": "sum(profit[p] * x[p] for p in P)"},
    "constraints": [
        {
            "id": "capacity",
            "template": "linear",
            "for_each": "r in R",
            "expression": "sum(use[r, p] * x[p] for p in P) <= avail[r]",
            "source": "The shop has 100 units of wood and 90 hours of labor.",
        }
    ],
}


class SolveOptionsIn(BaseModel):
    """How to solve: all optional."""

    model_config = _FORBID

    time_limit: float | None = Field(
        default=None, gt=0, description="solver seconds; at most the server's sync_time_limit_max"
    )
    backend: Literal["highs", "cpsat", "pyomo"] | None = Field(
        default=None, description="unset: chosen from the model's features"
    )
    mip_gap: float | None = Field(default=None, ge=0, le=1, description="relative optimality gap")
    threads: int | None = Field(default=None, ge=1, le=64)
    explain: bool = Field(default=True, description="conflicts and relaxations for infeasible models")


class SolveRequest(BaseModel):
    """A model as contract JSON, or as LP or MPS text (exactly one), and options."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model": FURNITURE, "options": {"time_limit": 10}},
                {"lp": "Maximize\n obj: 3 x + 2 y\nSubject To\n c1: x + y <= 4\nEnd\n"},
            ]
        },
    )

    model: Model | None = Field(default=None, description="a model in the optscribe.model/v1 contract")
    lp: str | None = Field(default=None, description="a model in CPLEX LP format (solved by HiGHS)")
    mps: str | None = Field(default=None, description="a model in MPS format (solved by HiGHS)")
    options: SolveOptionsIn = Field(default_factory=SolveOptionsIn)

    @model_validator(mode="after")
    def _exactly_one(self) -> SolveRequest:
        given = [k for k in ("model", "lp", "mps") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'model', 'lp' or 'mps'" + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class ExportFormat(StrEnum):
    lp = "lp"
    mps = "mps"
    pyomo = "pyomo"
    json = "json"


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"model": FURNITURE}]})

    model: Model


class FormalizeRequest(BaseModel):
    """A problem in words, with optional data tables and answers to earlier questions."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "text": "A shop makes chairs ($30 profit) and tables ($50). A chair uses 2 units "
                    "of wood and 3 hours of labor, a table 4 and 2. There are 100 units of wood and "
                    "90 hours of labor. What maximizes profit?"
                }
            ]
        },
    )

    text: str = Field(min_length=1, description="the problem, in plain language")
    tables: dict[str, Table] = Field(
        default_factory=dict, description="data tables by name: {'csv': ...}, {'records': [...]}"
    )
    answers: dict[str, str] = Field(
        default_factory=dict, description="answers to clarifying questions, by question"
    )
    mode: Literal["single", "staged"] | None = Field(default=None, description="unset: the server's")


class IssueOut(BaseModel):
    code: str
    message: str
    severity: str = "error"
    where: str | None = None
    culprit: str | None = None
    fix: str | None = None
    position: int | None = None


class UsageOut(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    calls: int = 0


class AttemptOut(BaseModel):
    round: int
    stage: str
    findings: list[str] = Field(default_factory=list)
    status: str | None = None


class FormalizeResponse(BaseModel):
    """The checked model, its issues, its solution (when solved) and what the LLM cost."""

    status: Literal["solved", "needs_input", "failed"]
    model: dict[str, Any] | None = Field(default=None, description="the model (optscribe.model/v1)")
    result: Result | None = None
    issues: list[IssueOut] = Field(default_factory=list)
    questions: list[str] = Field(default_factory=list, description="clarifying questions to answer")
    summary: str = ""
    usage: UsageOut = Field(default_factory=UsageOut)
    llm_calls: int = 0
    repair_rounds: int = 0
    attempts: list[AttemptOut] = Field(default_factory=list)
    confidence: float | None = None
    seconds: float = 0.0
    mode: str = "single"
    error: str | None = None


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable: too_large_for_sync, check_failed, ...")
    message: str = Field(description="what is wrong and what to do, for people")
    issues: list[IssueOut] | None = None
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """Every error answer has this shape."""

    error: ErrorDetail


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyCheck(BaseModel):
    ok: bool
    required: bool
    detail: str | None = None


class ReadyResponse(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, ReadyCheck]
