"""StatsD for health readings: a gauge per reading, a counter per warning/critical."""

from __future__ import annotations

from etl_platform.health.evaluate import HealthReport


def emit_readings(report: HealthReport, tags: dict[str, str] | None = None) -> None:
    from airflow.sdk.observability.stats import Stats

    for reading in report.readings:
        if reading.value is not None:
            Stats.gauge(f"etl.health.{reading.metric}", reading.value, tags=tags)
        if reading.level in ("warning", "critical"):
            Stats.incr(f"etl.health.{reading.level}", tags={**(tags or {}), "metric": reading.metric})
