"""Plain-Python streaming transfer engine (usable without Airflow).

Start with `engine.run_transfer`; `spec.TransferSpec` lists every option.
"""

from etl_platform.transfer.engine import TransferEngine, run_transfer
from etl_platform.transfer.errors import ChunkLoadError, StagingLostError, TransferConfigError, TransferError
from etl_platform.transfer.spec import TransferSpec, WriteMode

__all__ = [
    "ChunkLoadError",
    "StagingLostError",
    "TransferConfigError",
    "TransferEngine",
    "TransferError",
    "TransferSpec",
    "WriteMode",
    "run_transfer",
]
