"""StreamingTransferOperator with MariaDB and file sources, run for real through dag.test()."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from benchmarks.datagen import ORDERS_COLUMNS, create_empty_like_orders, create_orders, orders_arrow_schema
from benchmarks.datagen_mysql import create_mysql_orders
from harness import REPO_ROOT, run_dag, task_outcomes, xcom_value

pytestmark = pytest.mark.airflow

ROWS = 5_000


@pytest.fixture
def mysql_orders(my_db: Any, dst_db: Any) -> dict[str, Any]:
    with my_db.connect() as conn:
        create_mysql_orders(conn, my_db.database, rows=ROWS, days=20)
    create_empty_like_orders(dst_db.connect(), "orders", schema=dst_db.schema)
    return {
        "conf": {"source_table": f"{my_db.database}.orders", "destination_table": dst_db.table("orders")},
        "conns": {"etl_test_mysql": my_db.uri(), "etl_test_dst": dst_db.uri()},
    }


def _pg_rows(dst_db: Any) -> list[tuple[Any, ...]]:
    """Every row as Python values; order_ts as the naive UTC datetime MariaDB's DATETIME holds."""
    cols = ", ".join(c if c != "order_ts" else "order_ts AT TIME ZONE 'UTC'" for c in ORDERS_COLUMNS)
    with dst_db.connect() as conn:
        return conn.execute(f"SELECT {cols} FROM {dst_db.table('orders')} ORDER BY id").fetchall()


def _my_rows(my_db: Any) -> list[tuple[Any, ...]]:
    return my_db.execute(f"SELECT {', '.join(ORDERS_COLUMNS)} FROM orders ORDER BY id")


@pytest.mark.parametrize("scheme", ["mysql", "mariadb"])  # a mariadb:// URI makes conn_type "mariadb"
def test_mariadb_table_through_dag_test(
    mysql_orders: dict[str, Any], my_db: Any, dst_db: Any, scheme: str
) -> None:
    conns = {k: v.replace("mysql://", f"{scheme}://", 1) for k, v in mysql_orders["conns"].items()}
    run = run_dag("mysql_to_postgres", conf=mysql_orders["conf"], conn_env=conns)
    assert task_outcomes(run)["transfer"].state == "success"
    summary = xcom_value(run, "transfer")
    assert summary["rows"] == ROWS and summary["parallelism"] == 2 and summary["copy_format"] == "csv"
    assert summary["source"] == f"{my_db.database}.orders"
    assert summary["consistency"].startswith("one snapshot instant for 2 streams")
    assert _pg_rows(dst_db) == [tuple(r) for r in _my_rows(my_db)]


@pytest.mark.parametrize(
    ("uri_of", "expected", "tries"),
    [
        # Nothing listens on port 1: refused, which a retry may fix once the server is back.
        (lambda db: "mysql://root:s3cret-pw@127.0.0.1:1/x", "'etl_test_mysql' to 127.0.0.1:1 failed", 3),
        # A wrong password: no retry can fix it.
        (
            lambda db: db.uri().replace("mysql://root@", "mysql://root:s3cret-pw@"),
            "'etl_test_mysql' to 127.0.0.1:",
            1,
        ),
    ],
)
def test_unreachable_mariadb_names_connection_and_host_never_the_password(
    mysql_orders: dict[str, Any],
    my_db: Any,
    capfd: pytest.CaptureFixture[str],
    uri_of: Any,
    expected: str,
    tries: int,
) -> None:
    if tries == 1 and my_db.server.password:
        pytest.fail("the wrong-password case needs a server whose root has no password")
    conns = {**mysql_orders["conns"], "etl_test_mysql": uri_of(my_db)}
    capfd.readouterr()
    run = run_dag("mysql_unreachable", conf=mysql_orders["conf"], conn_env=conns)
    outcome = task_outcomes(run)["transfer"]
    assert (outcome.state, outcome.try_number) == ("failed", tries)
    output = "".join(capfd.readouterr())
    assert expected in output
    assert "s3cret-pw" not in output


def test_postgres_only_import_needs_no_extra_and_a_missing_extra_is_named() -> None:
    """Importing the operator pulls in neither MySQLdb nor s3fs; a task that needs one says which extra."""
    script = (
        "import sys\n"
        "sys.modules['MySQLdb'] = None  # as if the [mysql] extra were not installed\n"
        "import etl_platform.operators.transfer\n"
        "print(sorted(m for m in ('MySQLdb', 's3fs', 'boto3') if sys.modules.get(m) is not None))\n"
        "from etl_platform.extras import MissingExtraError, require\n"
        "try:\n"
        "    require('MySQLdb', 'mysql', 'a MariaDB/MySQL source')\n"
        "except MissingExtraError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=True,
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "[]"
    assert lines[-1] == (
        "a MariaDB/MySQL source needs the [mysql] extra (MySQLdb is not installed): "
        "pip install 'airflow-provider-etl-platform[mysql]'"
    )


# -- files -------------------------------------------------------------------------------------------


def _orders_as_parquet(src_db: Any, write: Any, files: int = 3) -> list[tuple[Any, ...]]:
    """The generated orders as `files` Parquet files (written with `write(index, table)`); returns the rows."""
    import pyarrow as pa

    with src_db.connect() as conn:
        create_orders(conn, schema=src_db.schema, rows=ROWS, days=20)
        rows = conn.execute(
            f"SELECT {', '.join(ORDERS_COLUMNS)} FROM {src_db.table('orders')} ORDER BY id"
        ).fetchall()
    schema = orders_arrow_schema()
    per_file = -(-len(rows) // files)
    for index in range(files):
        part = rows[index * per_file : (index + 1) * per_file]
        write(index, pa.table(list(zip(*part, strict=True)), schema=schema))
    return rows


def _loaded(dst_db: Any) -> list[tuple[Any, ...]]:
    with dst_db.connect() as conn:
        return conn.execute(
            f"SELECT {', '.join(ORDERS_COLUMNS)} FROM {dst_db.table('orders')} ORDER BY id"
        ).fetchall()


def test_local_parquet_folder_through_dag_test(src_db: Any, dst_db: Any, tmp_path: Any) -> None:
    import pyarrow.parquet as pq

    rows = _orders_as_parquet(
        src_db, lambda i, t: pq.write_table(t, tmp_path / f"part-{i}.parquet", row_group_size=700)
    )
    create_empty_like_orders(dst_db.connect(), "orders", schema=dst_db.schema)
    conf = {"source_path": f"file://{tmp_path}/", "destination_table": dst_db.table("orders")}
    for attempt in (1, 2):  # upsert: dropping the same files again changes nothing
        run = run_dag("files_local_to_postgres", conf=conf, conn_env={"etl_test_dst": dst_db.uri()})
        assert task_outcomes(run)["transfer"].state == "success", attempt
        summary = xcom_value(run, "transfer")
        assert summary["rows"] == ROWS and summary["files"] == [
            f"{tmp_path}/part-{i}.parquet" for i in range(3)
        ]
        assert _loaded(dst_db) == rows


def test_s3_prefix_through_dag_test(src_db: Any, dst_db: Any, s3_bucket: Any) -> None:
    import io

    import pyarrow.parquet as pq

    client = s3_bucket.server.client()

    def upload(index: int, table: Any) -> None:
        buffer = io.BytesIO()
        pq.write_table(table, buffer, row_group_size=1000)
        client.put_object(
            Bucket=s3_bucket.name, Key=f"drop/orders/part-{index}.parquet", Body=buffer.getvalue()
        )

    rows = _orders_as_parquet(src_db, upload)
    create_empty_like_orders(dst_db.connect(), "orders", schema=dst_db.schema)
    conns = {"etl_test_dst": dst_db.uri(), **s3_bucket.conn_env}
    conf = {"source_path": s3_bucket.url("drop/orders/"), "destination_table": dst_db.table("orders")}
    run = run_dag("files_s3_to_postgres", conf=conf, conn_env=conns)
    assert task_outcomes(run)["transfer"].state == "success"
    summary = xcom_value(run, "transfer")
    assert summary["rows"] == ROWS
    assert summary["files"] == [f"{s3_bucket.name}/drop/orders/part-{i}.parquet" for i in range(3)]
    assert _loaded(dst_db) == rows

    # An empty prefix with allow_empty=False fails for good, naming what matched nothing.
    run = run_dag(
        "files_s3_to_postgres", conf={**conf, "source_path": s3_bucket.url("nothing/here/")}, conn_env=conns
    )
    assert task_outcomes(run)["transfer"].state == "failed"


def test_export_to_s3_parquet_through_dag_test(src_db: Any, s3_bucket: Any) -> None:
    """Every row lands exactly once, readable by pyarrow as a Hive dataset; nothing temporary is left."""
    import pyarrow.dataset as ds
    import s3fs

    with src_db.connect() as conn:
        create_orders(conn, schema=src_db.schema, rows=ROWS, days=20)
        rows = conn.execute(
            f"SELECT {', '.join(ORDERS_COLUMNS)} FROM {src_db.table('orders')} ORDER BY id"
        ).fetchall()
    conf = {"source_table": src_db.table("orders"), "destination_path": s3_bucket.url("exports/orders")}
    conns = {"etl_test_src": src_db.uri(), **s3_bucket.conn_env}
    run = run_dag("postgres_to_s3_parquet", conf=conf, conn_env=conns)
    assert task_outcomes(run)["export"].state == "success"
    summary = xcom_value(run, "export")
    assert summary["rows"] == ROWS

    fs = s3fs.S3FileSystem(
        key="testing", secret="testing", client_kwargs={"endpoint_url": s3_bucket.server.endpoint_url}
    )
    names = fs.find(f"{s3_bucket.name}/exports/orders")
    parquet = [n for n in names if n.endswith(".parquet")]
    assert parquet and all("/country=" in n and "/_tmp/" not in n for n in parquet), names
    dataset = ds.dataset(parquet, filesystem=fs, format="parquet", partitioning="hive",
                         partition_base_dir=f"{s3_bucket.name}/exports/orders")  # fmt: skip
    table = dataset.to_table().sort_by("id")
    assert table.num_rows == ROWS
    by_id = {r["id"]: r for r in table.to_pylist()}
    for row in rows:
        exported = by_id[row[0]]
        assert tuple(exported[c] for c in ORDERS_COLUMNS if c != "country") == tuple(
            v for c, v in zip(ORDERS_COLUMNS, row, strict=True) if c != "country"
        )
        assert str(exported["country"]) == row[ORDERS_COLUMNS.index("country")]


def test_unreachable_s3_endpoint_names_connection_and_endpoint_never_the_secret(
    dst_db: Any, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from airflow.sdk.io import store

    # Airflow caches a filesystem per connection id for the life of the process (a task's, in
    # production); earlier tests here used etl_test_s3 with the working endpoint.
    monkeypatch.setattr(store, "_STORE_CACHE", {})

    bad = {
        "conn_type": "aws",
        "extra": {
            "aws_access_key_id": "key-id",
            "aws_secret_access_key": "s3cret-key",
            "region_name": "us-east-1",
            "endpoint_url": "http://127.0.0.1:1",
        },
    }
    conns = {"etl_test_dst": dst_db.uri(), "etl_test_s3": json.dumps(bad)}
    conf = {"source_path": "s3://bucket/drop/", "destination_table": dst_db.table("orders")}
    capfd.readouterr()
    run = run_dag("files_s3_to_postgres", conf=conf, conn_env=conns)
    assert task_outcomes(run)["transfer"].state == "failed"
    output = "".join(capfd.readouterr())
    assert "object store connection 'etl_test_s3': endpoint 127.0.0.1:1 does not answer" in output
    assert "s3cret-key" not in output


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"zero_dates": "zero"}, "zero_dates 'zero' is not one of ['null', 'error']"),
        ({"destination_path": "/tmp/x"}, "Give exactly one of destination_table or destination_path"),
        (
            {
                "source_table": None,
                "source_path": "/tmp/a.parquet",
                "destination_table": None,
                "destination_path": "/tmp/out/",
            },
            "files to files is not a transfer",
        ),
    ],
)
def test_bad_settings_are_refused_at_parse_time(kwargs: dict[str, Any], message: str) -> None:
    from etl_platform.operators.transfer import StreamingTransferOperator

    args = {"source_conn_id": "src", "destination_conn_id": "dst", "source_table": "shop.orders",
            "destination_table": "warehouse.orders", **kwargs}  # fmt: skip
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        StreamingTransferOperator(task_id="t", **args)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("write_mode", "truncate"),
        ("conflict_columns", ["id"]),
        ("incremental_column", "updated_at"),
        ("transform", lambda df: df),
        ("transform_format", "arrow"),
        ("parallelism", 4),
        ("key_min", "100"),
        ("key_max", "200"),
        ("checkpoint_schema", "elsewhere"),
        ("strategy", "staged"),
        ("lock_timeout", "1s"),
        ("reset_checkpoint", True),
        ("csv_options", {"delimiter": ";"}),
        ("reject_path", "/tmp/rejects.csv"),
        ("max_rejects", 10),
        ("allow_empty", False),
        ("zero_dates", "null"),
    ],
)
def test_an_export_refuses_table_only_settings_at_parse_time_naming_them(setting: str, value: Any) -> None:
    """An export reads none of these: a non-default value would be ignored in silence, so it is refused."""
    from etl_platform.operators.transfer import StreamingTransferOperator

    args = {"source_conn_id": "src", "source_table": "shop.orders", "destination_path": "/tmp/out/"}
    StreamingTransferOperator(task_id="t", **args)  # the defaults are accepted
    with pytest.raises(
        ValueError, match=rf"t: {setting}=.* does not apply to an export \(destination_path\)"
    ):
        StreamingTransferOperator(task_id="t", **args, **{setting: value})


def test_an_export_checks_a_templated_table_only_setting_once_rendered() -> None:
    from etl_platform.operators.transfer import StreamingTransferOperator
    from etl_platform.operators.transfer_settings import check_export_settings
    from etl_platform.transfer import TransferConfigError

    op = StreamingTransferOperator(
        task_id="t",
        source_conn_id="src",
        source_table="shop.orders",
        destination_path="/tmp/out/",
        key_min="{{ params.key_min }}",
    )
    op.key_min = ""  # rendered to nothing: the default, accepted
    check_export_settings(op, rendered=True)
    op.key_min = "None"
    check_export_settings(op, rendered=True)
    op.key_min = "42"
    with pytest.raises(TransferConfigError, match=r"key_min='42' does not apply to an export"):
        check_export_settings(op, rendered=True)


def test_an_export_refuses_a_rendered_window_in_execute_once_before_writing(
    src_db: Any, tmp_path: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    with src_db.connect() as conn:
        create_orders(conn, schema=src_db.schema, rows=100, days=2)
    out = tmp_path / "export"
    conf = {
        "source_table": src_db.table("orders"),
        "destination_path": str(out),
        "incremental_column": "order_ts",
    }
    capfd.readouterr()
    run = run_dag("postgres_export_templated_window", conf=conf, conn_env={"etl_test_src": src_db.uri()})
    outcome = task_outcomes(run)["export"]
    assert (outcome.state, outcome.try_number) == ("failed", 1)  # terminal: the DAG's retries unused
    assert "incremental_column='order_ts' does not apply to an export" in "".join(capfd.readouterr())
    assert not out.exists() or not any(out.iterdir())  # nothing written
