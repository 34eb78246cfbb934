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
