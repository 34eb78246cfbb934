"""The dashboard's FastAPI app (mounted by the api-server at /etl through plugins/etl_dashboard.py).

Cheap to build: create_app() only declares routes. Settings, the ledger pool, Redis and the cache's
invalidation subscriber are set up in the app's lifespan, which Airflow's api-server enters for mounted
plugin apps; a dashboard that cannot start answers 503 and never takes the api-server down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import psycopg
import redis
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg import Connection
from psycopg_pool import ConnectionPool
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from etl_platform.dashboard.auth import require_dag_run_reader
from etl_platform.dashboard.cache import CacheLevel, TwoLevelCache, run_invalidation_subscriber
from etl_platform.dashboard.cursor import InvalidCursor
from etl_platform.dashboard.db import create_pool
from etl_platform.dashboard.metrics import DashboardMetrics, MetricsMiddleware
from etl_platform.dashboard.params import (
    NoQuery,
    ParameterErrorBody,
    RunsQuery,
    SeriesQuery,
    StatsQuery,
    StreamQuery,
    TransferQuery,
    invalid_parameter,
    parameter_errors,
    reject_repeated,
    without_422,
)
from etl_platform.dashboard.settings import DashboardSettings
from etl_platform.dashboard.stream import event_stream, subscribe

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
CACHE_HEADER = "X-ETL-Cache"
KNOWN_PATHS = frozenset(
    {
        "/",
        "/transfer",
        "/api/runs",
        "/api/stats",
        "/api/series",
        "/api/stream",
        "/api/transfer",
        "/api/openapi.json",
        "/metrics",
    }
)


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
            with _bad_request(), pool.connection() as conn:
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
        from etl_platform.dashboard import queries

        since, until = queries.align_range(since, until, "day")  # the rollup is per day
        return f"stats:{_iso(since)}:{_iso(until)}", lambda c: queries.fetch_stats(c, since, until)

    @staticmethod
    def series_entry(
        pipeline: str | None, since: datetime, until: datetime, bucket: str
    ) -> tuple[str, LedgerQuery]:
        from etl_platform.dashboard import queries

        aligned = queries.align_range(since, until, bucket)
        start, end = aligned[0] or since, aligned[1] or until
        return (
            f"series:{bucket}:{_iso(start)}:{_iso(end)}:{pipeline or ''}",
            lambda c: queries.fetch_series(c, pipeline, start, end, bucket),
        )

    def _scrape_stats(self) -> dict[str, Any] | None:
        if self.cache is None:
            return None
        return self.cached(*self.stats_entry(None, None))[0]


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


@contextlib.contextmanager
def _bad_request() -> Iterator[None]:
    """A ValueError from the query layer is the client's mistake: 400 with its message."""
    try:
        yield
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None


async def _runtime(request: Request) -> DashboardRuntime:  # async: no threadpool hop
    runtime: DashboardRuntime = request.app.state.dashboard
    return runtime


RuntimeDep = Annotated[DashboardRuntime, Depends(_runtime)]
_PARAMETER_ERROR: dict[int | str, dict[str, Any]] = {
    400: {"model": ParameterErrorBody, "description": "a query parameter is unknown, repeated or invalid"}
}
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid Airflow token (Bearer header or the UI's _token cookie)"},
    403: {"description": "the token's user may not read DAG runs"},
}
_LEDGER_ERRORS: dict[int | str, dict[str, Any]] = {
    **_PARAMETER_ERROR,
    503: {"description": "dashboard not configured, ledger or Redis unavailable"},
}
# API routes: after auth (the app's dependency), each parameter at most once; then the route's query model.
_STRICT = [Depends(reject_repeated)]


def create_app(settings: DashboardSettings | None = None) -> FastAPI:
    """The dashboard app; `settings` None: resolved from Airflow's configuration when it starts."""
    runtime = DashboardRuntime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="ETL performance dashboard",
        lifespan=lifespan,
        dependencies=[Depends(require_dag_run_reader)],
        responses=_AUTH_ERRORS,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by /api/openapi.json, behind the same auth as every route
    )
    app.state.dashboard = runtime
    build_openapi = app.openapi
    app.openapi = lambda: without_422(build_openapi())  # type: ignore[method-assign]
    app.add_middleware(
        MetricsMiddleware,
        metrics=runtime.metrics,
        known_paths=KNOWN_PATHS,
        slow_request_s=lambda: runtime.settings.slow_request_s if runtime.settings else 1.0,
    )

    @app.exception_handler(HTTPException)
    async def sign_in_first(request: Request, exc: HTTPException) -> Response:
        """A browser opening the page without a session goes to Airflow's login and comes back;
        API clients (and everything but the page) get the plain 401."""
        if exc.status_code == status.HTTP_401_UNAUTHORIZED and _is_page_visit(request):
            return RedirectResponse(_login_url(str(request.url)), status_code=status.HTTP_303_SEE_OTHER)
        return await http_exception_handler(request, exc)

    app.add_exception_handler(RequestValidationError, parameter_errors)  # type: ignore[arg-type]

    @app.exception_handler(psycopg.OperationalError)
    async def ledger_unavailable(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.warning("dashboard: ledger unavailable: %s", type(exc).__name__)
        return JSONResponse({"detail": "ledger unavailable"}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    @app.get("/api/runs", responses=_LEDGER_ERRORS, dependencies=_STRICT)
    def runs(rt: RuntimeDep, q: Annotated[RunsQuery, Query()]) -> Response:
        """Pipeline runs newest first, keyset pages (docs/dashboard.md)."""
        from etl_platform.dashboard import queries

        settings, pool, _ = rt.ready()
        with _bad_request():
            filters = queries.RunFilters(q.pipeline, q.status, q.since, q.until)
            with pool.connection() as conn:
                try:
                    page = queries.fetch_runs_page(conn, filters, q.page_size, q.cursor, settings.cursor_key)
                except InvalidCursor as exc:
                    raise invalid_parameter("cursor", str(exc)) from None
        return LedgerJSONResponse(page)

    @app.get("/api/stats", responses=_LEDGER_ERRORS, dependencies=_STRICT)
    async def stats(rt: RuntimeDep, q: Annotated[StatsQuery, Query()]) -> Response:
        """Overall and per-pipeline stats over whole UTC days (cached)."""
        value, level = await rt.acached(*rt.stats_entry(q.since, q.until))
        return LedgerJSONResponse(value, headers={CACHE_HEADER: level})

    @app.get("/api/series", responses=_LEDGER_ERRORS, dependencies=_STRICT)
    async def series(rt: RuntimeDep, q: Annotated[SeriesQuery, Query()]) -> Response:
        """Points per bucket and pipeline (cached)."""
        start, end = q.window
        value, level = await rt.acached(*rt.series_entry(q.pipeline, start, end, q.bucket))
        return LedgerJSONResponse(value, headers={CACHE_HEADER: level})

    @app.get("/api/stream", responses=_LEDGER_ERRORS, dependencies=_STRICT)
    async def stream(rt: RuntimeDep, q: Annotated[StreamQuery, Query()]) -> StreamingResponse:
        """Server-Sent Events of run status changes."""
        settings, _, _ = rt.ready()
        subscription = await subscribe(settings.redis_url, q.pipeline)
        return StreamingResponse(
            event_stream(subscription, settings.keepalive_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=BackgroundTask(subscription.close),  # also when the stream never started
        )

    @app.get("/api/transfer", responses=_LEDGER_ERRORS, dependencies=_STRICT)
    def transfer(rt: RuntimeDep, q: Annotated[TransferQuery, Query()]) -> Response:
        """A DAG run's transfer task attempts with their chunks (the UI's Transfer view); a run the
        ledger does not know answers 200 with no attempts."""
        from etl_platform.dashboard.transfer import fetch_transfer

        _, pool, _ = rt.ready()
        with _bad_request(), pool.connection() as conn:
            found = fetch_transfer(conn, q.dag_id, q.run_id, q.task_id, q.map_index)
        return LedgerJSONResponse(found)

    @app.get("/metrics", responses=_PARAMETER_ERROR, dependencies=_STRICT)
    def metrics(rt: RuntimeDep, _: Annotated[NoQuery, Query()]) -> Response:
        """Prometheus exposition of the app's own registry."""
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/openapi.json", include_in_schema=False, dependencies=_STRICT)
    def openapi(_: Annotated[NoQuery, Query()]) -> JSONResponse:
        """The OpenAPI schema: every parameter with its constraints."""
        return JSONResponse(app.openapi())

    @app.get("/")
    def index() -> FileResponse:
        return _static_file("index.html")

    @app.get("/transfer")
    def transfer_page() -> FileResponse:
        """The Transfer view of one run (or task instance), read from its query string by transfer.js."""
        return _static_file("transfer.html")

    @app.get("/static/{path:path}")
    def static(path: str) -> FileResponse:
        return _static_file(path)

    return app


PAGES = ("", "/transfer")  # under the app's root: what a browser opens (the rest are its API and files)


def _is_page_visit(request: Request) -> bool:
    root = request.scope.get("root_path", "").rstrip("/")
    return (
        request.method == "GET"
        and request.url.path.rstrip("/") in {root + page for page in PAGES}
        and "text/html" in request.headers.get("accept", "")
    )


def _login_url(next_url: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=next_url)


def _static_file(path: str) -> FileResponse:
    """A file under static/ (never outside it: the resolved path must stay in the folder)."""
    root = STATIC_DIR.resolve()
    try:
        target = (root / path).resolve()
        found = target.is_relative_to(root) and target.is_file()
    except (ValueError, OSError):  # a NUL byte, a name too long: not a file of ours either
        found = False
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    return FileResponse(target, headers={"Cache-Control": "no-cache"})
