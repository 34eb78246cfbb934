"""`airflow etl health`: one reading by the engine PerformanceCheckSensor uses, exit code by level.

Exit 0 ok, 1 warning, 2 critical, 3 unavailable. Unlike the sensor (whose default is to warn), a
source that cannot be read is unavailable here unless --on-unavailable says otherwise: a health
command that cannot see the database must not answer "warning". An unknown connection id is
unavailable too (exit 3), with a one-line message naming it. The highest applicable code wins.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from etl_platform.cli.common import CliError, emit, fail
from etl_platform.common.errors import ConfigError
from etl_platform.health.config import HealthConfig, default_checks, queue_names
from etl_platform.health.evaluate import evaluate
from etl_platform.health.sources import resolve_source

EXIT_CODES = {"ok": 0, "warning": 1, "critical": 2, "unavailable": 3}


def health(args: argparse.Namespace) -> None:
    try:
        config = build_config(args)
        _check_connections(config)
    except CliError as exc:
        fail(exc)
    report = asyncio.run(evaluate(config, resolve_source))
    level = "unavailable" if report.failed else report.level
    rows = [_row(r) for r in report.as_dict()["readings"]]
    if args.output == "json":
        emit([{"level": level, "exit_code": EXIT_CODES[level], **report.as_dict()}], "json")
    else:
        emit(rows, args.output)
        print(f"level: {level}" + (f" ({'; '.join(report.failed)})" if report.failed else ""))
    sys.exit(EXIT_CODES[level])


def build_config(args: argparse.Namespace) -> HealthConfig:
    """The sensor's HealthConfig from the command line; invalid values raise naming the option."""
    queues = queue_names(args.queues)
    if args.checks:
        checks = tuple(c.strip() for c in args.checks.split(",") if c.strip())
    else:
        checks = default_checks(queues)
    thresholds = {k: _levels(v, f"--threshold {k}") for k, v in _pairs(args.threshold, "--threshold").items()}
    given: dict[str, Any] = _pairs(args.on_unavailable, "--on-unavailable")  # the spec checks the values
    try:
        return HealthConfig(
            postgres_conn_id=args.postgres_conn_id or None,
            pgbouncer_conn_id=args.pgbouncer_conn_id or None,
            redis_conn_id=args.redis_conn_id or None,
            queues=queues,
            checks=checks,
            thresholds=thresholds,
            on_unavailable={
                **{c: "fail" for c in checks},
                **({"pgbouncer": "fail"} if args.pgbouncer_conn_id else {}),
                **given,
            },
            check_timeout=args.check_timeout,
        )
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _check_connections(config: HealthConfig) -> None:
    """An undefined connection id is bad input: named on one line (exit 3) instead of a reading."""
    from airflow.sdk import BaseHook

    wanted = [
        (config.postgres_conn_id, "--postgres-conn-id", config.needs("postgres")),
        (config.pgbouncer_conn_id, "--pgbouncer-conn-id", config.needs("pgbouncer")),
        (config.redis_conn_id, "--redis-conn-id", config.needs("redis")),
    ]
    for conn_id, option, used in wanted:
        if not conn_id or not used:
            continue
        try:
            BaseHook.get_connection(conn_id)
        except Exception:
            raise CliError(f"{option}: Airflow connection {conn_id!r} is not defined", code=3) from None


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{option} {item!r}: expected NAME=VALUE")
        out[key.strip()] = value.strip()
    return out


def _levels(text: str, where: str) -> tuple[float, float]:
    try:
        warning, critical = (float(v) for v in text.split(","))
    except ValueError:
        raise CliError(f"{where}: expected WARNING,CRITICAL numbers") from None
    return warning, critical


def _row(reading: dict[str, Any]) -> dict[str, Any]:
    return {k: reading[k] for k in ("metric", "value", "level", "warning", "critical", "detail")}
