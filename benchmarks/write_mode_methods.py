"""The write-modes benchmark's methods, one per fresh child process (benchmarks.write_modes runs them):

    python -m benchmarks.write_mode_methods <name> '<json-args>'

Baselines: the psql binary COPY pipe of the whole source table (benchmarks.methods.psql_pipe) and of
the incremental window's rows only. The operator: StreamingTransferOperator in each write mode at
parallelism 1, and on an empty source (the floor for memory and for process start-up).

Arguments: src_conn_id, dst_conn_id, schema, source_table, empty_source_table, destination_table,
chunk_rows, incremental_column, window_start, window_end, run_id, result_path, started_path. URLs
travel in the environment (ETL_BENCH_SRC_URL, ETL_BENCH_DST_URL), never on a command line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from benchmarks.methods import _psql_target, _qualified, _url, psql_pipe, run_child, run_pipe
from benchmarks.source_methods import _operator

Args = dict[str, Any]
Result = dict[str, Any]
PSQL = ["psql", "-X", "-v", "ON_ERROR_STOP=1"]


def _window_select(args: Args) -> str:
    """SELECT * of the source rows in [window_start, window_end), as one line for psql's \\copy."""
    from psycopg import sql

    col = sql.Identifier(args["incremental_column"])
    query = sql.SQL("SELECT * FROM {} WHERE {} >= {} AND {} < {}").format(
        sql.Identifier(args["schema"], args["source_table"]),
        col,
        sql.Literal(args["window_start"]),
        col,
        sql.Literal(args["window_end"]),
    )
    return query.as_string()


def pipe_window(args: Args) -> Result:
    """psql \\copy (SELECT ... WHERE window) TO STDOUT (binary) | psql \\copy FROM STDIN (binary):
    the bound for delete_insert, which has to move only the window's rows."""
    src, src_env = _psql_target(_url("src"))
    dst, dst_env = _psql_target(_url("dst"))
    dest = _qualified(args, "destination_table")
    return run_pipe(
        [*PSQL, "-d", src, "-c", f"\\copy ({_window_select(args)}) TO STDOUT (FORMAT binary)"],
        src_env,
        [*PSQL, "-d", dst, "-c", f"\\copy {dest} FROM STDIN (FORMAT binary)"],
        dst_env,
        args,
    )


def _lock_timeout(args: Args) -> str | None:
    """The operator's default lock_timeout, when this version of the operator has one.

    A second, unexecuted operator: constructing one costs microseconds and touches no database.
    """
    from etl_platform.operators.transfer import StreamingTransferOperator

    probe = StreamingTransferOperator(
        task_id="lock_timeout_probe",
        source_conn_id=args["src_conn_id"],
        destination_conn_id=args["dst_conn_id"],
        source_table=f"{args['schema']}.{args['source_table']}",
        destination_table=f"{args['schema']}.{args['destination_table']}",
    )
    value = getattr(probe, "lock_timeout", None)
    return None if value is None else str(value)


def _write_mode(
    args: Args, task_id: str, write_mode: str, source_key: str = "source_table", **extra: Any
) -> Result:
    """The whole operator in one write mode at parallelism 1 (source_methods._operator times execute())."""
    result = _operator(
        args,
        task_id,
        source_conn_id=args["src_conn_id"],
        destination_conn_id=args["dst_conn_id"],
        source_table=f"{args['schema']}.{args[source_key]}",
        destination_table=f"{args['schema']}.{args['destination_table']}",
        write_mode=write_mode,
        parallelism=1,
        **extra,
    )
    summary = result["summary"]
    # Fields another change is adding to the summary: absent from older operator code.
    result["strategy"] = summary.get("strategy")
    result["strategy_note"] = summary.get("strategy_note")
    result["operator_lock_timeout"] = _lock_timeout(args)
    return result


def operator_append(args: Args) -> Result:
    """write_mode="append" into the empty destination."""
    return _write_mode(args, "wm_append", "append")


def operator_truncate(args: Args) -> Result:
    """write_mode="truncate": a full refresh of a destination that holds N older rows."""
    return _write_mode(args, "wm_truncate", "truncate")


def operator_delete_insert(args: Args) -> Result:
    """write_mode="delete_insert" of the incremental window (a fifth of the rows)."""
    return _write_mode(
        args,
        "wm_delete_insert",
        "delete_insert",
        incremental_column=args["incremental_column"],
        window_start=args["window_start"],
        window_end=args["window_end"],
    )


def operator_upsert(args: Args) -> Result:
    """write_mode="upsert" of N rows into a destination holding every other key."""
    return _write_mode(args, "wm_upsert", "upsert")


def empty_task(args: Args) -> Result:
    """append from an empty source: what a task costs before it moves a row (start-up, memory)."""
    return _write_mode(args, "wm_empty_task", "append", source_key="empty_source_table")


METHODS: dict[str, Callable[[Args], Result]] = {
    "pipe": psql_pipe,
    **{
        f.__name__: f
        for f in (
            pipe_window,
            operator_append,
            operator_truncate,
            operator_delete_insert,
            operator_upsert,
            empty_task,
        )
    },
}


def main(argv: list[str]) -> int:
    return run_child(argv, METHODS, "benchmarks.write_mode_methods")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
