"""OpenLineage events of the transfer and partition operators, read back from a file transport.

Each run is `airflow dags test` in a subprocess (the openlineage provider reads its settings once per
process) with the file transport appending to a temp file and StatsD on a real UDP socket. The events
are what apache-airflow-providers-openlineage emitted after calling the operators' facet methods.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from benchmarks.datagen import ORDERS_COLUMNS, create_empty_like_orders, create_orders
from harness import SchemaDb
from harness.statsd import StatsdRun, dags_test_with_statsd

pytestmark = pytest.mark.airflow

ROWS = 1_200


def _run(dag_id: str, conf: dict[str, Any], env: dict[str, str], events: Path) -> StatsdRun:
    transport = {"type": "file", "log_file_path": str(events), "append": True}
    return dags_test_with_statsd(
        dag_id, conf=conf, env={**env, "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport)}
    )


def _event(events: Path, job: str, event_type: str) -> dict[str, Any]:
    found = [
        e
        for e in map(json.loads, events.read_text().splitlines())
        if e["job"]["name"] == job and e["eventType"] == event_type
    ]
    assert len(found) == 1, f"{len(found)} {event_type} events for {job}"
    return found[0]


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> list[dict[str, Any]]:
    """The table's columns as the schema facet must carry them, read from the catalog."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (sql.Identifier(schema, table).as_string(conn),),
    ).fetchall()
    return [{"fields": [], "name": n, "ordinal_position": i, "type": t} for i, (n, t) in enumerate(rows, 1)]


def _lineage(output: dict[str, Any]) -> dict[str, list[tuple[str, str, str | None]]]:
    """destination column -> [(input dataset, input column, transformation subtype)]."""
    fields = output["facets"]["columnLineage"]["fields"]
    return {
        column: [(f["name"], f["field"], f["transformations"][0].get("subtype")) for f in spec["inputFields"]]
        for column, spec in fields.items()
    }


def _namespace(db: SchemaDb) -> str | None:
    """The OpenLineage namespace of the test server's tables; None where its connection's host is a
    socket directory (the embedded fallback server): no URI host, so its tables get no dataset, as
    they get no asset (the documented behaviour, asserted instead of the facets there)."""
    from airflow.models.connection import Connection

    from etl_platform.assets import AssetUriError, connection_table_uri
    from etl_platform.lineage import dataset_id

    try:
        return dataset_id(connection_table_uri(Connection(uri=db.uri()), "s.t")).namespace
    except AssetUriError:
        return None


def _no_postgres_datasets(event: dict[str, Any], run: StatsdRun) -> None:
    """A table with no URI host is left out, and that is no lineage error."""
    assert [d for d in event["inputs"] + event["outputs"] if d["namespace"].startswith("postgres")] == []
    assert _errors(run) == []


def _errors(run: StatsdRun) -> list[str]:
    return [line for line in run.lines if line.startswith("airflow.etl.lineage.errors")]


@pytest.fixture
def orders(src_db: SchemaDb, dst_db: SchemaDb, airflow_home: Path, tmp_path: Path) -> dict[str, Any]:
    src, dst = src_db.connect(), dst_db.connect()
    create_orders(src, schema=src_db.schema, rows=ROWS, days=3)
    create_empty_like_orders(dst, "orders", schema=dst_db.schema)
    return {
        "src": src,
        "dst": dst,
        "source": f"{src_db.dbname}.{src_db.schema}.orders",
        "destination": f"{dst_db.dbname}.{dst_db.schema}.orders",
        "conf": {"source_table": f"{src_db.schema}.orders", "destination_table": f"{dst_db.schema}.orders"},
        "env": {"AIRFLOW_CONN_ETL_TEST_SRC": src_db.uri(), "AIRFLOW_CONN_ETL_TEST_DST": dst_db.uri()},
        "events": tmp_path / "openlineage.jsonl",
    }


def test_transfer_complete_event_has_schemas_column_lineage_and_statistics(
    orders: dict[str, Any], src_db: SchemaDb, dst_db: SchemaDb
) -> None:
    done = _run("transfer_append", orders["conf"], orders["env"], orders["events"])
    assert done.returncode == 0, done.output[-6000:]
    event = _event(orders["events"], "transfer_append.transfer", "COMPLETE")
    namespace = _namespace(src_db)
    if namespace is None:
        _no_postgres_datasets(event, done)
        return
    [source], [output] = event["inputs"], event["outputs"]
    assert (source["namespace"], source["name"]) == (namespace, orders["source"])
    assert (output["namespace"], output["name"]) == (namespace, orders["destination"])
    assert source["facets"]["schema"]["fields"] == _columns(orders["src"], src_db.schema, "orders")
    assert output["facets"]["schema"]["fields"] == _columns(orders["dst"], dst_db.schema, "orders")
    assert _lineage(output) == {c: [(orders["source"], c, "IDENTITY")] for c in ORDERS_COLUMNS}
    written = (
        orders["dst"]
        .execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(dst_db.schema, "orders")))
        .fetchone()
    )
    summary_bytes = re.search(r"transfer summary: \{'rows': \d+, [^}]*'bytes': (\d+)", done.output)
    assert summary_bytes, "no transfer summary in the task output"
    stats = output["outputFacets"]["outputStatistics"]
    assert written is not None and stats["rowCount"] == written[0] == ROWS
    assert stats["size"] == int(summary_bytes.group(1)) > 0
    assert "sql" not in event["job"]["facets"]
    assert _errors(done) == []


def test_transform_marks_its_outputs_transformed(orders: dict[str, Any], dst_db: SchemaDb) -> None:
    orders["dst"].execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN processed_at timestamptz NOT NULL").format(
            sql.Identifier(dst_db.schema, "orders")
        )
    )
    done = _run("transfer_transform", orders["conf"], orders["env"], orders["events"])
    assert done.returncode == 0, done.output[-6000:]
    event = _event(orders["events"], "transfer_transform.transfer", "COMPLETE")
    if _namespace(dst_db) is None:
        _no_postgres_datasets(event, done)
        return
    [output] = event["outputs"]
    lineage = _lineage(output)
    assert set(lineage) == {*ORDERS_COLUMNS, "processed_at"}
    for column in ORDERS_COLUMNS:  # a column the transform kept comes from its namesake, transformed
        assert lineage[column] == [(orders["source"], column, "TRANSFORMATION")]
    # a column the transform made up may come from any source column
    assert lineage["processed_at"] == [(orders["source"], c, "TRANSFORMATION") for c in ORDERS_COLUMNS]
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == ROWS


def _sums_table(orders: dict[str, Any], dst_db: SchemaDb) -> str:
    orders["dst"].execute(
        sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, customer_id integer, doubled numeric)").format(
            sql.Identifier(dst_db.schema, "sums")
        )
    )
    return f"{dst_db.schema}.sums"


def test_source_sql_gives_the_sql_facet_and_the_query_tables(
    orders: dict[str, Any], src_db: SchemaDb, dst_db: SchemaDb
) -> None:
    query = f"SELECT o.id, o.customer_id, o.amount * 2 AS doubled FROM {src_db.schema}.orders o"
    conf = {"source_sql": query, "key_column": "id", "destination_table": _sums_table(orders, dst_db)}
    done = _run("transfer_sql", conf, orders["env"], orders["events"])
    assert done.returncode == 0, done.output[-6000:]
    event = _event(orders["events"], "transfer_sql.transfer", "COMPLETE")
    sql_facet = event["job"]["facets"]["sql"]
    assert (sql_facet["query"], sql_facet["dialect"]) == (query, "postgres")
    namespace = _namespace(src_db)
    if namespace is None:
        _no_postgres_datasets(event, done)
        return
    assert [(i["namespace"], i["name"]) for i in event["inputs"]] == [(namespace, orders["source"])]
    [output] = event["outputs"]
    assert output["name"] == f"{dst_db.dbname}.{dst_db.schema}.sums"
    assert output["facets"]["schema"]["fields"] == _columns(orders["dst"], dst_db.schema, "sums")
    # The parser names each output's origin; whether it is an expression it cannot say (no subtype).
    assert _lineage(output) == {
        "id": [(orders["source"], "id", None)],
        "customer_id": [(orders["source"], "customer_id", None)],
        "doubled": [(orders["source"], "amount", None)],
    }
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == ROWS


def test_failed_transfer_emits_fail_with_datasets_and_no_statistics(
    orders: dict[str, Any], src_db: SchemaDb, dst_db: SchemaDb
) -> None:
    query = f"SELECT id, customer_id, amount AS doubled FROM {src_db.schema}.orders"
    conf = {
        "source_sql": query,
        "key_column": "no_such_key",
        "destination_table": _sums_table(orders, dst_db),
    }
    done = _run("transfer_sql", conf, orders["env"], orders["events"])
    assert done.returncode != 0 and "key_column 'no_such_key'" in done.output
    event = _event(orders["events"], "transfer_sql.transfer", "FAIL")
    assert "errorMessage" in event["run"]["facets"]
    assert _errors(done) == []
    namespace = _namespace(dst_db)
    if namespace is None:
        _no_postgres_datasets(event, done)
        return
    [output] = event["outputs"]
    assert (output["namespace"], output["name"]) == (namespace, f"{dst_db.dbname}.{dst_db.schema}.sums")
    assert "outputStatistics" not in output["outputFacets"]  # nothing is known to have been written
    assert event["job"]["facets"]["sql"]["query"] == query
    assert [i["name"] for i in event["inputs"]] == [orders["source"]]
    assert "errorMessage" in event["run"]["facets"]
    assert _errors(done) == []


def test_lineage_error_never_fails_the_task_logged_once_and_counted(orders: dict[str, Any]) -> None:
    done = _run("lineage_broken", orders["conf"], orders["env"], orders["events"])
    assert done.returncode == 0, done.output[-6000:]
    assert "state=success" in done.output
    event = _event(orders["events"], "lineage_broken.transfer", "COMPLETE")
    # Nothing from the operator (the provider may still name the asset the run's event went on).
    assert event["inputs"] == []
    assert all(not o["facets"] and not o.get("outputFacets") for o in event["outputs"])
    assert done.output.count("OpenLineage facets for transfer not built") == 1
    [counted] = _errors(done)
    assert "task_id=transfer" in counted and counted.endswith(":1|c")


def test_partition_operators_name_the_table_and_the_rows_drained(
    dst_db: SchemaDb, airflow_home: Path, tmp_path: Path
) -> None:
    conn = dst_db.connect()
    conn.execute("SET TimeZone = 'UTC'")
    ev = sql.Identifier(dst_db.schema, "ev")
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (id bigserial, ts timestamptz NOT NULL, w int NOT NULL DEFAULT 0, "
            "PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)"
        ).format(ev)
    )
    conn.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(sql.Identifier(dst_db.schema, "ev_d"), ev)
    )
    now = datetime.now(UTC)
    stamps = [now - timedelta(days=d) for d in range(0, 150, 10)]
    conn.execute(sql.SQL("INSERT INTO {} (ts) SELECT unnest(%s::timestamptz[])").format(ev), (stamps,))
    # ensure back-fills from two months ago (moving those rows out of the default); drain the older rest
    start = (now - timedelta(days=62)).date().replace(day=1).isoformat()
    conf = {"table": dst_db.table("ev"), "start": start, "retention": "12 months"}
    events = tmp_path / "openlineage.jsonl"
    done = _run("partition_maintenance", conf, {"AIRFLOW_CONN_ETL_TEST_DST": dst_db.uri()}, events)
    assert done.returncode == 0, done.output[-6000:]
    left = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(dst_db.schema, "ev_d"))
    ).fetchone()
    assert left is not None
    name = f"{dst_db.dbname}.{dst_db.schema}.ev"
    columns = _columns(conn, dst_db.schema, "ev")
    namespace = _namespace(dst_db)
    assert _errors(done) == []
    if namespace is None:
        for task in ("ensure", "drain", "index", "retention"):
            _no_postgres_datasets(_event(events, f"partition_maintenance.{task}", "COMPLETE"), done)
        return
    for task in ("ensure", "drain", "index", "retention"):
        [output] = _event(events, f"partition_maintenance.{task}", "COMPLETE")["outputs"]
        assert (output["namespace"], output["name"]) == (namespace, name)
        assert output["facets"]["schema"]["fields"] == columns
    moved = {}
    for task in ("ensure", "drain"):
        event = _event(events, f"partition_maintenance.{task}", "COMPLETE")
        assert [i["name"] for i in event["inputs"]] == [name]  # rows read out of its default
        moved[task] = event["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"]
    assert moved["ensure"] > 0 and moved["drain"] > 0
    assert moved["ensure"] + moved["drain"] == len(stamps) - left[0]
    assert _errors(done) == []


def test_export_names_the_s3_prefix_and_counts_its_files(
    orders: dict[str, Any], src_db: SchemaDb, s3_bucket: Any
) -> None:
    import s3fs

    conf = {"source_table": src_db.table("orders"), "destination_path": s3_bucket.url("exports/orders")}
    env = {"AIRFLOW_CONN_ETL_TEST_SRC": src_db.uri()}
    env.update({k if k.startswith("AIRFLOW_CONN_") else f"AIRFLOW_CONN_{k.upper()}": v
                for k, v in s3_bucket.conn_env.items()})  # fmt: skip
    done = _run("postgres_to_s3_parquet", conf, env, orders["events"])
    assert done.returncode == 0, done.output[-6000:]
    event = _event(orders["events"], "postgres_to_s3_parquet.export", "COMPLETE")
    if _namespace(src_db) is None:
        _no_postgres_datasets(event, done)  # the S3 output is still named below
    else:
        [source] = event["inputs"]
        assert source["name"] == orders["source"]
    [output] = event["outputs"]
    assert (output["namespace"], output["name"]) == (f"s3://{s3_bucket.name}", "exports/orders")
    fs = s3fs.S3FileSystem(
        key="testing", secret="testing", client_kwargs={"endpoint_url": s3_bucket.server.endpoint_url}
    )
    files = [n for n in fs.find(f"{s3_bucket.name}/exports/orders") if n.endswith(".parquet")]
    stats = output["outputFacets"]["outputStatistics"]
    assert (stats["rowCount"], stats["fileCount"]) == (ROWS, len(files))
    assert len(files) > 1


@pytest.mark.parametrize(
    ("uri", "namespace", "name"),
    [
        (("postgres", "DB.Example", None, "Sales.orders"), "postgres://db.example:5432", "app.sales.orders"),
        (("postgres", "::1", 6432, '"Mixed Case"."a.b"'), "postgres://[::1]:6432", "app.Mixed Case.a.b"),
        (("mysql", "maria", None, "shop.orders"), "mysql://maria:3306", "shop.orders"),
    ],
)
def test_dataset_names_follow_the_asset_uris(uri: tuple[Any, ...], namespace: str, name: str) -> None:
    from etl_platform.assets import mysql_uri, postgres_uri
    from etl_platform.lineage import DatasetId, dataset_id

    kind, host, port, table = uri
    built = (
        postgres_uri(host, port, "app", table) if kind == "postgres" else mysql_uri(host, port, None, table)
    )
    assert dataset_id(built) == DatasetId(namespace, name)


def test_mysql_query_tables_are_named_database_table() -> None:
    from etl_platform.assets import mysql_uri
    from etl_platform.lineage import TransferRecord, transfer_lineage

    record = TransferRecord(
        destination_uri="postgres://pg:5432/dw/public/orders",
        source_sql="SELECT o.id, c.name FROM orders o JOIN crm.customers c ON c.id = o.customer_id",
        source_database_uri=mysql_uri("maria", 3306, "shop", "_"),
        dialect="mysql",
        mapping=[("id", "id"), ("name", "name")],
    )
    lineage = transfer_lineage(record)
    assert sorted((d.namespace, d.name) for d in lineage.inputs) == [
        ("mysql://maria:3306", "crm.customers"),
        ("mysql://maria:3306", "shop.orders"),
    ]
    fields = lineage.outputs[0].facets["columnLineage"].fields
    assert [(f.name, f.field) for f in fields["name"].inputFields] == [("crm.customers", "name")]
    assert lineage.job_facets["sql"].dialect == "mysql"
