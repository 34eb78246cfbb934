"""Test harness: PostgreSQL, Redis, MariaDB, S3 (moto) and a throwaway Airflow home for the tests.

Nothing here imports airflow at import time; the root conftest must set AIRFLOW_HOME first.
"""

from etl_devstack.mariadb import MySqlServer, resolve_mysql, start_private_mariadbd
from etl_devstack.postgres import PgServer, resolve_postgres, start_embedded_postgres
from etl_devstack.redis import RedisServer, resolve_redis, start_embedded_redis

from .airflow_env import REPO_ROOT, TEST_DAGS_FOLDER
from .airflow_run import TaskOutcome, connections_env, ensure_metadata_db, run_dag, task_outcomes, xcom_value
from .mysqldb import MyDb, resolve_test_mysql
from .postgres import SchemaDb, resolve_test_postgres
from .redisdb import RedisDb, resolve_test_redis
from .s3 import S3Bucket, S3Server, start_s3_server

__all__ = [
    "REPO_ROOT",
    "TEST_DAGS_FOLDER",
    "MyDb",
    "MySqlServer",
    "PgServer",
    "RedisDb",
    "RedisServer",
    "S3Bucket",
    "S3Server",
    "SchemaDb",
    "TaskOutcome",
    "connections_env",
    "ensure_metadata_db",
    "resolve_mysql",
    "resolve_postgres",
    "resolve_redis",
    "resolve_test_mysql",
    "resolve_test_postgres",
    "resolve_test_redis",
    "run_dag",
    "start_embedded_postgres",
    "start_embedded_redis",
    "start_private_mariadbd",
    "start_s3_server",
    "task_outcomes",
    "xcom_value",
]
