"""Platform health: read database, memory and queue load and grade it against thresholds."""
