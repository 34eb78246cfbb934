"""Session settings every transfer connection pins, so text and CSV mean the same on both ends.

COPY's text form follows the session: DateStyle decides '05/01/2026' versus '2026-01-05',
IntervalStyle the sign rules of intervals, extra_float_digits whether floats keep every bit,
bytea_output the bytea escape. A role or database default must not change what lands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

SETTINGS: dict[str, str] = {
    "TimeZone": "UTC",  # the transform path's CSV carries timestamps without a zone
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}
ConnectionFactory = Callable[[], psycopg.Connection[Any]]


def _pin(settings: dict[str, str]) -> sql.Composed:
    return sql.SQL("SELECT {}").format(
        sql.SQL(", ").join(sql.SQL("set_config({}, %s, %s)").format(sql.Literal(name)) for name in settings)
    )


def pin_settings(
    conn: psycopg.Connection[Any], *, local: bool = False, extra: dict[str, str] | None = None
) -> None:
    """One round trip; `local` keeps them to the current transaction (a connection we do not own)."""
    settings = {**SETTINGS, **(extra or {})}
    params: list[Any] = []
    for value in settings.values():
        params += [value, local]
    conn.execute(_pin(settings), params)


def connect_pinned(
    factory: ConnectionFactory, extra: dict[str, str] | None = None
) -> psycopg.Connection[Any]:
    """A new connection with the settings (and `extra` ones) pinned for the whole session, in one
    round trip: set outside a transaction, there is no BEGIN or COMMIT to wait for."""
    conn = factory()
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        pin_settings(conn, extra=extra)
        conn.commit()
        return conn
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        pin_settings(conn, extra=extra)
    finally:
        conn.autocommit = autocommit
    return conn
