"""Runs the configured checks concurrently and grades each reading: ok, warning, critical."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from etl_platform.health import probes
from etl_platform.health.config import HealthConfig

LEVELS = ("ok", "warning", "critical")


@dataclass
class Reading:
    metric: str
    value: float | None
    warning: float | None
    critical: float | None
    level: str  # ok | warning | critical | unavailable
    detail: str = ""

    def describe(self) -> str:
        if self.value is None:
            return f"{self.metric}: unavailable ({self.detail})"
        return (
            f"{self.metric}={self.value:.3f} ({self.level}; warning {self.warning:g}, critical {self.critical:g}; "
            f"{self.detail})"
        )


@dataclass
class HealthReport:
    readings: list[Reading] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # checks unavailable with on_unavailable="fail"
    seconds: float = 0.0

    @property
    def level(self) -> str:
        graded = [r.level for r in self.readings if r.level in LEVELS]
        return max(graded, key=LEVELS.index, default="ok")

    def breaches(self, level: str) -> list[Reading]:
        return [r for r in self.readings if r.level == level]

    def summary(self) -> str:
        return "; ".join(r.describe() for r in self.readings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "failed": self.failed,
            "seconds": self.seconds,
            "readings": [asdict(r) for r in self.readings],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HealthReport:
        return cls(
            [Reading(**r) for r in data["readings"]], list(data.get("failed", [])), data.get("seconds", 0.0)
        )


@dataclass(frozen=True)
class Sources:
    """Resolved addresses (secrets included): built where the check runs, never serialized."""

    postgres: str | None = None
    pgbouncer: str | None = None
    redis: str | None = None


async def evaluate(
    config: HealthConfig, resolve: Callable[[HealthConfig], Awaitable[Sources]]
) -> HealthReport:
    started = time.perf_counter()
    report = HealthReport()
    try:
        sources = await resolve(config)
        resolve_error = ""
    except Exception as exc:
        sources, resolve_error = Sources(), f"{type(exc).__name__}: {exc}"
    jobs: dict[str, Awaitable[Any]] = {}
    timeout = config.check_timeout
    for check in config.checks:
        if resolve_error:
            jobs[check] = _fail(resolve_error)
        elif check == "db_connections":
            jobs[check] = _need(sources.postgres, "postgres", probes.db_connections, timeout)
        elif check == "avg_response_time":
            jobs[check] = _need(sources.postgres, "postgres", probes.avg_response_time, timeout)
        elif check == "memory_usage_percent":
            jobs[check] = asyncio.to_thread(probes.memory_usage_percent)
        elif check == "queue_length":
            jobs[check] = _queue(sources.redis, config.queues, timeout)
    if config.pgbouncer_conn_id and sources.pgbouncer:
        jobs["pgbouncer"] = probes.pgbouncer_pools(sources.pgbouncer, timeout)
    results = await asyncio.gather(
        *(asyncio.wait_for(job, timeout + 1) for job in jobs.values()), return_exceptions=True
    )
    for check, result in zip(jobs, results, strict=True):
        if isinstance(result, BaseException):
            _unavailable(report, config, check, result)
        elif check == "pgbouncer":
            for metric, (value, detail) in result.items():
                report.readings.append(_grade(config, metric, value, detail))
        else:
            value, detail = result
            report.readings.append(_grade(config, check, value, detail))
    report.seconds = round(time.perf_counter() - started, 4)
    return report


def _grade(config: HealthConfig, metric: str, value: float, detail: str) -> Reading:
    warning, critical = config.thresholds[metric]
    level = "critical" if value >= critical else "warning" if value >= warning else "ok"
    return Reading(metric, round(float(value), 4), warning, critical, level, detail)


def _unavailable(report: HealthReport, config: HealthConfig, check: str, exc: BaseException) -> None:
    if isinstance(exc, TimeoutError):
        why = f"no answer within {config.check_timeout:g} s"
    elif isinstance(exc, probes.Unavailable):
        why = str(exc)
    else:
        why = f"{type(exc).__name__}: {exc}"
    behaviour = "warn" if check == "pgbouncer" else config.behaviour(check)
    if behaviour == "ignore":
        report.readings.append(Reading(check, None, None, None, "unavailable", f"ignored: {why}"))
        return
    level = "warning" if behaviour == "warn" else "unavailable"
    report.readings.append(Reading(check, None, None, None, level, why))
    if behaviour == "fail":
        report.failed.append(f"{check}: {why}")


async def _need(
    address: str | None, what: str, probe: Callable[[str, float], Awaitable[Any]], timeout: float
) -> Any:
    if not address:
        raise probes.Unavailable(f"no {what} connection configured")
    return await probe(address, timeout)


async def _queue(url: str | None, queues: tuple[str, ...], timeout: float) -> Any:
    if not url:
        raise probes.Unavailable("no Redis broker configured (redis_conn_id or [celery] broker_url)")
    return await probes.queue_length(url, queues, timeout)


async def _fail(message: str) -> Any:
    raise probes.Unavailable(message)
