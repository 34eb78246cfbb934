"""The small pieces `make up` and `make demo` share (etl_devstack): URLs fit to print or to hand on,
PgBouncer's config, the run folder's private files, recorded settings, readiness of a health report.

Each must hold on its own: a URL printed with its password, a secrets file readable by others or
regenerated on every `up`, a pgbouncer.ini listening beyond loopback would all pass the e2e tests.
"""

from __future__ import annotations

import configparser
import json
import stat
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from psycopg import sql

from etl_devstack.pgbouncer import pgbouncer_answers, pgbouncer_ini, write_platform_config
from etl_devstack.postgres import PgServer
from etl_devstack.provisioning import create_databases, table_exists
from etl_devstack.readiness import all_healthy, heartbeat_since
from etl_devstack.runfiles import ensure_passwords, free_port, load_or_create_secrets, write_private
from etl_devstack.settings import SMALL_WORKERS, PlatformSettings, PlatformState, WorkerSpec
from etl_devstack.urls import mysql_connection_uri, redact_url, sqlalchemy_url


@pytest.mark.parametrize(
    ("url", "printed"),
    [
        ("postgresql://etl:s3cret@db:5432/etl", "postgresql://etl:***@db:5432/etl"),
        ("mysql://root:p%40ss@127.0.0.1:3306/", "mysql://root:***@127.0.0.1:3306/"),
        ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql://postgres@127.0.0.1:5432/postgres"),
    ],
)
def test_redact_url_hides_the_password_only(url: str, printed: str) -> None:
    assert redact_url(url) == printed


def test_sqlalchemy_url_tcp_and_socket_directory() -> None:
    tcp = PgServer("db.local", 5433, "etl user", "p@ss/word")
    assert (
        sqlalchemy_url(tcp, "etl_airflow")
        == "postgresql+psycopg://etl%20user:p%40ss%2Fword@db.local:5433/etl_airflow"
    )
    socket_dir = PgServer("/tmp/etl-pg-x/pgdata", 5432, "postgres", None)
    assert (
        sqlalchemy_url(socket_dir, "etl_airflow", driver="postgresql")
        == "postgresql://postgres@/etl_airflow?host=/tmp/etl-pg-x/pgdata&port=5432"
    )


def test_mysql_connection_uri_encodes_the_login_and_keeps_the_socket() -> None:
    uri = mysql_connection_uri(
        "mysql://shop:p%40ss@db:3307/ignored?unix_socket=/run/mysqld/m.sock", "etl_shop"
    )
    assert uri == "mysql://shop:p%40ss@db:3307/etl_shop?unix_socket=/run/mysqld/m.sock"
    assert mysql_connection_uri("mysql://", "etl_shop") == "mysql://root@127.0.0.1:3306/etl_shop"


def test_a_non_mysql_url_is_refused_without_printing_its_password() -> None:
    with pytest.raises(ValueError, match="ETL_PLATFORM_MYSQL_URL must be a mysql:// URL") as raised:
        mysql_connection_uri("postgresql://root:topsecret@db/", "etl_shop")
    assert "topsecret" not in str(raised.value)


def test_pgbouncer_ini_listens_on_loopback_with_the_given_pool(tmp_path: Path) -> None:
    text = pgbouncer_ini(
        {"warehouse": "host=db port=5432 dbname=etl_warehouse user=etl pool_mode=session"},
        port=6544,
        auth_file=tmp_path / "userlist.txt",
        admin_user="etl",
        pool_size=7,
        max_client_conn=70,
    )
    ini = configparser.ConfigParser()
    ini.read_string(text)
    assert dict(ini["databases"]) == {
        "warehouse": "host=db port=5432 dbname=etl_warehouse user=etl pool_mode=session"
    }
    bouncer = ini["pgbouncer"]
    assert (bouncer["listen_addr"], bouncer["listen_port"], bouncer["unix_socket_dir"]) == (
        "127.0.0.1",
        "6544",
        "",
    )
    assert (bouncer["admin_users"], bouncer["stats_users"], bouncer["auth_type"]) == ("etl", "etl", "trust")
    assert (bouncer["pool_mode"], bouncer["default_pool_size"], bouncer["max_client_conn"]) == (
        "transaction",
        "7",
        "70",
    )
    assert "user" not in bouncer
    with_user = configparser.ConfigParser()
    with_user.read_string(
        pgbouncer_ini(
            {}, port=1, auth_file=tmp_path, admin_user="a", pool_size=1, max_client_conn=1, run_as="nobody"
        )
    )
    assert with_user["pgbouncer"]["user"] == "nobody"


def test_the_platforms_pgbouncer_config_is_private_and_session_pools_the_warehouse(tmp_path: Path) -> None:
    state = PlatformState(
        postgres={"host": "127.0.0.1", "port": 5432, "user": "etl", "password": "pw", "embedded": False},
        redis_url="redis://127.0.0.1:6379/0",
        redis_embedded=False,
        ports={"pgbouncer": 6432},
        databases={"airflow": "etl_airflow", "source": "etl_source", "warehouse": "etl_warehouse"},
    )
    ini_path = write_platform_config(tmp_path / "pgbouncer", state)
    ini = configparser.ConfigParser()
    ini.read(ini_path)
    assert ini["databases"]["warehouse"] == (
        "host=127.0.0.1 port=5432 dbname=etl_warehouse user=etl password=pw pool_mode=session"
    )
    assert ini["pgbouncer"]["listen_port"] == "6432"
    users = Path(ini["pgbouncer"]["auth_file"])
    assert users.read_text() == '"etl" ""\n'
    for path in (ini_path, users):  # the warehouse password is in the ini
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_pgbouncer_answers_is_false_where_nothing_listens() -> None:
    assert pgbouncer_answers(free_port(), "postgres") is False


def test_write_private_creates_0600_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "secret.txt"
    write_private(path, "one")
    write_private(path, "two")
    assert path.read_text() == "two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret.txt"]  # no .tmp left


def test_secrets_are_generated_once_per_run_folder(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    first = load_or_create_secrets(path)
    assert set(first) == {
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__CORE__FERNET_KEY",
    }
    assert all(len(value) >= 32 for value in first.values())
    assert load_or_create_secrets(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_ensure_passwords_adds_missing_users_and_keeps_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "passwords.json"
    write_private(path, '{"admin": "kept"}')
    ensure_passwords(path, ["admin", "viewer"])
    passwords = json.loads(path.read_text())
    assert passwords["admin"] == "kept"
    assert len(passwords["viewer"]) >= 12
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_recorded_settings_round_trip_through_platform_json() -> None:
    started = PlatformSettings.for_profile(
        "small", port=8099, extra_dag_folders=("tests/dags",), extra_env=(("A", "1"),)
    )
    recorded = asdict(started)
    # JSON turns tuples into lists
    recorded["workers"] = [{**w, "queues": list(w["queues"])} for w in recorded["workers"]]
    recorded["extra_env"] = [list(pair) for pair in recorded["extra_env"]]
    assert PlatformSettings().with_recorded(recorded) == started
    assert PlatformSettings().with_recorded(recorded).workers == SMALL_WORKERS  # type: ignore[union-attr]
    without_workers = {k: v for k, v in recorded.items() if k != "workers"}
    assert PlatformSettings().with_recorded(without_workers) is None
    assert replace(started, workers=(WorkerSpec("x", ("default",), 1),)) != started


def test_readiness_of_a_health_report() -> None:
    since = datetime(2026, 1, 1, 12, tzinfo=UTC)
    beat = {"status": "healthy", "latest_dag_processor_heartbeat": (since + timedelta(seconds=1)).isoformat()}
    old = {"status": "healthy", "latest_scheduler_heartbeat": (since - timedelta(seconds=1)).isoformat()}
    assert heartbeat_since({"dag_processor": beat}, "dag-processor", since)
    assert not heartbeat_since({"scheduler": old}, "scheduler", since)  # a dead one's last beat
    assert not heartbeat_since({"dag_processor": {**beat, "status": "unhealthy"}}, "dag-processor", since)
    healthy = {p: {"status": "healthy"} for p in ("metadatabase", "scheduler", "triggerer", "dag_processor")}
    assert all_healthy(healthy)
    assert not all_healthy({**healthy, "triggerer": {"status": "unhealthy"}})
    assert not all_healthy(None)


def test_create_databases_and_table_exists(pg_server: PgServer) -> None:
    name = f"etl_units_{free_port()}"
    try:
        with pg_server.connect() as admin:
            create_databases(admin, [name])
            create_databases(admin, [name])  # again: nothing to do, no error
        with pg_server.connect(name) as conn:
            assert not table_exists(conn, "public.orders")
            conn.execute("CREATE TABLE public.orders (id int)")
            assert table_exists(conn, "public.orders")
    finally:
        with pg_server.connect() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
