"""Run events on Redis: channel names, the event shape and the publisher.

Shared by the listeners (scheduler and task processes publish) and the dashboard (the SSE endpoint and
the cache's invalidation subscriber listen), so both sides agree on names without importing each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import redis.asyncio as aioredis

CHANNEL_PREFIX = "etl:runs:"
CHANNEL_PATTERN = CHANNEL_PREFIX + "*"
VERSION_KEY = "etl:dashboard:version"
FINISHED = frozenset({"success", "failed"})


class RedisLike(Protocol):
    """What the publisher needs of a sync redis client (redis.Redis satisfies it)."""

    def incr(self, name: str, amount: int = 1) -> Any: ...

    def publish(self, channel: str, message: str) -> Any: ...


def channel(pipeline: str) -> str:
    return CHANNEL_PREFIX + pipeline


def run_event(
    kind: str,
    pipeline: str,
    run_id: str,
    status: str,
    *,
    task_id: str | None = None,
    map_index: int | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The event as docs/dashboard.md shows it (`kind` is dag_run or task)."""
    when = (at or datetime.now(UTC)).astimezone(UTC)
    return {
        "kind": kind,
        "pipeline": pipeline,
        "run_id": run_id,
        "status": status,
        "task_id": task_id,
        "map_index": map_index,
        "at": when.isoformat(),
    }


def ends_a_run(event: dict[str, Any]) -> bool:
    """A finished DAG run changes the ledger's figures: the dashboard's cache version moves."""
    return event.get("kind") == "dag_run" and event.get("status") in FINISHED


def publish_run_event(redis_client: RedisLike, event: dict[str, Any]) -> int | None:
    """Publish `event` on its pipeline's channel; a finished DAG run first bumps the cache version.

    The new version rides in the event (`version`), so subscribers need no extra round trip. Returns
    the new version, or None when the event does not end a run. Redis errors propagate: the caller
    decides whether they matter (the listeners log them).
    """
    version = None
    if ends_a_run(event):
        version = int(redis_client.incr(VERSION_KEY))
        event = {**event, "version": version}
    redis_client.publish(channel(str(event["pipeline"])), json.dumps(event))
    return version


class Subscription:
    """An open pub/sub on its own client connection; close() (idempotent, bounded) releases both."""

    def __init__(
        self, client: aioredis.Redis, pubsub: Any, on_close: Callable[[], None] | None = None
    ) -> None:
        self.client = client
        self.pubsub = pubsub
        self.closed = False
        self._on_close = on_close

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._on_close is not None:
            self._on_close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pubsub.aclose(), 1)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.aclose(), 1)


async def subscribe(
    redis_url: str, pipeline: str | None, timeout_s: float = 2.0, on_close: Callable[[], None] | None = None
) -> Subscription:
    """Subscribe to `etl:runs:<pipeline>` (psubscribe `etl:runs:*` without one) and wait for the
    confirmation, so nothing published afterwards is missed. Redis errors propagate, nothing left open."""
    import redis.asyncio as aioredis  # only the api-server needs it; this module is imported everywhere

    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=timeout_s, health_check_interval=30)
    subscription = Subscription(client, client.pubsub(), on_close)
    try:
        if pipeline:
            await subscription.pubsub.subscribe(channel(pipeline))
        else:
            await subscription.pubsub.psubscribe(CHANNEL_PATTERN)
        await subscription.pubsub.get_message(timeout=timeout_s)  # the confirmation: now we listen
    except BaseException:
        await subscription.close()
        raise
    return subscription
