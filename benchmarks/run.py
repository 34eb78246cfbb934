"""Transfer benchmark: psql pipe vs GenericTransfer vs LIMIT/OFFSET pandas vs StreamingTransferOperator.

    make bench                                   # every method, 2,000,000 rows
    make bench BENCH_ARGS="--rows 500000 --skip generic_transfer_paged"
    make bench BENCH_ARGS="--rows 10000000 --only streaming_p1,streaming_transform,empty_task"
    make bench BENCH_ARGS="--scale-check 2000000,10000000"
    python benchmarks/run.py --only psql_pipe,streaming_p1,empty_task,streaming_p1_base,empty_task_base \
        --base-provider /tmp/old/provider     # before/after: another checkout's provider, same rounds

Every method runs in its own fresh child process on the same generated source table, after its
destination table is truncated and the destination server checkpointed. The fast methods run in
--repeat rounds (default 3, interleaved) and report their median time; the slow, capped baselines
run once. Each operator method is timed twice: by its own clock (execute(), what `seconds` and
ratio_to_copy_pipe use) and end to end (the child's spawn-to-exit minus the same round's empty
task's: what a user waits for the rows beyond what any task costs; ratio_end_to_end), with the
child's wall time split into phases (startup, imports, work, result, exit). Results are printed and written to benchmarks/results/transfer-<timestamp>.json and
benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script without PYTHONPATH: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import compare_scale, db, measure
from benchmarks.methods import BASE_SUFFIX, METHODS, MethodInfo

RESULTS_DIR = measure.REPO_ROOT / "benchmarks" / "results"
PROVIDER_DIR = measure.REPO_ROOT / "provider" / "etl_platform"
DEFAULT_ROWS = 2_000_000
SCALE_METHODS = (
    "psql_pipe",
    "streaming_p1",
    "streaming_transform",
    "empty_task",
)  # the pipe: what the server does
# What an operator child imports before its work starts (compiled once before the rounds).
WARM_MODULES = (
    "benchmarks.methods",
    "airflow.sdk.configuration",
    "airflow.sdk.observability.stats",
    "airflow.sdk.execution_time.supervisor",
    "etl_platform.operators.transfer",
)
SRC_CONN_ID = "etl_bench_src"
DST_CONN_ID = "etl_bench_dst"
OPERATOR_APP_NAME = "etl-platform"  # EtlPostgresHook's application_name


@dataclass(frozen=True)
class Options:
    base_url: str
    src_db: str
    dst_db: str
    rows: int
    methods: tuple[str, ...]
    cap: float
    timeout: float
    repeat: int
    regenerate: bool
    chunk_rows: int
    page_size: int
    pandas_chunk_rows: int
    results_dir: Path
    base_provider: Path | None = None  # the *_base methods import the provider from here

    @property
    def src_url(self) -> str:
        return db.db_url(self.base_url, self.src_db)

    @property
    def dst_url(self) -> str:
        return db.db_url(self.base_url, self.dst_db)


# -- command line -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env_rows = os.environ.get("ETL_BENCH_ROWS")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=int(env_rows) if env_rows else DEFAULT_ROWS)
    parser.add_argument("--only", help=f"comma-separated methods to run, from: {', '.join(METHODS)}")
    parser.add_argument("--skip", help="comma-separated methods to leave out")
    parser.add_argument(
        "--cap", type=float, default=300.0, help="seconds of work before a slow baseline is cut off"
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="safety limit for uncapped methods")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds over the uncapped methods (capped baselines run once); median seconds reported",
    )
    parser.add_argument(
        "--regenerate", action="store_true", help="regenerate the source table even if it fits"
    )
    parser.add_argument(
        "--chunk-rows", type=int, default=100_000, help="StreamingTransferOperator chunk_rows"
    )
    parser.add_argument("--page-size", type=int, default=5_000, help="generic_transfer_paged page_size")
    parser.add_argument(
        "--pandas-chunk-rows", type=int, default=100_000, help="limit_offset_pandas page rows"
    )
    parser.add_argument(
        "--scale-check",
        metavar="N1,N2",
        help=f"run at each row count (default methods: {', '.join(SCALE_METHODS)}) and compare them",
    )
    parser.add_argument("--src-db", default="bench_src")
    parser.add_argument("--dst-db", default="bench_dst")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--base-provider",
        type=Path,
        help="directory holding another checkout's etl_platform package: the *_base methods run it, "
        "interleaved with the current code (before/after comparisons)",
    )
    parser.add_argument("--list", action="store_true", help="list the methods and exit")
    return parser.parse_args(argv)


def select_methods(only: str | None, skip: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    def names(text: str | None) -> list[str]:
        picked = [n.strip() for n in (text or "").split(",") if n.strip()]
        unknown = [n for n in picked if n not in METHODS]
        if unknown:
            raise SystemExit(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
        return picked

    chosen = names(only) or [n for n in default if not n.endswith(BASE_SUFFIX)]
    skipped = set(names(skip))
    return tuple(m for m in METHODS if m in chosen and m not in skipped)  # catalogue order


def operator_env(results_dir: Path, src_url: str, dst_url: str, statsd_port: int) -> dict[str, str]:
    """The environment of an operator child: its Airflow home, both connections, StatsD to the sink."""
    return measure.child_env(
        {
            "AIRFLOW_HOME": str(results_dir / ".airflow_home"),
            f"AIRFLOW_CONN_{SRC_CONN_ID.upper()}": src_url,
            f"AIRFLOW_CONN_{DST_CONN_ID.upper()}": dst_url,
            "ETL_BENCH_SRC_URL": src_url,
            "ETL_BENCH_DST_URL": dst_url,
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(statsd_port),
            "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        }
    )


# -- one benchmark run ------------------------------------------------------------------------------


def run_benchmark(opts: Options) -> dict[str, Any]:
    """Prepares the data, runs every selected method `repeat` times, returns the results document."""
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    say(f"== transfer benchmark {stamp}: {opts.rows:,} rows, methods: {', '.join(opts.methods)}")
    for name in (opts.src_db, opts.dst_db):
        if db.ensure_database(opts.base_url, name):
            say(f"   created database {name}")
    shape = db.expected_orders_columns(opts.base_url)
    t0 = time.perf_counter()
    source = db.prepare_source(opts.src_url, opts.rows, shape, regenerate=opts.regenerate)
    say(
        f"   source {opts.src_db}.{db.SOURCE_TABLE}: {source.rows:,} rows "
        + (f"(generated in {source.generate_seconds:.0f} s)" if source.regenerated else "(reused)")
        + f", prepared in {time.perf_counter() - t0:.0f} s"
    )
    db.prepare_destination(opts.dst_url, shape)

    log_dir = opts.results_dir / "logs" / stamp
    sink = measure.StatsdSink()
    env = operator_env(opts.results_dir, opts.src_url, opts.dst_url, sink.port)
    warm = measure.warm_bytecode(env, WARM_MODULES)
    if opts.base_provider is not None and any(m.endswith(BASE_SUFFIX) for m in opts.methods):
        base_env = {**env, "PYTHONPATH": os.pathsep.join([str(opts.base_provider), env["PYTHONPATH"]])}
        warm += measure.warm_bytecode(base_env, WARM_MODULES)
    say(f"   bytecode cache {measure.BYTECODE_DIR.relative_to(measure.REPO_ROOT)} warm ({warm:.1f} s)")
    watcher = db.ForeignSessionWatcher(opts.base_url, [opts.src_db, opts.dst_db])
    runs: list[dict[str, Any]] = []
    try:
        for round_no in range(1, opts.repeat + 1):
            for name in opts.methods:
                if round_no > 1 and METHODS[name].capped:
                    continue  # the minutes-long baselines run once; repeats are for the close races
                runs.append(run_one(METHODS[name], round_no, opts, source, env, sink, watcher, log_dir))
    finally:
        sink.close()
        watcher.close()

    methods = aggregate(runs, opts)
    provider_hashes = sorted({r["provider_hash"] for r in runs if r["provider_hash"]})
    code_changed = provider_code_changed(runs)
    if code_changed:
        loud(
            "!!! the operator's code changed while the benchmark ran: compare the streaming methods with "
            "care; each run records its provider_hash"
        )
    doc = {
        "kind": "transfer-benchmark",
        "timestamp": stamp,
        "rows": opts.rows,
        "options": {
            "methods": list(opts.methods),
            "cap_seconds": opts.cap,
            "timeout_seconds": opts.timeout,
            "repeat": opts.repeat,
            "chunk_rows": opts.chunk_rows,
            "page_size": opts.page_size,
            "pandas_chunk_rows": opts.pandas_chunk_rows,
            "src_db": opts.src_db,
            "dst_db": opts.dst_db,
            "base_provider": str(opts.base_provider) if opts.base_provider else None,
        },
        "source": {
            "table": f"{opts.src_db}.{db.SCHEMA}.{db.SOURCE_TABLE}",
            "rows": source.rows,
            "regenerated": source.regenerated,
            "generate_seconds": source.generate_seconds,
        },
        "environment": environment(opts),
        "provider_hashes": provider_hashes,
        "provider_code_changed": code_changed,
        "methods": methods,
        "targets": evaluate_targets(methods),
        "runs": runs,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return doc


def run_one(
    info: MethodInfo,
    round_no: int,
    opts: Options,
    source: db.SourceState,
    env: dict[str, str],
    sink: measure.StatsdSink,
    watcher: db.ForeignSessionWatcher,
    log_dir: Path,
) -> dict[str, Any]:
    """Resets the destination, runs the method's child, checks the destination row count."""
    name = info.name
    app_name = f"etl-bench-{name}"
    watcher.start([app_name, OPERATOR_APP_NAME])
    db.reset_destination(opts.dst_url, info.destination_table)
    load_before = os.getloadavg()
    cap = opts.cap if info.capped else None
    say(f"-- {name} (round {round_no}){f', cap {cap:.0f} s' if cap else ''} ...", end="")
    args = {
        "src_conn_id": SRC_CONN_ID,
        "dst_conn_id": DST_CONN_ID,
        "schema": db.SCHEMA,
        "source_table": info.source_table,
        "destination_table": info.destination_table,
        "run_id": f"bench-{uuid.uuid4()}",
        "chunk_rows": opts.chunk_rows,
        "page_size": opts.page_size,
        "pandas_chunk_rows": opts.pandas_chunk_rows,
    }
    provider = provider_fingerprint()
    sink.window()
    child_env = {**env, "PGAPPNAME": app_name}
    if name.endswith(BASE_SUFFIX):
        assert opts.base_provider is not None, "the *_base methods need --base-provider"
        child_env["PYTHONPATH"] = os.pathsep.join([str(opts.base_provider), env["PYTHONPATH"]])
    outcome = measure.run_method(
        name,
        args,
        env=child_env,
        log_path=log_dir / f"{name}-r{round_no}.log",
        cap_seconds=cap,
        timed_out_after=opts.timeout,
        watch=watcher,
    )
    statsd = sink.take()
    watcher()
    foreign = watcher.take()
    leftovers = 0
    if not outcome.ok or outcome.capped or outcome.timed_out:
        leftovers = db.terminate_leftover_sessions(
            opts.base_url, [opts.src_db, opts.dst_db], [app_name, OPERATOR_APP_NAME]
        )
    with db.connect(opts.dst_url) as conn:
        in_destination = db.count_rows(conn, info.destination_table)
    if info.source_table == db.EMPTY_SOURCE_TABLE:
        expected = 0
    elif info.transform:
        expected = source.non_null_customer_rows  # the transforms drop rows without customer_id
    else:
        expected = source.rows

    result = outcome.result
    if outcome.capped:
        status = "capped"
    elif outcome.timed_out:
        status = "timed out"
    elif not outcome.ok:
        status = "error"
    elif in_destination != expected:
        status = "MISMATCH"
    else:
        status = "ok"
    seconds = outcome.work_seconds
    peak_rss = result.get("peak_rss_mb_override", outcome.peak_rss_mb)
    run = {
        "method": name,
        "round": round_no,
        "status": status,
        "seconds": round(seconds, 3) if seconds is not None else None,
        "spawn_to_exit_seconds": outcome.spawn_to_exit_seconds,
        "phases": outcome.phases,
        "rows_expected": expected,
        "rows_in_destination": in_destination,
        "rows_checked": status == "ok",
        "rows_per_second": round(in_destination / seconds, 1) if seconds else None,
        "peak_rss_mb": round(peak_rss, 1),
        "child_process_peak_rss_mb": outcome.peak_rss_mb,
        "user_cpu_seconds": outcome.user_cpu_seconds,
        "system_cpu_seconds": outcome.system_cpu_seconds,
        "returncode": outcome.returncode,
        "loadavg_before": [round(x, 2) for x in load_before],
        "statsd": statsd,
        "leftover_sessions_ended": leftovers,
        "foreign_sessions": foreign,
        "provider_tree_hash": provider,
        "provider_hash": result.get("provider_modules_hash"),
        "child": result,
        "log": str(Path(outcome.log_path).relative_to(measure.REPO_ROOT))
        if Path(outcome.log_path).is_relative_to(measure.REPO_ROOT)
        else outcome.log_path,
    }
    if info.streaming:
        run["metrics_rows"] = statsd["counters"].get("airflow.etl.transfer.rows", 0.0)
    say(
        f" {status}: {fmt_num(seconds, 1)} s, {in_destination:,} rows, peak RSS {peak_rss:.0f} MB"
        + (f"  [{result.get('error')}]" if "error" in result else "")
    )
    if foreign:
        loud(
            f"!!! {len(foreign)} foreign session(s) used {opts.src_db}/{opts.dst_db} during {name}: its "
            f"timing and row count may be disturbed: {foreign}"
        )
    if status == "MISMATCH":
        loud(
            f"!!! ROW COUNT MISMATCH for {name}: destination has {in_destination:,} rows, "
            f"expected {expected:,} (log: {run['log']})"
        )
    elif status in ("error", "timed out"):
        loud(f"!!! {name} {status} (exit {outcome.returncode}); see {run['log']}")
    return run


def aggregate(runs: list[dict[str, Any]], opts: Options) -> dict[str, dict[str, Any]]:
    """One row per method: median seconds over its rounds, max peak RSS, ratios and RSS over empty."""
    out: dict[str, dict[str, Any]] = {}
    for name in opts.methods:
        mine = [r for r in runs if r["method"] == name]
        timed = [r["seconds"] for r in mine if r["seconds"] is not None]
        worst = next((r["status"] for r in mine if r["status"] != "ok"), "ok")
        seconds = statistics.median(timed) if timed else None
        rows = mine[-1]["rows_in_destination"]
        entry: dict[str, Any] = {
            "description": METHODS[name].description,
            "status": worst,
            "seconds": round(seconds, 3) if seconds is not None else None,
            "seconds_all": timed,
            "rows": rows,
            "rows_expected": mine[-1]["rows_expected"],
            "rows_checked": all(r["rows_checked"] for r in mine),
            "foreign_sessions": sum(len(r["foreign_sessions"]) for r in mine),
            "rows_per_second": round(rows / seconds, 1) if seconds else None,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
            "rss_over_empty_mb": None,
            "ratio_to_copy_pipe": None,
            "spawn_to_exit_seconds": _median(
                [r["spawn_to_exit_seconds"] for r in mine if r["status"] == "ok"]
            ),
            "phases": {
                phase: _median([r["phases"][phase] for r in mine if phase in r.get("phases", {})])
                for phase, _, _ in measure.PHASES
                if any(phase in r.get("phases", {}) for r in mine)
            },
            "end_to_end_seconds": None,
            "ratio_end_to_end": None,
        }
        summaries = [r["child"].get("summary") for r in mine if r["child"].get("summary")]
        if summaries:
            entry["summary_seconds"] = statistics.median(s["seconds"] for s in summaries)
            entry["summary_peak_rss_mb"] = max(s["peak_rss_mb"] for s in summaries)
            entry["copy_format"] = summaries[-1]["copy_format"]
            entry["metrics_rows"] = mine[-1].get("metrics_rows")
        out[name] = entry

    pipe = out.get("psql_pipe")
    for name, entry in out.items():
        info = METHODS[name]
        empty = out.get(_empty_for(name))
        if pipe and pipe["status"] == "ok" and name != "psql_pipe" and entry["rows"] and entry["seconds"]:
            # Throughput ratio, so a capped method's partial run compares fairly (an upper bound for
            # LIMIT/OFFSET paging, which only gets slower page after page).
            entry["ratio_to_copy_pipe"] = round(
                (entry["rows"] / entry["seconds"]) / (pipe["rows"] / pipe["seconds"]), 3
            )
        elif pipe and name != "psql_pipe" and entry["status"] == "capped":
            entry["ratio_to_copy_pipe"] = 0.0
        if info.streaming and name != _empty_for(name) and empty and empty["status"] == "ok":
            entry["rss_over_empty_mb"] = round(entry["peak_rss_mb"] - empty["peak_rss_mb"], 1)
            entry["end_to_end_seconds"] = end_to_end(runs, name)
            if pipe and pipe["status"] == "ok" and entry["end_to_end_seconds"] and entry["rows"]:
                entry["ratio_end_to_end"] = round(
                    (entry["rows"] / entry["end_to_end_seconds"]) / (pipe["rows"] / pipe["seconds"]), 3
                )
    if "streaming_p1_lineage" in out and "streaming_p1" in out:
        out["streaming_p1_lineage"]["ratio_to_streaming_p1"] = paired_ratio(
            runs, "streaming_p1_lineage", "streaming_p1"
        )
        out["streaming_p1_lineage"]["lineage_seconds"] = _median(
            [r["child"]["lineage_seconds"] for r in runs if r["child"].get("lineage_seconds") is not None]
        )
    return out


def paired_ratio(runs: list[dict[str, Any]], name: str, plain: str) -> float | None:
    """Median over rounds of name's seconds / plain's in the same round (OpenLineage on vs off)."""
    times = {(r["method"], r["round"]): r["seconds"] for r in runs if r["status"] == "ok" and r["seconds"]}
    ratios = [
        times[(name, n)] / times[(plain, n)]
        for (method, n) in times
        if method == name and (plain, n) in times
    ]
    return round(statistics.median(ratios), 3) if ratios else None


def end_to_end(runs: list[dict[str, Any]], name: str) -> float | None:
    """Median over rounds of (the method's spawn-to-exit - the same round's empty task's): the time
    a user waits for the rows, without what any task costs before it moves one."""
    empty = {
        r["round"]: r["spawn_to_exit_seconds"]
        for r in runs
        if r["method"] == _empty_for(name) and r["status"] == "ok"
    }
    diffs = [
        r["spawn_to_exit_seconds"] - empty[r["round"]]
        for r in runs
        if r["method"] == name and r["status"] == "ok" and r["round"] in empty
    ]
    return round(statistics.median(diffs), 3) if diffs else None


def _empty_for(name: str) -> str:
    """The empty task a method's end-to-end time subtracts: the one running the same code."""
    return "empty_task" + (BASE_SUFFIX if name.endswith(BASE_SUFFIX) else "")


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


# -- targets ----------------------------------------------------------------------------------------


def evaluate_targets(methods: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The performance targets, each PASS / FAIL / n/a; never raised on."""

    def value(method: str, key: str) -> Any:
        entry = methods.get(method)
        if entry is None or entry["status"] != "ok":
            return None
        return entry.get(key)

    targets: list[dict[str, Any]] = []

    def check(label: str, measured: Any, limit: float | None, ok: bool | None, detail: str = "") -> None:
        status = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        targets.append(
            {"target": label, "value": measured, "limit": limit, "status": status, "detail": detail}
        )

    ratio = value("streaming_p1", "ratio_to_copy_pipe")
    check("streaming_p1 ratio_to_copy_pipe >= 1.0", ratio, 1.0, None if ratio is None else ratio >= 1.0)
    ratio = value("streaming_p1", "ratio_end_to_end")
    check(
        "streaming_p1 ratio_end_to_end >= 1.0 (spawn-to-exit minus the empty task's)",
        ratio,
        1.0,
        None if ratio is None else ratio >= 1.0,
    )
    p1 = value("streaming_p1", "seconds")
    for name in ("streaming_p2", "streaming_p4"):
        secs = value(name, "seconds")
        limit = round(1.1 * p1, 3) if p1 else None
        ok = None if secs is None or limit is None else secs <= limit
        check(f"{name} seconds <= 1.1 x streaming_p1", secs, limit, ok)
    ratio = value("streaming_transform", "ratio_to_copy_pipe")
    check(
        "streaming_transform ratio_to_copy_pipe >= 0.4", ratio, 0.4, None if ratio is None else ratio >= 0.4
    )
    for name, limit in (
        ("streaming_p1", 100.0),
        ("streaming_p2", 100.0),
        ("streaming_p4", 100.0),
        ("streaming_transform", 300.0),
    ):
        over = value(name, "rss_over_empty_mb")
        check(
            f"{name} rss_over_empty_mb <= {limit:.0f}", over, limit, None if over is None else over <= limit
        )
    return targets


# -- output -----------------------------------------------------------------------------------------


def say(text: str, end: str = "\n") -> None:
    print(text, end=end, flush=True)


def loud(text: str) -> None:
    """To stdout, and to stderr too when that is somewhere else (a log file, say)."""
    print(text, flush=True)
    out, err = os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno())
    if (out.st_dev, out.st_ino) != (err.st_dev, err.st_ino):
        print(text, file=sys.stderr, flush=True)


def fmt_num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def format_table(doc: dict[str, Any]) -> str:
    """The results table and the targets, as printed."""
    header = (
        "method",
        "status",
        "seconds",
        "min-max s",
        "engine s",
        "rows/s",
        "peak RSS MB",
        "rss_over_empty_mb",
        "ratio_to_copy_pipe",
        "e2e s",
        "e2e ratio",
        "rows checked",
    )
    rows = [header]
    for name, m in doc["methods"].items():
        if m["status"] == "ok":
            checked = f"{m['rows']:,} ok"
        elif m["status"] == "capped":
            checked = f"{m['rows']:,} done (capped)"
        elif m["status"] == "MISMATCH":
            checked = f"MISMATCH {m['rows']:,} != {m['rows_expected']:,}"
        else:
            checked = f"{m['rows']:,} ({m['status']})"
        if m["foreign_sessions"]:
            checked += f"; {m['foreign_sessions']} FOREIGN SESSION(S)"
        rows.append(
            (
                name,
                m["status"],
                fmt_num(m["seconds"], 2),
                f"{min(m['seconds_all']):.2f}-{max(m['seconds_all']):.2f}"
                if len(m["seconds_all"]) > 1
                else "",
                fmt_num(m.get("summary_seconds"), 2),
                fmt_num(m["rows_per_second"]),
                fmt_num(m["peak_rss_mb"], 1),
                fmt_num(m["rss_over_empty_mb"], 1),
                fmt_num(m["ratio_to_copy_pipe"], 3),
                fmt_num(m.get("end_to_end_seconds"), 2),
                fmt_num(m.get("ratio_end_to_end"), 3),
                checked,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for i, row in enumerate(rows):
        cells = [
            c.ljust(w) if j < 2 or j == len(header) - 1 else c.rjust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    hashes = doc.get("provider_hashes", [])
    lineage = doc["methods"].get("streaming_p1_lineage", {})
    if lineage.get("ratio_to_streaming_p1") is not None:
        lines.append("")
        lines.append(
            "OpenLineage on/off: streaming_p1_lineage / streaming_p1 seconds, median of per-round ratios: "
            f"{lineage['ratio_to_streaming_p1']:.3f} (START + facets + COMPLETE took "
            f"{fmt_num(lineage.get('lineage_seconds'), 4)} s of it)"
        )
    lines.append("")
    lines.append(
        "child wall time by phase (medians, s): spawn-to-exit = startup + imports + work + result + exit"
    )
    for name, m in doc["methods"].items():
        if m.get("phases"):
            parts = ", ".join(f"{k} {v:.3f}" for k, v in m["phases"].items() if v is not None)
            lines.append(f"  {name}: {fmt_num(m.get('spawn_to_exit_seconds'), 3)} = {parts}")
    loads = [r["loadavg_before"][0] for r in doc["runs"]]
    cores = doc["environment"]["cpu_count"] or 1
    if loads:
        busy = (
            " -- BUSY MACHINE: other work competed for the CPUs, timings are noisy"
            if max(loads) > cores
            else ""
        )
        lines.append(
            f"1-min load average before the methods: {min(loads):.2f}-{max(loads):.2f} on {cores} CPUs{busy}"
        )
    if doc.get("provider_code_changed"):
        lines.append(f"WARNING: the operator's code changed during the run: versions {hashes}")
    elif hashes:
        lines.append(f"operator code: {', '.join(hashes)} (git {str(doc['environment']['git_commit'])[:10]})")
    lines.append("targets:")
    for t in doc["targets"]:
        shown = "-" if t["value"] is None else f"{t['value']}"
        limit = "" if t["limit"] is None else f" (limit {t['limit']})"
        lines.append(f"  [{t['status']:>4}] {t['target']}: {shown}{limit}")
    return "\n".join(lines)


def write_results(doc: dict[str, Any], results_dir: Path) -> Path:
    """results/transfer-<timestamp>.json and results/latest.json."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"transfer-{doc['timestamp']}.json"
    n = 2
    while path.exists():
        path = results_dir / f"transfer-{doc['timestamp']}-{n}.json"
        n += 1
    text = json.dumps(doc, indent=2, default=str)
    path.write_text(text)
    (results_dir / "latest.json").write_text(text)
    return path


def provider_code_changed(runs: list[dict[str, Any]]) -> bool:
    """True when runs that imported the same provider modules saw different sources."""
    seen: dict[tuple[Any, ...], set[str]] = {}
    for r in runs:
        if r["provider_hash"]:
            key = (r["method"].endswith(BASE_SUFFIX), *r["child"].get("provider_modules", ()))
            seen.setdefault(key, set()).add(r["provider_hash"])
    return any(len(hashes) > 1 for hashes in seen.values())


def provider_fingerprint() -> str:
    """A hash of all the provider's Python sources as a child is about to start.

    Coarser than the child's own provider_modules_hash (which covers only the modules it imported).
    """
    digest = hashlib.sha256()
    for path in sorted(PROVIDER_DIR.rglob("*.py")):
        digest.update(str(path.relative_to(PROVIDER_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def environment(opts: Options) -> dict[str, Any]:
    versions = {}
    for dist in (
        "apache-airflow",
        "apache-airflow-providers-postgres",
        "psycopg",
        "pandas",
        "pyarrow",
        "SQLAlchemy",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        commit = subprocess.run(
            ["git", "-C", str(measure.REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(measure.REPO_ROOT), "status", "--porcelain", "--", "provider"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {
        "python": platform.python_version(),
        "bytecode_cache": str(measure.BYTECODE_DIR.relative_to(measure.REPO_ROOT)),
        "child_exit": "flush, atexit handlers, os._exit (as Airflow's task runner ends a task process)",
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "git_commit": commit,
        "provider_dirty": dirty,
        "versions": versions,
        "postgres": db.server_info(opts.base_url),
    }


# -- entry point ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    if ns.list:
        for info in METHODS.values():
            say(f"{info.name:26} {info.description}")
        return 0
    scale = [int(x) for x in ns.scale_check.split(",")] if ns.scale_check else None
    methods = select_methods(ns.only, ns.skip, SCALE_METHODS if scale else tuple(METHODS))
    if not methods:
        raise SystemExit("no methods selected")
    base = Options(
        base_url=os.environ.get("ETL_BENCH_POSTGRES_URL", db.DEFAULT_URL),
        src_db=ns.src_db,
        dst_db=ns.dst_db,
        rows=ns.rows,
        methods=methods,
        cap=ns.cap,
        timeout=ns.timeout,
        repeat=max(1, ns.repeat),
        regenerate=ns.regenerate,
        chunk_rows=ns.chunk_rows,
        page_size=ns.page_size,
        pandas_chunk_rows=ns.pandas_chunk_rows,
        results_dir=ns.results_dir,
        base_provider=ns.base_provider.resolve() if ns.base_provider else None,
    )
    if any(m.endswith(BASE_SUFFIX) for m in methods) and base.base_provider is None:
        raise SystemExit("the *_base methods need --base-provider DIR")
    docs = []
    for rows in scale or [base.rows]:
        opts = replace(base, rows=rows)
        doc = run_benchmark(opts)
        path = write_results(doc, opts.results_dir)
        say("")
        say(format_table(doc))
        say(f"\nresults: {path}")
        docs.append(doc)
    if scale and len(docs) > 1:
        by_size = sorted(docs, key=lambda d: d["rows"])
        comparison = compare_scale.compare(by_size[0], by_size[-1])
        path = compare_scale.write(comparison, base.results_dir)
        say("")
        say(compare_scale.format_report(comparison))
        say(f"\nscale check: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
