"""Run events on Redis: channel names, the event shape and the publisher.

Shared by the listeners (scheduler and task processes publish) and the dashboard (the SSE endpoint and
the cache's invalidation subscriber listen), so both sides agree on names without importing each other.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Protocol

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
