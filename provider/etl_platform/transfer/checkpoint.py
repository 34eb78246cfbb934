"""Checkpoints in the destination database, written in the same transaction as each chunk.

A chunk and the key it reached commit together, so a retry resumes exactly after the last
committed chunk: nothing lost, nothing duplicated, at most the in-flight chunk read again.
"""

from __future__ import annotations

import select
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.errors import error_from_result

from etl_platform.transfer.errors import TransferConfigError

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    transfer_id  text        NOT NULL,
    part         integer     NOT NULL,
    fingerprint  text        NOT NULL,
    lo           text,
    hi           text,
    last_key     text,
    done         boolean     NOT NULL DEFAULT false,
    rows         bigint      NOT NULL DEFAULT 0,
    written      bigint      NOT NULL DEFAULT 0,
    bytes        bigint      NOT NULL DEFAULT 0,
    chunks       integer     NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (transfer_id, part)
)
"""
_COLUMNS = (
    "transfer_id",
    "part",
    "fingerprint",
    "lo",
    "hi",
    "last_key",
    "done",
    "rows",
    "bytes",
    "chunks",
    "updated_at",
)
# Columns added after the first release: tables created by it get them on first use.
_ADDED_COLUMNS = {
    "written": sql.SQL("bigint NOT NULL DEFAULT 0"),
    "finished_at": sql.SQL("timestamptz"),
}


@dataclass
class PartState:
    """One key range (lo, hi] of a transfer and how far it got."""

    part: int
    lo: str | None
    hi: str | None
    last_key: str | None = None
    done: bool = False
    rows: int = 0  # rows read from the source
    bytes: int = 0
    chunks: int = 0
    written: int = 0  # rows written to the chunk target (a staging table holds exactly these)

    @property
    def resume_key(self) -> str | None:
        return self.last_key if self.last_key is not None else self.lo


class CheckpointStore:
    def __init__(self, schema: str, transfer_id: str):
        self.schema = schema
        self.transfer_id = transfer_id
        self.table = sql.Identifier(schema, "transfer_checkpoints")

    def ensure(self, conn: psycopg.Connection[Any]) -> None:
        """Creates the table (or adds columns a later release needs) only when something is missing:
        one catalog query on the usual run, and no DDL lock (ALTER TABLE would lock out concurrent
        transfers)."""
        if not self._missing_columns(conn):
            conn.commit()
            return
        for attempt in range(3):  # concurrent tasks may race on IF NOT EXISTS
            try:
                with conn.transaction():
                    conn.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                    )
                    conn.execute(sql.SQL(_DDL).format(table=self.table))  # type: ignore[arg-type]
                    for name in self._missing_columns(conn):
                        if name not in _ADDED_COLUMNS:
                            continue  # a base column: CREATE TABLE made it
                        conn.execute(
                            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                                self.table, sql.Identifier(name), _ADDED_COLUMNS[name]
                            )
                        )
                conn.commit()
                return
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
                conn.rollback()
                if attempt == 2:
                    raise

    def _missing_columns(self, conn: psycopg.Connection[Any]) -> list[str]:
        """The columns this release needs that the table lacks: all of them when there is no table."""
        present = {
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
                "AND NOT attisdropped",
                (self.table.as_string(conn),),
            ).fetchall()
        }
        return [name for name in (*_COLUMNS, *_ADDED_COLUMNS) if name not in present]

    def load(self, conn: psycopg.Connection[Any], fingerprint: str) -> list[PartState] | None:
        rows = conn.execute(
            sql.SQL(
                "SELECT part, fingerprint, lo, hi, last_key, done, rows, bytes, chunks, written FROM {} "
                "WHERE transfer_id = %s ORDER BY part"
            ).format(self.table),
            (self.transfer_id,),
        ).fetchall()
        conn.commit()
        if not rows:
            return None
        stale = {r[1] for r in rows} - {fingerprint}
        if stale:
            raise TransferConfigError(
                f"checkpoint {self.transfer_id!r} in {self.schema}.transfer_checkpoints was written by a "
                "transfer with different source, destination, key, mode or window; delete those rows "
                "(or pass reset_checkpoint=True) to start over."
            )
        return [PartState(r[0], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]) for r in rows]

    def create(self, conn: psycopg.Connection[Any], fingerprint: str, parts: list[PartState]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {} (transfer_id, part, fingerprint, lo, hi) VALUES (%s, %s, %s, %s, %s)"
                ).format(self.table),
                [(self.transfer_id, p.part, fingerprint, p.lo, p.hi) for p in parts],
            )
        conn.commit()

    def advance(self, cur: psycopg.Cursor[Any], state: PartState) -> None:
        """Records the part's progress; call inside the chunk's destination transaction."""
        cur.execute(self._advance(state))

    def advance_and_commit(self, conn: psycopg.Connection[Any], state: PartState, *, begin: bool) -> None:
        """Records the part's progress and commits the chunk's transaction with it, and with `begin`
        opens the next chunk's: one round trip where advance(), commit() and the next statement's
        BEGIN took three. The destination waits on each of them between two chunks.

        Sent as one simple query. psycopg reads the transaction state from libpq, so after `begin`
        it sends no BEGIN of its own, and after none it sends one before the next statement.
        """
        assert not conn.autocommit, "a chunk commits with its checkpoint in one transaction"
        query = sql.SQL("{}; COMMIT{}").format(self._advance(state), sql.SQL("; BEGIN" if begin else ""))
        data = query.as_bytes(conn)
        pgconn = conn.pgconn
        with conn.lock:
            pgconn.send_query(data)
            failed = None
            while True:
                pgconn.consume_input()
                if pgconn.is_busy():
                    select.select([pgconn.socket], [], [], 60.0)
                    continue
                result = pgconn.get_result()
                if result is None:
                    break
                if result.status != pq.ExecStatus.COMMAND_OK and failed is None:
                    failed = result
        if failed is not None:  # the statement's own error class (a deferred constraint at COMMIT, ...)
            raise error_from_result(failed, encoding=conn.info.encoding)

    def _advance(self, state: PartState) -> sql.Composed:
        values = (
            state.last_key,
            state.done,
            state.rows,
            state.bytes,
            state.chunks,
            state.written,
            self.transfer_id,
            state.part,
        )
        return sql.SQL(
            "UPDATE {} SET last_key = {}, done = {}, rows = {}, bytes = {}, chunks = {}, written = {}, "
            "updated_at = now() WHERE transfer_id = {} AND part = {}"
        ).format(self.table, *map(sql.Literal, values))

    def mark_finished(self, conn: psycopg.Connection[Any]) -> None:
        """Stamps the finished transfer; call in the final, synchronously committed transaction.

        Chunks commit with synchronous_commit=off; this write gives the final commit a WAL record
        of its own, and flushing it flushes every earlier chunk's WAL too.
        """
        conn.execute(
            sql.SQL("UPDATE {} SET finished_at = now(), updated_at = now() WHERE transfer_id = %s").format(
                self.table
            ),
            (self.transfer_id,),
        )

    def delete(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.SQL("DELETE FROM {} WHERE transfer_id = %s").format(self.table), (self.transfer_id,))

    def purge_finished(self, conn: psycopg.Connection[Any], older_than_days: int) -> None:
        """Forgets transfers that finished long ago, so the table stays small."""
        conn.execute(
            sql.SQL(
                "DELETE FROM {t} WHERE transfer_id IN (SELECT transfer_id FROM {t} GROUP BY transfer_id "
                "HAVING bool_and(done) AND max(updated_at) < now() - make_interval(days => %s))"
            ).format(t=self.table),
            (older_than_days,),
        )
        conn.commit()
