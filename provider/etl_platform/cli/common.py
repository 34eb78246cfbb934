"""What every `airflow etl` command shares: one-line errors, database connections, output."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, Literal, NoReturn

import psycopg

from etl_platform.hooks.postgres import EtlPostgresHook

# Airflow's --output choices (ARG_OUTPUT).
OutputFormat = Literal["table", "json", "yaml", "plain"]


class CliError(Exception):
    """Bad input or an unreachable system: printed as one line naming it, exit non-zero."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def fail(exc: CliError) -> NoReturn:
    print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
    sys.exit(exc.code)


def connect(conn_id: str, code: int = 1) -> psycopg.Connection[Any]:
    """A psycopg connection for an Airflow connection id, or CliError naming the id."""
    hook = EtlPostgresHook(conn_id, application_name="etl-cli")
    try:
        conninfo = hook.conninfo()
    except Exception as exc:  # the hook's message names the connection id
        raise CliError(str(exc), code) from None
    try:
        return psycopg.connect(conninfo, connect_timeout=10)
    except psycopg.Error as exc:
        raise CliError(f"Airflow connection {conn_id!r}: cannot connect ({_first_line(exc)})", code) from None


def database_error(exc: psycopg.Error) -> CliError:
    return CliError(f"database error: {_first_line(exc)}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def emit(rows: Sequence[dict[str, Any]], output: OutputFormat, empty: str = "No data found") -> None:
    """json: typed values (numbers stay numbers) on one line; table/plain/yaml: Airflow's console."""
    if output == "json":
        print(json.dumps(list(rows), default=str))
        return
    if not rows and output in ("table", "plain"):
        print(empty)
        return
    from airflow.cli.simple_table import AirflowConsole

    AirflowConsole().print_as(data=list(rows), output=output)
