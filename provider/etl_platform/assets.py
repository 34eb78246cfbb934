"""Asset URIs for what a transfer reads and writes, in the official providers' form.

``postgres://host:port/database/schema/table``, ``mysql://host:port/database/table``, ``file:///path``
and ``s3://bucket/key``: the same strings the postgres, mysql, common-io and amazon providers produce,
so a DAG scheduled on an official provider's asset and a transfer writing that table meet on one
Airflow asset. Plain functions (no connection look-up, no network): the operator hands in the
connection it already read. Anything that cannot name a table or file raises ``AssetUriError``.
On the consuming side, `window_from_events` turns an asset-triggered run's events into the time
window it must cover.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

from etl_platform.hooks.conn_types import MYSQL_TYPES, POSTGRES_TYPES

DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}
# A DNS name or IPv4 address; IPv6 literals are handled apart. Anything else (a Unix socket
# directory, libpq's "h1,h2" host lists, spaces) names no single host a URI can carry.
_HOSTNAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$")
_IPV6 = re.compile(r"^[0-9a-f:.]+$")


class AssetUriError(ValueError):
    """What the connection or name lacks to be an asset URI (the operator logs it as a warning)."""


def normalize_host(host: str | None) -> str:
    """Lower-case host for a URI netloc (IPv6 in brackets); raise for hosts no URI can carry."""
    value = (host or "").strip().lower()
    if not value:
        raise AssetUriError("the connection has no host")
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if ":" in bare and _IPV6.match(bare):
        return f"[{bare}]"
    if not _HOSTNAME.match(value):
        raise AssetUriError(
            f"host {host!r} is not a single host name or address (a socket directory or a host list "
            "cannot be an asset URI host)"
        )
    return value


def _port(port: Any, scheme: str) -> int:
    if port in (None, ""):
        return DEFAULT_PORTS[scheme]
    try:
        return int(port)
    except (TypeError, ValueError):
        raise AssetUriError(f"port {port!r} is not a number") from None


def split_postgres_name(table: str) -> tuple[str, str]:
    """``schema.table`` as PostgreSQL reads it: unquoted parts fold to lower case, ``"quoted"`` parts
    keep case, dots and spaces. An unqualified name is in ``public``."""
    parts = _split_identifiers(table, quote_char='"', fold=True)
    if len(parts) == 1:
        return "public", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise AssetUriError(f"table {table!r} is not 'schema.table'")


def split_mysql_name(table: str, default_database: str | None) -> tuple[str, str]:
    """``database.table`` (backquotes allowed; case kept: the server decides how names compare)."""
    parts = _split_identifiers(table, quote_char="`", fold=False)
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 1 and default_database:
        return default_database, parts[0]
    raise AssetUriError(f"table {table!r} is not 'database.table' and the connection names no database")


def _split_identifiers(name: str, *, quote_char: str, fold: bool) -> list[str]:
    """Split a dotted SQL name; a doubled quote inside quotes is one quote character."""
    parts: list[str] = []
    i, text = 0, name.strip()
    while True:
        if text.startswith(quote_char, i):
            j, buf = i + 1, []
            while True:
                k = text.find(quote_char, j)
                if k < 0:
                    raise AssetUriError(f"name {name!r} has an unclosed {quote_char}")
                buf.append(text[j:k])
                if text.startswith(quote_char, k + 1):
                    buf.append(quote_char)
                    j = k + 2
                    continue
                break
            parts.append("".join(buf))
            i = k + 1
        else:
            k = text.find(".", i)
            raw = text[i:] if k < 0 else text[i:k]
            parts.append(raw.strip().lower() if fold else raw.strip())
            i = len(text) if k < 0 else k
        if i >= len(text):
            break
        if text[i] != ".":
            raise AssetUriError(f"name {name!r} has text after a quoted identifier")
        i += 1
    if not all(parts):
        raise AssetUriError(f"name {name!r} has an empty part")
    return parts


def _path(*parts: str) -> str:
    """Each name percent-encoded whole, so a '/', '%', '?' or space inside one stays one path part."""
    return "/" + "/".join(quote(part, safe="") for part in parts)


def postgres_uri(host: str | None, port: Any, database: str | None, table: str) -> str:
    """``postgres://host:port/database/schema/table``, normalized as the postgres provider does."""
    if not database:
        raise AssetUriError("the connection names no database")
    schema, name = split_postgres_name(table)
    netloc = f"{normalize_host(host)}:{_port(port, 'postgres')}"
    return _official("postgres", SplitResult("postgres", netloc, _path(database, schema, name), "", ""))


def mysql_uri(host: str | None, port: Any, default_database: str | None, table: str) -> str:
    """``mysql://host:port/database/table``, normalized as the mysql provider does."""
    database, name = split_mysql_name(table, default_database)
    netloc = f"{normalize_host(host)}:{_port(port, 'mysql')}"
    return _official("mysql", SplitResult("mysql", netloc, _path(database, name), "", ""))


def file_uri(url: str) -> str:
    """``file:///abs/path`` for local files (a bare path too), ``s3://bucket/key`` for S3."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if not scheme:
        path = os.path.abspath(url.strip())
        return _official("file", SplitResult("file", "", quote(path).rstrip("/") or "/", "", ""))
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise AssetUriError(f"file URL {url!r} names a remote host")
        return _official("file", SplitResult("file", "", parts.path.rstrip("/") or "/", "", ""))
    if scheme in ("s3", "s3a"):
        if not parts.netloc:
            raise AssetUriError(f"S3 URL {url!r} names no bucket")
        key = parts.path.rstrip("/")
        return _official("s3", SplitResult("s3", parts.netloc, key, "", ""))
    raise AssetUriError(f"URL {url!r}: only file:// and s3:// storage become assets")


def connection_table_uri(connection: Any, table: str) -> str:
    """The asset URI of `table` on the system an Airflow connection points at."""
    kind = (connection.conn_type or "").lower()
    if kind in POSTGRES_TYPES:
        return postgres_uri(connection.host, connection.port, connection.schema or connection.login, table)
    if kind in MYSQL_TYPES:
        return mysql_uri(connection.host, connection.port, connection.schema, table)
    raise AssetUriError(f"connection type {kind!r} has no table asset scheme")


def _official(scheme: str, parts: SplitResult) -> str:
    """Run the official provider's own sanitizer over the URI, so ours can never drift from it."""
    try:
        module = importlib.import_module(_SANITIZERS[scheme])
    except ImportError:  # an optional provider (mysql, amazon) missing: our URI already has its shape
        return urlunsplit(parts)
    try:
        return urlunsplit(module.sanitize_uri(parts))
    except ValueError as exc:
        raise AssetUriError(str(exc)) from None


# The official providers' modules registered for these schemes under `asset-uris`.
_SANITIZERS = {
    "postgres": "airflow.providers.postgres.assets.postgres",
    "mysql": "airflow.providers.mysql.assets.mysql",
    "file": "airflow.providers.common.io.assets.file",
    "s3": "airflow.providers.amazon.aws.assets.s3",
}


# ------------------------------------------------------------------------ consuming asset events


def window_from_events(
    events: Mapping[Any, Sequence[Any]],
    params: Mapping[str, Any] | None = None,
    *,
    unbounded: tuple[str, str] | None = None,
    start_key: str = "window_start",
    end_key: str = "window_end",
) -> tuple[str, str]:
    """The UTC ``[start, end)`` an asset-triggered run must cover, as ISO strings.

    A transfer's event carries the window it loaded (extra ``window_start``/``window_end``); the
    scheduler runs a consumer once for every event queued since its last run, so the window spans
    them all: earliest start to latest end. `events` is the ``triggering_asset_events`` context
    entry (asset -> events); the run's `params` under the same keys widen it, so a manual run
    (no events) names its own window. A timestamp without an offset is UTC.

    An event without a window comes from a load not bounded by time (key ranges, a truncate): any
    part of the asset may have changed, so the result is `unbounded` (the consumer's own "everything",
    e.g. PostgreSQL's ``("-infinity", "infinity")``); without one, such an event is an error.
    """
    windows: list[tuple[Any, Any]] = []
    for per_asset in events.values():
        for event in per_asset:
            extra = getattr(event, "extra", None) or {}
            if extra.get(start_key) and extra.get(end_key):
                windows.append((extra[start_key], extra[end_key]))
            elif unbounded is not None:
                return unbounded
            else:
                asset = getattr(event, "asset", None)
                raise ValueError(
                    f"An event on {getattr(asset, 'name', asset)!r} has no {start_key}/{end_key} "
                    "in its extra (a load not bounded by time) and no unbounded window was given."
                )
    if params and params.get(start_key) and params.get(end_key):
        windows.append((params[start_key], params[end_key]))
    if not windows:
        raise ValueError(
            f"No window: no triggering asset event, and the params {start_key}/{end_key} are empty."
        )
    start = min(_utc(start, start_key) for start, _ in windows)
    end = max(_utc(end, end_key) for _, end in windows)
    if start >= end:
        raise ValueError(
            f"Empty window: {start_key} {start.isoformat()} is not before {end_key} {end.isoformat()}"
        )
    return start.isoformat(), end.isoformat()


def _utc(value: Any, key: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{key} {value!r} is not an ISO timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
