"""The per-run Transfer view's read: a DAG run's transfer task attempts, each with its chunks in order.

ONE statement (the app counts statements per request): the attempts from etl_audit.task_runs, each with
at most MAX_CHUNKS + 1 of its etl_audit.task_chunks rows in commit order through a LATERAL join (the
extra row only says the list was cut). Values go as bind parameters; the SQL text is constant fragments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

MAX_CHUNKS = 5_000  # per attempt: a chart of more points says nothing more, and the page stays small

_ATTEMPTS = sql.SQL(
    """
SELECT t.task_id, t.map_index, t.try_number, t.status, t.started_at, t.finished_at, t."rows", t.bytes,
       t.seconds, t.rows_per_second, t.peak_rss_mb, t.resumed_from, t.strategy, t.error, t.source,
       t.destination, c.at, c.stream, c."rows", c.bytes, c.seconds, c.rss_mb
FROM etl_audit.task_runs t
CROSS JOIN LATERAL (
    SELECT array_agg(k.committed_at ORDER BY k.committed_at, k.seq) AS at,
           array_agg(k.stream ORDER BY k.committed_at, k.seq) AS stream,
           array_agg(k."rows" ORDER BY k.committed_at, k.seq) AS "rows",
           array_agg(k.bytes ORDER BY k.committed_at, k.seq) AS bytes,
           array_agg(k.seconds ORDER BY k.committed_at, k.seq) AS seconds,
           array_agg(k.rss_mb ORDER BY k.committed_at, k.seq) AS rss_mb
    FROM (
        SELECT committed_at, seq, stream, "rows", bytes, seconds, rss_mb
        FROM etl_audit.task_chunks
        WHERE (pipeline, run_id, task_id, map_index, try_number)
              = (t.pipeline, t.run_id, t.task_id, t.map_index, t.try_number)
        ORDER BY committed_at, seq
        LIMIT %(chunk_limit)s
    ) k
) c
WHERE {where}
ORDER BY t.task_id, t.map_index, t.try_number, t.started_at
"""
)
_FILTERS = {
    "dag_id": sql.SQL("t.pipeline = %(dag_id)s"),
    "run_id": sql.SQL("t.run_id = %(run_id)s"),
    "task_id": sql.SQL("t.task_id = %(task_id)s"),
    "map_index": sql.SQL("t.map_index = %(map_index)s"),
}


def fetch_transfer(
    conn: psycopg.Connection[Any], dag_id: str, run_id: str, task_id: str | None, map_index: int | None
) -> dict[str, Any]:
    """The run's attempts (none for a run the ledger does not know: 200, an empty list)."""
    params: dict[str, Any] = {
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "map_index": map_index,
        "chunk_limit": MAX_CHUNKS + 1,
    }
    present = [name for name in _FILTERS if params[name] is not None]
    where = sql.SQL(" AND ").join(_FILTERS[name] for name in present)
    with conn.cursor() as cur:
        cur.execute(_ATTEMPTS.format(where=where), params)
        rows = cur.fetchall()
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "map_index": map_index,
        "max_chunks": MAX_CHUNKS,
        "attempts": [_attempt(row) for row in rows],
    }


def _attempt(row: Sequence[Any]) -> dict[str, Any]:
    (task_id, map_index, try_number, status, started, finished, rows, nbytes, seconds, rate, peak, resumed,
     strategy, error, source, destination, *chunk_columns) = row  # fmt: skip
    chunks = [_chunk(*values) for values in zip(*(c or () for c in chunk_columns), strict=True)]
    return {
        "task_id": task_id,
        "map_index": map_index,
        "try_number": try_number,
        "status": status,
        "started_at": started,
        "finished_at": finished,
        "rows": rows,
        "bytes": nbytes,
        "seconds": seconds,
        "rows_per_second": rate,
        "peak_rss_mb": peak,
        "resumed_from": resumed,
        "strategy": strategy,
        "error": error,
        "source": source,
        "destination": destination,
        "truncated": len(chunks) > MAX_CHUNKS,
        "chunks": chunks[:MAX_CHUNKS],
    }


def _chunk(
    at: Any, stream: int, rows: int, nbytes: int, seconds: float, rss_mb: float | None
) -> dict[str, Any]:
    return {
        "committed_at": at,
        "stream": stream,
        "rows": rows,
        "bytes": nbytes,
        "seconds": seconds,
        "rows_per_second": round(rows / seconds, 1) if seconds > 0 else None,
        "rss_mb": rss_mb,
    }
