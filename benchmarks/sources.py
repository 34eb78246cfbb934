"""Sources beyond PostgreSQL: MariaDB and Parquet into PostgreSQL, PostgreSQL into Parquet.

    make bench                                        # part of it, 2,000,000 rows
    python -m benchmarks.sources --rows 500000 --repeat 3
    python -m benchmarks.sources --scale 2000000,10000000   # MariaDB task memory flat with size

Every method runs in a fresh child (benchmarks.source_methods) on the same data, the fast ones in
--repeat interleaved rounds (median), the capped baseline (GenericTransfer) once. Ratios are against
the bound measured in the same run: the `mariadb | psql` pipe for MariaDB, the psql binary COPY pipe
between two PostgreSQL tables for Parquet, `COPY ... TO STDOUT` into a file for the export.
Results: benchmarks/results/sources-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import db, measure
from benchmarks.datagen import orders_arrow_schema
from benchmarks.datagen_mysql import create_mysql_orders

RESULTS_DIR = measure.REPO_ROOT / "benchmarks" / "results"
DATA_DIR = measure.REPO_ROOT / "benchmarks" / "data"
MYSQL_DB = "etl_bench"
PG_TABLE = "public.orders_loaded"
CAPPED = {"mysql_generic_transfer"}
# (method, bound it is compared with, the target ratio or None when only reported)
TARGETS = (
    ("mysql_operator_p1", "mysql_pipe", 0.8),
    ("mysql_operator_p2", "mysql_pipe", None),
    ("mysql_dlt", "mysql_pipe", None),
    ("parquet_operator", "pg_binary_pipe", 0.8),
    ("parquet_operator_p2", "pg_binary_pipe", None),
    ("export_operator", "copy_to_file", 0.8),
)
METHOD_ORDER = (
    "mysql_pipe",
    "mysql_operator_p1",
    "mysql_operator_p2",
    "mysql_empty_task",
    "mysql_dlt",
    "pg_binary_pipe",
    "parquet_operator",
    "parquet_operator_p2",
    "copy_to_file",
    "export_operator",
    "mysql_generic_transfer",
)


def say(text: str) -> None:
    print(text, flush=True)


def mysql_connect(url: str, database: str | None = None) -> Any:
    import MySQLdb

    parts = urlsplit(url)
    return MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=database or "",
        charset="utf8mb4",
    )


def prepare_mysql(url: str, rows: int) -> None:
    conn = mysql_connect(url)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{MYSQL_DB}` CHARACTER SET utf8mb4")
        cur.execute(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'orders'",
            (MYSQL_DB,),
        )
        found = cur.fetchone()
        have = None
        if found is not None:
            cur.execute(f"SELECT COUNT(*) FROM `{MYSQL_DB}`.orders")
            have = int(cur.fetchone()[0])
    if have != rows:
        started = time.perf_counter()
        create_mysql_orders(conn, MYSQL_DB, rows=rows)
        say(f"   MariaDB {MYSQL_DB}.orders: generated {rows:,} rows in {time.perf_counter() - started:.0f} s")
    else:
        say(f"   MariaDB {MYSQL_DB}.orders: {rows:,} rows (reused)")
    create_mysql_orders(conn, MYSQL_DB, table="orders_empty", rows=0)
    conn.close()


def prepare_parquet(src_url: str, rows: int, files: int = 4) -> Path:
    """The source table as `files` Parquet files, written once per row count (exact types)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = DATA_DIR / f"orders-{rows}"
    if len(list(folder.glob("*.parquet"))) == files:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    schema = orders_arrow_schema()
    per_file = -(-rows // files)
    with db.connect(src_url) as conn:
        for index in range(files):
            with (
                conn.cursor(name=f"parquet_{index}") as cur,
                pq.ParquetWriter(folder / f"part-{index}.parquet", schema) as writer,
            ):
                cur.execute(
                    "SELECT * FROM public.orders WHERE id > %s AND id <= %s ORDER BY id",
                    (index * per_file, (index + 1) * per_file),
                )
                while batch := cur.fetchmany(100_000):
                    columns = list(zip(*batch, strict=True))
                    writer.write_table(pa.table(columns, schema=schema), row_group_size=100_000)
    return folder


def run(opts: argparse.Namespace) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base_url = opts.base_url
    src_url, dst_url = db.db_url(base_url, "bench_src"), db.db_url(base_url, "bench_dst")
    say(f"== sources benchmark {stamp}: {opts.rows:,} rows, {opts.repeat} rounds")
    for name in ("bench_src", "bench_dst"):
        db.ensure_database(base_url, name)
    shape = db.expected_orders_columns(base_url)
    db.prepare_destination(dst_url, shape)
    needs_postgres = any(not m.startswith("mysql") for m in opts.methods)
    if needs_postgres:  # the file methods' source table and Parquet files
        db.prepare_source(src_url, opts.rows, shape, regenerate=False)
    if any(m.startswith("mysql") for m in opts.methods):
        prepare_mysql(opts.mysql_url, opts.rows)
    parquet = prepare_parquet(src_url, opts.rows) if needs_postgres else DATA_DIR
    with db.connect(dst_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {PG_TABLE}")
        conn.execute(f"CREATE TABLE {PG_TABLE} (LIKE public.orders INCLUDING ALL)")
    mysql_uri = urlunsplit(("mysql", urlsplit(opts.mysql_url).netloc, f"/{MYSQL_DB}", "", ""))
    env = measure.child_env(
        {
            "AIRFLOW_HOME": str(RESULTS_DIR / ".airflow_home"),
            "AIRFLOW_CONN_ETL_BENCH_SRC": src_url,
            "AIRFLOW_CONN_ETL_BENCH_DST": dst_url,
            "AIRFLOW_CONN_ETL_BENCH_MYSQL": mysql_uri,
            "ETL_BENCH_SRC_URL": src_url,
            "ETL_BENCH_DST_URL": dst_url,
            "ETL_BENCH_MYSQL_URL": opts.mysql_url,
        }
    )
    export_dir = Path(opts.export_dir) / stamp
    args = {
        "src_conn_id": "etl_bench_src",
        "dst_conn_id": "etl_bench_dst",
        "mysql_conn_id": "etl_bench_mysql",
        "mysql_database": MYSQL_DB,
        "mysql_table": "orders",
        "mysql_empty_table": "orders_empty",
        "pg_table": PG_TABLE,
        "pg_source_table": "public.orders",
        "parquet_glob": str(parquet / "*.parquet"),
        "export_dir": str(export_dir),
        "rows_per_file": -(-opts.rows // 4),
        "chunk_rows": opts.chunk_rows,
    }
    methods = [m for m in METHOD_ORDER if m in opts.methods]
    runs: list[dict[str, Any]] = []
    log_dir = RESULTS_DIR / "logs" / f"sources-{stamp}"
    try:
        for round_no in range(1, opts.repeat + 1):
            for name in methods:
                if round_no > 1 and name in CAPPED:
                    continue
                runs.append(
                    run_one(
                        name,
                        round_no,
                        {**args, "run_id": f"bench-{uuid.uuid4()}"},
                        env,
                        dst_url,
                        opts,
                        log_dir,
                    )
                )
    finally:
        shutil.rmtree(export_dir, ignore_errors=True)
    summary = aggregate(runs)
    return {
        "kind": "sources-benchmark",
        "timestamp": stamp,
        "rows": opts.rows,
        "repeat": opts.repeat,
        "methods": summary,
        "targets": targets(summary),
        "runs": runs,
    }


def run_one(
    name: str,
    round_no: int,
    args: dict[str, Any],
    env: dict[str, str],
    dst_url: str,
    opts: argparse.Namespace,
    log_dir: Path,
) -> dict[str, Any]:
    with db.connect(dst_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {PG_TABLE}")
        conn.execute("CHECKPOINT")
    print(f"-- {name} (round {round_no}) ...", end="", flush=True)
    outcome = measure.run_method(
        name,
        args,
        env=env,
        log_path=log_dir / f"{name}-r{round_no}.log",
        cap_seconds=opts.cap if name in CAPPED else None,
        timed_out_after=opts.timeout,
        module="benchmarks.source_methods",
    )
    result = outcome.result
    with db.connect(dst_url) as conn:
        landed = db.count_rows(conn, "orders_loaded")
    exported = result.get("summary", {}).get("rows") if name == "export_operator" else None
    expected = 0 if name == "mysql_empty_task" else opts.rows
    produced = exported if name in ("export_operator", "copy_to_file") else landed
    if name == "copy_to_file":
        produced = expected if outcome.ok else 0
    status = (
        "capped"
        if outcome.capped
        else "error"
        if not outcome.ok
        else "ok"
        if produced == expected
        else "MISMATCH"
    )
    if name == "mysql_dlt" and outcome.ok:
        status = "ok (rows in its own dataset)"
    seconds = outcome.work_seconds
    peak = result.get("peak_rss_mb_override", outcome.peak_rss_mb)
    print(f" {status}: {seconds if seconds is None else round(seconds, 2)} s, peak RSS {peak:.0f} MB"
          + (f" [{result.get('error')}]" if "error" in result else ""), flush=True)  # fmt: skip
    return {
        "method": name,
        "round": round_no,
        "status": status,
        "seconds": seconds,
        "rows": produced if name != "mysql_generic_transfer" else landed,
        "rows_per_second": round((landed if outcome.capped else expected) / seconds, 1) if seconds else None,
        "peak_rss_mb": round(peak, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "child": {k: v for k, v in result.items() if k not in ("provider_modules",)},
        "log": outcome.log_path,
    }


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in METHOD_ORDER:
        mine = [
            r for r in runs if r["method"] == name and r["seconds"] is not None and r["status"] != "error"
        ]
        if not mine:
            continue
        seconds = statistics.median(r["seconds"] for r in mine)
        engine = [r["child"].get("summary", {}).get("seconds") for r in mine]
        out[name] = {
            "seconds": round(seconds, 3),
            # the engine's own time (the summary's seconds): without the task's imports and look-ups
            "engine_seconds": statistics.median(engine) if all(e is not None for e in engine) else None,
            "rounds": [r["seconds"] for r in mine],
            "rows_per_second": statistics.median(r["rows_per_second"] or 0 for r in mine),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
            "status": sorted({r["status"] for r in mine}),
        }
    empty = out.get("mysql_empty_task", {}).get("peak_rss_mb")
    for name in ("mysql_operator_p1", "mysql_operator_p2"):
        if name in out and empty is not None:
            out[name]["rss_over_empty_task_mb"] = round(out[name]["peak_rss_mb"] - empty, 1)
    return out


def targets(methods: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, bound, target in TARGETS:
        if name in methods and bound in methods:
            ratio = methods[bound]["seconds"] / methods[name]["seconds"]
            engine = methods[name].get("engine_seconds")
            rows.append({"method": name, "bound": bound, "ratio": round(ratio, 3), "target": target,
                         "met": None if target is None else ratio >= target,
                         "engine_ratio": round(methods[bound]["seconds"] / engine, 3) if engine else None})  # fmt: skip
    gt, pipe = methods.get("mysql_generic_transfer"), methods.get("mysql_operator_p1")
    if gt and pipe:
        speedup = gt["seconds"] and (pipe["rows_per_second"] / max(gt["rows_per_second"], 1))
        rows.append({"method": "mysql_operator_p1", "bound": "mysql_generic_transfer (rows/s)",
                     "ratio": round(speedup, 1), "target": 10, "met": speedup >= 10})  # fmt: skip
    p1 = methods.get("mysql_operator_p1", {})
    if "rss_over_empty_task_mb" in p1:
        rows.append({"method": "mysql_operator_p1", "bound": "peak RSS over the empty task (MB)",
                     "ratio": p1["rss_over_empty_task_mb"], "target": 300, "met": p1["rss_over_empty_task_mb"] <= 300})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated methods")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--cap", type=float, default=60.0, help="seconds GenericTransfer may run")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--base-url", default=os.environ.get("ETL_BENCH_POSTGRES_URL", db.DEFAULT_URL))
    parser.add_argument(
        "--mysql-url", default=os.environ.get("ETL_BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/")
    )
    parser.add_argument("--export-dir", default=str(DATA_DIR / "exports"))
    parser.add_argument("--scale", default="", help="two row counts: MariaDB task memory at both sizes")
    opts = parser.parse_args(argv)
    opts.methods = tuple(m for m in (opts.only.split(",") if opts.only else METHOD_ORDER) if m)
    if opts.scale:
        return scale_check(opts)
    doc = run(opts)
    print_summary(doc)
    write(doc)
    return 0


def scale_check(opts: argparse.Namespace) -> int:
    """The MariaDB task's peak RSS and time per row at two sizes: memory must not grow with rows."""
    sizes = [int(s) for s in opts.scale.split(",")]
    docs = []
    for rows in sizes:
        opts.rows = rows
        opts.methods = ("mysql_pipe", "mysql_operator_p1", "mysql_empty_task")
        docs.append(run(opts))
    small, large = (d["methods"] for d in docs)
    ratio = large["mysql_operator_p1"]["peak_rss_mb"] / small["mysql_operator_p1"]["peak_rss_mb"]
    say(f"peak RSS {sizes[1]:,} / {sizes[0]:,} rows: {ratio:.3f} (flat: <= 1.1)")
    write({"kind": "sources-scale", "sizes": sizes, "runs": docs, "rss_ratio": ratio})
    return 0


def print_summary(doc: dict[str, Any]) -> None:
    say(f"\n{'method':<24} {'median s':>9} {'rows/s':>11} {'peak RSS MB':>12}  status")
    for name, m in doc["methods"].items():
        say(
            f"{name:<24} {m['seconds']:>9.2f} {m['rows_per_second']:>11,.0f} {m['peak_rss_mb']:>12.0f}  {', '.join(m['status'])}"
        )
    for t in doc["targets"]:
        verdict = "" if t["met"] is None else ("PASS" if t["met"] else "FAIL")
        engine = f", engine only {t['engine_ratio']}" if t.get("engine_ratio") else ""
        say(f"{t['method']} vs {t['bound']}: {t['ratio']} (target {t['target']}) {verdict}{engine}")


def write(doc: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = (
        RESULTS_DIR
        / f"{doc['kind']}-{doc.get('timestamp', datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ'))}.json"
    )
    path.write_text(json.dumps(doc, indent=1, default=str))
    say(f"results: {path}")
    return path


if __name__ == "__main__":
    sys.exit(main())
