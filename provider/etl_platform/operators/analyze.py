"""AnalyzeTableOperator: refresh planner statistics after a load, so the next queries plan well."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from etl_platform.common.errors import EtlError, is_terminal
from etl_platform.hooks.postgres import EtlPostgresHook
from etl_platform.profiling import ProfiledExecute
from etl_platform.transfer.catalog import resolve_table


class AnalyzeTableOperator(ProfiledExecute, BaseOperator):
    """Run ANALYZE on ``table`` (templated); a partitioned table's partitions are analyzed too."""

    template_fields: Sequence[str] = ("table",)

    def __init__(self, *, postgres_conn_id: str, table: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id
        self.table = table

    def execute(self, context: Context) -> str:
        from psycopg import sql

        with EtlPostgresHook(self.postgres_conn_id).get_conn() as conn:
            try:
                rel = resolve_table(conn, self.table, "table")
            except EtlError as exc:
                if is_terminal(exc):  # a missing table: no retry will create it
                    raise AirflowFailException(str(exc)) from None
                raise
            conn.execute(sql.SQL("ANALYZE {}").format(rel.ident))
            conn.commit()
        self.log.info("analyzed %s", rel.label)
        return rel.label
