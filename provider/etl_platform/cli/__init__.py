"""`airflow etl ...`: the provider's CLI commands (registered through get_provider_info's `cli` key)."""
