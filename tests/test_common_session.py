"""Pinning settings and lock timeouts (etl_platform.common.session, durations, locking) on a real server.

Session-wide settings must outlive commits and rollbacks; transaction-local ones must end with the
transaction (or savepoint) they were set in; either way one round trip. A bad lock_timeout is
refused before connecting, as the config error of the engine that was given it.
"""

from __future__ import annotations

import logging
import re
import tempfile
from typing import Any

import psycopg
import pytest
from psycopg import pq, sql

from etl_platform.common.durations import duration_seconds, parse_duration
from etl_platform.common.errors import ConfigError
from etl_platform.common.locking import with_lock_retries
from etl_platform.common.session import connect_pinned, pin_settings, reset_settings
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.partitions.errors import PartitionConfigError
from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.spec import TransferSpec
from harness import SchemaDb

LOG = logging.getLogger(__name__)
PINNED = {"TimeZone": "Asia/Tokyo", "DateStyle": "SQL, DMY", "lock_timeout": "1234ms"}


def _show(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute("SELECT current_setting(%s)", [name]).fetchone()
    assert row is not None
    return str(row[0])


def _shown(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return {name: _show(conn, name) for name in PINNED}


class RoundTrips:
    """Counts a connection's round trips between start and stop with libpq's protocol trace: each
    simple Query or extended-protocol Sync the client sends is one wait for the server."""

    def __init__(self) -> None:
        self._trace = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by stop)

    def start(self, conn: psycopg.Connection[Any]) -> None:
        conn.pgconn.trace(self._trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def stop(self, conn: psycopg.Connection[Any]) -> list[str]:
        """The messages that waited for the server, in order."""
        conn.pgconn.untrace()
        self._trace.seek(0)
        sent = [line.split("\t") for line in self._trace.read().splitlines()]
        self._trace.close()
        return [f[2] for f in sent if len(f) > 2 and f[0] == "F" and f[2] in ("Query", "Sync")]


# -- session-wide ----------------------------------------------------------------------------------


@pytest.mark.parametrize("autocommit", [True, False])
def test_connect_pinned_keeps_the_settings_for_the_whole_session_in_one_round_trip(
    dst_db: SchemaDb, autocommit: bool
) -> None:
    counter = RoundTrips()

    def factory() -> psycopg.Connection[Any]:
        conn = psycopg.connect(dst_db.conninfo, autocommit=autocommit)
        counter.start(conn)
        return conn

    with psycopg.connect(dst_db.conninfo) as plain:
        defaults = _shown(plain)
    assert all(defaults[name] != value for name, value in PINNED.items())  # else this proves nothing
    with connect_pinned(factory, PINNED) as conn:
        assert counter.stop(conn) == ["Sync"]  # one SELECT set_config(...): no BEGIN, no COMMIT
        assert conn.autocommit is autocommit  # the caller's mode is given back
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE  # nothing left open
        assert _shown(conn) == PINNED
        conn.rollback()
        with conn.transaction(force_rollback=True):
            assert _shown(conn) == PINNED
        with conn.transaction():
            assert _shown(conn) == PINNED
        assert _shown(conn) == PINNED  # survives commits and rollbacks: the session's
        reset_settings(conn, list(PINNED))
        assert _shown(conn) == defaults


def test_a_connection_already_in_a_transaction_is_pinned_and_committed(dst_db: SchemaDb) -> None:
    def factory() -> psycopg.Connection[Any]:
        conn = psycopg.connect(dst_db.conninfo)
        conn.execute("SELECT 1")  # a factory that left a transaction open
        return conn

    with connect_pinned(factory, PINNED) as conn:
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE
        conn.rollback()
        assert _shown(conn) == PINNED


# -- transaction-local -----------------------------------------------------------------------------


def test_local_settings_end_with_the_transaction_and_cost_one_round_trip(dst_db: SchemaDb) -> None:
    with dst_db.connect() as conn:
        defaults = _shown(conn)
        counter = RoundTrips()
        with conn.transaction():
            counter.start(conn)
            pin_settings(conn, PINNED, local=True)
            assert counter.stop(conn) == ["Sync"]
            assert _shown(conn) == PINNED
        assert _shown(conn) == defaults  # committed, and gone with the transaction
        with conn.transaction():
            with pytest.raises(ZeroDivisionError), conn.transaction():  # a savepoint
                pin_settings(conn, PINNED, local=True)
                raise ZeroDivisionError
            assert _shown(conn) == defaults  # rolled back with the savepoint
            with conn.transaction():
                pin_settings(conn, PINNED, local=True)
            assert _shown(conn) == PINNED  # released, not rolled back: still this transaction's
        assert _shown(conn) == defaults


def test_with_lock_retries_sets_lock_timeout_for_the_work_only(dst_db: SchemaDb) -> None:
    with dst_db.connect() as conn:
        default = _show(conn, "lock_timeout")
        seen = with_lock_retries(conn, "150ms", lambda: _show(conn, "lock_timeout"), on_retry=_no_retry)
        assert seen == "150ms" and _show(conn, "lock_timeout") == default
        with conn.transaction():  # nested in the caller's transaction: a savepoint
            conn.execute("SET LOCAL lock_timeout = '9s'")
            with pytest.raises(ZeroDivisionError):
                with_lock_retries(conn, "150ms", lambda: 1 / 0, on_retry=_no_retry)
            assert _show(conn, "lock_timeout") == "9s"  # the savepoint's setting rolled back with it


def _no_retry(number: int, delay: float, exc: psycopg.Error) -> None:
    raise AssertionError(f"no lock failure expected, got {exc}")


def test_the_ddl_runner_keeps_its_lock_timeout_inside_its_own_transactions(dst_db: SchemaDb) -> None:
    with psycopg.connect(dst_db.conninfo) as conn:
        default = _show(conn, "lock_timeout")
        conn.rollback()
        runner = DdlRunner(conn, LOG, lock_timeout="321ms")
        assert runner.query("read", sql.SQL("SHOW lock_timeout")) == [("321ms",)]
        assert _show(conn, "lock_timeout") == default
        conn.rollback()
        table = sql.Identifier(dst_db.schema, "t")
        runner.run("create", sql.SQL("CREATE TABLE {} (id int)").format(table))
        runner.autocommit("index", sql.SQL("CREATE INDEX CONCURRENTLY ON {} (id)").format(table))
        assert conn.autocommit is False and _show(conn, "lock_timeout") == default  # RESET after
        assert runner.wait_for_lock("probe", sql.SQL("LOCK TABLE {} IN SHARE MODE").format(table))
        assert _show(conn, "lock_timeout") == default


# -- lock_timeout parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed", "seconds"),
    [
        ("2s", "2s", 2.0),
        (" 500ms ", "500ms", 0.5),
        (250, "250", 0.25),
        ("1.5min", "1.5min", 90.0),
        ("1 h", "1 h", 3600.0),
    ],
)
def test_a_positive_duration_is_kept_as_postgresql_reads_it(
    value: object, parsed: str, seconds: float
) -> None:
    assert parse_duration(value) == parsed
    assert duration_seconds(parsed) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["2 parsecs", 0, "0s", "-1s", "", None, True, 1.5, "s"])
@pytest.mark.parametrize("error", [ConfigError, TransferConfigError, PartitionConfigError])
def test_a_bad_duration_is_the_callers_config_error_naming_the_setting(
    value: object, error: type[ConfigError]
) -> None:
    with pytest.raises(
        error, match=rf"^statement_timeout {re.escape(repr(value))} is not a positive PostgreSQL duration"
    ) as caught:
        parse_duration(value, "statement_timeout", error=error)
    assert type(caught.value) is error and isinstance(caught.value, ValueError)


def test_each_engine_refuses_a_bad_lock_timeout_with_its_own_error() -> None:
    with pytest.raises(TransferConfigError, match=r"^lock_timeout '2 parsecs' is not a positive"):
        TransferSpec(source_table="a", destination_table="b", lock_timeout="2 parsecs")
    with pytest.raises(PartitionConfigError, match=r"^lock_timeout 0 is not a positive"):
        DdlRunner(None, LOG, lock_timeout=0)  # type: ignore[arg-type]  (refused before use)
