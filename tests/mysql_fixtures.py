"""Helpers for the MariaDB source tests: connection factories, one-call transfers, reading both ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import MySQLdb
import psycopg
from psycopg import sql

from etl_platform.transfer import TransferEngine, TransferSpec
from etl_platform.transfer.engine import TransferSummary
from etl_platform.transfer.sources.mysql import MySqlSource


def connect_kwargs(my_db: Any, **extra: Any) -> dict[str, Any]:
    """What MySQLdb.connect needs for the test database; autocommit left at the driver's default (off),
    as a user's own factory would, so the source has to cope with it."""
    kwargs = my_db.server.connect_kwargs(my_db.database)
    kwargs.pop("autocommit", None)
    kwargs.update(extra)
    return dict(kwargs)


def my_factory(my_db: Any, **extra: Any) -> Callable[[], Any]:
    kwargs = connect_kwargs(my_db, **extra)
    return lambda: MySQLdb.connect(**kwargs)


def my_exec(my_db: Any, *statements: str | tuple[str, Any]) -> None:
    """Runs statements in order on one autocommit connection (session settings carry over)."""
    conn = my_db.connect()
    try:
        cur = conn.cursor()
        for statement in statements:
            if isinstance(statement, tuple):
                cur.execute(*statement)
            else:
                cur.execute(statement)
    finally:
        conn.close()


def my_rows(my_db: Any, query: str, *setup: str) -> list[tuple[Any, ...]]:
    conn = my_db.connect()
    try:
        cur = conn.cursor()
        for statement in setup:
            cur.execute(statement)
        cur.execute(query)
        return list(cur.fetchall())
    finally:
        conn.close()


def pg_exec(dst_db: Any, statement: str, params: Any = None) -> None:
    with dst_db.connect() as conn:
        conn.execute(statement, params)  # type: ignore[arg-type]


def pg_rows(dst_db: Any, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with dst_db.connect() as conn:
        return list(conn.execute(query, params).fetchall())  # type: ignore[arg-type]


def pg_count(dst_db: Any, table: str) -> int:
    with dst_db.connect() as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    assert row is not None
    return int(row[0])


def transfer(
    my_db: Any,
    dst_db: Any,
    source_table: str | None = "t",
    destination: str = "t",
    *,
    zero_dates: str = "null",
    factory: Callable[[], Any] | None = None,
    source: MySqlSource | None = None,
    **spec: Any,
) -> TransferSummary:
    if "source_sql" in spec:
        source_table = None
    src = source or MySqlSource(factory or my_factory(my_db), zero_dates=zero_dates)
    return TransferEngine(
        TransferSpec(
            destination_table=dst_db.table(destination),
            source_table=source_table,
            checkpoint_schema=dst_db.schema,
            **spec,
        ),
        src,
        lambda: psycopg.connect(dst_db.conninfo),
    ).run()
