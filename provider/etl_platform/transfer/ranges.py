"""Splits the key space into ranges for parallel streams, from a cheap sample of the keys."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from etl_platform.transfer.catalog import Relation
from etl_platform.transfer.checkpoint import PartState
from etl_platform.transfer.plan import TransferPlan
from etl_platform.transfer.session import pin_settings

_SAMPLE_ROWS = 20_000


def plan_parts(conn: psycopg.Connection[Any], plan: TransferPlan, parallelism: int) -> list[PartState]:
    """`parallelism` ranges (lo, hi] of roughly equal row counts; one open range when 1."""
    if parallelism == 1:
        return [PartState(part=0, lo=None, hi=None)]  # key bounds live in the window predicate
    assert plan.source_from is not None
    ranges = key_ranges(
        conn, plan.source_from, plan.key_ident, plan.window_predicate(), plan.source_relation, parallelism
    )
    return [PartState(part=i, lo=lo, hi=hi) for i, (lo, hi) in enumerate(ranges)]


KeyRange = tuple[str | None, str | None]


def key_ranges(
    conn: psycopg.Connection[Any],
    source: sql.Composable,
    key: sql.Identifier,
    where: sql.Composable,
    relation: Relation | None,
    count: int,
) -> list[KeyRange]:
    """Up to `count` ranges (lo, hi] of roughly equal row counts, the first and last open-ended.

    One plan for the in-task streams (plan_parts) and the mapped tasks (KeyRangePlanOperator): a key
    repeated at two fractions (a small or skewed table) makes one range, never an empty one.
    """
    fractions = [i / count for i in range(1, count)]
    points = split_points(conn, source, key, where, relation, fractions) if fractions else []
    edges: list[str | None] = [None, *sorted(set(points), key=points.index), None]
    return [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def split_points(
    conn: psycopg.Connection[Any],
    source: sql.Composable,
    key: sql.Identifier,
    where: sql.Composable,
    relation: Relation | None,
    fractions: list[float],
) -> list[str]:
    """Keys at the given fractions of the key order (text form), from a sample on large tables."""
    base = sql.SQL(
        "SELECT percentile_disc({f}) WITHIN GROUP (ORDER BY {key})::text[] FROM {src} {sample} WHERE {where}"
    )
    sample = _sample_clause(conn, relation)
    attempts = [sample, sql.SQL("")] if sample is not None else [sql.SQL("")]
    for clause in attempts:
        query = base.format(f=sql.Literal(fractions), key=key, src=source, sample=clause, where=where)
        pin_settings(conn, local=True)  # keys as ISO text, whatever the caller's session prints
        row = conn.execute(query).fetchone()
        conn.commit()
        values = row[0] if row else None
        if values and all(v is not None for v in values):
            return list(values)
    return []


def _sample_clause(conn: psycopg.Connection[Any], rel: Relation | None) -> sql.Composable | None:
    """TABLESAMPLE over about 20,000 rows when the source is a plain table large enough to need it."""
    if rel is None or rel.kind not in ("r", "m"):
        return None
    row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s", (rel.oid,)).fetchone()
    conn.commit()
    tuples = float(row[0]) if row else -1
    if tuples <= _SAMPLE_ROWS * 5:
        return None
    percent = max(0.01, min(100.0, 100.0 * _SAMPLE_ROWS / tuples))
    return sql.SQL("TABLESAMPLE SYSTEM ({})").format(sql.Literal(percent))
