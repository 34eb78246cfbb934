"""Errors of partition maintenance; each names the table, partition or setting at fault."""

from __future__ import annotations


class PartitionError(Exception):
    """Base class."""


class PartitionConfigError(PartitionError, ValueError):
    """An invalid argument; raised before anything changes."""
