"""Benchmarked methods for sources beyond PostgreSQL, one per fresh child process:

    python -m benchmarks.source_methods <name> '<json-args>'

MariaDB -> PostgreSQL: the `mariadb --batch --quick | psql \\copy` pipe (the speed bound), the
operator at parallelism 1 and 2, GenericTransfer, dlt's sql_database (in its own venv) and the
operator on an empty table (the memory floor). Files: the psql binary COPY pipe between two
PostgreSQL tables (the Parquet load's bound), 4 Parquet files -> PostgreSQL, `COPY ... TO STDOUT`
into a file (the export's bound) and PostgreSQL -> Parquet.

Arguments: table names, paths, conn ids and run_id in the JSON; URLs with passwords in the
environment (ETL_BENCH_MYSQL_URL, ETL_BENCH_SRC_URL, ETL_BENCH_DST_URL), never on a command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from benchmarks.methods import _context, _mark_started, _psql_target, _rss_now_mb, run_child, run_pipe

Args = dict[str, Any]
Result = dict[str, Any]
REPO_ROOT = Path(__file__).resolve().parent.parent
DLT_PYTHON = REPO_ROOT / ".venv-bench-dlt" / "bin" / "python"


def _mysql_cli_args(url: str) -> tuple[list[str], dict[str, str]]:
    """mariadb client arguments for `url`; the password travels in MYSQL_PWD, not on the command line."""
    parts = urlsplit(url)
    args = [
        "-h",
        parts.hostname or "127.0.0.1",
        "-P",
        str(parts.port or 3306),
        "-u",
        unquote(parts.username or "root"),
    ]
    env = {"MYSQL_PWD": unquote(parts.password)} if parts.password else {}
    return args, env


def _psql(url_env: str, command: str) -> tuple[list[str], dict[str, str]]:
    target, env = _psql_target(os.environ[url_env])
    return ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", target, "-c", command], env


def _operator(args: Args, task_id: str, **kwargs: Any) -> Result:
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability.metrics import stats_utils
    from airflow.sdk.observability.stats import initialize

    from etl_platform.operators.transfer import StreamingTransferOperator

    initialize(  # what the task runner does at start-up: the StatsD client from [metrics] config
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )
    operator = StreamingTransferOperator(task_id=task_id, chunk_rows=int(args["chunk_rows"]), **kwargs)
    rss_before = _rss_now_mb()
    t0 = _mark_started(args)
    summary = operator.execute(_context(task_id, args["run_id"]))  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rss_before_work_mb": round(rss_before, 1),
        "rows_reported": summary["rows"],
        "summary": summary,
    }


# -- MariaDB -> PostgreSQL ----------------------------------------------------------------------------


def mysql_pipe(args: Args) -> Result:
    """mariadb --batch --quick -e 'SELECT ...' | psql -c '\\copy ... FROM STDIN' (text; the speed bound)."""
    cli, env = _mysql_cli_args(os.environ["ETL_BENCH_MYSQL_URL"])
    reader = [
        "mariadb", *cli, "--batch", "--quick", "--skip-column-names", "--default-character-set=utf8mb4",
        args["mysql_database"], "-e", f"SELECT * FROM `{args['mysql_table']}`",
    ]  # fmt: skip
    writer, wenv = _psql("ETL_BENCH_DST_URL", f"\\copy {args['pg_table']} FROM STDIN (NULL 'NULL')")
    return run_pipe(reader, env, writer, wenv, args)


def _mysql_operator(args: Args, task_id: str, parallelism: int, table: str) -> Result:
    return _operator(
        args,
        task_id,
        source_conn_id=args["mysql_conn_id"],
        destination_conn_id=args["dst_conn_id"],
        source_table=f"{args['mysql_database']}.{table}",
        destination_table=args["pg_table"],
        parallelism=parallelism,
    )


def mysql_operator_p1(args: Args) -> Result:
    return _mysql_operator(args, "mysql_operator_p1", 1, args["mysql_table"])


def mysql_operator_p2(args: Args) -> Result:
    return _mysql_operator(args, "mysql_operator_p2", 2, args["mysql_table"])


def mysql_empty_task(args: Args) -> Result:
    """The operator on an empty MariaDB table: the memory floor of a MariaDB task."""
    return _mysql_operator(args, "mysql_empty_task", 1, args["mysql_empty_table"])


def mysql_generic_transfer(args: Args) -> Result:
    """Airflow's GenericTransfer, MySQL -> PostgreSQL, defaults (capped by the parent)."""
    from airflow.providers.common.sql.operators.generic_transfer import GenericTransfer

    operator = GenericTransfer(
        task_id="mysql_generic_transfer",
        sql=f"SELECT * FROM `{args['mysql_database']}`.`{args['mysql_table']}`",
        destination_table=args["pg_table"],
        source_conn_id=args["mysql_conn_id"],
        destination_conn_id=args["dst_conn_id"],
    )
    t0 = _mark_started(args)
    operator.execute(_context("mysql_generic_transfer", args["run_id"]))  # type: ignore[arg-type]
    return {"seconds": time.perf_counter() - t0}


def mysql_dlt(args: Args) -> Result:
    """dlt's sql_database source (pyarrow backend) into its postgres destination, in .venv-bench-dlt."""
    if not DLT_PYTHON.exists():
        raise RuntimeError(
            f"{DLT_PYTHON} is missing: `make bench` builds it from requirements/bench-dlt.lock"
        )
    _mark_started(args)
    run = subprocess.run(
        [str(DLT_PYTHON), str(REPO_ROOT / "benchmarks" / "dlt_load.py"), json.dumps(args)],
        capture_output=True, text=True, check=False, env=os.environ,
    )  # fmt: skip
    if run.returncode != 0:
        raise RuntimeError(f"dlt failed: {run.stderr[-2000:]}")
    result: Result = json.loads(run.stdout.strip().splitlines()[-1])
    return result


# -- files ----------------------------------------------------------------------------------------------


def pg_binary_pipe(args: Args) -> Result:
    """psql binary COPY between two PostgreSQL tables: the bound for loading the same rows from Parquet."""
    reader, renv = _psql("ETL_BENCH_SRC_URL", f"\\copy {args['pg_source_table']} TO STDOUT (FORMAT binary)")
    writer, wenv = _psql("ETL_BENCH_DST_URL", f"\\copy {args['pg_table']} FROM STDIN (FORMAT binary)")
    return run_pipe(reader, renv, writer, wenv, args)


def _parquet(args: Args, task_id: str, parallelism: int) -> Result:
    """4 local Parquet files -> PostgreSQL through the operator."""
    return _operator(
        args,
        task_id,
        source_path=args["parquet_glob"],
        destination_conn_id=args["dst_conn_id"],
        destination_table=args["pg_table"],
        parallelism=parallelism,
    )


def parquet_operator(args: Args) -> Result:
    """The files one after the other (parallelism 1)."""
    return _parquet(args, "parquet_operator", 1)


def parquet_operator_p2(args: Args) -> Result:
    """Two files at a time (parallelism 2)."""
    return _parquet(args, "parquet_operator_p2", 2)


def copy_to_file(args: Args) -> Result:
    """psql \\copy (SELECT ...) TO STDOUT into a local file: the bound for an export."""
    command, env = _psql("ETL_BENCH_SRC_URL", f"\\copy {args['pg_source_table']} TO STDOUT")
    out = Path(args["export_dir"]) / "copy.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = _mark_started(args)
    with out.open("wb") as fh:
        subprocess.run(command, stdout=fh, env={**os.environ, **env}, check=True)
    return {"seconds": time.perf_counter() - t0, "bytes": out.stat().st_size}


def export_operator(args: Args) -> Result:
    """PostgreSQL -> Parquet files through the operator."""
    return _operator(
        args,
        "export_operator",
        source_conn_id=args["src_conn_id"],
        source_table=args["pg_source_table"],
        destination_path=str(Path(args["export_dir"]) / args["run_id"]),
        destination_format="parquet",
        rows_per_file=int(args["rows_per_file"]),
    )


METHODS: dict[str, Callable[[Args], Result]] = {
    f.__name__: f
    for f in (
        mysql_pipe,
        mysql_operator_p1,
        mysql_operator_p2,
        mysql_empty_task,
        mysql_generic_transfer,
        mysql_dlt,
        pg_binary_pipe,
        parquet_operator,
        parquet_operator_p2,
        copy_to_file,
        export_operator,
    )
}


def main(argv: list[str]) -> int:
    return run_child(argv, METHODS, "benchmarks.source_methods")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
