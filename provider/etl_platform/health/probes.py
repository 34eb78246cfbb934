"""The readings themselves, all async: they run inside the triggerer's event loop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
import psycopg

# kombu's Redis transport keeps priority messages in sibling lists named "<queue>\x06\x16<n>".
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
_CGROUP = Path("/sys/fs/cgroup")

_CONNECTIONS_SQL = """
SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
       current_setting('max_connections')::int
       - current_setting('superuser_reserved_connections')::int
       - coalesce(current_setting('reserved_connections', true)::int, 0)
"""
_STATEMENTS_SQL = """
SELECT coalesce(sum(mean_exec_time * calls) / nullif(sum(calls), 0), 0) / 1000.0 FROM pg_stat_statements
"""


class Unavailable(Exception):
    """The source of a reading cannot be reached or lacks what the check needs."""


async def db_connections(conninfo: str, timeout: float) -> tuple[float, str]:
    """Connections in use as a % of max_connections minus the reserved ones."""
    async with await _connect(conninfo, timeout) as conn:
        row = await (await conn.execute(_CONNECTIONS_SQL)).fetchone()
    assert row is not None
    used, usable = int(row[0]), max(int(row[1]), 1)
    return 100.0 * used / usable, f"{used} of {usable} usable connections"


async def avg_response_time(conninfo: str, timeout: float) -> tuple[float, str]:
    """pg_stat_statements' mean execution time where loaded, else the latency of a probe query."""
    async with await _connect(conninfo, timeout) as conn:
        loaded = await (await conn.execute("SELECT to_regclass('pg_stat_statements') IS NOT NULL")).fetchone()
        if loaded and loaded[0]:
            try:
                row = await (await conn.execute(_STATEMENTS_SQL)).fetchone()
                return float(row[0]) if row else 0.0, "pg_stat_statements mean execution time"
            except psycopg.Error:
                await conn.rollback()  # the view exists but the library is not preloaded
        samples = []
        for _ in range(3):
            started = time.perf_counter()
            await conn.execute("SELECT 1")
            samples.append(time.perf_counter() - started)
    return sum(samples) / len(samples), "probe query latency (pg_stat_statements not loaded)"


async def pgbouncer_pools(conninfo: str, timeout: float) -> dict[str, tuple[float, str]]:
    """Clients waiting and the longest wait across PgBouncer pools (SHOW POOLS on its admin db)."""
    async with await _connect(conninfo, timeout, autocommit=True) as conn:
        cur = await conn.execute("SHOW POOLS")
        names = [d.name for d in cur.description or ()]
        rows = await cur.fetchall()
    waiting = sum(int(r[names.index("cl_waiting")]) for r in rows)
    max_wait = max((float(r[names.index("maxwait")]) for r in rows), default=0.0)
    return {
        "pgbouncer_clients_waiting": (float(waiting), f"{waiting} clients waiting over {len(rows)} pools"),
        "pgbouncer_max_wait": (max_wait, "longest client wait, seconds"),
    }


def memory_usage_percent() -> tuple[float, str]:
    """The container's cgroup memory use where it has a limit, else the host's."""
    limited = _cgroup_usage()
    if limited is not None:
        used, limit = limited
        return 100.0 * used / limit, f"cgroup: {used / 2**20:.0f} of {limit / 2**20:.0f} MiB"
    memory = psutil.virtual_memory()
    return float(memory.percent), f"host: {memory.used / 2**20:.0f} of {memory.total / 2**20:.0f} MiB"


def _cgroup_usage() -> tuple[int, int] | None:
    for current, limit in (
        (_CGROUP / "memory.current", _CGROUP / "memory.max"),  # cgroup v2
        (_CGROUP / "memory/memory.usage_in_bytes", _CGROUP / "memory/memory.limit_in_bytes"),  # v1
    ):
        try:
            raw_limit = limit.read_text().strip()
            if raw_limit == "max" or int(raw_limit) >= psutil.virtual_memory().total:
                return None  # no limit below the host's memory
            return int(current.read_text().strip()), int(raw_limit)
        except (OSError, ValueError):
            continue
    return None


async def queue_length(redis_url: str, queues: tuple[str, ...], timeout: float) -> tuple[float, str]:
    """Messages waiting in the Celery queues on a Redis broker, priority sub-queues included."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for queue in queues:
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(queue + suffix)
            lengths = await pipe.execute()
    except Exception as exc:
        raise Unavailable(f"Redis broker unreachable: {type(exc).__name__}") from None
    finally:
        await client.aclose()
    per_queue = [
        sum(lengths[i : i + len(_PRIORITY_SUFFIXES)]) for i in range(0, len(lengths), len(_PRIORITY_SUFFIXES))
    ]
    detail = ", ".join(f"{q}={n}" for q, n in zip(queues, per_queue, strict=True))
    return float(sum(per_queue)), detail


async def _connect(conninfo: str, timeout: float, autocommit: bool = False) -> psycopg.AsyncConnection[Any]:
    try:
        return await psycopg.AsyncConnection.connect(
            conninfo, connect_timeout=max(1, int(timeout)), autocommit=autocommit
        )
    except psycopg.Error as exc:
        raise Unavailable(
            f"PostgreSQL unreachable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
