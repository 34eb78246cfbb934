"""GET /api/stats and /api/series: the cached aggregates behind the cards, the table and the charts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from etl_platform.dashboard.params import SeriesQuery, StatsQuery
from etl_platform.dashboard.routers.common import LEDGER_ERRORS, STRICT
from etl_platform.dashboard.runtime import CACHE_HEADER, LedgerJSONResponse, RuntimeDep

router = APIRouter()


@router.get("/api/stats", responses=LEDGER_ERRORS, dependencies=STRICT)
async def stats(rt: RuntimeDep, q: Annotated[StatsQuery, Query()]) -> Response:
    """Overall and per-pipeline stats over whole UTC days (cached)."""
    value, level = await rt.acached(*rt.stats_entry(q.since, q.until))
    return LedgerJSONResponse(value, headers={CACHE_HEADER: level})


@router.get("/api/series", responses=LEDGER_ERRORS, dependencies=STRICT)
async def series(rt: RuntimeDep, q: Annotated[SeriesQuery, Query()]) -> Response:
    """Points per bucket and pipeline (cached)."""
    start, end = q.window
    value, level = await rt.acached(*rt.series_entry(q.pipeline, start, end, q.bucket))
    return LedgerJSONResponse(value, headers={CACHE_HEADER: level})
