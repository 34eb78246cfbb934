"""The harness's MariaDB and S3 fixtures, the private-mariadbd fallback, and ETL_TEST_REQUIRE_SERVICES."""

from __future__ import annotations

import os

import MySQLdb
import pytest

from etl_devstack.mariadb import DEFAULT_MYSQL_URL, probe_mysql
from etl_devstack.services import ServiceFallbackWarning, services_required
from harness import (
    MyDb,
    MySqlServer,
    S3Bucket,
    S3Server,
    connections_env,
    resolve_test_mysql,
    resolve_test_postgres,
    resolve_test_redis,
)
from harness.mysqldb import create_my_db, database_name_for, drop_my_db

UNREACHABLE_MYSQL = "mysql://root@127.0.0.1:1/"
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/postgres"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
EMOJI = "snake \U0001f40d and pile \U0001f4a9"  # 4-byte UTF-8: utf8mb4 or nothing


def test_shared_mariadb_answers_and_per_test_database_round_trips(
    mysql_server: MySqlServer, my_db: MyDb
) -> None:
    assert probe_mysql(mysql_server.uri()) is not None
    assert my_db.database.startswith("t_test_shared_mariadb_answers") and len(my_db.database) <= 64
    assert my_db.execute("SELECT DATABASE(), @@character_set_database") == [(my_db.database, "utf8mb4")]
    my_db.execute("CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(100))")
    my_db.execute("INSERT INTO items VALUES (%s, %s), (%s, %s)", (1, EMOJI, 2, "plain"))
    conn = my_db.connect()
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT id, label, CHAR_LENGTH(label), OCTET_LENGTH(label) FROM items ORDER BY id")
        rows = cursor.fetchall()
    finally:
        conn.close()
    assert rows == ((1, EMOJI, len(EMOJI), len(EMOJI.encode())), (2, "plain", 5, 5))
    assert (
        my_db.uri() == f"mysql://{mysql_server.user}@{mysql_server.host}:{mysql_server.port}/{my_db.database}"
    )


def test_my_db_uri_parses_in_airflow(my_db: MyDb) -> None:
    from airflow.models.connection import Connection

    conn = Connection(conn_id="x", uri=my_db.uri())
    assert (conn.conn_type, conn.host, conn.port, conn.login, conn.schema) == (
        "mysql",
        my_db.server.host,
        my_db.server.port,
        my_db.server.user,
        my_db.database,
    )


def test_database_names_are_unique_valid_and_bounded() -> None:
    long_name = "test_" + "x" * 200 + "[param-Üñí-1]"
    names = {database_name_for(long_name) for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert len(name) <= 64 and name.replace("_", "").isalnum() and name.isascii(), name


def test_drop_does_not_hang_on_a_connection_left_in_a_transaction(mysql_server: MySqlServer) -> None:
    db = create_my_db(mysql_server, "leaky")
    db.execute("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
    leaky = db.connect()
    leaky.autocommit(False)
    leaky.cursor().execute("SELECT * FROM t FOR UPDATE")  # holds a metadata lock on t until commit
    try:
        drop_my_db(db)  # kills the connection using the database, then drops it
        check = mysql_server.connect()
        cursor = check.cursor()
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = %s", (db.database,)
        )
        assert cursor.fetchone() == (0,)
        check.close()
    finally:
        leaky.close()


def test_private_mariadbd_fallback_starts_answers_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_TEST_MYSQL_URL", UNREACHABLE_MYSQL)
    monkeypatch.setenv("ETL_TEST_REQUIRE_SERVICES", "0")
    with pytest.warns(
        ServiceFallbackWarning, match=r"MariaDB at mysql://root@127\.0\.0\.1:1/ does not answer"
    ):
        server = resolve_test_mysql()
    workdir = server.workdir
    try:
        assert server.embedded and server.host == "127.0.0.1" and server.port not in (1, 3306)
        assert workdir is not None and workdir.is_dir()
        assert (server.user, server.password) == ("root", None)
        conn = MySQLdb.connect(
            host="127.0.0.1", port=server.port, user="root", password="", charset="utf8mb4", connect_timeout=3
        )
        cursor = conn.cursor()
        cursor.execute("SELECT CURRENT_USER(), @@character_set_server, VERSION() LIKE '%MariaDB%', 6 * 7")
        assert cursor.fetchone() == ("root@127.0.0.1", "utf8mb4", 1, 42)
        conn.close()
        db = create_my_db(server, "private")
        db.execute("CREATE TABLE t (s VARCHAR(50))")
        db.execute("INSERT INTO t VALUES (%s)", (EMOJI,))
        assert db.execute("SELECT s FROM t") == [(EMOJI,)]
        drop_my_db(db)
    finally:
        server.stop()
    assert not workdir.exists()
    assert probe_mysql(server.uri(), timeout_s=1) is None
    server.stop()  # idempotent


def test_require_services_raises_naming_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_TEST_REQUIRE_SERVICES", "1")
    assert services_required()
    monkeypatch.setenv("ETL_TEST_MYSQL_URL", UNREACHABLE_MYSQL)
    with pytest.raises(
        RuntimeError, match=r"ETL_TEST_MYSQL_URL=mysql://root@127\.0\.0\.1:1/ does not answer"
    ):
        resolve_test_mysql()
    monkeypatch.setenv("ETL_TEST_POSTGRES_URL", UNREACHABLE_PG)
    with pytest.raises(
        RuntimeError, match=r"ETL_TEST_POSTGRES_URL=postgresql://postgres@127\.0\.0\.1:1/postgres"
    ):
        resolve_test_postgres()
    monkeypatch.setenv("ETL_TEST_REDIS_URL", UNREACHABLE_REDIS)
    with pytest.raises(RuntimeError, match=r"ETL_TEST_REDIS_URL=redis://127\.0\.0\.1:1/0 does not answer"):
        resolve_test_redis()
    # A password in the URL is not printed.
    monkeypatch.setenv("ETL_TEST_MYSQL_URL", "mysql://root:s3cret@127.0.0.1:1/")
    with pytest.raises(RuntimeError) as info:
        resolve_test_mysql()
    assert "s3cret" not in str(info.value) and "root:***@127.0.0.1:1" in str(info.value)
    for value in ("0", "", "true"):
        monkeypatch.setenv("ETL_TEST_REQUIRE_SERVICES", value)
        assert not services_required()


def test_require_services_lets_an_answering_server_through(monkeypatch: pytest.MonkeyPatch) -> None:
    if probe_mysql(os.environ.get("ETL_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)) is None:
        pytest.skip("no shared MariaDB answers here")
    monkeypatch.setenv("ETL_TEST_REQUIRE_SERVICES", "1")
    server = resolve_test_mysql()
    assert not server.embedded


def test_s3_server_bucket_and_boto3(s3_server: S3Server, s3_bucket: S3Bucket) -> None:
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")
    assert s3_bucket.url("a/b.txt") == f"s3://{s3_bucket.name}/a/b.txt"
    client = s3_server.client()
    assert s3_bucket.name in {b["Name"] for b in client.list_buckets()["Buckets"]}
    client.put_object(Bucket=s3_bucket.name, Key="k", Body=b"v")
    assert client.get_object(Bucket=s3_bucket.name, Key="k")["Body"].read() == b"v"


def test_object_storage_path_round_trip_via_airflow_conn_env(s3_bucket: S3Bucket) -> None:
    from airflow.sdk import ObjectStoragePath

    conn_id = "etl_test_s3_osp"  # a conn id no other test has used: Airflow caches filesystems per conn id
    assert f"AIRFLOW_CONN_{conn_id.upper()}" not in os.environ
    with connections_env({conn_id: s3_bucket.conn_uri}):
        path = ObjectStoragePath(s3_bucket.url("dir/x.txt"), conn_id=conn_id)
        path.write_text(f"hello {EMOJI}")
        assert path.read_text() == f"hello {EMOJI}"
        assert path.exists() and path.stat()["size"] == len(f"hello {EMOJI}".encode())
        assert [p.name for p in ObjectStoragePath(s3_bucket.url("dir/"), conn_id=conn_id).iterdir()] == [
            "x.txt"
        ]
    # The bytes really are on the moto server, under the bucket and key the path named.
    body = s3_bucket.server.client().get_object(Bucket=s3_bucket.name, Key="dir/x.txt")["Body"].read()
    assert body.decode() == f"hello {EMOJI}"


def test_drop_gives_up_instead_of_waiting_forever(
    mysql_server: MySqlServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.mysqldb

    monkeypatch.setattr(harness.mysqldb, "DROP_LOCK_WAIT_TIMEOUT_S", 1)
    db = create_my_db(mysql_server, "locked")
    db.execute("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
    holder = mysql_server.connect()  # no default database: not in the processlist under db.database
    holder.autocommit(False)
    holder.cursor().execute(f"SELECT * FROM `{db.database}`.t FOR UPDATE")
    try:
        with pytest.raises(
            RuntimeError, match=r"gave up after 1 s: a connection still holds an open transaction"
        ):
            drop_my_db(db)
    finally:
        holder.close()
    drop_my_db(db)  # the lock is gone with its connection
    assert mysql_server.connect().cursor().execute("SHOW DATABASES LIKE %s", (db.database,)) == 0
