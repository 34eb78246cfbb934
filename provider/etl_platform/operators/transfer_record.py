"""What the transfer operator records besides its rows: the ledger attempt, its chunks, the lineage."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import Context

from etl_platform.assets import connection_table_uri
from etl_platform.hooks.kinds import MYSQL_TYPES, kind_of
from etl_platform.hooks.postgres import EtlPostgresHook
from etl_platform.ledger.chunks import ChunkRecorder
from etl_platform.ledger.writer import LedgerWriter, TaskAttempt
from etl_platform.operators.transfer_assets import destination_uri, source_uri, uri_or_none
from etl_platform.transfer.engine import TransferEngine
from etl_platform.transfer.progress import recording_chunks
from etl_platform.transfer.sources.base import Source
from etl_platform.transfer.spec import TransferSpec

if TYPE_CHECKING:
    from etl_platform.lineage import TransferRecord
    from etl_platform.operators.transfer import StreamingTransferOperator
    from etl_platform.transfer.plan import TransferPlan


def ledger_for(op: StreamingTransferOperator, context: Context) -> tuple[LedgerWriter | None, TaskAttempt]:
    """This try as the ledger records it, and the writer (None without ledger_conn_id)."""
    ti = context["ti"]
    now = datetime.now(UTC)
    dag_run = context.get("dag_run")
    attempt = TaskAttempt(
        pipeline=ti.dag_id,
        run_id=context["run_id"],
        run_started_at=getattr(dag_run, "start_date", None) or now,
        task_id=ti.task_id,
        map_index=getattr(ti, "map_index", -1),
        try_number=getattr(ti, "try_number", 1) or 1,
        started_at=now,
        source=op.source_table or ("source_sql" if op.source_sql else str(op.source_path)),
        destination=op.destination_table or str(op.destination_path),
    )
    if not op.ledger_conn_id:
        return None, attempt
    return LedgerWriter(EtlPostgresHook(op.ledger_conn_id).connection_factory(), op.log), attempt


@contextlib.contextmanager
def chunk_recording(
    op: StreamingTransferOperator,
    ledger: LedgerWriter | None,
    attempt: TaskAttempt,
    metrics: Any,
    tags: dict[str, str],
) -> Iterator[None]:
    """Each committed chunk goes to the ledger's task_chunks (the UI's Transfer view), in batches."""
    if ledger is None:
        yield
        return
    recorder = ChunkRecorder(
        ledger.connect,
        attempt,
        op.log,
        on_error=lambda: metrics.incr("etl.ledger.chunk_errors", 1, tags=tags),
    )
    with recorder, recording_chunks(recorder):
        yield
    if recorder.dropped:
        op.log.warning(
            "ledger: %d of %d chunk rows not recorded",
            recorder.dropped,
            recorder.dropped + recorder.written,
        )


class PlanRecorder:
    """A source that keeps the plan it made: its column mapping is the transfer's column lineage."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.recorded: TransferPlan | None = None

    def __enter__(self) -> PlanRecorder:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.inner.__exit__(*exc)

    def plan(self, spec: TransferSpec, destination: Any) -> TransferPlan:
        self.recorded = self.inner.plan(spec, destination)
        return self.recorded

    def __getattr__(self, name: str) -> Any:  # parts, readers, label, consistency, files, ...
        return getattr(self.inner, name)


class LineageRun:
    """The source (with its recorded plan) and the engine of the run, read after execute."""

    def __init__(self, source: PlanRecorder, engine: TransferEngine) -> None:
        self.source = source
        self.engine = engine


def lineage_record(op: StreamingTransferOperator, failed: bool) -> TransferRecord:
    """The run as lineage.transfer_lineage reads it (no output statistics for a failed run)."""
    from etl_platform.lineage import TransferRecord

    if not op.destination_path and op._connections.get("destination_conn_id") is None:
        raise ValueError("the destination was never resolved (the run failed before connecting)")
    connection = op._connections.get("source_conn_id")
    summary = None if failed else op._lineage_summary
    record: dict[str, Any] = {
        # A side whose connection's host is a socket directory has no URI: no dataset, no error.
        "destination_uri": uri_or_none(lambda: destination_uri(op)),
        "source_uri": uri_or_none(lambda: source_uri(op)),
        "source_sql": op.source_sql or None,
        # any table's URI on the source names its namespace and database (assets' normalization)
        "source_database_uri": (
            uri_or_none(lambda: connection_table_uri(connection, "_"))
            if op.source_sql and connection is not None
            else None
        ),
        "dialect": "mysql" if connection is not None and kind_of(connection) in MYSQL_TYPES else "postgres",
        "rows": None if summary is None else int(summary.get("rows") or 0),
        "bytes": None if summary is None else int(summary.get("bytes") or 0),
    }
    if op.destination_path and summary is not None:
        record["file_count"] = len(summary.get("files") or ())
    if op._lineage_run is not None:
        record.update(_column_lineage(op, op._lineage_run))
    return TransferRecord(**record)


def _column_lineage(op: StreamingTransferOperator, run: LineageRun) -> dict[str, Any]:
    plan = run.source.recorded
    if plan is None:
        return {}
    source_columns = plan.source_relation.columns if plan.source_relation else plan.source_columns
    record: dict[str, Any] = {
        "source_columns": [(c.name, c.type_name) for c in source_columns],
        "destination_columns": [(c.name, c.type_name) for c in plan.destination.columns],
        "mapping": [(s.name, d.name) for s, d in zip(plan.source_columns, plan.dest_columns, strict=False)],
    }
    if op.transform is not None:
        # The transform's output columns, known to the engine after its first chunk.
        record["transformed"] = tuple(run.engine._out_columns or ())
    return record
