"""The run folder's private files (secrets, passwords, JSON records, logs) and the local ports it uses."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, created with 0600 (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file's contents, or {} when it does not exist."""
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return {}


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a process log, headed by its path (for error messages)."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"--- {path}: missing"
    return f"--- last {len(text)} lines of {path}\n" + "\n".join(text)


def load_or_create_secrets(path: Path) -> dict[str, str]:
    """The three secrets every process must share; generated once per run folder, never printed."""
    if path.exists():
        pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        return {key.strip(): value.strip() for key, value in pairs}
    from cryptography.fernet import Fernet

    values = {
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
    }
    write_private(path, "".join(f"{k}={v}\n" for k, v in values.items()))
    return values


def ensure_passwords(path: Path, users: Iterable[str]) -> None:
    """Pre-seed the simple auth manager's password file (0600) so `up` can show the login.

    The api-server generates (and prints to its log) a password for each configured user missing
    from this file, and keeps the ones it finds (SimpleAuthManager.init in apache-airflow 3.3).
    """
    passwords: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError, ValueError):
        passwords = dict(json.loads(path.read_text() or "{}"))
    missing = [user for user in users if user not in passwords]
    if missing:
        passwords.update({user: secrets.token_urlsafe(12) for user in missing})
        write_private(path, json.dumps(passwords) + "\n")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1" if host in ("0.0.0.0", "") else host, port)) == 0


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
