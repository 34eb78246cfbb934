"""Which kind of system an Airflow connection points at: the transfer picks its source by it."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException

from etl_platform.hooks.conn_types import MYSQL_TYPES, POSTGRES_TYPES

__all__ = ["MYSQL_TYPES", "POSTGRES_TYPES", "connection_type", "kind_of", "lookup"]


def connection_type(conn_id: str, setting: str) -> str:
    """The connection's conn_type; an undefined id fails for good, naming the setting."""
    return kind_of(lookup(conn_id, setting))


def kind_of(connection: Any) -> str:
    return (connection.conn_type or "").lower()


def lookup(conn_id: str, setting: str) -> Any:
    """The Airflow connection (one look-up: in a task each is a round trip to the API server); an
    undefined id fails for good, naming the setting."""
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise AirflowFailException(
            f"Airflow connection {conn_id!r} is not defined ({setting}): add it (Admin > Connections, an "
            f"AIRFLOW_CONN_{conn_id.upper()} variable or a secrets backend)."
        ) from None
    except Exception as exc:
        raise AirflowException(
            f"Airflow connection {conn_id!r} cannot be read: {type(exc).__name__}"
        ) from None
