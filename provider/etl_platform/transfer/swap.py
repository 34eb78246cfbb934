"""Full refresh by swap: load a new table, index it, rename it in place of the destination.

Each row is written once (no staging table, no index maintained row by row): the new table is
created `LIKE` the destination with everything but its indexes, the chunks COPY into it (logged
like the destination, so a crash loses nothing; an UNLOGGED destination's new table is counted
against the checkpoints before the swap, as the staged path's stage is), then the indexes are
built in one pass each, constraints and foreign keys added, ANALYZE run, and one short transaction
under `lock_timeout` swaps it in: owner, grants, comments, policies, sequences, replica identity and
statistics targets are carried over, the old table dropped, the new one renamed. Readers see the old
rows or the new ones, never an empty or half-loaded table. If the swap finds something it cannot
keep (created since the transfer chose this path), the rows go in the staged way from the new table.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors, sql

from etl_platform.common.locking import with_lock_retries
from etl_platform.transfer import swap_catalog
from etl_platform.transfer.new_table import CannotSwap, NewTable
from etl_platform.transfer.plan import TransferPlan
from etl_platform.transfer.progress import LoggerLike
from etl_platform.transfer.staged import check_unlogged_rows, replace_rows
from etl_platform.transfer.writers import ChunkWriter, discard_work_tables, row_count, work_table


class SwapWriter(ChunkWriter):
    keeps_checkpoint = False
    strategy = "swap"

    def __init__(
        self,
        plan: TransferPlan,
        checkpoint_schema: str,
        transfer_id: str,
        *,
        lock_timeout: str,
        logger: LoggerLike,
    ):
        super().__init__(plan, checkpoint_schema, transfer_id)
        self.checkpoint_schema, self.transfer_id = checkpoint_schema, transfer_id
        dest = plan.destination
        self.table = NewTable(
            work_table(checkpoint_schema, transfer_id, "swap"), dest.oid, dest.schema, dest.name
        )
        self.lock_timeout = lock_timeout
        self.log = logger
        self.note = "the new rows were loaded into a fresh table and swapped in"

    def prepare(self, conn: psycopg.Connection[Any], columns: tuple[str, ...] | None) -> None:
        if self.table.oid(conn) is None:  # a resumed attempt keeps what is loaded
            with conn.transaction():
                self.table.create(conn)
        conn.commit()  # the streams' own connections COPY into it

    def target(self) -> sql.Composable:
        return self.table.ident

    def discard(self, conn: psycopg.Connection[Any]) -> None:
        discard_work_tables(conn, self.checkpoint_schema, self.transfer_id)

    def before_finalize(self, conn: psycopg.Connection[Any], staged_rows: int) -> None:
        self.table.build(conn)

    def finalize(self, conn: psycopg.Connection[Any], staged_rows: int) -> None:
        if self.table.unlogged(conn):  # as the staged path's stage: a server crash empties it
            check_unlogged_rows(
                conn, self.plan, self.table.ident, row_count(conn, self.table.ident), staged_rows
            )
        try:
            swap_under_lock(conn, self.plan, self.lock_timeout, self.log, lambda: self._swap(conn))
        except (CannotSwap, errors.DependentObjectsStillExist) as exc:
            self.fall_back(conn, exc, self.table.ident)

    def _swap(self, conn: psycopg.Connection[Any]) -> None:
        dest = self.plan.destination
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(dest.ident))
        reasons = swap_catalog.blockers(conn, dest.oid)
        if reasons:
            raise CannotSwap("; ".join(reasons))
        self.table.take_place(conn, lambda: conn.execute(sql.SQL("DROP TABLE {}").format(dest.ident)))

    def fall_back(self, conn: psycopg.Connection[Any], exc: Exception, loaded: sql.Identifier) -> None:
        """The rows go from the loaded table into the destination in place, in this transaction."""
        reason = exc.diag.message_detail if isinstance(exc, psycopg.Error) else str(exc)
        self.strategy = "staged"
        self.note = f"swap abandoned at the last step, rows replaced in place instead: {reason}"
        self.log.warning("%s: %s", self.plan.destination.label, self.note)
        replace_rows(conn, self.plan, loaded, insertable_columns(self.plan))
        conn.execute(sql.SQL("DROP TABLE {}").format(loaded))


def swap_under_lock(
    conn: psycopg.Connection[Any], plan: TransferPlan, lock_timeout: str, log: LoggerLike, work: Any
) -> None:
    def retry(attempt: int, delay: float, exc: psycopg.Error) -> None:
        log.warning(
            "swap into %s: %s; retry %d in %.1f s",
            plan.destination.label,
            exc.diag.message_primary,
            attempt,
            delay,
        )

    with_lock_retries(conn, lock_timeout, work, on_retry=retry)


def insertable_columns(plan: TransferPlan) -> tuple[str, ...]:
    return tuple(c.name for c in plan.destination.columns if not c.generated)
