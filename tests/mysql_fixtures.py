"""Helpers for the MariaDB source tests: connection factories, one-call transfers, reading both ends."""

from __future__ import annotations

import random
import threading
import time
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


class BalanceWriters:
    """Threads that keep a table of balances at a fixed total while a transfer reads it.

    Each commit either moves a random amount between two random accounts (odd ids), or inserts a pair of
    rows that net to zero (+x and -x, at even ids the writer owns), or deletes such a pair: any consistent
    view of the table sums to the same total, and its even-id rows sum to zero.
    """

    def __init__(self, my_db: Any, accounts: int, writers: int = 3):
        self.kwargs = connect_kwargs(my_db)
        self.accounts = accounts
        self.writers = writers
        self.stop = threading.Event()
        self.commits = 0
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(writers)]

    def __enter__(self) -> BalanceWriters:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)
        assert not self.errors, self.errors

    def wait_for(self, commits: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.commits < commits and time.monotonic() < deadline and not self.errors:
            time.sleep(0.01)
        assert self.commits >= commits, (self.commits, self.errors)

    def _run(self, w: int) -> None:
        rng = random.Random(w)
        conn = MySQLdb.connect(**self.kwargs)
        live: list[tuple[int, int]] = []
        try:
            cur = conn.cursor()
            while not self.stop.is_set():
                try:
                    self._one(cur, rng, w, live)
                    conn.commit()
                except MySQLdb.OperationalError as exc:
                    conn.rollback()
                    if exc.args[0] not in (1205, 1213):  # lock wait timeout, deadlock: try another
                        raise
                    continue
                with self._lock:
                    self.commits += 1
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            conn.rollback()
            conn.close()

    def _one(self, cur: Any, rng: random.Random, w: int, live: list[tuple[int, int]]) -> None:
        roll = rng.random()
        if roll < 0.7:
            a, b = (2 * i + 1 for i in rng.sample(range(self.accounts), 2))
            amount = rng.randint(1, 500)
            cur.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s", (amount, a))
            cur.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (amount, b))
        elif roll < 0.85 or not live:
            used = {i for pair in live for i in pair}
            # Even ids owned by this writer, spread over the whole key range (so over every chunk and part).
            low, high = (
                2 * (k * self.writers + w) for k in rng.sample(range(self.accounts // self.writers), 2)
            )
            if low in used or high in used or 0 in (low, high):
                return
            amount = rng.randint(1, 500)
            cur.execute(
                "INSERT INTO accounts (id, balance, note) VALUES (%s, %s, 'pair'), (%s, %s, 'pair')",
                (low, amount, high, -amount),
            )
            live.append((low, high))
        else:
            pair = live.pop(rng.randrange(len(live)))
            cur.execute("DELETE FROM accounts WHERE id IN (%s, %s)", pair)
