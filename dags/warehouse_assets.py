"""The warehouse tables DAGs produce and schedule on, as Airflow assets: defined once, here.

Not a DAG file (dags/.airflowignore keeps the dag-processor from parsing it); DAG files import it
by module name, as Airflow puts the dags folder (the bundle's root) on sys.path. The name is the
contract between producer and consumers; the URI says where the table lives: docker-compose's
warehouse through PgBouncer by default, ETL_ORDERS_CLEAN_ASSET_URI elsewhere (`make up` sets it to
its own warehouse). Building them reads no connection, so parsing stays free of I/O.
"""

from __future__ import annotations

import os

from airflow.sdk import Asset

# docker-compose's warehouse table through its PgBouncer; also where a platform whose warehouse has no
# URI host (a socket directory) leaves the name pointing.
COMPOSE_ORDERS_CLEAN_URI = "postgres://pgbouncer:6432/warehouse/warehouse/orders_clean"

ORDERS_CLEAN = Asset(
    name="orders_clean",
    uri=os.environ.get("ETL_ORDERS_CLEAN_ASSET_URI", COMPOSE_ORDERS_CLEAN_URI),
)
