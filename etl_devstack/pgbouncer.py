"""PgBouncer for the local platform and the tests: where its binary is, its pgbouncer.ini, whether it answers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import psycopg

from etl_devstack.runfiles import write_private
from etl_devstack.settings import PlatformState


def pgbouncer_binary() -> str | None:
    """PgBouncer from PATH or Debian's /usr/sbin (`make system-deps` installs it), else None."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None


def pgbouncer_ini(
    databases: Mapping[str, str],
    *,
    port: int,
    auth_file: Path,
    admin_user: str,
    pool_size: int,
    max_client_conn: int,
    run_as: str | None = None,
) -> str:
    """pgbouncer.ini text: loopback only, trust auth, transaction pooling by default; `databases` maps
    each name to its connection string (with per-database options such as pool_mode). `run_as`: the
    user PgBouncer switches to when started by root (it refuses to stay root)."""
    lines = [
        "[databases]",
        *(f"{name} = {target}" for name, target in databases.items()),
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {auth_file}",
        f"admin_users = {admin_user}",
        f"stats_users = {admin_user}",
        "pool_mode = transaction",
        f"default_pool_size = {pool_size}",
        f"max_client_conn = {max_client_conn}",
        *([f"user = {run_as}"] if run_as else []),
    ]
    return "\n".join(lines) + "\n"


def write_platform_config(folder: Path, state: PlatformState) -> Path:
    """pgbouncer.ini for the local PgBouncer: the warehouse session-pooled, as config/pgbouncer.ini has it.

    Loopback only, trust auth (like the local PostgreSQL the platform defaults to); the platform's
    database user is admin and stats user. Logs go to stdout (the process log): as root PgBouncer
    switches to `nobody`, which could not open files in the run folder.
    """
    server = state.pg_server()
    folder.mkdir(parents=True, exist_ok=True)
    users = folder / "userlist.txt"
    write_private(users, f'"{server.user}" ""\n')
    target = f"host={server.host} port={server.port} dbname={state.databases['warehouse']} user={server.user}"
    if server.password:  # PgBouncer logs in to PostgreSQL with it; clients use trust on loopback
        target += f" password={server.password}"
    ini = folder / "pgbouncer.ini"
    text = pgbouncer_ini(
        {"warehouse": f"{target} pool_mode=session"},
        port=state.ports["pgbouncer"],
        auth_file=users,
        admin_user=server.user,
        pool_size=20,
        max_client_conn=200,
        run_as="nobody" if os.geteuid() == 0 else None,
    )
    write_private(ini, text)
    return ini


def pgbouncer_answers(port: int, user: str) -> bool:
    """PgBouncer's admin console answers SHOW VERSION (an open port alone could be anyone's)."""
    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, dbname="pgbouncer", user=user, connect_timeout=2, autocommit=True
        ) as conn:
            conn.execute("SHOW VERSION")
    except (psycopg.Error, OSError):
        return False
    return True
