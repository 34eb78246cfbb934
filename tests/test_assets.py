"""Assets: URIs in the official providers' form, and the transfer's asset event (or none) read back
from Airflow's own tables after real dag.test() runs; the daily summary DAG scheduled on the asset."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks.datagen import create_empty_like_orders, create_orders
from etl_platform.assets import (
    AssetUriError,
    connection_table_uri,
    file_uri,
    mysql_uri,
    postgres_uri,
    window_from_events,
)
from harness import REPO_ROOT, run_dag, task_outcomes
from warehouse_assets import ORDERS_CLEAN

pytestmark = pytest.mark.airflow

IN_WINDOW = datetime(2026, 1, 6, tzinfo=UTC)  # interval [01-05, 01-06): 240 orders
EMPTY_WINDOW = datetime(2026, 3, 2, tzinfo=UTC)  # the orders end on 2026-01-20


# ----------------------------------------------------------------------------------------- URIs


def _official(asset: Any) -> str:
    """The URI Airflow itself normalizes an official provider's asset to (its registered handler)."""
    from airflow.sdk import Asset

    return Asset(uri=asset.uri).uri


def test_postgres_uri_is_the_postgres_providers() -> None:
    from airflow.providers.postgres.assets.postgres import create_asset

    ours = postgres_uri("db.example.com", None, "warehouse", "sales.orders")
    assert ours == _official(
        create_asset(host="db.example.com", database="warehouse", schema="sales", table="orders")
    )
    assert ours.startswith("postgres://db.example.com:5432/")  # the default port is written out


@pytest.mark.parametrize(
    ("host", "port", "table", "same_as"),
    [
        ("DB.Example.COM", None, "sales.orders", ("db.example.com", 5432, "sales.orders")),  # host case
        ("db.example.com", "5432", "Sales.ORDERS", ("db.example.com", 5432, "sales.orders")),  # unquoted fold
        ("db.example.com", 5432, '"sales"."orders"', ("db.example.com", None, "sales.orders")),
        ("db.example.com", None, "orders", ("db.example.com", 5432, "public.orders")),  # search_path default
    ],
)
def test_postgres_uri_normalizes_like_postgresql_reads_names(
    host: str, port: Any, table: str, same_as: tuple[str, Any, str]
) -> None:
    assert postgres_uri(host, port, "wh", table) == postgres_uri(*same_as[:2], "wh", same_as[2])


def test_odd_postgres_names_keep_case_and_stay_one_path_part_each() -> None:
    from urllib.parse import unquote, urlsplit

    uri = postgres_uri("h", 6432, "wh", '"Odd Schema"."a/b.c ?%#"')
    parts = urlsplit(uri).path.split("/")
    assert [unquote(p) for p in parts] == ["", "wh", "Odd Schema", "a/b.c ?%#"]
    assert _official(type("A", (), {"uri": uri})()) == uri  # Airflow's own normalization keeps it as is
    assert postgres_uri("h", 6432, "wh", '"Say ""hi""".t') != postgres_uri("h", 6432, "wh", "say.t")
    assert unquote(urlsplit(postgres_uri("h", 1, "wh", '"Say ""hi""".t')).path).split("/")[2] == 'Say "hi"'


def test_mysql_file_and_s3_uris_are_the_official_providers() -> None:
    from airflow.providers.amazon.aws.assets.s3 import create_asset as s3_asset
    from airflow.providers.common.io.assets.file import create_asset as file_asset
    from airflow.providers.mysql.assets.mysql import create_asset as mysql_asset

    assert mysql_uri("Maria", None, None, "`shop`.orders") == _official(
        mysql_asset(host="maria", database="shop", table="orders")
    )
    assert mysql_uri("maria", 3307, "shop", "orders") == _official(
        mysql_asset(host="maria", port=3307, database="shop", table="orders")
    )
    assert file_uri("/data/drop/orders/") == _official(file_asset(path="/data/drop/orders"))
    assert file_uri("file:///data/drop/orders") == file_uri("/data/drop/orders")
    assert file_uri("s3://drop/orders/2026/") == _official(s3_asset(bucket="drop", key="orders/2026"))


@pytest.mark.parametrize(
    ("host", "table", "message"),
    [
        ("/var/run/postgresql", "s.t", "socket directory"),
        ("10.0.0.1,10.0.0.2", "s.t", "host list"),
        ("", "s.t", "no host"),
        ("h", "a.b.c", "is not 'schema.table'"),
        ("h", '"unclosed.t', "unclosed"),
    ],
)
def test_what_cannot_be_a_uri_says_why(host: str, table: str, message: str) -> None:
    with pytest.raises(AssetUriError, match=message):
        postgres_uri(host, None, "wh", table)


def test_every_scheme_we_emit_has_an_official_handler(airflow_home: Any) -> None:
    """Why the provider info declares no `asset-uris`: each scheme is already registered."""
    from airflow.providers_manager import ProvidersManager

    from etl_platform.assets import _SANITIZERS
    from etl_platform.get_provider_info import get_provider_info

    handlers = ProvidersManager().asset_uri_handlers
    for scheme, module in _SANITIZERS.items():
        assert handlers[scheme].__module__ == module, (scheme, handlers[scheme])
    assert "asset-uris" not in get_provider_info()


# ----------------------------------------------------------------------------------------- events


@pytest.fixture
def orders(src_db: Any, dst_db: Any) -> dict[str, Any]:
    src, dst = src_db.connect(), dst_db.connect()
    create_orders(src, schema=src_db.schema, rows=4_800, days=20)
    create_empty_like_orders(dst, "orders", schema=dst_db.schema)
    return {
        "src": src,
        "dst": dst,
        "conf": {"source_table": f"{src_db.schema}.orders", "destination_table": f"{dst_db.schema}.orders"},
        "conns": {"etl_asset_src": src_db.uri(), "etl_asset_dst": dst_db.uri()},
    }


def _events(run: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """The asset events a DAG run's tasks emitted, as Airflow stored them: (name, uri, extra)."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent).where(
                AssetEvent.source_dag_id == run.dag_id, AssetEvent.source_run_id == run.run_id
            )
        ).all()
        return [(e.asset.name, e.asset.uri, dict(e.extra or {})) for e in events]


def _window_rows(src: Any, schema: str, run: Any) -> int:
    row = src.execute(
        f'SELECT count(*) FROM "{schema}".orders WHERE order_ts >= %s AND order_ts < %s',
        (run.data_interval_start, run.data_interval_end),
    ).fetchone()
    return int(row[0])


def _expected_destination_uri(db: Any) -> str | None:
    """What the test connection to `db`'s orders resolves to; None where its host is a socket directory
    (the embedded fallback server), where the transfer must warn and emit nothing."""
    from airflow.models.connection import Connection

    try:
        return connection_table_uri(Connection(uri=db.uri()), f"{db.schema}.orders")
    except AssetUriError:
        return None


def test_a_run_that_moved_rows_emits_one_event_on_the_destination(
    orders: dict[str, Any], src_db: Any, dst_db: Any
) -> None:
    run = run_dag("asset_transfer", conf=orders["conf"], conn_env=orders["conns"], logical_date=IN_WINDOW)
    assert task_outcomes(run)["transfer"].state == "success"
    events = _events(run)
    expected = _expected_destination_uri(dst_db)
    if expected is None:
        assert events == []
        return
    assert [(name, uri) for name, uri, _ in events] == [(expected, expected)]  # name defaults to the URI
    extra = events[0][2]
    assert extra["rows"] == _window_rows(orders["src"], src_db.schema, run) > 0
    assert extra["bytes"] > 0
    assert datetime.fromisoformat(extra["window_start"]) == run.data_interval_start
    assert datetime.fromisoformat(extra["window_end"]) == run.data_interval_end
    assert extra["source"] == _expected_destination_uri(src_db) != expected  # the source table's URI


def test_a_declared_asset_gets_the_event_whatever_the_host(
    orders: dict[str, Any], src_db: Any, dst_db: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    import tests.dags.asset_dags as asset_dags

    capfd.readouterr()
    run = run_dag(
        "asset_transfer_named", conf=orders["conf"], conn_env=orders["conns"], logical_date=IN_WINDOW
    )
    assert task_outcomes(run)["transfer"].state == "success"
    events = _events(run)
    assert [(name, uri) for name, uri, _ in events] == [(asset_dags.NAMED.name, asset_dags.NAMED.uri)]
    extra = events[0][2]
    assert extra["rows"] == _window_rows(orders["src"], src_db.schema, run) > 0
    assert datetime.fromisoformat(extra["window_start"]) == run.data_interval_start
    out, err = capfd.readouterr()
    if _expected_destination_uri(dst_db) is not None:  # the declared URI is not where the rows went
        assert (
            "declares postgres://declared-host:5432/warehouse/sales/orders but the destination" in out + err
        )


def test_an_empty_window_succeeds_without_an_event(orders: dict[str, Any], src_db: Any) -> None:
    run = run_dag("asset_transfer", conf=orders["conf"], conn_env=orders["conns"], logical_date=EMPTY_WINDOW)
    assert task_outcomes(run)["transfer"].state == "success"
    assert _window_rows(orders["src"], src_db.schema, run) == 0
    assert _events(run) == []
    named = run_dag(  # also when the event would go on a declared asset
        "asset_transfer_named", conf=orders["conf"], conn_env=orders["conns"], logical_date=EMPTY_WINDOW
    )
    assert task_outcomes(named)["transfer"].state == "success"
    assert _events(named) == []


def test_a_failed_run_emits_no_event(orders: dict[str, Any], dst_db: Any) -> None:
    conf = {**orders["conf"], "destination_table": f"{dst_db.schema}.no_such_table"}
    for dag_id in ("asset_transfer", "asset_transfer_named"):
        run = run_dag(dag_id, conf=conf, conn_env=orders["conns"], logical_date=IN_WINDOW)
        assert task_outcomes(run)["transfer"].state == "failed"
        assert _events(run) == []


def test_a_host_no_uri_can_carry_warns_and_the_task_succeeds(
    orders: dict[str, Any], pg_server: Any, dst_db: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    # libpq's host list: the same server twice, which connects fine but names no single host
    dst = {
        "conn_type": "postgres",
        "host": f"{pg_server.host},{pg_server.host}",
        "port": pg_server.port,
        "login": pg_server.user,
        "password": pg_server.password,
        "schema": dst_db.dbname,
        "extra": {"options": f"-csearch_path={dst_db.schema}"},
    }
    capfd.readouterr()
    conns = {**orders["conns"], "etl_asset_dst": json.dumps(dst)}
    run = run_dag("asset_transfer", conf=orders["conf"], conn_env=conns, logical_date=IN_WINDOW)
    assert task_outcomes(run)["transfer"].state == "success"
    assert orders["dst"].execute(f'SELECT count(*) FROM "{dst_db.schema}".orders').fetchone()[0] > 0
    assert _events(run) == []
    out, err = capfd.readouterr()
    assert "No asset for the destination: host" in out + err


# ----------------------------------------------------------------------------------------- dags/


def test_the_daily_summary_is_scheduled_on_the_orders_clean_asset(airflow_home: Any) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import Asset
    from airflow.sdk.definitions.asset import AssetAll

    from etl_platform.operators.transfer import StreamingTransferOperator

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    summary, orders = bag.dags["etl_orders_daily_summary"], bag.dags["etl_orders"]
    load, condition = orders.get_task("load_orders"), summary.timetable.asset_condition
    assert isinstance(load, StreamingTransferOperator) and isinstance(condition, AssetAll)
    assert isinstance(load.destination_asset, Asset) and load.destination_asset.name == "orders_clean"
    assert list(condition.objects) == [load.destination_asset]  # the asset etl_orders' load emits on
    assert "summarize_orders" not in orders.task_ids and summary.task_ids == ["summarize_orders"]
    bulk_load = bag.dags["etl_orders_bulk"].get_task("load_range")  # mapped: its arguments are partial
    assert bulk_load.partial_kwargs["destination_asset"] == load.destination_asset
    # The shared module is imported by the DAG files, not parsed as one (dags/.airflowignore).
    parsed = {Path(path).name for path in bag.file_last_changed}
    assert "etl_orders.py" in parsed and "warehouse_assets.py" not in parsed, parsed


def _load_event(start: str | None, end: str | None) -> Any:
    """A triggering event as the Task SDK hands it to a task (extra as etl_orders' load writes it)."""
    from airflow.sdk.api.datamodels._generated import (
        AssetAliasReferenceAssetEventDagRun,
        AssetReferenceAssetEventDagRun,
    )
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult

    return AssetEventDagRunReferenceResult(
        asset=AssetReferenceAssetEventDagRun(name="orders_clean", uri=ORDERS_CLEAN.uri, extra={}),
        extra={"rows": 1, "bytes": 1, "window_start": start, "window_end": end},
        source_task_id="load_orders",
        source_dag_id="etl_orders",
        source_run_id="r",
        source_map_index=-1,
        source_aliases=[
            AssetAliasReferenceAssetEventDagRun(name="etl_platform.transfer:etl_orders.load_orders")
        ],
        timestamp=datetime.now(UTC),
    )


def test_the_window_spans_every_triggering_load(airflow_home: Any) -> None:
    """Catch-up loads queue several events before one summary run: it rebuilds all their days."""
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    events = TriggeringAssetEventsAccessor.build(
        [
            _load_event("2026-01-06 01:00:00+00:00", "2026-01-07 01:00:00+00:00"),
            _load_event("2026-01-05T01:00:00+00:00", "2026-01-06T01:00:00+00:00"),
        ]
    )
    start, end = window_from_events(events, {"window_start": "", "window_end": ""})
    assert (datetime.fromisoformat(start), datetime.fromisoformat(end)) == (
        datetime(2026, 1, 5, 1, tzinfo=UTC),
        datetime(2026, 1, 7, 1, tzinfo=UTC),
    )
    # A param window widens the events' one (a rerun asking for more days).
    wider = window_from_events(events, {"window_start": "2026-01-07T00:00+00:00", "window_end": "2026-01-09"})
    assert wider == ("2026-01-05T01:00:00+00:00", "2026-01-09T00:00:00+00:00")
    none = TriggeringAssetEventsAccessor.build([])
    manual = window_from_events(none, {"window_start": "2026-02-01", "window_end": "2026-02-02"})
    assert manual == ("2026-02-01T00:00:00+00:00", "2026-02-02T00:00:00+00:00")  # no offset: UTC
    with pytest.raises(ValueError, match="No window"):
        window_from_events(none, {"window_start": "", "window_end": ""})
    with pytest.raises(ValueError, match="not before"):
        window_from_events(none, {"window_start": "2026-02-02", "window_end": "2026-02-01"})
    with pytest.raises(ValueError, match="window_end 'soon' is not an ISO timestamp"):
        window_from_events(none, {"window_start": "2026-02-02", "window_end": "soon"})


def test_an_event_without_a_window_is_unbounded_or_an_error(airflow_home: Any) -> None:
    """etl_orders_bulk's key-range loads carry no window: any day may have changed."""
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    events = TriggeringAssetEventsAccessor.build(
        [_load_event("2026-01-05T01:00:00+00:00", "2026-01-06T01:00:00+00:00"), _load_event(None, None)]
    )
    everything = ("-infinity", "infinity")
    assert window_from_events(events, {}, unbounded=everything) == everything
    with pytest.raises(ValueError, match="'orders_clean' has no window_start/window_end"):
        window_from_events(events, {})


def _connection_uri(conn_uri: str, table: str) -> str | None:
    from airflow.models.connection import Connection

    try:
        return connection_table_uri(Connection(uri=conn_uri), table)
    except AssetUriError:
        return None


def test_an_export_emits_on_its_s3_prefix(src_db: Any, s3_bucket: Any) -> None:
    create_orders(src_db.connect(), schema=src_db.schema, rows=1_000, days=5)
    conf = {"source_table": src_db.table("orders"), "destination_path": s3_bucket.url("exports/orders/")}
    run = run_dag(
        "postgres_to_s3_parquet", conf=conf, conn_env={"etl_test_src": src_db.uri(), **s3_bucket.conn_env}
    )
    assert task_outcomes(run)["export"].state == "success"
    (name, uri, extra), *rest = _events(run)
    assert not rest and name == uri == f"s3://{s3_bucket.name}/exports/orders"
    assert extra["rows"] == 1_000 and extra["bytes"] > 0
    assert extra["source"] == _connection_uri(src_db.uri(), src_db.table("orders"))


def test_a_mariadb_source_is_named_by_its_mysql_uri(my_db: Any, dst_db: Any) -> None:
    from benchmarks.datagen_mysql import create_mysql_orders

    with my_db.connect() as conn:
        create_mysql_orders(conn, my_db.database, rows=1_000, days=5)
    create_empty_like_orders(dst_db.connect(), "orders", schema=dst_db.schema)
    conf = {"source_table": f"{my_db.database}.orders", "destination_table": dst_db.table("orders")}
    run = run_dag(
        "mysql_to_postgres", conf=conf, conn_env={"etl_test_mysql": my_db.uri(), "etl_test_dst": dst_db.uri()}
    )
    assert task_outcomes(run)["transfer"].state == "success"
    source = _connection_uri(my_db.uri(), f"{my_db.database}.orders")
    events = _events(run)
    if _expected_destination_uri(dst_db) is None:  # the embedded PostgreSQL's socket host: no event
        assert events == []
        return
    assert [extra["source"] for _, _, extra in events] == [source]
    assert source is None or (source.startswith("mysql://") and source.endswith(f"/{my_db.database}/orders"))


def test_a_truncate_that_empties_the_table_still_emits(src_db: Any, dst_db: Any) -> None:
    """Zero rows moved, yet the destination changed (its rows are gone): downstream must hear of it."""
    src, dst = src_db.connect(), dst_db.connect()
    create_empty_like_orders(src, "orders", schema=src_db.schema)
    create_orders(dst, schema=dst_db.schema, rows=100, days=1)  # rows the refresh must remove
    conf = {"source_table": src_db.table("orders"), "destination_table": dst_db.table("orders")}
    run = run_dag(
        "transfer_truncate", conf=conf, conn_env={"etl_test_src": src_db.uri(), "etl_test_dst": dst_db.uri()}
    )
    assert task_outcomes(run)["transfer"].state == "success"
    assert dst.execute(f'SELECT count(*) FROM "{dst_db.schema}".orders').fetchone() == (0,)
    expected = _expected_destination_uri(dst_db)
    assert [(uri, extra["rows"]) for _, uri, extra in _events(run)] == ([(expected, 0)] if expected else [])


def test_a_mapped_transfer_declares_its_alias_when_the_dag_is_parsed() -> None:
    """Its __init__ runs only on the worker, so partial declares the alias: else no DAG declares it and
    mapped tasks finishing together race to create it in the metadata DB (one is failed by Airflow).
    The serialized DAG carries it, so the dag-processor registers it; the worker's copy holds it once."""
    from airflow.sdk import DAG, AssetAlias, TaskGroup
    from airflow.serialization.serialized_objects import DagSerialization

    from etl_platform.operators.transfer import StreamingTransferOperator
    from tests.transfer_fixtures import MINIMAL_TRANSFER

    common = MINIMAL_TRANSFER
    with DAG("mapped_alias_check", schedule=None) as dag:
        loads = StreamingTransferOperator.partial(task_id="load", **common).expand_kwargs(
            [{"key_min": "1", "key_max": "2"}, {"key_min": "2", "key_max": None}]
        )
        with TaskGroup("ranges"):
            grouped = StreamingTransferOperator.partial(task_id="load", **common).expand_kwargs(
                [{"key_min": "1", "key_max": "2"}]
            )
    assert loads.outlets == [AssetAlias(name="etl_platform.transfer:mapped_alias_check.load")]
    assert grouped.outlets == [AssetAlias(name="etl_platform.transfer:mapped_alias_check.ranges.load")]
    serialized = DagSerialization.to_dict(dag)
    assert "etl_platform.transfer:mapped_alias_check.ranges.load" in json.dumps(serialized)
    # The worker builds the task from partial's keywords (outlets included) plus the mapped ones.
    with DAG("mapped_alias_check", schedule=None):
        worker_copy = StreamingTransferOperator(task_id="load", outlets=loads.outlets, **common)
    assert worker_copy.outlets == [worker_copy.asset_alias] == loads.outlets
