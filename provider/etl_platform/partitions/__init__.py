"""Partition maintenance for PostgreSQL declarative range partitioning (plain Python, no Airflow).

Entry points live in `maintenance`; operators in `etl_platform.operators.partitions` wrap them.
"""
