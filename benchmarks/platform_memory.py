"""The memory footprint of `make up`'s platform per profile, after start-up (not part of `make bench`).

    .venv/bin/python -m benchmarks.platform_memory                      # full, then small
    .venv/bin/python -m benchmarks.platform_memory --profile small --run-dag

Each profile starts its own platform (a temp run folder, free ports, databases of its own on the
PostgreSQL and Redis of ETL_PLATFORM_POSTGRES_URL / ETL_PLATFORM_REDIS_URL), waits until it is ready,
lets it settle, then sums over every process of the platform (each recorded process's group and
descendants, anything else carrying its AIRFLOW_HOME): RSS (counts shared
pages once per process, so it overstates), PSS (shared pages split between the processes sharing them:
the platform's real share of RAM) and USS (pages no other process has). PostgreSQL and Redis are not
counted (they are the machine's, shared with everything else). `--run-dag` then runs etl_orders once
and prints the queue and worker of each task (the small profile's single worker serves them all).
The platform is stopped and its databases dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psutil

from etl_devstack.platform import PROFILES, Platform, PlatformSettings, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "platform_memory.json"
MIB = 1024 * 1024


def _processes(platform: Platform) -> dict[int, tuple[str, psutil.Process]]:
    """pid -> (the platform process it belongs to, the process): each recorded process's group and
    descendants, then anything else carrying the platform's AIRFLOW_HOME ("other"). Celery's pool
    children and the api-server's workers rename themselves with setproctitle, which can blank their
    /proc/<pid>/environ: an AIRFLOW_HOME search alone misses them."""
    found: dict[int, tuple[str, psutil.Process]] = {}
    for name, record in platform._pids()["processes"].items():
        for proc in platform._tree(record):
            found.setdefault(proc.pid, (name, proc))
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid not in found and proc.environ().get("AIRFLOW_HOME") == str(platform.airflow_home):
                found[proc.pid] = ("other", proc)
    return found


def footprint(platform: Platform) -> dict[str, Any]:
    per: dict[str, dict[str, float]] = defaultdict(lambda: {"processes": 0, "rss_mib": 0.0, "pss_mib": 0.0})
    totals = {"processes": 0, "rss_mib": 0.0, "pss_mib": 0.0, "uss_mib": 0.0}
    for owner, proc in _processes(platform).values():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            mem = proc.memory_full_info()
        except psutil.Error:
            continue
        row = per[owner]
        row["processes"] += 1
        row["rss_mib"] += mem.rss / MIB
        row["pss_mib"] += mem.pss / MIB
        totals["processes"] += 1
        totals["rss_mib"] += mem.rss / MIB
        totals["pss_mib"] += mem.pss / MIB
        totals["uss_mib"] += mem.uss / MIB
    rounded = {k: round(v, 1) for k, v in totals.items()}
    return {
        "total": rounded,
        "by_component": {k: {m: round(v, 1) for m, v in row.items()} for k, row in sorted(per.items())},
    }


def run_etl_orders(platform: Platform) -> dict[str, Any]:
    """One etl_orders run through the REST API; each task's state, queue and hostname."""
    user, password = platform.login()
    token = httpx.post(
        f"{platform.api_url}/auth/token", json={"username": user, "password": password}, timeout=30
    ).json()["access_token"]
    with httpx.Client(
        base_url=platform.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as api:
        deadline = time.monotonic() + 300
        while api.get("/api/v2/dags/etl_orders").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("etl_orders was not parsed within 300 s")
            time.sleep(2)
        api.patch("/api/v2/dags/etl_orders", json={"is_paused": False}).raise_for_status()
        run = api.post("/api/v2/dags/etl_orders/dagRuns", json={"logical_date": "2026-01-06T01:00:00+00:00"})
        run.raise_for_status()
        run_id = run.json()["dag_run_id"]
        started = time.monotonic()
        state = "queued"
        while state not in ("success", "failed") and time.monotonic() < started + 600:
            time.sleep(2)
            state = api.get(f"/api/v2/dags/etl_orders/dagRuns/{run_id}").json()["state"]
        tis = api.get(f"/api/v2/dags/etl_orders/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    return {
        "run_id": run_id,
        "state": state,
        "seconds": round(time.monotonic() - started, 1),
        "tasks": {ti["task_id"]: {"state": ti["state"], "queue": ti["queue"]} for ti in tis},
    }


def measure(profile: str, *, settle_s: float, rows: int, run_dag: bool) -> dict[str, Any]:
    base = PlatformSettings.from_env()
    settings = replace(
        PlatformSettings.for_profile(profile),
        postgres_url=base.postgres_url,
        redis_url=base.redis_url,
        mysql_url=base.mysql_url,
        port=free_port(),
        rows=rows,
        days=10,
        db_prefix=f"etl_mem_{secrets.token_hex(3)}",
        job_schedule=False,
    )
    with tempfile.TemporaryDirectory(prefix=f"platform-{profile}-") as run_dir:
        platform = Platform(Path(run_dir), settings)
        try:
            started = time.monotonic()
            platform.up(timeout=900, echo=lambda msg: print(f"[{profile}] {msg}", flush=True))
            up_s = time.monotonic() - started
            time.sleep(settle_s)
            result = {"profile": profile, "startup_s": round(up_s, 1), "settle_s": settle_s}
            result |= footprint(platform)
            result["workers"] = [
                f"{w.name}: -q {','.join(w.queues)} -c {w.concurrency}" for w in settings.workers
            ]
            if run_dag:
                result["etl_orders"] = run_etl_orders(platform)
                result["after_run"] = footprint(platform)["total"]
            return result
        finally:
            platform.down(echo=lambda _msg: None)
            if platform.state_file.exists():
                platform.drop_databases()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), action="append")
    parser.add_argument("--settle", type=float, default=60, help="seconds after start-up before measuring")
    parser.add_argument("--rows", type=int, default=50_000, help="generated source orders")
    parser.add_argument("--run-dag", action="store_true", help="run etl_orders once after measuring")
    ns = parser.parse_args(argv)
    results = [
        measure(p, settle_s=ns.settle, rows=ns.rows, run_dag=ns.run_dag)
        for p in ns.profile or ["full", "small"]
    ]
    print(json.dumps(results, indent=2))
    previous: list[dict[str, Any]] = []
    with contextlib.suppress(FileNotFoundError, ValueError):
        previous = list(json.loads(RESULTS.read_text()))
    measured = {r["profile"] for r in results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps([*(r for r in previous if r["profile"] not in measured), *results], indent=2)
    )
    for r in results:
        t = r["total"]
        print(
            f"{r['profile']:>5}: {t['processes']} processes, RSS {t['rss_mib']:.0f} MiB, "
            f"PSS {t['pss_mib']:.0f} MiB, USS {t['uss_mib']:.0f} MiB (start-up {r['startup_s']} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
