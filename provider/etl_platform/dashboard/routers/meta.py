"""What describes the app itself: GET /metrics (Prometheus) and GET /api/openapi.json (its schema)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from etl_platform.dashboard.params import NoQuery
from etl_platform.dashboard.routers.common import PARAMETER_ERROR, STRICT
from etl_platform.dashboard.runtime import RuntimeDep

router = APIRouter()


@router.get("/metrics", responses=PARAMETER_ERROR, dependencies=STRICT)
def metrics(rt: RuntimeDep, _: Annotated[NoQuery, Query()]) -> Response:
    """Prometheus exposition of the app's own registry."""
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/openapi.json", include_in_schema=False, dependencies=STRICT)
def openapi(request: Request, _: Annotated[NoQuery, Query()]) -> JSONResponse:
    """The OpenAPI schema: every parameter with its constraints."""
    return JSONResponse(request.app.openapi())
