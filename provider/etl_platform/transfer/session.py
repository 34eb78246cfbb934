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

_PIN = sql.SQL("SELECT {}").format(
    sql.SQL(", ").join(sql.SQL("set_config({}, %s, %s)").format(sql.Literal(name)) for name in SETTINGS)
)


def pin_settings(conn: psycopg.Connection[Any], *, local: bool = False) -> None:
    """One round trip; `local` keeps them to the current transaction (a connection we do not own)."""
    params: list[Any] = []
    for value in SETTINGS.values():
        params += [value, local]
    conn.execute(_PIN, params)


def connect_pinned(factory: ConnectionFactory) -> psycopg.Connection[Any]:
    """A new connection with the settings pinned for the whole session."""
    conn = factory()
    pin_settings(conn)
    conn.commit()
    return conn
