"""PerformanceCheckSensor: hold heavy ETL back while the platform is overloaded, and alert.

Below warning everywhere it succeeds at once. At warning it alerts and proceeds (or waits, with
``wait_on_warning=True``). At critical it alerts and waits - deferred to the triggerer by default -
until every reading is back under critical, or fails at ``timeout`` naming each metric that
breached, with its value and thresholds. Its XCom is the last readings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from etl_platform.health.config import default_checks
from etl_platform.health.evaluate import HealthReport, evaluate
from etl_platform.health.metrics import emit_readings
from etl_platform.health.operator_base import HealthTaskBase
from etl_platform.health.probes import ProbeState
from etl_platform.health.sources import resolve_source
from etl_platform.profiling import ProfiledExecute
from etl_platform.triggers.performance import PerformanceCheckTrigger, proceed_status

# task_state_store key: the levels already alerted in this DAG run's task (across reschedules,
# deferrals and retries; Airflow 3.3 scopes the store to dag_id, run_id, task_id and map_index).
ALERTED_KEY = "etl_health.alerted_levels"


class PerformanceCheckSensor(ProfiledExecute, HealthTaskBase, BaseSensorOperator):
    """Wait until the platform is healthy enough for heavy work.

    :param postgres_conn_id: database whose connections and statement latency are read.
    :param pgbouncer_conn_id: optional PgBouncer admin connection (``SHOW POOLS``: clients waiting,
        longest wait).
    :param redis_conn_id: Redis broker holding the Celery queues; default Airflow's
        ``[celery] broker_url``.
    :param queues: Celery queue names whose waiting messages count towards ``queue_length``: a list
        or a comma-separated string (templated).
    :param checks: subset of ``db_connections``, ``avg_response_time``, ``memory_usage_percent``,
        ``queue_length`` (default: all).
    :param thresholds: per metric ``{"warning": w, "critical": c}`` overriding the defaults
        (2/5 s, 80/95 %, 75/90 %, 100/500 messages).
    :param on_unavailable: per check (or ``pgbouncer``) ``fail``, ``warn`` (default) or ``ignore``
        when its source is down or its connection id cannot be read; a check never takes longer than
        ``check_timeout`` seconds, connection lookup included.
    :param wait_on_warning: wait at warning level too, instead of proceeding. A rise to critical
        while deferred still alerts (the trigger hands back, the sensor alerts and defers again).
    :param notifier: a :class:`PerformanceAlertNotifier` (log + StatsD; add ``webhook_url`` to POST);
        its templated fields are rendered with the task's context before each alert.

    Each level alerts once per DAG-run task: the alerted levels live in ``task_state_store``, so a
    reschedule, a resumed deferral or a retry does not repeat an alert (in memory, per process,
    where the store is missing).
    :param deferrable: wait in the triggerer (default) rather than in a worker slot.
    """

    template_fields: Sequence[str] = ("queues",)
    ui_color = "#ffe0cc"

    def __init__(
        self,
        *,
        checks: Sequence[str] | None = None,
        wait_on_warning: bool = False,
        deferrable: bool = True,
        poke_interval: float = 30,
        timeout: float = 3600,
        **kwargs: Any,
    ) -> None:
        # postgres_conn_id, pgbouncer_conn_id, redis_conn_id, queues, thresholds, on_unavailable,
        # check_timeout and notifier are HealthTaskBase's, shared with the snapshot operator.
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.checks = list(checks) if checks is not None else list(default_checks(self.queues))
        self.wait_on_warning = wait_on_warning
        self.deferrable = deferrable
        self._check_at_parse()
        self._alerted: set[str] = set()  # only where there is no task_state_store
        self._probe_state = ProbeState()  # pg_stat_statements totals between pokes in one process

    def _checks(self) -> tuple[str, ...]:
        return tuple(self.checks)

    def check(self, context: Context) -> HealthReport:
        report = asyncio.run(evaluate(self._config(), resolve_source, self._probe_state))
        emit_readings(report, self._tags(context))
        return report

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout:
                report = self.check(context)
                raise AirflowSensorTimeout(self._timeout_message(report)) from None
        report = self.check(context)
        if self._react(report, context):
            return report.as_dict()
        self._defer(context, deadline=time.time() + self.timeout)

    def _defer(self, context: Context, deadline: float) -> None:
        self.defer(
            trigger=PerformanceCheckTrigger(
                config=self._config().to_dict(),
                poke_interval=self.poke_interval,
                deadline=deadline,
                wait_on_warning=self.wait_on_warning,
                metric_tags=self._tags(context),
                alerted=sorted(self._alerted_levels(context)),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=max(0.0, deadline - time.time()) + 2 * self.check_timeout + 30),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        report = self.check(context)
        return PokeReturnValue(is_done=self._react(report, context), xcom_value=report.as_dict())

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        report = HealthReport.from_dict(event["report"])
        if event["status"] == "timeout":
            raise AirflowSensorTimeout(self._timeout_message(report))
        if not self._react(report, context):  # "escalated": alerted above; keep waiting, same deadline
            self._defer(context, deadline=float(event.get("deadline", time.time())))
        return report.as_dict()

    def _react(self, report: HealthReport, context: Context) -> bool:
        """Logs and alerts on a report; True when the task may proceed."""
        if report.failed:
            raise AirflowFailException(f"platform health check unavailable: {'; '.join(report.failed)}")
        level = report.level
        status = proceed_status(report, self.wait_on_warning)
        if level == "ok":
            self.log.info("platform healthy: %s", report.summary())
        else:
            breached = report.breaches(level)
            message = f"{level}: " + "; ".join(r.describe() for r in breached)
            self.log.warning("platform health %s (%s)", message, "proceeding" if status else "waiting")
            alerted = self._alerted_levels(context)
            if level not in alerted:  # one alert per level per DAG-run task
                self._remember_alerted(context, alerted | {level})
                self._alert(level, message, report.as_dict()["readings"], context)
        return status == "success"

    def _alerted_levels(self, context: Context) -> set[str]:
        store = _state_store(context)
        if store is not None:
            try:
                return set(store.get(ALERTED_KEY, default=[]) or [])
            except Exception as exc:  # the store's API is new; never let it stop the gate
                self.log.warning("task_state_store unreadable (%s); alerts tracked in memory", exc)
        return set(self._alerted)

    def _remember_alerted(self, context: Context, levels: set[str]) -> None:
        store = _state_store(context)
        if store is not None:
            try:
                store.set(ALERTED_KEY, sorted(levels))
                return
            except Exception as exc:
                self.log.warning("task_state_store unwritable (%s); alerts tracked in memory", exc)
        self._alerted = set(levels)

    def _timeout_message(self, report: HealthReport) -> str:
        breached = report.breaches("critical") or report.breaches("warning")
        return (
            f"platform still overloaded after {self.timeout:g} s; breaching: "
            + "; ".join(r.describe() for r in breached)
            if breached
            else f"timed out after {self.timeout:g} s; last readings: {report.summary()}"
        )


def _state_store(context: Context) -> Any | None:
    """Airflow 3.3's task_state_store, or None where the context has none (older Airflow, unit tests)."""
    getter = getattr(context, "get", None)
    return getter("task_state_store") if getter else None
