"""GET /api/stream: run status changes as Server-Sent Events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from etl_platform.dashboard.params import StreamQuery
from etl_platform.dashboard.routers.common import LEDGER_ERRORS, STRICT
from etl_platform.dashboard.runtime import RuntimeDep
from etl_platform.dashboard.stream import event_stream, subscribe

router = APIRouter()


@router.get("/api/stream", responses=LEDGER_ERRORS, dependencies=STRICT)
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
