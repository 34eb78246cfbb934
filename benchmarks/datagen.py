"""The orders generator, kept in etl_devstack.datagen (`make up` provisions with it); re-exported here
for the benchmarks and tests that import it from benchmarks."""

from etl_devstack.datagen import (
    ORDERS_COLUMNS,
    ORDERS_DDL,
    ORDERS_FILL,
    create_empty_like_orders,
    create_orders,
    orders_arrow_schema,
)

__all__ = [
    "ORDERS_COLUMNS",
    "ORDERS_DDL",
    "ORDERS_FILL",
    "create_empty_like_orders",
    "create_orders",
    "orders_arrow_schema",
]
