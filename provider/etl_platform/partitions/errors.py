"""Errors of partition maintenance; each names the table, partition or setting at fault."""

from __future__ import annotations

from etl_platform.common.errors import ConfigError, EtlError, TransientError


class PartitionError(EtlError):
    """Base class."""


class PartitionConfigError(PartitionError, ConfigError):
    """An invalid argument; raised before anything changes (terminal: a retry cannot help)."""


class PartitionLockTimeout(PartitionError, TransientError):
    """No attempt got its locks within lock_timeout (transient: a later try may, once they are free)."""
