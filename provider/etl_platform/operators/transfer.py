"""StreamingTransferOperator: moves a PostgreSQL table or query into another PostgreSQL table.

Reads keyset chunks with COPY (binary when column types match) and writes them with COPY, at the
speed of a psql COPY pipe, in constant memory, resuming after the last committed chunk on retry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from etl_platform.hooks.postgres import EtlPostgresHook
from etl_platform.ledger.writer import LedgerWriter, TaskAttempt
from etl_platform.profiling import ProfiledExecute
from etl_platform.transfer.engine import TransferEngine
from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.spec import TransferSpec


class StreamingTransferOperator(ProfiledExecute, BaseOperator):
    """Copy rows from ``source_table`` (or ``source_sql``) into ``destination_table``.

    :param source_conn_id: Airflow ``postgres`` connection to read from.
    :param destination_conn_id: Airflow ``postgres`` connection to write to.
    :param source_table: ``"schema.table"`` to read (templated). Give this or ``source_sql``.
    :param source_sql: a SELECT to read instead of a table (templated, may be a ``.sql`` file).
    :param destination_table: ``"schema.table"`` to write (templated). Columns are matched by name;
        destination columns the source lacks take their defaults.
    :param key_column: ordered unique key used for chunking and checkpoints (templated). Defaults to
        the source table's single-column primary key; required with ``source_sql``.
    :param chunk_rows: rows per chunk; each chunk commits with its checkpoint.
    :param write_mode: ``append``; ``truncate`` (the destination ends with exactly the source rows,
        staged, then swapped in one transaction: READ COMMITTED readers never see it empty or
        half-loaded; as with any TRUNCATE, a REPEATABLE READ snapshot taken before the swap sees
        it empty); ``upsert`` (ON CONFLICT on the destination primary key or ``conflict_columns``,
        which a unique index must cover); ``delete_insert`` (replace the rows of the window).
    :param conflict_columns: upsert conflict target, when not the destination primary key.
    :param incremental_column: column filtered to ``[window_start, window_end)``.
    :param window_start: templated, default ``{{ data_interval_start }}``.
    :param window_end: templated, default ``{{ data_interval_end }}``.
    :param transform: callable applied to each chunk: a pandas DataFrame (Arrow-backed dtypes) in
        and out, or a ``pyarrow.Table`` with ``transform_format="arrow"``. Without it rows are
        never decoded.
    :param parallelism: concurrent key-range streams inside this task, on one consistent snapshot.
    :param key_min: move only keys above this (templated; with ``key_max``, one of the ranges a
        :class:`~etl_platform.operators.key_ranges.KeyRangePlanOperator` planned, via ``expand_kwargs``).
    :param key_max: move only keys up to and including this (templated).
    :param checkpoint_schema: destination schema holding checkpoints and staging tables.
    :param reset_checkpoint: forget this run's checkpoint and start from the first key.
    :param ledger_conn_id: connection to the database holding the run ledger (``etl_audit``); when
        set, each attempt is recorded there (rows, bytes, seconds, peak memory, status, resumed
        from, error) for the dashboard and alerts.

    Returns (XCom) a summary: rows, bytes, chunks, seconds, rows_per_second, peak_rss_mb,
    resumed_from, and more.
    """

    template_fields: Sequence[str] = (
        "source_table",
        "source_sql",
        "destination_table",
        "key_column",
        "incremental_column",
        "window_start",
        "window_end",
        "key_min",
        "key_max",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"source_sql": "sql"}
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        source_conn_id: str,
        destination_conn_id: str,
        destination_table: str,
        source_table: str | None = None,
        source_sql: str | None = None,
        key_column: str | None = None,
        chunk_rows: int = 100_000,
        write_mode: str = "append",
        conflict_columns: Sequence[str] | None = None,
        incremental_column: str | None = None,
        window_start: str | None = "{{ data_interval_start }}",
        window_end: str | None = "{{ data_interval_end }}",
        transform: Callable[[Any], Any] | None = None,
        transform_format: str = "pandas",
        parallelism: int = 1,
        key_min: str | None = None,
        key_max: str | None = None,
        checkpoint_schema: str = "etl_platform",
        reset_checkpoint: bool = False,
        ledger_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.destination_conn_id = destination_conn_id
        self.destination_table = destination_table
        self.source_table = source_table
        self.source_sql = source_sql
        self.key_column = key_column
        self.chunk_rows = chunk_rows
        self.write_mode = write_mode
        self.conflict_columns = tuple(conflict_columns) if conflict_columns else None
        self.incremental_column = incremental_column
        # No incremental column, no window: leave nothing to render, so runs without a data interval
        # (Airflow 3's manual runs have none) do not fail on an undefined `data_interval_start`.
        self.window_start = window_start if incremental_column else None
        self.window_end = window_end if incremental_column else None
        self.transform = transform
        self.transform_format = transform_format
        self.parallelism = parallelism
        self.key_min = key_min
        self.key_max = key_max
        self.checkpoint_schema = checkpoint_schema
        self.reset_checkpoint = reset_checkpoint
        self.ledger_conn_id = ledger_conn_id
        # Refuse nonsense when the DAG is parsed, not when it runs.
        try:
            self._spec(checkpoint_id="parse-check")
        except TransferConfigError as exc:
            raise ValueError(f"{self.task_id}: {exc}") from None

    def _spec(self, checkpoint_id: str) -> TransferSpec:
        return TransferSpec(
            destination_table=self.destination_table,
            source_table=self.source_table or None,
            source_sql=self.source_sql or None,
            key_column=self.key_column or None,
            chunk_rows=self.chunk_rows,
            write_mode=self.write_mode,
            conflict_columns=self.conflict_columns,
            incremental_column=self.incremental_column or None,
            window_start=self.window_start or None,
            window_end=self.window_end or None,
            transform=self.transform,
            transform_format=self.transform_format,
            parallelism=self.parallelism,
            key_min=self.key_min if self.key_min not in ("", "None") else None,
            key_max=self.key_max if self.key_max not in ("", "None") else None,
            checkpoint_id=checkpoint_id,
            checkpoint_schema=self.checkpoint_schema,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.observability.stats import Stats

        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        checkpoint_id = f"{ti.dag_id}/{ti.task_id}/{context['run_id']}/{map_index}"
        try:
            spec = self._spec(checkpoint_id=checkpoint_id)
        except TransferConfigError as exc:
            raise AirflowFailException(str(exc)) from None
        engine = TransferEngine(
            spec,
            EtlPostgresHook(self.source_conn_id).connection_factory(),
            EtlPostgresHook(self.destination_conn_id).connection_factory(),
            metrics=Stats,
            metric_tags={"dag_id": ti.dag_id, "task_id": ti.task_id},
            logger=self.log,
            reset_checkpoint=self.reset_checkpoint,
        )
        ledger, attempt = self._ledger(context, spec)
        if ledger is not None:
            ledger.started(attempt)
        try:
            summary = engine.run().as_dict()
        except Exception as exc:
            if ledger is not None:
                ledger.finished(attempt, None, f"{type(exc).__name__}: {exc}")
            if isinstance(exc, TransferConfigError):
                raise AirflowFailException(str(exc)) from None  # retrying cannot fix a bad setting
            raise
        if ledger is not None:
            ledger.finished(attempt, summary, None)
        self.log.info("transfer summary: %s", summary)
        return summary

    def _ledger(self, context: Context, spec: TransferSpec) -> tuple[LedgerWriter | None, TaskAttempt]:
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
            source=spec.source_table or "source_sql",
            destination=spec.destination_table,
        )
        if not self.ledger_conn_id:
            return None, attempt
        return LedgerWriter(EtlPostgresHook(self.ledger_conn_id).connection_factory(), self.log), attempt
