"""Parallel streams read one snapshot: writers change the source during a parallelism-4 transfer, and
the destination equals the source as of the moment the engine exported its snapshot (issue 12, item 6).

Writer threads move amounts between accounts (the sum is invariant), open accounts with a moved
amount and close accounts into others, each in one transaction, spread over every stream's key
range, while the transfer runs. A spy on the source connection sees the engine's
`pg_export_snapshot()` and, before any stream starts, reads the whole table under that same
snapshot (a separate connection importing it): that is the source "as of one moment". The
destination must equal it row for row, keep the invariant, and differ from the source's final state
(the writers really did change it under the transfer).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.transfer import TransferSpec
from etl_platform.transfer.engine import TransferEngine
from harness import SchemaDb

ACCOUNTS = 40_000  # ids 2, 4, ..., 80_000; writers open odd ids in between
OPENING_BALANCE = 1_000
TOTAL = ACCOUNTS * OPENING_BALANCE
WRITERS = 3
EXPORT_QUERY = "SELECT pg_export_snapshot()"  # what the PostgreSQL source sends, verbatim
DDL = "CREATE TABLE {} (id bigint PRIMARY KEY, balance bigint NOT NULL, pad text NOT NULL)"


@dataclass
class ExportWitness:
    """What the spy saw: the exported snapshot id and the source's rows under it."""

    snapshot: str | None = None
    rows: list[tuple[int, int, str]] = field(default_factory=list)
    at: float = 0.0  # time.monotonic() when the rows had been read


def _spy_connection(src_db: SchemaDb, witness: ExportWitness) -> type[psycopg.Connection[Any]]:
    table = sql.Identifier(src_db.schema, "accounts")

    class SnapshotSpy(psycopg.Connection[Any]):
        """A real connection that, when the engine exports a snapshot, reads the table under it."""

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            cursor = super().execute(query, params, **kwargs)
            if query == EXPORT_QUERY:
                row = cursor.fetchone()
                cursor.scroll(0, mode="absolute")  # the engine fetches the id itself, unchanged
                witness.snapshot = str(row[0]) if row else None
                with psycopg.connect(src_db.conninfo) as conn:
                    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                    conn.read_only = True
                    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(witness.snapshot)))
                    query_rows = sql.SQL("SELECT id, balance, pad FROM {} ORDER BY id").format(table)
                    witness.rows = conn.execute(query_rows).fetchall()
                witness.at = time.monotonic()
            return cursor

    return SnapshotSpy


@dataclass
class Writers:
    """Threads committing invariant-preserving changes to the source until stopped."""

    conninfo: str
    table: sql.Composed
    stop: threading.Event = field(default_factory=threading.Event)
    commits: list[float] = field(default_factory=list)  # time.monotonic() of each commit
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, seed: int) -> None:
        rng = random.Random(seed)
        try:
            with psycopg.connect(self.conninfo) as conn:
                while not self.stop.is_set():
                    try:
                        changed = self._one_change(conn, rng)
                    except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                        conn.rollback()
                        continue
                    if changed:
                        conn.commit()
                        with self.lock:
                            self.commits.append(time.monotonic())
                    else:
                        conn.rollback()
        except BaseException as exc:  # surfaced by the test, never swallowed
            self.errors.append(exc)

    def _one_change(self, conn: psycopg.Connection[Any], rng: random.Random) -> bool:
        """One transaction's worth of change; False when it found a closed account (roll back)."""
        a, b = (2 * rng.randint(1, ACCOUNTS) for _ in range(2))
        if a == b:
            return False
        amount = rng.randint(1, 50)
        kind = rng.random()
        if kind < 0.7:  # move an amount from a to b
            cur = conn.execute(
                sql.SQL(
                    "UPDATE {} SET balance = balance + CASE WHEN id = %(a)s THEN -%(x)s ELSE %(x)s END "
                    "WHERE id IN (%(a)s, %(b)s)"
                ).format(self.table),
                {"a": min(a, b), "b": max(a, b), "x": amount},
            )
            return cur.rowcount == 2
        if kind < 0.9:  # open (or top up) an odd-numbered account with an amount taken from a
            cur = conn.execute(
                sql.SQL("UPDATE {} SET balance = balance - %s WHERE id = %s").format(self.table), (amount, a)
            )
            if cur.rowcount != 1:
                return False
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} AS t VALUES (%s, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET balance = t.balance + excluded.balance"
                ).format(self.table),
                (b - 1, amount, f"opened {b - 1}"),
            )
            return True
        # close a into b
        row = conn.execute(
            sql.SQL("SELECT balance FROM {} WHERE id = %s FOR UPDATE").format(self.table), (a,)
        ).fetchone()
        if row is None:
            return False
        cur = conn.execute(
            sql.SQL("UPDATE {} SET balance = balance + %s WHERE id = %s").format(self.table), (row[0], b)
        )
        if cur.rowcount != 1:
            return False
        conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(self.table), (a,))
        return True


def _rows(conn: psycopg.Connection[Any], schema: str) -> list[tuple[int, int, str]]:
    query = sql.SQL("SELECT id, balance, pad FROM {} ORDER BY id").format(sql.Identifier(schema, "accounts"))
    return conn.execute(query).fetchall()


def test_parallel_streams_copy_the_source_as_of_the_exported_snapshot(
    src_db: SchemaDb, dst_db: SchemaDb
) -> None:
    src_table = sql.Identifier(src_db.schema, "accounts")
    dst_table = sql.Identifier(dst_db.schema, "accounts")
    with src_db.connect() as src, dst_db.connect() as dst:
        src.execute(sql.SQL(DDL).format(src_table))
        src.execute(
            sql.SQL(
                "INSERT INTO {} SELECT 2 * g, %s, repeat(md5(g::text), 6) FROM generate_series(1, %s) g"
            ).format(src_table),
            (OPENING_BALANCE, ACCOUNTS),
        )
        src.execute(sql.SQL("ANALYZE {}").format(src_table))
        dst.execute(sql.SQL(DDL).format(dst_table))
        # Each chunk's COPY takes at least 20 ms more: the writers get a long read to change things under.
        dst.execute(
            sql.SQL(
                "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(0.02); RETURN NULL; END $$"
            ).format(sql.Identifier(dst_db.schema, "slow_chunk"))
        )
        dst.execute(
            sql.SQL(
                "CREATE TRIGGER slow_chunk AFTER INSERT ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()"
            ).format(dst_table, sql.Identifier(dst_db.schema, "slow_chunk"))
        )

        witness = ExportWitness()
        spy = _spy_connection(src_db, witness)
        writers = Writers(src_db.conninfo, src_table)
        threads = [threading.Thread(target=writers.run, args=(seed,), daemon=True) for seed in range(WRITERS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.2)  # writers under way before the snapshot
            spec = TransferSpec(
                source_table=f"{src_db.schema}.accounts",
                destination_table=f"{dst_db.schema}.accounts",
                checkpoint_schema=dst_db.schema,
                chunk_rows=1_000,
                parallelism=4,
            )
            engine = TransferEngine(
                spec, lambda: spy.connect(src_db.conninfo), lambda: psycopg.connect(dst_db.conninfo)
            )
            summary = engine.run()
            ended = time.monotonic()
        finally:
            writers.stop.set()
            for thread in threads:
                thread.join(30)
        assert not writers.errors, writers.errors
        assert witness.snapshot is not None, f"the engine never sent {EXPORT_QUERY!r}: no shared snapshot"
        assert summary.consistency == "one snapshot shared by 4 streams", summary.consistency

        during = [t for t in writers.commits if witness.at <= t <= ended]
        print(f"{len(during)} writer commits during the transfer, {len(writers.commits)} in all")
        assert len(during) >= 20, f"only {len(during)} writer commits during the transfer: it proves nothing"

        copied = _rows(dst, dst_db.schema)
        final = _rows(src, src_db.schema)
        assert sum(balance for _, balance, _ in final) == TOTAL  # the writers keep the invariant
        assert sum(balance for _, balance, _ in copied) == TOTAL  # ... and so does one moment of it
        assert final != witness.rows  # the source moved on under the transfer
        assert summary.rows == len(witness.rows) == len(copied)
        assert copied == witness.rows  # the destination is the source as of the exported snapshot
