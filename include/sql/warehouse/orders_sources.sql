-- Landing tables of dags/etl_ingest_sources.py, one per source, in the orders shape of orders_clean.sql
-- without processed_at (rows land as the source has them; nothing is transformed on the way):
--   warehouse.orders_oltp   the MariaDB shop's `orders` (connection etl_mysql_source), one data interval
--                           per run, replaced with delete_insert on order_ts
--   warehouse.orders_drop   the Parquet files dropped under the lake's drop/orders/, upserted on id so a
--                           file dropped again does not duplicate its rows
-- Plain tables keyed on id alone (the upsert's conflict target). Idempotent, like orders_daily.sql: the
-- compose init (config/postgres-init) and etl_devstack.warehouse apply it to new and existing warehouses.
CREATE SCHEMA IF NOT EXISTS warehouse;

CREATE TABLE IF NOT EXISTS warehouse.orders_oltp (
    id           bigint PRIMARY KEY,
    customer_id  integer NOT NULL,
    order_ts     timestamptz NOT NULL,
    status       text NOT NULL,
    amount       numeric(12,2) NOT NULL,
    quantity     integer NOT NULL,
    discount     numeric(5,2),
    channel      text NOT NULL,
    country      char(2) NOT NULL,
    note         text
);
-- delete_insert deletes the interval's rows by order_ts before inserting them again.
CREATE INDEX IF NOT EXISTS orders_oltp_order_ts ON warehouse.orders_oltp (order_ts);

-- The same shape, key (the upsert's conflict target) and order_ts index.
CREATE TABLE IF NOT EXISTS warehouse.orders_drop (LIKE warehouse.orders_oltp INCLUDING ALL);
