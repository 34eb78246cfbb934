"""What the runs and the aggregate reads share: statuses, bind-only condition fragments, one statement
per call on a tuple-row cursor, and the range checks.

The SQL text is composed from constant fragments only; every value is a bind parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

STATUSES = ("pending", "running", "success", "failed")
FINISHED_STATUSES = ("success", "failed")

Conn = psycopg.Connection[Any]

RUN_FILTERS = {
    "pipeline": sql.SQL("pipeline = %(pipeline)s"),
    "status": sql.SQL("status = %(status)s"),
    "since": sql.SQL("started_at >= %(since)s"),
    "until": sql.SQL("started_at < %(until)s"),
}


def _require_aware(value: datetime | None, name: str) -> None:
    if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
        raise ValueError(f"{name} must be a timezone-aware datetime")


def check_range(since: datetime | None, until: datetime | None) -> None:
    _require_aware(since, "since")
    _require_aware(until, "until")
    if since is not None and until is not None and since >= until:
        raise ValueError("since must be earlier than until")


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def where(conditions: Sequence[sql.Composable]) -> sql.Composed | sql.SQL:
    return sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("TRUE")


def fetchall(conn: Conn, query: sql.Composed, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """One execute on our own tuple-row cursor (the connection's row factory is not assumed)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def conditions_for(templates: Mapping[str, sql.Composable], present: Iterable[str]) -> sql.Composed | sql.SQL:
    return where([templates[name] for name in present if name in templates])
