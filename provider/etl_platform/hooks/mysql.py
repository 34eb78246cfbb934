"""MySQLdb connections from Airflow `mysql` connections, for the transfer engine's MariaDB source.

The mysql provider's MySqlHook configures cursors for row-at-a-time use; the transfer needs plain
MySQLdb connections with a pinned character set and a short connect timeout, so this hook builds
them from the same Airflow connection. Passwords stay inside the connect arguments, never in logs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException

from etl_platform.extras import require
from etl_platform.transfer.errors import SourceUnavailableError

# MariaDB client/server error codes a retry cannot fix: unknown host, access denied, unknown database.
_FOR_GOOD = {2005, 1044, 1045, 1049, 1698}
_SSL_EXTRAS = ("ssl_mode", "ssl")


class EtlMySqlHook(BaseHook):
    """Hands out MySQLdb connections for an Airflow ``mysql`` connection (needs the [mysql] extra)."""

    conn_name_attr = "mysql_conn_id"
    default_conn_name = "mysql_default"
    hook_name = "ETL Platform MariaDB/MySQL (MySQLdb)"

    def __init__(self, mysql_conn_id: str = default_conn_name):
        super().__init__()
        self.mysql_conn_id = mysql_conn_id

    def connect_kwargs(self) -> dict[str, Any]:
        try:
            conn = self.get_connection(self.mysql_conn_id)
        except AirflowNotFoundException:
            raise AirflowFailException(
                f"Airflow connection {self.mysql_conn_id!r} is not defined: add it (Admin > Connections, "
                f"an AIRFLOW_CONN_{self.mysql_conn_id.upper()} variable or a secrets backend)."
            ) from None
        except Exception as exc:
            raise AirflowException(
                f"Airflow connection {self.mysql_conn_id!r} cannot be read: {type(exc).__name__}"
            ) from None
        extra: dict[str, Any] = conn.extra_dejson or {}
        kwargs: dict[str, Any] = {
            "host": conn.host or "localhost",
            "port": int(conn.port or 3306),
            "user": conn.login or "",
            "password": conn.password or "",
            "database": conn.schema or "",
            "charset": "utf8mb4",  # every value as UTF-8, whatever the column's own character set
            "connect_timeout": int(extra.get("connect_timeout", 10)),
        }
        if extra.get("unix_socket"):
            kwargs["unix_socket"] = extra["unix_socket"]
        kwargs.update({key: extra[key] for key in _SSL_EXTRAS if key in extra})
        return kwargs

    def connection_factory(self) -> Callable[[], Any]:
        """A callable opening a new connection each call (one per stream)."""
        mysqldb = require("MySQLdb", "mysql", "a MariaDB/MySQL source")
        kwargs = self.connect_kwargs()
        where = f"{kwargs.get('unix_socket') or kwargs['host']}:{kwargs['port']}"
        conn_id = self.mysql_conn_id

        def connect() -> Any:
            try:
                return mysqldb.connect(**kwargs)
            except mysqldb.Error as exc:
                code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
                text = exc.args[1] if len(exc.args) > 1 else str(exc)
                raise SourceUnavailableError(
                    f"MariaDB/MySQL connection {conn_id!r} to {where} failed: {text} (error {code})",
                    retryable=code not in _FOR_GOOD,
                ) from None

        return connect

    def test_connection(self) -> tuple[bool, str]:
        try:
            conn = self.connection_factory()()
            conn.close()
            return True, "Connection successfully tested"
        except Exception as exc:
            return False, str(exc)
