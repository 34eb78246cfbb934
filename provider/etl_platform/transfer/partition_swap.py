"""Partitioned destinations: load new partitions, then exchange them for the old ones.

truncate replaces every partition, delete_insert those its window covers exactly. The chunks COPY
into a partitioned shadow table in the checkpoint schema whose partitions are built like the
destination's (same bounds, so rows route the same way) and carry no indexes until the load is
done. Then each gets its indexes, foreign keys, statistics and a CHECK matching its bound (so
ATTACH needs no scan under the lock), and one short transaction under `lock_timeout` detaches the
old partitions, drops them and attaches the new ones under the old names. The parent table is never
replaced: views, grants and everything else on it stay as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import Any

import psycopg
from psycopg import errors, sql

from etl_platform.transfer import swap_catalog
from etl_platform.transfer.new_table import CannotSwap, NewTable
from etl_platform.transfer.plan import TransferPlan
from etl_platform.transfer.progress import LoggerLike
from etl_platform.transfer.swap import SwapWriter, swap_under_lock
from etl_platform.transfer.writers import exists, work_table

_BOUND_CHECK = "etl_partition_bound"
_RANGE = re.compile(r"^FOR VALUES FROM \((?P<lo>.+)\) TO \((?P<hi>.+)\)$")

_LEAVES = """
SELECT n.nspname, c.relname, c.oid, pg_get_expr(c.relpartbound, c.oid), c.relkind, c.relpersistence
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = %s ORDER BY pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.relname
"""
_KEY = """
SELECT p.partstrat, p.partnatts, a.attname, format_type(a.atttypid, a.atttypmod), pg_get_partkeydef(p.partrelid)
FROM pg_partitioned_table p LEFT JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
WHERE p.partrelid = %s
"""


@dataclass(frozen=True)
class Leaf:
    schema: str
    name: str
    oid: int
    bound: str  # FOR VALUES ... or DEFAULT, as the server prints it

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def is_default(self) -> bool:
        return self.bound == "DEFAULT"


def leaves(conn: psycopg.Connection[Any], oid: int) -> tuple[list[Leaf], list[str]]:
    """The destination's partitions, and why they cannot be exchanged (empty when they can)."""
    found, reasons = [], []
    for schema, name, part_oid, bound, kind, persistence in conn.execute(_LEAVES, (oid,)).fetchall():
        if kind == "p":
            reasons.append(f"partition {schema}.{name} is itself partitioned")
        if persistence == "u":
            reasons.append(f"partition {schema}.{name} is UNLOGGED")
        found.append(Leaf(schema, name, part_oid, bound))
    if not found:
        reasons.append("it has no partitions")
    return found, reasons


def exchange_blockers(conn: psycopg.Connection[Any], dest_oid: int, parts: list[Leaf]) -> list[str]:
    """What an exchange of `parts` could not keep: on the parent (which stays, so views on it are
    fine) and on each partition (which is replaced)."""
    reasons = swap_catalog.blockers(conn, dest_oid, replaced=False)
    if conn.execute(
        "SELECT 1 FROM pg_attribute WHERE attrelid = %s AND attidentity <> '' AND NOT attisdropped",
        (dest_oid,),
    ).fetchone():
        reasons.append("it has an identity column (each new partition would number rows on its own)")
    for part in parts:
        reasons += [
            f"partition {part.schema}.{part.name}: {why}"
            for why in swap_catalog.blockers(conn, part.oid, as_partition=True)
        ]
    return reasons


def window_partitions(conn: psycopg.Connection[Any], plan: TransferPlan) -> tuple[list[Leaf], str | None]:
    """The partitions the delete_insert window covers exactly, or why it covers none that way."""
    spec = plan.spec
    key = conn.execute(_KEY, (plan.destination.oid,)).fetchone()
    assert key is not None
    strategy, natts, column, column_type, _ = key
    if strategy != "r" or natts != 1 or column != spec.incremental_column:
        return [], f"it is not range-partitioned on incremental_column {spec.incremental_column!r} alone"
    if spec.window_start is None or spec.window_end is None:
        return [], "the window is open on one side"
    parts, reasons = leaves(conn, plan.destination.oid)
    if reasons:
        return [], "; ".join(reasons)
    typed = sql.SQL(column_type)  # type: ignore[arg-type]  # format_type() output
    start = sql.SQL("{}::{}").format(sql.Literal(str(spec.window_start)), typed)
    end = sql.SQL("{}::{}").format(sql.Literal(str(spec.window_end)), typed)
    chosen: list[tuple[str, str, Leaf, bool, bool]] = []
    for part in parts:
        match = _RANGE.match(part.bound)
        if match is None:
            continue  # the default partition: it holds no window rows once ranges cover the window
        lo, hi = match["lo"], match["hi"]
        if "MINVALUE" in (lo, hi) or "MAXVALUE" in (lo, hi):
            overlaps = True if "MINVALUE" in lo and "MAXVALUE" in hi else None
            if overlaps is None:
                row = conn.execute(
                    sql.SQL("SELECT {}").format(
                        sql.SQL("{} > {}").format(sql.SQL(hi), start)
                        if "MINVALUE" in lo
                        else sql.SQL("{} < {}").format(sql.SQL(lo), end)
                    )
                ).fetchone()
                overlaps = bool(row and row[0])
            if overlaps:
                return [], f"partition {part.schema}.{part.name} reaches past the window (MINVALUE/MAXVALUE)"
            continue
        row = conn.execute(
            sql.SQL(
                "SELECT {lo} < {end} AND {hi} > {start}, {lo} >= {start} AND {hi} <= {end}, {lo} = {start}, "
                "{hi} = {end}"
            ).format(lo=sql.SQL(lo), hi=sql.SQL(hi), start=start, end=end)
        ).fetchone()
        assert row is not None
        overlaps, inside, at_start, at_end = row
        if overlaps and not inside:
            return [], f"the window covers partition {part.schema}.{part.name} only in part"
        if overlaps:
            chosen.append((lo, hi, part, bool(at_start), bool(at_end)))
    if not chosen:
        return [], "no partition lies inside the window"
    # Partitions never overlap: the chosen ones fill the window when it starts and ends on their
    # bounds and every lower bound inside it is another chosen partition's upper bound.
    highs = {c[1] for c in chosen}
    filled = all(c[3] or c[0] in highs for c in chosen)
    if not (any(c[3] for c in chosen) and any(c[4] for c in chosen) and filled):
        return [], "the window's edges do not fall on partition bounds"
    return [c[2] for c in chosen], None


class PartitionSwapWriter(SwapWriter):
    keeps_checkpoint = False

    def __init__(
        self,
        plan: TransferPlan,
        checkpoint_schema: str,
        transfer_id: str,
        *,
        parts: list[Leaf],
        lock_timeout: str,
        logger: LoggerLike,
        strategy: str,
    ):
        super().__init__(plan, checkpoint_schema, transfer_id, lock_timeout=lock_timeout, logger=logger)
        self.strategy = strategy
        self.shadow = work_table(checkpoint_schema, transfer_id, "swap")
        shadow_name = str(self.shadow._obj[1])
        self.parts = parts
        self.tables = [
            NewTable(sql.Identifier(checkpoint_schema, f"{shadow_name}_{i}"), p.oid, p.schema, p.name)
            for i, p in enumerate(parts)
        ]
        names = ", ".join(p.name for p in parts)
        self.note = f"new partitions loaded and exchanged for {names}"

    def prepare(self, conn: psycopg.Connection[Any], columns: tuple[str, ...] | None) -> None:
        if not exists(conn, self.shadow):  # a resumed attempt keeps what is loaded
            dest = self.plan.destination
            with conn.transaction():
                key = conn.execute(_KEY, (dest.oid,)).fetchone()
                assert key is not None
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED) "
                        "PARTITION BY {}"
                    ).format(self.shadow, dest.ident, sql.SQL(key[4]))
                )
                for table, part in zip(self.tables, self.parts, strict=True):
                    table.create(conn)
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
                            self.shadow, table.ident, sql.SQL(part.bound)
                        )
                    )
        conn.commit()

    def target(self) -> sql.Composable:
        return self.shadow

    def before_finalize(self, conn: psycopg.Connection[Any], staged_rows: int) -> None:
        for table in self.tables:
            table.build(conn)
            oid = table.oid(conn)
            if not conn.execute(
                "SELECT 1 FROM pg_constraint WHERE conrelid = %s AND conname = %s", (oid, _BOUND_CHECK)
            ).fetchone():
                # The partition's own bound as a CHECK: ATTACH trusts it instead of scanning under the lock.
                bound = conn.execute("SELECT pg_get_partition_constraintdef(%s)", (oid,)).fetchone()
                assert bound is not None and bound[0]
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})").format(
                        table.ident, sql.Identifier(_BOUND_CHECK), sql.SQL(bound[0])
                    )
                )
                conn.commit()

    def finalize(self, conn: psycopg.Connection[Any], staged_rows: int) -> None:
        try:
            swap_under_lock(conn, self.plan, self.lock_timeout, self.log, lambda: self._exchange(conn))
        except (CannotSwap, errors.DependentObjectsStillExist) as exc:
            self.fall_back(conn, exc, self.shadow)

    def _exchange(self, conn: psycopg.Connection[Any]) -> None:
        dest = self.plan.destination
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(dest.ident))
        reasons = exchange_blockers(conn, dest.oid, self.parts)
        if reasons:
            raise CannotSwap("; ".join(reasons))
        # Every old partition leaves before any new one arrives, the default last: an ATTACH while
        # the old default is still attached would scan it.
        for table, part in zip(self.tables, self.parts, strict=True):
            conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(self.shadow, table.ident))
            conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(dest.ident, part.ident))
        for table, part in zip(self.tables, self.parts, strict=True):
            table.take_place(conn, partial(conn.execute, sql.SQL("DROP TABLE {}").format(part.ident)))
        for part in sorted(self.parts, key=lambda p: p.is_default):
            conn.execute(
                sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
                    dest.ident, part.ident, sql.SQL(part.bound)
                )
            )
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(part.ident, sql.Identifier(_BOUND_CHECK))
            )
        conn.execute(sql.SQL("DROP TABLE {}").format(self.shadow))
