"""Small catalog reads of maintenance: pending detaches, free names, foreign keys, index states.

Each runs through common.catalog.read_row/read_rows: inside the caller's transaction when one is
open, in its own otherwise; none commits the caller's work.
"""

from __future__ import annotations

from typing import Any, Protocol

import psycopg
from psycopg import sql

from etl_platform.common.catalog import read_row, read_rows
from etl_platform.partitions.catalog import Partition
from etl_platform.partitions.errors import PartitionError
from etl_platform.partitions.intervals import fit_name

Conn = psycopg.Connection[Any]


class Named(Protocol):
    """A partition, attached or detached: its oid, schema and name."""

    @property
    def oid(self) -> int: ...

    @property
    def schema(self) -> str: ...

    @property
    def name(self) -> str: ...


def detach_pending(conn: Conn, part: Partition) -> bool:
    row = read_row(conn, "SELECT bool_or(inhdetachpending) FROM pg_inherits WHERE inhrelid = %s", (part.oid,))
    return bool(row and row[0])


def name_taken(conn: Conn, schema: str, name: str, part: Named) -> bool:
    """Another relation called `name` in the archive schema or in the partition's own (renamed there first)."""
    row = read_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace "
        "WHERE c.relname = %s AND ns.nspname IN (%s, %s) AND c.oid <> %s)",
        (name, schema, part.schema, part.oid),
    )
    return bool(row and row[0])


def free_name(conn: Conn, schema: str, part: Named) -> str:
    """The partition's name, or with a suffix (_1, _2, ...) when the archive schema already has it.

    Chosen before the DETACH: SET SCHEMA failing on a taken name would leave the table detached.
    """
    for n in range(0, 1000):
        name = part.name if n == 0 else fit_name(part.name, f"_{n}")
        if not name_taken(conn, schema, name, part):
            return name
    raise PartitionError(f"no free archive name for {part.schema}.{part.name} in schema {schema}.")


def foreign_keys_to(conn: Conn, oids: list[int]) -> list[tuple[str, str]]:
    """(constraint, referencing table) of every foreign key that references one of `oids`."""
    return read_rows(
        conn,
        "SELECT DISTINCT conname, conrelid::regclass::text FROM pg_constraint "
        "WHERE contype = 'f' AND confrelid = ANY(%s::oid[])",
        (oids,),
    )


def index_state(conn: Conn, schema: str, name: str) -> str:
    """missing, valid or invalid (a CREATE INDEX CONCURRENTLY that failed or timed out)."""
    row = read_row(
        conn,
        "SELECT i.indisvalid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_index i ON i.indexrelid = c.oid WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    )
    return "missing" if row is None else ("valid" if row[0] else "invalid")


def has_attached_index(conn: Conn, parent_index: sql.Identifier, part: Partition) -> bool:
    row = read_row(
        conn,
        sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid "
            "WHERE i.inhparent = to_regclass({}) AND x.indrelid = {})"
        ).format(sql.Literal(parent_index.as_string(conn)), sql.Literal(part.oid)),
    )
    return bool(row and row[0])


_INDEX_SHAPE = (
    "SELECT c.relkind, x.indrelid = %s, am.amname, x.indisunique, "
    "x.indexprs IS NULL AND x.indpred IS NULL AND x.indnatts = x.indnkeyatts, "
    "array(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, n) "
    "      JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n), "
    "pg_get_indexdef(c.oid) "
    "FROM pg_class c LEFT JOIN pg_index x ON x.indexrelid = c.oid LEFT JOIN pg_am am ON am.oid = c.relam "
    "WHERE c.oid = to_regclass(%s)"
)


def index_shape(conn: Conn, table_oid: int, qualified: str) -> tuple[Any, ...] | None:
    """The relation called `qualified`: kind, on the table?, method, unique, plain columns, columns, definition."""
    return read_row(conn, _INDEX_SHAPE, (table_oid, qualified))
