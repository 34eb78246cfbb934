"""Catalog look-ups every engine needs: a relation by name, its columns and primary key.

Everything here reads pg_catalog; nothing is formatted into SQL text. A read runs inside the caller's
transaction when one is open (only a name to_regclass cannot parse, the one read that can fail on
input, runs in a savepoint, so a failed look-up leaves that transaction usable) and in a transaction
of its own otherwise: it never commits or rolls back the caller's work.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.common.errors import ConfigError


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    type_name: str  # format_type(): "numeric(12,2)", "timestamp with time zone", ...
    not_null: bool = False
    has_default: bool = False
    generated: bool = False
    identity_always: bool = False  # GENERATED ALWAYS AS IDENTITY: INSERT needs OVERRIDING SYSTEM VALUE


class SchemaQualified:
    """A schema-qualified relation name: `ident` for SQL, `label` for messages."""

    schema: str
    name: str

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Relation(SchemaQualified):
    oid: int
    schema: str
    name: str
    kind: str  # pg_class.relkind
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    # What a missing column raises: the calling engine's config error (TransferConfigError, ...).
    error: type[ConfigError] = field(default=ConfigError, compare=False, repr=False)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def require_column(self, name: str, setting: str) -> Column:
        col = self.column(name)
        if col is None:
            raise self.error(
                f"{setting} {name!r} is not a column of {self.label} "
                f"(columns: {', '.join(c.name for c in self.columns)})."
            )
        return col


_FIND_EXACT = """
SELECT c.oid, n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""
_FIND_REGCLASS = """
SELECT c.oid, n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""
_COLUMNS = """
SELECT a.attname, a.atttypid::int, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.atthasdef OR a.attidentity <> '', a.attgenerated <> '', a.attidentity = 'a'
FROM pg_attribute a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_PRIMARY_KEY = """
SELECT a.attname
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisprimary
ORDER BY k.ord
"""


def reading(conn: psycopg.Connection[Any]) -> AbstractContextManager[Any]:
    """Where catalog reads run: inside the caller's open transaction as they are (a read changes
    nothing, and a savepoint would cost two round trips per look-up), else in one of their own."""
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        return nullcontext()
    return conn.transaction()


def resolve_table(
    conn: psycopg.Connection[Any], table: str, setting: str, *, error: type[ConfigError] = ConfigError
) -> Relation:
    """Find `table` ("schema.table", "table", or SQL-quoted) or raise `error` naming the setting."""
    with reading(conn):
        row = _find(conn, table)
        if row is None:
            raise error(f"{setting} {table!r} does not exist (or is not visible) in the database.")
        oid, schema, name, kind = row
        columns = tuple(Column(*c) for c in conn.execute(_COLUMNS, (oid,)).fetchall())
        pk = tuple(r[0] for r in conn.execute(_PRIMARY_KEY, (oid,)).fetchall())
    return Relation(
        oid=oid, schema=schema, name=name, kind=kind, columns=columns, primary_key=pk, error=error
    )


def _find(conn: psycopg.Connection[Any], table: str) -> tuple[Any, ...] | None:
    row = None
    if "." in table and '"' not in table:
        schema, name = table.split(".", 1)
        row = conn.execute(_FIND_EXACT, (schema, name)).fetchone()
    if row is None:
        candidate = table if '"' in table or "." in table else _quote_ident(table)
        try:
            with conn.transaction():  # a savepoint: a name to_regclass cannot parse fails only this
                row = conn.execute(_FIND_REGCLASS, (candidate,)).fetchone()
        except psycopg.Error:
            row = None
    return row


def read_row(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> tuple[Any, ...] | None:
    """The first row of a catalog read; never commits the caller's transaction (see the module)."""
    with reading(conn):
        return conn.execute(query, params).fetchone()


def read_rows(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> list[tuple[Any, ...]]:
    """Every row of a catalog read; never commits the caller's transaction (see the module)."""
    with reading(conn):
        return conn.execute(query, params).fetchall()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
