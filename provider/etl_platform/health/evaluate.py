"""Runs the configured checks concurrently and grades each reading: ok, warning, critical."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from etl_platform.health import probes
from etl_platform.health.config import LEVELS, HealthConfig, Level, ReadingLevel

__all__ = ["HealthReport", "Reading", "Sources", "evaluate"]


@dataclass
class Reading:
    metric: str
    value: float | None
    warning: float | None
    critical: float | None
    level: ReadingLevel
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
    def level(self) -> Level:
        graded = [r.level for r in self.readings if r.level in LEVELS]
        return max(graded, key=LEVELS.index, default="ok")  # type: ignore[return-value]

    def breaches(self, level: ReadingLevel) -> list[Reading]:
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


# Turns a source name ("postgres", "pgbouncer", "redis") into an address, inside the check that needs it.
Resolve = Callable[[HealthConfig, str], Awaitable[str | None]]


@dataclass(frozen=True)
class Sources:
    """Fixed addresses (secrets included), for tests and the benchmark; never serialized."""

    postgres: str | None = None
    pgbouncer: str | None = None
    redis: str | None = None

    async def resolve(self, config: HealthConfig, source: str) -> str | None:
        return getattr(self, source)  # type: ignore[no-any-return]


async def evaluate(
    config: HealthConfig, resolve: Resolve, state: probes.ProbeState | None = None
) -> HealthReport:
    """Read every configured check concurrently, each bounded by ``check_timeout``.

    A source's address is resolved inside the checks that need it (once per evaluation, shared), so a
    bad connection id or a slow secrets backend costs only those checks, within their time limit.
    ``state`` carries what probes keep between readings of one loop (pg_stat_statements totals).
    """
    started = time.perf_counter()
    report = HealthReport()
    addresses = _Addresses(config, resolve)
    jobs = _jobs(config, addresses, state)
    try:
        results = await asyncio.gather(
            *(asyncio.wait_for(job, config.check_timeout) for job in jobs.values()), return_exceptions=True
        )
    finally:
        addresses.close()
    for check, result in zip(jobs, results, strict=True):
        _record(report, config, check, result)
    report.seconds = round(time.perf_counter() - started, 4)
    return report


class _Addresses:
    """Each source resolved at most once per evaluation, shared by the checks that need it."""

    def __init__(self, config: HealthConfig, resolve: Resolve) -> None:
        self.config = config
        self.resolve = resolve
        self.lookups: dict[str, asyncio.Future[str | None]] = {}

    async def get(self, source: str, missing: str) -> str:
        if source not in self.lookups:
            self.lookups[source] = asyncio.ensure_future(self.resolve(self.config, source))
        found = await asyncio.shield(self.lookups[source])  # one check timing out must not cancel the others'
        if not found:
            raise probes.Unavailable(missing)
        return found

    def close(self) -> None:
        for lookup in self.lookups.values():
            if not lookup.done():
                lookup.cancel()
            elif not lookup.cancelled():
                lookup.exception()  # retrieved: a failed lookup is reported through its checks


def _jobs(
    config: HealthConfig, addresses: _Addresses, state: probes.ProbeState | None
) -> dict[str, Awaitable[Any]]:
    """One coroutine per configured check (and PgBouncer's pools when a connection is given)."""
    timeout = config.check_timeout

    async def db_connections() -> tuple[float, str]:
        return await probes.db_connections(await addresses.get("postgres", _NO_PG), timeout)

    async def avg_response_time() -> tuple[float, str]:
        return await probes.avg_response_time(await addresses.get("postgres", _NO_PG), timeout, state)

    async def queue_length() -> tuple[float, str]:
        return await probes.queue_length(await addresses.get("redis", _NO_REDIS), config.queues, timeout)

    async def pgbouncer() -> dict[str, tuple[float, str]]:
        return await probes.pgbouncer_pools(await addresses.get("pgbouncer", _NO_PGBOUNCER), timeout)

    makers: dict[str, Callable[[], Awaitable[Any]]] = {
        "db_connections": db_connections,
        "avg_response_time": avg_response_time,
        "memory_usage_percent": lambda: asyncio.to_thread(probes.memory_usage_percent),
        "queue_length": queue_length,
    }
    jobs = {check: makers[check]() for check in config.checks}
    if config.pgbouncer_conn_id:
        jobs["pgbouncer"] = pgbouncer()
    return jobs


def _record(report: HealthReport, config: HealthConfig, check: str, result: Any) -> None:
    """Adds one check's outcome to the report: graded readings, or why it is unavailable."""
    if isinstance(result, BaseException):
        _unavailable(report, config, check, result)
    elif check == "pgbouncer":
        for metric, (value, detail) in result.items():
            report.readings.append(_grade(config, metric, value, detail))
    else:
        value, detail = result
        report.readings.append(_grade(config, check, value, detail))


_NO_PG = "no postgres connection configured"
_NO_REDIS = "no Redis broker configured (redis_conn_id or [celery] broker_url)"
_NO_PGBOUNCER = "no pgbouncer connection"


def _grade(config: HealthConfig, metric: str, value: float, detail: str) -> Reading:
    warning, critical = config.thresholds[metric]
    level: Level = "critical" if value >= critical else "warning" if value >= warning else "ok"
    return Reading(metric, round(float(value), 4), warning, critical, level, detail)


def _unavailable(report: HealthReport, config: HealthConfig, check: str, exc: BaseException) -> None:
    if isinstance(exc, TimeoutError):
        why = f"no answer within {config.check_timeout:g} s"
    elif isinstance(exc, probes.Unavailable):
        why = str(exc)
    else:
        why = f"{type(exc).__name__}: {exc}"
    behaviour = config.behaviour(check)
    if behaviour == "ignore":
        report.readings.append(Reading(check, None, None, None, "unavailable", f"ignored: {why}"))
        return
    level: ReadingLevel = "warning" if behaviour == "warn" else "unavailable"
    report.readings.append(Reading(check, None, None, None, level, why))
    if behaviour == "fail":
        report.failed.append(f"{check}: {why}")
