"""The readings themselves, all async (except the /sys reader, run in a thread): they run inside the
triggerer's event loop."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis.asyncio as aioredis  # imported here, not on the event loop at the first reading

# kombu's Redis transport keeps priority messages in sibling lists named "<queue>\x06\x16<n>".
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
CGROUP_ROOT = Path("/sys/fs/cgroup")

_CONNECTIONS_SQL = """
SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
       current_setting('max_connections')::int
       - current_setting('superuser_reserved_connections')::int
       - coalesce(current_setting('reserved_connections', true)::int, 0)
"""
_STATEMENTS_SQL = "SELECT coalesce(sum(total_exec_time), 0), coalesce(sum(calls), 0) FROM pg_stat_statements"


class Unavailable(Exception):
    """The source of a reading cannot be reached or lacks what the check needs."""


@dataclass(frozen=True)
class StatementsSnapshot:
    """Cumulative pg_stat_statements totals at one reading (total_exec_time in ms)."""

    total_exec_ms: float
    calls: int
    at: float  # time.monotonic()


@dataclass
class ProbeState:
    """What a probe keeps between readings of one loop (the trigger's, or a poking sensor's)."""

    statements: StatementsSnapshot | None = None


async def db_connections(conninfo: str, timeout: float) -> tuple[float, str]:
    """Connections in use as a % of max_connections minus the reserved ones."""
    async with await _connect(conninfo, timeout) as conn:
        row = await (await conn.execute(_CONNECTIONS_SQL)).fetchone()
    assert row is not None
    used, usable = int(row[0]), max(int(row[1]), 1)
    return 100.0 * used / usable, f"{used} of {usable} usable connections"


async def avg_response_time(
    conninfo: str, timeout: float, state: ProbeState | None = None
) -> tuple[float, str]:
    """Mean statement execution time, in seconds, over the interval since the previous reading.

    pg_stat_statements' own mean is a lifetime average since its last reset: hours of calm hide a
    current overload. So with the extension loaded and a snapshot from the previous reading (kept in
    ``state`` across the trigger's loop), the reading is delta(sum total_exec_time) / delta(sum calls).
    On the first reading, when no statement ran in the interval, after a stats reset, or without the
    extension, it is the measured latency of a probe query (detail starts with "probe").
    """
    async with await _connect(conninfo, timeout) as conn:
        now = await _statements_snapshot(conn)
        previous = state.statements if state else None
        if state is not None:
            state.statements = now
        if now is not None and previous is not None:
            calls = now.calls - previous.calls
            spent_ms = now.total_exec_ms - previous.total_exec_ms
            if calls > 0 and spent_ms >= 0:
                return (
                    spent_ms / calls / 1000.0,
                    f"pg_stat_statements mean over the last {now.at - previous.at:.1f} s ({calls} calls)",
                )
        samples = []
        for _ in range(3):
            started = time.perf_counter()
            await conn.execute("SELECT 1")
            samples.append(time.perf_counter() - started)
    why = "first reading" if now is not None else "pg_stat_statements not loaded"
    return sum(samples) / len(samples), f"probe query latency ({why})"


async def _statements_snapshot(conn: psycopg.AsyncConnection[Any]) -> StatementsSnapshot | None:
    loaded = await (await conn.execute("SELECT to_regclass('pg_stat_statements') IS NOT NULL")).fetchone()
    if not (loaded and loaded[0]):
        return None
    try:
        row = await (await conn.execute(_STATEMENTS_SQL)).fetchone()
    except psycopg.Error:
        await conn.rollback()  # the view exists but the library is not preloaded
        return None
    assert row is not None
    return StatementsSnapshot(float(row[0]), int(row[1]), time.monotonic())


async def pgbouncer_pools(conninfo: str, timeout: float) -> dict[str, tuple[float, str]]:
    """Clients waiting and the longest wait across PgBouncer pools (SHOW POOLS on its admin db)."""
    async with await _connect(conninfo, timeout, autocommit=True) as conn:
        cur = await conn.execute("SHOW POOLS")
        names = [d.name for d in cur.description or ()]
        rows = await cur.fetchall()
    waiting = sum(int(r[names.index("cl_waiting")]) for r in rows)
    # maxwait holds whole seconds and maxwait_us the microseconds on top: sub-second waits are only there.
    us = names.index("maxwait_us") if "maxwait_us" in names else None
    max_wait = max(
        (float(r[names.index("maxwait")]) + (int(r[us]) / 1e6 if us is not None else 0.0) for r in rows),
        default=0.0,
    )
    return {
        "pgbouncer_clients_waiting": (float(waiting), f"{waiting} clients waiting over {len(rows)} pools"),
        "pgbouncer_max_wait": (max_wait, "longest client wait, seconds"),
    }


def memory_usage_percent(root: Path = CGROUP_ROOT, host_total: int | None = None) -> tuple[float, str]:
    """The container's cgroup working set against its limit where it has one, else the host's use.

    The working set leaves out inactive page cache (``inactive_file``), as the kubelet does: the
    kernel reclaims it under pressure, so counting it would report a busy file cache as overload.
    """
    total = host_total if host_total is not None else psutil.virtual_memory().total
    limited = cgroup_usage(root, total)
    if limited is not None:
        used, limit = limited
        return 100.0 * used / limit, f"cgroup working set: {used / 2**20:.0f} of {limit / 2**20:.0f} MiB"
    memory = psutil.virtual_memory()
    return float(memory.percent), f"host: {memory.used / 2**20:.0f} of {memory.total / 2**20:.0f} MiB"


def cgroup_usage(root: Path, host_total: int) -> tuple[int, int] | None:
    """(working set bytes, limit bytes) from cgroup v2, else v1; None without a limit below the host's."""
    for current, limit, stat, inactive_key in (
        (root / "memory.current", root / "memory.max", root / "memory.stat", "inactive_file"),
        (
            root / "memory/memory.usage_in_bytes",
            root / "memory/memory.limit_in_bytes",
            root / "memory/memory.stat",
            "total_inactive_file",
        ),
    ):
        try:
            raw_limit = limit.read_text().strip()
            if raw_limit == "max" or int(raw_limit) >= host_total:
                return None  # no limit below the host's memory
            used = int(current.read_text().strip())
        except (OSError, ValueError):
            continue
        inactive = _stat_value(stat, inactive_key)
        return max(used - inactive, 0), int(raw_limit)
    return None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


async def queue_length(redis_url: str, queues: tuple[str, ...], timeout: float) -> tuple[float, str]:
    """Messages waiting in the Celery queues on a Redis broker, priority sub-queues included."""
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
