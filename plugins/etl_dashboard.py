"""Registers the ETL performance dashboard with the api-server: the app at /etl, a page in the UI nav and
a "Transfer" tab on the DAG run and task instance pages.

Only registration lives here; the app is etl_platform.dashboard (see docs/dashboard.md). Every Airflow
process imports this module (task processes too, at each start), but only the api-server asks for
`fastapi_apps`: the app (FastAPI, ~2 s of imports in a fresh process) is built on that first request.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.plugins_manager import AirflowPlugin


class EtlDashboardPlugin(AirflowPlugin):
    name = "etl_dashboard"
    external_views = [
        {
            "name": "ETL performance",
            "href": "/etl/",
            "destination": "nav",
            "category": "browse",
            "url_route": "etl-performance",
        },
        # The per-run Transfer view, a tab on the DAG run and task instance pages; the UI fills the
        # placeholders (URL-encoded; {MAP_INDEX} raw, left as is for a task that is not mapped).
        {
            "name": "Transfer",
            "href": "/etl/transfer?dag_id={DAG_ID}&run_id={RUN_ID}",
            "destination": "dag_run",
            "url_route": "etl-transfer-run",
        },
        {
            "name": "Transfer",
            "href": "/etl/transfer?dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}",
            "destination": "task_instance",
            "url_route": "etl-transfer-task",
        },
    ]

    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from etl_platform.dashboard.app import create_app

        return [{"app": create_app(), "url_prefix": "/etl", "name": "ETL performance dashboard"}]
