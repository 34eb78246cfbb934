"""GET /api/runs: pipeline runs newest first, in keyset pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from etl_platform.dashboard.cursor import InvalidCursor
from etl_platform.dashboard.params import RunsQuery, invalid_parameter
from etl_platform.dashboard.routers.common import LEDGER_ERRORS, STRICT
from etl_platform.dashboard.runtime import LedgerJSONResponse, RuntimeDep, bad_request

router = APIRouter()


@router.get("/api/runs", responses=LEDGER_ERRORS, dependencies=STRICT)
def runs(rt: RuntimeDep, q: Annotated[RunsQuery, Query()]) -> Response:
    """Pipeline runs newest first, keyset pages (docs/dashboard.md)."""
    from etl_platform.dashboard import queries

    settings, pool, _ = rt.ready()
    with bad_request():
        filters = queries.RunFilters(q.pipeline, q.status, q.since, q.until)
        with pool.connection() as conn:
            try:
                page = queries.fetch_runs_page(conn, filters, q.page_size, q.cursor, settings.cursor_key)
            except InvalidCursor as exc:
                raise invalid_parameter("cursor", str(exc)) from None
    return LedgerJSONResponse(page)
