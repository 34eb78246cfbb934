"""A throwaway PgBouncer in front of the test PostgreSQL (Debian's pgbouncer binary; `make` installs it)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from etl_devstack.pgbouncer import pgbouncer_binary, pgbouncer_ini
from etl_devstack.postgres import PgServer

__all__ = ["PgBouncer", "pgbouncer_binary", "running_pgbouncer"]


@dataclass(frozen=True)
class PgBouncer:
    port: int
    pool_size: int

    def conninfo(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user} connect_timeout=5"


@contextmanager
def running_pgbouncer(pg: PgServer, pool_size: int = 1) -> Iterator[PgBouncer]:
    """Transaction pooling, `pool_size` server connections, trust auth on loopback (test only)."""
    binary = pgbouncer_binary()
    if binary is None:
        raise RuntimeError("pgbouncer is not installed: run `make system-deps` (Debian package pgbouncer)")
    workdir = Path(tempfile.mkdtemp(prefix="etl-pgb-"))
    workdir.chmod(0o755)  # pgbouncer drops root to `nobody`, which must read its files
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    (workdir / "userlist.txt").write_text(f'"{pg.user}" ""\n')
    ini = pgbouncer_ini(
        {"postgres": f"host={pg.host} port={pg.port} dbname=postgres user={pg.user}"},
        port=port,
        auth_file=workdir / "userlist.txt",
        admin_user=pg.user,
        pool_size=pool_size,
        max_client_conn=100,
        run_as=_unprivileged_user(pg) if os.geteuid() == 0 else None,
    )
    (workdir / "pgbouncer.ini").write_text(ini)
    for path in workdir.iterdir():
        path.chmod(0o644)
    process = subprocess.Popen([binary, str(workdir / "pgbouncer.ini")], stderr=subprocess.PIPE)
    bouncer = PgBouncer(port, pool_size)
    try:
        _wait_until_up(bouncer, process)
        yield bouncer
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _unprivileged_user(pg: PgServer) -> str:
    """Who pgbouncer runs as when started by root (it refuses to stay root): `nobody`, unless the server
    is a unix-socket directory only its owner may enter (the embedded server's 0700 data directory),
    then that owner, so pgbouncer reaches the server it was told and not some other."""
    if pg.host.startswith("/"):
        owner = Path(pg.host).stat().st_uid
        if owner != 0:
            return pwd.getpwuid(owner).pw_name
    return "nobody"


def _wait_until_up(bouncer: PgBouncer, process: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with psycopg.connect(bouncer.conninfo("pgbouncer"), autocommit=True) as conn:
                conn.execute("SHOW POOLS")
            return
        except psycopg.OperationalError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"pgbouncer did not start: {exc}\n{stderr}") from None
            time.sleep(0.1)
