-- Runs once, when the postgres container initialises an empty data directory (docker-entrypoint-initdb.d),
-- as POSTGRES_USER (airflow) connected to POSTGRES_DB (airflow).

-- The health sensor's avg_response_time reads pg_stat_statements (preloaded by config/postgresql.conf).
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

-- The ETL warehouse, reached through PgBouncer's session-pooled `warehouse` database (AIRFLOW_CONN_ETL_WAREHOUSE).
CREATE DATABASE warehouse OWNER airflow;
\connect warehouse
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
