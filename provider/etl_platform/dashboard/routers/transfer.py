"""The Transfer view: GET /api/transfer (a run's transfer attempts) and the /transfer page showing it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from etl_platform.dashboard.params import TransferQuery
from etl_platform.dashboard.routers.common import LEDGER_ERRORS, STRICT
from etl_platform.dashboard.routers.pages import static_file
from etl_platform.dashboard.runtime import LedgerJSONResponse, RuntimeDep, bad_request

router = APIRouter()


@router.get("/api/transfer", responses=LEDGER_ERRORS, dependencies=STRICT)
def transfer(rt: RuntimeDep, q: Annotated[TransferQuery, Query()]) -> Response:
    """A DAG run's transfer task attempts with their chunks (the UI's Transfer view); a run the
    ledger does not know answers 200 with no attempts."""
    from etl_platform.dashboard.transfer import fetch_transfer

    _, pool, _ = rt.ready()
    with bad_request(), pool.connection() as conn:
        found = fetch_transfer(conn, q.dag_id, q.run_id, q.task_id, q.map_index)
    return LedgerJSONResponse(found)


@router.get("/transfer")
def transfer_page() -> FileResponse:
    """The Transfer view of one run (or task instance), read from its query string by transfer.js."""
    return static_file("transfer.html")
