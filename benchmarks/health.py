"""The cost of one full platform-health check (all four metrics) on the local services.

Target (issue 4): under 50 ms. Prints min/median/p95 over repeated checks and writes JSON.
Run: `python -m benchmarks.health` (PYTHONPATH at the repo root; `make bench` runs it too).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

from etl_platform.health.config import HealthConfig
from etl_platform.health.evaluate import Sources, evaluate

TARGET_MS = 50.0


def run(postgres: str, redis_url: str, repeats: int = 50) -> dict[str, Any]:
    config = HealthConfig(
        postgres_conn_id="bench",
        queues=("extract", "transform", "load", "notifications"),
        on_unavailable={"queue_length": "fail", "db_connections": "fail", "avg_response_time": "fail"},
    )

    async def resolve(_: HealthConfig) -> Sources:
        return Sources(postgres=postgres, redis=redis_url)

    async def measure() -> list[float]:
        await evaluate(config, resolve)  # warm-up: imports, first connections
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            report = await evaluate(config, resolve)
            samples.append((time.perf_counter() - started) * 1000)
            if report.failed:
                raise SystemExit(f"a check failed: {report.failed}")
        return samples

    samples = sorted(asyncio.run(measure()))
    result = {
        "checks": list(config.checks),
        "repeats": repeats,
        "min_ms": round(samples[0], 2),
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 2),
        "target_ms": TARGET_MS,
    }
    result["meets_target"] = result["median_ms"] < TARGET_MS
    return result


def main() -> int:
    postgres = os.environ.get("ETL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("ETL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    result = run(postgres, redis_url)
    verdict = "PASS" if result["meets_target"] else "MISS"
    print(
        f"one full health check (4 metrics): median {result['median_ms']} ms, p95 {result['p95_ms']} ms, "
        f"min {result['min_ms']} ms over {result['repeats']} runs; target < {TARGET_MS:g} ms: {verdict}"
    )
    if "--json" in sys.argv:
        json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
