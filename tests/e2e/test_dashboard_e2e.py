"""The dashboard on the real platform: the api-server loads the plugin, the scheduler and the workers
publish run events, the ledger records a DAG run that has no transfer task.

A manual run of `performance_monitoring` (one short task on the monitoring queue) is watched through
the dashboard's SSE stream; its success event must arrive within 2 s of the end_date the REST API reports.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from etl_devstack.platform import Platform
from tests.e2e.helpers import DASHBOARD_CACHE_TTL_S, AirflowApi, explain, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DAG_ID = "performance_monitoring"
EVENT_DEADLINE_S = 2.0


def test_plugin_is_loaded_with_its_nav_entry_and_needs_a_token(platform: Platform, api: AirflowApi) -> None:
    plugins = api.request("GET", "/api/v2/plugins")["plugins"]
    dashboard = next((p for p in plugins if p["name"] == "etl_dashboard"), None)
    assert dashboard is not None, [p["name"] for p in plugins]
    assert [a["url_prefix"] for a in dashboard["fastapi_apps"]] == ["/etl"]
    views = {(v["name"], v["destination"]): v for v in dashboard["external_views"]}
    assert len(views) == len(dashboard["external_views"]) == 3, dashboard["external_views"]
    assert views["ETL performance", "nav"]["href"] == "/etl/"
    assert views["ETL performance", "nav"]["url_route"] == "etl-performance"
    # The Transfer tab on the DAG run and task instance pages: templated hrefs, routes unique across plugins.
    run_view, task_view = views["Transfer", "dag_run"], views["Transfer", "task_instance"]
    assert run_view["href"] == "/etl/transfer?dag_id={DAG_ID}&run_id={RUN_ID}"
    assert task_view["href"] == (
        "/etl/transfer?dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}"
    )
    routes = [v.get("url_route") for p in plugins for v in p.get("external_views", [])]
    assert {run_view["url_route"], task_view["url_route"]} == {"etl-transfer-run", "etl-transfer-task"}
    assert len(routes) == len(set(routes)), routes

    # Each plugin once: a second copy of the distribution on sys.path would register etl_platform twice.
    assert api.request("GET", "/api/v2/plugins/importErrors")["import_errors"] == []
    assert [p["name"] for p in plugins].count("etl_platform") == 1

    stats = api.client.get("/etl/api/stats")
    assert stats.status_code == 200, stats.text
    assert stats.headers["x-etl-cache"] in ("miss", "memory", "redis")
    assert "overall" in stats.json()
    anonymous = httpx.get(f"{platform.api_url}/etl/api/stats", timeout=30)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{platform.api_url}/etl/", timeout=30).status_code == 401
    browser = httpx.get(f"{platform.api_url}/etl/", headers={"Accept": "text/html"}, timeout=30)
    assert browser.status_code == 303 and "/auth/login?next=" in browser.headers["location"]
    page = httpx.get(f"{platform.api_url}/etl/", cookies={"_token": _token(api)}, timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_run_events_reach_the_stream_and_the_ledger(platform: Platform, api: AirflowApi) -> None:
    _ensure_dag_ready(platform, api)
    events: queue.Queue[tuple[datetime, dict[str, Any]]] = queue.Queue()
    stream = _SseListener(f"{platform.api_url}/etl/api/stream", _token(api), {"pipeline": DAG_ID}, events)
    stream.start()
    try:
        assert stream.subscribed.wait(30), f"the SSE stream did not open: {stream.error}"
        run = api.request(
            "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": datetime.now(UTC).isoformat()}
        )
        run_id = str(run["dag_run_id"])
        finished = wait_until(
            lambda: _finished(api, run_id),
            timeout=300,
            what=f"{DAG_ID} run {run_id} to finish",
            interval=0.5,
            explain=lambda: explain(platform, DAG_ID, run_id, names=["scheduler", "worker-monitoring"]),
        )
        assert finished["state"] == "success", finished
        end_date = datetime.fromisoformat(finished["end_date"])
        seen: list[dict[str, Any]] = []
        received_at = None
        deadline = time.monotonic() + 10
        while received_at is None and time.monotonic() < deadline:
            try:
                at, event = events.get(timeout=0.5)
            except queue.Empty:
                continue
            seen.append(event)
            if event["kind"] == "dag_run" and event["run_id"] == run_id and event["status"] == "success":
                received_at = at
        assert received_at is not None, f"no success event for {run_id}; got {seen}"
        latency = (received_at - end_date).total_seconds()
        print(f"dag_run success event received {latency:.3f} s after the run's end_date")
        assert latency < EVENT_DEADLINE_S, f"event {latency:.3f} s after end_date {end_date}"
        ours = [e for e in seen if e["run_id"] == run_id]
        assert ("dag_run", "running") in {(e["kind"], e["status"]) for e in ours}, ours
        task_events = {(e["task_id"], e["status"]) for e in ours if e["kind"] == "task"}
        assert {("read_platform_health", "running"), ("read_platform_health", "success")} <= task_events, ours
    finally:
        stream.stop()

    runs = api.client.get("/etl/api/runs", params={"pipeline": DAG_ID}).json()["runs"]
    listed = {r["run_id"]: r for r in runs}
    assert run_id in listed, runs  # a DAG without transfer tasks is in the ledger too
    assert listed[run_id]["status"] == "success" and listed[run_id]["finished_at"] is not None
    assert datetime.fromisoformat(listed[run_id]["started_at"]) == datetime.fromisoformat(
        finished["start_date"]
    )


def _token(api: AirflowApi) -> str:
    return str(api.client.headers["Authorization"]).split(" ", 1)[1]


def _ensure_dag_ready(platform: Platform, api: AirflowApi) -> None:
    wait_until(
        lambda: api.get_or_none(f"/api/v2/dags/{DAG_ID}") is not None,
        timeout=300,
        what=f"the dag-processor to parse {DAG_ID}",
        interval=2,
        explain=lambda: explain(platform, names=["dag-processor"]),
    )
    api.request("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})


def _finished(api: AirflowApi, run_id: str) -> dict[str, Any] | None:
    run = api.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
    return dict(run) if run["state"] in ("success", "failed") and run.get("end_date") else None


class _SseListener(threading.Thread):
    """Reads the dashboard's SSE stream; every `run` event is queued with the time it arrived."""

    def __init__(
        self,
        url: str,
        token: str,
        params: dict[str, str],
        events: queue.Queue[tuple[datetime, dict[str, Any]]],
    ) -> None:
        super().__init__(name="dashboard-sse", daemon=True)
        self.url, self.token, self.params, self.events = url, token, params, events
        self.subscribed = threading.Event()
        self.error: str | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=60))
        self._stop_requested = False

    def run(self) -> None:
        event_name = None
        try:
            headers = {"Authorization": f"Bearer {self.token}"}
            with self._client.stream("GET", self.url, params=self.params, headers=headers) as resp:
                if resp.status_code != 200:
                    self.error = f"{resp.status_code} {resp.read()[:500]!r}"
                    return
                for line in resp.iter_lines():
                    if self._stop_requested:
                        return
                    if line.startswith(": subscribed"):
                        self.subscribed.set()
                    elif line.startswith("event:"):
                        event_name = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event_name == "run":
                        self.events.put((datetime.now(UTC), json.loads(line.split(":", 1)[1])))
        except httpx.HTTPError as exc:
            if not self._stop_requested:
                self.error = repr(exc)

    def stop(self) -> None:
        self._stop_requested = True
        self._client.close()
        self.join(20)


def test_a_finished_dag_run_invalidates_the_api_servers_stats_cache(
    platform: Platform, api: AirflowApi
) -> None:
    """/etl/api/stats, cached in the api-server (memory) and Redis for an hour on this platform
    (DASHBOARD_CACHE_TTL_S), counts a DAG run as soon as the scheduler's listener reports it finished:
    the next request is a miss (or the entry another api-server process refilled), never the old entry."""
    _ensure_dag_ready(platform, api)

    def stats() -> tuple[dict[str, Any], str]:
        resp = api.client.get("/etl/api/stats")
        assert resp.status_code == 200, resp.text
        return resp.json(), resp.headers["x-etl-cache"]

    def successes(body: dict[str, Any]) -> int:
        ours = [p for p in body["pipelines"] if p["pipeline"] == DAG_ID]
        return int(ours[0]["by_status"]["success"]) if ours else 0

    before, _ = stats()
    cached, source = stats()
    assert source == "memory" and cached == before, (source, before, cached)  # served from the cache
    run = api.request(
        "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": datetime.now(UTC).isoformat()}
    )
    run_id = str(run["dag_run_id"])
    finished = wait_until(
        lambda: _finished(api, run_id),
        timeout=300,
        what=f"{DAG_ID} run {run_id} to finish",
        interval=0.5,
        explain=lambda: explain(platform, DAG_ID, run_id, names=["scheduler", "worker-monitoring"]),
    )
    assert finished["state"] == "success", finished
    ended = time.monotonic()
    after, source = wait_until(
        lambda: (lambda s: s if successes(s[0]) == successes(before) + 1 else None)(stats()),
        timeout=10,
        interval=0.2,
        what=f"the stats to count {run_id} (the cache lives {DASHBOARD_CACHE_TTL_S} s)",
        explain=lambda: f"stats now: {stats()}",
    )
    print(f"stats counted the run {time.monotonic() - ended:.2f} s after the REST API showed it finished")
    assert source in ("miss", "redis"), source
    assert after["overall"]["runs"] == before["overall"]["runs"] + 1, (before["overall"], after["overall"])
