"""What one export is, checked when the DAG is parsed: no pyarrow or pandas here (parse stays cheap).

The export engine (transfer/export.py) and its file writers read it; the file format and its
compressions live here too because the spec validates them.
"""

from __future__ import annotations

from dataclasses import dataclass

from etl_platform.transfer.errors import TransferConfigError

PARQUET_COMPRESSIONS = ("snappy", "zstd", "gzip", "lz4", "brotli", "none")
CSV_COMPRESSIONS = ("gzip", "zstd", "none")
_CSV_SUFFIX = {"gzip": ".gz", "zstd": ".zst", "none": ""}


@dataclass(frozen=True)
class FileFormat:
    kind: str  # parquet or csv
    compression: str

    @property
    def suffix(self) -> str:
        return ".parquet" if self.kind == "parquet" else ".csv" + _CSV_SUFFIX[self.compression]


@dataclass(frozen=True)
class ExportSpec:
    """One export. `destination` is a directory URL; it must be empty (or hold this export's manifest)."""

    destination: str
    source_table: str | None = None
    source_sql: str | None = None
    key_column: str | None = None
    file_format: str = "parquet"
    rows_per_file: int = 1_000_000
    partition_by: str | None = None
    chunk_rows: int = 100_000
    compression: str | None = (
        None  # parquet: snappy (default), zstd, gzip, lz4, brotli, none; csv: none, gzip, zstd
    )
    checkpoint: bool = True  # keep the resume manifest; without it a failed export must be cleaned up by hand
    max_open_files: int = 64  # partition files open at once

    def __post_init__(self) -> None:
        if not self.destination:
            raise TransferConfigError("destination (a directory URL) is required.")
        if bool(self.source_table) == bool(self.source_sql):
            raise TransferConfigError("Give exactly one of source_table or source_sql.")
        if self.source_sql and not self.key_column:
            raise TransferConfigError(
                "key_column is required with source_sql (no primary key to default to)."
            )
        if self.file_format not in ("parquet", "csv"):
            raise TransferConfigError(f"file_format {self.file_format!r} is not one of ['parquet', 'csv'].")
        allowed = PARQUET_COMPRESSIONS if self.file_format == "parquet" else CSV_COMPRESSIONS
        if self.compression is not None and self.compression not in allowed:
            raise TransferConfigError(
                f"compression {self.compression!r} is not one of {list(allowed)} for {self.file_format} files."
            )
        for name in ("rows_per_file", "chunk_rows", "max_open_files"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TransferConfigError(f"{name} must be a positive integer, got {value!r}.")

    @property
    def source_label(self) -> str:
        return self.source_table or "source_sql"

    @property
    def format(self) -> FileFormat:
        default = "snappy" if self.file_format == "parquet" else "none"
        return FileFormat(self.file_format, self.compression or default)


__all__ = ["CSV_COMPRESSIONS", "PARQUET_COMPRESSIONS", "ExportSpec", "FileFormat"]
