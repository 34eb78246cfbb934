-- The daily order summary: one row per UTC order day and status, rebuilt from warehouse.orders_clean
-- by etl_orders' summarize_orders task (include/sql/transform/refresh_orders_daily.sql) for the days
-- its data interval touches. Idempotent, unlike orders_clean.sql: that task applies this file before
-- every refresh (so a warehouse created before the table existed gets it), and so do the compose
-- init (config/postgres-init) and etl_devstack.warehouse.
CREATE SCHEMA IF NOT EXISTS warehouse;
CREATE TABLE IF NOT EXISTS warehouse.orders_daily (
    order_day     date          NOT NULL,
    status        text          NOT NULL,
    orders        bigint        NOT NULL,
    customers     bigint        NOT NULL,
    items         bigint        NOT NULL,
    revenue       numeric(16,2) NOT NULL,
    avg_order     numeric(12,2) NOT NULL,
    refreshed_at  timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (order_day, status)
);
