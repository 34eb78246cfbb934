"""Partition maintenance operators for PostgreSQL declarative range partitioning.

What pg_partman's run_maintenance() does, from Airflow, without its lock problems: every DDL
statement runs in a short transaction under ``lock_timeout`` with bounded retries, new partitions
are attached (never created with PARTITION OF), old ones detached CONCURRENTLY where possible.
Locks are taken before anything changes, so writers to other partitions wait at most
``lock_timeout``; while rows move out of a default partition (one transaction per range), writes
through the parent and reads of the default wait. Each operator returns (XCom) and logs a report,
warnings included, and sends StatsD metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from etl_platform.common.errors import EtlError, is_terminal
from etl_platform.hooks.kinds import lookup
from etl_platform.hooks.postgres import EtlPostgresHook
from etl_platform.partitions import maintenance
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.partitions.errors import PartitionConfigError
from etl_platform.partitions.maintenance import MaintenanceReport
from etl_platform.partitions.spec import (
    DrainSpec,
    EnsureSpec,
    IndexMethod,
    IndexSpec,
    RetentionMode,
    RetentionSpec,
    RunnerSpec,
)
from etl_platform.profiling import ProfiledExecute

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

S = TypeVar("S")
# Stands in, at parse time, for a templated value a spec checks (rendered only in execute).
_RENDERED_LATER = "rendered_later"


def _templated(value: object) -> bool:
    """A value Jinja will change when it renders: checked in execute, not at parse time."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


class _PartitionOperator(ProfiledExecute, BaseOperator):
    """Shared plumbing: connection, DDL runner settings, report, metrics."""

    template_fields: Sequence[str] = ("table",)
    ui_color = "#e8d5ff"

    def __init__(
        self,
        *,
        postgres_conn_id: str,
        table: str,
        lock_timeout: str = "2s",
        max_attempts: int = 5,
        retry_backoff_seconds: float = 0.5,
        dry_run: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Not templated: checked once, here, and kept (a frozen spec) for execute.
        self._ddl = self._parse_check(
            lambda: RunnerSpec(lock_timeout, max_attempts, retry_backoff_seconds, dry_run=dry_run)
        )
        self.postgres_conn_id = postgres_conn_id
        self.table = table
        self.lock_timeout = self._ddl.lock_timeout
        self.max_attempts = max_attempts
        self.retry_backoff_seconds = retry_backoff_seconds
        self.ddl_dry_run = dry_run  # BaseOperator.dry_run is a method
        # What execute recorded for OpenLineage (read after it, on the worker; never in XCom).
        self._lineage_connection: Any = None
        self._lineage_columns: list[tuple[str, str]] = []
        self._lineage_report: dict[str, Any] = {}

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.observability.stats import Stats

        # One connection look-up: the same connection names the table's lineage dataset.
        self._lineage_connection = lookup(self.postgres_conn_id, "postgres_conn_id")
        connect = EtlPostgresHook(self.postgres_conn_id).connection_factory(self._lineage_connection)
        with connect() as conn:
            self._record_columns(conn)
            maintenance.prepare_session(conn)
            runner = self._ddl.runner(conn, self.log)
            try:
                report = self.maintain(runner)
            except EtlError as exc:
                if is_terminal(exc):  # a retry cannot help: fail now, without the task's retries
                    raise AirflowFailException(str(exc)) from None
                raise
        tags = {"dag_id": context["ti"].dag_id, "task_id": context["ti"].task_id, "table": report.table}
        if not self.ddl_dry_run:
            Stats.incr("etl.partitions.created", len(report.created), tags=tags)
            Stats.incr("etl.partitions.detached", len(report.detached), tags=tags)
            Stats.incr("etl.partitions.dropped", len(report.dropped), tags=tags)
            Stats.incr("etl.partitions.rows_drained", report.rows_moved, tags=tags)
        Stats.timing("etl.partitions.seconds", report.seconds * 1000.0, tags=tags)
        for warning in report.warnings:
            self.log.warning("%s %s: %s", report.action, report.table, warning)
        self.log.info(
            "%s %s%s: created %s; detached %s; dropped %s; archived %s; resumed %s; indexed %s; "
            "rows moved %d %s; skipped %s; %.2f s, %d lock retries",
            report.action,
            report.table,
            " (dry run: nothing changed)" if self.ddl_dry_run else "",
            _names(report.created),
            _names(report.detached),
            _names(report.dropped),
            _names(report.archived),
            _names(report.resumed),
            _names(report.indexed),
            report.rows_moved,
            report.moved or "",
            _names(report.skipped),
            report.seconds,
            report.retries,
        )
        self._lineage_report = report.as_dict()
        return self._lineage_report

    def maintain(self, runner: DdlRunner) -> MaintenanceReport:
        raise NotImplementedError

    def _parse_check(self, build: Callable[[], S]) -> S:
        """A spec built at parse time: a bad setting fails the DAG's import, naming the task."""
        try:
            return build()
        except PartitionConfigError as exc:
            raise ValueError(f"{self.task_id}: {exc}") from None

    def _record_columns(self, conn: Any) -> None:
        """The table's columns for the lineage schema facet (one catalog read; never fails the task)."""
        from etl_platform.common.catalog import resolve_table

        try:
            relation = resolve_table(conn, self.table, "table")
            self._lineage_columns = [(c.name, c.type_name) for c in relation.columns]
        except Exception as exc:  # a missing table is maintain()'s error to report, not this one's
            self.log.debug("No columns for lineage: %s", exc)
        conn.rollback()

    # -- OpenLineage (the provider's listener calls these on the worker after execute) ----------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """The table (schema, rows moved out of the default) and any archive tables written."""
        return self._lineage()

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        """The table the failed run was maintaining."""
        return self._lineage()

    def _lineage(self) -> OperatorLineage:
        from airflow.providers.openlineage.extractors import OperatorLineage

        from etl_platform import lineage
        from etl_platform.assets import AssetUriError, connection_table_uri

        def build() -> OperatorLineage:
            if self._lineage_connection is None:
                raise ValueError(f"connection {self.postgres_conn_id!r} was never read (failed before it)")
            try:
                uri = connection_table_uri(self._lineage_connection, self.table)
            except AssetUriError as exc:  # a socket-directory host: no dataset, as no asset; not an error
                self.log.info("No OpenLineage dataset for %s: %s.", self.table, exc)
                return OperatorLineage()
            return lineage.partition_lineage(uri, self._lineage_columns, self._lineage_report)

        tags = {"dag_id": self.dag_id, "task_id": self.task_id}
        return lineage.guarded(self, build, tags=tags)


def _names(items: list[str]) -> str:
    """A report list for the log line: every name, not a count (`none` when empty)."""
    return f"{len(items)} [{', '.join(items)}]" if items else "none"


class EnsurePartitionsOperator(_PartitionOperator):
    """Make sure partitions exist from ``start`` through ``premake`` intervals past the current one.

    :param postgres_conn_id: Airflow postgres connection.
    :param table: the partitioned table, ``"schema.table"`` (templated).
    :param interval: ``day``, ``week``, ``month``, ``year`` for date/timestamp keys, or an integer
        width for integer keys.
    :param start: first interval to back-fill (a date, or an integer key); default: the current one.
    :param premake: intervals to create ahead of now (integer keys: ahead of the highest key).
    :param lock_timeout: PostgreSQL lock_timeout for each DDL transaction.
    :param max_attempts: attempts per DDL transaction when a lock is not granted in time.
    :param dry_run: log the planned DDL (also in the report's ``planned_sql``) and change nothing.
    """

    template_fields: Sequence[str] = ("table", "start")

    def __init__(self, *, interval: str | int = "month", start: Any = None, premake: int = 3, **kwargs: Any):
        super().__init__(**kwargs)
        self.interval = interval
        self.start = start
        self.premake = premake
        self._parse_check(self.spec)  # start is checked against the table, when the task runs

    def spec(self) -> EnsureSpec:
        return EnsureSpec(self.table, self.interval, start=self.start, premake=self.premake)

    def maintain(self, runner: DdlRunner) -> MaintenanceReport:
        return maintenance.run_ensure(runner, self.spec())


class PartitionRetentionOperator(_PartitionOperator):
    """Detach partitions lying entirely before now - ``retention``; then keep, archive or drop them.

    :param retention: a PostgreSQL interval (``"13 months"``) for date/timestamp keys, or an integer
        distance below the highest key for integer keys (a templated digit string is accepted; an
        empty integer-keyed table is left alone).
    :param mode: ``keep`` (detached table stays where it is), ``archive`` (moved to
        ``archive_schema``) or ``drop``. Dropping is refused when foreign keys reference the table.
    :param concurrently: use DETACH ... CONCURRENTLY where PostgreSQL allows it (no default
        partition); an interrupted concurrent detach past the cutoff is finished on the next run.
        Beside a default partition the detach is a plain one (ACCESS EXCLUSIVE on the parent), and
        the report's ``warnings`` (XCom and log) say so: drain the default and drop it
        (``DrainDefaultPartitionOperator(drop_default=True)``) to keep detaches concurrent.

    A partition detached by a run that then failed (or whose worker died) is recorded in
    ``<schema>.etl_partition_retention`` and archived or dropped by the next run; an archive name
    that is taken gets a suffix (``_1``, ...), reported in ``archived`` and ``warnings``.
    """

    template_fields: Sequence[str] = ("table", "retention")

    def __init__(
        self,
        *,
        retention: str | int,
        mode: RetentionMode = "keep",
        archive_schema: str = "archive",
        concurrently: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.retention = retention
        self.mode = mode
        self.archive_schema = archive_schema
        self.concurrently = concurrently
        self._parse_check(self.spec)  # retention is checked against the table, when the task runs

    def spec(self) -> RetentionSpec:
        return RetentionSpec(
            self.table,
            self.retention,
            mode=self.mode,
            archive_schema=self.archive_schema,
            concurrently=self.concurrently,
        )

    def maintain(self, runner: DdlRunner) -> MaintenanceReport:
        return maintenance.run_retention(runner, self.spec())


class DrainDefaultPartitionOperator(_PartitionOperator):
    """Move rows out of the default partition into proper partitions, creating them as needed.

    One committed transaction per target partition: the default partition's rows never block
    later maintenance. Writes through the parent and reads of the default wait for the range being
    moved; reads pruned to other partitions do not (see ``etl_platform.partitions.create``). Rows
    with a NULL key stay in the default and are reported as a warning.

    :param drop_default: drop the default partition once it is empty (checked under its lock), so
        retention can detach CONCURRENTLY; rows outside every partition are then refused, so keep
        partitions premade with ``EnsurePartitionsOperator``.
    """

    def __init__(self, *, interval: str | int = "month", drop_default: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.interval = interval
        self.drop_default = drop_default
        self._parse_check(self.spec)

    def spec(self) -> DrainSpec:
        return DrainSpec(self.table, self.interval, drop_default=self.drop_default)

    def maintain(self, runner: DdlRunner) -> MaintenanceReport:
        return maintenance.run_drain(runner, self.spec())


class CreatePartitionedIndexOperator(_PartitionOperator):
    """Build an index on a partitioned table without blocking writes; safe to rerun after a failure.

    ON ONLY the parent, CONCURRENTLY on each partition (an invalid leftover from an interrupted run
    is dropped and rebuilt), then ATTACH; the parent index becomes valid when all are attached.
    """

    template_fields: Sequence[str] = ("table", "index_name")

    def __init__(
        self,
        *,
        index_name: str,
        columns: Sequence[str],
        unique: bool = False,
        method: IndexMethod = "btree",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.index_name = index_name
        self.columns = list(columns)
        self.unique = unique
        self.method = method
        self._parse_check(
            lambda: self.spec(index_name=_RENDERED_LATER if _templated(index_name) else index_name)
        )

    def spec(self, index_name: str | None = None) -> IndexSpec:
        return IndexSpec(
            self.table,
            self.index_name if index_name is None else index_name,
            tuple(self.columns),
            unique=self.unique,
            method=self.method,
        )

    def maintain(self, runner: DdlRunner) -> MaintenanceReport:
        return maintenance.run_index(runner, self.spec())
