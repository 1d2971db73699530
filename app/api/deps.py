"""Typed dependencies of the routes, and the per-app services they come from.

:class:`Services` is built once by ``create_app`` and kept on ``app.state``: the settings,
the metrics, the key verifier, the rate limiter, the readiness checks, the limiter that
bounds blocking work, and the shared LLM client. Routes never reach for globals; they
declare what they need (``SettingsDep``, ``CallerDep``, ``PipelineDep``, ...), and tests
replace any of it with ``app.dependency_overrides`` (for example ``get_llm_client`` with a
client of a scripted endpoint). The dependencies are ``async`` because none of them blocks:
FastAPI would run plain functions in a worker thread, a thread hop per request for nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.errors import LLMNotConfigured
from app.formalize.llm import LLMClient
from app.formalize.pipeline import Pipeline
from app.jobs.store import Job, JobStore
from app.settings import Settings

from .errors import JobsUnavailable, RateLimited, Unauthorized
from .metrics import Metrics
from .security import ANONYMOUS, KeyVerifier, RateLimiter, key_from_headers

__all__ = [
    "CallerDep",
    "JobStoreDep",
    "MetricsDep",
    "PipelineDep",
    "ReadinessCheck",
    "Services",
    "ServicesDep",
    "SettingsDep",
    "get_app_settings",
    "get_caller",
    "get_llm_client",
    "get_pipeline",
    "get_services",
    "rate_limit",
]

T = TypeVar("T")


@dataclass
class ReadinessCheck:
    """One part GET /readyz looks at: ``probe`` raises (or returns a reason) when it is down."""

    probe: Callable[[], str | None]
    required: bool = True


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    keys: KeyVerifier
    limiter: RateLimiter | None
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    store: JobStore | None = None  # jobs and batches; None: those routes answer 503
    supervisor: Any = None  # the embedded workers (start() / stop()), when this process runs them
    # With Celery: hand a persisted job to the queue, and cancel through the queue too.
    dispatch: Callable[[str], None] | None = None
    cancel: Callable[[JobStore, str, str], Job | None] | None = None
    solves: anyio.CapacityLimiter = field(init=False)
    formalizations: anyio.CapacityLimiter = field(init=False)
    _llm: LLMClient | None = field(default=None, init=False, repr=False)
    _llm_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        # Two pools: solving is CPU-bound, formalizing mostly waits on the LLM, and a few slow
        # formalizations must not hold up every small solve.
        self.solves = anyio.CapacityLimiter(self.settings.sync_max_concurrency)
        self.formalizations = anyio.CapacityLimiter(self.settings.formalize_max_concurrency)

    async def run_blocking(self, fn: Callable[..., T], *args: Any, llm: bool = False) -> T:
        """Run ``fn(*args)`` in a worker thread so the event loop stays free; at most
        ``sync_max_concurrency`` solves (``formalize_max_concurrency`` with ``llm``) at once."""
        limiter = self.formalizations if llm else self.solves
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)

    def llm_client(self) -> LLMClient:
        """The app's LLM client, made on first use; ``LLMNotConfigured`` when none can be."""
        with self._llm_lock:
            if self._llm is None:
                self._llm = LLMClient(self.settings)
            return self._llm

    def close(self) -> None:
        with self._llm_lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_app_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_metrics(services: ServicesDep) -> Metrics:
    return services.metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def get_job_store(services: ServicesDep) -> JobStore:
    """The job store; 503 ``jobs_unavailable`` when the server runs without one."""
    if services.store is None:
        raise JobsUnavailable("this server runs without a job store: jobs and batches are off")
    return services.store


JobStoreDep = Annotated[JobStore, Depends(get_job_store)]

# auto_error=False: a missing key is ours to answer, in the one error shape.
_bearer = HTTPBearer(auto_error=False, description="an optscribe API key as a bearer token")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="an optscribe API key")


async def get_caller(
    request: Request,
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> str:
    """The caller's id: ``anonymous`` when keys are off, else the id of a valid key (401 otherwise).

    A refused key spends a token of the client address's bucket, so guessing keys is rate
    limited too."""
    if not services.settings.api_keys_required:
        return ANONYMOUS
    authorization = f"{bearer.scheme} {bearer.credentials}" if bearer is not None else None
    key = key_from_headers(authorization, api_key)
    caller = services.keys.caller(key) if key is not None else None
    if caller is not None:
        return caller
    _spend(services, _address(request))
    if key is None:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    raise Unauthorized("the API key is not valid")


CallerDep = Annotated[str, Depends(get_caller)]


async def rate_limit(request: Request, services: ServicesDep, caller: CallerDep) -> None:
    """Spend one token of the caller's bucket (by key, or by client address when anonymous)."""
    _spend(services, _address(request) if caller == ANONYMOUS else caller)


def _address(request: Request) -> str:
    return f"ip:{request.client.host if request.client else 'unknown'}"


def _spend(services: Services, who: str) -> None:
    if services.limiter is None:
        return
    wait = services.limiter.hit(who)
    if wait is not None:
        raise RateLimited(wait)


async def get_llm_client(services: ServicesDep) -> LLMClient:
    """The LLM client formalization uses; override it in tests with a scripted one."""
    return services.llm_client()


async def get_pipeline(
    settings: SettingsDep, client: Annotated[LLMClient, Depends(get_llm_client)]
) -> Pipeline:
    """A fresh pipeline per request (it holds per-run state) over the shared client."""
    return Pipeline(client=client, settings=settings)


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]


def llm_probe(services: Services) -> Callable[[], str | None]:
    """Readiness of the LLM: configured or not (no call is made to it)."""

    def probe() -> str | None:
        try:
            services.llm_client()
        except LLMNotConfigured as e:
            return f"not configured: {e.reason}"
        return None

    return probe
