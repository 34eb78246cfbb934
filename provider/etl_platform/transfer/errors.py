"""Errors a transfer raises; each message names the object that is wrong."""

from __future__ import annotations


class TransferError(Exception):
    """Base class of every transfer failure."""


class TransferConfigError(TransferError, ValueError):
    """The transfer was asked for something invalid; raised before any data moves."""


class ChunkLoadError(TransferError):
    """The destination rejected a chunk; earlier chunks stay committed and checkpointed."""


class StagingLostError(TransferError):
    """The staging table lost rows the checkpoints recorded (UNLOGGED: emptied by a server crash).

    Nothing was published; the checkpoint is reset, so a retry restages from the first key.
    """


class SourceUnavailableError(TransferError):
    """The source could not be reached; `retryable` says whether trying again can help
    (a refused or timed-out connection may; an unknown host or a wrong password will not)."""

    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable
