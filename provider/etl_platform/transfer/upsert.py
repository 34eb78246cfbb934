"""upsert: each chunk lands in a temporary table, then INSERT ... ON CONFLICT DO UPDATE."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from etl_platform.transfer.writers import ChunkWriter, identity_always, idents, overriding

_CHUNK_TABLE = sql.Identifier("_etl_chunk")


class UpsertWriter(ChunkWriter):
    strategy = "upsert"
    keeps_checkpoint = False

    def target(self) -> sql.Composable:
        return _CHUNK_TABLE

    def before_copy(self, cur: psycopg.Cursor[Any], columns: tuple[str, ...]) -> None:
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                _CHUNK_TABLE, idents(columns), self.dest
            )
        )

    def after_copy(self, cur: psycopg.Cursor[Any], columns: tuple[str, ...]) -> None:
        conflict = self.plan.conflict_columns
        # A GENERATED ALWAYS identity column can only be UPDATEd to DEFAULT: an existing row keeps its own.
        keep = set(conflict) | identity_always(self.plan, columns)
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
                cols=idents(columns),
                overriding=overriding(self.plan, columns),
                conf=idents(conflict),
                chunk=_CHUNK_TABLE,
                key=sql.Identifier(self.plan.key.name) if self.plan.key.name in columns else sql.SQL("1"),
                action=action,
            )
        )
