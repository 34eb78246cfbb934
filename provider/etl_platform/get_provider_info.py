"""Provider metadata read by Airflow's ProvidersManager through the `apache_airflow_provider` entry point."""

from __future__ import annotations

from typing import Any

POSTGRES = "ETL Platform PostgreSQL"
MYSQL = "ETL Platform MariaDB/MySQL"
FILES = "ETL Platform Files (Parquet, CSV; local, S3)"
HEALTH = "ETL Platform Health"
# how-to-guide paths start with /docs/ (Airflow's provider.yaml schema); ours are docs/operators/*.md
# in the repository.
HOWTO = "/docs/operators"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-etl-platform",
        "name": "ETL Platform",
        "description": "Streaming PostgreSQL transfers at COPY speed, partition maintenance and "
        "platform-health gating for Apache Airflow 3.",
        "integrations": [
            {
                "integration-name": POSTGRES,
                "external-doc-url": "https://www.postgresql.org/docs/current/sql-copy.html",
                "how-to-guide": [
                    f"{HOWTO}/streaming-transfer.md",
                    f"{HOWTO}/streaming-transfer-export.md",
                    f"{HOWTO}/key-range-plan.md",
                    f"{HOWTO}/ensure-partitions.md",
                    f"{HOWTO}/drain-default-partition.md",
                    f"{HOWTO}/partition-retention.md",
                    f"{HOWTO}/create-partitioned-index.md",
                    f"{HOWTO}/analyze-table.md",
                    f"{HOWTO}/ensure-ledger-schema.md",
                ],
                "tags": ["software"],
            },
            {
                "integration-name": MYSQL,
                "external-doc-url": "https://mariadb.com/kb/en/select/",
                "how-to-guide": [f"{HOWTO}/streaming-transfer.md"],
                "tags": ["software"],
            },
            {
                "integration-name": FILES,
                "external-doc-url": "https://parquet.apache.org/docs/file-format/",
                "how-to-guide": [f"{HOWTO}/streaming-transfer.md", f"{HOWTO}/streaming-transfer-export.md"],
                "tags": ["software"],
            },
            {
                "integration-name": HEALTH,
                "external-doc-url": "https://www.postgresql.org/docs/current/monitoring-stats.html",
                "how-to-guide": [
                    f"{HOWTO}/performance-check-sensor.md",
                    f"{HOWTO}/platform-health-snapshot.md",
                    f"{HOWTO}/run-summary.md",
                ],
                "tags": ["software"],
            },
        ],
        "hooks": [
            {"integration-name": POSTGRES, "python-modules": ["etl_platform.hooks.postgres"]},
            {"integration-name": MYSQL, "python-modules": ["etl_platform.hooks.mysql"]},
        ],
        "operators": [
            {
                "integration-name": POSTGRES,
                "python-modules": [
                    "etl_platform.operators.transfer",
                    "etl_platform.operators.partitions",
                    "etl_platform.operators.ledger",
                    "etl_platform.operators.key_ranges",
                    "etl_platform.operators.analyze",
                ],
            },
            {
                "integration-name": HEALTH,
                "python-modules": ["etl_platform.operators.health", "etl_platform.operators.notify"],
            },
        ],
        "sensors": [{"integration-name": HEALTH, "python-modules": ["etl_platform.sensors.performance"]}],
        "triggers": [{"integration-name": HEALTH, "python-modules": ["etl_platform.triggers.performance"]}],
        # One operator, four directions: its source follows the source connection's type or
        # source_path, its destination is a table or (destination_path) files.
        "transfers": [
            {
                "source-integration-name": source,
                "target-integration-name": target,
                "python-module": "etl_platform.operators.transfer",
                "how-to-guide": f"{HOWTO}/{page}",
            }
            for source, target, page in (
                (POSTGRES, POSTGRES, "streaming-transfer.md"),
                (MYSQL, POSTGRES, "streaming-transfer.md"),
                (FILES, POSTGRES, "streaming-transfer.md"),
                (POSTGRES, FILES, "streaming-transfer-export.md"),
            )
        ],
        # Listed for the tools that read provider metadata. Airflow loads it from here only with
        # [core] lazy_discover_providers = False; the `airflow.plugins` entry point (pyproject.toml) loads
        # it in Airflow's default lazy mode. In eager mode Airflow meets the name twice, keeps the first
        # and records "already registered, skipping" (the official openlineage provider does the same);
        # the platform runs lazy, and tests/test_provider_registration.py checks it loads once either way.
        "plugins": [{"name": "etl_platform", "plugin-class": "etl_platform.plugin.EtlPlatformPlugin"}],
        # No "asset-uris": every scheme etl_platform.assets emits (postgres, mysql, file, s3) is
        # registered by the official provider that owns it (postgres, mysql, common-io, amazon), and
        # assets.py runs those providers' own sanitizers; registering them again would compete with
        # theirs. tests/test_provider_registration.py checks that each scheme still has an owner.
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
