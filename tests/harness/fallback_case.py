"""Run only by tests/test_harness_fallback.py, in a pytest subprocess (its name keeps it out of collection)."""

from __future__ import annotations

from harness import RedisDb


def test_uses_the_session_redis(redis_db: RedisDb) -> None:
    redis_db.client.set("k", "v")
    assert redis_db.client.get("k") == b"v"
