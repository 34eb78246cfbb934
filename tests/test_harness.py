"""The harness's own tests: isolation of the PG/Redis fixtures, run_dag(), and the embedded fallbacks."""

from __future__ import annotations

import psycopg
import pytest
import redis

from etl_devstack.redis import probe_redis
from harness import (
    PgServer,
    RedisDb,
    SchemaDb,
    resolve_postgres,
    resolve_redis,
    run_dag,
    task_outcomes,
    xcom_value,
)

UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/postgres"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"

_seen: dict[str, str] = {}


@pytest.mark.parametrize("attempt", [1, 2])
def test_pg_schema_isolation(src_db: SchemaDb, dst_db: SchemaDb, attempt: int) -> None:
    # Both runs create the same unqualified table: it must not exist yet in either run.
    assert src_db.schema != _seen.get("src"), "schema reused across tests"
    _seen["src"] = src_db.schema
    assert src_db.dbname != dst_db.dbname
    for db in (src_db, dst_db):
        with db.connect() as conn:
            assert conn.execute("SELECT current_schema()").fetchone() == (db.schema,)
            conn.execute("CREATE TABLE items (id int PRIMARY KEY)")
            conn.execute("INSERT INTO items VALUES (%s)", (attempt,))
            assert conn.execute(f"SELECT count(*) FROM {db.table('items')}").fetchone() == (1,)


def test_pg_server_uri_parses_in_airflow(pg_server: PgServer, src_db: SchemaDb, airflow_home: object) -> None:
    from airflow.models.connection import Connection

    conn = Connection(conn_id="x", uri=src_db.uri())
    assert (conn.conn_type, conn.host, conn.port, conn.login, conn.schema) == (
        "postgres",
        pg_server.host,
        pg_server.port,
        pg_server.user,
        src_db.dbname,
    )
    assert conn.extra_dejson == {"options": f"-csearch_path={src_db.schema}"}
    with psycopg.connect(src_db.uri()) as pg:  # the same URI straight into libpq
        assert pg.execute("SELECT current_schema()").fetchone() == (src_db.schema,)


@pytest.mark.parametrize("attempt", [1, 2])
def test_redis_isolation(redis_db: RedisDb, redis_client: redis.Redis, attempt: int) -> None:
    assert redis_client.dbsize() == 0, "previous test's keys leaked"
    redis_client.set("fixed-key", attempt)
    assert redis_db.url.endswith(f"/{redis_db.index}")
    assert 1 <= redis_db.index <= 15
    other = redis.Redis.from_url(redis_db.url)
    assert other.get("fixed-key") == str(attempt).encode()
    other.close()


@pytest.mark.airflow
def test_run_dag_smoke(airflow_home: object, src_db: SchemaDb) -> None:
    dag_run = run_dag(
        "harness_smoke",
        conf={"echo": "hi", "conn_id": "harness_pg"},
        conn_env={"harness_pg": src_db.uri()},
    )
    assert dag_run.state == "success"
    assert xcom_value(dag_run, "produce") == {"rows": 3, "echo": "hi", "current_schema": src_db.schema}
    assert xcom_value(dag_run, "flaky") == 6
    outcomes = task_outcomes(dag_run)
    assert outcomes["produce"].state == "success" and outcomes["produce"].try_number == 1
    # dag.test() does retry: try 1 failed, try 2 succeeded.
    assert outcomes["flaky"].state == "success" and outcomes["flaky"].try_number == 2
    with pytest.raises(KeyError):
        xcom_value(dag_run, "produce", key="nope")


@pytest.mark.airflow
def test_embedded_fallbacks_start_answer_and_stop(airflow_home: object) -> None:
    pg = resolve_postgres(UNREACHABLE_PG)
    try:
        assert pg.embedded and pg.host.startswith("/"), "expected pgserver's unix-socket server"
        with psycopg.connect(pg.conninfo("postgres"), connect_timeout=3) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with psycopg.connect(pg.uri("postgres"), connect_timeout=3) as conn:  # percent-encoded socket dir
            assert conn.execute("SELECT 1").fetchone() == (1,)
        # The socket-dir URI as an AIRFLOW_CONN_* value, read by a real task.
        uri = pg.uri("postgres", options="-csearch_path=public")
        dag_run = run_dag("harness_smoke", conf={"conn_id": "embedded_pg"}, conn_env={"embedded_pg": uri})
        assert xcom_value(dag_run, "produce")["current_schema"] == "public"
    finally:
        pg.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.conninfo("postgres"), connect_timeout=3)

    rs = resolve_redis(UNREACHABLE_REDIS)
    try:
        assert rs.embedded and rs.url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(rs.db_url(5))
        assert client.ping()
        client.close()
    finally:
        rs.stop()
    assert not probe_redis(rs.url, timeout_s=1)
