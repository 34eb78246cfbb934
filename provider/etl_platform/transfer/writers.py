"""Write modes: where each chunk's COPY lands and what happens once all chunks are in.

- append: straight into the destination, chunk by chunk.
- upsert: each chunk into a temporary table, then INSERT ... ON CONFLICT DO UPDATE.
- truncate / delete_insert: chunks into an UNLOGGED staging table (which survives retries), then
  one transaction swaps the contents in, so readers never see the table empty or half-loaded.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.transfer.errors import StagingLostError
from etl_platform.transfer.plan import TransferPlan
from etl_platform.transfer.spec import WriteMode

_CHUNK_TABLE = sql.Identifier("_etl_chunk")


class ChunkWriter:
    """Append: COPY goes straight into the destination."""

    keeps_checkpoint = True  # a finished append remembers its last key: a rerun adds nothing twice

    def __init__(self, plan: TransferPlan, checkpoint_schema: str, transfer_id: str):
        self.plan = plan
        self.dest = plan.destination.ident

    def prepare(self, conn: psycopg.Connection[Any], columns: tuple[str, ...] | None) -> None:
        """Once per transfer, before the first chunk (columns are None until a transform has run)."""

    def target(self) -> sql.Composable:
        return self.dest

    def before_copy(self, cur: psycopg.Cursor[Any], columns: tuple[str, ...]) -> None:
        pass

    def after_copy(self, cur: psycopg.Cursor[Any], columns: tuple[str, ...]) -> None:
        pass

    def discard(self, conn: psycopg.Connection[Any]) -> None:
        """Forgets what an earlier attempt left behind; called when a fresh checkpoint starts."""

    def finalize(self, conn: psycopg.Connection[Any], staged_rows: int) -> None:
        """Runs inside the final destination transaction; `staged_rows` is what the checkpoints recorded."""


class UpsertWriter(ChunkWriter):
    keeps_checkpoint = False

    def target(self) -> sql.Composable:
        return _CHUNK_TABLE

    def before_copy(self, cur: psycopg.Cursor[Any], columns: tuple[str, ...]) -> None:
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                _CHUNK_TABLE, _idents(columns), self.dest
            )
        )

    def after_copy(self, cur: psycopg.Cursor[Any], columns: tuple[str, ...]) -> None:
        conflict = self.plan.conflict_columns
        # A GENERATED ALWAYS identity column can only be UPDATEd to DEFAULT: an existing row keeps its own.
        keep = set(conflict) | _identity_always(self.plan, columns)
        updates = [c for c in columns if c not in keep]
        action = (
            sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates)
            )
            if updates
            else sql.SQL("DO NOTHING")
        )
        # The key is unique in a chunk, but conflict_columns may not be: keep the last row per conflict.
        cur.execute(
            sql.SQL(
                "INSERT INTO {dest} ({cols}) {overriding}SELECT DISTINCT ON ({conf}) {cols} FROM {chunk} "
                "ORDER BY {conf}, {key} DESC ON CONFLICT ({conf}) {action}"
            ).format(
                dest=self.dest,
                cols=_idents(columns),
                overriding=_overriding(self.plan, columns),
                conf=_idents(conflict),
                chunk=_CHUNK_TABLE,
                key=sql.Identifier(self.plan.key.name) if self.plan.key.name in columns else sql.SQL("1"),
                action=action,
            )
        )


class StagedSwapWriter(ChunkWriter):
    """truncate and delete_insert: stage everything, then replace in one transaction."""

    keeps_checkpoint = False

    def __init__(self, plan: TransferPlan, checkpoint_schema: str, transfer_id: str):
        super().__init__(plan, checkpoint_schema, transfer_id)
        digest = hashlib.sha256(transfer_id.encode()).hexdigest()[:16]
        self.stage = sql.Identifier(checkpoint_schema, f"stage_{digest}")

    def prepare(self, conn: psycopg.Connection[Any], columns: tuple[str, ...] | None) -> None:
        if columns is None:
            return
        conn.execute(
            sql.SQL("CREATE UNLOGGED TABLE IF NOT EXISTS {} AS SELECT {} FROM {} WITH NO DATA").format(
                self.stage, _idents(columns), self.dest
            )
        )
        conn.commit()

    def target(self) -> sql.Composable:
        return self.stage

    def discard(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.stage))

    def finalize(self, conn: psycopg.Connection[Any], staged_rows: int) -> None:
        plan = self.plan
        columns = _table_columns(conn, self.stage)
        found = _row_count(conn, self.stage) if columns else 0
        if found != staged_rows:
            # The stage is UNLOGGED (fast, no WAL) but the checkpoints are logged: after a server
            # crash PostgreSQL empties the stage while the checkpoints still say those chunks are in.
            schema, name = self.stage._obj
            raise StagingLostError(
                f"{plan.destination.label} was left unchanged: its staging table {schema}.{name} holds "
                f"{found} rows but the checkpoints recorded {staged_rows} staged rows. The staging table "
                "is UNLOGGED, so PostgreSQL empties it after a server crash (or someone truncated or "
                "dropped it). Nothing was published; the checkpoint and staging table were reset, so "
                "the next attempt restages every row from the first key."
            )
        if plan.spec.write_mode is WriteMode.TRUNCATE:
            conn.execute(sql.SQL("TRUNCATE {}").format(self.dest))
        else:
            conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(self.dest, plan.window_predicate()))
        if columns:
            conn.execute(
                sql.SQL("INSERT INTO {} ({cols}) {overriding}SELECT {cols} FROM {}").format(
                    self.dest, self.stage, cols=_idents(columns), overriding=_overriding(plan, columns)
                )
            )
            conn.execute(sql.SQL("DROP TABLE {}").format(self.stage))


def writer_for(plan: TransferPlan, checkpoint_schema: str, transfer_id: str) -> ChunkWriter:
    mode = plan.spec.write_mode
    cls: type[ChunkWriter]
    if mode is WriteMode.UPSERT:
        cls = UpsertWriter
    elif mode in (WriteMode.TRUNCATE, WriteMode.DELETE_INSERT):
        cls = StagedSwapWriter
    else:
        cls = ChunkWriter
    return cls(plan, checkpoint_schema, transfer_id)


def _identity_always(plan: TransferPlan, columns: tuple[str, ...]) -> set[str]:
    return {c.name for c in plan.destination.columns if c.identity_always and c.name in columns}


def _overriding(plan: TransferPlan, columns: tuple[str, ...]) -> sql.Composable:
    """INSERT ... SELECT into a GENERATED ALWAYS identity column needs OVERRIDING SYSTEM VALUE (COPY does not)."""
    return sql.SQL("OVERRIDING SYSTEM VALUE ") if _identity_always(plan, columns) else sql.SQL("")


def _idents(names: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _table_columns(conn: psycopg.Connection[Any], table: sql.Identifier) -> tuple[str, ...]:
    schema, name = table._obj
    rows = conn.execute(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, name),
    ).fetchall()
    return tuple(r[0] for r in rows)


def _row_count(conn: psycopg.Connection[Any], table: sql.Identifier) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    return int(row[0]) if row else 0
