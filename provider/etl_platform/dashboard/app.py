"""The dashboard's FastAPI app (mounted by the api-server at /etl through plugins/etl_dashboard.py).

Cheap to build: create_app() only declares routes (routers/, one module per concern). Settings, the ledger
pool, Redis and the cache's invalidation subscriber are set up in the app's lifespan (runtime.py), which
Airflow's api-server enters for mounted plugin apps; a dashboard that cannot start answers 503 and never
takes the api-server down with it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse

from etl_platform.dashboard.auth import require_dag_run_reader
from etl_platform.dashboard.metrics import MetricsMiddleware
from etl_platform.dashboard.params import parameter_errors, without_422
from etl_platform.dashboard.routers import meta, pages, runs, stats, stream, transfer
from etl_platform.dashboard.runtime import DashboardRuntime
from etl_platform.dashboard.settings import DashboardSettings

log = logging.getLogger(__name__)

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
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid Airflow token (Bearer header or the UI's _token cookie)"},
    403: {"description": "the token's user may not read DAG runs"},
}
PAGES = ("", "/transfer")  # under the app's root: what a browser opens (the rest are its API and files)


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
    app.add_exception_handler(HTTPException, _sign_in_first)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, parameter_errors)  # type: ignore[arg-type]
    app.add_exception_handler(psycopg.OperationalError, _ledger_unavailable)  # type: ignore[arg-type]
    for module in (runs, stats, stream, transfer, meta, pages):
        app.include_router(module.router)
    return app


async def _sign_in_first(request: Request, exc: HTTPException) -> Response:
    """A browser opening the page without a session goes to Airflow's login and comes back;
    API clients (and everything but the page) get the plain 401."""
    if exc.status_code == status.HTTP_401_UNAUTHORIZED and _is_page_visit(request):
        return RedirectResponse(_login_url(str(request.url)), status_code=status.HTTP_303_SEE_OTHER)
    return await http_exception_handler(request, exc)


async def _ledger_unavailable(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
    log.warning("dashboard: ledger unavailable: %s", type(exc).__name__)
    return JSONResponse({"detail": "ledger unavailable"}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


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
