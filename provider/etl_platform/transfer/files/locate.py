"""Turns the user's paths (files, directories/prefixes, globs) into a sorted list of files, each with its format."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

from etl_platform.transfer.errors import TransferConfigError, TransferError

PARQUET = "parquet"
CSV = "csv"
FORMATS = (PARQUET, CSV)
COMPRESSIONS = ("gzip", "zstd", "none")

_GLOB = re.compile(r"[*?\[]")
_COMPRESSION_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}


@dataclass(frozen=True)
class FoundFile:
    path: str  # as the filesystem takes it (protocol stripped)
    file_format: str
    compression: str  # gzip, zstd or none (CSV only; Parquet compresses inside the file)
    size: int | None


def display(fs: Any, path: str) -> str:
    """The path as a user wrote it: with its protocol (s3://...) except on the local disk."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if protocol in ("file", "local") else str(fs.unstrip_protocol(path))


def infer_format(path: str) -> tuple[str | None, str]:
    """(format, compression) from the name: .parquet/.pq, .csv, .csv.gz, .csv.zst."""
    name = posixpath.basename(path).lower()
    stem, ext = posixpath.splitext(name)
    compression = _COMPRESSION_SUFFIXES.get(ext, "none")
    if compression != "none":
        stem, ext = posixpath.splitext(stem)
    if ext in (".parquet", ".pq") and compression == "none":
        return PARQUET, "none"
    if ext in (".csv", ".tsv", ".txt"):
        return CSV, compression
    return None, compression


def _hidden(path: str) -> bool:
    """_SUCCESS, _tmp/, .crc and other markers writers leave beside their data files."""
    return any(part.startswith(("_", ".")) for part in path.split("/")[-1:])


def locate(
    fs: Any, paths: tuple[str, ...], file_format: str | None, compression: str | None
) -> tuple[list[FoundFile], list[str]]:
    """The files to read, sorted, and the globs/prefixes that matched nothing.

    A path that is neither a glob, a directory nor a prefix (ending in "/") must exist as a file.
    Inside directories and globs, names starting with "_" or "." are skipped (markers, temp files).
    """
    found: dict[str, int | None] = {}
    empty: list[str] = []
    fs.invalidate_cache()  # listings cached by s3fs may predate files written since
    for given in paths:
        stripped = fs._strip_protocol(given)
        if _GLOB.search(stripped):
            infos = fs.glob(stripped, detail=True)
            files = {p: i.get("size") for p, i in infos.items() if i.get("type") == "file" and not _hidden(p)}
            if not files:
                empty.append(given)
            found.update(files)
            continue
        info = _info(fs, stripped)
        if info is not None and info.get("type") == "file":
            found[info.get("name", stripped)] = info.get("size")
            continue
        if info is not None or given.endswith("/"):
            files = {}
            if info is not None:
                for p, i in fs.find(stripped, detail=True).items():
                    rel = p[len(stripped.rstrip("/")) + 1 :]
                    if i.get("type") == "file" and not any(s.startswith(("_", ".")) for s in rel.split("/")):
                        files[p] = i.get("size")
            if not files:
                empty.append(given)
            found.update(files)
            continue
        raise TransferConfigError(
            f"source file {given} does not exist (a directory or prefix must end in '/', a glob needs * or ?)."
        )
    return [_describe(fs, p, size, file_format, compression) for p, size in sorted(found.items())], empty


def _info(fs: Any, path: str) -> dict[str, Any] | None:
    try:
        return dict(fs.info(path))
    except FileNotFoundError:
        return None


def _describe(
    fs: Any, path: str, size: int | None, file_format: str | None, compression: str | None
) -> FoundFile:
    inferred, inferred_compression = infer_format(path)
    fmt = file_format or inferred
    if fmt is None:
        raise TransferConfigError(
            f"cannot tell the format of {display(fs, path)} from its name (expected .parquet, .pq, .csv, "
            ".csv.gz or .csv.zst): set file_format."
        )
    if fmt == PARQUET:
        return FoundFile(path, fmt, "none", size)
    return FoundFile(path, fmt, compression or inferred_compression, size)


def open_listed(fs: Any, path: str, label: str) -> Any:
    """Opens a file found when the transfer was planned; one gone since fails naming it."""
    try:
        return fs.open(path, "rb")
    except FileNotFoundError:
        raise TransferError(
            f"source file {label} does not exist (it was listed when the transfer was planned)."
        ) from None
