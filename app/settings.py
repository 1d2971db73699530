"""The service's settings: one pydantic-settings class read from the environment.

Every knob is an ``OPTSCRIBE_*`` variable named after its field (``llm_model`` is
``OPTSCRIBE_LLM_MODEL``). The LLM endpoint and key also answer to the names the OpenAI
tools use, ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``; the ``OPTSCRIBE_`` name wins when
both are set. An empty variable counts as unset, and ``none`` clears a field that has a
default (``OPTSCRIBE_LLM_TEMPERATURE=none`` sends no temperature at all, for models that
accept only their own).

Code reads settings through :func:`get_settings` (cached); tests replace them with
:func:`override_settings` or build a ``Settings(...)`` and pass it where it is needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "StructuredMode", "clear_settings_cache", "get_settings", "override_settings"]

StructuredMode = Literal["auto", "json_schema", "json_object", "plain"]


class Settings(BaseSettings):
    """What optscribe reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="OPTSCRIBE_",
        validate_by_name=True,
        validate_by_alias=True,
        env_parse_none_str="none",
    )

    llm_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OPTSCRIBE_LLM_BASE_URL", "OPENAI_BASE_URL"),
        description="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (Ollama); "
        "unset means https://api.openai.com/v1",
    )
    llm_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("OPTSCRIBE_LLM_API_KEY", "OPENAI_API_KEY"),
        description="API key; local servers (Ollama, llama.cpp, vLLM) need none",
    )
    llm_model: str | None = Field(default=None, description="model name as the endpoint knows it")
    llm_timeout: float = Field(default=120.0, gt=0, description="seconds one LLM call may take")
    llm_max_retries: int = Field(
        default=3,
        ge=0,
        description="per answer: retries after 429/5xx/timeouts/connection errors, "
        "and re-asks after an unusable answer",
    )
    llm_backoff_base_s: float = Field(
        default=1.0, ge=0, description="first retry delay; doubles on each retry (with jitter)"
    )
    llm_backoff_max_s: float = Field(default=30.0, ge=0, description="longest delay between retries")
    llm_total_budget_s: float = Field(
        default=300.0, gt=0, description="wall-clock seconds for all LLM calls of one formalization"
    )
    llm_cache_dir: Path | None = Field(
        default=None, description="directory of the on-disk answer cache; unset means no cache"
    )
    llm_structured_mode: StructuredMode = Field(
        default="auto",
        description="auto: try json_schema, then json_object, then plain JSON, and remember what "
        "the endpoint accepts; any other value pins that mode",
    )
    llm_temperature: float | None = Field(
        default=0.0, ge=0, le=2, description="sampling temperature; none sends none (for models that fix it)"
    )
    llm_max_tokens: int | None = Field(default=4096, gt=0, description="cap on tokens per answer")
    repair_rounds: int = Field(default=3, ge=0, description="LLM repair rounds after failed checks")
    samples: int = Field(default=1, ge=1, description="self-consistency: formalizations drawn per request")
    sample_temperature: float = Field(
        default=0.7, ge=0, le=2, description="temperature of the draws when samples > 1"
    )
    formalize_mode: Literal["single", "staged"] = Field(
        default="single",
        description="single: one LLM call writes the model; staged: identify, classify, formulate",
    )
    solve_time_limit: float = Field(default=60.0, gt=0, description="solver seconds per solve")

    # -- the service (REST API) -----------------------------------------------------------------
    api_host: str = Field(default="127.0.0.1", description="address `optscribe serve` listens on")
    api_port: int = Field(default=8000, ge=0, le=65535, description="port `optscribe serve` listens on")
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, gt=0, description="largest request body accepted (413 beyond)"
    )
    sync_time_limit_default: float = Field(
        default=10.0, gt=0, description="POST /v1/solve: solver seconds when the request names none"
    )
    sync_time_limit_max: float = Field(
        default=30.0, gt=0, description="POST /v1/solve: longest time limit a request may ask for"
    )
    sync_model_max_variables: int = Field(
        default=10_000, gt=0, description="POST /v1/solve: most variables (columns) of a model"
    )
    sync_model_max_nonzeros: int = Field(
        default=200_000, gt=0, description="POST /v1/solve: most constraint nonzeros of a model"
    )
    sync_max_concurrency: int = Field(
        default=4, ge=1, description="synchronous solves and exports run at once; the rest wait"
    )
    formalize_max_concurrency: int = Field(
        default=8, ge=1, description="POST /v1/formalize requests run at once; the rest wait"
    )
    api_keys_required: bool = Field(default=False, description="require an API key on /v1 routes")
    api_key_hashes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="sha256 hex digests of the accepted API keys (comma-separated or a JSON list)",
    )
    rate_limit_per_minute: float | None = Field(
        default=None, gt=0, description="requests a minute per API key or client address; unset is off"
    )
    rate_limit_burst: int = Field(default=20, ge=1, description="requests allowed at once before limiting")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed by CORS (comma-separated); empty is CORS off"
    )
    ready_requires_llm: bool = Field(
        default=False, description="GET /readyz answers 503 while no LLM is configured"
    )

    # -- jobs (POST /v1/jobs, batches) and the embedded workers ---------------------------------
    data_dir: Path = Field(
        default=Path("optscribe-data"), description="directory of the embedded job store (jobs.sqlite3)"
    )
    job_store_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the job store (Postgres); unset: SQLite in data_dir"
    )
    workers: int = Field(default=2, ge=0, description="`optscribe serve`: embedded job workers (0: none)")
    embedded_workers: Literal["processes", "threads"] = Field(
        default="processes",
        description="`optscribe serve`'s workers: child processes (each its own interpreter), "
        "or threads in the API's process",
    )
    job_runner: Literal["embedded", "celery"] = Field(
        default="embedded",
        description="who runs jobs: the embedded workers of `optscribe serve`, or Celery workers "
        "(`optscribe worker`, broker OPTSCRIBE_BROKER_URL)",
    )
    job_lease_seconds: float = Field(
        default=30.0, gt=0, description="a running job's lease; a worker silent this long is presumed dead"
    )
    job_max_attempts: int = Field(default=3, ge=1, description="runs of a job whose worker keeps dying")
    job_poll_seconds: float = Field(default=0.2, gt=0, description="how often an idle worker looks for jobs")
    job_time_limit_max: float = Field(
        default=3600.0, gt=0, description="longest solver time limit a job may ask for"
    )
    job_model_max_variables: int = Field(
        default=2_000_000,
        gt=0,
        description="POST /v1/jobs and batches: most variables of a model, counted from its set sizes",
    )
    job_text_max_chars: int = Field(
        default=100_000, gt=0, description="POST /v1/jobs and batches: longest problem text"
    )
    batch_max_lines: int = Field(default=50_000, gt=0, description="POST /v1/batches: most lines")

    # -- scale-out: Celery workers (`optscribe worker`) and their broker --------------------------
    broker_url: str | None = Field(
        default=None, description="Celery broker (Redis); unset: redis://localhost:6379/0"
    )
    result_backend: str | None = Field(
        default=None,
        description="Celery's own task bookkeeping; unset: the broker (results live in the job store)",
    )
    worker_concurrency: int | None = Field(
        default=None, ge=1, description="`optscribe worker`: jobs run at once; unset: `workers`"
    )
    celery_task_time_limit: float | None = Field(
        default=None,
        gt=0,
        description="hard kill of a Celery task (s); unset: job_time_limit_max + llm_total_budget_s + 300",
    )
    celery_task_soft_time_limit: float | None = Field(
        default=None,
        gt=0,
        description="a task is told to stop this early (s); unset: a little below the hard limit",
    )
    celery_visibility_timeout: float | None = Field(
        default=None,
        gt=0,
        description="Redis redelivers a task unacknowledged this long (s); unset: hard limit + lease + 60",
    )

    @field_validator(
        "llm_base_url",
        "llm_api_key",
        "llm_model",
        "llm_cache_dir",
        "job_store_url",
        "broker_url",
        "result_backend",
        "worker_concurrency",
        "celery_task_time_limit",
        "celery_task_soft_time_limit",
        "celery_visibility_timeout",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("rate_limit_per_minute", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("api_key_hashes", "cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("api_key_hashes")
    @classmethod
    def _sha256_hex(cls, value: list[str]) -> list[str]:
        out = [v.strip().lower() for v in value]
        for n, v in enumerate(out, 1):
            if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
                raise ValueError(
                    f"entry {n} is not a sha256 hex digest: store "
                    "hashlib.sha256(key.encode()).hexdigest(), never the key itself"
                )
        return out


@lru_cache(maxsize=1)
def _from_environment() -> Settings:
    return Settings()


_overrides: list[Settings] = []


def get_settings() -> Settings:
    """The settings in force: an active override, else the environment's (read once)."""
    if _overrides:
        return _overrides[-1]
    return _from_environment()


def clear_settings_cache() -> None:
    """Forget the settings read from the environment; the next call reads it again."""
    _from_environment.cache_clear()


@contextmanager
def override_settings(settings: Settings | None = None, /, **changes: Any) -> Iterator[Settings]:
    """Make ``get_settings()`` answer ``settings`` (or the current settings with ``changes``)."""
    base = settings if settings is not None else get_settings()
    chosen = type(base)(**{**base.model_dump(), **changes}) if changes else base
    _overrides.append(chosen)
    try:
        yield chosen
    finally:
        _overrides.remove(chosen)
