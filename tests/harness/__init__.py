"""Test harness: PostgreSQL, Redis and a throwaway Airflow home for the etl_platform tests.

Nothing here imports airflow at import time; the root conftest must set AIRFLOW_HOME first.
"""

from etl_devstack.postgres import PgServer, resolve_postgres, start_embedded_postgres
from etl_devstack.redis import RedisServer, resolve_redis, start_embedded_redis

from .airflow_env import REPO_ROOT, TEST_DAGS_FOLDER
from .airflow_run import TaskOutcome, connections_env, ensure_metadata_db, run_dag, task_outcomes, xcom_value
from .postgres import SchemaDb, resolve_test_postgres
from .redisdb import RedisDb, resolve_test_redis

__all__ = [
    "REPO_ROOT",
    "TEST_DAGS_FOLDER",
    "PgServer",
    "RedisDb",
    "RedisServer",
    "SchemaDb",
    "TaskOutcome",
    "connections_env",
    "ensure_metadata_db",
    "resolve_postgres",
    "resolve_redis",
    "resolve_test_postgres",
    "resolve_test_redis",
    "run_dag",
    "start_embedded_postgres",
    "start_embedded_redis",
    "task_outcomes",
    "xcom_value",
]
