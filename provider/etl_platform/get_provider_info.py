"""Provider metadata read by Airflow's ProvidersManager through the `apache_airflow_provider` entry point."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-etl-platform",
        "name": "ETL Platform",
        "description": "Streaming PostgreSQL transfers at COPY speed, partition maintenance and "
        "platform-health gating for Apache Airflow 3.",
        "integrations": [
            {
                "integration-name": "ETL Platform PostgreSQL",
                "external-doc-url": "https://www.postgresql.org/docs/current/sql-copy.html",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "ETL Platform PostgreSQL",
                "python-modules": ["etl_platform.hooks.postgres"],
            }
        ],
        "operators": [
            {
                "integration-name": "ETL Platform PostgreSQL",
                "python-modules": [
                    "etl_platform.operators.transfer",
                    "etl_platform.operators.partitions",
                    "etl_platform.operators.ledger",
                    "etl_platform.operators.health",
                    "etl_platform.operators.key_ranges",
                    "etl_platform.operators.analyze",
                    "etl_platform.operators.notify",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "ETL Platform PostgreSQL",
                "python-modules": ["etl_platform.sensors.performance"],
            }
        ],
        "triggers": [
            {
                "integration-name": "ETL Platform PostgreSQL",
                "python-modules": ["etl_platform.triggers.performance"],
            }
        ],
        "notifications": ["etl_platform.notifications.performance.PerformanceAlertNotifier"],
        "cli": ["etl_platform.cli.definition.get_etl_cli_commands"],
        "config": {
            "etl_platform": {
                "description": "Settings of the etl-platform provider.",
                "options": {
                    "ledger_conn_id": {
                        "description": "Airflow connection of the run ledger (etl_audit). When set, the "
                        "listeners record every DAG run there (opened when it starts, closed with its "
                        "outcome) and the dashboard reads it.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "etl_warehouse",
                        "default": "",
                    },
                    "redis_conn_id": {
                        "description": "Airflow connection of the Redis that carries the live run events "
                        "(etl:runs:<pipeline>) and the dashboard's shared cache. Empty: the Celery broker's "
                        "Redis ([celery] broker_url).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "etl_redis_cache",
                        "default": "",
                    },
                    "dashboard_cache_ttl": {
                        "description": "Seconds a dashboard stats or series entry lives in process memory "
                        "and in Redis; a finished DAG run invalidates entries sooner.",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "60",
                        "default": "60",
                    },
                },
            }
        },
        "connection-types": [
            {
                "connection-type": "etl_postgres",
                "hook-class-name": "etl_platform.hooks.postgres.EtlPostgresHook",
            }
        ],
    }
