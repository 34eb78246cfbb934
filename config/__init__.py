"""Deployment configuration for the etl-platform stack; importable so `config.celery_config` resolves."""
