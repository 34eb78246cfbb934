"""The `airflow etl` command group, as Airflow's CLI parser loads it from the provider info's `cli` key.

Kept import-light (argument definitions only): every `airflow` invocation imports this module, and
each command's module is imported only when that command runs (`lazy_load_command`).
"""

from __future__ import annotations

from airflow.cli.cli_config import (
    ARG_OUTPUT,
    ARG_VERBOSE,
    ActionCommand,
    Arg,
    CLICommand,
    GroupCommand,
    lazy_load_command,
)

DEFAULT_CONN_ID = "etl_warehouse"  # the DAGs' transfer destination and partitioned warehouse
_PKG = "etl_platform.cli"

ARG_CONN_ID = Arg(
    ("-c", "--conn-id"),
    help=f"Airflow connection (PostgreSQL) to read; default {DEFAULT_CONN_ID}",
    default=DEFAULT_CONN_ID,
)
ARG_SCHEMA = Arg(
    ("--schema",),
    help="Schema holding transfer_checkpoints (the transfer's checkpoint_schema); default etl_platform",
    default="etl_platform",
)
ARG_DAG_ID = Arg(("-d", "--dag-id"), help="Only checkpoints of this DAG")
ARG_TASK_ID = Arg(("-t", "--task-id"), help="Only checkpoints of this task")
ARG_RUN_ID = Arg(("-r", "--run-id"), help="Only checkpoints of this DAG run")
ARG_MAP_INDEX = Arg(("--map-index",), help="Only checkpoints of this map index (-1: not mapped)", type=int)
ARG_TRANSFER_ID = Arg(
    ("--transfer-id",),
    help="One checkpoint by its full id (dag_id/task_id/run_id/map_index, or a run_transfer checkpoint_id)",
)
ARG_YES = Arg(("-y", "--yes"), help="Clear without asking", action="store_true", default=False)
ARG_IDLE_SECONDS = Arg(
    ("--idle-seconds",),
    help="An unfinished checkpoint updated less than this many seconds ago counts as running (default 60)",
    type=float,
    default=60.0,
)
ARG_TABLE = Arg(("table",), help="The range-partitioned table, schema-qualified (schema.table)")
ARG_INTERVAL = Arg(
    ("--interval",),
    help="Partition interval (day, week, month, year or an integer step); default: read from the newest partition",
)
ARG_RETENTION = Arg(
    ("--retention",),
    help="Preview what retention would detach: an interval ('13 months') or, for integer keys, a number",
)
ARG_PG_CONN = Arg(
    ("--postgres-conn-id",),
    help=f"Database whose connections and statement latency are read; default {DEFAULT_CONN_ID}",
    default=DEFAULT_CONN_ID,
)
ARG_PGBOUNCER_CONN = Arg(("--pgbouncer-conn-id",), help="PgBouncer admin connection (SHOW POOLS)")
ARG_REDIS_CONN = Arg(("--redis-conn-id",), help="Redis broker; default Airflow's [celery] broker_url")
ARG_QUEUES = Arg(("--queues",), help="Comma-separated Celery queues for queue_length")
ARG_CHECKS = Arg(
    ("--checks",),
    help="Comma-separated subset of db_connections, avg_response_time, memory_usage_percent, queue_length "
    "(default: all, queue_length only with --queues)",
)
ARG_THRESHOLD = Arg(
    ("--threshold",),
    help="METRIC=WARNING,CRITICAL overriding the sensor's default levels; repeatable",
    action="append",
    default=[],
)
ARG_ON_UNAVAILABLE = Arg(
    ("--on-unavailable",),
    help="CHECK=fail|warn|ignore when its source is down (default fail: exit 3); repeatable",
    action="append",
    default=[],
)
ARG_CHECK_TIMEOUT = Arg(("--check-timeout",), help="Seconds per check (default 5)", type=float, default=5.0)

# Which checkpoints a command acts on: `list` shows them, `clear` forgets them, by the same filters.
CHECKPOINT_SELECTION = (
    ARG_CONN_ID,
    ARG_SCHEMA,
    ARG_DAG_ID,
    ARG_TASK_ID,
    ARG_RUN_ID,
    ARG_MAP_INDEX,
    ARG_TRANSFER_ID,
)

CHECKPOINT_COMMANDS = (
    ActionCommand(
        name="list",
        help="List transfer checkpoints: what a retried or cleared transfer resumes from",
        func=lazy_load_command(f"{_PKG}.checkpoints.list_checkpoints"),
        args=(*CHECKPOINT_SELECTION, ARG_OUTPUT, ARG_VERBOSE),
    ),
    ActionCommand(
        name="clear",
        help="Forget checkpoints so the next run starts over (refused while the transfer runs)",
        func=lazy_load_command(f"{_PKG}.checkpoints.clear_checkpoints"),
        args=(*CHECKPOINT_SELECTION, ARG_YES, ARG_IDLE_SECONDS, ARG_VERBOSE),
    ),
)
PARTITION_COMMANDS = (
    ActionCommand(
        name="status",
        help="Partition ranges, rows in the default, next missing partition, what retention would detach",
        func=lazy_load_command(f"{_PKG}.partitions.partition_status"),
        args=(ARG_TABLE, ARG_CONN_ID, ARG_INTERVAL, ARG_RETENTION, ARG_OUTPUT, ARG_VERBOSE),
    ),
)
ETL_COMMANDS: tuple[CLICommand, ...] = (
    GroupCommand(name="checkpoints", help="Transfer checkpoints", subcommands=CHECKPOINT_COMMANDS),
    GroupCommand(name="partitions", help="Range-partitioned tables", subcommands=PARTITION_COMMANDS),
    ActionCommand(
        name="health",
        help="One platform health reading; exit 0 ok, 1 warning, 2 critical, 3 unavailable",
        func=lazy_load_command(f"{_PKG}.health.health"),
        args=(
            ARG_PG_CONN,
            ARG_PGBOUNCER_CONN,
            ARG_REDIS_CONN,
            ARG_QUEUES,
            ARG_CHECKS,
            ARG_THRESHOLD,
            ARG_ON_UNAVAILABLE,
            ARG_CHECK_TIMEOUT,
            ARG_OUTPUT,
            ARG_VERBOSE,
        ),
    ),
)


def get_etl_cli_commands() -> list[CLICommand]:
    """The provider info's `cli` entry: Airflow adds these to its parser."""
    return [
        GroupCommand(
            name="etl",
            help="ETL platform: checkpoints, partitions, health",
            subcommands=ETL_COMMANDS,
        )
    ]
