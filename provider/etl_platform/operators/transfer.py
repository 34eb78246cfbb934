"""StreamingTransferOperator: moves a table, a query or files into a PostgreSQL table (or a table
or query into files).

The source's kind follows its Airflow connection's type (``postgres``, ``mysql``) or ``source_path``
(files). Rows are read in keyset chunks (or row groups) and written with COPY, at the speed of a
psql COPY pipe, in constant memory, resuming after the last committed chunk on retry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias, BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from etl_platform.assets import AssetUriError, connection_table_uri, file_uri
from etl_platform.hooks.kinds import MYSQL_TYPES, POSTGRES_TYPES, kind_of, lookup
from etl_platform.hooks.postgres import ConnectionFactory, EtlPostgresHook
from etl_platform.ledger.chunks import ChunkRecorder
from etl_platform.ledger.writer import LedgerWriter, TaskAttempt
from etl_platform.profiling import ProfiledExecute
from etl_platform.transfer.engine import TransferEngine
from etl_platform.transfer.errors import SourceUnavailableError, TransferConfigError
from etl_platform.transfer.progress import recording_chunks
from etl_platform.transfer.sources.base import Source
from etl_platform.transfer.sources.mysql_types import ZeroDates
from etl_platform.transfer.sources.postgres import PostgresSource
from etl_platform.transfer.spec import TransferSpec

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

    from etl_platform.lineage import TransferRecord
    from etl_platform.transfer.plan import TransferPlan


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
        only when complete, resumable.
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

    def __init__(
        self,
        *,
        source_conn_id: str | None = None,
        destination_conn_id: str | None = None,
        destination_table: str | None = None,
        source_table: str | None = None,
        source_sql: str | None = None,
        source_path: str | Sequence[str] | None = None,
        source_format: str | None = None,
        csv_options: dict[str, Any] | None = None,
        reject_path: str | None = None,
        max_rejects: int = 0,
        allow_empty: bool = True,
        zero_dates: str = "error",
        destination_path: str | None = None,
        destination_format: str | None = None,
        rows_per_file: int = 1_000_000,
        partition_by: str | None = None,
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
        strategy: str = "auto",
        lock_timeout: str = "5s",
        reset_checkpoint: bool = False,
        ledger_conn_id: str | None = None,
        destination_asset: Asset | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Declared now, resolved at run time: the destination's URI needs its connection, which
        # parsing must not read; an alias is Airflow's way to emit events on assets named at run
        # time, and emitting nothing through it is how a run that changed nothing stays silent.
        self.destination_asset = destination_asset
        self.asset_alias = AssetAlias(name=f"etl_platform.transfer:{self.dag_id}.{self.task_id}")
        self.outlets = [*self.outlets, self.asset_alias]
        self._connections: dict[str, Any] = {}
        self.source_conn_id = source_conn_id
        self.destination_conn_id = destination_conn_id
        self.destination_table = destination_table
        self.source_table = source_table
        self.source_sql = source_sql
        self.source_path = source_path
        self.source_format = source_format
        self.csv_options = csv_options
        self.reject_path = reject_path
        self.max_rejects = max_rejects
        self.allow_empty = allow_empty
        self.zero_dates = zero_dates
        self.destination_path = destination_path
        self.destination_format = destination_format
        self.rows_per_file = rows_per_file
        self.partition_by = partition_by
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
        self.strategy = strategy
        self.lock_timeout = lock_timeout
        self.reset_checkpoint = reset_checkpoint
        self.ledger_conn_id = ledger_conn_id
        # What execute recorded for OpenLineage (read after it, on the worker; never in XCom).
        self._lineage_run: _LineageRun | None = None
        self._lineage_summary: dict[str, Any] | None = None
        # Refuse nonsense when the DAG is parsed, not when it runs.
        try:
            self._check_sides()
            if self.destination_path:
                self._export_spec(checkpoint_id="parse-check")
            else:
                self._spec(checkpoint_id="parse-check")
        except TransferConfigError as exc:
            raise ValueError(f"{self.task_id}: {exc}") from None

    def _check_sides(self) -> None:
        if bool(self.destination_table) == bool(self.destination_path):
            raise TransferConfigError("Give exactly one of destination_table or destination_path.")
        if self.destination_table and not self.destination_conn_id:
            raise TransferConfigError("destination_table needs destination_conn_id (a postgres connection).")
        if (self.source_table or self.source_sql) and not self.source_conn_id:
            raise TransferConfigError("source_table and source_sql need source_conn_id.")
        if self.destination_path and self.source_path:
            raise TransferConfigError(
                "files to files is not a transfer: give a table or query as the source."
            )
        if self.zero_dates not in {z.value for z in ZeroDates}:
            raise TransferConfigError(
                f"zero_dates {self.zero_dates!r} is not one of {[z.value for z in ZeroDates]}."
            )

    def _spec(self, checkpoint_id: str) -> TransferSpec:
        return TransferSpec(
            destination_table=self.destination_table or "",
            source_table=self.source_table or None,
            source_sql=self.source_sql or None,
            source_path=_paths(self.source_path),
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
            strategy=self.strategy,
            lock_timeout=self.lock_timeout,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.observability.stats import Stats

        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        checkpoint_id = f"{ti.dag_id}/{ti.task_id}/{context['run_id']}/{map_index}"
        tags = {"dag_id": ti.dag_id, "task_id": ti.task_id}
        ledger, attempt = self._ledger(context)
        if ledger is not None:
            ledger.started(attempt)
        try:
            with self._chunk_recording(ledger, attempt, Stats, tags):
                summary = self._transfer(checkpoint_id, Stats, tags)
        except Exception as exc:
            if ledger is not None:
                ledger.finished(attempt, None, f"{type(exc).__name__}: {exc}")
            if isinstance(exc, TransferConfigError):
                raise AirflowFailException(str(exc)) from None  # retrying cannot fix a bad setting
            if isinstance(exc, SourceUnavailableError) and not exc.retryable:
                raise AirflowFailException(str(exc)) from None
            raise
        if ledger is not None:
            ledger.finished(attempt, summary, None)
        self.log.info("transfer summary: %s", summary)
        self._emit_asset_event(context, summary)
        return summary

    def _transfer(self, checkpoint_id: str, metrics: Any, tags: dict[str, str]) -> dict[str, Any]:
        if self.destination_path:
            run = self._export_engine(checkpoint_id, metrics, tags).run
        else:
            spec = self._spec(checkpoint_id=checkpoint_id)
            source = _PlanRecorder(self._source())
            engine = TransferEngine(
                spec,
                source,
                self._postgres_factory("destination_conn_id"),
                metrics=metrics,
                metric_tags=tags,
                logger=self.log,
                reset_checkpoint=self.reset_checkpoint,
            )
            self._lineage_run = _LineageRun(source, engine)
            run = engine.run
        result = run()
        summary: dict[str, Any] = result if isinstance(result, dict) else result.as_dict()
        self._lineage_summary = summary
        return summary

    @contextlib.contextmanager
    def _chunk_recording(
        self, ledger: LedgerWriter | None, attempt: TaskAttempt, metrics: Any, tags: dict[str, str]
    ) -> Iterator[None]:
        """Each committed chunk goes to the ledger's task_chunks (the UI's Transfer view), in batches."""
        if ledger is None:
            yield
            return
        recorder = ChunkRecorder(
            ledger.connect,
            attempt,
            self.log,
            on_error=lambda: metrics.incr("etl.ledger.chunk_errors", 1, tags=tags),
        )
        with recorder, recording_chunks(recorder):
            yield
        if recorder.dropped:
            self.log.warning(
                "ledger: %d of %d chunk rows not recorded",
                recorder.dropped,
                recorder.dropped + recorder.written,
            )

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
            self, lambda: lineage.transfer_lineage(self._lineage_record(failed)), tags=tags
        )

    def _lineage_record(self, failed: bool) -> TransferRecord:
        from etl_platform.lineage import TransferRecord

        destination = self._destination_uri()
        if destination is None:
            raise ValueError("the destination was never resolved (the run failed before connecting)")
        connection = self._connections.get("source_conn_id")
        summary = None if failed else self._lineage_summary
        plan = self._lineage_run.source.recorded if self._lineage_run is not None else None
        record: dict[str, Any] = {
            "destination_uri": destination,
            "source_uri": self._source_uri(),
            "source_sql": self.source_sql or None,
            # any table's URI on the source names its namespace and database (assets' normalization)
            "source_database_uri": (
                connection_table_uri(connection, "_") if self.source_sql and connection is not None else None
            ),
            "dialect": "mysql"
            if connection is not None and kind_of(connection) in MYSQL_TYPES
            else "postgres",
            "rows": None if summary is None else int(summary.get("rows") or 0),
            "bytes": None if summary is None else int(summary.get("bytes") or 0),
        }
        if self.destination_path and summary is not None:
            record["file_count"] = len(summary.get("files") or ())
        if plan is not None:
            assert self._lineage_run is not None
            source_columns = plan.source_relation.columns if plan.source_relation else plan.source_columns
            record["source_columns"] = [(c.name, c.type_name) for c in source_columns]
            record["destination_columns"] = [(c.name, c.type_name) for c in plan.destination.columns]
            record["mapping"] = [
                (s.name, d.name) for s, d in zip(plan.source_columns, plan.dest_columns, strict=False)
            ]
            if self.transform is not None:
                # The transform's output columns, known to the engine after its first chunk.
                record["transformed"] = tuple(self._lineage_run.engine._out_columns or ())
        return TransferRecord(**record)

    def _emit_asset_event(self, context: Context, summary: dict[str, Any]) -> None:
        """One event on the destination asset through this task's alias, or a log line saying why not."""
        # Counting the rows earlier tries of this run wrote: a retry that resumes after the last
        # chunk moves nothing itself, yet the run changed the destination.
        rows = int(summary.get("rows") or 0) + int(summary.get("rows_before_resume") or 0)
        if rows == 0 and self.write_mode != "truncate":
            self.log.info("No asset event: the run moved no rows (an empty window changes nothing).")
            return
        asset = self._destination_asset()
        if asset is None:
            return
        extra: dict[str, Any] = {
            "rows": rows,
            "bytes": int(summary.get("bytes") or 0),
            "window_start": self.window_start or None,
            "window_end": self.window_end or None,
            "source": self._asset_uri("source", self._source_uri),
        }
        context["outlet_events"][self.asset_alias].add(asset, extra=extra)
        self.log.info("Asset event on %s: %s", asset.uri, extra)

    def _destination_asset(self) -> Asset | None:
        uri = self._asset_uri("destination", self._destination_uri)
        declared = self.destination_asset
        if declared is None:
            return Asset(uri=uri) if uri else None
        if uri and uri != declared.uri:
            self.log.warning(
                "destination_asset %r declares %s but the destination resolves to %s; the event goes "
                "on the declared asset.",
                declared.name,
                declared.uri,
                uri,
            )
        return declared

    def _asset_uri(self, side: str, build: Callable[[], str | None]) -> str | None:
        try:
            return build()
        except AssetUriError as exc:
            self.log.warning("No asset for the %s: %s.", side, exc)
            return None

    def _destination_uri(self) -> str | None:
        if self.destination_path:
            return file_uri(str(self.destination_path))
        connection = self._connections.get("destination_conn_id")
        return connection_table_uri(connection, str(self.destination_table)) if connection else None

    def _source_uri(self) -> str | None:
        if self.source_path:
            paths = [self.source_path] if isinstance(self.source_path, str) else list(self.source_path)
            return file_uri(paths[0]) if len(paths) == 1 else None
        connection = self._connections.get("source_conn_id")
        if self.source_table and connection is not None:
            return connection_table_uri(connection, self.source_table)
        return None  # a query reads no single table

    def _postgres_factory(self, setting: str) -> ConnectionFactory:
        """Connections for the PostgreSQL side `setting` names, from one connection look-up."""
        conn_id = getattr(self, setting)
        connection = self._connections[setting] = lookup(conn_id, setting)
        kind = kind_of(connection)
        if kind not in POSTGRES_TYPES:
            raise AirflowFailException(
                f"{setting} {conn_id!r} is a {kind!r} connection; this side must be PostgreSQL "
                f"({', '.join(sorted(POSTGRES_TYPES))})."
            )
        return EtlPostgresHook(conn_id).connection_factory(connection)

    def _source(self) -> Source:
        """The connection's type picks the source; files come from source_path."""
        if self.source_path:
            return self._file_source()
        assert self.source_conn_id is not None
        connection = self._connections["source_conn_id"] = lookup(self.source_conn_id, "source_conn_id")
        kind = kind_of(connection)
        if kind in POSTGRES_TYPES:
            return PostgresSource(EtlPostgresHook(self.source_conn_id).connection_factory(connection))
        if kind in MYSQL_TYPES:
            from etl_platform.hooks.mysql import EtlMySqlHook
            from etl_platform.transfer.sources.mysql import MySqlSource

            return MySqlSource(
                EtlMySqlHook(self.source_conn_id).connection_factory(),
                zero_dates=self.zero_dates,
                logger=self.log,
            )
        raise AirflowFailException(
            f"source_conn_id {self.source_conn_id!r} is a {kind!r} connection; sources are postgres, "
            "mysql, or files through source_path."
        )

    def _file_source(self) -> Source:
        from etl_platform.hooks.object_store import filesystem_for
        from etl_platform.transfer.files.csv_stream import CsvOptions
        from etl_platform.transfer.sources.files import FileSource

        urls = [self.source_path] if isinstance(self.source_path, str) else list(self.source_path or ())
        located = [filesystem_for(url, self.source_conn_id) for url in urls]
        schemes = {type(fs).__name__ for fs, _ in located}
        if len(schemes) != 1:
            raise TransferConfigError(f"source_path entries must share one storage, got {urls}.")
        # A trailing "/" says "everything under this prefix"; the storage path drops it.
        paths = tuple(
            path + ("/" if url.endswith("/") else "") for url, (_, path) in zip(urls, located, strict=True)
        )
        reject = filesystem_for(self.reject_path, self.source_conn_id)[1] if self.reject_path else None
        try:
            csv = CsvOptions(**(self.csv_options or {}))
        except TypeError as exc:
            raise TransferConfigError(f"csv_options: {exc}") from None
        return FileSource(
            located[0][0],
            paths,
            file_format=self.source_format,
            csv=csv,
            reject_path=reject,
            max_rejects=self.max_rejects,
            allow_empty=self.allow_empty,
            label=", ".join(urls) if len(urls) < 3 else f"{urls[0]} (+{len(urls) - 1} more)",
            logger=self.log,
        )

    def _export_spec(self, checkpoint_id: str, destination: str | None = None) -> Any:
        """The export's spec; `destination` is the path on the storage (the URL at parse time)."""
        from etl_platform.transfer.export import ExportSpec

        return ExportSpec(
            destination=destination or str(self.destination_path),
            source_table=self.source_table or None,
            source_sql=self.source_sql or None,
            key_column=self.key_column or None,
            file_format=self.destination_format or _suffix_format(str(self.destination_path)),
            rows_per_file=self.rows_per_file,
            partition_by=self.partition_by or None,
            chunk_rows=self.chunk_rows,
        )

    def _export_engine(self, checkpoint_id: str, metrics: Any, tags: dict[str, str]) -> Any:
        """PostgreSQL -> files: the destination connection (if any) is the object store's."""
        from etl_platform.hooks.object_store import filesystem_for
        from etl_platform.transfer.export import ExportEngine

        fs, path = filesystem_for(str(self.destination_path), self.destination_conn_id)
        assert self.source_conn_id is not None
        return ExportEngine(
            self._export_spec(checkpoint_id, destination=path),
            self._postgres_factory("source_conn_id"),
            fs,
            logger=self.log,
            on_published=lambda name: metrics.incr("etl.transfer.files", 1, tags=tags),
        )

    def _ledger(self, context: Context) -> tuple[LedgerWriter | None, TaskAttempt]:
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
            source=self.source_table or ("source_sql" if self.source_sql else str(self.source_path)),
            destination=self.destination_table or str(self.destination_path),
        )
        if not self.ledger_conn_id:
            return None, attempt
        return LedgerWriter(EtlPostgresHook(self.ledger_conn_id).connection_factory(), self.log), attempt


class _PlanRecorder:
    """A source that keeps the plan it made: its column mapping is the transfer's column lineage."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.recorded: TransferPlan | None = None

    def __enter__(self) -> _PlanRecorder:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.inner.__exit__(*exc)

    def plan(self, spec: TransferSpec, destination: Any) -> TransferPlan:
        self.recorded = self.inner.plan(spec, destination)
        return self.recorded

    def __getattr__(self, name: str) -> Any:  # parts, readers, label, consistency, files, ...
        return getattr(self.inner, name)


class _LineageRun:
    def __init__(self, source: _PlanRecorder, engine: TransferEngine) -> None:
        self.source = source
        self.engine = engine


def _suffix_format(url: str) -> str:
    """parquet unless the destination's name says csv (a directory usually says nothing)."""
    return "csv" if ".csv" in url.rsplit("/", 1)[-1].lower() else "parquet"


def _paths(value: str | Sequence[str] | None) -> str | tuple[str, ...] | None:
    if not value:
        return None
    return value if isinstance(value, str) else tuple(value)
