"""Prometheus metrics of one app: requests, latencies, solve seconds, LLM tokens, jobs.

Each app has its own registry (tests build many apps in one process). Requests are labelled
by the route's template (``/v1/jobs/{id}``), never the raw path, so the label set stays
small; a path that matches no route counts as ``<unmatched>``. The jobs gauge asks a
callback for the counts by status at scrape time (the job store provides it), so it never
drifts from the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from solvers.result import Result

__all__ = ["JobCounts", "Metrics", "MetricsMiddleware"]

log = logging.getLogger("optscribe.api")

JobCounts = Callable[[], Mapping[str, int]]

_SOLVE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _JobsCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("optscribe_jobs", "Jobs by status", labels=["status"])
        source = self._metrics.job_counts
        if source is not None:
            try:
                counts = dict(source())
            except Exception:  # a scrape must not fail because the store is down
                log.exception("the jobs-by-status callback failed")
                counts = {}
            for status, n in sorted(counts.items()):
                gauge.add_metric([status], float(n))
        yield gauge


class Metrics:
    """The metrics of one app, and the text ``GET /metrics`` answers."""

    def __init__(self, job_counts: JobCounts | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.job_counts = job_counts
        self.requests = Counter(
            "optscribe_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "optscribe_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer",
            ["method", "route", "status"],
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.solve_seconds = Histogram(
            "optscribe_solve_seconds",
            "Solver seconds per solve, by backend and result status",
            ["backend", "status"],
            buckets=_SOLVE_BUCKETS,
            registry=self.registry,
        )
        self.llm_tokens = Counter(
            "optscribe_llm_tokens",
            "LLM tokens spent, by kind (prompt, completion)",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(_JobsCollector(self))

    def observe_solve(self, result: Result) -> None:
        self.solve_seconds.labels(result.backend, result.status.value).observe(result.solve_seconds)

    def count_tokens(self, usage: Any) -> None:
        """Add an ``app.formalize.llm.Usage`` (or anything with its token fields)."""
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        if prompt:
            self.llm_tokens.labels("prompt").inc(prompt)
        if completion:
            self.llm_tokens.labels("completion").inc(completion)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware: count every HTTP answer and time it, by route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            labels = (scope.get("method", ""), template, str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - t0)
