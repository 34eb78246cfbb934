"""The ledger's settings, validated once when built: where it lives and how its writers pace themselves.

Writing the ledger never fails a task or the scheduler (it is bookkeeping), but a bad setting is a
mistake to fix, not a moment to ride out: building the settings raises ConfigError (terminal) naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

from etl_platform.common.checks import require_number
from etl_platform.common.errors import ConfigError
from etl_platform.common.protocols import ConfigReader

SECTION = "etl_platform"


@dataclass(frozen=True)
class ChunkSettings:
    """How ChunkRecorder batches chunk rows off the COPY path: one COPY every `interval_s` seconds or
    `batch_rows` rows; past `max_buffered` waiting rows new ones are dropped (never hold the transfer);
    at the end it waits at most `close_timeout_s` for the last batch."""

    batch_rows: int = 50
    interval_s: float = 1.0
    max_buffered: int = 20_000
    close_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        require_number("ledger chunk batch_rows", self.batch_rows, minimum=1, integer=True)
        require_number("ledger chunk interval_s", self.interval_s, strict=True)
        require_number("ledger chunk max_buffered", self.max_buffered, minimum=self.batch_rows, integer=True)
        require_number("ledger chunk close_timeout_s", self.close_timeout_s)


@dataclass(frozen=True)
class LedgerSettings:
    """The ledger's Airflow connection; `connect_timeout_s` bounds what a ledger that does not answer
    costs the scheduler's listener."""

    conn_id: str
    connect_timeout_s: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.conn_id, str) or not self.conn_id.strip():
            raise ConfigError(f"[{SECTION}] ledger_conn_id must be a connection id, got {self.conn_id!r}")
        require_number("ledger connect_timeout_s", self.connect_timeout_s, minimum=1, integer=True)

    @classmethod
    def from_conf(cls, conf: ConfigReader) -> LedgerSettings | None:
        """From `[etl_platform] ledger_conn_id` (env AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID) in the config
        the caller passes (Airflow's, from the listener: the ledger itself imports no Airflow); None
        when it is not set: no ledger is written."""
        conn_id = conf.get(SECTION, "ledger_conn_id", fallback=None) or None
        return None if conn_id is None else cls(conn_id=conn_id)
