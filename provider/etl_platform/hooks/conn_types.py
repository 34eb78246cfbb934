"""The Airflow connection types each source kind answers to (no Airflow import: asset naming and the
local platform read these before Airflow is configured)."""

from __future__ import annotations

POSTGRES_TYPES = frozenset({"postgres", "postgresql", "etl_postgres"})
# "mariadb": what Airflow makes of a mariadb:// connection URI; the mysql provider registers "mysql".
MYSQL_TYPES = frozenset({"mysql", "mariadb"})
