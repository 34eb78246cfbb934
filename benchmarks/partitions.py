"""Partition maintenance benchmark: ensure 36 monthly partitions, the idempotent no-op run, draining 100k rows.

    PYTHONPATH=. .venv/bin/python -m benchmarks.partitions [CONNINFO]

CONNINFO (default $ETL_BENCH_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/postgres) names the
server; the benchmark works in its own database, bench_partitions (created if missing), on a fresh
`bench.events` table: range-partitioned monthly on a timestamptz, a primary key including the key, one
secondary index and a default partition. Results are printed as a table and as JSON; the targets are
reported as pass/fail, never asserted.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from etl_platform.partitions import maintenance
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.partitions.intervals import Interval

DEFAULT_CONNINFO = "postgresql://postgres@127.0.0.1:5432/postgres"
DBNAME = "bench_partitions"
SCHEMA = "bench"
TABLE = "events"
BACKFILL_MONTHS = 33  # + the current month + PREMAKE = 36 partitions
PREMAKE = 2
NOOP_RUNS = 5
DRAIN_ROWS = 100_000
DRAIN_MONTHS = 12  # months past the premade ones: only the default partition holds them
TARGETS = {"ensure_36_seconds": 2.0, "noop_median_seconds": 0.2}

T = TypeVar("T")


class _CountingLog:
    """DdlRunner's logger: counts the statements instead of printing each one."""

    def __init__(self) -> None:
        self.statements = 0
        self.warnings: list[str] = []

    def info(self, event: Any, /, *args: Any) -> None:
        self.statements += 1

    def warning(self, event: Any, /, *args: Any) -> None:
        self.warnings.append(str(event) % args if args else str(event))


def ensure_database(conninfo: str) -> str:
    """Creates bench_partitions on `conninfo`'s server if missing; returns a conninfo for it."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DBNAME)))
    return make_conninfo(conninfo, dbname=DBNAME, application_name="etl-bench-partitions")


def reset_table(conn: psycopg.Connection[Any]) -> None:
    table = sql.Identifier(SCHEMA, TABLE)
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (id bigserial, created_at timestamptz NOT NULL, customer_id int NOT NULL, "
            "amount numeric(12, 2) NOT NULL, note text, PRIMARY KEY (id, created_at)) "
            "PARTITION BY RANGE (created_at)"
        ).format(table)
    )
    conn.execute(sql.SQL("CREATE INDEX events_customer_idx ON {} (customer_id)").format(table))
    conn.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
            sql.Identifier(SCHEMA, "events_default"), table
        )
    )


def fill_default(conn: psycopg.Connection[Any], first: date, last: date, rows: int) -> int:
    """`rows` rows spread evenly over [first, last), months no partition covers yet: all land in the default."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (created_at, customer_id, amount, note) "
            "SELECT %(first)s::timestamptz + (g - 1) * ((%(last)s::timestamptz - %(first)s::timestamptz) / %(n)s), "
            "g %% 5000, (g %% 10000) / 100.0, md5(g::text) FROM generate_series(1, %(n)s) AS g"
        ).format(sql.Identifier(SCHEMA, TABLE)),
        {"first": first, "last": last, "n": rows},
    )
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(SCHEMA, TABLE)))
    return _count(conn, "events_default")


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SCHEMA, table))).fetchone()
    return int(row[0]) if row else 0


def _timed(work: Callable[[], T]) -> tuple[T, float]:
    began = time.perf_counter()
    result = work()
    return result, time.perf_counter() - began


def run(conninfo: str) -> dict[str, Any]:
    """Runs the three measurements on a fresh table in bench_partitions; returns the results."""
    url = ensure_database(conninfo)
    today = datetime.now(UTC).date()
    month = Interval.parse("month")
    current = month.floor(today)
    assert isinstance(current, date)
    start = month.shift(current, -BACKFILL_MONTHS)
    label = f"{SCHEMA}.{TABLE}"
    log = _CountingLog()
    with psycopg.connect(url, autocommit=True) as admin, psycopg.connect(url) as conn:
        admin.execute("SET TimeZone = 'UTC'")
        reset_table(admin)
        maintenance.prepare_session(conn)
        runner = DdlRunner(conn, log, lock_timeout="2s", attempts=5)

        def ensure() -> maintenance.MaintenanceReport:
            return maintenance.ensure_partitions(
                runner, label, "month", start=start, premake=PREMAKE, today=today
            )

        first, ensure_seconds = _timed(ensure)
        ensure_statements = log.statements
        noops = [_timed(ensure) for _ in range(NOOP_RUNS)]

        drain_first = month.shift(current, PREMAKE + 1)
        drain_last = month.shift(current, PREMAKE + 1 + DRAIN_MONTHS)
        assert isinstance(drain_first, date) and isinstance(drain_last, date)
        in_default = fill_default(admin, drain_first, drain_last, DRAIN_ROWS)
        drained, drain_seconds = _timed(lambda: maintenance.drain_default(runner, label, "month"))
        left_in_default = _count(admin, "events_default")
        total_rows = _count(admin, TABLE)
        server = admin.execute("SHOW server_version").fetchone()

    noop_seconds = [seconds for _, seconds in noops]
    results: dict[str, Any] = {
        "kind": "partition-benchmark",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "postgres": server[0] if server else None,
        "database": DBNAME,
        "table": label,
        "ensure_partitions_created": len(first.created),
        "ensure_statements": ensure_statements,
        "ensure_36_seconds": round(ensure_seconds, 4),
        "ensure_ms_per_partition": round(1000 * ensure_seconds / max(len(first.created), 1), 2),
        "noop_seconds": [round(s, 4) for s in noop_seconds],
        "noop_median_seconds": round(statistics.median(noop_seconds), 4),
        "noop_created": sum(len(r.created) for r, _ in noops),
        "drain_rows_in_default": in_default,
        "drain_rows_moved": drained.rows_moved,
        "drain_partitions_created": len(drained.created),
        "drain_rows_left_in_default": left_in_default,
        "drain_total_rows": total_rows,
        "drain_seconds": round(drain_seconds, 4),
        "drain_rows_per_second": round(drained.rows_moved / drain_seconds) if drain_seconds else None,
        "retries": runner.retries,
        "lock_warnings": log.warnings,
        "targets": TARGETS,
    }
    results["pass"] = {
        "ensure_36_seconds": len(first.created) == 36 and ensure_seconds < TARGETS["ensure_36_seconds"],
        "noop_median_seconds": results["noop_created"] == 0
        and results["noop_median_seconds"] < TARGETS["noop_median_seconds"],
    }
    return results


def render(results: dict[str, Any]) -> str:
    def verdict(key: str) -> str:
        return "PASS" if results["pass"][key] else "FAIL"

    rows = [
        ("measurement", "result", "target", ""),
        (
            f"ensure {results['ensure_partitions_created']} monthly partitions (empty table)",
            f"{results['ensure_36_seconds']:.3f} s",
            f"36 in < {TARGETS['ensure_36_seconds']:g} s",
            verdict("ensure_36_seconds"),
        ),
        (
            f"idempotent no-op, median of {NOOP_RUNS}",
            f"{results['noop_median_seconds']:.4f} s",
            f"< {TARGETS['noop_median_seconds']:g} s",
            verdict("noop_median_seconds"),
        ),
        (
            f"drain {results['drain_rows_moved']:,} rows from the default "
            f"({results['drain_partitions_created']} partitions)",
            f"{results['drain_seconds']:.3f} s",
            f"{results['drain_rows_per_second']:,} rows/s" if results["drain_rows_per_second"] else "-",
            "",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    conninfo = args[0] if args else os.environ.get("ETL_BENCH_POSTGRES_URL", DEFAULT_CONNINFO)
    results = run(conninfo)
    print(render(results))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
