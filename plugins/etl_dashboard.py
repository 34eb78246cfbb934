"""Registers the ETL performance dashboard with the api-server: the app at /etl and a page in the UI nav.

Only registration lives here; the app is etl_platform.dashboard (see docs/dashboard.md). create_app()
opens nothing until the api-server starts the app, so importing this in other processes is cheap.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from etl_platform.dashboard.app import create_app


class EtlDashboardPlugin(AirflowPlugin):
    name = "etl_dashboard"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/etl", "name": "ETL performance dashboard"}]
    external_views = [
        {
            "name": "ETL performance",
            "href": "/etl/",
            "destination": "nav",
            "category": "browse",
            "url_route": "etl-performance",
        }
    ]
