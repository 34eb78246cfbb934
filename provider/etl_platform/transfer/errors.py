"""Errors a transfer raises; each message names the object that is wrong.

All are EtlErrors: the branch (terminal or transient, see etl_platform.common.errors) says whether a
retry can help; `retryable` says it for the one instance where that depends on the cause.
"""

from __future__ import annotations

import psycopg

from etl_platform.common.errors import (
    ConfigError,
    EtlError,
    TerminalError,
    TransientError,
    transient_sqlstate,
)


class TransferError(EtlError):
    """Base class of every transfer failure."""


class TransferConfigError(TransferError, ConfigError):
    """The transfer was asked for something invalid; raised before any data moves."""


class ChunkLoadError(TransferError, TerminalError):
    """The destination rejected a chunk; earlier chunks stay committed and checkpointed.

    Terminal (the same data would be rejected again) unless the server's SQLSTATE says the rejection
    was about the moment (a lost connection, a deadlock, a lock timeout).
    """

    def __init__(self, message: str, *, sqlstate: str | None = None):
        super().__init__(message, sqlstate=sqlstate)
        self.retryable = transient_sqlstate(sqlstate)


class StagingLostError(TransferError, TransientError):
    """The staging table lost rows the checkpoints recorded (UNLOGGED: emptied by a server crash).

    Nothing was published; the checkpoint is reset, so a retry restages from the first key.
    """


class SourceUnavailableError(TransferError, TransientError):
    """The source could not be reached; `retryable` says whether trying again can help
    (a refused or timed-out connection may; an unknown host or a wrong password will not)."""

    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


def chunk_rejected(destination: str, source: str, exc: psycopg.Error, where: str) -> ChunkLoadError:
    """The destination's refusal of one chunk, with the server's detail and SQLSTATE."""
    diag = exc.diag
    detail = "; ".join(
        part for part in (diag.message_primary or str(exc), diag.message_detail, diag.context) if part
    )
    return ChunkLoadError(
        f"{destination} rejected the chunk from {source} with {where}: {detail}. Committed chunks are "
        "kept and checkpointed; fix the data or the table and rerun to continue from this chunk.",
        sqlstate=exc.sqlstate,
    )
