"""Pinning server settings on a connection in one round trip, for the session or one transaction.

`set_config` in a single SELECT sets any number of settings with their values as parameters: no
SQL built from values, and no BEGIN/COMMIT to wait for when the connection is idle. Which settings
an engine pins is its own business (see transfer/session.py); this is only the mechanism.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import psycopg
from psycopg import sql

ConnectionFactory = Callable[[], psycopg.Connection[Any]]


def _pin(names: Iterable[str]) -> sql.Composed:
    return sql.SQL("SELECT {}").format(
        sql.SQL(", ").join(sql.SQL("set_config({}, %s, %s)").format(sql.Literal(name)) for name in names)
    )


def pin_settings(conn: psycopg.Connection[Any], settings: Mapping[str, str], *, local: bool = False) -> None:
    """Sets `settings` in one round trip; `local` keeps them to the current transaction (run it
    inside one: outside, they would end with the statement's own implicit transaction)."""
    params: list[Any] = []
    for value in settings.values():
        params += [value, local]
    conn.execute(_pin(settings), params)


def reset_settings(conn: psycopg.Connection[Any], names: Iterable[str]) -> None:
    """Back to the session's defaults (RESET), in one round trip."""
    conn.execute(sql.SQL("; ").join(sql.SQL("RESET {}").format(sql.Identifier(name)) for name in names))


def connect_pinned(factory: ConnectionFactory, settings: Mapping[str, str]) -> psycopg.Connection[Any]:
    """A new connection with `settings` pinned for the whole session, in one round trip: set outside
    a transaction, there is no BEGIN or COMMIT to wait for."""
    conn = factory()
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        pin_settings(conn, settings)
        conn.commit()
        return conn
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        pin_settings(conn, settings)
    finally:
        conn.autocommit = autocommit
    return conn
