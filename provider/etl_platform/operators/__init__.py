"""Operators: orchestrate hooks and engines for DAG authors."""
