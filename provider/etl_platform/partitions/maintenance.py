"""Partition maintenance without long locks: ensure, drain the default, retention, indexes.

The entry points, one module per operation: ensure.py, drain.py, retention.py (+ retention_state.py),
indexes.py; create.py creates partitions for ensure and drain; spec.py holds what each is asked.

- New partitions are built standalone, then ATTACHed: the parent gets SHARE UPDATE EXCLUSIVE, never
  ACCESS EXCLUSIVE. Without a default partition writers never wait for maintenance.
- With a default partition, rows it holds for a new range are moved into it in the transaction that
  attaches it, so they never block maintenance (pg_partman's most reported failure). The locks are
  taken first (the parent's, then the default's NOWAIT), so a try that cannot get them gives up
  before it has changed anything and no writer waits longer than lock_timeout: see `create` for the
  order and why. Ranges with nothing to move are created several per transaction.
- Moving a row between partitions of the same table is not a change of the table: user triggers
  on the default partition are disabled for the move (and restored in the same transaction).
- Old partitions are detached CONCURRENTLY where PostgreSQL allows it (no default partition; with
  one, the report warns that the detach blocked writers); an interrupted concurrent detach is
  finished (FINALIZE) on the next run.
- Indexes are built ON ONLY the parent, CONCURRENTLY per partition, then attached.
"""

from __future__ import annotations

from typing import Any

import psycopg

from etl_platform.common.session import pin_settings
from etl_platform.partitions.drain import drain_default, run_drain
from etl_platform.partitions.ensure import ensure_partitions, run_ensure
from etl_platform.partitions.indexes import child_index_name, create_partitioned_index, run_index
from etl_platform.partitions.report import MaintenanceReport
from etl_platform.partitions.retention import apply_retention, blocking_detach_warning, run_retention
from etl_platform.partitions.retention_state import RETENTION_STATE
from etl_platform.partitions.spec import RETENTION_MODES

__all__ = [
    "RETENTION_MODES",
    "RETENTION_STATE",
    "MaintenanceReport",
    "apply_retention",
    "blocking_detach_warning",
    "child_index_name",
    "create_partitioned_index",
    "drain_default",
    "ensure_partitions",
    "prepare_session",
    "run_drain",
    "run_ensure",
    "run_index",
    "run_retention",
]


def prepare_session(conn: psycopg.Connection[Any]) -> None:
    """Bounds of timestamptz partitions are midnight UTC: the session must read them that way."""
    pin_settings(conn, {"TimeZone": "UTC"})
    conn.commit()
