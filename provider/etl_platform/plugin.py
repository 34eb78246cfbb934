"""The provider's Airflow plugin (entry point `airflow.plugins`): loads the resource monitor listener."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from etl_platform.listeners import resource_monitor


class EtlPlatformPlugin(AirflowPlugin):
    name = "etl_platform"
    listeners = [resource_monitor]
