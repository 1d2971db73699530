"""The routes that answer at once: solve, formalize, export, the schema, health and metrics.

Each route parses its request, calls one function in a worker thread (solving and LLM calls
block) and shapes the reply; errors go to the one mapper in ``errors.py``. The functions
below the routes are plain Python, with no HTTP in them: ``solve_small`` enforces the limits
of a synchronous solve (time limit, variables, nonzeros) and tells larger work to use jobs.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from app.formalize.pipeline import Formalization, Pipeline
from app.settings import Settings
from solvers.api import solve_instance
from solvers.backends.base import SolveOptions
from solvers.errors import BackendError, Issue, ModelError
from solvers.export import export, import_lp_mps, solve_imported
from solvers.ir import Instance
from solvers.lower import lower
from solvers.model import Model, RangeSet, TableSet, json_schema
from solvers.result import Result

from .deps import MetricsDep, PipelineDep, ReadinessCheck, ServicesDep, rate_limit
from .errors import NotReady, TooLargeForSync, spent
from .metrics import Metrics
from .schemas import (
    ErrorBody,
    ExportFormat,
    ExportRequest,
    FormalizeRequest,
    FormalizeResponse,
    HealthResponse,
    ReadyCheck,
    ReadyResponse,
    SolveRequest,
)

__all__ = ["ops_router", "public_router", "router", "solve_small"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "API key missing or not valid (when keys are required)"},
    413: {"model": ErrorBody, "description": "the request body is larger than the server accepts"},
    422: {"model": ErrorBody, "description": "the request or the model is wrong; `issues` say where"},
    429: {"model": ErrorBody, "description": "rate limit; `Retry-After` says when to try again"},
}

# Routes with work behind them: API key (when required) and rate limit.
router = APIRouter(prefix="/v1", dependencies=[Depends(rate_limit)], responses=_ERRORS)
# Documentation: open to all.
public_router = APIRouter(prefix="/v1")
# Probes and metrics for the operator: open, outside /v1, never rate limited.
ops_router = APIRouter(tags=["operations"])


@router.post(
    "/solve",
    tags=["solve"],
    summary="Solve a small model now",
    response_model=Result,
    response_description="the result contract: status, objective, values, explanation when infeasible",
)
async def solve(body: SolveRequest, services: ServicesDep) -> Result:
    """Solve a model (contract JSON, or LP / MPS text) and answer with the result contract.

    For small models under a short time limit: a model beyond the server's limits (variables,
    nonzeros, time limit) is refused with `422 too_large_for_sync`; submit it to
    `POST /v1/jobs` instead. Infeasible, unbounded and time-limit outcomes are results (200),
    with an `explanation` (for infeasible: the conflicting constraints, their source sentences
    and the smallest relaxations).
    """
    result = await services.run_blocking(solve_small, body, services.settings)
    services.metrics.observe_solve(result)
    return result


@router.post(
    "/formalize",
    tags=["formalize"],
    summary="Turn a problem in words into a checked model",
    response_model=FormalizeResponse,
    responses={
        502: {"model": ErrorBody, "description": "the LLM never gave a usable answer"},
        503: {"model": ErrorBody, "description": "no LLM is configured, or it is unreachable"},
    },
)
async def formalize(
    body: FormalizeRequest, pipeline: PipelineDep, services: ServicesDep
) -> FormalizeResponse:
    """Formalize the text (with its data tables) through the LLM, check and repair the model,
    and solve it. Answers the model, its check issues, the solution and the tokens spent; or
    `needs_input` with clarifying questions (send them back in `answers`)."""
    out = await services.run_blocking(formalize_text, pipeline, body, services.metrics, llm=True)
    return FormalizeResponse.model_validate(out.to_dict())


@router.post(
    "/export",
    tags=["solve"],
    summary="Export a model as LP, MPS, Pyomo source or contract JSON",
    response_class=Response,
    responses={
        200: {
            "description": "the model as text",
            "content": {"text/plain": {"schema": {"type": "string"}}, "application/json": {}},
        }
    },
)
async def export_model(
    body: ExportRequest,
    services: ServicesDep,
    fmt: Annotated[ExportFormat, Query(alias="format", description="lp, mps, pyomo or json")],
) -> Response:
    """The model as a file: LP and MPS as HiGHS writes them (logic linearized as when optscribe
    solves), a self-contained Pyomo script, or the contract JSON."""
    text = await services.run_blocking(export_small, body.model, fmt, services.settings)
    media = "application/json" if fmt is ExportFormat.json else "text/plain; charset=utf-8"
    return Response(text, media_type=media)


@public_router.get(
    "/schema/model",
    tags=["schema"],
    summary="The JSON Schema of the model contract (optscribe.model/v1)",
    response_model=dict[str, Any],
)
async def model_schema() -> Response:
    return Response(_schema(), media_type="application/json")


@ops_router.get("/healthz", summary="The process is up", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    return HealthResponse()


@ops_router.get(
    "/readyz",
    summary="Ready to serve: the store, the queue and the LLM",
    response_model=ReadyResponse,
    responses={503: {"model": ErrorBody, "description": "a required part is down (see details.checks)"}},
)
async def readyz(services: ServicesDep) -> Response:
    """Each configured part is probed; 503 when a required one fails, with every check in
    `error.details.checks`. The LLM is required only with `OPTSCRIBE_READY_REQUIRES_LLM`."""
    # The default thread pool, not the solvers': a probe must not queue behind busy solves.
    report = await run_in_threadpool(readiness, services.checks)
    if report.status == "ready":
        return JSONResponse(report.model_dump(mode="json"))
    raise NotReady(report.model_dump(mode="json")["checks"])


@ops_router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(m: MetricsDep) -> Response:
    body, media = m.render()
    return Response(body, media_type=media)


# ----------------------------------------------------------------------------- the work


@lru_cache(maxsize=1)
def _schema() -> bytes:
    return json.dumps(json_schema()).encode()


def solve_small(req: SolveRequest, settings: Settings) -> Result:
    """Solve within the limits of a synchronous answer; beyond them, ``TooLargeForSync``."""
    o = req.options
    limit = (
        o.time_limit
        if o.time_limit is not None
        else min(settings.sync_time_limit_default, settings.sync_time_limit_max)
    )
    if limit > settings.sync_time_limit_max:
        raise TooLargeForSync(
            f"a time limit of {limit:g} s is more than the {settings.sync_time_limit_max:g} s a "
            "synchronous solve may take: use POST /v1/jobs for longer solves"
        )
    options = SolveOptions(time_limit=limit, mip_gap=o.mip_gap, threads=o.threads, explain=o.explain)
    if req.model is not None:
        instance = lower_small(req.model, settings)
        return solve_instance(instance, o.backend, options)
    if o.backend not in (None, "highs"):
        raise BackendError(f"LP and MPS text is solved with highs only; drop backend {o.backend!r}")
    fmt, text = ("lp", req.lp) if req.lp is not None else ("mps", req.mps)
    assert text is not None
    with tempfile.TemporaryDirectory(prefix="optscribe-") as tmp:
        path = Path(tmp) / f"request.{fmt}"
        path.write_text(text, encoding="utf-8")
        try:
            imported = import_lp_mps(path)
        except ModelError as e:
            where = f"the request's {fmt.upper()} text"
            raise ModelError(
                Issue(code=e.issue.code, message=e.issue.message.replace(str(path), where), fix=e.issue.fix)
            ) from None
    h = imported.highs
    _check_size(int(h.getNumCol()), int(h.getNumNz()), settings)
    return solve_imported(imported, options)


def lower_small(model: Model, settings: Settings) -> Instance:
    """Lower a model that fits the synchronous limits (counted before and after lowering)."""
    estimate = estimate_columns(model)
    if estimate is not None:
        _check_size(estimate, 0, settings)
    instance = lower(model, collect=True)
    nonzeros = sum(int(b.cols.shape[0]) for b in instance.row_blocks) + len(instance.logic)
    _check_size(instance.columns.n, nonzeros, settings)
    return instance


def export_small(model: Model, fmt: ExportFormat, settings: Settings) -> str:
    if fmt is ExportFormat.json:
        return export(model, "json")
    return export(lower_small(model, settings), fmt.value)


def formalize_text(pipeline: Pipeline, req: FormalizeRequest, metrics: Metrics) -> Formalization:
    """Run the pipeline; the tokens it spent are counted whether it succeeds or not."""
    try:
        out = pipeline.run(req.text, req.tables, answers=req.answers or None, mode=req.mode)
    except Exception as e:
        usage = spent(e)
        if usage is not None:
            metrics.count_tokens(usage)
        raise
    metrics.count_tokens(out.usage)
    return out


def estimate_columns(model: Model) -> int | None:
    """Variables a model will have, from its set sizes alone (None when a size is unknown)."""
    sizes: dict[str, int] = {}
    for name, d in model.sets.items():
        if isinstance(d, RangeSet):
            sizes[name] = d.range[1] - d.range[0] + 1
        elif not isinstance(d, TableSet):  # a table's distinct values are known only once read
            sizes[name] = len(d)
    total = 0
    for v in model.variables:
        try:
            count = math.prod(sizes[s] for s in v.index)
        except KeyError:
            return None
        total += count * (2 if v.domain == "interval" else 1)
    return total


def _check_size(columns: int, nonzeros: int, settings: Settings) -> None:
    too_many: list[str] = []
    if columns > settings.sync_model_max_variables:
        too_many.append(f"{columns} variables (limit {settings.sync_model_max_variables})")
    if nonzeros > settings.sync_model_max_nonzeros:
        too_many.append(f"{nonzeros} nonzeros (limit {settings.sync_model_max_nonzeros})")
    if too_many:
        raise TooLargeForSync(
            f"the model is too large for a synchronous solve: {' and '.join(too_many)}; "
            "submit it to POST /v1/jobs instead",
            details={"variables": columns, "nonzeros": nonzeros},
        )


def readiness(checks: Mapping[str, ReadinessCheck]) -> ReadyResponse:
    """Run every probe; a probe that raises counts as down, with its message."""
    out: dict[str, ReadyCheck] = {}
    for name, check in checks.items():
        try:
            reason = check.probe()
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
        out[name] = ReadyCheck(ok=reason is None, required=check.required, detail=reason)
    ok = all(c.ok for c in out.values() if c.required)
    return ReadyResponse(status="ready" if ok else "not_ready", checks=out)
