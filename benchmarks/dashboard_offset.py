"""The OFFSET page of runs: the baseline the dashboard benchmark compares the app's keyset pages with.

Not in the provider: the app never pages by OFFSET (page 1000 would re-read 50,000 rows, and runs
inserted during a walk shift its pages). It reads the app's own statement, filters and JSON shape
(dashboard/queries.py), so the two differ only in how a page is found.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from etl_platform.dashboard.queries import RUNS_PAGE, RunFilters, check_page_size, run_json
from etl_platform.dashboard.query_common import RUN_FILTERS, Conn, fetchall, where

_RUNS_OFFSET = sql.SQL(RUNS_PAGE + " OFFSET %(offset)s")


def fetch_runs_page_offset(conn: Conn, filters: RunFilters, page_size: int, page: int) -> dict[str, Any]:
    """Page `page` (1-based) by LIMIT/OFFSET, in the runs endpoint's shape plus `page`/`next_page`.

    OFFSET re-reads every earlier row, and rows inserted during a walk shift pages (duplicates, gaps).
    """
    check_page_size(page_size)
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValueError("page must be an integer >= 1")
    params = filters.params()
    conditions = [RUN_FILTERS[name] for name in params]
    params.update(limit=page_size + 1, offset=(page - 1) * page_size)
    rows = fetchall(conn, _RUNS_OFFSET.format(where=where(conditions)), params)
    return {
        "runs": [run_json(row) for row in rows[:page_size]],
        "next_cursor": None,
        "page_size": page_size,
        "page": page,
        "next_page": page + 1 if len(rows) > page_size else None,
    }
