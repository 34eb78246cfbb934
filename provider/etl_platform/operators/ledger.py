"""EnsureLedgerSchemaOperator: creates or upgrades the run ledger (etl_audit) before it is used."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator, Context

from etl_platform.hooks.postgres import EtlPostgresHook
from etl_platform.ledger.migrate import migrate
from etl_platform.profiling import ProfiledExecute


class EnsureLedgerSchemaOperator(ProfiledExecute, BaseOperator):
    """Apply include/sql migrations to the ledger database; a no-op when it is up to date.

    :param postgres_conn_id: Airflow postgres connection of the ledger database.
    """

    ui_color = "#fff3c6"

    def __init__(self, *, postgres_conn_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id

    def execute(self, context: Context) -> list[str]:
        with EtlPostgresHook(self.postgres_conn_id).get_conn() as conn:
            applied = migrate(conn)
        self.log.info("ledger migrations applied: %s", ", ".join(applied) or "none (up to date)")
        return applied
