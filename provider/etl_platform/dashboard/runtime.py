"""What the dashboard's lifespan opens (settings, ledger pool, Redis, cache) and how routes reach it.

Routes depend on `RuntimeDep`; a dashboard that could not start answers 503 through `ready()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

import redis
from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from psycopg import Connection
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from etl_platform.dashboard.cache import CacheLevel, TwoLevelCache, run_invalidation_subscriber
from etl_platform.dashboard.db import create_pool
from etl_platform.dashboard.metrics import DashboardMetrics
from etl_platform.dashboard.settings import DashboardSettings

log = logging.getLogger(__name__)

CACHE_HEADER = "X-ETL-Cache"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):  # sum() of bigint comes back as numeric
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class LedgerJSONResponse(JSONResponse):
    """json.dumps straight from the query results: they are plain values already, and FastAPI's
    jsonable_encoder walk cost more than the query itself (2.4 ms for a page of 50 runs)."""

    @staticmethod
    def dumps(content: Any) -> str:
        return json.dumps(content, default=_json_default, separators=(",", ":"), allow_nan=False)

    def render(self, content: Any) -> bytes:
        return self.dumps(content).encode()


LedgerQuery = Callable[[Connection[Any]], dict[str, Any]]


class DashboardRuntime:
    """What the lifespan opens; routes reach it through `request.app.state.dashboard`."""

    def __init__(self, settings: DashboardSettings | None) -> None:
        self.settings = settings
        self.metrics = DashboardMetrics(ledger_stats=self._scrape_stats)
        self.pool: ConnectionPool | None = None
        self.redis: redis.Redis | None = None
        self.cache: TwoLevelCache | None = None
        self.subscriber: asyncio.Task[None] | None = None
        self.error: str | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        try:
            if self.settings is None:
                self.settings = await run_in_threadpool(DashboardSettings.from_airflow)
        except Exception as exc:
            self.error = "dashboard not configured: see the api-server log"  # the cause stays server-side
            log.error("ETL dashboard disabled: %s", exc)
            return
        settings = self.settings
        self.pool = create_pool(
            settings.ledger_conninfo,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            statement_timeout_ms=settings.statement_timeout_ms,
        )
        self.pool.open(wait=False)  # a ledger that is down now must not stop the api-server
        if settings.redis_url:
            self.redis = redis.Redis.from_url(
                settings.redis_url,
                socket_timeout=settings.redis_timeout_s,
                socket_connect_timeout=settings.redis_timeout_s,
            )
        self.cache = TwoLevelCache(
            self.redis, settings.cache_ttl_s, on_redis_error=self.metrics.cache_redis_errors.inc
        )
        if settings.redis_url:
            self.subscriber = asyncio.create_task(
                run_invalidation_subscriber(self.cache, settings.redis_url), name="etl-dashboard-invalidation"
            )

    async def stop(self) -> None:
        if self.subscriber is not None:
            self.subscriber.cancel()
            # bounded: a Redis connection stuck mid-close must not hold the api-server's shutdown
            done, _ = await asyncio.wait({self.subscriber}, timeout=3)
            if not done:
                log.warning("ETL dashboard: the run-event subscriber did not stop within 3 s")
        if self.pool is not None:
            await run_in_threadpool(self.pool.close)
        if self.redis is not None:
            self.redis.close()

    # ------------------------------------------------------------------ helpers
    def ready(self) -> tuple[DashboardSettings, ConnectionPool, TwoLevelCache]:
        if self.settings is None or self.pool is None or self.cache is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, detail=self.error or "dashboard starting"
            )
        return self.settings, self.pool, self.cache

    def cached(
        self, key: str, compute: Callable[[Connection[Any]], dict[str, Any]]
    ) -> tuple[Any, CacheLevel]:
        """`compute` on a pooled ledger connection, through the two-level cache (blocking: threads)."""
        _, pool, cache = self.ready()

        def on_ledger() -> dict[str, Any]:
            with bad_request(), pool.connection() as conn:
                return dict(json.loads(LedgerJSONResponse.dumps(compute(conn))))  # what Redis will hold

        value, level = cache.get_or_compute(key, on_ledger)
        self.metrics.cache.labels(result=level).inc()
        return value, level

    async def acached(
        self, key: str, compute: Callable[[Connection[Any]], dict[str, Any]]
    ) -> tuple[Any, CacheLevel]:
        """A memory hit answers on the event loop; Redis and the ledger are reached from a thread."""
        _, _, cache = self.ready()
        value = cache.peek_memory(key)
        if value is not None:
            self.metrics.cache.labels(result="memory").inc()
            return value, "memory"
        return await run_in_threadpool(self.cached, key, compute)

    @staticmethod
    def stats_entry(since: datetime | None, until: datetime | None) -> tuple[str, LedgerQuery]:
        from etl_platform.dashboard import aggregates

        since, until = aggregates.align_range(since, until, "day")  # the rollup is per day
        return f"stats:{_iso(since)}:{_iso(until)}", lambda c: aggregates.fetch_stats(c, since, until)

    @staticmethod
    def series_entry(
        pipeline: str | None, since: datetime, until: datetime, bucket: str
    ) -> tuple[str, LedgerQuery]:
        from etl_platform.dashboard import aggregates

        aligned = aggregates.align_range(since, until, bucket)
        start, end = aligned[0] or since, aligned[1] or until
        return (
            f"series:{bucket}:{_iso(start)}:{_iso(end)}:{pipeline or ''}",
            lambda c: aggregates.fetch_series(c, pipeline, start, end, bucket),
        )

    def _scrape_stats(self) -> dict[str, Any] | None:
        if self.cache is None:
            return None
        return self.cached(*self.stats_entry(None, None))[0]


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


@contextlib.contextmanager
def bad_request() -> Iterator[None]:
    """A ValueError from the query layer is the client's mistake: 400 with its message."""
    try:
        yield
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None


async def _runtime(request: Request) -> DashboardRuntime:  # async: no threadpool hop
    runtime: DashboardRuntime = request.app.state.dashboard
    return runtime


RuntimeDep = Annotated[DashboardRuntime, Depends(_runtime)]
