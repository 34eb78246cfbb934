"""Server URLs in the forms the platform hands on (SQLAlchemy, Airflow connections), and fit to print."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from etl_devstack.postgres import PgServer


def redact_url(url: str) -> str:
    """A URL fit to print: the password replaced by ***."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def sqlalchemy_url(server: PgServer, dbname: str, driver: str = "postgresql+psycopg") -> str:
    """A SQLAlchemy URL; a unix-socket directory goes in the `host` query parameter (libpq's form)."""
    auth = quote(server.user, safe="") + (f":{quote(server.password, safe='')}" if server.password else "")
    if server.host.startswith("/"):
        return f"{driver}://{auth}@/{dbname}?host={quote(server.host, safe='/')}&port={server.port}"
    return f"{driver}://{auth}@{server.host}:{server.port}/{dbname}"


def mysql_url_parts(url: str) -> dict[str, Any]:
    """user, password, host, port and unix_socket of a mysql:// URL (etl_devstack.mariadb's form)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb", "mysql+mysqldb"):
        raise ValueError(f"ETL_PLATFORM_MYSQL_URL must be a mysql:// URL, got {redact_url(url)!r}")
    return {
        "user": unquote(parts.username) if parts.username else "root",
        "password": unquote(parts.password) if parts.password else None,
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "unix_socket": parse_qs(parts.query).get("unix_socket", [None])[0],
    }


def mysql_connection_uri(url: str, database: str) -> str:
    """An AIRFLOW_CONN_* value (conn_type mysql, schema = database) for the server at a mysql:// URL;
    a unix_socket query parameter stays (a connection extra, used for host localhost)."""
    p = mysql_url_parts(url)
    auth = quote(p["user"], safe="") + (f":{quote(p['password'], safe='')}" if p["password"] else "")
    query = f"?unix_socket={quote(p['unix_socket'], safe='/')}" if p["unix_socket"] else ""
    return f"mysql://{auth}@{p['host']}:{p['port']}/{quote(database, safe='')}{query}"
