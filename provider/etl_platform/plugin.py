"""The provider's Airflow plugin (entry point `airflow.plugins`): the resource monitor and ledger listeners."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from etl_platform.listeners import ledger, resource_monitor


class EtlPlatformPlugin(AirflowPlugin):
    name = "etl_platform"
    listeners = [resource_monitor, ledger]
