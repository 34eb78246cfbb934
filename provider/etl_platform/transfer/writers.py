"""Write modes: where each chunk's COPY lands and what happens once all chunks are in.

- append: straight into the destination, chunk by chunk (this module).
- upsert: each chunk into a temporary table, then INSERT ... ON CONFLICT DO UPDATE (`upsert.py`).
- truncate: a new heap loaded without indexes, indexed, then swapped in by rename (`swap.py`);
  where the swap cannot keep something that depends on the table, the staged path below.
- delete_insert (and truncate's fallback): chunks into an UNLOGGED staging table, then one
  transaction replaces the rows (`staged.py`).
Readers never see the table empty or half-loaded.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.transfer.plan import TransferPlan


class ChunkWriter:
    """Append: COPY goes straight into the destination."""

    keeps_checkpoint = True  # a finished append remembers its last key: a rerun adds nothing twice
    strategy = "append"  # reported in the summary: how the rows reached the destination

    def __init__(self, plan: TransferPlan, checkpoint_schema: str, transfer_id: str):
        self.plan = plan
        self.dest = plan.destination.ident
        self.note: str | None = None  # why this strategy (a fallback names what forced it)

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

    def before_finalize(self, conn: psycopg.Connection[Any], staged_rows: int) -> None:
        """After the last chunk, outside the final transaction: slow work readers need not wait for."""

    def finalize(self, conn: psycopg.Connection[Any], staged_rows: int) -> None:
        """Runs inside the final destination transaction; `staged_rows` is what the checkpoints recorded."""


WORK_TABLE_KINDS = ("stage", "swap")  # the staged path's table and the swap's new table


def work_table(checkpoint_schema: str, transfer_id: str, kind: str) -> sql.Identifier:
    """The table a writer loads into before publishing, named from the transfer id so a retry finds it."""
    return sql.Identifier(
        checkpoint_schema, f"{kind}_{hashlib.sha256(transfer_id.encode()).hexdigest()[:16]}"
    )


def discard_work_tables(conn: psycopg.Connection[Any], checkpoint_schema: str, transfer_id: str) -> None:
    """A fresh start drops whatever any strategy loaded under this transfer id before."""
    for kind in WORK_TABLE_KINDS:
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(work_table(checkpoint_schema, transfer_id, kind))
        )


def exists(conn: psycopg.Connection[Any], table: sql.Identifier) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table.as_string(conn),)).fetchone()
    return bool(row and row[0])


def identity_always(plan: TransferPlan, columns: tuple[str, ...]) -> set[str]:
    return {c.name for c in plan.destination.columns if c.identity_always and c.name in columns}


def overriding(plan: TransferPlan, columns: tuple[str, ...]) -> sql.Composable:
    """INSERT ... SELECT into a GENERATED ALWAYS identity column needs OVERRIDING SYSTEM VALUE (COPY does not)."""
    return sql.SQL("OVERRIDING SYSTEM VALUE ") if identity_always(plan, columns) else sql.SQL("")


def idents(names: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def table_columns(conn: psycopg.Connection[Any], table: sql.Identifier) -> tuple[str, ...]:
    schema, name = table._obj
    rows = conn.execute(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, name),
    ).fetchall()
    return tuple(r[0] for r in rows)


def row_count(conn: psycopg.Connection[Any], table: sql.Identifier) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    return int(row[0]) if row else 0
