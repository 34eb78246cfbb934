"""What a range-partitioned table looks like now: its key column, partitions, bounds, default."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import psycopg

from etl_platform.common.catalog import SchemaQualified, reading, resolve_table
from etl_platform.partitions.errors import PartitionConfigError
from etl_platform.partitions.intervals import Bound, Interval

TEMPORAL_TYPES = {"date", "timestamp without time zone", "timestamp with time zone"}
INTEGER_TYPES = {"smallint", "integer", "bigint"}

_PARTITION_KEY = """
SELECT p.partstrat, p.partnatts, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_partitioned_table p
LEFT JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
WHERE p.partrelid = %s
"""
_PARTITIONS = """
SELECT n.nspname, c.relname, c.oid::int, pg_get_expr(c.relpartbound, 0), i.inhdetachpending
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = %s
ORDER BY c.relname
"""
_BOUND = re.compile(r"^FOR VALUES FROM \((?P<lo>.+)\) TO \((?P<hi>.+)\)$")


@dataclass(frozen=True)
class Partition(SchemaQualified):
    schema: str
    name: str
    oid: int
    lo: Bound | None  # None: MINVALUE
    hi: Bound | None  # None: MAXVALUE
    detach_pending: bool = False
    is_default: bool = False


@dataclass(frozen=True)
class PartitionedTable(SchemaQualified):
    oid: int
    schema: str
    name: str
    column: str
    column_type: str
    column_not_null: bool
    columns: tuple[str, ...] = ()  # writable (non-generated) columns, in the parent's order
    owner: str = ""
    partitions: tuple[Partition, ...] = field(default=())

    @property
    def temporal(self) -> bool:
        return self.column_type in TEMPORAL_TYPES

    @property
    def default(self) -> Partition | None:
        return next((p for p in self.partitions if p.is_default), None)

    @property
    def ranged(self) -> tuple[Partition, ...]:
        return tuple(p for p in self.partitions if not p.is_default)

    def fit(self, iv: Interval, given: object) -> Interval:
        """`iv` (the user's `given` value, parsed) if it suits the key's type: dates or integers."""
        if iv.temporal != self.temporal:
            raise PartitionConfigError(
                f"interval {given!r} does not fit {self.label}, partitioned on {self.column} ({self.column_type})."
            )
        return iv

    def bound(self, value: Any) -> Bound:
        """A user's start (a date, a datetime, an ISO string or an integer) as a bound of this key; None: 0."""
        if value is None:
            return 0
        if self.temporal:
            if isinstance(value, datetime):
                return value.date()
            if isinstance(value, date):
                return value
            try:
                return date.fromisoformat(str(value)[:10])
            except ValueError:
                raise PartitionConfigError(f"start {value!r} is not a date (YYYY-MM-DD).") from None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise PartitionConfigError(f"start {value!r} is not an integer.") from None

    def covering(self, lo: Bound, hi: Bound) -> list[Partition]:
        """Partitions whose range overlaps [lo, hi)."""
        return [
            p
            for p in self.ranged
            if (p.lo is None or p.lo < hi)  # type: ignore[operator]
            and (p.hi is None or p.hi > lo)  # type: ignore[operator]
        ]


def load_partitioned_table(conn: psycopg.Connection[Any], table: str) -> PartitionedTable:
    """Describe `table` or raise naming it: unknown, not partitioned, not RANGE on one column.

    Read in one transaction (the caller's when one is open; common.catalog.reading): never commits it.
    """
    with reading(conn):
        rel = resolve_table(conn, table, "table", error=PartitionConfigError)
        key = conn.execute(_PARTITION_KEY, (rel.oid,)).fetchone()
        _check_key(rel.label, rel.kind, key)
        assert key is not None
        _, _, column, column_type, not_null = key
        bounds = conn.execute(_PARTITIONS, (rel.oid,)).fetchall()
        owner = conn.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s", (rel.oid,)
        ).fetchone()
    return PartitionedTable(
        rel.oid,
        rel.schema,
        rel.name,
        column,
        column_type,
        bool(not_null),
        columns=tuple(c.name for c in rel.columns if not c.generated),
        owner=owner[0] if owner else "",
        partitions=tuple(_partition(rel.label, column_type, *row) for row in bounds),
    )


def _check_key(label: str, kind: str, key: tuple[Any, ...] | None) -> None:
    if kind != "p" or key is None:
        raise PartitionConfigError(f"table {label} is not a partitioned table.")
    strategy, natts, column, column_type, _ = key
    if strategy != "r" or natts != 1 or column is None:
        raise PartitionConfigError(
            f"table {label} is not partitioned BY RANGE on a single column (strategy {strategy!r}, "
            f"{natts} key columns); only single-column range partitioning is maintained."
        )
    if column_type not in TEMPORAL_TYPES | INTEGER_TYPES:
        raise PartitionConfigError(
            f"table {label} is partitioned on {column} of type {column_type}; supported: date, "
            "timestamp, timestamptz, smallint, integer, bigint."
        )


def _partition(
    parent: str, column_type: str, schema: str, name: str, oid: int, bound: str | None, pending: bool
) -> Partition:
    if bound == "DEFAULT":
        return Partition(schema, name, oid, None, None, pending, is_default=True)
    match = _BOUND.match(bound or "")
    if match is None:
        raise PartitionConfigError(
            f"partition {schema}.{name} of {parent} has an unreadable bound {bound!r}."
        )
    return Partition(
        schema, name, oid, _parse(match["lo"], column_type), _parse(match["hi"], column_type), pending
    )


def _parse(text: str, column_type: str) -> Bound | None:
    if text in ("MINVALUE", "MAXVALUE"):
        return None
    value = text.strip("'")
    if column_type in INTEGER_TYPES:
        return int(value)
    parsed = datetime.fromisoformat(value) if " " in value else date.fromisoformat(value)
    if isinstance(parsed, datetime):
        if parsed.time() != datetime.min.time() or parsed.utcoffset() not in (None, timedelta(0)):
            raise PartitionConfigError(
                f"partition bound {text} is not at midnight UTC; only day-aligned bounds are maintained."
            )
        return parsed.date()
    return parsed
