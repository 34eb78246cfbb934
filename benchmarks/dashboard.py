"""The dashboard API on a 1,000,000-run ledger: stats cold and warm, runs page 1 vs page 1,000 vs OFFSET.

Targets (issue 6): warm stats under 5 ms, cold under 200 ms, runs page 1,000 within 1.5x of page 1.
Requests go over real HTTP (http.client, keep-alive) to two server processes running the app under
uvicorn, as api-server workers do, with a real Airflow JWT checked by SimpleAuthManager on every request:
a cold stats request computes in process A, B then finds A's entry in Redis, and A's next requests hit its
memory. The OFFSET baseline has no endpoint, so the page comparison is also made one level down, on the
query functions, in interleaved rounds.

Run: `python -m benchmarks.dashboard [--runs N] [--reload]` (PYTHONPATH at the repo root; `make bench`
runs it too). The ledger database is kept between runs (`--reload` rebuilds it); results go to
benchmarks/results/dashboard-<utc>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import psycopg
import redis
from psycopg import sql

from benchmarks import db as bench_db
from benchmarks.ledger_data import load_ledger_runs

RESULTS = Path(__file__).resolve().parent / "results"
DBNAME = "etl_bench_dashboard"
PAGE_SIZE = 50
FAR_PAGE = 1000
# (label, pipeline filter, far page): one of 40 pipelines has ~25,000 runs, 500 pages of 50
CASES = (("all", None, FAR_PAGE), ("one_pipeline", "etl_orders_01", 400))
TARGETS = {"stats_warm_ms": 5.0, "stats_cold_ms": 200.0, "far_page_ratio": 1.5}


def _ms(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
        "min_ms": round(ordered[0], 3),
    }


def ensure_ledger(base_url: str, runs: int, reload: bool) -> tuple[str, dict[str, Any]]:
    """The benchmark ledger database with exactly `runs` runs; loaded once, reused afterwards."""
    if reload:
        with bench_db.connect(bench_db.db_url(base_url, "postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DBNAME)))
    bench_db.ensure_database(base_url, DBNAME)
    url = bench_db.db_url(base_url, DBNAME)
    with bench_db.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT to_regclass('etl_audit.pipeline_runs') IS NOT NULL").fetchone()
        count = (
            conn.execute("SELECT count(*) FROM etl_audit.pipeline_runs").fetchone()
            if have and have[0]
            else None
        )
        if count and count[0] == runs:
            return url, {"loaded": False, "runs": runs}
        if count and count[0]:
            conn.execute("TRUNCATE etl_audit.pipeline_runs, etl_audit.pipeline_run_rollup")
        seconds = load_ledger_runs(conn, n_runs=runs)
        return url, {"loaded": True, "runs": runs, "load_seconds": round(seconds, 1)}


@contextmanager
def airflow_auth() -> Iterator[str]:
    """A throwaway AIRFLOW_HOME with SimpleAuthManager; yields a real admin JWT from its signer."""
    home = tempfile.mkdtemp(prefix="etl-bench-airflow-")
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW_CONFIG": f"{home}/airflow.cfg",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        }
    )
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.utils.db import upgradedb

    upgradedb()  # token checks read the revoked-token table
    manager = init_auth_manager()
    try:
        yield manager.generate_jwt(SimpleAuthManagerUser(username="bench", role="admin"))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def serve(port: int) -> None:
    """One dashboard server process (`--serve PORT`): the app under uvicorn, as the api-server mounts it."""
    import uvicorn
    from airflow.api_fastapi.app import init_auth_manager

    from etl_platform.dashboard.app import create_app
    from etl_platform.dashboard.settings import DashboardSettings, derive_cursor_key

    init_auth_manager()
    settings = DashboardSettings(
        ledger_conninfo=os.environ["ETL_BENCH_LEDGER_CONNINFO"],
        redis_url=os.environ["ETL_BENCH_REDIS_URL"],
        cursor_key=derive_cursor_key(os.environ["ETL_BENCH_CURSOR_SECRET"]),
    )
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


@contextmanager
def servers(ledger_url: str, redis_url: str, count: int) -> Iterator[list[str]]:
    """`count` server processes sharing the ledger, Redis and the cursor key, like api-server workers."""
    from etl_devstack.platform import free_port

    env = {
        **os.environ,
        "ETL_BENCH_LEDGER_CONNINFO": psycopg.conninfo.make_conninfo(ledger_url),
        "ETL_BENCH_REDIS_URL": redis_url,
        "ETL_BENCH_CURSOR_SECRET": secrets.token_urlsafe(32),
    }
    ports = [free_port() for _ in range(count)]
    procs = [
        subprocess.Popen([sys.executable, "-m", "benchmarks.dashboard", "--serve", str(port)], env=env)
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url, proc in zip(urls, procs, strict=True):
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"dashboard server {url} exited with {proc.returncode}")
                try:
                    httpx.get(url + "/api/stats", timeout=1)  # 401 is fine: it is up
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"dashboard server {url} did not start") from None
                    time.sleep(0.2)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


Get = Callable[..., dict[str, Any]]


def _getter(conns: dict[str, http.client.HTTPConnection], headers: dict[str, str]) -> Get:
    """GET on a kept-alive http.client connection per server: httpx's own per-request work (~2.5 ms
    here) would be measured as the server's otherwise."""

    def get(url: str, path: str, expect_cache: str | None = None, **params: Any) -> dict[str, Any]:
        conn = conns[url]
        conn.request("GET", f"{path}?{urlencode(params)}" if params else path, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status} {data[:300]!r}")
        if expect_cache is not None:
            got = response.getheader("X-ETL-Cache")
            assert got == expect_cache, f"{path}: expected cache {expect_cache}, got {got}"
        body: dict[str, Any] = json.loads(data)
        return body

    return get


def _http_stats(get: Get, publisher: redis.Redis, url_a: str, url_b: str, rounds: int) -> dict[str, Any]:
    """Stats cold (A computes), from Redis (B finds A's entry) and warm (A's memory)."""
    from etl_platform.events import publish_run_event, run_event

    cold: list[float] = []
    redis_level: list[float] = []
    warm: list[float] = []
    for _ in range(rounds):
        publish_run_event(publisher, run_event("dag_run", "etl_bench", "bench", "success"))
        time.sleep(0.3)  # both servers' subscribers drop their memory entries
        cold.append(_ms(lambda: get(url_a, "/api/stats", "miss")))
        redis_level.append(_ms(lambda: get(url_b, "/api/stats", "redis")))
        warm.extend(_ms(lambda: get(url_a, "/api/stats", "memory")) for _ in range(20))
    return {"stats_cold": _summary(cold), "stats_redis": _summary(redis_level), "stats_warm": _summary(warm)}


def _http_runs(
    get: Get, url: str, label: str, pipeline: str | None, far_page: int, rounds: int
) -> dict[str, Any]:
    """Runs page 1 vs the far page reached by walking the cursors there."""
    params = {"page_size": PAGE_SIZE, **({"pipeline": pipeline} if pipeline else {})}
    cursor: str | None = None
    walk_started = time.perf_counter()
    for page in range(1, far_page):
        cursor = get(url, "/api/runs", **params, **({"cursor": cursor} if cursor else {}))["next_cursor"]
        if not cursor:
            raise SystemExit(f"{label}: only {page} pages of {PAGE_SIZE}, {far_page} wanted")
    walk_s = time.perf_counter() - walk_started
    first, far = [], []
    for _ in range(rounds * 3):  # interleaved: both see the same machine state
        first.append(_ms(lambda: get(url, "/api/runs", **params)))
        far.append(_ms(lambda: get(url, "/api/runs", cursor=cursor, **params)))
    return {
        "far_page": far_page,
        "page_1": _summary(first),
        "far_page_keyset": _summary(far),
        "ratio": round(statistics.median(far) / statistics.median(first), 3),
        "walk_to_far_page_s": round(walk_s, 2),
    }


def bench_http(ledger_url: str, redis_url: str, token: str, rounds: int) -> dict[str, Any]:
    """Over real HTTP (keep-alive) against two server processes: A computes, B finds A's entry in Redis."""
    publisher = redis.Redis.from_url(redis_url)
    headers = {"Authorization": f"Bearer {token}"}
    with servers(ledger_url, redis_url, 2) as (url_a, url_b):
        conns = {url: http.client.HTTPConnection(*urlsplit(url).netloc.split(":")) for url in (url_a, url_b)}
        get = _getter(conns, headers)
        for url in (url_a, url_b):
            get(url, "/api/stats")  # warm-up: imports, pool, first plans
            get(url, "/api/runs")
        out = _http_stats(get, publisher, url_a, url_b, rounds)
        for label, pipeline, far_page in CASES:
            out[f"runs_{label}"] = _http_runs(get, url_a, label, pipeline, far_page, rounds)
    publisher.close()
    return out


def bench_queries(ledger_url: str, rounds: int) -> dict[str, Any]:
    """Query-function level: keyset page 1 vs keyset page 1,000 vs the same page by LIMIT/OFFSET."""
    from benchmarks.dashboard_offset import fetch_runs_page_offset
    from etl_platform.dashboard import aggregates, queries

    key = secrets.token_bytes(32)
    out: dict[str, Any] = {}
    with psycopg.connect(ledger_url, autocommit=True) as conn:
        for label, pipeline, far_page in CASES:
            filters = queries.RunFilters(pipeline=pipeline)
            # cursors are bound to a key: walk again with ours (cheap at this level)
            cursor: str | None = None
            for _ in range(far_page - 1):
                cursor = queries.fetch_runs_page(conn, filters, PAGE_SIZE, cursor, key)["next_cursor"]
            first, far, offset = [], [], []
            for _ in range(rounds * 3):
                first.append(_ms(lambda: queries.fetch_runs_page(conn, filters, PAGE_SIZE, None, key)))  # noqa: B023
                far.append(_ms(lambda: queries.fetch_runs_page(conn, filters, PAGE_SIZE, cursor, key)))  # noqa: B023
                offset.append(_ms(lambda: fetch_runs_page_offset(conn, filters, PAGE_SIZE, far_page)))  # noqa: B023
            same = queries.fetch_runs_page(conn, filters, PAGE_SIZE, cursor, key)["runs"]
            assert same == fetch_runs_page_offset(conn, filters, PAGE_SIZE, far_page)["runs"], (
                f"{label}: keyset page {far_page} differs from the OFFSET page"
            )
            out[label] = {
                "far_page": far_page,
                "page_1": _summary(first),
                "far_page_keyset": _summary(far),
                "far_page_offset": _summary(offset),
                "keyset_ratio": round(statistics.median(far) / statistics.median(first), 3),
                "offset_ratio": round(statistics.median(offset) / statistics.median(first), 3),
            }
        stats = [_ms(lambda: aggregates.fetch_stats(conn, None, None)) for _ in range(rounds)]
        out["fetch_stats_all_time"] = _summary(stats)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--reload", action="store_true", help="drop and reload the benchmark ledger")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)  # a server process
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    base_url = os.environ.get("ETL_BENCH_POSTGRES_URL", bench_db.DEFAULT_URL)
    redis_url = os.environ.get("ETL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")

    ledger_url, ledger = ensure_ledger(base_url, args.runs, args.reload)
    print(f"ledger: {ledger}", flush=True)
    redis.Redis.from_url(redis_url).flushdb()
    with airflow_auth() as token:
        http = bench_http(ledger_url, redis_url, token, args.rounds)
    query_level = bench_queries(ledger_url, args.rounds)
    verdict = {
        "stats_warm": http["stats_warm"]["median_ms"] < TARGETS["stats_warm_ms"],
        "stats_cold": http["stats_cold"]["median_ms"] < TARGETS["stats_cold_ms"],
        "far_page_all": http["runs_all"]["ratio"] <= TARGETS["far_page_ratio"],
        "far_page_one_pipeline": http["runs_one_pipeline"]["ratio"] <= TARGETS["far_page_ratio"],
    }
    result = {
        "when": datetime.now(UTC).isoformat(),
        "ledger": ledger,
        "page_size": PAGE_SIZE,
        "targets": TARGETS,
        "http": http,
        "queries": query_level,
        "meets_targets": verdict,
        "load_average": os.getloadavg(),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"dashboard-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2))
    _print(result)
    print(f"written to {path}")
    return 0 if all(verdict.values()) else 1


def _print(result: dict[str, Any]) -> None:
    http, q = result["http"], result["queries"]
    print(f"\nDashboard API on {result['ledger']['runs']:,} ledger runs (median ms, p95 in brackets)")
    for name in ("stats_cold", "stats_redis", "stats_warm"):
        s = http[name]
        print(f"  {name:<28} {s['median_ms']:>9.2f}  [{s['p95_ms']:.2f}]")
    for label in ("all", "one_pipeline"):
        h, d = http[f"runs_{label}"], q[label]
        far = h["far_page"]
        print(f"  runs ({label}) HTTP page 1          {h['page_1']['median_ms']:>9.2f}")
        print(
            f"  runs ({label}) HTTP page {far:<6}     {h['far_page_keyset']['median_ms']:>9.2f}  ratio {h['ratio']}"
        )
        print(
            f"  runs ({label}) query page 1 / page {far} keyset / page {far} OFFSET: "
            f"{d['page_1']['median_ms']:.2f} / {d['far_page_keyset']['median_ms']:.2f} / "
            f"{d['far_page_offset']['median_ms']:.2f} ms (OFFSET ratio {d['offset_ratio']})"
        )
    print(f"  fetch_stats (no cache)       {q['fetch_stats_all_time']['median_ms']:>9.2f}")
    print(f"  meets targets: {result['meets_targets']}")


if __name__ == "__main__":
    sys.exit(main())
