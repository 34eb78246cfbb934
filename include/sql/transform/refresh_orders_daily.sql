-- etl_orders' transform step (queue "transform"): rebuild warehouse.orders_daily for every UTC day that
-- the run's data interval [start, end) touches, aggregating all of warehouse.orders_clean for those
-- days, so a day split between two daily intervals is complete after whichever run finishes last.
-- Parameters: start, end (the data interval). The statements run in one transaction (delete + insert):
-- readers see the old summary or the new one, and a rerun produces the same rows.
-- The lock conflicts only with itself and writers (readers go on): catch-up runs sharing a day wait
-- for each other instead of colliding on the primary key. The table's DDL comes first (idempotent),
-- so a warehouse created before the table existed gets it. Ends with the refreshed days' totals.
{% include 'warehouse/orders_daily.sql' %}

LOCK TABLE warehouse.orders_daily IN SHARE ROW EXCLUSIVE MODE;

DELETE FROM warehouse.orders_daily
WHERE order_day >= (%(start)s::timestamptz AT TIME ZONE 'UTC')::date
  AND order_day <= ((%(end)s::timestamptz - interval '1 microsecond') AT TIME ZONE 'UTC')::date;

INSERT INTO warehouse.orders_daily (order_day, status, orders, customers, items, revenue, avg_order)
SELECT (order_ts AT TIME ZONE 'UTC')::date,
       status,
       count(*),
       count(DISTINCT customer_id),
       sum(quantity),
       sum(amount),
       round(avg(amount), 2)
FROM warehouse.orders_clean
WHERE order_ts >= ((%(start)s::timestamptz AT TIME ZONE 'UTC')::date)::timestamp AT TIME ZONE 'UTC'
  AND order_ts < (((%(end)s::timestamptz - interval '1 microsecond') AT TIME ZONE 'UTC')::date + 1)::timestamp
                 AT TIME ZONE 'UTC'
GROUP BY 1, 2;

SELECT count(*) AS summary_rows, coalesce(sum(orders), 0) AS orders, coalesce(sum(revenue), 0) AS revenue
FROM warehouse.orders_daily
WHERE order_day >= (%(start)s::timestamptz AT TIME ZONE 'UTC')::date
  AND order_day <= ((%(end)s::timestamptz - interval '1 microsecond') AT TIME ZONE 'UTC')::date;
