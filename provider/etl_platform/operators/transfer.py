"""StreamingTransferOperator: moves a table, a query or files into a PostgreSQL table (or a table
or query into files).

The source's kind follows its Airflow connection's type (``postgres``, ``mysql``) or ``source_path``
(files). Rows are read in keyset chunks (or row groups) and written with COPY, at the speed of a
psql COPY pipe, in constant memory, resuming after the last committed chunk on retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from etl_platform.common.errors import is_terminal
from etl_platform.operators import transfer_assets, transfer_connect, transfer_record, transfer_settings
from etl_platform.operators.transfer_assets import emit_asset_event
from etl_platform.operators.transfer_record import LineageRun, PlanRecorder
from etl_platform.operators.transfer_settings import (
    FileFormatName,
    StrategyName,
    TransformFormatName,
    WriteModeName,
    ZeroDatesName,
)
from etl_platform.profiling import ProfiledExecute
from etl_platform.transfer.engine import TransferEngine
from etl_platform.transfer.errors import ChunkLoadError

if TYPE_CHECKING:
    import jinja2
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk.definitions.mappedoperator import OperatorPartial


class StreamingTransferOperator(ProfiledExecute, BaseOperator):
    """Copy rows from ``source_table``, ``source_sql`` or ``source_path`` into ``destination_table``.

    :param source_conn_id: Airflow connection to read from; its type picks the source: ``postgres``
        or ``mysql`` (MariaDB/MySQL, needs the ``[mysql]`` extra). With ``source_path``, the
        object-store connection (an ``aws`` connection for ``s3://``), or none for local files.
    :param destination_conn_id: Airflow ``postgres`` connection to write to.
    :param source_table: ``"schema.table"`` (PostgreSQL) or ``"database.table"`` (MariaDB) to read
        (templated). Give this, ``source_sql`` or ``source_path``.
    :param source_sql: a SELECT to read instead of a table (templated, may be a ``.sql`` file), in
        the source's own SQL dialect.
    :param source_path: files to load (templated): an ``ObjectStoragePath`` URL (``file://``,
        ``s3://``, or a local path), a list of them, a glob (``s3://drop/orders/*.parquet``) or a
        prefix (every file under it). Parquet is read by row group, CSV by block; each file's schema
        is checked against the destination before any row is written.
    :param source_format: ``parquet`` or ``csv``; inferred from the file suffix when not given.
    :param csv_options: CSV dialect: ``delimiter``, ``header`` (bool), ``null_string``, ``encoding``,
        ``quote_char``; compression (gzip, zstd) follows the suffix.
    :param reject_path: with CSV sources, where rows that do not parse go (one file, written when the
        transfer ends); without it a bad row fails the task naming file, line and column.
    :param max_rejects: how many rejected rows are tolerated before the task fails.
    :param allow_empty: an empty glob or prefix succeeds with 0 rows and a warning (``True``) or
        fails (``False``).
    :param zero_dates: MariaDB zero dates (``0000-00-00``, ``2020-00-15``): ``"error"`` fails the
        chunk naming column and key range, ``"null"`` loads NULL. Never a different date.
    :param destination_table: ``"schema.table"`` to write (templated). Columns are matched by name;
        destination columns the source lacks take their defaults.
    :param key_column: ordered unique key used for chunking and checkpoints (templated). Defaults to
        the source table's single-column primary key; required with ``source_sql``.
    :param chunk_rows: rows per chunk; each chunk commits with its checkpoint.
    :param write_mode: ``append``; ``truncate`` (the destination ends with exactly the source rows:
        loaded into a new table, indexed after the load, then swapped in by rename in one short
        transaction; see ``strategy``); ``upsert`` (ON CONFLICT on the destination primary key or
        ``conflict_columns``, which a unique index must cover); ``delete_insert`` (replace the rows
        of the window; a window covering whole partitions of a table range-partitioned on
        ``incremental_column`` exchanges those partitions). READ COMMITTED readers never see the
        destination empty or half-loaded; as with any TRUNCATE, a REPEATABLE READ snapshot taken
        before a full refresh and reading the table only after it sees what it committed before.
    :param strategy: how ``truncate`` replaces the rows. ``"auto"`` swaps a new table in, carrying
        over indexes, constraints, foreign keys, grants, owner, comments, policies, sequences,
        replica identity and statistics targets; where the swap cannot keep something (a view,
        another table's foreign key, a trigger, a publication, a partitioned table, ...) it stages
        the rows and replaces them in place, and the summary's ``strategy_note`` names why.
        ``"staged"`` always stages.
    :param lock_timeout: the longest the swap waits for its lock on the destination per attempt
        (readers queue behind it meanwhile); it retries with backoff, five attempts.
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
        from, strategy, error) for the dashboard and alerts, and each committed chunk (rows, bytes,
        seconds, worker memory) for the UI's per-run Transfer view; a ledger error never fails the task.
    :param destination_asset: the Airflow Asset the run's event goes on, for downstream DAGs that
        schedule on a name they know at parse time (``Asset(name="orders_clean", uri=...)``).
        Without it the event goes on the asset the destination connection and table resolve to
        (``postgres://host:port/database/schema/table``, ``file://``, ``s3://``).

    Assets: every transfer declares the outlet ``AssetAlias("etl_platform.transfer:<dag_id>.<task_id>")``
    when the DAG is parsed (no connection is read then). A successful run that moved rows adds one
    event through it, on the destination asset, with extra ``{rows, bytes, window_start,
    window_end, source}`` (``source``: the source's asset URI, or null for a query). A failed run
    emits nothing; neither does a run that moved no rows (an empty window), except a ``truncate``
    that emptied the table. A connection whose host cannot be a URI host (a socket directory, a
    host list) logs a warning and emits no event; the task still succeeds.

    :param destination_path: instead of a table, export the source (a PostgreSQL ``source_table`` or
        ``source_sql``) to files under this URL (templated): rotated every ``rows_per_file`` rows,
        optionally Hive-partitioned by ``partition_by``, each file published under its final name
        only when complete, resumable. An export refuses table-only settings (``write_mode``, the
        window, ``transform``, ...) given a non-default value, naming the setting.
    :param destination_format: ``parquet`` (default) or ``csv``.
    :param rows_per_file: rows per exported file.
    :param partition_by: column whose values name the ``column=value/`` directories of the export.

    Returns (XCom) a summary: rows, bytes, chunks, seconds, rows_per_second, peak_rss_mb,
    resumed_from, consistency, files, and more.
    """

    template_fields: Sequence[str] = (
        "source_table",
        "source_sql",
        "source_path",
        "destination_table",
        "destination_path",
        "reject_path",
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

    # The settings Jinja never renders (transfer_settings.SETTINGS), set from the keywords of the same
    # names by _keep_settings; declared here with their types.
    source_conn_id: str | None
    destination_conn_id: str | None
    source_format: FileFormatName | None
    csv_options: dict[str, Any] | None
    max_rejects: int
    allow_empty: bool
    zero_dates: ZeroDatesName
    destination_format: FileFormatName | None
    rows_per_file: int
    partition_by: str | None
    chunk_rows: int
    write_mode: WriteModeName
    conflict_columns: tuple[str, ...] | None
    transform: Callable[[Any], Any] | None
    transform_format: TransformFormatName
    parallelism: int
    checkpoint_schema: str
    strategy: StrategyName
    lock_timeout: str
    reset_checkpoint: bool
    ledger_conn_id: str | None
    destination_asset: Asset | None

    def __init__(
        self,
        *,
        source_conn_id: str | None = None,
        destination_conn_id: str | None = None,
        destination_table: str | None = None,
        source_table: str | None = None,
        source_sql: str | None = None,
        source_path: str | Sequence[str] | None = None,
        source_format: FileFormatName | None = None,
        csv_options: dict[str, Any] | None = None,
        reject_path: str | None = None,
        max_rejects: int = 0,
        allow_empty: bool = True,
        zero_dates: ZeroDatesName = "error",
        destination_path: str | None = None,
        destination_format: FileFormatName | None = None,
        rows_per_file: int = 1_000_000,
        partition_by: str | None = None,
        key_column: str | None = None,
        chunk_rows: int = 100_000,
        write_mode: WriteModeName = "append",
        conflict_columns: Sequence[str] | None = None,
        incremental_column: str | None = None,
        window_start: str | None = "{{ data_interval_start }}",
        window_end: str | None = "{{ data_interval_end }}",
        transform: Callable[[Any], Any] | None = None,
        transform_format: TransformFormatName = "pandas",
        parallelism: int = 1,
        key_min: str | None = None,
        key_max: str | None = None,
        checkpoint_schema: str = "etl_platform",
        strategy: StrategyName = "auto",
        lock_timeout: str = "5s",
        reset_checkpoint: bool = False,
        ledger_conn_id: str | None = None,
        destination_asset: Asset | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Templated: assigned unchanged; Airflow renders them in place, execute reads them rendered.
        self.source_table = source_table
        self.source_sql = source_sql
        self.source_path = source_path
        self.destination_table = destination_table
        self.destination_path = destination_path
        self.reject_path = reject_path
        self.key_column = key_column
        self.incremental_column = incremental_column
        self.window_start = window_start
        self.window_end = window_end
        self.key_min = key_min
        self.key_max = key_max
        self._keep_settings(locals())
        transfer_settings.check_at_parse(self)

    def _keep_settings(self, given: dict[str, Any]) -> None:
        """The settings Jinja never sees (SETTINGS), each under its keyword's name; the run's state."""
        for name in transfer_settings.SETTINGS:
            setattr(self, name, given[name])
        self.conflict_columns = tuple(self.conflict_columns) if self.conflict_columns else None
        # Declared now, resolved at run time: the destination's URI needs its connection, which
        # parsing must not read; an alias is Airflow's way to emit events on assets named at run
        # time, and emitting nothing through it is how a run that changed nothing stays silent.
        self.asset_alias = transfer_assets.alias_for(self.dag_id, self.task_id)
        self.outlets = transfer_assets.with_alias(list(self.outlets), self.asset_alias)
        self._connections: dict[str, Any] = {}
        # What execute recorded for OpenLineage (read after it, on the worker; never in XCom).
        self._lineage_run: LineageRun | None = None
        self._lineage_summary: dict[str, Any] | None = None

    @classmethod
    def partial(cls, **kwargs: Any) -> OperatorPartial:  # type: ignore[override]
        """As BaseOperator.partial, with the task's asset alias declared (see transfer_assets)."""
        return transfer_assets.declare_partial_alias(super().partial(**kwargs))

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        """No incremental column, no window: nothing of it is rendered.

        Runs without a data interval (Airflow 3's manual runs have none) must not fail on the default
        window's undefined ``data_interval_start``. Airflow calls this for plain and mapped tasks alike
        (``render_template_fields`` is not called for a mapped task's unmapped copy), so the override
        sits here; its signature is Airflow 3.3's Templater (pinned in requirements/), and
        tests/test_transfer_dags.py and test_operator_templates.py render both kinds without a data interval.
        """
        if parent is self and not self.incremental_column:
            self.window_start = self.window_end = None
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.observability.stats import Stats

        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        checkpoint_id = f"{ti.dag_id}/{ti.task_id}/{context['run_id']}/{map_index}"
        tags = {"dag_id": ti.dag_id, "task_id": ti.task_id}
        ledger, attempt = transfer_record.ledger_for(self, context)
        if ledger is not None:
            ledger.started(attempt)
        try:
            with transfer_record.chunk_recording(self, ledger, attempt, Stats, tags):
                summary = self._transfer(checkpoint_id, Stats, tags)
        except Exception as exc:
            if ledger is not None:
                ledger.finished(attempt, None, f"{type(exc).__name__}: {exc}")
            if retry_cannot_help(exc):
                raise AirflowFailException(str(exc)) from None
            raise
        if ledger is not None:
            ledger.finished(attempt, summary, None)
        self.log.info("transfer summary: %s", summary)
        emit_asset_event(self, context, summary)
        return summary

    def _transfer(self, checkpoint_id: str, metrics: Any, tags: dict[str, str]) -> dict[str, Any]:
        # Rendered now: templated settings an export cannot use are refused before any data moves.
        run: Callable[[], Any]
        if self.destination_path:
            transfer_settings.check_export_settings(self, rendered=True)
            run = transfer_connect.export_engine(self, metrics, tags).run
        else:
            spec = transfer_settings.table_spec(self, checkpoint_id=checkpoint_id)
            source = PlanRecorder(transfer_connect.source_for(self))
            engine = TransferEngine(
                spec,
                source,
                transfer_connect.postgres_factory(self, "destination_conn_id"),
                metrics=metrics,
                metric_tags=tags,
                logger=self.log,
                reset_checkpoint=self.reset_checkpoint,
            )
            self._lineage_run = LineageRun(source, engine)
            run = engine.run
        result = run()
        summary: dict[str, Any] = result if isinstance(result, dict) else result.as_dict()
        self._lineage_summary = summary
        return summary

    # -- OpenLineage (the provider's listener calls these on the worker after execute) ----------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Datasets, schemas, column lineage, row/byte counts and the query of a finished run."""
        return self._lineage(failed=False)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        """What a failed run was moving: the same datasets and lineage, no output statistics."""
        return self._lineage(failed=True)

    def _lineage(self, *, failed: bool) -> OperatorLineage:
        from etl_platform import lineage

        tags = {"dag_id": self.dag_id, "task_id": self.task_id}
        return lineage.guarded(
            self,
            lambda: lineage.transfer_lineage(transfer_record.lineage_record(self, failed)),
            tags=tags,
        )


def retry_cannot_help(exc: BaseException) -> bool:
    """Fail without the task's retries when the error's branch is terminal (etl_platform.common.errors).

    One exception keeps the operator's behaviour from before the branches: a chunk the destination
    rejected (ChunkLoadError) is retried whatever its SQLSTATE. A rejection by a trigger or a check
    that passes on the next try happens, and the retry resumes after the last committed chunk; the
    rejected data itself is refused again and uses the retries up.
    """
    return is_terminal(exc) and not isinstance(exc, ChunkLoadError)
