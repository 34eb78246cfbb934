"""Prometheus metrics of the dashboard app and the request middleware that records them.

Each app has its own CollectorRegistry: Airflow's api-server may build several apps (and the tests
build many), and a global registry would refuse the second set of names. Ledger gauges are computed
when Prometheus scrapes, from the same cached stats the API serves, so a scrape costs no extra queries
while the cache is warm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from etl_platform.dashboard.db import count_queries

log = logging.getLogger(__name__)

QUERY_COUNT_HEADER = "x-etl-db-queries"
STREAMING_ENDPOINTS = frozenset({"/api/stream"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DashboardMetrics:
    """The app's collectors; `ledger_stats` returns the (cached) stats dict for the ledger gauges."""

    def __init__(self, ledger_stats: Callable[[], dict[str, Any] | None] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "etl_dashboard_requests",
            "Dashboard HTTP requests.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "etl_dashboard_request_seconds",
            "Dashboard request latency (streams excluded).",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache = Counter(
            "etl_dashboard_cache", "Stats cache lookups by level.", ["result"], registry=self.registry
        )
        self.cache_redis_errors = Counter(
            "etl_dashboard_cache_redis_errors",
            "Redis failures of the stats cache (the request was served from the database).",
            registry=self.registry,
        )
        self.db_queries = Counter(
            "etl_dashboard_db_queries",
            "Ledger queries run by requests.",
            ["endpoint"],
            registry=self.registry,
        )
        for result in ("memory", "redis", "miss"):
            self.cache.labels(result=result)
        self.ledger_stats = ledger_stats
        self.registry.register(_LedgerCollector(self))


class _LedgerCollector(Collector):
    def __init__(self, metrics: DashboardMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # no scrape at registration time

    def collect(self) -> Iterator[Metric]:
        stats = None
        if self.metrics.ledger_stats is not None:
            try:
                stats = self.metrics.ledger_stats()
            except Exception as exc:  # a scrape must still show the request metrics
                log.warning("dashboard metrics: ledger stats unavailable: %s", type(exc).__name__)
        rps = GaugeMetricFamily(
            "etl_ledger_rows_per_second",
            "Rows per second of finished runs, per pipeline.",
            labels=["pipeline"],
        )
        runs = GaugeMetricFamily("etl_ledger_runs", "Pipeline runs by status.", labels=["pipeline", "status"])
        for row in (stats or {}).get("pipelines", []):
            pipeline = str(row.get("pipeline"))
            rps.add_metric([pipeline], float(row.get("rows_per_second") or 0.0))
            for status, count in (row.get("by_status") or {}).items():
                runs.add_metric([pipeline, str(status)], float(count or 0))
        yield rps
        yield runs


def route_path(scope: Scope) -> str:
    """The path inside this app (without the mount prefix, e.g. /etl)."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def endpoint_label(path: str, known: frozenset[str]) -> str:
    """A bounded label: a known route, /static, or other (unknown paths must not grow the series)."""
    if path in known:
        return path
    if path.startswith("/static/"):
        return "/static"
    return "other"


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: it would buffer and break the SSE stream).

    Counts every request, times the non-streaming ones, counts their ledger queries (also sent as the
    X-ETL-DB-Queries response header) and logs the slow ones at WARNING.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: DashboardMetrics,
        known_paths: frozenset[str],
        slow_request_s: Callable[[], float],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths
        self.slow_request_s = slow_request_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = endpoint_label(route_path(scope), self.known_paths)
        method = str(scope.get("method", "GET"))
        method = method if method in KNOWN_METHODS else "other"  # labels must not come from the client
        status = 500
        started = time.perf_counter()
        with count_queries() as counter:

            async def send_counted(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    headers = list(message.get("headers", []))
                    headers.append((QUERY_COUNT_HEADER.encode(), str(counter.count).encode()))
                    message = {**message, "headers": headers}
                await send(message)

            try:
                await self.app(scope, receive, send_counted)
            finally:
                seconds = time.perf_counter() - started
                self.metrics.requests.labels(endpoint=endpoint, method=method, status=str(status)).inc()
                self.metrics.db_queries.labels(endpoint=endpoint).inc(counter.count)
                if endpoint not in STREAMING_ENDPOINTS:
                    self.metrics.latency.labels(endpoint=endpoint).observe(seconds)
                    if seconds > self.slow_request_s():
                        log.warning(
                            "slow dashboard request: endpoint=%s seconds=%.3f queries=%d status=%d",
                            endpoint,
                            seconds,
                            counter.count,
                            status,
                        )
