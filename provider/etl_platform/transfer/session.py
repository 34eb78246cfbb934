"""Session settings every transfer connection pins, so text and CSV mean the same on both ends.

COPY's text form follows the session: DateStyle decides '05/01/2026' versus '2026-01-05',
IntervalStyle the sign rules of intervals, extra_float_digits whether floats keep every bit,
bytea_output the bytea escape. A role or database default must not change what lands.
The mechanism (one round trip, session-wide or transaction-local) is common/session.py's.
"""

from __future__ import annotations

from typing import Any

import psycopg

from etl_platform.common import session
from etl_platform.common.session import ConnectionFactory

__all__ = ["SETTINGS", "ConnectionFactory", "connect_pinned", "pin_settings"]

SETTINGS: dict[str, str] = {
    "TimeZone": "UTC",  # the transform path's CSV carries timestamps without a zone
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}


def pin_settings(
    conn: psycopg.Connection[Any], *, local: bool = False, extra: dict[str, str] | None = None
) -> None:
    """The transfer's settings (and `extra` ones); `local` keeps them to the current transaction
    (a connection we do not own)."""
    session.pin_settings(conn, {**SETTINGS, **(extra or {})}, local=local)


def connect_pinned(
    factory: ConnectionFactory, extra: dict[str, str] | None = None
) -> psycopg.Connection[Any]:
    """A new connection with the transfer's settings (and `extra` ones) pinned for the session."""
    return session.connect_pinned(factory, {**SETTINGS, **(extra or {})})
