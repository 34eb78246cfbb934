"""Catalog look-ups: resolve tables, their columns, keys and the shape of a query.

Everything here reads pg_catalog; nothing is formatted into SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.common import catalog
from etl_platform.common.catalog import Column, Relation, SchemaQualified
from etl_platform.transfer.errors import TransferConfigError

# Column, Relation and SchemaQualified live in common.catalog (shared with the partitions engine).
__all__ = ["Column", "Relation", "SchemaQualified", "resolve_table"]


_UNIQUE_ON = """
SELECT EXISTS (
    SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = %s AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL
      AND a.attname = %s
)
"""

# Unique indexes ON CONFLICT can infer as its arbiter: immediate, valid, no predicate, no expressions.
_ARBITER_KEYS = """
SELECT array_agg(a.attname::text ORDER BY k.ord)
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisunique AND i.indimmediate AND i.indisvalid
  AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts
GROUP BY i.indexrelid
ORDER BY i.indexrelid
"""


def resolve_table(conn: psycopg.Connection[Any], table: str, setting: str) -> Relation:
    """Find `table` ("schema.table", "table", or SQL-quoted) or raise TransferConfigError naming the setting."""
    return catalog.resolve_table(conn, table, setting, error=TransferConfigError)


def has_unique_index_on(conn: psycopg.Connection[Any], rel: Relation, column: str) -> bool:
    with conn.cursor() as cur:
        row = cur.execute(_UNIQUE_ON, (rel.oid, column)).fetchone()
    return bool(row and row[0])


def arbiter_keys(conn: psycopg.Connection[Any], rel: Relation) -> list[tuple[str, ...]]:
    """Column lists of the unique indexes/constraints an ON CONFLICT (cols) could use on `rel`."""
    with conn.cursor() as cur:
        return [tuple(r[0]) for r in cur.execute(_ARBITER_KEYS, (rel.oid,)).fetchall()]


# OIDs below this are assigned at initdb: the same type in every database of every cluster.
FIRST_NORMAL_OID = 16384


@dataclass(frozen=True)
class TypeInfo:
    oid: int
    schema: str
    name: str
    category: str  # pg_type.typcategory: 'N' numeric, 'S' string, 'D' date/time, 'A' array, ...


def type_infos(conn: psycopg.Connection[Any], oids: list[int]) -> dict[int, TypeInfo]:
    rows = conn.execute(
        "SELECT t.oid::int, n.nspname, t.typname, t.typcategory FROM pg_type t "
        "JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = ANY(%s::oid[])",
        (oids,),
    ).fetchall()
    return {r[0]: TypeInfo(*r) for r in rows}


def find_type(conn: psycopg.Connection[Any], schema: str, name: str) -> int | None:
    """The OID of schema.name in this database (user-defined types differ between databases)."""
    row = conn.execute(
        "SELECT t.oid::int FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = %s AND t.typname = %s",
        (schema, name),
    ).fetchone()
    return int(row[0]) if row else None


def assignment_casts(conn: psycopg.Connection[Any], pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """The (source, target) pairs with an implicit or assignment cast, which INSERT would apply too."""
    if not pairs:
        return set()
    rows = conn.execute(
        "SELECT c.castsource::int, c.casttarget::int FROM pg_cast c "
        "JOIN unnest(%s::oid[], %s::oid[]) AS p(s, t) ON c.castsource = p.s AND c.casttarget = p.t "
        "WHERE c.castcontext IN ('i', 'a')",
        ([p[0] for p in pairs], [p[1] for p in pairs]),
    ).fetchall()
    return {(r[0], r[1]) for r in rows}


def describe_query(conn: psycopg.Connection[Any], query: str) -> tuple[Column, ...]:
    """Output columns of a SELECT without reading its rows."""
    probe = sql.SQL("SELECT * FROM ({}) AS src WHERE false").format(sql.SQL(query))  # type: ignore[arg-type]
    with conn.cursor() as cur:
        try:
            cur.execute(probe)
        except psycopg.Error as exc:
            conn.rollback()
            raise TransferConfigError(
                f"source_sql is not a valid SELECT: {exc.diag.message_primary}", sqlstate=exc.sqlstate
            ) from None
        res = cur.pgresult
        assert res is not None
        names = [res.fname(i).decode() for i in range(res.nfields)]  # type: ignore[union-attr]
        oids = [res.ftype(i) for i in range(res.nfields)]
        mods = [res.fmod(i) for i in range(res.nfields)]
        types = cur.execute(
            "SELECT format_type(t, m) FROM unnest(%s::oid[], %s::int[]) WITH ORDINALITY AS u(t, m, o) ORDER BY o",
            (oids, mods),
        ).fetchall()
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise TransferConfigError(f"source_sql returns duplicate column names: {', '.join(dupes)}.")
    return tuple(Column(n, o, t[0]) for n, o, t in zip(names, oids, types, strict=True))


def estimate_rows(conn: psycopg.Connection[Any], select: sql.Composable) -> int:
    """The planner's row estimate for a SELECT: free, and good enough for percent and ETA."""
    with conn.cursor() as cur:
        plan = cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(select), prepare=False).fetchone()
    return int(plan[0][0]["Plan"]["Plan Rows"]) if plan else 0
