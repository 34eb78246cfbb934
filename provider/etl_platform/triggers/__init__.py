"""Triggers: async waits that run in the Airflow triggerer."""
