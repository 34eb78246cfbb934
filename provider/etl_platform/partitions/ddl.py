"""Runs maintenance DDL the safe way: short transactions, a lock_timeout, bounded retries.

A DDL statement that waits behind a long query would queue every later writer behind itself;
lock_timeout makes it give up instead, and we retry with backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from etl_platform.common.durations import parse_duration
from etl_platform.common.errors import sqlstate_of
from etl_platform.common.locking import RETRYABLE
from etl_platform.common.protocols import LoggerLike
from etl_platform.common.retry import retry_with_backoff
from etl_platform.common.session import pin_settings, reset_settings
from etl_platform.partitions.errors import PartitionConfigError, PartitionError, PartitionLockTimeout

T = TypeVar("T")


def validate_lock_timeout(value: object) -> str:
    """The lock_timeout as PostgreSQL will read it, or PartitionConfigError naming the setting."""
    return parse_duration(value, error=PartitionConfigError)


@dataclass
class DdlRunner:
    """Executes (or, with dry_run, only logs) statements; `planned` keeps them for the report."""

    conn: psycopg.Connection[Any]
    log: LoggerLike
    lock_timeout: str = "2s"
    attempts: int = 5
    backoff_seconds: float = 0.5
    dry_run: bool = False
    planned: list[str] = field(default_factory=list)
    retries: int = 0
    # What maintenance cost the server, for reports and benchmarks: statements that changed something,
    # client round trips and transactions (tries included) this runner started.
    statements: int = 0
    round_trips: int = 0
    transactions: int = 0
    last_try_seconds: float = 0.0  # the successful try of the last transaction(), begin to commit

    def __post_init__(self) -> None:
        self.lock_timeout = validate_lock_timeout(self.lock_timeout)

    def query(self, what: str, statement: sql.Composed | sql.SQL) -> list[tuple[Any, ...]]:
        """A read that may wait on a lock (max(key), a scan of the default partition): same timeout and retries."""
        rows: list[tuple[Any, ...]] = self.transaction(what, lambda execute: execute(statement).fetchall())
        return rows

    def transaction(
        self,
        what: str,
        work: Callable[[Callable[..., Any]], Any],
        *,
        before_retry: Callable[[], None] | None = None,
    ) -> Any:
        """Runs `work(execute)` in one transaction under lock_timeout, retrying lock failures.

        `before_retry` runs after the backoff, before each retry (e.g. waiting for a lock without
        holding any, so the next try does not wait while holding one).
        """
        statements: list[str] = []
        execute = self._executor(statements)

        def attempt(number: int) -> Any:
            statements.clear()
            if number > 1 and before_retry is not None and not self.dry_run:
                before_retry()
            return self._try(what, work, execute, statements)

        def retried(number: int, delay: float, exc: BaseException) -> None:
            self.retries += 1
            self.log.warning("%s: %s; retry %d in %.1f s", what, _primary(exc), number, delay)

        def give_up(number: int, exc: BaseException) -> PartitionError:
            return PartitionLockTimeout(
                f"{what}: gave up after {number} attempts, each waiting at most {self.lock_timeout} "
                f"for locks ({type(exc).__name__}: {_primary(exc)}).",
                sqlstate=sqlstate_of(exc),
            )

        return self._retry(attempt, self.attempts, retried, give_up)

    def run(self, what: str, statement: sql.Composable) -> None:
        """One statement in a transaction of its own, as `transaction` runs it."""
        self.transaction(what, lambda execute: execute(statement))

    def autocommit(self, what: str, statement: sql.Composed, attempts: int | None = None) -> None:
        """Statements that refuse to run in a transaction block (CONCURRENTLY), with the same retries."""
        attempts = attempts or self.attempts
        text = statement.as_string(self.conn)
        if self.dry_run:
            self._record(what, [text], dry=True)
            return
        previous = self.conn.autocommit
        self.conn.autocommit = True

        def attempt(number: int) -> None:
            self.round_trips += 2
            self.transactions += 1
            pin_settings(self.conn, {"lock_timeout": self.lock_timeout})  # session-wide: no transaction here
            self.conn.execute(statement)

        def retried(number: int, delay: float, exc: BaseException) -> None:
            self.retries += 1

        def give_up(number: int, exc: BaseException) -> PartitionError:
            return PartitionLockTimeout(
                f"{what}: gave up after {number} attempts ({exc}).", sqlstate=sqlstate_of(exc)
            )

        try:
            self._retry(attempt, attempts, retried, give_up)
        finally:
            reset_settings(self.conn, ["lock_timeout"])
            self.conn.autocommit = previous
        self._record(what, [text], dry=False)

    def _executor(self, statements: list[str]) -> Callable[..., psycopg.Cursor[Any]]:
        """The `execute` a transaction's work gets: it records every statement in `statements`."""

        def execute(statement: Statements, params: Any = None) -> psycopg.Cursor[Any]:
            """One statement, or a list of them sent in one round trip (no params then): every result
            set is on the cursor (`nextset()`); in a dry run only the ones that change nothing run."""
            texts = [s.as_string(self.conn) for s in _as_list(statement)]
            statements.extend(texts)
            run = [t for t in texts if not (self.dry_run and _changes_something(t))]
            if not run:
                return self.conn.cursor()
            self.round_trips += 1
            if isinstance(statement, list):
                if params is not None:
                    raise ValueError("a list of statements is sent as one simple query: no params")
                return self.conn.execute(sql.SQL("; ".join(run)))  # type: ignore[arg-type]
            return self.conn.execute(statement, params)

        return execute

    def _try(
        self, what: str, work: Callable[[Callable[..., Any]], Any], execute: Any, statements: list[str]
    ) -> Any:
        """One try of a transaction: BEGIN, SET LOCAL lock_timeout, the work, COMMIT (a dry run rolls back)."""
        began = time.perf_counter()
        try:
            self.transactions += 1
            self.round_trips += 3  # BEGIN, SET LOCAL, COMMIT/ROLLBACK
            with self.conn.transaction():
                self._pin_lock_timeout()
                result = work(execute)
                if self.dry_run:
                    raise _DryRunRollback(result)
        except _DryRunRollback as done:
            self._record(what, statements, dry=True)
            return done.result
        self.last_try_seconds = time.perf_counter() - began
        self._record(what, statements, dry=False)
        return result

    def _retry(
        self,
        attempt: Callable[[int], T],
        attempts: int,
        retried: Callable[[int, float, BaseException], None],
        give_up: Callable[[int, BaseException], BaseException],
    ) -> T:
        """Lock failures retried with this runner's backoff (attempt n waits backoff * 2**(n-1) s)."""
        return retry_with_backoff(
            attempt,
            attempts=attempts,
            backoff_seconds=self.backoff_seconds,
            retry_on=RETRYABLE,
            on_retry=retried,
            give_up=give_up,
        )

    def wait_for_lock(self, what: str, statement: sql.Composed) -> bool:
        """Waits (at most lock_timeout) until `statement`, a LOCK, is granted, then lets go at once.

        A probe holding nothing else: whoever queues behind it waits at most lock_timeout, and a try
        that follows right after finds the lock free (NOWAIT) unless someone took it in between.
        """
        if self.dry_run:
            return True
        try:
            self.transactions += 1
            self.round_trips += 4
            with self.conn.transaction(force_rollback=True):
                self._pin_lock_timeout()
                self.conn.execute(statement)
        except RETRYABLE as exc:
            self.log.warning("%s: %s", what, exc.diag.message_primary)
            return False
        return True

    def _pin_lock_timeout(self) -> None:
        """Inside the transaction just begun: the lock_timeout ends with it (SET LOCAL)."""
        pin_settings(self.conn, {"lock_timeout": self.lock_timeout}, local=True)

    def _record(self, what: str, statements: list[str], *, dry: bool) -> None:
        changes = [s for s in statements if _changes_something(s)]
        if not dry:
            self.statements += len(changes)
        self.planned.extend(changes)
        for text in changes:
            self.log.info("%s%s: %s", "[dry run] " if dry else "", what, text)


Statements = sql.Composed | sql.SQL | list[sql.Composable]


def _as_list(statement: Statements) -> list[sql.Composable]:
    return statement if isinstance(statement, list) else [statement]


class _DryRunRollback(Exception):
    def __init__(self, result: Any):
        self.result = result


def _primary(exc: BaseException) -> str | None:
    """The server's one-line message of a psycopg error."""
    return exc.diag.message_primary if isinstance(exc, psycopg.Error) else str(exc)


def _changes_something(statement: str) -> bool:
    head = statement.lstrip().split(None, 1)[0].upper()
    return head not in ("SELECT", "SET", "SHOW")
