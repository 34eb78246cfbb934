"""The benchmarked transfer methods, one function each, run in a fresh child process:

    python -m benchmarks.methods <name> '<json-args>'

Each function times only its work (imports and set-up excluded), marks when that work starts (the
parent's cap counts from there) and returns a JSON-able result that main() writes to
args["result_path"]. Heavy imports live inside the functions so every child loads only what its
method needs; this module itself imports nothing beyond the standard library.

Arguments every method receives: src_conn_id, dst_conn_id (Airflow connections defined as
AIRFLOW_CONN_* in the child's environment), schema, source_table, destination_table, run_id,
result_path, started_path; plus chunk_rows, page_size, pandas_chunk_rows. The libpq URLs of the two
databases come in the environment (ETL_BENCH_SRC_URL, ETL_BENCH_DST_URL), never on the command
line, where `ps` would show a password.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, NoReturn

Args = dict[str, Any]
Result = dict[str, Any]

# Wall-clock marks of this child's life (time.time()); the parent splits spawn-to-exit at them.
MARKS: dict[str, float] = {"main": time.time()}

DAG_ID = "etl_bench"  # checkpoint ids start with it (see benchmarks.db.BENCH_DAG_ID)


# -- helpers ---------------------------------------------------------------------------------------


def _mark_started(args: Args) -> float:
    """Tells the parent the timed work starts now; returns a perf_counter origin."""
    now = time.time()
    MARKS["work_started"] = now
    with open(args["started_path"], "w") as fh:
        fh.write(repr(now))
    return time.perf_counter()


def _mark_ended() -> None:
    """The timed work ended (methods that do not call it: start + their seconds)."""
    MARKS["work_ended"] = time.time()


def _url(side: str) -> str:
    """The libpq URL of the "src" or "dst" database, from the environment."""
    return os.environ[f"ETL_BENCH_{side.upper()}_URL"]


def _psql_target(url: str) -> tuple[str, dict[str, str]]:
    """`url` without its password, plus the environment that carries the password (PGPASSWORD)."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url, {}
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username
    safe = urlunsplit((parts.scheme, f"{user}@{netloc}" if user else netloc, parts.path, parts.query, ""))
    return safe, {"PGPASSWORD": unquote(parts.password)}


def _rss_now_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _qualified(args: Args, table_key: str) -> str:
    """ "schema"."table" quoted for SQL text that is not composed by psycopg (psql, GenericTransfer)."""
    from psycopg import sql

    return sql.Identifier(args["schema"], args[table_key]).as_string()


def _loaded_provider_code() -> tuple[list[str], str | None]:
    """The etl_platform modules this process imported, and a hash of their sources (None if none).

    The provider is edited while benchmarks run; this ties a measurement to the code it ran.
    """
    import hashlib

    names = sorted(
        name
        for name, mod in list(sys.modules.items())
        if (name == "etl_platform" or name.startswith("etl_platform.")) and getattr(mod, "__file__", None)
    )
    if not names:
        return [], None
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        with open(str(sys.modules[name].__file__), "rb") as fh:
            digest.update(fh.read())
    return names, digest.hexdigest()[:12]


def _context(task_id: str, run_id: str) -> dict[str, Any]:
    """The slice of an Airflow task context the operators read: ti (dag_id, task_id, map_index), run_id,
    outlet_events."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    ti = SimpleNamespace(dag_id=DAG_ID, task_id=task_id, map_index=-1, run_id=run_id, try_number=1)
    # The task runner's accessors: the transfer's asset event is recorded as in a real task.
    return {"ti": ti, "task_instance": ti, "run_id": run_id, "outlet_events": OutletEventAccessors()}


# -- 1. the single-stream limit --------------------------------------------------------------------


def run_pipe(
    reader_cmd: list[str],
    reader_env: dict[str, str],
    writer_cmd: list[str],
    writer_env: dict[str, str],
    args: Args,
) -> Result:
    """`reader_cmd | writer_cmd`, timed from the start mark; RSS is the larger of the two processes
    (from their own wait4), not this wrapper's."""
    t0 = _mark_started(args)
    reader = subprocess.Popen(reader_cmd, stdout=subprocess.PIPE, env={**os.environ, **reader_env})
    writer = subprocess.Popen(
        writer_cmd, stdin=reader.stdout, stdout=subprocess.PIPE, env={**os.environ, **writer_env}
    )
    assert reader.stdout is not None and writer.stdout is not None
    reader.stdout.close()  # the writer holds the only read end now
    output = writer.stdout.read().decode()
    usages = {}
    codes = {}
    for name, proc in (("reader", reader), ("writer", writer)):
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = codes[name] = os.waitstatus_to_exitcode(status)
        usages[name] = usage
    seconds = time.perf_counter() - t0
    if any(codes.values()):
        raise RuntimeError(f"pipe failed: exit codes {codes}, output {output!r}")
    copied = [int(w) for line in output.splitlines() if line.startswith("COPY") for w in line.split()[1:2]]
    return {
        "seconds": seconds,
        "rows_reported": copied[0] if copied else None,
        "peak_rss_mb_override": max(u.ru_maxrss for u in usages.values()) / 1024.0,
        "rss_source": "max of the two pipe processes",
        "pipe_rss_mb": {k: round(u.ru_maxrss / 1024.0, 1) for k, u in usages.items()},
        "pipe_cpu_seconds": {k: round(u.ru_utime + u.ru_stime, 2) for k, u in usages.items()},
    }


def psql_pipe(args: Args) -> Result:
    """psql \\copy TO STDOUT (binary) piped into psql \\copy FROM STDIN (binary)."""
    table = _qualified(args, "source_table")
    dest = _qualified(args, "destination_table")
    base = ["psql", "-X", "-v", "ON_ERROR_STOP=1"]
    src, src_env = _psql_target(_url("src"))
    dst, dst_env = _psql_target(_url("dst"))
    return run_pipe(
        [*base, "-d", src, "-c", f"\\copy {table} TO STDOUT (FORMAT binary)"],
        src_env,
        [*base, "-d", dst, "-c", f"\\copy {dest} FROM STDIN (FORMAT binary)"],
        dst_env,
        args,
    )


# -- 2-3. Airflow's GenericTransfer ------------------------------------------------------------------


def _generic_transfer(args: Args, task_id: str, sql_text: str, page_size: int | None) -> Result:
    from airflow.providers.common.sql.operators.generic_transfer import GenericTransfer
    from airflow.providers.postgres.hooks import postgres as pg_hook_module

    operator = GenericTransfer(
        task_id=task_id,
        sql=sql_text,
        destination_table=_qualified(args, "destination_table"),
        source_conn_id=args["src_conn_id"],
        destination_conn_id=args["dst_conn_id"],
        page_size=page_size,
    )
    rss_before = _rss_now_mb()
    t0 = _mark_started(args)
    operator.execute(_context(task_id, args["run_id"]))  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rss_before_work_mb": round(rss_before, 1),
        "driver": "psycopg 3" if pg_hook_module.USE_PSYCOPG3 else "psycopg2",
        "sql": sql_text,
        "page_size": page_size,
    }


def generic_transfer_default(args: Args) -> Result:
    """GenericTransfer with default settings: get_records() of everything, then insert_rows()."""
    from psycopg import sql

    query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(args["schema"], args["source_table"]))
    return _generic_transfer(args, "generic_transfer_default", query.as_string(), None)


def generic_transfer_paged(args: Args) -> Result:
    """GenericTransfer with page_size: "<sql> LIMIT n OFFSET k" pages (ORDER BY id so pages are exact)."""
    from psycopg import sql

    query = sql.SQL("SELECT * FROM {} ORDER BY {}").format(
        sql.Identifier(args["schema"], args["source_table"]), sql.Identifier("id")
    )
    return _generic_transfer(args, "generic_transfer_paged", query.as_string(), int(args["page_size"]))


# -- 4. the original design: LIMIT/OFFSET pages through pandas --------------------------------------


def limit_offset_pandas(args: Args) -> Result:
    """read_sql of LIMIT/OFFSET pages, dropna + processed_at, to_sql (SQLAlchemy, default method)."""
    import pandas as pd
    import sqlalchemy
    from psycopg import sql

    chunk = int(args["pandas_chunk_rows"])
    src = sqlalchemy.create_engine(_url("src"))  # plain postgresql://: SQLAlchemy picks its default driver
    dst = sqlalchemy.create_engine(_url("dst"))
    page = sql.SQL("SELECT * FROM {} ORDER BY {} LIMIT %(limit)s OFFSET %(offset)s").format(
        sql.Identifier(args["schema"], args["source_table"]), sql.Identifier("id")
    )
    query = page.as_string()
    rows_read = rows_written = pages = 0
    rss_before = _rss_now_mb()
    t0 = _mark_started(args)
    offset = 0
    while True:
        frame = pd.read_sql(query, src, params={"limit": chunk, "offset": offset})
        got = len(frame)
        if not got:
            break
        rows_read += got
        pages += 1
        frame = frame.dropna(subset=["customer_id"])
        frame["processed_at"] = pd.Timestamp.now(tz="UTC")
        frame.to_sql(
            args["destination_table"],
            dst,
            schema=args["schema"],
            if_exists="append",
            index=False,
            chunksize=10_000,
        )
        rows_written += len(frame)
        if got < chunk:
            break  # a short page is the last one
        offset += chunk
    seconds = time.perf_counter() - t0
    src.dispose()
    dst.dispose()
    return {
        "seconds": seconds,
        "rss_before_work_mb": round(rss_before, 1),
        "rows_reported": rows_written,
        "rows_read": rows_read,
        "pages": pages,
        "driver": f"SQLAlchemy {sqlalchemy.__version__} + {dst.dialect.driver}",
        "to_sql": "method=None (executemany), chunksize=10000",
    }


# -- 5-7. StreamingTransferOperator ----------------------------------------------------------------


def _streaming(
    args: Args,
    task_id: str,
    parallelism: int,
    transform: Callable[[Any], Any] | None,
    lineage: bool = False,
) -> Result:
    """The whole operator: execute() with checkpoints, progress logging and StatsD metrics on. With
    `lineage`, what the OpenLineage listener adds around it, inside the timed window: a START event
    before execute(), the operator's facets and a COMPLETE event after, through a file transport."""
    # A task process is forked from Airflow's supervisor, which has imported the machinery that
    # execute() reaches for connections (secrets backends, supervisor comms): import it here too,
    # rather than let the operator's first connection look-up pay ~5 ms for it.
    import airflow.sdk.execution_time.supervisor  # noqa: F401
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability.metrics import stats_utils
    from airflow.sdk.observability.stats import initialize

    from etl_platform.operators.transfer import StreamingTransferOperator

    # What the task runner does at start-up: build the StatsD client from [metrics] config.
    initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )
    operator = StreamingTransferOperator(
        task_id=task_id,
        source_conn_id=args["src_conn_id"],
        destination_conn_id=args["dst_conn_id"],
        source_table=f"{args['schema']}.{args['source_table']}",
        destination_table=f"{args['schema']}.{args['destination_table']}",
        chunk_rows=int(args["chunk_rows"]),
        write_mode="append",
        transform=transform,
        parallelism=parallelism,
    )
    emit = _lineage_emitter(task_id) if lineage else None
    context = _context(task_id, args["run_id"])
    rss_before = _rss_now_mb()
    t0 = _mark_started(args)
    lineage_seconds = 0.0
    if emit is not None:
        emit("START", None)
        lineage_seconds = time.perf_counter() - t0
    summary = operator.execute(context)  # type: ignore[arg-type]
    if emit is not None:
        t1 = time.perf_counter()
        emit("COMPLETE", operator.get_openlineage_facets_on_complete(None))
        lineage_seconds += time.perf_counter() - t1
    seconds = time.perf_counter() - t0
    _mark_ended()
    return {
        "lineage_events": emit.count if emit is not None else None,
        "lineage_seconds": round(lineage_seconds, 4) if emit is not None else None,
        "seconds": seconds,
        "rss_before_work_mb": round(rss_before, 1),
        "rows_reported": summary["rows"],
        "summary": summary,
        "statsd_on": conf.getboolean("metrics", "statsd_on"),
    }


class _LineageEmitter:
    """The listener's part of a task with OpenLineage on: run events to a file transport (temp file)."""

    def __init__(self, job: str) -> None:
        import tempfile
        import uuid as uuid_module

        # A worker with the OpenLineage plugin has its listener (and the provider, the client) imported
        # before any task starts: import it here too, outside the timed window.
        import airflow.providers.openlineage.plugins.listener  # noqa: F401
        from openlineage.client import OpenLineageClient
        from openlineage.client.event_v2 import RunEvent  # noqa: F401
        from openlineage.client.transport.file import FileConfig, FileTransport

        self.path = os.path.join(tempfile.mkdtemp(prefix="etl-bench-ol-"), "events.jsonl")
        self.client = OpenLineageClient(
            transport=FileTransport(FileConfig(log_file_path=self.path, append=True))
        )
        self.job, self.run_id, self.count = job, str(uuid_module.uuid4()), 0

    def __call__(self, event_type: str, lineage: Any) -> None:
        from datetime import UTC, datetime

        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState

        self.client.emit(
            RunEvent(
                eventType=RunState[event_type],
                eventTime=datetime.now(UTC).isoformat(),
                run=Run(runId=self.run_id),
                job=Job(namespace="etl-bench", name=self.job),
                producer="https://github.com/etl-platform/benchmarks",
                inputs=list(lineage.inputs) if lineage is not None else [],
                outputs=list(lineage.outputs) if lineage is not None else [],
            )
        )
        self.count += 1


def _lineage_emitter(task_id: str) -> _LineageEmitter:
    return _LineageEmitter(f"{DAG_ID}.{task_id}")


def streaming_p1(args: Args) -> Result:
    """Pass-through (append), one stream."""
    return _streaming(args, "streaming_p1", 1, None)


def streaming_p1_lineage(args: Args) -> Result:
    """streaming_p1 with OpenLineage on: START, facets and COMPLETE through a file transport."""
    return _streaming(args, "streaming_p1_lineage", 1, None, lineage=True)


def streaming_p2(args: Args) -> Result:
    """Pass-through (append), two streams on one snapshot."""
    return _streaming(args, "streaming_p2", 2, None)


def streaming_p4(args: Args) -> Result:
    """Pass-through (append), four streams on one snapshot."""
    return _streaming(args, "streaming_p4", 4, None)


def streaming_transform(args: Args) -> Result:
    """A pandas transform per chunk into a table with an extra processed_at column."""
    import pandas as pd

    return _streaming(
        args,
        "streaming_transform",
        1,
        lambda df: df.dropna(subset=["customer_id"]).assign(processed_at=pd.Timestamp.now(tz="UTC")),
    )


def empty_task(args: Args) -> Result:
    """The pass-through operator on an empty source: the memory floor of a streaming task."""
    return _streaming(args, "empty_task", 1, None)


# -- catalogue --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodInfo:
    """How the parent sets up, limits and checks one method."""

    name: str
    func: Callable[[Args], Result]
    source_table: str
    destination_table: str
    capped: bool  # slow baselines: killed at --cap, reported with the rows they got done
    streaming: bool  # StreamingTransferOperator (RSS compared with empty_task)
    transform: bool  # writes the transformed shape (extra processed_at column)
    description: str


def _info(
    func: Callable[[Args], Result],
    *,
    source: str = "orders",
    destination: str = "orders",
    capped: bool = False,
    streaming: bool = False,
    transform: bool = False,
    description: str,
) -> MethodInfo:
    return MethodInfo(func.__name__, func, source, destination, capped, streaming, transform, description)


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        _info(psql_pipe, description="psql \\copy binary | psql \\copy binary (baseline)"),
        _info(generic_transfer_default, capped=True, description="GenericTransfer, defaults"),
        _info(generic_transfer_paged, capped=True, description="GenericTransfer, page_size=5000"),
        _info(
            limit_offset_pandas,
            destination="orders_transformed",
            capped=True,
            transform=True,
            description="LIMIT/OFFSET read_sql + to_sql",
        ),
        _info(streaming_p1, streaming=True, description="operator, parallelism 1"),
        _info(streaming_p1_lineage, streaming=True, description="operator, parallelism 1, OpenLineage on"),
        _info(streaming_p2, streaming=True, description="operator, parallelism 2"),
        _info(streaming_p4, streaming=True, description="operator, parallelism 4"),
        _info(
            streaming_transform,
            destination="orders_transformed",
            streaming=True,
            transform=True,
            description="operator, pandas transform",
        ),
        _info(empty_task, source="orders_empty", streaming=True, description="operator, empty source"),
    )
}
# The same operator methods on another checkout of the provider (run.py --base-provider DIR puts DIR
# first on the child's path), measured in the same interleaved rounds: a before/after comparison.
BASE_SUFFIX = "_base"
for _name in ("streaming_p1", "empty_task"):
    _m = METHODS[_name]
    METHODS[_name + BASE_SUFFIX] = MethodInfo(
        _name + BASE_SUFFIX,
        _m.func,
        _m.source_table,
        _m.destination_table,
        _m.capped,
        _m.streaming,
        _m.transform,
        _m.description + " (--base-provider code)",
    )


def run_child(argv: list[str], methods: dict[str, Callable[[Args], Result]], module: str) -> int:
    """Child entry point: run one method, write its result (or its error) as JSON."""
    if len(argv) != 3 or argv[1] not in methods:
        print(f"usage: python -m {module} {{{','.join(methods)}}} '<json-args>'", file=sys.stderr)
        return 2
    args: Args = json.loads(argv[2])
    try:
        result = methods[argv[1]](args)
        code = 0
    except BaseException as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
        code = 1
    result["child_peak_rss_mb"] = round(_rss_now_mb(), 1)
    result["provider_modules"], result["provider_modules_hash"] = _loaded_provider_code()
    if "work_started" in MARKS and "work_ended" not in MARKS and isinstance(result.get("seconds"), float):
        MARKS["work_ended"] = MARKS["work_started"] + result["seconds"]
    result["marks"] = {**MARKS, "result_written": time.time()}
    with open(args["result_path"], "w") as fh:
        json.dump(result, fh, default=str)
    return code


def exit_like_task_runner(code: int) -> NoReturn:
    """Ends the child the way Airflow's task runner ends a task process (supervisor._fork_main):
    flush the standard streams, run the atexit handlers, os._exit. Tearing down the interpreter and
    Airflow's module graph (about 0.3 s) is no part of a task's wall time."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(ValueError, OSError):
            stream.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def main(argv: list[str]) -> int:
    return run_child(argv, {name: info.func for name, info in METHODS.items()}, "benchmarks.methods")


if __name__ == "__main__":
    exit_like_task_runner(main(sys.argv))
