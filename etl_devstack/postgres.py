"""A PostgreSQL server for tests, the demo and `make up`: the one at a URL, or an embedded one (pgserver).

The embedded server (pgserver 0.1.x, PostgreSQL 16) listens on a unix socket only, never on TCP. Its `host`
is then the socket directory: libpq takes a directory as host, and in a URI the directory goes
percent-encoded in the host part (`postgresql://postgres@%2Ftmp%2Fetl-pg-x%2Fpgdata:5432/db`), a form
that both libpq/psycopg and Airflow's Connection URI parser accept.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import make_conninfo

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class PgServer:
    """Where a test PostgreSQL server answers, with what Airflow connections need (host, port, user...)."""

    host: str  # hostname, or a unix-socket directory (absolute path) for the embedded server
    port: int
    user: str
    password: str | None
    admin_dbname: str = "postgres"
    embedded: bool = False
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def conninfo(self, dbname: str, **params: Any) -> str:
        """A libpq key=value conninfo for `dbname`; extra libpq parameters (options=...) go in params."""
        base = {"host": self.host, "port": self.port, "user": self.user, "password": self.password}
        return make_conninfo(dbname=dbname, **{k: v for k, v in {**base, **params}.items() if v is not None})

    def uri(self, dbname: str, *, scheme: str = "postgresql", **params: str) -> str:
        """A URI for libpq and for AIRFLOW_CONN_<ID> (scheme `postgresql` is conn_type `postgres`;
        `etl-postgres` gives `etl_postgres`). Query params become Airflow connection extras."""
        host = quote(self.host, safe="") if self.host.startswith("/") else self.host
        auth = quote(self.user, safe="") + (f":{quote(self.password, safe='')}" if self.password else "")
        query = f"?{urlencode(params, quote_via=quote)}" if params else ""
        return f"{scheme}://{auth}@{host}:{self.port}/{quote(dbname, safe='')}{query}"

    def connect(self, dbname: str | None = None, **params: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo(dbname or self.admin_dbname, **params), autocommit=True)

    def stop(self) -> None:
        """Stop the server if the harness started it (a no-op for an external server)."""
        if self._stop is not None:
            self._stop()
            self._stop = None


def probe_postgres(url: str, timeout_s: int = 3) -> PgServer | None:
    """The server at `url` described from the live connection, or None if it does not answer."""
    try:
        with psycopg.connect(url, connect_timeout=timeout_s, autocommit=True) as conn:
            conn.execute("SELECT 1")
            info = conn.info
            return PgServer(info.host, info.port, info.user, info.password or None, info.dbname)
    except psycopg.OperationalError:
        return None


def start_embedded_postgres() -> PgServer:
    """Start a throwaway pgserver instance in a temp dir; `.stop()` stops it and deletes its data.

    Run as root, pgserver creates (once) a system user `pgserver` to run postgres as, and adds
    g+rx/o+rx to every parent directory of the data dir and of its bundled binaries.
    """
    with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver

    # Directly under the temp dir (not pytest's 0700 tmp tree, which the pgserver user could not
    # traverse) and short, so the socket path stays under the 107-byte unix-socket limit.
    workdir = Path(tempfile.mkdtemp(prefix="etl-pg-"))
    server = pgserver.get_server(workdir / "pgdata", cleanup_mode="delete")
    info = server.get_postmaster_info()

    def stop() -> None:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)

    return PgServer(str(info.socket_dir), info.port, "postgres", None, "postgres", embedded=True, _stop=stop)


def resolve_postgres(url: str | None) -> PgServer:
    """The server at `url` if it answers, else (or with no url) an embedded one."""
    found = probe_postgres(url) if url else None
    return found or start_embedded_postgres()
