"""The app factory: ``create_app(settings)`` builds the FastAPI service.

It wires the services every route depends on (see ``deps.Services``), the routers, the one
error mapper, and the middleware, outermost first:

    CORS (only when ``cors_origins`` is set)
    -> metrics (counts and times every answer, errors included)
    -> catch-all (an unforeseen exception becomes a logged 500 in the one error shape)
    -> body limit (413 before a large body is read)
    -> FastAPI's own exception handling and the routes

Jobs and batches plug in later through ``readiness_checks`` (the store, the queue),
``job_counts`` (the jobs-by-status gauge) and ``key_verifier`` (keys from the store).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.settings import Settings, get_settings

from . import errors
from .deps import ReadinessCheck, Services, llm_probe
from .metrics import JobCounts, Metrics, MetricsMiddleware
from .routes_sync import ops_router, public_router, router
from .security import BodyLimit, HashedKeys, KeyVerifier, RateLimiter

__all__ = ["create_app", "services_of"]

DESCRIPTION = """\
optscribe turns decision problems into checked optimization models, solves them, and
explains infeasible ones by the sentences they came from.

* `POST /v1/solve`: a model (the `optscribe.model/v1` contract, or LP / MPS text) in, the
  result contract out, for small models under a short time limit.
* `POST /v1/formalize`: a problem in words (and data tables) in, the checked model out.
* `POST /v1/export`: a model as LP, MPS, Pyomo source or JSON.
* `GET /v1/schema/model`: the JSON Schema of the model contract.

Errors always have the shape `{"error": {"code", "message", "issues"?, "details"?}}`.
When the server requires API keys, send one as `Authorization: Bearer <key>` or `X-API-Key`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    job_counts: JobCounts | None = None,
    key_verifier: KeyVerifier | None = None,
) -> FastAPI:
    """The optscribe API with ``settings`` (the environment's by default)."""
    settings = settings if settings is not None else get_settings()
    limiter = (
        RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        if settings.rate_limit_per_minute
        else None
    )
    services = Services(
        settings=settings,
        metrics=Metrics(job_counts),
        keys=key_verifier if key_verifier is not None else HashedKeys(settings.api_key_hashes),
        limiter=limiter,
    )
    services.checks.update(readiness_checks or {})
    services.checks.setdefault(
        "llm", ReadinessCheck(llm_probe(services), required=settings.ready_requires_llm)
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            services.close()

    app = FastAPI(
        title="optscribe",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "solve", "description": "Solve and export models written in the contract"},
            {"name": "formalize", "description": "From a problem in words to a model (needs an LLM)"},
            {"name": "schema", "description": "The model contract"},
            {"name": "operations", "description": "Probes and metrics"},
        ],
    )
    app.state.services = services
    errors.install(app)
    app.include_router(router)
    app.include_router(public_router)
    app.include_router(ops_router)

    # add_middleware wraps what is already there: the last added is the outermost.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(errors.CatchAll)
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
            expose_headers=["Location", "Retry-After"],
        )
    return app


def services_of(app: Any) -> Services:
    """The services of an app made by :func:`create_app` (for the code that extends it)."""
    services: Services = app.state.services
    return services


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("optscribe")
    except PackageNotFoundError:
        return "0"
