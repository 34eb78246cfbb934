"""The root of every engine error, with the two branches an operator decides on.

A TerminalError cannot succeed by trying again (bad settings, a refused drop): the operator fails the
task without retries. A TransientError may (a lock not granted in time): Airflow's retries apply.
An EtlError on neither branch is retried, as any other exception would be.
"""

from __future__ import annotations

import psycopg


class EtlError(Exception):
    """Base of every engine error; `sqlstate` keeps the server's error code when one caused it."""

    retryable: bool = True

    def __init__(self, message: str, *, sqlstate: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate


class TerminalError(EtlError):
    """Trying again cannot help: fail the task without retries."""

    retryable = False


class TransientError(EtlError):
    """Trying again may help: the task's retries apply."""

    retryable = True


class ConfigError(TerminalError, ValueError):
    """An invalid setting or argument; raised before anything changes."""


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of a server error (psycopg), or None for anything else."""
    return exc.sqlstate if isinstance(exc, psycopg.Error) else None


# SQLSTATE classes and codes of failures that are about the moment, not the request: connection
# exceptions, transaction rollbacks (deadlock, serialization), insufficient resources, operator
# intervention (shutdown, cancel), lock not available.
_TRANSIENT_CLASSES = ("08", "40", "53", "57")
_TRANSIENT_CODES = ("55P03",)


def transient_sqlstate(sqlstate: str | None) -> bool:
    """True when a server error with this SQLSTATE may pass if tried again."""
    return sqlstate is not None and (sqlstate[:2] in _TRANSIENT_CLASSES or sqlstate in _TRANSIENT_CODES)


def is_terminal(exc: BaseException) -> bool:
    """True when `exc` says retrying cannot help (TerminalError, or `retryable` set False on it)."""
    return isinstance(exc, EtlError) and not exc.retryable
