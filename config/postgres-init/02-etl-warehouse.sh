#!/bin/sh
# Runs once after 01-etl-databases.sql, when the postgres container initialises an empty data directory
# (docker-entrypoint-initdb.d), as POSTGRES_USER over the local socket. Creates in the warehouse database
# what the DAGs write: the run ledger (include/sql/0*.sql, each file idempotent; the ledger migrator
# records them at its first run) and the warehouse tables (include/sql/warehouse/*.sql), both mounted
# read-only at /etl-sql by docker-compose.yaml.
# tests/test_dag_repository.py runs this script against a scratch database (ETL_WAREHOUSE_DB, ETL_SQL_DIR).
set -eu
sql_dir="${ETL_SQL_DIR:-/etl-sql}"
for file in "$sql_dir"/0*.sql "$sql_dir"/warehouse/*.sql; do
    echo "etl-warehouse init: $file"
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" \
        --dbname "${ETL_WAREHOUSE_DB:-warehouse}" --file "$file"
done
