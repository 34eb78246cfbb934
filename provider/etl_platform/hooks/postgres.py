"""psycopg 3 connections built from Airflow `postgres` (or `etl_postgres`) connections.

The stock PostgresHook hands out psycopg2 connections; the transfer engine needs psycopg 3 for its
COPY API, so this hook builds psycopg 3 connection factories from the same Airflow connections.
"""

from __future__ import annotations

from typing import Any

import psycopg
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException
from psycopg.conninfo import make_conninfo

from etl_platform.common.session import ConnectionFactory

# Connection extras that libpq understands and that we pass through unchanged.
_LIBPQ_EXTRAS = (
    "sslmode",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "sslcrl",
    "connect_timeout",
    "application_name",
    "options",
    "target_session_attrs",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
)


class EtlPostgresHook(BaseHook):
    """Hands out psycopg 3 connections for an Airflow PostgreSQL connection.

    Accepts connections of type ``postgres`` (the postgres provider's) and ``etl_postgres``.
    Passwords never leave the conninfo string, which is never logged.
    """

    conn_name_attr = "postgres_conn_id"
    default_conn_name = "postgres_default"
    conn_type = "etl_postgres"
    hook_name = "ETL Platform PostgreSQL (psycopg 3)"

    def __init__(self, postgres_conn_id: str = default_conn_name, application_name: str = "etl-platform"):
        super().__init__()
        self.postgres_conn_id = postgres_conn_id
        self.application_name = application_name

    def conninfo(self) -> str:
        """A libpq conninfo string for the connection; raises naming the connection id if unknown."""
        try:
            conn = self.get_connection(self.postgres_conn_id)
        except Exception as exc:
            raise self._unknown(exc) from None
        return self._conninfo_of(conn)

    async def aconninfo(self) -> str:
        """The same, for triggers: never blocks the event loop."""
        try:
            conn = await self.aget_connection(self.postgres_conn_id)
        except Exception as exc:
            raise self._unknown(exc) from None
        return self._conninfo_of(conn)

    def _unknown(self, exc: Exception) -> AirflowException:
        """An undefined connection id fails for good (a retry cannot define it); a backend error may pass."""
        if isinstance(exc, AirflowNotFoundException):
            return AirflowFailException(
                f"Airflow connection {self.postgres_conn_id!r} is not defined: add it (Admin > Connections, "
                f"an AIRFLOW_CONN_{self.postgres_conn_id.upper()} variable or a secrets backend)."
            )
        return AirflowException(
            f"Airflow connection {self.postgres_conn_id!r} cannot be read: {type(exc).__name__}"
        )

    def _conninfo_of(self, conn: Any) -> str:
        extra: dict[str, Any] = conn.extra_dejson or {}
        params: dict[str, Any] = {
            "host": conn.host or None,
            "port": conn.port or None,
            "user": conn.login or None,
            "password": conn.password or None,
            "dbname": conn.schema or extra.get("dbname") or None,
            "application_name": self.application_name,
        }
        params.update({key: extra[key] for key in _LIBPQ_EXTRAS if key in extra})
        return make_conninfo(**{k: v for k, v in params.items() if v is not None})

    def get_conn(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo())

    def connection_factory(self, connection: Any | None = None) -> ConnectionFactory:
        """A callable opening a new connection each call (one per parallel stream); `connection` is
        the Airflow connection when the caller has already looked it up (saves a look-up)."""
        conninfo = self.conninfo() if connection is None else self._conninfo_of(connection)
        return lambda: psycopg.connect(conninfo)

    def test_connection(self) -> tuple[bool, str]:
        try:
            with self.get_conn() as conn:
                conn.execute("SELECT 1")
            return True, "Connection successfully tested"
        except Exception as exc:
            return False, str(exc)
