"""PlatformHealthSnapshotOperator: read every check once, emit gauges, alert; never waits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from etl_platform.health.config import Level, queue_names, snapshot_checks
from etl_platform.health.evaluate import evaluate
from etl_platform.health.metrics import emit_readings
from etl_platform.health.operator_base import HealthTaskBase
from etl_platform.health.sources import resolve_source
from etl_platform.profiling import ProfiledExecute


class PlatformHealthSnapshotOperator(ProfiledExecute, HealthTaskBase):
    """The monitoring DAG's task: one reading of every metric as StatsD gauges, an alert on critical.

    Takes the same source and threshold arguments as PerformanceCheckSensor (HealthTaskBase's). It
    reads memory always, the database's checks when ``postgres_conn_id`` is given and the queues'
    when ``queues`` are. An unavailable source is reported as a warning (``on_unavailable`` ``warn``,
    the default) or left out (``ignore``); with ``fail`` it sends a critical alert naming the source
    and fails the task, so a monitoring DAG goes red and pages when the database it watches stops
    answering.

    :param alert_on: the levels that send an alert (default: critical only).
    """

    template_fields: Sequence[str] = ("queues",)

    def __init__(self, *, alert_on: Sequence[Level] = ("critical",), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alert_on = tuple(alert_on)
        self._check_at_parse()

    def _checks(self) -> tuple[str, ...]:
        return snapshot_checks(self.postgres_conn_id, queue_names(self.queues))

    def execute(self, context: Context) -> dict[str, Any]:
        report = asyncio.run(evaluate(self._config(), resolve_source))
        emit_readings(report, self._tags(context))
        self.log.info("platform health %s in %.3f s: %s", report.level, report.seconds, report.summary())
        readings = report.as_dict()["readings"]
        if report.failed:
            self._alert("critical", f"unavailable: {'; '.join(report.failed)}", readings, context)
            raise AirflowFailException(f"platform health check unavailable: {'; '.join(report.failed)}")
        if report.level in self.alert_on:
            breached = report.breaches(report.level)
            self._alert(report.level, "; ".join(r.describe() for r in breached), readings, context)
        return report.as_dict()
