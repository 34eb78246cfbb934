"""The provider's Airflow plugin (entry point `airflow.plugins`): the resource monitor and run-event listeners.

run_events also writes the run ledger (listeners/ledger.py) before it publishes a DAG run's change.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from etl_platform.listeners import resource_monitor, run_events


class EtlPlatformPlugin(AirflowPlugin):
    name = "etl_platform"
    listeners = [resource_monitor, run_events]
