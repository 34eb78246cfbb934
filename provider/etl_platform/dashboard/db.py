"""The ledger connection pool and a per-request query counter.

Every dashboard query goes through a cursor that bumps the current request's counter, so the metrics
middleware can count queries per request (a page must cost a constant number of them, whatever its
size) and name the count in slow-request warnings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from etl_platform.common.session import pin_settings


@dataclass
class QueryCounter:
    """Mutable, so a count made in a threadpool worker (a copy of the request's context) is seen by the
    middleware that created it."""

    count: int = 0


_current: ContextVar[QueryCounter | None] = ContextVar("etl_dashboard_queries", default=None)


@contextmanager
def count_queries() -> Iterator[QueryCounter]:
    """Count the queries run in this context (and in threads that copied it) until exit."""
    counter = QueryCounter()
    token = _current.set(counter)
    try:
        yield counter
    finally:
        _current.reset(token)


def current_counter() -> QueryCounter | None:
    return _current.get()


def _bump() -> None:
    counter = _current.get()
    if counter is not None:
        counter.count += 1


class CountingCursor(psycopg.Cursor[Any]):
    """A psycopg cursor whose execute/executemany count against the current request."""

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        _bump()
        return super().execute(*args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        _bump()
        return super().executemany(*args, **kwargs)


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Session settings for every pooled connection: read only, UTC, bounded statements, and room to
    sort an hourly series' durations in memory (percentile_cont spilled ~5 MB to disk at 4 MB)."""
    pin_settings(conn, {"default_transaction_read_only": "on", "TimeZone": "UTC", "work_mem": "32MB"})
    conn.commit()


def create_pool(
    conninfo: str, *, min_size: int = 1, max_size: int = 8, statement_timeout_ms: int = 15_000
) -> ConnectionPool:
    """A closed pool (open it in the app's lifespan) of counting connections to the ledger."""
    params = conninfo_to_dict(conninfo)
    options = " ".join(
        filter(None, [str(params.get("options") or ""), f"-c statement_timeout={statement_timeout_ms}"])
    )
    return ConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        open=False,
        name="etl-dashboard",
        timeout=10,
        configure=_configure,
        kwargs={
            # autocommit: a read is one round trip, not BEGIN + query + the pool's ROLLBACK on return
            "autocommit": True,
            "cursor_factory": CountingCursor,
            "options": options,
            "connect_timeout": params.get("connect_timeout") or 5,
        },
    )
