"""The retention-state table: detached-but-unfinished partitions, so a run that dies is finished by the next.

A partition is recorded here (in the parent's schema, where maintenance already creates tables)
before its DETACH and forgotten in the transaction that archives, drops or keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from etl_platform.common.catalog import SchemaQualified, read_row
from etl_platform.partitions.catalog import PartitionedTable
from etl_platform.partitions.ddl import DdlRunner

RETENTION_STATE = "etl_partition_retention"
_STATE_DDL = """CREATE TABLE IF NOT EXISTS {} (
    partition_oid oid PRIMARY KEY,
    parent_oid oid NOT NULL,
    partition text NOT NULL,
    mode text NOT NULL,
    archive_schema text,
    archive_name text,
    recorded_at timestamptz NOT NULL DEFAULT now()
)"""
_RECORD = (
    "INSERT INTO {} (partition_oid, parent_oid, partition, mode, archive_schema, archive_name) "
    "VALUES ({}, {}, {}, {}, {}, {}) ON CONFLICT (partition_oid) DO UPDATE SET "
    "mode = EXCLUDED.mode, archive_schema = EXCLUDED.archive_schema, "
    "archive_name = EXCLUDED.archive_name, recorded_at = now()"
)
_UNFINISHED = (
    "SELECT s.partition_oid::int, n.nspname, c.relname, s.mode, s.archive_schema, s.archive_name, "
    "EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = s.partition_oid) "
    "FROM {} s LEFT JOIN pg_class c ON c.oid = s.partition_oid "
    "LEFT JOIN pg_namespace n ON n.oid = c.relnamespace WHERE s.parent_oid = {} ORDER BY s.partition"
)


@dataclass(frozen=True)
class Pending(SchemaQualified):
    """A detached partition to finish: where it is now and what the run that detached it wanted."""

    oid: int
    schema: str
    name: str
    mode: str
    archive_schema: str | None
    archive_name: str | None


def state_table(tbl: PartitionedTable) -> sql.Identifier:
    return sql.Identifier(tbl.schema, RETENTION_STATE)


def forget(tbl: PartitionedTable, pending: Pending) -> sql.Composed:
    """The statement that forgets `pending`, run in the transaction that finishes it."""
    return sql.SQL("DELETE FROM {} WHERE partition_oid = {}").format(
        state_table(tbl), sql.Literal(pending.oid)
    )


def record(runner: DdlRunner, tbl: PartitionedTable, pending: Pending) -> None:
    """Commits what is about to be detached and what should become of it, before the DETACH."""
    values = (pending.oid, tbl.oid, pending.label, pending.mode, pending.archive_schema, pending.archive_name)

    def work(execute: Any) -> None:
        execute(sql.SQL(_STATE_DDL).format(state_table(tbl)))
        execute(sql.SQL(_RECORD).format(state_table(tbl), *(sql.Literal(v) for v in values)))

    runner.transaction(f"record the retention of {pending.label}", work)


def unfinished(runner: DdlRunner, tbl: PartitionedTable) -> list[Pending]:
    """Recorded partitions that are detached (not merely pending) and still exist."""
    conn = runner.conn
    row = read_row(conn, "SELECT to_regclass(%s)", (state_table(tbl).as_string(conn),))
    if row is None or row[0] is None:
        return []
    rows = runner.query(
        f"read unfinished retention of {tbl.label}",
        sql.SQL(_UNFINISHED).format(state_table(tbl), sql.Literal(tbl.oid)),
    )
    out, stale = [], []
    for oid, schema, name, mode, archive_schema, archive_name, attached in rows:
        if name is None:  # dropped meanwhile: nothing left to finish
            stale.append(oid)
        elif not attached:
            out.append(Pending(oid, schema, name, mode, archive_schema, archive_name))
        # still attached: the DETACH never happened (or is pending); the normal pass decides
    if stale and not runner.dry_run:
        runner.run(
            f"forget dropped partitions of {tbl.label}",
            sql.SQL("DELETE FROM {} WHERE partition_oid = ANY({}::oid[])").format(
                state_table(tbl), sql.Literal(stale)
            ),
        )
    return out
