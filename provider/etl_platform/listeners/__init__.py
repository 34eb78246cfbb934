"""Airflow listeners shipped with the provider (registered by etl_platform.plugin)."""
