"""Turns a TransferSpec into checked column mappings and the SQL for each chunk.

All validation that can happen before data moves happens here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.transfer import catalog
from etl_platform.transfer.catalog import Column, Relation
from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.spec import TransferSpec, WriteMode

BINARY = "binary"
TEXT = "text"
CSV = "csv"


@dataclass(frozen=True)
class TransferPlan:
    spec: TransferSpec
    source_from: sql.Composable | None  # PostgreSQL sources only
    source_relation: Relation | None  # None for source_sql and for other kinds of source
    source_columns: tuple[Column, ...]  # key first; what each chunk SELECTs
    key: Column
    destination: Relation
    dest_columns: tuple[Column, ...]  # pass-through: destination columns matched to source_columns
    copy_format: str
    conflict_columns: tuple[str, ...]

    @property
    def key_ident(self) -> sql.Identifier:
        return sql.Identifier(self.key.name)

    def window_predicate(self) -> sql.Composable:
        """The rows this transfer owns: the incremental window and the key bounds, if any."""
        spec = self.spec
        parts: list[sql.Composable] = []
        if spec.incremental_column:
            col = sql.Identifier(spec.incremental_column)
            if spec.window_start is not None:
                parts.append(sql.SQL("{} >= {}").format(col, sql.Literal(spec.window_start)))
            if spec.window_end is not None:
                parts.append(sql.SQL("{} < {}").format(col, sql.Literal(spec.window_end)))
        if spec.key_min is not None:
            parts.append(sql.SQL("{} > {}").format(self.key_ident, sql.Literal(str(spec.key_min))))
        if spec.key_max is not None:
            parts.append(sql.SQL("{} <= {}").format(self.key_ident, sql.Literal(str(spec.key_max))))
        return sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")

    def copy_out(self, lo: str | None, hi: str | None) -> sql.Composed:
        """Keyset chunk (lo, hi]: an index seek past the last key, never an OFFSET.

        Values are inlined as literals (COPY takes no bind parameters), so the chunk can be sent
        straight through libpq; a str literal is untyped and PostgreSQL reads it as the key's type.
        """
        conds: list[sql.Composable] = [self.window_predicate()]
        if lo is not None:
            conds.append(sql.SQL("{} > {}").format(self.key_ident, sql.Literal(lo)))
        if hi is not None:
            conds.append(sql.SQL("{} <= {}").format(self.key_ident, sql.Literal(hi)))
        assert self.source_from is not None, "copy_out is the PostgreSQL source's query"
        select = sql.SQL("SELECT {cols} FROM {src} WHERE {where} ORDER BY {key} LIMIT {limit}").format(
            cols=sql.SQL(", ").join(sql.Identifier(c.name) for c in self.source_columns),
            src=self.source_from,
            where=sql.SQL(" AND ").join(conds),
            key=self.key_ident,
            limit=sql.Literal(self.spec.chunk_rows),
        )
        return sql.SQL("COPY ({}) TO STDOUT (FORMAT {})").format(select, sql.SQL(self.copy_format.upper()))

    def copy_in(self, target: sql.Composable, columns: tuple[str, ...] | None = None) -> sql.Composed:
        names = columns if columns is not None else tuple(c.name for c in self.dest_columns)
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
            target,
            sql.SQL(", ").join(sql.Identifier(n) for n in names),
            sql.SQL(self.copy_format.upper()),
        )

    def count_query(self) -> sql.Composable:
        assert self.source_from is not None, "count_query is the PostgreSQL source's query"
        return sql.SQL("SELECT 1 FROM {} WHERE {}").format(self.source_from, self.window_predicate())

    def fingerprint(self) -> str:
        """Identifies what a checkpoint belongs to, so a changed task never resumes a stale one."""
        spec = self.spec
        doc = {
            "source": spec.source_table or spec.source_sql or spec.source_path,
            "destination": self.destination.label,
            "key": self.key.name,
            "mode": str(spec.write_mode),
            "window": [str(spec.window_start), str(spec.window_end), spec.incremental_column],
            "keys": [str(spec.key_min), str(spec.key_max)],
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def resolve_destination(spec: TransferSpec, destination: psycopg.Connection[Any]) -> Relation:
    dest = catalog.resolve_table(destination, spec.destination_table, "destination_table")
    if dest.kind not in ("r", "p"):
        raise TransferConfigError(f"destination_table {dest.label} is not a table (relkind {dest.kind!r}).")
    return dest


def build_plan(
    spec: TransferSpec, source: psycopg.Connection[Any], destination: psycopg.Connection[Any]
) -> TransferPlan:
    dest = resolve_destination(spec, destination)
    source_from, source_relation, src_cols, key = keyset_source(
        source, spec.source_table, spec.source_sql, spec.key_column
    )
    ordered = (key, *[c for c in src_cols if c.name != key.name])

    def pass_through_format(dest_cols: tuple[Column, ...]) -> str:
        pairs = list(zip(ordered, dest_cols, strict=True))
        _check_types(source, destination, pairs, dest, spec.source_label)
        # Binary COPY carries type OIDs inside arrays and composites, and user-defined types (enums,
        # domains, citext, ...) have different OIDs in different databases: binary only for built-ins.
        built_in = catalog.FIRST_NORMAL_OID
        binary = all(
            s.type_name == d.type_name and s.type_oid < built_in and d.type_oid < built_in for s, d in pairs
        )
        return BINARY if binary else TEXT

    return complete_plan(
        spec,
        destination,
        dest,
        ordered,
        key,
        source_label=spec.source_label,
        pass_through_format=pass_through_format,
        source_from=source_from,
        source_relation=source_relation,
    )


def complete_plan(
    spec: TransferSpec,
    destination: psycopg.Connection[Any],
    dest: Relation,
    source_columns: tuple[Column, ...],
    key: Column,
    *,
    source_label: str,
    pass_through_format: Callable[[tuple[Column, ...]], str],
    source_from: sql.Composable | None = None,
    source_relation: Relation | None = None,
) -> TransferPlan:
    """The checks every plan shares, whatever it reads (a table, a query, files).

    Without a transform each source column goes to the destination column of its name, and
    `pass_through_format(dest_cols)` checks their types and picks the COPY format. A transform's
    output types are only known as Arrow types after its first chunk, and we do not map those to
    PostgreSQL types: the destination judges each value on load (CSV) instead.
    """
    names = [c.name for c in source_columns]
    if spec.incremental_column and spec.incremental_column not in names:
        raise TransferConfigError(
            f"incremental_column {spec.incremental_column!r} is not a column of {source_label} "
            f"(columns: {', '.join(names)})."
        )
    if spec.transform is None:
        dest_cols = match_columns(spec, source_columns, dest)
        copy_format = pass_through_format(dest_cols)
    else:
        dest_cols, copy_format = (), CSV
    return TransferPlan(
        spec=spec,
        source_from=source_from,
        source_relation=source_relation,
        source_columns=source_columns,
        key=key,
        destination=dest,
        dest_columns=dest_cols,
        copy_format=copy_format,
        conflict_columns=check_write_mode(spec, destination, dest, names),
    )


def keyset_source(
    conn: psycopg.Connection[Any], source_table: str | None, source_sql: str | None, key_column: str | None
) -> tuple[sql.Composable, Relation | None, tuple[Column, ...], Column]:
    """The source read in keyset chunks (the transfer's and the export's): its FROM clause, its
    relation (None for a query), its columns and its key."""
    if source_table:
        rel, key = _table_source(conn, source_table, key_column)
        return rel.ident, rel, rel.columns, key
    assert source_sql is not None and key_column
    source_from, columns, key = query_source(conn, source_sql, key_column)
    return source_from, None, columns, key


def _table_source(
    conn: psycopg.Connection[Any], source_table: str, key_column: str | None
) -> tuple[Relation, Column]:
    """The relation and a key a unique index backs (a view's key is taken on trust)."""
    rel = catalog.resolve_table(conn, source_table, "source_table")
    key_name = key_column or _default_key(rel)
    key = rel.require_column(key_name, "key_column")
    if rel.kind in ("r", "p", "m") and not catalog.has_unique_index_on(conn, rel, key_name):
        raise TransferConfigError(
            f"key_column {key_name!r} of {rel.label} has no unique index: chunks need an ordered "
            "unique key (give the primary key or a uniquely indexed column)."
        )
    return rel, key


def query_source(
    conn: psycopg.Connection[Any], source_sql: str, key_column: str
) -> tuple[sql.Composable, tuple[Column, ...], Column]:
    """A query as a keyset source (the transfer's and the export's): FROM clause, columns, key."""
    columns = catalog.describe_query(conn, source_sql)
    # Sent verbatim: every statement built around it (COPY, EXPLAIN, the split-point query) is
    # executed without bind parameters, so a '%' (modulo, LIKE '50%') must reach the server as is.
    source_from = sql.SQL("({}) AS src").format(sql.SQL(source_sql))  # type: ignore[arg-type]
    found = next((c for c in columns if c.name == key_column), None)
    if found is None:
        raise TransferConfigError(
            f"key_column {key_column!r} is not an output column of source_sql "
            f"(columns: {', '.join(c.name for c in columns)})."
        )
    return source_from, columns, found


def check_write_mode(
    spec: TransferSpec, destination: psycopg.Connection[Any], dest: Relation, copied: list[str]
) -> tuple[str, ...]:
    """What the write mode needs of the destination; returns the upsert conflict columns."""
    if spec.write_mode is WriteMode.DELETE_INSERT:
        dest.require_column(spec.incremental_column or "", "incremental_column (in destination)")
    conflict = tuple(spec.conflict_columns or dest.primary_key)
    if spec.write_mode is WriteMode.UPSERT:
        if not conflict:
            raise TransferConfigError(
                f"write_mode 'upsert' needs conflict_columns: {dest.label} has no primary key."
            )
        for name in conflict:
            dest.require_column(name, "conflict_columns entry")
        _require_arbiter(destination, dest, conflict)
        if spec.transform is None:  # a transform's output is checked against them on its first chunk
            absent = [name for name in conflict if name not in copied]
            if absent:
                raise TransferConfigError(
                    f"upsert conflict columns {absent} of {dest.label} are not among the copied columns "
                    f"({', '.join(copied)}): every row needs them to find the row it replaces."
                )
    return conflict


def check_output_columns(plan: TransferPlan, names: list[str]) -> tuple[str, ...]:
    """Validates a transform's output columns against the destination (before its first write)."""
    writable = {c.name for c in plan.destination.columns if not c.generated}
    unknown = [n for n in names if n not in writable]
    if unknown:
        raise TransferConfigError(
            f"transform output columns {unknown} are not writable columns of {plan.destination.label}."
        )
    if len(set(names)) != len(names):
        raise TransferConfigError(f"transform output has duplicate columns: {names}.")
    _require_defaults(plan.destination, set(names))
    if plan.spec.write_mode is WriteMode.UPSERT:
        missing = [c for c in plan.conflict_columns if c not in names]
        if missing:
            raise TransferConfigError(f"transform output lacks the upsert conflict columns {missing}.")
    return tuple(names)


def _check_types(
    source: psycopg.Connection[Any],
    destination: psycopg.Connection[Any],
    pairs: list[tuple[Column, Column]],
    dest: Relation,
    spec_label: str,
) -> None:
    """Refuses a source column whose values the destination column could not take as text.

    Allowed: the same type; the same type category (int -> bigint, timestamp -> timestamptz); a
    string destination; or an implicit/assignment cast in the destination database.
    """
    differing = [(s, d) for s, d in pairs if s.type_name != d.type_name]
    if not differing:
        return
    src_types = catalog.type_infos(source, [s.type_oid for s, _ in differing])
    dst_types = catalog.type_infos(destination, [d.type_oid for _, d in differing])
    unsure: list[tuple[Column, Column, int]] = []
    for s, d in differing:
        st, dt = src_types.get(s.type_oid), dst_types.get(d.type_oid)
        if st is None or dt is None:
            continue  # dropped concurrently: the load will tell
        if st.category == dt.category or dt.category == "S":
            continue
        # The source type's OID in the destination database, if the type exists there.
        there = (
            s.type_oid
            if s.type_oid < catalog.FIRST_NORMAL_OID
            else catalog.find_type(destination, st.schema, st.name)
        )
        unsure.append((s, d, there if there is not None else -1))
    casts = catalog.assignment_casts(destination, [(oid, d.type_oid) for _, d, oid in unsure if oid >= 0])
    refused = [(s, d) for s, d, oid in unsure if (oid, d.type_oid) not in casts]
    if refused:
        listed = "; ".join(f"{s.name!r}: {s.type_name} -> {d.type_name}" for s, d in refused)
        raise TransferConfigError(
            f"columns of {dest.label} cannot take the {spec_label} column types: {listed}. Cast them in source_sql (for example "
            f"SELECT {_cast_hint(refused[0])} ...) or change the destination column."
        )


def _cast_hint(pair: tuple[Column, Column]) -> str:
    source, dest = pair
    ident = sql.Identifier(source.name).as_string(None)
    return f"{ident}::{dest.type_name} AS {ident}"


def _require_arbiter(conn: psycopg.Connection[Any], dest: Relation, conflict: tuple[str, ...]) -> None:
    """ON CONFLICT (cols) needs a unique index on exactly those columns, or every chunk would fail."""
    keys = catalog.arbiter_keys(conn, dest)
    if any(set(key) == set(conflict) and len(key) == len(conflict) for key in keys):
        return
    known = "; ".join(f"({', '.join(k)})" for k in keys) or "none"
    raise TransferConfigError(
        f"write_mode 'upsert' on {dest.label} needs a unique index or constraint on exactly the conflict "
        f"columns {list(conflict)} (not partial, not deferrable); its unique keys: {known}. Add one, or set "
        "conflict_columns to one of them."
    )


def _default_key(rel: Relation) -> str:
    if len(rel.primary_key) == 1:
        return rel.primary_key[0]
    if not rel.primary_key:
        raise TransferConfigError(f"source_table {rel.label} has no primary key: set key_column.")
    raise TransferConfigError(
        f"source_table {rel.label} has a composite primary key {list(rel.primary_key)}: set key_column "
        "to a single uniquely indexed column."
    )


def match_columns(spec: TransferSpec, src_cols: tuple[Column, ...], dest: Relation) -> tuple[Column, ...]:
    """Pairs every source column with the destination column of the same name."""
    missing = [c.name for c in src_cols if dest.column(c.name) is None]
    if missing:
        raise TransferConfigError(
            f"source columns {missing} of {spec.source_label} have no column of the same name in "
            f"{dest.label} (destination columns: {', '.join(c.name for c in dest.columns)})."
        )
    matched = tuple(dest.column(c.name) for c in src_cols)
    generated = [c.name for c in matched if c is not None and c.generated]
    if generated:
        raise TransferConfigError(f"destination columns {generated} of {dest.label} are generated columns.")
    _require_defaults(dest, {c.name for c in src_cols})
    return tuple(c for c in matched if c is not None)


def _require_defaults(dest: Relation, provided: set[str]) -> None:
    lacking = [c.name for c in dest.columns if c.name not in provided and c.not_null and not c.has_default]
    if lacking:
        raise TransferConfigError(
            f"destination columns {lacking} of {dest.label} are NOT NULL without a default and the "
            "source does not provide them."
        )
