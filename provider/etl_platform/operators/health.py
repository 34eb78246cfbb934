"""PlatformHealthSnapshotOperator: read every check once, emit gauges, alert; never waits."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from etl_platform.health.config import HealthConfig, queue_names
from etl_platform.health.evaluate import evaluate
from etl_platform.health.metrics import emit_readings
from etl_platform.health.sources import resolve_source
from etl_platform.notifications.performance import PerformanceAlertNotifier
from etl_platform.profiling import ProfiledExecute


class PlatformHealthSnapshotOperator(ProfiledExecute, BaseOperator):
    """The monitoring DAG's task: one reading of every metric as StatsD gauges, an alert on critical.

    Takes the same source and threshold arguments as PerformanceCheckSensor. An unavailable source
    is reported as a warning (``on_unavailable`` ``warn``, the default) or left out (``ignore``);
    with ``fail`` it sends a critical alert naming the source and fails the task, so a monitoring
    DAG goes red and pages when the database it watches stops answering.
    """

    template_fields: Sequence[str] = ("queues",)

    def __init__(
        self,
        *,
        postgres_conn_id: str | None = None,
        pgbouncer_conn_id: str | None = None,
        redis_conn_id: str | None = None,
        queues: str | Sequence[str] = (),
        thresholds: dict[str, Any] | None = None,
        on_unavailable: dict[str, str] | None = None,
        check_timeout: float = 5.0,
        alert_on: Sequence[str] = ("critical",),
        notifier: PerformanceAlertNotifier | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.config_kwargs: dict[str, Any] = {
            "postgres_conn_id": postgres_conn_id,
            "pgbouncer_conn_id": pgbouncer_conn_id,
            "redis_conn_id": redis_conn_id,
            "thresholds": thresholds or {},
            "on_unavailable": on_unavailable or {},
            "check_timeout": check_timeout,
        }
        self.queues = queues if isinstance(queues, str) else list(queues)  # templated: may be a string
        self.alert_on = tuple(alert_on)
        self.notifier = notifier or PerformanceAlertNotifier()
        try:
            self._config()
        except ValueError as exc:
            raise ValueError(f"{self.task_id}: {exc}") from None

    def _config(self) -> HealthConfig:
        checks = ["memory_usage_percent"]
        if self.config_kwargs["postgres_conn_id"]:
            checks += ["db_connections", "avg_response_time"]
        queues = queue_names(self.queues)
        if queues:
            checks.append("queue_length")
        return HealthConfig(queues=queues, checks=tuple(checks), **self.config_kwargs)

    def execute(self, context: Context) -> dict[str, Any]:
        report = asyncio.run(evaluate(self._config(), resolve_source))
        emit_readings(report, {"dag_id": context["ti"].dag_id, "task_id": context["ti"].task_id})
        self.log.info("platform health %s in %.3f s: %s", report.level, report.seconds, report.summary())
        readings = report.as_dict()["readings"]
        if report.failed:
            self._alert("critical", f"unavailable: {'; '.join(report.failed)}", readings, context)
            raise AirflowFailException(f"platform health check unavailable: {'; '.join(report.failed)}")
        if report.level in self.alert_on:
            breached = report.breaches(report.level)
            self._alert(report.level, "; ".join(r.describe() for r in breached), readings, context)
        return report.as_dict()

    def _alert(self, level: str, message: str, readings: list[dict[str, Any]], context: Context) -> None:
        notifier = copy.copy(self.notifier)  # rendered per run; the DAG's copy stays a template
        notifier.render_template_fields(context)
        notifier.send(level, message, readings, context)
