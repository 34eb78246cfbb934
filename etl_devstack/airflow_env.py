"""The environment every platform process runs with: config/airflow.env, then the local URLs, ports,
connections, files and secrets on top. Inherited AIRFLOW* variables never leak in."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import quote

from etl_devstack.settings import (
    ADMIN_USER,
    AIRFLOW_ENV_FILE,
    CELERY_CONFIG_FILE,
    CELERY_CONFIG_OPTION,
    DAGS_FOLDER,
    PLUGINS_FOLDER,
    REPO_ROOT,
    SMALL_PROFILE_ENV,
    PlatformSettings,
    PlatformState,
)
from etl_devstack.urls import mysql_connection_uri, sqlalchemy_url
from etl_platform.assets import AssetUriError, postgres_uri


def airflow_bin() -> str:
    """The `airflow` next to this interpreter (the project venv), else the one on PATH."""
    candidate = Path(sys.executable).parent / "airflow"
    return str(candidate) if candidate.exists() else (shutil.which("airflow") or "airflow")


def shared_airflow_settings(path: Path = AIRFLOW_ENV_FILE) -> dict[str, str]:
    """config/airflow.env's AIRFLOW__* settings (plain KEY=value lines), or nothing if it is missing."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs if key.strip().startswith("AIRFLOW__")}


def celery_config_option() -> str | None:
    """`[celery] celery_config_options` when config/celery_config.py exists, else None (the default)."""
    return CELERY_CONFIG_OPTION if CELERY_CONFIG_FILE.exists() else None


def dag_bundles(extra_folders: Iterable[str]) -> str:
    """[dag_processor] dag_bundle_config_list: dags/ as the default bundle ("dags-folder"), then one
    LocalDagBundle per extra folder, named after it."""
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [{"name": "dags-folder", "classpath": local, "kwargs": {"path": str(DAGS_FOLDER)}}]
    for folder in extra_folders:
        path = Path(folder).resolve()
        bundles.append({"name": f"extra-{path.name}", "classpath": local, "kwargs": {"path": str(path)}})
    return json.dumps(bundles)


def _api_host(settings: PlatformSettings) -> str:
    return "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host


def _connections(settings: PlatformSettings, state: PlatformState) -> dict[str, str]:
    """The AIRFLOW_CONN_* the DAGs use, and the warehouse asset's URI, pointing at this platform."""
    server = state.pg_server()
    dbs = state.databases
    # dags/warehouse_assets.py: orders_clean as etl_warehouse below names it, built as the transfer
    # builds it, so the load's resolved URI and the declared asset agree (docker-compose's default is
    # its PgBouncer's). A socket-directory host has no URI: the load then says so itself.
    try:
        uri = postgres_uri(server.host, server.port, dbs["warehouse"], "warehouse.orders_clean")
        orders_clean = {"ETL_ORDERS_CLEAN_ASSET_URI": uri}
    except AssetUriError:
        orders_clean = {}
    return {
        "AIRFLOW_CONN_ETL_SOURCE": server.uri(dbs["source"]),
        "AIRFLOW_CONN_ETL_WAREHOUSE": server.uri(dbs["warehouse"]),
        # The health checks' SHOW POOLS. Without a local PgBouncer this names a database that does not
        # exist: the check reports PgBouncer unavailable (a warning) instead of the DAGs failing to
        # resolve a connection.
        "AIRFLOW_CONN_ETL_PGBOUNCER": (
            f"postgresql://{quote(server.user, safe='')}@127.0.0.1:{state.ports['pgbouncer']}/pgbouncer"
            if state.pgbouncer
            else server.uri("pgbouncer")
        ),
        # config/airflow.env points run events and the dashboard cache at etl_redis_cache; locally
        # that is the one Redis (keys and channels are prefixed etl:, apart from Celery's).
        "AIRFLOW_CONN_ETL_REDIS_CACHE": state.redis_url,
        # etl_ingest_sources' MariaDB source: the server at ETL_PLATFORM_MYSQL_URL, database
        # <prefix>_shop. Set even when MariaDB did not answer at `up`: the task then names the host.
        "AIRFLOW_CONN_ETL_MYSQL_SOURCE": mysql_connection_uri(
            state.mysql.get("url") or settings.mysql_url,
            state.mysql.get("database") or settings.mysql_database,
        ),
        **orders_clean,
    }


def _airflow_settings(
    settings: PlatformSettings, state: PlatformState, airflow_home: Path, passwords_file: Path
) -> dict[str, str]:
    """The Airflow settings that differ locally from config/airflow.env: files, URLs, ports, StatsD."""
    server = state.pg_server()
    metadata_db = sqlalchemy_url(server, state.databases["airflow"])
    statsd_host, statsd_port = settings.statsd_address()
    api_host = _api_host(settings)
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW_CONFIG": str(airflow_home / "airflow.cfg"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{api_host}:{settings.port}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db,
        "AIRFLOW__CELERY__BROKER_URL": state.redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_db,
        "AIRFLOW__API__HOST": settings.host,
        "AIRFLOW__API__PORT": str(settings.port),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": statsd_host,
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd_port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(settings.heartbeat_timeout_s),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(settings.job_schedule),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": api_host,
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(state.ports["scheduler_health"]),
        # Free ports, so two platforms (make up and the e2e test) can run side by side.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(state.ports["worker_log_server"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(state.ports["trigger_log_server"]),
        # plugins/etl_dashboard.py: the dashboard app at /etl and its page in the UI nav.
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
    }


def platform_env(
    settings: PlatformSettings,
    state: PlatformState,
    *,
    airflow_home: Path,
    passwords_file: Path,
    lake_dir: Path,
    secrets: Mapping[str, str],
) -> dict[str, str]:
    """The environment of every platform process (and of `airflow` CLI calls against it).

    Inherited AIRFLOW* variables are dropped: a caller's own Airflow setup (the test suite's
    throwaway SQLite home, say) must not leak into the platform.
    """
    # ETL_LAKE_CONN_ID too: the platform's lake is local files, read without a connection.
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "_AIRFLOW")) and k != "ETL_LAKE_CONN_ID"
    }
    bin_dir = str(Path(sys.executable).parent)
    python_path = [str(REPO_ROOT), *[p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env = {
        **base,
        **shared_airflow_settings(),
        "PATH": os.pathsep.join([bin_dir, base.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(python_path)),
        **_airflow_settings(settings, state, airflow_home, passwords_file),
        **_connections(settings, state),
        # The DAGs' lake (etl_ingest_sources reads drop/orders/, export_orders_month writes exports/).
        "ETL_LAKE_URL": lake_dir.as_uri(),
        **secrets,
    }
    env.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"{ADMIN_USER}:admin")
    option = celery_config_option()
    if option:
        env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] = option
    else:
        env.pop("AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS", None)
    if settings.profile == "small":
        env.update(SMALL_PROFILE_ENV)
    if settings.extra_dag_folders:
        env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = dag_bundles(settings.extra_dag_folders)
    env.update(dict(settings.extra_env))
    return env
