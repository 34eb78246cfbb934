"""The orders pipeline's chunk transform for StreamingTransferOperator(transform=...).

Business logic, so it lives with the DAGs, not in the provider. Not a DAG file (dags/.airflowignore);
DAG files import it by module name, as Airflow puts the dags folder on sys.path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # DAG files import this module: keep pandas out of DAG parsing
    import pandas as pd


def clean_orders(frame: pd.DataFrame) -> pd.DataFrame:
    """The original platform design's cleaning step: drop incomplete rows, stamp processing time.

    Only the columns an order cannot be used without are required; optional ones (a note, a
    discount) may stay empty, unlike the original's blanket ``dropna()``.
    """
    import pandas as pd

    required = [c for c in ("id", "customer_id", "order_ts", "amount") if c in frame.columns]
    return frame.dropna(subset=required).assign(processed_at=pd.Timestamp.now(tz="UTC"))
