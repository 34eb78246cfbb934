"""The platform end to end: real api-server, scheduler, dag-processor, triggerer and Celery workers.

Runs the production `etl_orders` DAG through the CeleryExecutor on the test PostgreSQL and Redis and
checks what docker-compose would run in production: routing by queue, exact data in the warehouse,
StatsD metrics, and recovery from a load worker killed in the middle of a transfer. Each run's load
emits an event on the `orders_clean` asset that queues `etl_orders_daily_summary`, which then
rebuilds the summary of the run's window on the transform worker.

The platform runs with [scheduler] use_job_schedule=False: unpausing etl_orders (catchup=True,
start 2026-01-01) would otherwise make the scheduler create a run per day since then. Manual runs of
a paused DAG are never started in Airflow 3.3 (the scheduler only picks runs of unpaused DAGs).
use_job_schedule=False also stops the scheduler from creating asset-triggered runs (the same
_create_dagruns_for_dags step creates both), so the test starts the summary run the queued event
asks for itself, with the window read from that event through the REST API.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from etl_devstack.platform import Platform
from etl_platform.transfer.checkpoint import CheckpointStore
from tests.e2e.helpers import (
    GATE_DAG_ID,
    TRIGGER_CLASS,
    AirflowApi,
    StatsdListener,
    alive_pids,
    ensure_dag_ready,
    explain,
    gate_hold,
    interval_digest,
    table_rows,
    task_instance,
    task_logs,
    trigger_gate,
    wait_gate_deferred_in_triggerer,
    wait_run_finished,
    wait_until,
    workers_that_received,
)
from warehouse_assets import COMPOSE_ORDERS_CLEAN_URI

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

DAG_ID = "etl_orders"
SUMMARY_DAG_ID = "etl_orders_daily_summary"
BULK_DAG_ID = "etl_orders_bulk"
# The queue each task must run on (tests/test_dag_repository.py holds the DAGs to the same map).
EXPECTED_QUEUES = {
    DAG_ID: {
        "check_platform": "extract",
        "ensure_partitions": "load",
        "load_orders": "load",
        "analyze": "load",
        "notify": "notifications",
    },
    SUMMARY_DAG_ID: {"summarize_orders": "transform"},
    BULK_DAG_ID: {
        "plan_ranges": "extract",
        "load_range": "load",
        "analyze": "load",
        "notify": "notifications",
    },
}
SOURCE_TABLE, WAREHOUSE_TABLE = "public.orders", "warehouse.orders_clean"
FIRST_RUN = datetime(2026, 1, 6, 1, tzinfo=UTC)  # data interval [2026-01-05 01:00, 2026-01-06 01:00)
SECOND_RUN = datetime(2026, 1, 8, 1, tzinfo=UTC)  # [2026-01-07 01:00, 2026-01-08 01:00)
RUN_TIMEOUT_S = 600
CHUNK_PAUSE_S = 5  # each checkpoint UPDATE sleeps this long in the second run: a window to kill in

_loaded: list[datetime] = []  # logical dates whose intervals the warehouse should hold


def _conninfo(platform: Platform, role: str) -> str:
    state = platform.state()
    return state.pg_server().conninfo(state.databases[role])


def _metadata(platform: Platform, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with psycopg.connect(_conninfo(platform, "airflow"), autocommit=True) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def _task_instances(platform: Platform, run_id: str, dag_id: str = DAG_ID) -> dict[str, dict[str, Any]]:
    """Task instances of a run by task id; mapped ones as "task_id[map_index]"."""
    rows = _metadata(
        platform,
        "SELECT task_id, map_index, state, queue, hostname, try_number, external_executor_id "
        "FROM task_instance WHERE dag_id = %s AND run_id = %s",
        (dag_id, run_id),
    )
    keys = ("state", "queue", "hostname", "try_number", "external_executor_id")
    return {
        row[0] if row[1] < 0 else f"{row[0]}[{row[1]}]": dict(zip(keys, row[2:], strict=True)) for row in rows
    }


def _ensure_dag_ready(platform: Platform, api: AirflowApi, dag_id: str = DAG_ID) -> None:
    """Wait until the dag-processor serialized the DAG, then unpause it (idempotent)."""

    def parsed() -> bool:
        errors = api.request("GET", "/api/v2/importErrors").get("import_errors", [])
        broken = [e for e in errors if e.get("filename", "").endswith(f"{dag_id}.py")]
        assert not broken, f"{dag_id} does not import: {broken}"
        return api.get_or_none(f"/api/v2/dags/{dag_id}") is not None

    wait_until(
        parsed,
        timeout=300,
        what=f"the dag-processor to parse {dag_id}",
        interval=2,
        explain=lambda: explain(platform, names=["dag-processor"]),
    )
    api.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})


def _trigger(api: AirflowApi, logical_date: datetime) -> str:
    run = api.request(
        "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": logical_date.isoformat()}
    )
    start, end = logical_date - timedelta(days=1), logical_date
    assert datetime.fromisoformat(run["data_interval_start"]) == start, run
    assert datetime.fromisoformat(run["data_interval_end"]) == end, run
    return str(run["dag_run_id"])


def _wait_for_run(
    platform: Platform, api: AirflowApi, run_id: str, timeout: float = RUN_TIMEOUT_S, dag_id: str = DAG_ID
) -> str:
    def finished() -> str | None:
        state = api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
        return state if state in ("success", "failed") else None

    return wait_until(
        finished,
        timeout=timeout,
        what=f"run {run_id} to finish",
        interval=2,
        explain=lambda: explain(platform, dag_id, run_id),
    )


def _assert_interval_exact(platform: Platform, logical_date: datetime) -> tuple[int, int, str]:
    start, end = logical_date - timedelta(days=1), logical_date
    source = interval_digest(_conninfo(platform, "source"), SOURCE_TABLE, start, end)
    loaded = interval_digest(_conninfo(platform, "warehouse"), WAREHOUSE_TABLE, start, end)
    assert source[0] > 0, f"the generated source has no rows in [{start}, {end})"
    assert loaded[0] == loaded[1], f"duplicate ids in the warehouse for [{start}, {end}): {loaded}"
    assert loaded == source, f"warehouse {loaded} != source {source} for [{start}, {end})"
    return source


def _assert_routed(
    platform: Platform, tis: dict[str, dict[str, Any]], dag_id: str = DAG_ID
) -> dict[str, tuple[str, list[str]]]:
    """Each task carried its intended queue (EXPECTED_QUEUES) and ran on a worker serving that queue.

    The task instance's hostname is this machine's for every worker here (in docker-compose it
    is the worker container's), so the worker is identified by the Celery task id that the
    executor stored on the task instance (external_executor_id) in the worker logs.
    Returns task -> (queue, workers whose log shows they received it).
    """
    routes = {}
    for task_id, ti in tis.items():
        expected = EXPECTED_QUEUES[dag_id][task_id.split("[", 1)[0]]
        assert ti["queue"] == expected, f"{dag_id}.{task_id} was queued on {ti['queue']}, not {expected}"
        assert ti["hostname"], f"{task_id} has no hostname: {ti}"
        celery_id = ti["external_executor_id"]
        assert celery_id, f"{task_id} has no Celery task id: {ti}"
        received = workers_that_received(platform, celery_id)
        assert received, f"no worker log mentions {task_id}'s Celery task {celery_id}"
        for name in received:
            queues = platform.worker(name).queues
            assert ti["queue"] in queues, f"{task_id} (queue {ti['queue']}) ran on {name} serving {queues}"
        routes[task_id] = (ti["queue"], received)
    print(f"routing: {routes}")
    return routes


def _assert_summary_matches(platform: Platform, logical_date: datetime) -> None:
    """warehouse.orders_daily (the transform step) for the days the interval touches equals an
    aggregate of the loaded rows of those days, and counts exactly the interval's source rows (each
    test loads whole days' worth of one interval only, so nothing else falls on those days)."""
    start, end = logical_date - timedelta(days=1), logical_date
    days = (start.date(), (end - timedelta(microseconds=1)).date())
    with psycopg.connect(
        _conninfo(platform, "warehouse"), autocommit=True, options="-c TimeZone=UTC"
    ) as conn:
        summary = conn.execute(
            "SELECT order_day, status, orders, customers, items, revenue, avg_order FROM warehouse.orders_daily "
            "WHERE order_day BETWEEN %s AND %s ORDER BY 1, 2",
            days,
        ).fetchall()
        loaded = conn.execute(
            "SELECT (order_ts AT TIME ZONE 'UTC')::date, status, count(*), count(DISTINCT customer_id), "
            "sum(quantity), sum(amount), round(avg(amount), 2) FROM warehouse.orders_clean "
            "WHERE order_ts >= %s AND order_ts < %s GROUP BY 1, 2 ORDER BY 1, 2",
            (
                datetime.combine(days[0], datetime.min.time(), tzinfo=UTC),
                datetime.combine(days[1], datetime.min.time(), tzinfo=UTC) + timedelta(days=1),
            ),
        ).fetchall()
    assert summary and summary == loaded, f"orders_daily {summary} != loaded rows {loaded}"
    source_rows = interval_digest(_conninfo(platform, "source"), SOURCE_TABLE, start, end)[0]
    assert sum(row[2] for row in summary) == source_rows


def _summarize_from_event(platform: Platform, api: AirflowApi, run_id: str, logical_date: datetime) -> None:
    """The run's load emitted one orders_clean event carrying its interval, which queued the summary DAG;
    the summary run for it (started here: no asset-triggered runs without use_job_schedule) rebuilds
    that window on the transform worker."""
    events = api.request(
        "GET", "/api/v2/assets/events", params={"source_dag_id": DAG_ID, "source_run_id": run_id}
    )["asset_events"]
    loads = [e for e in events if e["source_task_id"] == "load_orders"]
    assert len(loads) == 1, f"the load of {run_id} emitted {len(loads)} events: {events}"
    (event,) = loads
    assert event["name"] == "orders_clean" and event["extra"]["rows"] > 0, event
    window = (event["extra"]["window_start"], event["extra"]["window_end"])
    assert tuple(map(datetime.fromisoformat, window)) == (logical_date - timedelta(days=1), logical_date), (
        event
    )
    # make up / the e2e platform name their own warehouse (platform.env()): the load resolved that URI.
    # A warehouse reached through a socket directory has none; the declared name keeps compose's URI.
    expected = platform.env().get("ETL_ORDERS_CLEAN_ASSET_URI", COMPOSE_ORDERS_CLEAN_URI)
    assert event["uri"] == expected, event
    queued = api.request("GET", f"/api/v2/dags/{SUMMARY_DAG_ID}/assets/queuedEvents")["queued_events"]
    assert event["asset_id"] in {q["asset_id"] for q in queued}, f"{SUMMARY_DAG_ID} not queued: {queued}"

    conf = {"window_start": window[0], "window_end": window[1]}
    run = api.request(
        "POST", f"/api/v2/dags/{SUMMARY_DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf}
    )
    summary_run_id = str(run["dag_run_id"])
    state = _wait_for_run(platform, api, summary_run_id, dag_id=SUMMARY_DAG_ID)
    tis = _task_instances(platform, summary_run_id, SUMMARY_DAG_ID)
    assert state == "success", (
        f"run {summary_run_id} {state}: {tis}\n{explain(platform, SUMMARY_DAG_ID, summary_run_id)}"
    )
    routes = _assert_routed(platform, tis, SUMMARY_DAG_ID)
    assert routes["summarize_orders"][1] == ["transform"], routes  # the transform worker's work
    _assert_summary_matches(platform, logical_date)


def test_daily_run_routes_loads_exactly_and_reports_metrics(
    platform: Platform, api: AirflowApi, statsd: StatsdListener
) -> None:
    _ensure_dag_ready(platform, api, SUMMARY_DAG_ID)  # unpaused: only then does an event queue it
    _ensure_dag_ready(platform, api)
    run_id = _trigger(api, FIRST_RUN)
    state = _wait_for_run(platform, api, run_id)
    tis = _task_instances(platform, run_id)
    assert state == "success", f"run {run_id} {state}: {tis}\n{explain(platform, DAG_ID, run_id)}"
    assert set(tis) == set(EXPECTED_QUEUES[DAG_ID]), tis
    assert all(ti["state"] == "success" for ti in tis.values()), tis
    _assert_routed(platform, tis)

    rows, _, _ = _assert_interval_exact(platform, FIRST_RUN)
    _loaded.append(FIRST_RUN)
    _summarize_from_event(platform, api, run_id, FIRST_RUN)
    assert table_rows(_conninfo(platform, "warehouse"), WAREHOUSE_TABLE) == rows

    def pipeline_run() -> Any:  # closed by the scheduler's ledger listener when the DAG run ends
        with psycopg.connect(_conninfo(platform, "warehouse"), autocommit=True) as conn:
            return conn.execute(
                "SELECT status, rows, finished_at IS NOT NULL FROM etl_audit.pipeline_runs "
                "WHERE pipeline = %s AND run_id = %s",
                (DAG_ID, run_id),
            ).fetchone()

    wait_until(
        lambda: pipeline_run() == ("success", rows, True),
        timeout=30,
        what="ledger pipeline run",
        explain=lambda: f"pipeline_runs row: {pipeline_run()}",
    )

    wanted = {
        "airflow's scheduler heartbeat": lambda names: "airflow.scheduler_heartbeat" in names,
        "airflow's ti.finish": lambda names: any(n.startswith("airflow.ti.finish") for n in names),
        "etl.transfer.rows": lambda names: "airflow.etl.transfer.rows" in names,
        "etl.task.duration (resource monitor)": lambda names: "airflow.etl.task.duration" in names,
        "etl.health.* gauges (gate sensor)": lambda names: any(
            n.startswith("airflow.etl.health.") for n in names
        ),
    }

    def missing() -> list[str]:
        names = statsd.names()
        return [label for label, found in wanted.items() if not found(names)]

    wait_until(
        lambda: not missing(),
        timeout=60,
        what="StatsD metrics",
        explain=lambda: f"missing {missing()}; got {sorted(statsd.names())}",
    )
    transferred = sum(
        int(line.split(":", 1)[1].split("|", 1)[0]) for line in statsd.matching("airflow.etl.transfer.rows")
    )
    assert transferred >= rows, f"etl.transfer.rows adds up to {transferred}, the run moved {rows}"
    assert any("dag_id=etl_orders" in line for line in statsd.matching("airflow.etl.task.duration")), (
        "the resource monitor's metric lacks its dag_id tag"
    )
    assert any(line.endswith("|g") for line in statsd.matching("airflow.etl.health.")), "no health gauge"


@pytest.fixture
def slow_chunks(platform: Platform) -> Any:
    """Every checkpoint UPDATE (one per committed chunk) sleeps CHUNK_PAUSE_S before it commits.

    The second run's transfer then takes long enough to be killed between two chunks on purpose,
    not by luck. The checkpoint table is created as the engine would create it.
    """
    conninfo = _conninfo(platform, "warehouse")
    with psycopg.connect(conninfo) as conn:
        CheckpointStore("etl_platform", "e2e").ensure(conn)
        conn.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION etl_platform.e2e_slow_chunk() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep({}); RETURN NULL; END $$"
            ).format(sql.Literal(CHUNK_PAUSE_S))
        )
        conn.execute(
            "CREATE TRIGGER e2e_slow_chunk AFTER UPDATE ON etl_platform.transfer_checkpoints "
            "FOR EACH STATEMENT EXECUTE FUNCTION etl_platform.e2e_slow_chunk()"
        )
        conn.commit()
    yield
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TRIGGER IF EXISTS e2e_slow_chunk ON etl_platform.transfer_checkpoints")
        conn.execute("DROP FUNCTION IF EXISTS etl_platform.e2e_slow_chunk()")


def test_load_worker_killed_mid_transfer_retries_and_resumes_exactly(
    platform: Platform, api: AirflowApi, slow_chunks: Any
) -> None:
    _ensure_dag_ready(platform, api)
    run_id = _trigger(api, SECOND_RUN)
    transfer_id = f"{DAG_ID}/load_orders/{run_id}/%"

    def mid_transfer() -> tuple[int, int] | None:
        with psycopg.connect(_conninfo(platform, "warehouse"), autocommit=True) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(chunks), 0), coalesce(sum(rows), 0), coalesce(bool_or(done), false) "
                "FROM etl_platform.transfer_checkpoints WHERE transfer_id LIKE %s",
                (transfer_id,),
            ).fetchone()
        assert row is not None
        chunks, rows, done = int(row[0]), int(row[1]), bool(row[2])
        return (chunks, rows) if chunks >= 1 and not done else None

    chunks, rows = wait_until(
        mid_transfer,
        timeout=RUN_TIMEOUT_S,
        interval=0.2,
        what="the second run's transfer to commit a chunk",
        explain=lambda: explain(platform, DAG_ID, run_id),
    )
    before = _task_instances(platform, run_id)["load_orders"]
    assert before["state"] == "running", before
    (victim,) = workers_that_received(platform, before["external_executor_id"])  # load or load-2
    assert "load" in platform.worker(victim).queues, before

    killed = platform.kill(platform.worker(victim).process, signal.SIGKILL)
    wait_until(
        lambda: not alive_pids(killed), timeout=15, interval=0.2, what=f"killed processes {killed} to exit"
    )
    print(f"killed {victim} ({len(killed)} processes) after {chunks} chunk(s), {rows} rows committed")

    platform.start_process(platform.worker(victim).process)  # what a process supervisor would do
    platform.wait_ready(time.monotonic() + 180, workers=[platform.worker(victim)])

    state = _wait_for_run(platform, api, run_id, timeout=RUN_TIMEOUT_S)
    tis = _task_instances(platform, run_id)
    assert state == "success", f"run {run_id} {state}: {tis}\n{explain(platform, DAG_ID, run_id)}"
    load = tis["load_orders"]
    assert load["state"] == "success" and load["try_number"] > before["try_number"], (before, load)
    _assert_routed(platform, tis)

    _assert_interval_exact(platform, SECOND_RUN)
    _loaded.append(SECOND_RUN)
    _ensure_dag_ready(platform, api, SUMMARY_DAG_ID)
    _summarize_from_event(platform, api, run_id, SECOND_RUN)
    expected = sum(
        interval_digest(_conninfo(platform, "source"), SOURCE_TABLE, d - timedelta(days=1), d)[0]
        for d in _loaded
    )
    assert table_rows(_conninfo(platform, "warehouse"), WAREHOUSE_TABLE) == expected

    with psycopg.connect(_conninfo(platform, "warehouse"), autocommit=True) as conn:
        attempts = conn.execute(
            "SELECT try_number, status, resumed_from FROM etl_audit.task_runs "
            "WHERE pipeline = %s AND run_id = %s AND task_id = 'load_orders' ORDER BY try_number",
            (DAG_ID, run_id),
        ).fetchall()
    final = attempts[-1]
    assert final[0] == load["try_number"] and final[1] == "success", attempts
    assert final[2] is not None, f"the retry started over instead of resuming: {attempts}"


def test_bulk_load_spreads_mapped_ranges_over_the_load_workers(platform: Platform, api: AirflowApi) -> None:
    """etl_orders_bulk: eight mapped range transfers go to both load workers (load, load-2) and the
    warehouse ends with exactly the source table (upsert over what the daily runs loaded)."""
    _ensure_dag_ready(platform, api, BULK_DAG_ID)
    run = api.request("POST", f"/api/v2/dags/{BULK_DAG_ID}/dagRuns", json={"logical_date": None})
    run_id = str(run["dag_run_id"])
    started = time.monotonic()
    state = _wait_for_run(platform, api, run_id, dag_id=BULK_DAG_ID)
    tis = _task_instances(platform, run_id, BULK_DAG_ID)
    assert state == "success", f"run {run_id} {state}: {tis}\n{explain(platform, BULK_DAG_ID, run_id)}"
    print(f"bulk run took {time.monotonic() - started:.1f} s")
    mapped = {task: ti for task, ti in tis.items() if task.startswith("load_range[")}
    assert len(mapped) == 8 and all(ti["state"] == "success" for ti in mapped.values()), tis
    routes = _assert_routed(platform, tis, BULK_DAG_ID)
    receivers = {worker for task in mapped for worker in routes[task][1]}
    assert receivers == {"load", "load-2"}, f"the mapped ranges ran only on {receivers}: {routes}"

    everything = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    source = interval_digest(_conninfo(platform, "source"), SOURCE_TABLE, *everything)
    loaded = interval_digest(_conninfo(platform, "warehouse"), WAREHOUSE_TABLE, *everything)
    assert source[0] > 0 and loaded == source, f"warehouse {loaded} != source {source}"


def test_health_gate_defers_in_the_real_triggerer_until_the_reading_recovers(
    platform: Platform, api: AirflowApi
) -> None:
    """e2e_health_gate's PerformanceCheckSensor reads a queue the test holds at critical: its first check
    (in the extract worker) defers, the PerformanceCheckTrigger runs in the platform's triggerer and keeps
    the task deferred while the reading stays critical; once the queue is emptied the trigger fires, the
    same try resumes on a worker and succeeds, and the downstream task runs."""
    ensure_dag_ready(platform, api, GATE_DAG_ID)
    with gate_hold(platform) as hold:
        run_id = trigger_gate(api, hold)
        ti = wait_gate_deferred_in_triggerer(platform, api, run_id)
        assert ti["trigger"]["classpath"] == TRIGGER_CLASS, ti["trigger"]
        assert ti["try_number"] == 1 and ti["queue"] == "extract", ti
        time.sleep(3)  # three of the trigger's 1 s re-reads, all critical
        still = task_instance(api, GATE_DAG_ID, run_id, "gate")
        assert still["state"] == "deferred", still
        assert still["trigger"]["id"] == ti["trigger"]["id"], (ti["trigger"], still["trigger"])
        released = time.monotonic()
    run = wait_run_finished(platform, api, GATE_DAG_ID, run_id)
    print(f"gate run finished {time.monotonic() - released:.1f} s after the queue was emptied")
    gate = task_instance(api, GATE_DAG_ID, run_id, "gate")
    assert run["state"] == "success", f"{run}\n{explain(platform, GATE_DAG_ID, run_id)}"
    assert gate["state"] == "success" and gate["try_number"] == 1, f"resumed, not retried: {gate}"
    assert gate["trigger"] is None, gate  # the trigger is gone once it fired
    assert task_instance(api, GATE_DAG_ID, run_id, "after_gate")["state"] == "success"

    report = api.request(
        "GET", f"/api/v2/dags/{GATE_DAG_ID}/dagRuns/{run_id}/taskInstances/gate/xcomEntries/return_value"
    )["value"]
    readings = {r["metric"]: r for r in report["readings"]}
    assert readings["queue_length"]["value"] == 0 and readings["queue_length"]["level"] == "ok", report
    log = task_logs(platform, GATE_DAG_ID, run_id, lines=400)
    assert "platform health critical: queue_length=3" in log, log
    assert "platform healthy" in log, log
