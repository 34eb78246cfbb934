"""ETL performance dashboard: a FastAPI app over the run ledger, mounted at /etl by the plugin."""
