"""`airflow etl partitions status TABLE`: ranges, rows in the default, the next missing partition, and
what retention would detach. Read-only: retention is previewed through a dry-run DdlRunner, which
runs only SELECTs and rolls every transaction back.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.cli.common import CliError, connect, database_error, emit, fail
from etl_platform.common.session import pin_settings
from etl_platform.partitions.catalog import PartitionedTable, load_partitioned_table
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.partitions.errors import PartitionError
from etl_platform.partitions.intervals import TEMPORAL_UNITS, Bound, Interval, partition_name
from etl_platform.partitions.maintenance import apply_retention, prepare_session

_LOOKAHEAD = 1000  # intervals searched for the next missing one


def partition_status(args: argparse.Namespace) -> None:
    try:
        with connect(args.conn_id) as conn:
            status = read_status(conn, args.table, args.interval, args.retention, verbose=args.verbose)
    except CliError as exc:
        fail(exc)
    except psycopg.Error as exc:  # permissions, a dropped table meanwhile, ...: one line, no traceback
        fail(database_error(exc))
    except PartitionError as exc:  # names the table, interval or retention at fault
        fail(CliError(str(exc)))
    if args.output == "json":
        emit([status], "json")
        return
    emit(status["partitions"], args.output, empty=f"{status['table']} has no partitions")
    if not args.verbose:
        status.pop("retention_sql")
    gap = status["next_missing"]
    if gap:
        status["next_missing"] = f"{gap['partition']} [{gap['from']}, {gap['to']})"
    if args.output == "yaml":
        emit([{k: v for k, v in status.items() if k != "partitions"}], "yaml")
        return
    emit([{"field": k, "value": v} for k, v in status.items() if k != "partitions"], args.output)


def read_status(
    conn: psycopg.Connection[Any],
    table: str,
    interval: str | None,
    retention: str | None,
    *,
    verbose: bool = False,
) -> dict[str, Any]:
    prepare_session(conn)
    pin_settings(conn, {"default_transaction_read_only": "on"})  # a status must never change anything
    conn.commit()
    tbl = load_partitioned_table(conn, table)
    iv = Interval.parse(interval) if interval else infer_interval(tbl)
    default = tbl.default
    status: dict[str, Any] = {
        "table": tbl.label,
        "key": f"{tbl.column} ({tbl.column_type})",
        "interval": None if iv is None else (iv.unit if iv.temporal else iv.step),
        "partitions": [
            {
                "partition": p.label,
                "from": _text(p.lo, "MINVALUE"),
                "to": _text(p.hi, "MAXVALUE"),
                "detach_pending": p.detach_pending,
            }
            for p in sorted(tbl.ranged, key=lambda p: (p.lo is not None, p.lo))  # type: ignore[arg-type, return-value]
        ],
        "default": default.label if default else None,
        "default_rows": _count(conn, default.ident) if default else None,
        "next_missing": next_missing(conn, tbl, iv) if iv is not None else None,
        "retention": retention,
        "retention_would_detach": None,
        "retention_warnings": [],
        "retention_sql": [],
    }
    if retention is not None:
        log = logging.getLogger(__name__)
        log.disabled = not verbose  # the planned statements are in the output (retention_sql)
        runner = DdlRunner(conn, log, dry_run=True)
        report = apply_retention(runner, tbl.label, _retention_value(retention, tbl))
        status["retention_would_detach"] = report.detached
        status["retention_warnings"] = report.warnings + report.skipped
        status["retention_sql"] = report.planned_sql
    return status


def infer_interval(tbl: PartitionedTable) -> Interval | None:
    """The interval whose next start after the newest partition's lower bound is its upper bound."""
    bounded = [p for p in tbl.ranged if p.lo is not None and p.hi is not None]
    if not bounded:
        return None
    newest = max(bounded, key=lambda p: p.lo)  # type: ignore[arg-type, return-value]
    assert newest.lo is not None
    if not tbl.temporal:
        return Interval("int", int(newest.hi) - int(newest.lo))  # type: ignore[arg-type]
    for unit in TEMPORAL_UNITS:
        iv = Interval(unit)
        if iv.floor(newest.lo) == newest.lo and iv.next(newest.lo) == newest.hi:
            return iv
    return None


def next_missing(conn: psycopg.Connection[Any], tbl: PartitionedTable, iv: Interval) -> dict[str, Any] | None:
    """The first interval from the current one (today, or the highest key) that no partition covers."""
    if iv.temporal:
        start: Bound = iv.floor(datetime.now(UTC).date())
    else:
        row = conn.execute(
            sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(tbl.column), tbl.ident)
        ).fetchone()
        conn.commit()
        start = iv.floor(int(row[0]) if row and row[0] is not None else 0)
    lo = start
    for _ in range(_LOOKAHEAD):
        hi = iv.next(lo)
        if not tbl.covering(lo, hi):
            return {
                "partition": f"{tbl.schema}.{partition_name(tbl.name, iv, lo)}",
                "from": str(lo),
                "to": str(hi),
            }
        lo = hi
    return None


def _count(conn: psycopg.Connection[Any], ident: sql.Identifier) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()
    conn.commit()
    return int(row[0]) if row else 0


def _retention_value(retention: str, tbl: PartitionedTable) -> str | int:
    text = retention.strip()
    return int(text) if not tbl.temporal and text.lstrip("-").isdigit() else text


def _text(bound: date | int | None, unbounded: str) -> str:
    return unbounded if bound is None else str(bound)
