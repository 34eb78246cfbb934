"""The DAG repository (dags/): parses cleanly and cheaply, routes every task to its queue, and everything
it needs at run time (connections, tables) is provided by docker-compose and by `make up`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
import yaml
from psycopg import sql

from harness import REPO_ROOT, PgServer
from harness.local_platform import described_platform
from harness.postgres import create_database, drop_database

pytestmark = pytest.mark.airflow

DAGS_FOLDER = REPO_ROOT / "dags"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
AIRFLOW_ENV = REPO_ROOT / "config" / "airflow.env"
POSTGRES_INIT = REPO_ROOT / "config" / "postgres-init"
QUEUES = ("extract", "transform", "load", "notifications", "monitoring")  # config/celery_config.py

# The queue each task is meant to run on (docs/architecture.md "Running on Celery"): the transfer and the
# DDL on the load workers, the health gate on extract, the SQL summary on transform, light work on
# notifications, and the monitoring snapshot on a queue of its own.
EXPECTED_QUEUES: dict[str, dict[str, str]] = {
    "etl_orders": {
        "check_platform": "extract",
        "ensure_partitions": "load",
        "load_orders": "load",
        "analyze": "load",
        "notify": "notifications",
    },
    "etl_orders_daily_summary": {"summarize_orders": "transform"},
    "etl_orders_bulk": {
        "plan_ranges": "extract",
        "load_range": "load",
        "analyze": "load",
        "notify": "notifications",
    },
    "partition_maintenance": {
        "migrate_ledger": "load",
        **{
            f"{step}__{slug}": "load"
            for slug in (
                "etl_audit__pipeline_runs",
                "etl_audit__task_runs",
                "etl_audit__task_chunks",
                "warehouse__orders_clean",
            )
            for step in ("ensure", "drain", "retention")
        },
    },
    "performance_monitoring": {"read_platform_health": "monitoring"},
    "demo_orders_transfer": {"migrate_ledger": "load", "ensure_partitions": "load", "load_orders": "load"},
    "etl_ingest_sources": {
        "load_mariadb_orders": "load",
        "load_parquet_drop": "load",
        "notify": "notifications",
    },
    "export_orders_month": {"export_month": "load"},
}
LEDGER_TABLES = ("etl_audit.pipeline_runs", "etl_audit.task_runs")
_WRITES = re.compile(r"\b(?:INSERT\s+INTO|DELETE\s+FROM|UPDATE|LOCK\s+TABLE|TRUNCATE)\s+([a-z_][\w.]*)", re.I)


@pytest.fixture(scope="module")
def dagbag(airflow_home: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert not bag.import_errors, bag.import_errors
    return bag


def _task_args(task: Any) -> dict[str, Any]:
    """A task's constructor arguments as stored on it (a mapped task's partial() arguments)."""
    partial = getattr(task, "partial_kwargs", None)
    return dict(partial) if isinstance(partial, dict) else dict(vars(task))


# ----------------------------------------------------------------------------------------- parsing


def _refuse(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"DAG parsing must not {what}: {args!r:.200}")

    return refuse


def _shared_modules() -> set[str]:
    """Modules DAG files import, not DAG files: dags/.airflowignore, one file name a line."""
    lines = (DAGS_FOLDER / ".airflowignore").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")}


def test_dags_import_without_errors_or_io(airflow_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No import errors, every DAG present, and no connection, variable or database touched at parse time.

    psycopg talks to PostgreSQL through libpq's own C sockets, so patching socket.connect alone would
    miss it: its connect functions are patched too, as are the Task SDK's and the ORM's connection and
    variable look-ups (a DAG reading either at top level would hit the metadata DB or a secrets backend
    on every parse).
    """
    import psycopg2
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.connection import Connection as OrmConnection
    from airflow.models.variable import Variable as OrmVariable
    from airflow.sdk import BaseHook, Connection, Variable

    patched = [
        (socket.socket, "connect", "open a network connection"),
        (psycopg.Connection, "connect", "connect to PostgreSQL (psycopg)"),
        (psycopg.AsyncConnection, "connect", "connect to PostgreSQL (psycopg async)"),
        (psycopg2, "connect", "connect to PostgreSQL (psycopg2)"),
        (BaseHook, "get_connection", "look up a connection"),
        (BaseHook, "aget_connection", "look up a connection"),
        (Connection, "get", "look up a connection"),
        (Connection, "async_get", "look up a connection"),
        (OrmConnection, "get_connection_from_secrets", "look up a connection"),
        (Variable, "get", "read a Variable"),
        (OrmVariable, "get", "read a Variable"),
    ]
    for owner, name, what in patched:
        assert hasattr(owner, name), f"{owner}.{name} is gone: update this test"
        monkeypatch.setattr(owner, name, _refuse(what))
    monkeypatch.setattr(psycopg, "connect", _refuse("connect to PostgreSQL (psycopg)"))

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert not bag.import_errors, bag.import_errors
    assert set(bag.dag_ids) == set(EXPECTED_QUEUES)
    files = {Path(dag.fileloc).name for dag in bag.dags.values()}
    shared, on_disk = _shared_modules(), {path.name for path in DAGS_FOLDER.glob("*.py")}
    assert shared <= on_disk, f".airflowignore names files that are not in dags/: {shared - on_disk}"
    assert files == on_disk - shared, "a file in dags/ defines no DAG"
    maintenance = bag.dags["partition_maintenance"]
    assert len(maintenance.tasks) == 1 + 4 * 3


_PARSE_PROBE = """
import json, sys, time
import airflow.sdk  # what a dag-processor has imported before it parses a file
from airflow.dag_processing.dagbag import DagBag
before = {name.split(".")[0] for name in sys.modules}
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - started
imported = sorted({name.split(".")[0] for name in sys.modules} - before)
print(json.dumps({"seconds": seconds, "imported": imported, "dags": sorted(bag.dag_ids),
                  "errors": {k: str(v) for k, v in bag.import_errors.items()}}))
"""
# What a DAG file must not pull in at parse time: each costs a second or more in a fresh process and
# belongs to the task that uses it (pandas: transforms; FastAPI: the dashboard; drivers and object
# stores: the task's connection; pyarrow: the export engine and file sources, while an export's spec,
# checked at parse time, lives apart from them in transfer/export_spec.py).
HEAVY_AT_PARSE = frozenset(
    {"pandas", "pyarrow", "fastapi", "starlette", "MySQLdb", "s3fs", "polars", "matplotlib"}
)


def test_each_dag_file_parses_cheaply(airflow_home: Path) -> None:
    """Each file, parsed in a fresh interpreter, imports none of HEAVY_AT_PARSE; the seconds are
    printed (timings are measured in benchmarks/, never asserted in tests).

    A fresh process, as the dag-processor parses each file in a child of its own: modules an earlier
    file imported (the provider's operators, pandas...) would otherwise hide what this file costs.
    Airflow itself is imported before, as the dag-processor has it loaded already.
    """
    files = sorted(path for path in DAGS_FOLDER.glob("*.py") if path.name not in _shared_modules())
    # dags/ on the path too, as the dags-folder bundle puts it there for the dag-processor.
    path = [str(REPO_ROOT), str(DAGS_FOLDER), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    results = {}
    for path in files:
        run = subprocess.run(
            [sys.executable, "-c", _PARSE_PROBE, str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        results[path.name] = json.loads(run.stdout.strip().splitlines()[-1])
    print({name: round(r["seconds"], 3) for name, r in results.items()})
    assert results
    for name, result in results.items():
        assert not result["errors"] and result["dags"], (name, result)
        assert HEAVY_AT_PARSE.isdisjoint(result["imported"]), (
            name,
            sorted(HEAVY_AT_PARSE & set(result["imported"])),
        )


# ----------------------------------------------------------------------------------------- routing


def test_every_task_is_routed_to_its_queue(dagbag: Any) -> None:
    """The queue map above, for every task of every DAG; none falls through to the default queue."""
    got = {dag_id: {t.task_id: t.queue for t in dag.tasks} for dag_id, dag in dagbag.dags.items()}
    assert got == EXPECTED_QUEUES
    for dag_id, tasks in got.items():
        assert set(tasks.values()) <= set(QUEUES), f"{dag_id}: {tasks}"
    from config.celery_config import ETL_QUEUES

    assert set(ETL_QUEUES) == set(QUEUES)
    assert {q for tasks in EXPECTED_QUEUES.values() for q in tasks.values()} == set(QUEUES), "an idle queue"


# ----------------------------------------------------------------------------------------- what DAGs need


# `make demo` runs this DAG with `airflow dags test`, giving it its connections itself (scripts/demo.py).
DEMO_DAG, DEMO_SCRIPT = "demo_orders_transfer", REPO_ROOT / "scripts" / "demo.py"


def _dag_conn_ids(dagbag: Any, *, demo: bool = False) -> set[str]:
    conn_ids = set()
    for dag in dagbag.dags.values():
        if (dag.dag_id == DEMO_DAG) != demo:
            continue
        for task in dag.tasks:
            for name, value in _task_args(task).items():
                if name.endswith("conn_id") and isinstance(value, str) and value:
                    assert "{{" not in value, f"{dag.dag_id}.{task.task_id}: templated {name}"
                    conn_ids.add(value)
    return conn_ids


def _settings_conn_ids() -> set[str]:
    """Connection ids the provider's listeners use ([etl_platform] *_conn_id in config/airflow.env)."""
    ids = set()
    for line in AIRFLOW_ENV.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.startswith("AIRFLOW__ETL_PLATFORM__") and key.endswith("_CONN_ID") and value.strip():
            ids.add(value.strip())
    return ids


def _compose_airflow_env() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    return dict(compose["x-airflow-common"]["environment"])


def _local_platform_env(tmp_path: Path, *, pgbouncer: bool) -> dict[str, str]:
    """What `make up` gives every process (nothing started)."""
    return dict(described_platform(tmp_path / "run", pgbouncer=pgbouncer).env())


def test_every_connection_is_provided_by_compose_and_make_up(dagbag: Any, tmp_path: Path) -> None:
    """Each *conn_id the DAGs (and the provider's listeners) use is an AIRFLOW_CONN_* of both platforms."""
    needed = _dag_conn_ids(dagbag) | _settings_conn_ids()
    assert {
        "etl_source",
        "etl_warehouse",
        "etl_pgbouncer",
        "etl_redis_cache",
        "etl_mysql_source",
    } <= needed, needed
    compose = {
        k.removeprefix("AIRFLOW_CONN_").lower()
        for k in _compose_airflow_env()
        if k.startswith("AIRFLOW_CONN_")
    }
    assert needed <= compose, f"docker-compose.yaml lacks AIRFLOW_CONN_* for {sorted(needed - compose)}"
    for pgbouncer in (True, False):
        env = _local_platform_env(tmp_path / str(pgbouncer), pgbouncer=pgbouncer)
        local = {
            k.removeprefix("AIRFLOW_CONN_").lower()
            for k, v in env.items()
            if k.startswith("AIRFLOW_CONN_") and v
        }
        assert needed <= local, f"`make up` lacks AIRFLOW_CONN_* for {sorted(needed - local)}"
    demo = _dag_conn_ids(dagbag, demo=True)
    assert demo and all(f'"AIRFLOW_CONN_{c.upper()}"' in DEMO_SCRIPT.read_text() for c in demo), demo
    source = _compose_airflow_env()["AIRFLOW_CONN_ETL_SOURCE"]
    assert re.fullmatch(r"\$\{ETL_SOURCE_URL:\?[^}]+\}", source), (
        source
    )  # a secret: from .env, never a default


def test_orders_clean_asset_is_where_each_platforms_warehouse_resolves(
    dagbag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The declared orders_clean URI equals what the loads resolve from etl_warehouse (else every load
    logs a mismatch): compose uses warehouse_assets' default (its PgBouncer), `make up` sets its own."""
    import importlib

    from airflow.models.connection import Connection

    import warehouse_assets
    from etl_platform.assets import connection_table_uri

    tables = {
        dagbag.dags["etl_orders"].get_task("load_orders").destination_table,
        dagbag.dags["etl_orders_bulk"].get_task("load_range").partial_kwargs["destination_table"],
    }
    assert tables == {"warehouse.orders_clean"}, tables
    compose = _compose_airflow_env()
    assert "ETL_ORDERS_CLEAN_ASSET_URI" not in compose
    warehouse = re.sub(r"\$\{[^}]+\}", "secret", compose["AIRFLOW_CONN_ETL_WAREHOUSE"])
    monkeypatch.delenv("ETL_ORDERS_CLEAN_ASSET_URI", raising=False)
    try:
        default = importlib.reload(warehouse_assets).ORDERS_CLEAN.uri
    finally:
        monkeypatch.undo()
        importlib.reload(warehouse_assets)
    assert default == connection_table_uri(Connection(uri=warehouse), "warehouse.orders_clean")
    for pgbouncer in (True, False):
        env = _local_platform_env(tmp_path / str(pgbouncer), pgbouncer=pgbouncer)
        resolved = connection_table_uri(
            Connection(uri=env["AIRFLOW_CONN_ETL_WAREHOUSE"]), "warehouse.orders_clean"
        )
        assert env["ETL_ORDERS_CLEAN_ASSET_URI"] == resolved != default, (
            env["ETL_ORDERS_CLEAN_ASSET_URI"],
            resolved,
        )


def test_mariadb_source_is_the_shop_database_on_both_platforms(dagbag: Any, tmp_path: Path) -> None:
    """etl_mysql_source names its database (the connection's schema), so the DAG names the table alone:
    compose's `mariadb` service creates `shop`, `make up` its `<prefix>_shop` (etl_devstack.platform)."""
    load = dagbag.dags["etl_ingest_sources"].get_task("load_mariadb_orders")
    assert load.source_conn_id == "etl_mysql_source" and "." not in load.source_table, load.source_table
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    url = _compose_airflow_env()["AIRFLOW_CONN_ETL_MYSQL_SOURCE"]
    assert re.fullmatch(r"mysql://root:\$\{MARIADB_ROOT_PASSWORD:\?[^}]+\}@mariadb:3306/shop", url), url
    mariadb = compose["services"]["mariadb"]
    assert mariadb["environment"]["MARIADB_DATABASE"] == "shop"
    assert mariadb["environment"]["MARIADB_ROOT_PASSWORD"].startswith("${MARIADB_ROOT_PASSWORD:?")
    assert mariadb.get("healthcheck", {}).get("test"), "mariadb: no healthcheck"
    platform = described_platform(tmp_path / "run")
    local = urlsplit(platform.env()["AIRFLOW_CONN_ETL_MYSQL_SOURCE"])
    assert local.scheme == "mysql" and local.hostname and local.username, local
    assert unquote(local.path.lstrip("/")) == platform.settings.mysql_database == "etl_shop"


def test_the_lake_is_local_files_on_both_platforms(
    dagbag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file tasks read and write under ETL_LAKE_URL with ETL_LAKE_CONN_ID's connection (none: local
    files). Compose points it at the `lake` volume every worker mounts, `make up` at a folder of its run
    directory; neither sets ETL_LAKE_CONN_ID, so no lake connection is needed."""
    lake_tasks = {
        (dag.dag_id, task.task_id): _task_args(task)
        for dag in dagbag.dags.values()
        for task in dag.tasks
        if _task_args(task).get("source_path") or _task_args(task).get("destination_path")
    }
    assert set(lake_tasks) == {
        ("etl_ingest_sources", "load_parquet_drop"),
        ("export_orders_month", "export_month"),
    }
    drop = lake_tasks["etl_ingest_sources", "load_parquet_drop"]
    export = lake_tasks["export_orders_month", "export_month"]
    assert drop["source_path"].endswith("/drop/orders/")  # a prefix: every file under it, none is fine
    # The f-string kept Jinja's braces: rendered per run, e.g. .../exports/orders/month=2026-01
    assert export["destination_path"].endswith(
        "/exports/orders/month={{ data_interval_start.strftime('%Y-%m') }}"
    )
    if not os.environ.get("ETL_LAKE_CONN_ID"):
        assert drop["source_conn_id"] is None and export["destination_conn_id"] is None
    compose_env = _compose_airflow_env()
    assert "ETL_LAKE_CONN_ID" not in compose_env
    lake = urlsplit(compose_env["ETL_LAKE_URL"])
    assert lake.scheme == "file" and lake.path == "/opt/airflow/lake", compose_env["ETL_LAKE_URL"]
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for name in [n for n in services if n.startswith("worker-")] + ["airflow-init"]:
        mounts = [str(v) for v in services[name]["volumes"] if isinstance(v, str)]
        assert f"lake:{lake.path}" in mounts, f"{name} does not mount the lake volume at {lake.path}"
    monkeypatch.setenv("ETL_LAKE_CONN_ID", "someone_elses_s3")  # a caller's setting must not leak in
    platform = described_platform(tmp_path / "run")
    env = platform.env()
    assert "ETL_LAKE_CONN_ID" not in env
    assert env["ETL_LAKE_URL"] == (tmp_path / "run" / "lake").resolve().as_uri()


def _written_tables(dagbag: Any) -> set[str]:
    """Tables the DAGs' tasks write (or run DDL on): operator arguments and their SQL files."""
    tables = set()
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            args = _task_args(task)
            for name in ("destination_table", "table"):
                if isinstance(args.get(name), str):
                    tables.add(args[name])
            if args.get("ledger_conn_id"):
                tables.update(LEDGER_TABLES)
            statement = args.get("sql")  # a .sql template file, which parsing has already read in
            if isinstance(statement, str) and statement.endswith(".sql"):
                roots = [Path(root) for root in dag.template_searchpath or []]
                statement = next(
                    (root / statement).read_text() for root in roots if (root / statement).exists()
                )
            if isinstance(statement, str):
                tables.update(t.lower() for t in _WRITES.findall(statement))
    return tables


@pytest.fixture
def scratch_db(pg_server: PgServer) -> Iterator[str]:
    name = create_database(pg_server, "etl_test_compose_init")
    yield name
    drop_database(pg_server, name)


def test_compose_init_creates_every_table_the_dags_write(
    dagbag: Any, pg_server: PgServer, scratch_db: str
) -> None:
    """config/postgres-init's script, run with psql as the postgres image would, creates each table the
    DAGs write in the warehouse database (the ledger's too: the scheduler's listener writes it from the
    first run)."""
    written = _written_tables(dagbag)
    landing = {"warehouse.orders_oltp", "warehouse.orders_drop"}  # include/sql/warehouse/orders_sources.sql
    assert {"warehouse.orders_clean", "warehouse.orders_daily", *landing, *LEDGER_TABLES} <= written, written
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in compose["services"]["postgres"]["volumes"]}
    assert mounts["/docker-entrypoint-initdb.d"] == "./config/postgres-init"
    assert mounts["/etl-sql"] == "./include/sql"  # the script's default ETL_SQL_DIR
    assert "CREATE DATABASE warehouse" in (POSTGRES_INIT / "01-etl-databases.sql").read_text()
    script = POSTGRES_INIT / "02-etl-warehouse.sh"
    assert os.access(script, os.X_OK), "the entrypoint sources non-executable scripts in its own shell"
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("no psql here (Debian package postgresql-client); the table list above was still checked")
    env = {
        **os.environ,
        "POSTGRES_USER": pg_server.user,
        "PGHOST": pg_server.host,
        "PGPORT": str(pg_server.port),
        "ETL_WAREHOUSE_DB": scratch_db,
        "ETL_SQL_DIR": str(REPO_ROOT / "include" / "sql"),
    }
    if pg_server.password:
        env["PGPASSWORD"] = pg_server.password
    started = time.monotonic()
    run = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    print(f"compose init in {time.monotonic() - started:.1f} s")
    with psycopg.connect(pg_server.conninfo(scratch_db), autocommit=True) as conn:
        missing = [
            t for t in sorted(written) if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone() == (None,)
        ]
        assert not missing, f"the compose init does not create {missing}"
        kind = conn.execute(
            sql.SQL("SELECT relkind FROM pg_class WHERE oid = {}::regclass").format(
                sql.Literal("warehouse.orders_clean")
            )
        ).fetchone()
    assert kind == ("p",), "orders_clean must be the partitioned table ensure_partitions expects"
