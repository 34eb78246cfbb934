"""Server-Sent Events of run status changes, relayed from Redis pub/sub (redis.asyncio).

Each client gets its own subscription: the pipeline's channel, or the pattern for all pipelines. The
subscription is made before the response starts, so a client that got the response headers misses
no event published afterwards, and an unreachable Redis is a 503 rather than a broken stream.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import redis
from fastapi import HTTPException, status

from etl_platform import events
from etl_platform.events import Subscription

log = logging.getLogger(__name__)


MAX_STREAMS = 200  # per api-server process: each stream holds a Redis connection
_open_streams = 0


def open_streams() -> int:
    return _open_streams


async def subscribe(redis_url: str | None, pipeline: str | None, timeout_s: float = 2.0) -> Subscription:
    """A stream's subscription (events.subscribe); 503 when Redis is unreachable or streams are full.

    The stream's slot is taken first and given back exactly once: by the subscription's close, or here
    when no subscription came of it."""
    global _open_streams
    if not redis_url:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="no Redis configured for run events")
    if _open_streams >= MAX_STREAMS:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="too many live streams; retry later")
    released = False

    def release() -> None:
        global _open_streams
        nonlocal released
        if not released:
            released = True
            _open_streams -= 1

    _open_streams += 1
    try:
        return await events.subscribe(redis_url, pipeline, timeout_s, on_close=release)
    except BaseException as exc:
        release()
        if isinstance(exc, redis.RedisError | OSError):
            log.warning("dashboard stream: Redis unavailable: %s", type(exc).__name__)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, detail="run events unavailable"
            ) from None
        raise


def format_event(data: Any) -> str | None:
    """One `run` SSE event (single-line JSON data), or None for a payload that is not a JSON object."""
    try:
        event = json.loads(data)
    except (TypeError, ValueError):
        return None
    if not isinstance(event, dict):
        return None
    return f"event: run\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


async def event_stream(subscription: Subscription, keepalive_s: float = 15.0) -> AsyncIterator[str]:
    """Relay events until the client goes away (the server cancels this generator) or Redis fails."""
    last_sent = time.monotonic()
    try:
        yield ": subscribed\n\n"
        while True:
            wait = max(0.05, min(1.0, keepalive_s - (time.monotonic() - last_sent)))
            message = await subscription.pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
            if message is not None and message.get("type") in ("message", "pmessage"):
                text = format_event(message.get("data"))
                if text is not None:
                    last_sent = time.monotonic()
                    yield text
            if time.monotonic() - last_sent >= keepalive_s:
                last_sent = time.monotonic()
                yield ": keepalive\n\n"
    except (redis.RedisError, OSError) as exc:
        log.warning("dashboard stream: Redis subscription lost: %s", type(exc).__name__)
    finally:
        await subscription.close()
