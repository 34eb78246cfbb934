"""Notifiers usable from operators and from DAG/task callbacks."""

from etl_platform.notifications.performance import PerformanceAlertNotifier

__all__ = ["PerformanceAlertNotifier"]
