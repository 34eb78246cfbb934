"""A MariaDB/MySQL server for tests: the one at a URL, or a private mariadbd started in a temp dir.

URLs look like `mysql://root@127.0.0.1:3306/` (user, optional password, host, port; the path is ignored;
`?unix_socket=/path` is kept for a `localhost` host). The private server is Debian's own mariadbd
(package mariadb-server, `make system-deps`): `mariadb-install-db` into a fresh directory, then mariadbd
on a free 127.0.0.1 port with root and an empty password, utf8mb4 like Debian's shipped configuration,
and no option files read (`--no-defaults`), so the machine's /etc/mysql settings never leak in.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import MySQLdb

from etl_devstack.runfiles import free_port
from etl_devstack.services import announce_fallback

DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/"
MARIADBD = "/usr/sbin/mariadbd"
MARIADB_INSTALL_DB = "/usr/bin/mariadb-install-db"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


@dataclass
class MySqlServer:
    """Where a MariaDB/MySQL server answers, with what Airflow connections and MySQLdb need."""

    host: str
    port: int
    user: str
    password: str | None
    unix_socket: str | None = None  # the private server's socket (MySQLdb uses it only for host "localhost")
    embedded: bool = False  # True for a private mariadbd this process started
    workdir: Path | None = None  # the private server's temp dir (data, socket, logs), deleted by stop()
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def uri(self, database: str = "") -> str:
        """An AIRFLOW_CONN_<ID> value (conn_type `mysql`, schema = database); the password percent-encoded."""
        auth = quote(self.user, safe="") + (f":{quote(self.password, safe='')}" if self.password else "")
        return f"mysql://{auth}@{self.host}:{self.port}/{quote(database, safe='')}"

    def connect_kwargs(self, database: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password or "",
            "charset": "utf8mb4",
            "autocommit": True,
            "connect_timeout": 10,
        }
        if database:
            kwargs["database"] = database
        if self.unix_socket and self.host == "localhost":
            kwargs["unix_socket"] = self.unix_socket
        return kwargs

    def connect(self, database: str | None = None) -> Any:
        """A MySQLdb connection (utf8mb4, autocommit) to `database`, or to no database."""
        return MySQLdb.connect(**self.connect_kwargs(database))

    def stop(self) -> None:
        """Stop the server if this process started it (a no-op for an external server)."""
        if self._stop is not None:
            self._stop()
            self._stop = None


def _parse_url(url: str) -> MySqlServer:
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb", "mysql+mysqldb"):
        raise ValueError(f"not a mysql:// URL: {url!r}")
    socket_path = parse_qs(parts.query).get("unix_socket", [None])[0]
    return MySqlServer(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username) if parts.username else "root",
        password=unquote(parts.password) if parts.password else None,
        unix_socket=socket_path,
    )


def probe_mysql(url: str, timeout_s: int = 3) -> MySqlServer | None:
    """The server at `url` if it answers `SELECT 1`, else None."""
    server = _parse_url(url)
    try:
        conn = MySQLdb.connect(**{**server.connect_kwargs(), "connect_timeout": timeout_s})
    except MySQLdb.Error:
        return None
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT 1")
        return server if cursor.fetchone() == (1,) else None
    except MySQLdb.Error:
        return None
    finally:
        conn.close()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: mariadbd shuts down cleanly (InnoDB flush), usually in well under a second
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _install_db(datadir: Path, user_args: list[str], log: Path) -> None:
    cmd = [
        MARIADB_INSTALL_DB,
        "--no-defaults",
        "--auth-root-authentication-method=normal",  # root with an empty password, also on 127.0.0.1
        f"--datadir={datadir}",
        "--skip-test-db",
        "--skip-name-resolve",
        *user_args,
    ]
    with log.open("wb") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=START_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"mariadb-install-db failed (exit {done.returncode}):\n{_tail(log)}")


def _mariadbd_command(workdir: Path, port: int, user_args: list[str]) -> list[str]:
    """mariadbd on 127.0.0.1:`port` with everything (data, socket, logs) in `workdir`."""
    return [
        MARIADBD,
        "--no-defaults",  # must come first
        f"--datadir={workdir / 'data'}",
        f"--socket={workdir / 'mysqld.sock'}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        "--skip-name-resolve",
        "--innodb-buffer-pool-size=256M",
        "--character-set-server=utf8mb4",  # what Debian's /etc/mysql/mariadb.conf.d sets
        "--collation-server=utf8mb4_general_ci",
        f"--pid-file={workdir / 'mariadbd.pid'}",
        f"--log-error={workdir / 'error.log'}",
        f"--tmpdir={workdir}",
        *user_args,
    ]


def start_private_mariadbd(timeout_s: float = START_TIMEOUT_S) -> MySqlServer:
    """Initialise and start a throwaway mariadbd on a free 127.0.0.1 port (root, empty password);
    `.stop()` shuts it down (SIGTERM, wait) and deletes its directory."""
    for path in (MARIADBD, MARIADB_INSTALL_DB):
        if not os.access(path, os.X_OK):
            raise RuntimeError(
                f"{path} not found: install the Debian package mariadb-server (make system-deps)"
            )
    # Directly under the temp dir and short: the socket path must stay under the 107-byte unix-socket limit.
    workdir = Path(tempfile.mkdtemp(prefix="etl-mariadb-"))
    datadir, sock, error_log = workdir / "data", workdir / "mysqld.sock", workdir / "error.log"
    # As root, mariadbd refuses to run unless told which user to be; root keeps the 0700 temp dir usable.
    user_args = ["--user=root"] if os.geteuid() == 0 else []
    try:
        _install_db(datadir, user_args, workdir / "install.log")
        for _attempt in range(3):  # a free port can be taken between free_port() and mariadbd's bind
            port = free_port()
            cmd = _mariadbd_command(workdir, port, user_args)
            with (workdir / "mariadbd.out").open("ab") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            server = MySqlServer(
                "127.0.0.1", port, "root", None, unix_socket=str(sock), embedded=True, workdir=workdir
            )
            url = server.uri()
            deadline = time.monotonic() + timeout_s
            while proc.poll() is None and time.monotonic() < deadline:
                if probe_mysql(url, timeout_s=1):
                    break
                time.sleep(0.1)
            else:
                exited = proc.poll() is not None
                _stop_process(proc)
                log = _tail(error_log)
                if exited and "Address already in use" in log:
                    continue
                why = "exited" if exited else f"did not answer within {timeout_s:.0f} s"
                raise RuntimeError(f"private mariadbd on 127.0.0.1:{port} {why}; {error_log}:\n{log}")
            break
        else:
            raise RuntimeError(f"private mariadbd found no free port; {error_log}:\n{_tail(error_log)}")
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise

    def stop() -> None:
        atexit.unregister(stop)
        with contextlib.suppress(ProcessLookupError):
            _stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(stop)  # never leave a mariadbd behind if the caller forgets (or crashes before) stop()
    server._stop = stop
    return server


def resolve_mysql(url: str | None) -> MySqlServer:
    """The server at `url` if it answers, else (or with no url) a private mariadbd, with one line saying so."""
    found = probe_mysql(url) if url else None
    if found:
        return found
    server = start_private_mariadbd()
    announce_fallback("MariaDB", url or "(no URL)", f"a private mariadbd on {server.host}:{server.port}")
    return server
