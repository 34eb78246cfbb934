"""upsert: each chunk lands in a temporary table, then INSERT ... ON CONFLICT DO UPDATE.

The chunk, its INSERT ... ON CONFLICT and its checkpoint commit in one transaction, so a crash
loses at most the chunk in flight and a rerun resumes after the last committed one. ON CONFLICT
(unlike MERGE, or an UPDATE plus an INSERT of the missing keys) stays correct when another session
inserts the same key meanwhile. benchmarks/upsert_alternatives.py measured the alternatives on 2M
rows, half of them already in the destination: MERGE, one UNLOGGED stage for every chunk then one
ON CONFLICT, UPDATE + INSERT, bigger temp_buffers, bigger chunks all land within a few percent of
this (0.42-0.45x the psql COPY pipe); the statement's own index and heap work (a probe, a new row
version and two index entries per row) is what costs, not how the rows reach it.

Duplicate conflict keys inside one statement make ON CONFLICT fail ("cannot affect row a second
time"), so a chunk is reduced to its last row per conflict key (highest key wins; across chunks
the later chunk wins). That sort (about 5% of the time) is skipped where duplicates cannot occur:
the conflict key is the chunk key itself, unique in the source table, copied unchanged (no
transform) into a column of the same built-in type whose equality is no coarser than the source's.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from etl_platform.transfer.catalog import FIRST_NORMAL_OID
from etl_platform.transfer.plan import TransferPlan
from etl_platform.transfer.writers import ChunkWriter, identity_always, idents, overriding

_CHUNK_TABLE = sql.Identifier("_etl_chunk")
_SOURCE_UNIQUE_KINDS = ("r", "p", "m")  # relkinds whose key the plan proved uniquely indexed

# True when equal values of the destination column are equal bytes: no collation, or a deterministic one.
_DETERMINISTIC_EQUALITY = """
SELECT coalesce(co.collisdeterministic, true)
FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation
WHERE a.attrelid = %s AND a.attname = %s AND NOT a.attisdropped
"""


class UpsertWriter(ChunkWriter):
    strategy = "upsert"
    keeps_checkpoint = False

    def __init__(self, plan: TransferPlan, checkpoint_schema: str, transfer_id: str):
        super().__init__(plan, checkpoint_schema, transfer_id)
        self.unique_chunks = False  # set by prepare(): chunks cannot repeat a conflict key

    def prepare(self, conn: psycopg.Connection[Any], columns: tuple[str, ...] | None) -> None:
        if columns is None or self.plan.spec.transform is not None:
            return  # a transform may repeat or rewrite keys: keep the last row per conflict key
        self.unique_chunks = _key_is_unique_conflict(conn, self.plan)
        conn.commit()

    def target(self) -> sql.Composable:
        return _CHUNK_TABLE

    def before_copy(self, cur: psycopg.Cursor[Any], columns: tuple[str, ...]) -> None:
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                _CHUNK_TABLE, idents(columns), self.dest
            )
        )

    def after_copy(self, cur: psycopg.Cursor[Any], columns: tuple[str, ...]) -> None:
        cur.execute(self.upsert_statement(columns))

    def upsert_statement(self, columns: tuple[str, ...]) -> sql.Composed:
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
        if self.unique_chunks:
            rows = sql.SQL("SELECT {cols} FROM {chunk}")
        else:
            rows = sql.SQL("SELECT DISTINCT ON ({conf}) {cols} FROM {chunk} ORDER BY {conf}, {key} DESC")
        key = self.plan.key.name
        return sql.SQL("INSERT INTO {dest} ({cols}) {overriding}{rows} ON CONFLICT ({conf}) {action}").format(
            dest=self.dest,
            cols=idents(columns),
            overriding=overriding(self.plan, columns),
            rows=rows.format(
                cols=idents(columns),
                chunk=_CHUNK_TABLE,
                conf=idents(conflict),
                key=sql.Identifier(key) if key in columns else sql.SQL("1"),
            ),
            conf=idents(conflict),
            action=action,
        )


def _key_is_unique_conflict(conn: psycopg.Connection[Any], plan: TransferPlan) -> bool:
    """Whether no chunk can hold two rows with the same conflict key (without a transform)."""
    key = plan.key
    source = plan.source_relation
    if plan.conflict_columns != (key.name,) or source is None or source.kind not in _SOURCE_UNIQUE_KINDS:
        return False  # source_sql, views, files, MySQL: nothing proved the key unique
    dest_key = plan.destination.column(key.name)
    if dest_key is None or dest_key.type_oid != key.type_oid or key.type_oid >= FIRST_NORMAL_OID:
        return False  # another type (a cast: float -> int, text -> char(n)) may map two keys to one
    row = conn.execute(_DETERMINISTIC_EQUALITY, (plan.destination.oid, key.name)).fetchone()
    return bool(row and row[0])  # a nondeterministic collation ('a' = 'A') may merge two keys
