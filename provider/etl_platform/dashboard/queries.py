"""Dashboard reads of runs from the ledger: keyset pages (the OFFSET baseline lives in benchmarks/).

Each function runs ONE statement whatever the page size (the app counts statements per request) and
returns the JSON-ready shape of its endpoint in docs/dashboard.md; values go as bind parameters only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from etl_platform.dashboard.cursor import decode_cursor, encode_cursor
from etl_platform.dashboard.query_common import (
    RUN_FILTERS,
    STATUSES,
    Conn,
    check_range,
    fetchall,
    iso,
    where,
)

MAX_PAGE_SIZE = 100

# The runs page statement; public so the benchmark's OFFSET baseline reads exactly the app's query.
RUNS_PAGE = (
    'SELECT pipeline, run_id, status, started_at, finished_at, "rows", bytes, error '
    "FROM etl_audit.pipeline_runs WHERE {where} "
    "ORDER BY started_at DESC, pipeline DESC, run_id DESC LIMIT %(limit)s"
)
_RUNS = sql.SQL(RUNS_PAGE)
# The redundant `started_at <=` lets the (pipeline, started_at DESC, run_id DESC) index seek when a pipeline
# is filtered; without a pipeline the row comparison itself is the (started_at, pipeline, run_id) index bound.
_AFTER_CURSOR = sql.SQL(
    "started_at <= %(c_started_at)s "
    "AND (started_at, pipeline, run_id) < (%(c_started_at)s, %(c_pipeline)s, %(c_run_id)s)"
)


@dataclass(frozen=True)
class RunFilters:
    """The runs endpoint's filters; `since <= started_at < until`."""

    pipeline: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.pipeline is not None and (not isinstance(self.pipeline, str) or not self.pipeline):
            raise ValueError("pipeline must be a non-empty string")
        if self.status is not None and self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        check_range(self.since, self.until)

    def fingerprint(self) -> str:
        """Stable digest of the filters (instants compared in UTC): a cursor is valid only under it."""
        canonical = json.dumps([self.pipeline, self.status, iso(self.since), iso(self.until)])
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def params(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if value is not None}


def check_page_size(page_size: int) -> None:
    """Public for the benchmark's OFFSET baseline, which must refuse the same sizes as the app."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be an integer in 1..{MAX_PAGE_SIZE}")


def run_json(row: Sequence[Any]) -> dict[str, Any]:
    """One run as the endpoint returns it (from a RUNS_PAGE row); shared with the OFFSET baseline."""
    pipeline, run_id, status, started_at, finished_at, rows, bytes_, error = row
    duration = None if finished_at is None else (finished_at - started_at).total_seconds()
    return {
        "pipeline": pipeline,
        "run_id": run_id,
        "status": status,
        "started_at": iso(started_at),
        "finished_at": iso(finished_at),
        "duration_s": duration,
        "rows": rows,
        "bytes": bytes_,
        "rows_per_second": rows / duration if duration is not None and duration > 0 else None,
        "error": error,
    }


def fetch_runs_page(
    conn: Conn, filters: RunFilters, page_size: int, cursor: str | None, key: bytes
) -> dict[str, Any]:
    """A page of runs newest first, keyset on (started_at, pipeline, run_id): page 1000 costs page 1.

    Raises InvalidCursor (a ValueError) for a cursor we did not sign for these filters.
    """
    check_page_size(page_size)
    fingerprint = filters.fingerprint()
    params = filters.params()
    conditions = [RUN_FILTERS[name] for name in params]
    if cursor is not None:
        params["c_started_at"], params["c_pipeline"], params["c_run_id"] = decode_cursor(
            cursor, fingerprint, key
        )
        conditions.append(_AFTER_CURSOR)
    params["limit"] = page_size + 1
    rows = fetchall(conn, _RUNS.format(where=where(conditions)), params)
    page = rows[:page_size]
    next_cursor = None
    if len(rows) > page_size:
        last = page[-1]
        next_cursor = encode_cursor((last[3], last[0], last[1]), fingerprint, key)
    return {"runs": [run_json(row) for row in page], "next_cursor": next_cursor, "page_size": page_size}
