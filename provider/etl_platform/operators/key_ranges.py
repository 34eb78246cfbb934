"""KeyRangePlanOperator: splits a table's key space so one load can fan out over many workers.

Returns a list of ``{"key_min": ..., "key_max": ...}`` dicts for
``StreamingTransferOperator.partial(...).expand_kwargs(...)``: each mapped task moves its own
range, resumes on its own checkpoint, and runs wherever a Celery worker is free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from etl_platform.hooks.postgres import EtlPostgresHook
from etl_platform.profiling import ProfiledExecute
from etl_platform.transfer.catalog import has_unique_index_on, resolve_table
from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.ranges import key_ranges


class KeyRangePlanOperator(ProfiledExecute, BaseOperator):
    """Plan ``ranges`` key ranges of roughly equal row counts over ``source_table``.

    :param source_conn_id: Airflow postgres connection of the source.
    :param source_table: ``"schema.table"`` (templated).
    :param key_column: ordered unique key (default: the single-column primary key).
    :param ranges: how many ranges (mapped tasks) to plan.
    """

    template_fields: Sequence[str] = ("source_table",)

    def __init__(
        self,
        *,
        source_conn_id: str,
        source_table: str,
        key_column: str | None = None,
        ranges: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(ranges, int) or not 1 <= ranges <= 1024:
            raise ValueError(f"{self.task_id}: ranges must be an integer from 1 to 1024, got {ranges!r}.")
        self.source_conn_id = source_conn_id
        self.source_table = source_table
        self.key_column = key_column
        self.ranges = ranges

    def execute(self, context: Context) -> list[dict[str, str | None]]:
        from psycopg import sql

        with EtlPostgresHook(self.source_conn_id).get_conn() as conn:
            try:
                rel = resolve_table(conn, self.source_table, "source_table")
                key = self.key_column or (rel.primary_key[0] if len(rel.primary_key) == 1 else "")
                rel.require_column(key, "key_column")
                if not has_unique_index_on(conn, rel, key):
                    raise TransferConfigError(f"key_column {key!r} of {rel.label} has no unique index.")
            except TransferConfigError as exc:
                raise AirflowFailException(str(exc)) from None
            ranges = key_ranges(conn, rel.ident, sql.Identifier(key), sql.SQL("TRUE"), rel, self.ranges)
        planned = [{"key_min": lo, "key_max": hi} for lo, hi in ranges]
        self.log.info("planned %d key ranges over %s.%s: %s", len(planned), rel.label, key, planned)
        return planned
