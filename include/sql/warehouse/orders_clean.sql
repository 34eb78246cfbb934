-- The warehouse fact table the orders DAGs load: monthly range partitions on order_ts,
-- a default partition so no load ever fails for want of one (maintenance drains it).
CREATE SCHEMA IF NOT EXISTS warehouse;
DROP TABLE IF EXISTS warehouse.orders_clean;
CREATE TABLE warehouse.orders_clean (
    id           bigint NOT NULL,
    customer_id  integer NOT NULL,
    order_ts     timestamptz NOT NULL,
    status       text NOT NULL,
    amount       numeric(12,2) NOT NULL,
    quantity     integer NOT NULL,
    discount     numeric(5,2),
    channel      text NOT NULL,
    country      char(2) NOT NULL,
    note         text,
    processed_at timestamptz NOT NULL,
    PRIMARY KEY (id, order_ts)
) PARTITION BY RANGE (order_ts);
CREATE TABLE warehouse.orders_clean_default PARTITION OF warehouse.orders_clean DEFAULT;
