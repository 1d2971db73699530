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

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.jobs.store import JobStore
from app.settings import Settings, get_settings

from . import errors
from .deps import ReadinessCheck, Services, llm_probe
from .metrics import JobCounts, Metrics, MetricsMiddleware
from .routes_jobs import batches_router, jobs_router
from .routes_sync import ops_router, public_router, router
from .security import BodyLimit, HashedKeys, KeyVerifier, RateLimiter

__all__ = ["create_app", "create_service_app", "service_app", "services_of"]

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
    job_store: JobStore | None = None,
    supervisor: Any = None,
    close_store: bool = False,
) -> FastAPI:
    """The optscribe API with ``settings`` (the environment's by default).

    ``job_store`` turns on jobs and batches (without one those routes answer 503), adds the
    ``store`` readiness check and feeds the jobs-by-status gauge. ``supervisor`` (anything
    with ``start()``, ``stop()`` and ``probe()``, such as :class:`app.jobs.supervisor.Supervisor`)
    is started with the app and stopped with it; :func:`create_service_app` wires both.
    ``close_store``: the app owns ``job_store`` and closes it at shutdown.
    """
    settings = settings if settings is not None else get_settings()
    limiter = (
        RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        if settings.rate_limit_per_minute
        else None
    )
    services = Services(
        settings=settings,
        metrics=Metrics(job_counts if job_counts is not None or job_store is None else _counts(job_store)),
        keys=key_verifier if key_verifier is not None else HashedKeys(settings.api_key_hashes),
        limiter=limiter,
        store=job_store,
        supervisor=supervisor,
    )
    if job_store is not None:
        services.checks["store"] = ReadinessCheck(_store_probe(job_store))
    if supervisor is not None:
        services.checks["workers"] = ReadinessCheck(supervisor.probe)
    services.checks.update(readiness_checks or {})
    services.checks.setdefault(
        "llm", ReadinessCheck(llm_probe(services), required=settings.ready_requires_llm)
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if supervisor is not None:
            supervisor.start()
        try:
            yield
        finally:
            if supervisor is not None:
                supervisor.stop()
            services.close()
            if job_store is not None and close_store:
                job_store.close()  # the pool's connections (SQLite: the WAL is checkpointed)

    app = FastAPI(
        title="optscribe",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        # /docs is served below from the app's own copy of Swagger UI: FastAPI's default page
        # loads it from a CDN, which an offline user cannot reach. No ReDoc (CDN only).
        docs_url=None,
        redoc_url=None,
        openapi_tags=[
            {"name": "solve", "description": "Solve and export models written in the contract"},
            {"name": "formalize", "description": "From a problem in words to a model (needs an LLM)"},
            {"name": "schema", "description": "The model contract"},
            {"name": "jobs", "description": "Asynchronous jobs: submit, poll, stream, answer, cancel"},
            {"name": "batches", "description": "Many problems at once, as JSONL"},
            {"name": "operations", "description": "Probes and metrics"},
        ],
    )
    app.state.services = services
    errors.install(app)
    app.include_router(router)
    app.include_router(jobs_router)
    app.include_router(batches_router)
    app.include_router(public_router)
    app.include_router(ops_router)
    _add_web_form(app)

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


def _add_web_form(app: FastAPI) -> None:
    """The web form at ``/`` and its static files (imported here: the API alone needs neither)."""
    from app.web import STATIC, page_router, ui_router

    app.include_router(page_router)
    app.include_router(ui_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """The OpenAPI documentation, with Swagger UI from /static (vendored from npm)."""
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="optscribe API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
        )


def _counts(store: JobStore) -> JobCounts:
    def counts() -> dict[str, int]:
        return {str(status): n for status, n in store.counts_by_status().items()}

    return counts


def _store_probe(store: JobStore) -> Callable[[], str | None]:
    def probe() -> str | None:
        store.ping()
        return None

    return probe


def open_job_store(settings: Settings) -> JobStore:
    """The job store the settings name: ``job_store_url``, else SQLite in ``data_dir``."""
    if settings.job_store_url:
        return JobStore(settings.job_store_url)
    return JobStore.in_data_dir(settings.data_dir)


def create_service_app(settings: Settings | None = None) -> FastAPI:
    """The whole service as ``optscribe serve`` runs it: the API, the job store and
    ``settings.workers`` embedded job workers (none when it is 0: another process runs them)."""
    from app.formalize.pipeline import Pipeline
    from app.jobs.supervisor import Supervisor

    settings = settings if settings is not None else get_settings()
    store = open_job_store(settings)
    holder: dict[str, Services] = {}

    def pipeline() -> Pipeline:
        return Pipeline(client=holder["services"].llm_client(), settings=settings)

    celery = settings.job_runner == "celery"
    embedded = settings.workers > 0 and not celery
    supervisor: Any = None
    if embedded and settings.embedded_workers == "processes":
        from app.jobs.processes import WorkerProcesses

        supervisor = WorkerProcesses(settings)
    elif embedded:
        supervisor = Supervisor(store, settings, pipeline_factory=pipeline)
    app = create_app(settings, job_store=store, supervisor=supervisor, close_store=True)
    services = holder["services"] = services_of(app)
    if celery:
        # Jobs are persisted first, then handed to the queue; Celery workers
        # (`optscribe worker`) claim them from the same store.
        from app.jobs import celery_app

        def dispatch(job_id: str) -> None:
            celery_app.enqueue(job_id)

        services.dispatch = dispatch
        services.cancel = celery_app.cancel
        services.checks["queue"] = ReadinessCheck(celery_app.probe_broker)
        # Jobs wait in the queue while no worker runs: worth seeing, not a reason to refuse them.
        services.checks["workers"] = ReadinessCheck(celery_app.probe_workers, required=False)
    return app


def service_app() -> FastAPI:
    """For ``uvicorn --factory app.api.main:service_app``: the service with the environment's settings."""
    return create_service_app()


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
