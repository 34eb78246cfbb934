-- Runs once when the mariadb container initialises an empty data directory, in the `shop` database
-- (MARIADB_DATABASE). The OLTP table etl_ingest_sources reads; benchmarks/datagen_mysql.py creates it from here.
CREATE TABLE IF NOT EXISTS orders (
    id           bigint NOT NULL PRIMARY KEY,
    customer_id  int NOT NULL,
    order_ts     datetime(6) NOT NULL,
    status       varchar(16) NOT NULL,
    amount       decimal(12,2) NOT NULL,
    quantity     int NOT NULL,
    discount     decimal(5,2),
    channel      varchar(16) NOT NULL,
    country      char(2) NOT NULL,
    note         text,
    KEY orders_order_ts (order_ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
