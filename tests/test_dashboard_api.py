"""The dashboard API over HTTP: a real ledger in PostgreSQL, real Redis, Airflow's real auth manager.

The app is built in-process (create_app with explicit settings) and called through FastAPI's
TestClient, or through a real uvicorn server in a thread where a response streams (SSE). Tokens are
minted by Airflow's SimpleAuthManager with the same signer the api-server uses, so a valid token here
is exactly what POST /auth/token hands out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

import httpx
import psycopg
import pytest
import redis
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from psycopg import sql

from etl_devstack.platform import free_port
from etl_platform.common.backoff import Backoff
from etl_platform.dashboard.app import create_app
from etl_platform.dashboard.cache import TwoLevelCache
from etl_platform.dashboard.settings import DashboardSettings, derive_cursor_key
from etl_platform.events import VERSION_KEY, publish_run_event, run_event
from etl_platform.ledger.migrate import migrate
from harness import PgServer, RedisDb

ENDPOINTS = (
    "/",
    "/transfer",
    "/static/index.html",
    "/static/transfer.html",
    "/api/runs",
    "/api/stats",
    "/api/series",
    "/api/stream",
    "/api/transfer",
    "/api/openapi.json",
    "/metrics",
)
API_ROUTES = ("/api/runs", "/api/stats", "/api/series", "/api/stream", "/metrics")
JWT_SECRET = "etl-dashboard-test-" + "s" * 60


# ------------------------------------------------------------------------------------------ fixtures
@dataclass
class Tokens:
    admin: str
    viewer: str
    no_role: str
    expired: str


@pytest.fixture(scope="module")
def tokens(airflow_home: Any) -> Iterator[Tokens]:
    """Airflow's auth manager initialised as the api-server does (init_auth_manager), and its tokens."""
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
        mp.setenv(
            "AIRFLOW__CORE__AUTH_MANAGER",
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        )
        manager = init_auth_manager()
        type(manager)._get_token_validator.cache_clear()  # validators are cached per class

        def mint(role: str | None, seconds: int = 3600) -> str:
            user = SimpleAuthManagerUser(username=f"user-{role}", role=role)
            return manager.generate_jwt(user, expiration_time_in_seconds=seconds)

        yield Tokens(mint("admin"), mint("viewer"), mint(None), mint("admin", seconds=-60))
        type(manager)._get_token_validator.cache_clear()


@pytest.fixture
def ledger(pg_server: PgServer) -> Iterator[str]:
    """A migrated ledger database of its own (etl_audit is a fixed schema); yields its conninfo."""
    name = f"etl_test_dash_{datetime.now(UTC):%H%M%S%f}"
    with pg_server.connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conninfo = pg_server.conninfo(name)
    with psycopg.connect(conninfo) as conn:
        migrate(conn)
    yield conninfo
    with pg_server.connect() as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def settings_for(ledger: str, redis_url: str | None, **overrides: Any) -> DashboardSettings:
    return DashboardSettings(
        ledger_conninfo=ledger,
        redis_url=redis_url,
        cursor_key=derive_cursor_key("test-secret-key"),
        **overrides,
    )


@contextmanager
def client_for(settings: DashboardSettings, token: str | None = None) -> Iterator[TestClient]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with TestClient(create_app(settings), headers=headers) as client:
        yield client


def insert_runs(conninfo: str, runs: list[dict[str, Any]]) -> None:
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        cur.executemany(
            'INSERT INTO etl_audit.pipeline_runs (pipeline, run_id, started_at, finished_at, status, "rows") '
            "VALUES (%(pipeline)s, %(run_id)s, %(started_at)s, %(finished_at)s, %(status)s, %(rows)s)",
            runs,
        )


def make_runs(pipelines: list[str], per_pipeline: int, start: datetime) -> list[dict[str, Any]]:
    runs = []
    for p_index, pipeline in enumerate(pipelines):
        for i in range(per_pipeline):
            began = start + timedelta(hours=i, minutes=p_index)
            status = "failed" if i % 4 == 3 else "success"
            runs.append(
                {
                    "pipeline": pipeline,
                    "run_id": f"manual__{i:04d}",
                    "started_at": began,
                    "finished_at": began + timedelta(seconds=30 + i),
                    "status": status,
                    "rows": 1000 * (i + 1),
                }
            )
    return runs


def queries_of(response: httpx.Response) -> int:
    return int(response.headers["x-etl-db-queries"])


# ------------------------------------------------------------------------------------------ auth
def test_every_endpoint_needs_a_valid_token_with_dag_run_read_access(
    tokens: Tokens, ledger: str, redis_db: RedisDb
) -> None:
    with client_for(settings_for(ledger, redis_db.url)) as client:
        for path in ENDPOINTS:
            for label, headers in (
                ("no token", {}),
                ("garbage", {"Authorization": "Bearer not-a-jwt"}),
                ("expired", {"Authorization": f"Bearer {tokens.expired}"}),
                ("forged", {"Authorization": f"Bearer {tokens.admin[:-4]}AAAA"}),
                ("basic", {"Authorization": "Basic YWRtaW46YWRtaW4="}),
            ):
                resp = client.get(path, headers=headers)
                assert resp.status_code == 401, (path, label, resp.status_code, resp.text)
                assert resp.headers["www-authenticate"] == "Bearer", (path, label)
            client.cookies.set("_token", "garbage")
            assert client.get(path).status_code == 401, path
            client.cookies.clear()
            resp = client.get(path, headers={"Authorization": f"Bearer {tokens.no_role}"})
            assert resp.status_code == 403, (path, resp.status_code)

        # A valid token: the bearer header, or the UI's _token cookie (the page and its assets).
        viewer = {"Authorization": f"Bearer {tokens.viewer}"}
        assert client.get("/api/stats", headers=viewer).status_code == 200
        client.cookies.set("_token", tokens.admin)
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert client.get("/api/runs").status_code == 200
        # An explicit (bad) bearer token wins over a good cookie, as in Airflow's own API.
        assert client.get("/api/runs", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get("/static/..%2Fapp.py").status_code == 404
        assert client.get("/static/%00").status_code == 404  # not a 500
        assert client.get("/static/" + "x" * 5000).status_code == 404
        client.cookies.clear()

        # A browser opening the page without a session is sent to Airflow's login, coming back after;
        # the API and the assets still answer 401, whatever the client accepts.
        html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        visit = client.get("/", headers=html, follow_redirects=False)
        assert visit.status_code == 303, visit.text
        login, _, query = visit.headers["location"].partition("?")
        assert login.startswith("/auth/") and login.endswith("login")
        assert parse_qs(query)["next"] == ["http://testserver/"]
        for path in ("/api/runs", "/static/dashboard.js", "/metrics"):
            assert client.get(path, headers=html, follow_redirects=False).status_code == 401, path


# ------------------------------------------------------------------------------------------ runs
def test_runs_pagination_filters_and_cursor_integrity(tokens: Tokens, ledger: str, redis_db: RedisDb) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    insert_runs(ledger, make_runs(["etl_orders", "etl_customers"], 12, start))
    with client_for(settings_for(ledger, redis_db.url), tokens.admin) as client:
        seen: list[tuple[str, str, str]] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"page_size": 5, **({"cursor": cursor} if cursor else {})}
            body = client.get("/api/runs", params=params).json()
            pages += 1
            assert body["page_size"] == 5 and len(body["runs"]) <= 5
            seen += [(r["started_at"], r["pipeline"], r["run_id"]) for r in body["runs"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert pages == 5 and len(seen) == 24 and len(set(seen)) == 24
        assert seen == sorted(seen, reverse=True), "newest first on (started_at, pipeline, run_id)"

        first = client.get("/api/runs", params={"page_size": 1}).json()["runs"][0]
        assert first["pipeline"] == "etl_customers" and first["run_id"] == "manual__0011"
        assert first["duration_s"] == 41.0 and first["rows"] == 12000 and first["status"] == "failed"
        assert datetime.fromisoformat(first["started_at"]).utcoffset() == timedelta(0)

        failed = client.get("/api/runs", params={"pipeline": "etl_orders", "status": "failed"}).json()
        assert [r["run_id"] for r in failed["runs"]] == ["manual__0011", "manual__0007", "manual__0003"]
        window = {
            "since": (start + timedelta(hours=2)).isoformat(),
            "until": (start + timedelta(hours=4)).isoformat(),
        }
        ranged = client.get("/api/runs", params={**window, "pipeline": "etl_orders"}).json()
        assert [r["run_id"] for r in ranged["runs"]] == ["manual__0003", "manual__0002"]

        # Invalid parameters: 400 naming the parameter (see test_invalid_parameters_* for every kind).
        for params, name in (
            ({"page_size": 0}, "page_size"),
            ({"page_size": 101}, "page_size"),
            ({"since": "yesterday"}, "since"),
            ({"status": "done"}, "status"),
            ({"since": window["until"], "until": window["since"]}, "until"),
        ):
            resp = client.get("/api/runs", params=params)
            assert resp.status_code == 400, (params, resp.text)
            assert _named(resp) == [name], (params, resp.json())

        # The cursor is signed and bound to its filters.
        cursor = client.get("/api/runs", params={"page_size": 5}).json()["next_cursor"]
        payload, _, signature = cursor.partition(".")
        tampered = f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
        for bad in (tampered, payload[:-2] + "xx." + signature, "garbage", cursor + "x", cursor[:-1]):
            resp = client.get("/api/runs", params={"page_size": 5, "cursor": bad})
            assert resp.status_code == 400, (bad, resp.text)
            assert "invalid cursor" in resp.json()["detail"] and _named(resp) == ["cursor"]
        other_filters = client.get(
            "/api/runs", params={"page_size": 5, "cursor": cursor, "status": "success"}
        )
        assert other_filters.status_code == 400 and "invalid cursor" in other_filters.json()["detail"]
        assert _named(other_filters) == ["cursor"]
        assert client.get("/api/runs", params={"page_size": 5, "cursor": cursor}).status_code == 200


# ------------------------------------------------------------------------------------------ parameters
def _named(resp: httpx.Response) -> list[str | None]:
    """The parameters a 400 names, checking the body's shape on the way."""
    body = resp.json()
    assert set(body) == {"detail", "errors"} and isinstance(body["detail"], str), body
    for error in body["errors"]:
        assert set(error) == {"parameter", "message"} and error["message"], body
        assert f"{error['parameter']}: {error['message']}" in body["detail"], body
    return [e["parameter"] for e in body["errors"]]


def _refused(client: TestClient, path: str, params: Any) -> list[str | None]:
    resp = client.get(path, params=params)
    assert resp.status_code == 400, (path, params, resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")
    return _named(resp)


TIME_ROUTES = ("/api/runs", "/api/stats", "/api/series")


def test_dates_outside_the_representable_range_are_400_naming_the_parameter(
    tokens: Tokens, ledger: str, redis_db: RedisDb
) -> None:
    """Year 1 / 9999 with offsets pushing them out of Python's range, day and hour rounding past
    9999-12-31, text that is no date, numbers that once parsed as epoch seconds: 400, never 500."""
    insert_runs(ledger, make_runs(["etl_orders"], 3, datetime(2026, 3, 1, tzinfo=UTC)))
    out_of_range = (
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: OverflowError in astimezone
        "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
        "9999-12-31T23:30:00+00:00",  # representable, but its day/hour rounding is not
        "0001-01-01T00:00:00",
        "1899-12-31T23:59:59.999999Z",
        "9999-01-01T00:00:00.000001Z",
    )
    not_dates = ("1e300", "1700000000", "294277-01-01T00:00:00Z", "2026-01-01T00:00+24:00", "x" * 65, "")
    with client_for(settings_for(ledger, redis_db.url), tokens.admin) as client:
        for path in TIME_ROUTES:
            for name in ("since", "until"):
                for value in out_of_range + not_dates:
                    assert _refused(client, path, {name: value}) == [name], (path, name, value)
            range_error = client.get(path, params={"since": out_of_range[0]}).json()["detail"]
            assert "1900-01-01" in range_error and "9999-01-01" in range_error
            # since must precede until: the later parameter is named
            ordered = {"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"}
            assert _refused(client, path, ordered) == ["until"], path
            assert _refused(client, path, {**ordered, "until": ordered["since"]}) == ["until"], path
        assert _refused(client, "/api/series", {"since": "2999-01-01T00:00:00Z"}) == ["since"]  # until: now

        # The edges themselves are accepted and computed with, in every route.
        edges = {"since": "1900-01-01T00:00:00Z", "until": "9999-01-01T00:00:00Z"}
        for path in ("/api/runs", "/api/stats"):
            resp = client.get(path, params=edges)
            assert resp.status_code == 200, (path, resp.text)
        assert client.get("/api/stats", params=edges).json()["overall"]["runs"] == 3
        assert len(client.get("/api/runs", params=edges).json()["runs"]) == 3
        for params in (
            {"until": "1900-01-01T00:00:00Z"},  # the default since is 14 days earlier still
            {"since": "9998-12-31T12:00:00Z", "until": "9999-01-01T00:00:00Z", "bucket": "hour"},
            {"since": "1900-01-01T00:00:00-13:59", "until": "1900-01-02T00:00:00Z", "bucket": "hour"},
        ):
            resp = client.get("/api/series", params=params)
            assert resp.status_code == 200 and resp.json()["points"] == [], (params, resp.text)
        # An offset is an instant like any other: +23:59 and its UTC equivalent select the same runs.
        east = client.get("/api/runs", params={"since": "2026-03-02T00:59:00+23:59"}).json()["runs"]
        utc = client.get("/api/runs", params={"since": "2026-03-01T01:00:00Z"}).json()["runs"]
        assert [r["run_id"] for r in east] == [r["run_id"] for r in utc] == ["manual__0002", "manual__0001"]


def test_control_characters_and_over_long_values_are_400_naming_the_parameter(
    tokens: Tokens, ledger: str, redis_db: RedisDb
) -> None:
    """C0 (tab included), DEL and C1 are refused in every text parameter; other Unicode is a value."""
    insert_runs(ledger, make_runs(["etl_orders"], 2, datetime(2026, 3, 1, tzinfo=UTC)))
    controls = ("\x00", "\t", "\n", "\x1b", "\x1f", "\x7f", "\x85", "\x9f")
    with client_for(settings_for(ledger, redis_db.url), tokens.admin) as client:
        for path in ("/api/runs", "/api/series", "/api/stream"):
            for char in controls:
                assert _refused(client, path, {"pipeline": f"etl{char}orders"}) == ["pipeline"], (path, char)
            assert _refused(client, path, {"pipeline": "p" * 251}) == ["pipeline"], path
            assert _refused(client, path, {"pipeline": ""}) == ["pipeline"], path
        for name in ("since", "until"):
            assert _refused(client, "/api/runs", {name: "2026-03-01\x00"}) == [name]
        assert _refused(client, "/api/runs", {"cursor": "abc.def\x00"}) == ["cursor"]
        assert _refused(client, "/api/runs", {"cursor": "a." + "b" * 12_000}) == ["cursor"]
        assert "control characters" in client.get("/api/runs", params={"pipeline": "\x00"}).json()["detail"]
        # Not control characters: plain values, answered (nothing matches them here).
        for pipeline in ("p" * 250, "etl_\u00f8rders", "etl \U0001f600", "\u00a0\u2028"):
            for path in ("/api/runs", "/api/series"):
                resp = client.get(path, params={"pipeline": pipeline})
                assert resp.status_code == 200, (path, pipeline, resp.text)
                assert resp.json()["runs" if path == "/api/runs" else "points"] == []
        assert len(client.get("/api/runs", params={"pipeline": "etl_orders"}).json()["runs"]) == 2


def test_repeated_and_unknown_parameters_are_400_naming_them(
    tokens: Tokens, ledger: str, redis_db: RedisDb
) -> None:
    with client_for(settings_for(ledger, redis_db.url), tokens.admin) as client:
        repeated = {
            "/api/runs": [("pipeline", "a"), ("pipeline", "b")],
            "/api/stats": [("since", "2026-03-01T00:00:00Z")] * 2,  # even the same value twice
            "/api/series": [("bucket", "day"), ("pipeline", "x"), ("bucket", "hour")],
            "/api/stream": [("pipeline", "a"), ("pipeline", "a")],
        }
        for path, pairs in repeated.items():
            name = pairs[0][0]
            assert _refused(client, path, pairs) == [name], path
            assert "more than once" in client.get(path, params=pairs).json()["detail"]
        assert _refused(client, "/api/runs", [("page_size", "5"), ("status", "x"), ("page_size", "5")]) in (
            ["status"],  # the value is checked first; either way a named 400
            ["page_size"],
        )
        takes = {
            "/api/runs": "pipeline, status, since, until, page_size, cursor",
            "/api/stats": "since, until",
            "/api/series": "pipeline, since, until, bucket",
            "/api/stream": "pipeline",
            "/metrics": "no parameters",
        }
        for path in API_ROUTES:
            assert _refused(client, path, {"pipline": "etl_orders"}) == ["pipline"], path
            detail = client.get(path, params={"pipline": "x"}).json()["detail"]
            assert detail == f"pipline: unknown parameter (this endpoint takes: {takes[path]})", path
            assert sorted(map(str, _refused(client, path, {"a": "1", "b\x00": "2"}))) == ["a", "b\x00"], path
        assert _refused(client, "/api/openapi.json", {"x": "1"}) == ["x"]
        long_name = "n" * 5000
        assert _refused(client, "/api/stats", {long_name: "1"}) == ["n" * 80 + "..."]
        # The page and its files ignore query strings (cache busting, the Airflow UI's own).
        assert client.get("/", params={"v": "1"}).status_code == 200
        assert client.get("/static/dashboard.js", params={"v": "1", "x": "2"}).status_code == 200


def test_errors_never_echo_the_value_and_auth_still_comes_first(
    tokens: Tokens, ledger: str, redis_db: RedisDb
) -> None:
    marker = "etl_secretish_value_\u00e9"
    bad = {
        "/api/runs": {"pipeline": marker + "\x00", "since": marker, "cursor": marker, "pipline": "1"},
        "/api/stats": {"since": marker, "until": "x"},
        "/api/series": {"bucket": marker},
        "/api/stream": {"pipeline": marker + "\x00"},
        "/metrics": {"q": "1"},
    }
    with client_for(settings_for(ledger, redis_db.url)) as client:
        for path, params in bad.items():
            resp = client.get(path, params=params, headers={"Authorization": f"Bearer {tokens.admin}"})
            assert resp.status_code == 400 and marker not in resp.text, (path, resp.text)
            assert set(_named(resp)) == set(params), (path, resp.json())
            # Without a valid token, or without the right, the parameters are never looked at.
            assert client.get(path, params=params).status_code == 401, path
            no_role = client.get(path, params=params, headers={"Authorization": f"Bearer {tokens.no_role}"})
            assert no_role.status_code == 403, path
            repeated = client.get(path, params=[("pipeline", "a"), ("pipeline", "b")])
            assert repeated.status_code == 401, path


def test_a_cursor_over_the_longest_airflow_ids_fits_the_limit(
    tokens: Tokens, ledger: str, redis_db: RedisDb
) -> None:
    """Cursors are capped in length; the cap must never refuse a cursor the API itself issued."""
    from etl_platform.dashboard.cursor import encode_cursor
    from etl_platform.dashboard.params import CURSOR_MAX_LENGTH, ID_MAX_LENGTH

    pipeline, run_id = "\U0001f600" * ID_MAX_LENGTH, "\U0010ffff" * ID_MAX_LENGTH  # 12 JSON bytes each
    worst = encode_cursor((datetime(9999, 1, 1, tzinfo=UTC), pipeline, run_id), "f" * 32, b"k")
    assert len(worst) <= CURSOR_MAX_LENGTH
    start = datetime(2026, 3, 1, tzinfo=UTC)
    insert_runs(
        ledger,
        [
            {
                "pipeline": pipeline,
                "run_id": run_id + str(i),
                "started_at": start + timedelta(hours=i),
                "finished_at": None,
                "status": "running",
                "rows": 0,
            }
            for i in range(2)
        ],
    )
    with client_for(settings_for(ledger, redis_db.url), tokens.admin) as client:
        first = client.get("/api/runs", params={"page_size": 1}).json()
        assert first["next_cursor"] and len(first["next_cursor"]) > 8000
        second = client.get("/api/runs", params={"page_size": 1, "cursor": first["next_cursor"]})
        assert second.status_code == 200, second.text
        assert [r["run_id"] for r in second.json()["runs"]] == [run_id + "0"]


def test_openapi_schema_documents_every_constraint(tokens: Tokens, ledger: str, redis_db: RedisDb) -> None:
    from etl_platform.dashboard.params import CURSOR_MAX_LENGTH, ID_MAX_LENGTH

    with client_for(settings_for(ledger, redis_db.url), tokens.viewer) as client:
        resp = client.get("/api/openapi.json")
        assert resp.status_code == 200
    schema = resp.json()
    assert schema == create_app(settings_for(ledger, None)).openapi()

    def params_of(path: str) -> dict[str, dict[str, Any]]:
        found = {}
        for p in schema["paths"][path]["get"].get("parameters", []):
            assert p["in"] == "query" or path == "/static/{path}", p
            variants = p["schema"].get("anyOf", [p["schema"]])
            found[p["name"]] = next(v for v in variants if v.get("type") != "null") | {
                "description": p.get("description", "")
            }
        return found

    runs = params_of("/api/runs")
    assert list(runs) == ["pipeline", "status", "since", "until", "page_size", "cursor"]
    assert runs["pipeline"]["maxLength"] == ID_MAX_LENGTH and runs["pipeline"]["minLength"] == 1
    assert runs["pipeline"]["pattern"] == r"^[^\x00-\x1f\x7f-\x9f]*$"
    assert runs["status"]["enum"] == ["pending", "running", "success", "failed"]
    assert (runs["page_size"]["minimum"], runs["page_size"]["maximum"]) == (1, 100)
    assert runs["cursor"]["maxLength"] == CURSOR_MAX_LENGTH and "pattern" in runs["cursor"]
    for path in TIME_ROUTES:
        for name in ("since", "until"):
            field = params_of(path)[name]
            assert field["format"] == "date-time" and "1900-01-01" in field["description"], (path, name)
    assert params_of("/api/series")["bucket"]["enum"] == ["hour", "day"]
    assert list(params_of("/api/stream")) == ["pipeline"] and params_of("/metrics") == {}
    for path in API_ROUTES:
        responses = schema["paths"][path]["get"]["responses"]
        assert {"400", "401", "403"} <= set(responses) and "422" not in responses, path
        assert responses["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "ParameterErrorBody"
        )
    from etl_platform.dashboard.params import RunStatus
    from etl_platform.dashboard.query_common import STATUSES

    assert typing.get_args(RunStatus) == STATUSES


def test_series_defaults_to_the_last_14_days(tokens: Tokens, ledger: str, redis_db: RedisDb) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    insert_runs(ledger, make_runs(["etl_orders"], 3, now - timedelta(days=2)))
    insert_runs(ledger, make_runs(["etl_old"], 2, now - timedelta(days=30)))
    with client_for(settings_for(ledger, redis_db.url), tokens.admin) as client:
        body = client.get("/api/series").json()
        assert body["bucket"] == "day" and {p["pipeline"] for p in body["points"]} == {"etl_orders"}
        assert sum(p["runs"] for p in body["points"]) == 3
        hourly = client.get(
            "/api/series", params={"bucket": "hour", "since": (now - timedelta(days=3)).isoformat()}
        )
        assert hourly.status_code == 200 and sum(p["runs"] for p in hourly.json()["points"]) == 3
        too_long = client.get("/api/series", params={"bucket": "hour"})
        assert too_long.status_code == 400 and "hour" in too_long.json()["detail"]
        assert _named(too_long) == ["bucket"]
        week = client.get("/api/series", params={"bucket": "week"})
        assert week.status_code == 400 and _named(week) == ["bucket"]


# ------------------------------------------------------------------------------------------ cache
def test_stats_cache_memory_redis_and_expiry(tokens: Tokens, ledger: str, redis_db: RedisDb) -> None:
    insert_runs(ledger, make_runs(["etl_orders", "etl_customers"], 4, datetime(2026, 3, 1, tzinfo=UTC)))
    settings = settings_for(ledger, redis_db.url, cache_ttl_s=1.5)
    with client_for(settings, tokens.admin) as first:
        miss = first.get("/api/stats")
        assert miss.status_code == 200 and miss.headers["x-etl-cache"] == "miss" and queries_of(miss) == 1
        assert miss.json()["overall"]["runs"] == 8
        hit = first.get("/api/stats")
        assert hit.headers["x-etl-cache"] == "memory" and queries_of(hit) == 0
        assert hit.json() == miss.json()
        # Another api-server process: its own memory, the same Redis.
        with client_for(settings, tokens.admin) as second:
            shared = second.get("/api/stats")
            assert shared.headers["x-etl-cache"] == "redis" and queries_of(shared) == 0
            assert shared.json() == miss.json()
            assert second.get("/api/stats").headers["x-etl-cache"] == "memory"
        other_range = first.get("/api/stats", params={"since": "2026-03-01T00:00:00+00:00"})
        assert other_range.headers["x-etl-cache"] == "miss"
        time.sleep(1.6)  # the TTL: memory and Redis entries are gone
        expired = first.get("/api/stats")
        assert expired.headers["x-etl-cache"] == "miss" and queries_of(expired) == 1
    keys = [k.decode() for k in redis_db.client.keys("etl:dashboard:v*")]
    assert keys and all(k.startswith("etl:dashboard:v0:stats:") for k in keys), keys


def test_requests_within_one_bucket_share_a_cache_entry(
    tokens: Tokens, ledger: str, redis_db: RedisDb
) -> None:
    """The page asks for "the last 7 days" with a new `since` every time: the answer only changes per
    bucket (stats: UTC day; hourly series: hour), so those requests must not all miss the cache."""
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    insert_runs(ledger, make_runs(["etl_orders"], 6, now - timedelta(hours=8)))
    with client_for(settings_for(ledger, redis_db.url), tokens.admin) as client:
        stats, series = [], []
        for minutes in (0, 7, 13):  # all inside one hour (and one day) of each other
            since = (now - timedelta(days=6, minutes=minutes)).isoformat()
            until = (now - timedelta(minutes=minutes)).isoformat()
            stats.append(client.get("/api/stats", params={"since": since}))
            series.append(
                client.get("/api/series", params={"since": since, "until": until, "bucket": "hour"})
            )
        assert [r.headers["x-etl-cache"] for r in stats] == ["miss", "memory", "memory"]
        assert [r.headers["x-etl-cache"] for r in series] == ["miss", "memory", "memory"]
        body = series[0].json()
        assert sum(p["runs"] for p in body["points"]) == 6
        assert datetime.fromisoformat(body["until"]) - datetime.fromisoformat(body["since"]) <= timedelta(
            days=6
        )
        assert datetime.fromisoformat(body["since"]).minute == 0
        # a different bucket is a different entry
        later = client.get(
            "/api/series", params={"since": (now - timedelta(days=5)).isoformat(), "bucket": "hour"}
        )
        assert later.headers["x-etl-cache"] == "miss"


def test_memory_cache_is_bounded(redis_db: RedisDb) -> None:
    cache = TwoLevelCache(redis_db.client, ttl_s=60, max_entries=3)
    for i in range(10):  # keys come from request parameters: a client can ask for many
        cache.get_or_compute(f"k{i}", lambda i=i: {"n": i})
    assert [cache.peek_memory(f"k{i}") for i in range(10)] == [None] * 7 + [{"n": 7}, {"n": 8}, {"n": 9}]
    assert cache.get_or_compute("k0", lambda: {"n": -1}) == ({"n": 0}, "redis")  # Redis still has it


def test_hour_ranges_align_without_emptying_short_ranges() -> None:
    from etl_platform.dashboard.aggregates import align_range

    t = datetime(2026, 5, 1, 10, 30, tzinfo=UTC)
    assert align_range(t, t + timedelta(minutes=15), "hour") == (
        t.replace(minute=0),
        t.replace(hour=11, minute=0),
    )
    assert align_range(t - timedelta(days=7), t, "hour") == (
        t.replace(hour=11, minute=0) - timedelta(days=7),
        t.replace(hour=11, minute=0),
    )
    assert align_range(t, t + timedelta(hours=2), "day") == (
        t.replace(hour=0, minute=0),
        t.replace(hour=0, minute=0) + timedelta(days=1),
    )


def test_memory_expiry_uses_the_injected_clock(redis_db: RedisDb) -> None:
    now = [1000.0]
    cache = TwoLevelCache(redis_db.client, ttl_s=60, clock=lambda: now[0])
    calls: list[int] = []

    def compute() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    assert cache.get_or_compute("k", compute) == ({"n": 1}, "miss")
    assert cache.get_or_compute("k", compute) == ({"n": 1}, "memory")
    now[0] += 61  # memory expired; Redis (real time) still holds it
    assert cache.get_or_compute("k", compute) == ({"n": 1}, "redis")
    redis_db.client.incr(VERSION_KEY)
    cache.set_version(1)  # what the subscriber does when a run finishes
    assert cache.get_or_compute("k", compute) == ({"n": 2}, "miss")
    with pytest.raises(ValueError):
        TwoLevelCache(None, ttl_s=0)


def test_a_finished_dag_run_invalidates_every_process_cache(
    tokens: Tokens, ledger: str, redis_db: RedisDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real listener (scheduler side) opens and closes the run in the ledger and publishes; the
    next request in each api-server process is a miss showing the new run, within 2 s."""
    from etl_platform.listeners import run_events

    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID", "etl_test_dash_ledger")
    monkeypatch.setenv("AIRFLOW_CONN_ETL_TEST_DASH_LEDGER", _uri(ledger))
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__REDIS_CONN_ID", "etl_test_dash_redis")
    monkeypatch.setenv("AIRFLOW_CONN_ETL_TEST_DASH_REDIS", redis_db.url)
    monkeypatch.setattr(run_events, "_conn_urls", {})
    monkeypatch.setattr(run_events, "_backoff", Backoff(run_events.RETRY_AFTER_S))
    insert_runs(ledger, make_runs(["etl_orders"], 3, datetime.now(UTC) - timedelta(days=1)))
    settings = settings_for(ledger, redis_db.url, cache_ttl_s=600)
    with client_for(settings, tokens.admin) as one, client_for(settings, tokens.admin) as two:
        for client in (one, two):
            assert _wait(lambda c=client: c.app.state.dashboard.cache.subscribed.is_set(), 5)
            client.get("/api/stats")
            assert client.get("/api/stats").headers["x-etl-cache"] == "memory"

        # A finished run of another platform on the same Redis server (pub/sub spans databases): its
        # version is not ours, so nothing is invalidated and no foreign version is adopted.
        foreign = {**run_event("dag_run", "etl_elsewhere", "r", "success"), "version": 99}
        redis_db.client.publish("etl:runs:etl_elsewhere", json.dumps(foreign))
        time.sleep(0.3)
        assert one.get("/api/stats").headers["x-etl-cache"] == "memory"
        assert one.app.state.dashboard.cache.version == 0

        started = datetime.now(UTC).replace(microsecond=123456)
        dag_run = SimpleNamespace(
            dag_id="etl_reports", run_id="manual__r1", start_date=started, end_date=None
        )
        run_events.on_dag_run_running(dag_run=dag_run, msg="started")
        run_events.on_dag_run_running(dag_run=dag_run, msg="started")  # idempotent: one row
        dag_run.end_date = started + timedelta(seconds=5)
        finished = time.monotonic()
        run_events.on_dag_run_success(dag_run=dag_run, msg="success")

        for client in (one, two):

            def fresh(c: TestClient = client) -> httpx.Response | None:
                resp = c.get("/api/stats")
                return resp if resp.json()["overall"]["runs"] == 4 else None

            resp = _wait(fresh, 2)
            assert resp is not None, "the finished run did not reach the stats within 2 s"
            assert resp.headers["x-etl-cache"] in ("miss", "redis")
            names = {p["pipeline"]: p for p in resp.json()["pipelines"]}
            assert names["etl_reports"]["by_status"]["success"] == 1
        print(f"invalidation seen after {time.monotonic() - finished:.3f} s")
    with psycopg.connect(ledger) as conn:
        rows = conn.execute(
            "SELECT started_at, status, finished_at IS NOT NULL FROM etl_audit.pipeline_runs "
            "WHERE pipeline = 'etl_reports'"
        ).fetchall()
    assert rows == [(started, "success", True)]
    assert int(redis_db.client.get(VERSION_KEY) or 0) == 1


def test_redis_down_serves_from_the_database(tokens: Tokens, ledger: str) -> None:
    insert_runs(ledger, make_runs(["etl_orders"], 2, datetime(2026, 3, 1, tzinfo=UTC)))
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with client_for(settings_for(ledger, dead), tokens.admin) as client:
        first = client.get("/api/stats")
        assert first.status_code == 200 and first.headers["x-etl-cache"] == "miss"
        assert first.json()["overall"]["runs"] == 2
        assert client.get("/api/stats").headers["x-etl-cache"] == "memory"  # memory still works
        metrics = client.get("/metrics").text
        assert _sample(metrics, "etl_dashboard_cache_redis_errors_total") >= 1
        assert client.get("/api/stream").status_code == 503


def test_listener_never_raises_and_records_every_dag_run(
    ledger: str, redis_db: RedisDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl_platform.listeners import run_events

    monkeypatch.setattr(run_events, "_backoff", Backoff(run_events.RETRY_AFTER_S))
    monkeypatch.setattr(run_events, "_conn_urls", {})
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID", "etl_test_dash_ledger")
    monkeypatch.setenv("AIRFLOW_CONN_ETL_TEST_DASH_LEDGER", _uri(ledger))
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__REDIS_CONN_ID", "etl_test_dash_dead")
    monkeypatch.setenv("AIRFLOW_CONN_ETL_TEST_DASH_DEAD", f"redis://127.0.0.1:{free_port()}/0")
    dag_run = SimpleNamespace(dag_id="etl_any", run_id="r", start_date=datetime.now(UTC), end_date=None)
    run_events.on_dag_run_running(dag_run=dag_run, msg="")  # Redis down: the ledger is still written
    began = time.monotonic()
    ti = SimpleNamespace(dag_id="etl_any", run_id="r", task_id="t", map_index=-1)
    for _ in range(20):  # Redis is skipped for a while after a failure: no stall per event
        run_events.on_task_instance_running(previous_state=None, task_instance=ti)
    assert time.monotonic() - began < 1.0
    run_events.on_dag_run_failed(dag_run=dag_run, msg="task_failure")
    run_events.on_task_instance_failed(previous_state=None, task_instance=object(), error=None)
    with psycopg.connect(ledger) as conn:
        row = conn.execute(
            "SELECT status, error FROM etl_audit.pipeline_runs WHERE pipeline = 'etl_any'"
        ).fetchone()
    assert row == ("failed", "task_failure")
    monkeypatch.delenv("AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID")
    monkeypatch.delenv("AIRFLOW__ETL_PLATFORM__REDIS_CONN_ID")
    monkeypatch.setenv("AIRFLOW__CELERY__BROKER_URL", "amqp://nowhere")
    monkeypatch.setattr(run_events, "_backoff", Backoff(run_events.RETRY_AFTER_S))
    assert run_events.publish(run_event("dag_run", "etl_any", "r", "running")) is False  # not configured


def test_ledger_listener_upserts_each_attempt_and_backs_off(
    ledger: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl_platform.listeners import ledger as ledger_listener

    monkeypatch.setattr(ledger_listener, "_backoff", Backoff(ledger_listener.RETRY_AFTER_S))
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID", "etl_test_dash_ledger")
    monkeypatch.setenv("AIRFLOW_CONN_ETL_TEST_DASH_LEDGER", _uri(ledger))
    first = datetime(2026, 5, 1, 10, tzinfo=UTC)
    attempt = SimpleNamespace(dag_id="etl_upsert", run_id="r1", start_date=first, end_date=None)
    # Its start was never recorded (say the ledger was down): the end still records the run.
    attempt.end_date = first + timedelta(minutes=3)
    assert ledger_listener.close_run(attempt, "failed", "boom")
    # Cleared and run again: a new start_date, a row of its own; closing it leaves the first alone.
    rerun = SimpleNamespace(
        dag_id="etl_upsert", run_id="r1", start_date=first + timedelta(hours=1), end_date=None
    )
    assert ledger_listener.open_run(rerun)
    rerun.end_date = rerun.start_date + timedelta(minutes=2)
    assert ledger_listener.close_run(rerun, "success", None)
    with psycopg.connect(ledger) as conn:
        rows = conn.execute(
            "SELECT started_at, finished_at, status, error FROM etl_audit.pipeline_runs "
            "WHERE pipeline = 'etl_upsert' ORDER BY started_at"
        ).fetchall()
    assert rows == [
        (first, attempt.end_date, "failed", "boom"),
        (rerun.start_date, rerun.end_date, "success", None),
    ]
    # A ledger that does not answer costs the scheduler one connect timeout, then nothing for a while.
    monkeypatch.setenv("AIRFLOW_CONN_ETL_TEST_DASH_LEDGER", "postgresql://postgres@10.255.255.1:5432/nowhere")
    began = time.monotonic()
    assert not ledger_listener.open_run(rerun)
    assert time.monotonic() - began < 5
    began = time.monotonic()
    for _ in range(20):
        assert not ledger_listener.close_run(rerun, "success", None)
    assert time.monotonic() - began < 0.5


# ------------------------------------------------------------------------------------------ queries, metrics
def test_query_count_is_constant_in_page_size_and_pipelines(
    tokens: Tokens, ledger: str, redis_db: RedisDb
) -> None:
    start = datetime(2026, 2, 1, tzinfo=UTC)
    insert_runs(ledger, make_runs(["p00", "p01"], 60, start))
    with client_for(settings_for(ledger, redis_db.url), tokens.admin) as client:
        small = client.get("/api/runs", params={"page_size": 5})
        large = client.get("/api/runs", params={"page_size": 100})
        assert len(small.json()["runs"]) == 5 and len(large.json()["runs"]) == 100
        assert queries_of(small) == queries_of(large) == 1
        two = client.get("/api/stats", params={"since": start.isoformat()})
        assert len(two.json()["pipelines"]) == 2 and two.headers["x-etl-cache"] == "miss"
        insert_runs(ledger, make_runs([f"p{i:02d}" for i in range(2, 40)], 3, start))
        forty = client.get("/api/stats", params={"since": (start - timedelta(days=1)).isoformat()})
        assert len(forty.json()["pipelines"]) == 40 and forty.headers["x-etl-cache"] == "miss"
        assert queries_of(two) == queries_of(forty) == 1
        series = client.get(
            "/api/series", params={"since": start.isoformat(), "until": "2026-02-10T00:00:00Z"}
        )
        assert queries_of(series) == 1
        metrics = client.get("/metrics").text
    assert _sample(metrics, "etl_dashboard_db_queries_total", endpoint="/api/runs") == 2
    assert _sample(metrics, "etl_dashboard_db_queries_total", endpoint="/api/stats") == 2


def test_metrics_exposition(tokens: Tokens, ledger: str, redis_db: RedisDb) -> None:
    insert_runs(ledger, make_runs(["etl_orders", "etl_customers"], 4, datetime(2026, 3, 1, tzinfo=UTC)))
    with client_for(settings_for(ledger, redis_db.url), tokens.admin) as client:
        client.get("/api/stats")
        client.get("/api/stats")
        client.get("/api/runs", params={"page_size": 2})
        client.get("/api/runs", params={"status": "nope"})
        client.get("/api/runs", headers={"Authorization": "Bearer nope"})
        client.get("/nowhere/at/all")
        for i in range(3):  # invented methods must not mint label values (unbounded series)
            client.request(f"X{i}", "/api/stats")
        resp = client.get("/metrics")
        again = client.get("/metrics").text
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    sample = _sample
    assert (
        sample(text, "etl_dashboard_requests_total", endpoint="/api/stats", method="GET", status="200") == 2
    )
    assert sample(text, "etl_dashboard_requests_total", endpoint="/api/runs", method="GET", status="200") == 1
    assert sample(text, "etl_dashboard_requests_total", endpoint="/api/runs", method="GET", status="400") == 1
    assert sample(text, "etl_dashboard_requests_total", endpoint="/api/runs", method="GET", status="401") == 1
    assert sample(text, "etl_dashboard_requests_total", endpoint="other", method="GET", status="404") == 1
    assert 'method="X' not in text
    assert (
        sample(text, "etl_dashboard_requests_total", endpoint="/api/stats", method="other", status="405") == 3
    )
    assert sample(text, "etl_dashboard_request_seconds_count", endpoint="/api/stats") == 2 + 3  # + the 405s
    assert sample(text, "etl_dashboard_request_seconds_bucket", endpoint="/api/stats", le="+Inf") == 2 + 3
    assert sample(text, "etl_dashboard_cache_total", result="miss") == 1
    assert sample(text, "etl_dashboard_cache_total", result="memory") == 1
    # A scrape reads the ledger gauges' stats through the cache too (after the counters are exposed).
    assert sample(again, "etl_dashboard_cache_total", result="memory") == 2
    assert sample(text, "etl_dashboard_cache_total", result="redis") == 0
    assert sample(text, "etl_ledger_runs", pipeline="etl_orders", status="success") == 3
    assert sample(text, "etl_ledger_runs", pipeline="etl_orders", status="failed") == 1
    assert sample(text, "etl_ledger_rows_per_second", pipeline="etl_customers") > 0


def test_slow_requests_are_logged_with_endpoint_seconds_and_queries(
    tokens: Tokens, ledger: str, redis_db: RedisDb, caplog: pytest.LogCaptureFixture
) -> None:
    slow_settings = settings_for(ledger, redis_db.url, slow_request_s=0.0)
    with (
        client_for(slow_settings, tokens.admin) as client,
        caplog.at_level(logging.WARNING, logger="etl_platform.dashboard.metrics"),
    ):
        client.get("/api/runs")
    slow = [r.getMessage() for r in caplog.records if "slow dashboard request" in r.getMessage()]
    assert slow and "endpoint=/api/runs" in slow[0] and "queries=1" in slow[0] and "seconds=" in slow[0]
    with client_for(settings_for(ledger, redis_db.url), tokens.admin) as client:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="etl_platform.dashboard.metrics"):
            client.get("/api/runs")
    assert not [r for r in caplog.records if "slow dashboard request" in r.getMessage()]


# ------------------------------------------------------------------------------------------ SSE
def test_sse_delivers_run_events_within_2s_and_cleans_up(
    tokens: Tokens, ledger: str, redis_db: RedisDb
) -> None:
    pipeline = f"etl_sse_{time.time_ns()}"  # pub/sub channels span Redis databases: a name of our own
    app = create_app(settings_for(ledger, redis_db.url, keepalive_s=0.5))
    with serve(app) as base, SseClient(f"{base}/api/stream", tokens.admin, {"pipeline": pipeline}) as sse:
        assert sse.next_comment(5) == "subscribed"
        latencies = []
        for status in ("running", "success"):
            event = run_event("dag_run", pipeline, "manual__1", status)
            sent = time.monotonic()
            publish_run_event(redis_db.client, event)
            received = sse.next_event(2)
            latencies.append(time.monotonic() - sent)
            assert received["kind"] == "dag_run" and received["status"] == status
            assert received["pipeline"] == pipeline and received["task_id"] is None
        publish_run_event(redis_db.client, run_event("dag_run", pipeline + "_other", "x", "running"))
        task = run_event("task", pipeline, "manual__1", "running", task_id="load", map_index=2)
        publish_run_event(redis_db.client, task)
        got = sse.next_event(2)  # the other pipeline's event was not for this stream
        assert (got["kind"], got["task_id"], got["map_index"]) == ("task", "load", 2)
        assert sse.next_comment(2) == "keepalive"
        assert _numsub(redis_db.client, pipeline) == 1
        print(f"SSE latency: {', '.join(f'{s * 1000:.1f} ms' for s in latencies)}")
        assert max(latencies) < 2
    # The client went away: the server's subscription ends with it.
    assert _wait(lambda: _numsub(redis_db.client, pipeline) == 0, 5), "subscription left behind"


def test_sse_streams_are_capped_per_process(
    tokens: Tokens, ledger: str, redis_db: RedisDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl_platform.dashboard import stream

    monkeypatch.setattr(stream, "MAX_STREAMS", 1)  # each stream holds a Redis connection
    before = stream.open_streams()
    with pytest.raises(HTTPException) as refused_by_redis:  # a failed subscription holds no slot
        asyncio.run(stream.subscribe(f"redis://127.0.0.1:{free_port()}/0", None, timeout_s=1))
    assert refused_by_redis.value.status_code == 503 and stream.open_streams() == before == 0
    # a gone client is noticed at the next write: keep-alives every 0.5 s
    app = create_app(settings_for(ledger, redis_db.url, keepalive_s=0.5))
    auth = {"Authorization": f"Bearer {tokens.admin}"}
    with serve(app) as base:
        with SseClient(f"{base}/api/stream", tokens.admin, {}) as sse:
            assert sse.next_comment(5) == "subscribed"
            assert stream.open_streams() == 1
            refused = httpx.get(f"{base}/api/stream", headers=auth, timeout=10)
            assert refused.status_code == 503 and "too many" in refused.json()["detail"]
        assert _wait(lambda: stream.open_streams() == 0, 5), "a closed stream still counts"
        with SseClient(f"{base}/api/stream", tokens.admin, {}) as again:
            assert again.next_comment(5) == "subscribed"  # room again


def test_sse_all_pipelines_pattern(tokens: Tokens, ledger: str, redis_db: RedisDb) -> None:
    app = create_app(settings_for(ledger, redis_db.url))
    pipeline = f"etl_sse_all_{time.time_ns()}"
    with serve(app) as base, SseClient(f"{base}/api/stream", tokens.admin, {}) as sse:
        assert sse.next_comment(5) == "subscribed"
        publish_run_event(redis_db.client, run_event("dag_run", pipeline, "r", "failed"))
        deadline = time.monotonic() + 2
        while True:  # other sessions' events may interleave on the pattern
            event = sse.next_event(max(deadline - time.monotonic(), 0.01))
            if event["pipeline"] == pipeline:
                break
        assert event["status"] == "failed" and event["version"] >= 1


# ------------------------------------------------------------------------------------------ settings
def test_settings_from_airflow_config(
    ledger: str, redis_db: RedisDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID", "etl_test_dash_ledger")
    monkeypatch.setenv("AIRFLOW_CONN_ETL_TEST_DASH_LEDGER", _uri(ledger))
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__REDIS_CONN_ID", "")
    monkeypatch.setenv("AIRFLOW__CELERY__BROKER_URL", redis_db.url)
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__DASHBOARD_CACHE_TTL", "7")
    monkeypatch.setenv("AIRFLOW__API__SECRET_KEY", "one-secret")
    settings = DashboardSettings.from_airflow()
    assert settings.redis_url == redis_db.url and settings.cache_ttl_s == 7
    assert settings.cursor_key == derive_cursor_key("one-secret") != derive_cursor_key("another")
    assert "one-secret" not in repr(settings) and "password" not in repr(settings)
    with psycopg.connect(settings.ledger_conninfo) as conn:
        assert conn.execute("SELECT to_regclass('etl_audit.pipeline_runs') IS NOT NULL").fetchone() == (True,)
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__REDIS_CONN_ID", "etl_test_dash_cache")
    monkeypatch.setenv("AIRFLOW_CONN_ETL_TEST_DASH_CACHE", "redis://:p%40ss@cache.example:6390/4")
    assert DashboardSettings.from_airflow().redis_url == "redis://:p%40ss@cache.example:6390/4"
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID", "")
    with pytest.raises(ValueError, match="ledger_conn_id"):
        DashboardSettings.from_airflow()


def test_a_dashboard_without_configuration_answers_503(
    tokens: Tokens, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID", "")
    with (
        caplog.at_level(logging.ERROR, logger="etl_platform.dashboard.runtime"),
        TestClient(create_app(), headers={"Authorization": f"Bearer {tokens.admin}"}) as client,
    ):
        for path in ("/api/stats", "/api/runs", "/api/series", "/api/stream"):
            resp = client.get(path)
            # the cause (which may name hosts or settings) stays in the api-server log
            assert resp.status_code == 503, path
            assert resp.json()["detail"] == "dashboard not configured: see the api-server log", path
        assert client.get("/").status_code == 200  # the page still loads and shows the 503s
    assert any("ledger_conn_id" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------ helpers
def _uri(conninfo: str) -> str:
    """The AIRFLOW_CONN_<ID> value for a ledger conninfo. A unix-socket directory goes percent-encoded
    in the host part (as PgServer.uri does): as a `?host=` query it would be an extra the hook ignores,
    and libpq would connect to its default socket, another server."""
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    server = PgServer(
        str(params["host"]),
        int(str(params["port"])),
        str(params["user"]),
        str(params.get("password") or "") or None,
    )
    return server.uri(str(params["dbname"]))


def _wait(probe: Any, timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def _numsub(client: redis.Redis, pipeline: str) -> int:
    return int(dict(client.pubsub_numsub(f"etl:runs:{pipeline}")).get(f"etl:runs:{pipeline}".encode(), 0))


def _sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from a Prometheus text exposition (0 if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The app on a real uvicorn server in a thread (TestClient cannot hold a response open)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    try:
        assert _wait(lambda: server.started, 10), "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class SseClient:
    """Reads an SSE response in a thread; next_event/next_comment wait with a timeout."""

    def __init__(self, url: str, token: str, params: dict[str, str]) -> None:
        self.url, self.token, self.params = url, token, params
        self.items: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=30))
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._read, name="sse-client", daemon=True)

    def __enter__(self) -> SseClient:
        request = self._client.build_request(
            "GET", self.url, params=self.params, headers={"Authorization": f"Bearer {self.token}"}
        )
        self._response = self._client.send(request, stream=True)
        assert self._response.status_code == 200, self._response.read()
        assert self._response.headers["content-type"].startswith("text/event-stream")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._response is not None:
            self._response.close()
        self._client.close()
        self._thread.join(5)

    def _read(self) -> None:
        assert self._response is not None
        event: str | None = None
        try:
            for line in self._response.iter_lines():
                if line.startswith(":"):
                    self.items.put(("comment", line[1:].strip()))
                elif line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "run":
                    self.items.put(("run", json.loads(line.split(":", 1)[1])))
        except (httpx.HTTPError, RuntimeError):
            pass

    def _next(self, kind: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                got_kind, value = self.items.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError(f"no SSE {kind} within {timeout} s") from None
            if got_kind == kind:
                return value

    def next_event(self, timeout: float) -> dict[str, Any]:
        return dict(self._next("run", timeout))

    def next_comment(self, timeout: float) -> str:
        return str(self._next("comment", timeout))
