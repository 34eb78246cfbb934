"""The MariaDB orders generator, kept in etl_devstack.datagen_mysql (`make up` provisions with it);
re-exported here for the benchmarks and tests that import it from benchmarks."""

from etl_devstack.datagen_mysql import ORDERS_DDL_MYSQL, ORDERS_FILL_MYSQL, create_mysql_orders

__all__ = ["ORDERS_DDL_MYSQL", "ORDERS_FILL_MYSQL", "create_mysql_orders"]
