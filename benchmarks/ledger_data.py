"""A realistic run ledger for the dashboard benchmark: a million pipeline runs in seconds.

Rows are generated inside PostgreSQL (one INSERT ... SELECT generate_series), deterministic for a given
seed and `now`. Each pipeline has its own typical duration (5 s to ~20 min) and row volume, durations
are log-normal around it, ~3 % of runs fail, and a run whose duration would end after `now` is still
running. The rollup trigger is disabled for the load (in the same transaction, so no other session ever
sees it disabled) and the rollup is rebuilt once at the end.

    PYTHONPATH=. .venv/bin/python -m benchmarks.ledger_data "host=127.0.0.1 user=postgres dbname=bench_dashboard"
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from etl_platform.ledger.migrate import migrate

_PIPELINE_NAMES = (
    "orders", "customers", "payments", "inventory", "shipments", "invoices", "clicks", "sessions", "refunds",
    "products",
)  # fmt: skip

_FILL = """
WITH g AS (
    SELECT g, 1 + mod(g, %(pipelines)s) AS i,
           %(now)s::timestamptz - random() * %(days)s * interval '1 day' AS started_at,
           random() AS u1, random() AS u2, random() AS u3, random() AS u4, random() AS u5
    FROM generate_series(1, %(n_runs)s) g
), d AS MATERIALIZED (  -- each run's figures computed once, not once per reference
    SELECT g, started_at,
           'etl_' || (%(names)s::text[])[1 + mod(i - 1, cardinality(%(names)s::text[]))]
                  || '_' || lpad(i::text, 2, '0') AS pipeline,
           -- log-normal around the pipeline's typical duration (5 s * 1.15^i) and row volume
           5 * power(1.15::float8, i) * exp(0.35 * sqrt(-2 * ln(1 - u1)) * cos(2 * pi() * u2)) AS duration,
           round(1000 * power(10::float8, mod(i, 4)) * (1 + mod(i, 7)) * exp(0.3 * sqrt(-2 * ln(1 - u3))
                 * sin(2 * pi() * u2)))::bigint AS full_rows,
           80 + 7 * i AS row_bytes,
           u4 < 0.03 AS failed, u5 AS done_fraction
    FROM g
), r AS (
    SELECT *, started_at + duration * interval '1 second' > %(now)s::timestamptz AS running FROM d
)
INSERT INTO etl_audit.pipeline_runs
    (pipeline, run_id, started_at, finished_at, status, "rows", bytes, error, updated_at)
SELECT pipeline,
       'scheduled__' || to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00_' || g,
       started_at,
       CASE WHEN running THEN NULL ELSE started_at + duration * interval '1 second' END,
       CASE WHEN running THEN 'running' WHEN failed THEN 'failed' ELSE 'success' END,
       x.loaded, x.loaded * row_bytes,
       CASE WHEN failed AND NOT running THEN 'psycopg.errors.QueryCanceled: canceling statement due to '
                                             'statement timeout' END,
       CASE WHEN running THEN started_at ELSE started_at + duration * interval '1 second' END
FROM r
CROSS JOIN LATERAL (
    SELECT CASE WHEN running THEN 0 WHEN failed THEN (full_rows * done_fraction)::bigint ELSE full_rows END
) x (loaded)
ORDER BY started_at  -- index inserts in key order: several times faster than random order
"""


def _months(first: date, last: date) -> list[date]:
    months, month = [], first.replace(day=1)
    while month <= last:
        months.append(month)
        month = (month + timedelta(days=32)).replace(day=1)
    return months


def load_ledger_runs(
    conn: psycopg.Connection[Any],
    n_runs: int = 1_000_000,
    pipelines: int = 40,
    days: int = 90,
    seed: int = 20261128,
    now: datetime | None = None,
) -> float:
    """Migrates the ledger, appends `n_runs` runs spread over the `days` ending `now`; returns seconds.

    Monthly partitions are created first (etl_audit.create_monthly_partition), then the rollup is rebuilt
    and both tables vacuumed and analyzed (`conn` must be in autocommit mode for VACUUM).
    """
    now = now or datetime.now(UTC)
    started = time.perf_counter()
    migrate(conn)
    with conn.transaction():
        for month in _months((now - timedelta(days=days)).date(), now.date()):
            conn.execute("SELECT etl_audit.create_monthly_partition('etl_audit.pipeline_runs', %s)", (month,))
        conn.execute("ALTER TABLE etl_audit.pipeline_runs DISABLE TRIGGER pipeline_runs_rollup_sync")
        conn.execute("SELECT setseed(%s)", ((seed % 1_000_003) / 1_000_003,))
        conn.execute(
            _FILL,
            {
                "n_runs": n_runs,
                "pipelines": pipelines,
                "days": days,
                "now": now,
                "names": list(_PIPELINE_NAMES),
            },
        )
        conn.execute("ALTER TABLE etl_audit.pipeline_runs ENABLE TRIGGER pipeline_runs_rollup_sync")
        conn.execute("SELECT etl_audit.rebuild_pipeline_run_rollup()")
    # VACUUM too: autovacuum would set the visibility map of a ledger this old (index-only scans)
    conn.execute("VACUUM (ANALYZE) etl_audit.pipeline_runs")
    conn.execute("VACUUM (ANALYZE) etl_audit.pipeline_run_rollup")
    return time.perf_counter() - started


if __name__ == "__main__":
    with psycopg.connect(sys.argv[1], autocommit=True) as connection:
        print(f"loaded in {load_ledger_runs(connection):.1f} s")
