"""Which writer a transfer gets: the write mode, and for a full refresh whether it may swap.

Decided before any data moves, from the destination's catalog; a resumed attempt continues the
strategy its load began with (the swap re-checks what depends on the table at its last step and
replaces the rows in place from its new table if it can no longer swap).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from etl_platform.transfer import partition_swap, swap_catalog
from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.plan import TransferPlan
from etl_platform.transfer.progress import LoggerLike
from etl_platform.transfer.spec import Strategy, WriteMode
from etl_platform.transfer.staged import StagedWriter
from etl_platform.transfer.swap import SwapWriter
from etl_platform.transfer.upsert import UpsertWriter
from etl_platform.transfer.writers import ChunkWriter, exists, work_table

_DELETE_ACTIONS = {"c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def writer_for(
    plan: TransferPlan,
    checkpoint_schema: str,
    transfer_id: str,
    conn: psycopg.Connection[Any],
    logger: LoggerLike,
) -> ChunkWriter:
    mode = plan.spec.write_mode
    if mode is WriteMode.UPSERT:
        return UpsertWriter(plan, checkpoint_schema, transfer_id)
    if mode not in (WriteMode.TRUNCATE, WriteMode.DELETE_INSERT):
        return ChunkWriter(plan, checkpoint_schema, transfer_id)
    partitioned = plan.destination.kind == "p"
    if mode is WriteMode.TRUNCATE:
        _check_referencing_tables(plan, conn)
    elif not partitioned:
        staged = StagedWriter(plan, checkpoint_schema, transfer_id)
        if not _leads_an_index(conn, plan.destination.oid, plan.spec.incremental_column or ""):
            staged.note = (
                f"no index on {plan.destination.label} starts with incremental_column "
                f"{plan.spec.incremental_column!r}: the window's DELETE reads the whole table"
            )
            logger.warning("%s", staged.note)
        return staged
    if plan.spec.strategy is Strategy.STAGED:
        staged = StagedWriter(plan, checkpoint_schema, transfer_id)
        staged.note = "strategy='staged' was asked for"
        return staged
    lock_timeout = str(plan.spec.lock_timeout)
    parts, reasons = _swap_blockers(plan, checkpoint_schema, transfer_id, conn)
    conn.commit()
    if not reasons and partitioned:
        strategy = "partition_swap" if mode is WriteMode.TRUNCATE else "partition_exchange"
        return partition_swap.PartitionSwapWriter(
            plan,
            checkpoint_schema,
            transfer_id,
            parts=parts,
            lock_timeout=lock_timeout,
            logger=logger,
            strategy=strategy,
        )
    if not reasons:
        return SwapWriter(plan, checkpoint_schema, transfer_id, lock_timeout=lock_timeout, logger=logger)
    staged = StagedWriter(plan, checkpoint_schema, transfer_id)
    what = "exchanging partitions" if partitioned else "swapping a new table in"
    staged.note = f"staged instead of {what}, because of {plan.destination.label}: {'; '.join(reasons)}"
    logger.warning("%s", staged.note)
    return staged


def _swap_blockers(
    plan: TransferPlan, checkpoint_schema: str, transfer_id: str, conn: psycopg.Connection[Any]
) -> tuple[list[partition_swap.Leaf], list[str]]:
    """The partitions a swap would exchange, and what keeps it from swapping (empty: nothing)."""
    mode = plan.spec.write_mode
    partitioned = plan.destination.kind == "p"
    parts: list[partition_swap.Leaf] = []
    # An earlier attempt's load continues the way it began (the swap re-checks at its last step).
    resumed_swap = exists(conn, work_table(checkpoint_schema, transfer_id, "swap"))
    if exists(conn, work_table(checkpoint_schema, transfer_id, "stage")):
        reasons = ["an earlier attempt of this transfer staged its rows"]
    elif mode is WriteMode.DELETE_INSERT:
        parts, why = partition_swap.window_partitions(conn, plan)
        reasons = [why] if why else []
    elif partitioned:
        parts, reasons = partition_swap.leaves(conn, plan.destination.oid)
    else:
        reasons = [] if resumed_swap else swap_catalog.blockers(conn, plan.destination.oid)
    if partitioned and not reasons and not resumed_swap:
        reasons = partition_swap.exchange_blockers(conn, plan.destination.oid, parts)
    return parts, reasons


def _check_referencing_tables(plan: TransferPlan, conn: psycopg.Connection[Any]) -> None:
    """A full refresh deletes every row first: refuse, before any data moves, where that would
    change or fail on the tables whose foreign keys reference the destination."""
    for key in swap_catalog.inbound_foreign_keys(conn, plan.destination.oid):
        where = f"foreign key {key.name} of {key.schema}.{key.table}"
        if key.on_delete in _DELETE_ACTIONS:
            raise TransferConfigError(
                f"write_mode 'truncate' into {plan.destination.label} would delete every row, and {where} "
                f"is ON DELETE {_DELETE_ACTIONS[key.on_delete]}: its rows would change. Use upsert, or "
                "load that table's parent another way."
            )
        if key.deferrable:
            continue  # checked at commit, against the new rows
        child = sql.Identifier(key.schema, key.table)
        if conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(child)).fetchone() == (True,):
            raise TransferConfigError(
                f"write_mode 'truncate' into {plan.destination.label} would delete every row while {where} "
                "references them, and the key is not DEFERRABLE, so the delete fails before the new rows "
                "are in. Make the foreign key DEFERRABLE (then only keys missing from the new rows fail), "
                "or use upsert."
            )
    conn.commit()


def _leads_an_index(conn: psycopg.Connection[Any], oid: int, column: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = i.indkey[0] WHERE i.indrelid = %s AND a.attname = %s AND i.indpred IS NULL)",
        (oid, column),
    ).fetchone()
    conn.commit()
    return bool(row and row[0])
