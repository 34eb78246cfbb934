"""PerformanceCheckTrigger: re-evaluates platform health in the triggerer until it is safe to proceed.

Everything runs on the event loop: psycopg AsyncConnection, redis.asyncio, a thread only for
reading /sys and /proc. It yields one event: success, timeout (with the last report), failed, or
escalated - the level rose above every level already alerted, and the trigger has no notifier, so
the sensor alerts and defers again with the same deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from etl_platform.health.config import LEVELS, HealthConfig, Level
from etl_platform.health.evaluate import HealthReport, evaluate
from etl_platform.health.metrics import emit_readings
from etl_platform.health.probes import ProbeState
from etl_platform.health.sources import resolve_source


class PerformanceCheckTrigger(BaseTrigger):
    """:param alerted: levels the sensor already alerted; a higher level ends the wait as "escalated"."""

    def __init__(
        self,
        config: dict[str, Any],
        poke_interval: float,
        deadline: float,
        wait_on_warning: bool = False,
        metric_tags: dict[str, str] | None = None,
        alerted: Sequence[str] = (),
    ):
        super().__init__()
        self.config = config
        self.poke_interval = poke_interval
        self.deadline = deadline  # epoch seconds
        self.wait_on_warning = wait_on_warning
        self.metric_tags = metric_tags or {}
        self.alerted = sorted(set(alerted), key=LEVELS.index)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "etl_platform.triggers.performance.PerformanceCheckTrigger",
            {
                "config": self.config,
                "poke_interval": self.poke_interval,
                "deadline": self.deadline,
                "wait_on_warning": self.wait_on_warning,
                "metric_tags": self.metric_tags,
                "alerted": list(self.alerted),
            },
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PerformanceCheckTrigger) and self.serialize() == other.serialize()

    __hash__ = None  # type: ignore[assignment]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        config = HealthConfig.from_dict(self.config)
        state = ProbeState()  # pg_stat_statements totals between iterations: interval means
        while True:
            report = await evaluate(config, resolve_source, state)
            emit_readings(report, self.metric_tags)
            status = proceed_status(report, self.wait_on_warning)
            if status is None and escalated(report.level, self.alerted):
                status = "escalated"
            if status is None and time.time() >= self.deadline:
                status = "timeout"
            if status is not None:
                yield TriggerEvent({"status": status, "report": report.as_dict(), "deadline": self.deadline})
                return
            self.log.info("platform health %s, waiting: %s", report.level, report.summary())
            await asyncio.sleep(max(0.0, min(self.poke_interval, self.deadline - time.time())))


def proceed_status(report: HealthReport, wait_on_warning: bool) -> str | None:
    """'failed', 'success', or None to keep waiting."""
    if report.failed:
        return "failed"
    if report.level == "critical" or (wait_on_warning and report.level == "warning"):
        return None
    return "success"


def escalated(level: Level, alerted: Sequence[str]) -> bool:
    """True when `level` is an alerting level above every level alerted so far."""
    if level not in ("warning", "critical"):
        return False
    return LEVELS.index(level) > max((LEVELS.index(a) for a in alerted if a in LEVELS), default=0)
