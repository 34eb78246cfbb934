"""Two-level cache for ledger aggregates: process memory, then Redis, both keyed by a ledger version.

A finished DAG run increments `etl:dashboard:version` (events.publish_run_event); each api-server process
learns the new version from the run-event channels (run_invalidation_subscriber), so its memory entries
stop matching at once and Redis entries of the old version are never read again (they expire by TTL).
Redis is an optimisation: when it fails, values come from the database and the failure is counted;
a request never fails because of the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

import redis

from etl_platform.common.backoff import Backoff
from etl_platform.events import VERSION_KEY, Subscription, ends_a_run, subscribe

log = logging.getLogger(__name__)

CacheLevel = Literal["memory", "redis", "miss"]
KEY_PREFIX = "etl:dashboard"


class TwoLevelCache:
    """get_or_compute(key, compute) -> (value, level); values must be JSON-serialisable.

    `clock` (monotonic seconds) is injectable so memory expiry is testable without waiting; Redis
    expiry is Redis's own (PX), read back with PTTL so a value copied into memory never outlives it.
    """

    def __init__(
        self,
        redis_client: redis.Redis | None,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_redis_after_s: float = 5.0,
        on_redis_error: Callable[[], None] | None = None,
        max_entries: int = 256,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"cache ttl must be positive, got {ttl_s}")
        self.redis = redis_client
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self.on_redis_error = on_redis_error
        self.redis_errors = 0
        self.subscribed = threading.Event()  # set while the invalidation subscriber listens
        # key -> (version, expires at, value); least recently stored first, at most max_entries
        self._memory: OrderedDict[str, tuple[int, float, Any]] = OrderedDict()
        self.max_entries = max_entries
        self._version: int | None = None
        self._redis_backoff = Backoff(retry_redis_after_s, clock=clock)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ version
    @property
    def version(self) -> int | None:
        return self._version

    def set_version(self, version: int, *, authoritative: bool = False) -> None:
        """Adopt a newer ledger version; `authoritative` (read from our own Redis database) also goes
        back, so a version from a foreign event can never pin a process above the real one."""
        with self._lock:
            if (
                self._version is None
                or version > self._version
                or (authoritative and version != self._version)
            ):
                self._version = version
                self._memory.clear()  # every entry belongs to another version now

    def _current_version(self) -> int:
        if self._version is not None:
            return self._version
        raw = self._redis_call(lambda r: r.get(VERSION_KEY))
        if raw is _FAILED:
            return -1  # Redis unknown: a local-only version, replaced once Redis answers
        self.set_version(int(raw or 0))
        return self._version if self._version is not None else 0

    # ------------------------------------------------------------------ lookups
    def redis_key(self, version: int, key: str) -> str:
        return f"{KEY_PREFIX}:v{version}:{key}"

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> tuple[Any, CacheLevel]:
        version = self._current_version()
        now = self.clock()
        entry = self._memory.get(key)
        if entry is not None and entry[0] == version and entry[1] > now:
            return entry[2], "memory"
        if version >= 0:
            rkey = self.redis_key(version, key)
            found = self._redis_call(lambda r: _get_with_ttl(r, rkey))
            if found is not _FAILED and found[0] is not None:
                value = json.loads(found[0])
                remaining_s = found[1] / 1000 if found[1] and found[1] > 0 else self.ttl_s
                self._remember(key, version, now + min(remaining_s, self.ttl_s), value)
                return value, "redis"
        value = compute()
        self._remember(key, version, now + self.ttl_s, value)
        if version >= 0:
            payload = json.dumps(value)
            self._redis_call(
                lambda r: r.set(self.redis_key(version, key), payload, px=int(self.ttl_s * 1000))
            )
        return value, "miss"

    def peek_memory(self, key: str) -> Any | None:
        """The live memory entry, without any I/O (safe on the event loop); None: ask get_or_compute."""
        version = self._version
        entry = self._memory.get(key)
        if version is not None and entry is not None and entry[0] == version and entry[1] > self.clock():
            return entry[2]
        return None

    def _remember(self, key: str, version: int, expires_at: float, value: Any) -> None:
        """Keys come from request parameters: the oldest entries make room, so memory stays bounded."""
        with self._lock:
            if self._version is None or version >= self._version:
                self._memory[key] = (version, expires_at, value)
                self._memory.move_to_end(key)
                while len(self._memory) > self.max_entries:
                    self._memory.popitem(last=False)

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()

    def _redis_call(self, call: Callable[[redis.Redis], Any]) -> Any:
        """Run one Redis call; on failure count it, skip Redis for a while, return _FAILED."""
        if self.redis is None or not self._redis_backoff.ready():
            return _FAILED
        try:
            return call(self.redis)
        except (redis.RedisError, OSError) as exc:
            self.redis_errors += 1
            self._redis_backoff.failed()
            if self.on_redis_error is not None:
                self.on_redis_error()
            log.warning(
                "dashboard cache: Redis unavailable, serving from the database: %s", type(exc).__name__
            )
            return _FAILED


_FAILED: Any = object()


def _get_with_ttl(client: redis.Redis, key: str) -> list[Any]:
    """GET and PTTL in one round trip."""
    pipe: Any = client.pipeline()
    pipe.get(key)
    pipe.pttl(key)
    return list(pipe.execute())


async def run_invalidation_subscriber(
    cache: TwoLevelCache, redis_url: str, *, max_backoff_s: float = 10.0
) -> None:
    """Follow the run-event channels and move the cache's version when a DAG run finishes.

    Runs until cancelled (the app's lifespan cancels it). After (re)subscribing it re-reads the version
    key, so events missed while disconnected cannot leave stale memory entries behind.
    """
    backoff = 0.5
    while True:
        subscription: Subscription | None = None
        try:
            subscription = await subscribe(redis_url, None)
            client, pubsub = subscription.client, subscription.pubsub
            cache.set_version(int(await client.get(VERSION_KEY) or 0), authoritative=True)
            cache.subscribed.set()
            backoff = 0.5
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                if message is None or message.get("type") != "pmessage":
                    continue
                with contextlib.suppress(ValueError, TypeError):
                    event = json.loads(message["data"])
                    if isinstance(event, dict) and ends_a_run(event):
                        # Channels span Redis databases (another platform on the same server publishes
                        # here too), so the event's own version is not trusted: read our key instead.
                        cache.set_version(int(await client.get(VERSION_KEY) or 0), authoritative=True)
        except asyncio.CancelledError:
            raise
        except (redis.RedisError, OSError) as exc:
            log.warning("dashboard cache: run-event subscription lost (%s); retrying", type(exc).__name__)
        finally:
            cache.subscribed.clear()
            if subscription is not None:
                await subscription.close()
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, max_backoff_s)
