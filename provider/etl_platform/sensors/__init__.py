"""Sensors: gates that wait for a condition, deferrable by default."""
