"""The staged path: every row into an UNLOGGED table, then one transaction replaces the rows.

delete_insert always, truncate where the swap cannot keep what depends on the table. Each row is
written twice (stage, then destination), but the destination keeps its identity: views, foreign
keys, triggers and publications see an ordinary DELETE/TRUNCATE plus INSERT.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from etl_platform.transfer import swap_catalog
from etl_platform.transfer.errors import StagingLostError
from etl_platform.transfer.plan import TransferPlan
from etl_platform.transfer.spec import WriteMode
from etl_platform.transfer.writers import (
    ChunkWriter,
    discard_work_tables,
    idents,
    overriding,
    row_count,
    table_columns,
    work_table,
)


class StagedWriter(ChunkWriter):
    """truncate and delete_insert: stage everything, then replace in one transaction."""

    keeps_checkpoint = False
    strategy = "staged"

    def __init__(self, plan: TransferPlan, checkpoint_schema: str, transfer_id: str):
        super().__init__(plan, checkpoint_schema, transfer_id)
        self.checkpoint_schema, self.transfer_id = checkpoint_schema, transfer_id
        self.stage = work_table(checkpoint_schema, transfer_id, "stage")

    def prepare(self, conn: psycopg.Connection[Any], columns: tuple[str, ...] | None) -> None:
        if columns is None:
            return
        conn.execute(
            sql.SQL("CREATE UNLOGGED TABLE IF NOT EXISTS {} AS SELECT {} FROM {} WITH NO DATA").format(
                self.stage, idents(columns), self.dest
            )
        )
        conn.commit()

    def target(self) -> sql.Composable:
        return self.stage

    def discard(self, conn: psycopg.Connection[Any]) -> None:
        discard_work_tables(conn, self.checkpoint_schema, self.transfer_id)

    def finalize(self, conn: psycopg.Connection[Any], staged_rows: int) -> None:
        plan = self.plan
        columns = table_columns(conn, self.stage)
        check_unlogged_rows(
            conn, plan, self.stage, row_count(conn, self.stage) if columns else 0, staged_rows
        )
        replace_rows(conn, plan, self.stage, columns)
        if columns:
            conn.execute(sql.SQL("DROP TABLE {}").format(self.stage))


def check_unlogged_rows(
    conn: psycopg.Connection[Any], plan: TransferPlan, table: sql.Identifier, found: int, staged_rows: int
) -> None:
    """An UNLOGGED table (fast, no WAL) is emptied by PostgreSQL after a server crash, while the
    logged checkpoints still say its chunks are in: publish nothing and start over."""
    if found == staged_rows:
        return
    schema, name = table._obj
    raise StagingLostError(
        f"{plan.destination.label} was left unchanged: its staging table {schema}.{name} holds "
        f"{found} rows but the checkpoints recorded {staged_rows} staged rows. The staging table "
        "is UNLOGGED, so PostgreSQL empties it after a server crash (or someone truncated or "
        "dropped it). Nothing was published; the checkpoint and staging table were reset, so "
        "the next attempt restages every row from the first key."
    )


def replace_rows(
    conn: psycopg.Connection[Any], plan: TransferPlan, source: sql.Identifier, columns: tuple[str, ...]
) -> None:
    """In the caller's transaction: empty the destination (or its window), insert `source`'s rows."""
    dest = plan.destination.ident
    if plan.spec.write_mode is WriteMode.TRUNCATE:
        if swap_catalog.inbound_foreign_keys(conn, plan.destination.oid):
            # TRUNCATE refuses a table other tables reference; DELETE lets the database check their
            # keys (deferrable ones once the new rows are in, at commit).
            conn.execute("SET CONSTRAINTS ALL DEFERRED")
            conn.execute(sql.SQL("DELETE FROM {}").format(dest))
        else:
            conn.execute(sql.SQL("TRUNCATE {}").format(dest))
    else:
        conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(dest, plan.window_predicate()))
    if columns:
        conn.execute(
            sql.SQL("INSERT INTO {} ({cols}) {overriding}SELECT {cols} FROM {}").format(
                dest, source, cols=idents(columns), overriding=overriding(plan, columns)
            )
        )
