"""A MariaDB/MySQL source session pinned so every value prints the same, and the snapshots it reads.

Every session pins utf8mb4, time_zone UTC, REPEATABLE READ and autocommit, and drops the sql_mode
flags that change what the generated SELECT prints (the rest of the user's sql_mode is kept). N
streams over one table start their snapshots under `FLUSH TABLES t WITH READ LOCK` when they can, so
all N see one instant; otherwise each stream has its own, and the consistency text says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from etl_platform.transfer.errors import TransferError
from etl_platform.transfer.progress import LoggerLike

MySqlConnectionFactory = Callable[[], Any]  # returns a MySQLdb connection

# Every value prints the same whatever the server's or the user's defaults. Autocommit on: a catalog
# look-up must not leave a transaction open (its metadata locks would block DDL, and DROP, for the
# whole transfer); the snapshots are explicit transactions.
SESSION_SETUP = (
    "SET NAMES utf8mb4",
    "SET time_zone = '+00:00'",
    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "SET autocommit = 1",
)
# sql_mode flags that change what the generated SELECT prints: NO_BACKSLASH_ESCAPES turns the '\\x' of a
# bytea into two backslashes (PostgreSQL then reads other bytes), ORACLE makes CONCAT skip NULLs (a NULL
# text arrives as ""), EMPTY_STRING_IS_NULL makes the '' of an empty field NULL (the field vanishes from
# CONCAT_WS), PAD_CHAR_TO_FULL_LENGTH pads CHAR values. The rest of the session's sql_mode is kept, so
# source_sql parses as it would in the user's own client.
UNSAFE_SQL_MODES = frozenset(
    {"NO_BACKSLASH_ESCAPES", "ORACLE", "EMPTY_STRING_IS_NULL", "PAD_CHAR_TO_FULL_LENGTH"}
)


def open_session(factory: MySqlConnectionFactory, label: str) -> Any:
    """A new connection from `factory`, pinned; closed again if pinning fails."""
    try:
        conn = factory()
    except TransferError:
        raise  # a factory that already says what failed (EtlMySqlHook's)
    except Exception as exc:
        # The driver's message names the host and never the password; nothing else is added.
        raise TransferError(f"connecting to the MariaDB/MySQL source {label} failed: {exc}") from None
    try:
        with conn.cursor() as cur:
            for statement in SESSION_SETUP:
                cur.execute(statement)
            cur.execute("SELECT @@SESSION.sql_mode")
            modes = text(cur.fetchone()[0]).split(",")
            if UNSAFE_SQL_MODES.intersection(modes):
                kept = ",".join(m for m in modes if m and m not in UNSAFE_SQL_MODES)
                cur.execute("SET SESSION sql_mode = %s", (kept,))
    except BaseException:
        close(conn)
        raise
    return conn


class SnapshotStart:
    """Starts one snapshot per stream connection, as consistent as the table and privileges allow."""

    def __init__(self, conn: Any, label: str, lock_wait_timeout: int, log: LoggerLike | None = None) -> None:
        self.conn = conn  # the source's own session: it takes the lock
        self.label = label
        self.lock_wait_timeout = lock_wait_timeout
        self.log = log

    def start(self, conns: list[Any], *, lock_table: str | None, no_mvcc: str | None) -> str:
        """Begin a snapshot on each of `conns`; returns the consistency the run had, as the summary says it."""
        started = time.perf_counter()
        if no_mvcc is not None:
            # Nothing to synchronise: the transactions below hold no view of such a table.
            for conn in conns:
                begin_snapshot(conn)
            return self._warn(
                f"no snapshot: {no_mvcc} has no MVCC, each chunk reads the table as it is then "
                "(a write during the transfer can show in part)"
            )
        if len(conns) == 1:
            begin_snapshot(conns[0])
            return "one snapshot"
        if lock_table is not None and self._locked_start(lock_table, conns):
            held = (time.perf_counter() - started) * 1000
            return (
                f"one snapshot instant for {len(conns)} streams (writes to {lock_table} held {held:.0f} ms)"
            )
        for conn in conns:
            begin_snapshot(conn)
        spread = (time.perf_counter() - started) * 1000
        return self._warn(
            f"{len(conns)} snapshots, one per stream, started within {spread:.0f} ms: each key range is "
            "consistent, a transaction committed between two starts may show in one range only"
        )

    def _warn(self, consistency: str) -> str:
        if self.log is not None:
            self.log.warning("%s: %s", self.label, consistency)
        return consistency

    def _locked_start(self, table: str, conns: list[Any]) -> bool:
        with self.conn.cursor() as cur:
            try:
                cur.execute(f"SET SESSION lock_wait_timeout = {int(self.lock_wait_timeout)}")
                cur.execute(f"FLUSH TABLES {table} WITH READ LOCK")
            except Exception as exc:
                if self.log is not None:
                    self.log.warning(
                        "%s: could not hold writes while %d snapshots start (%s); each stream takes its own",
                        self.label,
                        len(conns),
                        exc,
                    )
                return False
            try:
                for conn in conns:
                    begin_snapshot(conn)
            finally:
                cur.execute("UNLOCK TABLES")
        return True


def begin_snapshot(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")


def close(conn: Any) -> None:
    """Roll back first: an open transaction holds metadata locks (a DROP would wait on it)."""
    with suppress(Exception):
        conn.rollback()
    with suppress(Exception):
        conn.close()


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)
