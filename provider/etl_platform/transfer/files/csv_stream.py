"""Rows of one CSV file (plain, gzip or zstd), streamed with pyarrow and typed by the destination's columns.

Fields are read as text, then each column is converted to the Arrow type of its destination column
(transform_io's mapping: boolean, integers, floats, date, timestamp, timestamptz; everything else stays
text, so '00123' stays '00123' and PostgreSQL parses uuid, numeric, json, ... itself). A value that
does not convert names the file, its line and its column; with a reject file it is set aside instead.

A position is "row:N", the number of records read. Compressed streams cannot seek, so resuming at
row:N reads the first N records again and drops them.

Line numbers count physical lines, quoted newlines included; after a malformed row that was set
aside (wrong number of fields) they may be off by that row's lines within its block.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from etl_platform.transfer.errors import TransferConfigError, TransferError
from etl_platform.transfer.files.locate import COMPRESSIONS, open_listed
from etl_platform.transfer.files.rejects import RejectSink

_POSITION = re.compile(r"^row:(\d+)$")
_TRUE = pa.array(["t", "true", "y", "yes", "on", "1"])
_FALSE = pa.array(["f", "false", "n", "no", "off", "0"])
_ZONE = r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"
_PROBE_BLOCK = 1 << 16
_READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class CsvOptions:
    """The CSV dialect. `null_string` unquoted means NULL (quoted, it is that text), as in PostgreSQL."""

    delimiter: str = ","
    header: bool = True
    null_string: str = ""
    encoding: str = "utf-8"
    quote_char: str = '"'
    compression: str | None = None  # gzip, zstd or none; None: from the file name (.gz, .zst)

    def __post_init__(self) -> None:
        for name in ("delimiter", "quote_char"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
                raise TransferConfigError(
                    f"CsvOptions.{name} must be one character (not a newline), got {value!r}."
                )
        if self.delimiter == self.quote_char:
            raise TransferConfigError("CsvOptions.delimiter and quote_char must differ.")
        if self.compression is not None and self.compression not in COMPRESSIONS:
            raise TransferConfigError(
                f"CsvOptions.compression {self.compression!r} is not one of {list(COMPRESSIONS)} (or None)."
            )
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise TransferConfigError(
                f"CsvOptions.encoding {self.encoding!r} is not a known encoding."
            ) from None


def parse_position(position: str | None, label: str) -> int:
    if position is None:
        return 0
    match = _POSITION.match(position)
    if match is None:
        raise TransferError(f"{label}: checkpoint position {position!r} is not a CSV position (row:N).")
    return int(match.group(1))


def _open(fs: Any, path: str, compression: str, label: str) -> tuple[Any, Any]:
    handle = open_listed(fs, path, label)
    stream: Any = pa.PythonFile(handle, mode="r")
    if compression != "none":
        stream = pa.CompressedInputStream(stream, compression)
    return handle, stream


def _parse_options(opts: CsvOptions, handler: Any = None) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(
        delimiter=opts.delimiter,
        quote_char=opts.quote_char,
        double_quote=True,
        newlines_in_values=True,
        invalid_row_handler=handler,
    )


def read_header(fs: Any, path: str, compression: str, opts: CsvOptions, label: str) -> list[str] | None:
    """The header's column names (header=True) or the first row's field count as f0..fN; None if empty."""
    handle, stream = _open(fs, path, compression, label)
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                block_size=_PROBE_BLOCK, encoding=opts.encoding, autogenerate_column_names=not opts.header
            ),
            parse_options=_parse_options(opts, lambda row: "skip"),  # names only: rows are judged when read
        )
        return list(reader.schema.names)
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return None
        raise TransferConfigError(f"{label}: cannot read the first rows as CSV ({exc}).") from None
    except (OSError, pa.ArrowException) as exc:
        raise TransferError(f"{label}: cannot read the file ({type(exc).__name__}: {exc}).") from None
    finally:
        stream.close()
        handle.close()


class CsvStream:
    def __init__(
        self,
        fs: Any,
        path: str,
        compression: str,
        label: str,
        opts: CsvOptions,
        names: list[str],
        types: dict[str, pa.DataType],
        rejects: RejectSink,
        start: str | None,
    ):
        self.label = label
        self.opts = opts
        self.names = names
        self.types = types
        self.rejects = rejects
        self.records = 0  # records taken so far (the position)
        self.line = 2 if opts.header else 1  # physical line of the next record
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self._eof = False
        self._malformed: list[Any] = []
        self._lock = threading.Lock()
        self._handle, self._stream = _open(fs, path, compression, label)
        try:
            self._reader = pacsv.open_csv(
                self._stream,
                read_options=pacsv.ReadOptions(
                    block_size=_READ_BLOCK,
                    encoding=opts.encoding,
                    column_names=None if opts.header else names,
                ),
                parse_options=_parse_options(opts, self._on_malformed),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()),
                    null_values=[opts.null_string],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" not in str(exc):
                self.close()
                raise self._parse_error(exc) from None
            self._eof = True
        skip = parse_position(start, label)
        while skip > 0 and not self.exhausted:
            skipped = self._take_raw(min(skip, 1_000_000))
            self._advance_lines(skipped)
            skip -= skipped.num_rows

    @property
    def position(self) -> str:
        return f"row:{self.records}"

    @property
    def exhausted(self) -> bool:
        while not self._buffered and not self._eof:
            self._read_batch()
        return self._eof and not self._buffered

    def describe(self, start: str, end: str) -> str:
        first, last = parse_position(start, self.label), parse_position(end, self.label)
        return f"records {first + 1} to {last}" if last > first else f"records after {first}"

    def take(self, limit: int) -> pa.Table:
        """Up to `limit` records from the position on, typed; bad rows set aside (or raising)."""
        raw = self._take_raw(limit)
        first_line = self.line
        lines = self._advance_lines(raw)
        return self._convert(raw, first_line, lines)

    # -- reading ----------------------------------------------------------------------------------

    def _on_malformed(self, row: Any) -> str:
        """pyarrow's callback for a row with the wrong number of fields."""
        text = row.text or ""
        error = f"{row.actual_columns} fields where the header has {row.expected_columns}"
        where = f"~{self.line}" if row.number is None else str(row.number)
        if self.rejects.try_add(self.label, where, "", error, text):
            with self._lock:
                self._malformed.append(text.count("\n") + 1)
            return "skip"
        return "error"

    def _read_batch(self) -> None:
        try:
            batch = self._reader.read_next_batch()
        except StopIteration:
            self._eof = True
            return
        except pa.ArrowInvalid as exc:
            raise self._parse_error(exc) from None
        except (OSError, pa.ArrowException) as exc:
            raise TransferError(
                f"{self.label}: cannot read the file ({type(exc).__name__}: {exc})."
            ) from None
        with self._lock:
            self.line += sum(self._malformed)
            self._malformed.clear()
        if batch.num_rows:
            self._buffer.append(batch)
            self._buffered += batch.num_rows

    def _parse_error(self, exc: Exception) -> TransferError:
        limit = (
            f" (the reject limit of {self.rejects.max_rejects} rows was reached)"
            if self.rejects.enabled
            else " (set reject_path and max_rejects to set such rows aside)"
        )
        return TransferError(f"{self.label}: a row after line {self.line} does not parse{limit}: {exc}")

    def _take_raw(self, limit: int) -> pa.Table:
        while self._buffered < limit and not self._eof:
            self._read_batch()
        taken: list[pa.RecordBatch] = []
        need = limit
        while need > 0 and self._buffer:
            batch = self._buffer[0]
            if batch.num_rows <= need:
                taken.append(self._buffer.pop(0))
                need -= batch.num_rows
            else:
                taken.append(batch.slice(0, need))
                self._buffer[0] = batch.slice(need)
                need = 0
        rows = limit - need
        self._buffered -= rows
        self.records += rows
        if not taken:
            return pa.schema([pa.field(n, pa.string()) for n in self.names]).empty_table()
        return pa.Table.from_batches(taken)

    def _advance_lines(self, raw: pa.Table) -> np.ndarray | None:
        """Moves the line counter past `raw`; returns each record's lines when a value spans lines."""
        per_row: np.ndarray | None = None
        for column in raw.columns:
            counts = pc.count_substring(column, "\n")
            if pc.max(counts).as_py():
                filled = pc.fill_null(counts, 0).to_numpy(zero_copy_only=False)
                per_row = filled if per_row is None else per_row + filled
        self.line += raw.num_rows + (int(per_row.sum()) if per_row is not None else 0)
        return per_row

    # -- typing -----------------------------------------------------------------------------------

    def _convert(self, raw: pa.Table, first_line: int, extra_lines: np.ndarray | None) -> pa.Table:
        columns: list[pa.Array] = []
        bad_rows: dict[int, str] = {}  # record index -> first bad column
        for name in raw.column_names:
            strings = raw.column(name).combine_chunks()
            target = self.types.get(name, pa.string())
            if target == pa.string():
                columns.append(strings)
                continue
            try:
                columns.append(_to_type(strings, target))
                continue
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
            bad = _bad_rows(strings, target)
            for found in np.flatnonzero(bad):
                bad_rows.setdefault(int(found), name)
            columns.append(_to_type(pc.if_else(pa.array(bad), pa.scalar(None, pa.string()), strings), target))
        table = pa.table(dict(zip(raw.column_names, columns, strict=True)))
        if not bad_rows:
            return table
        line_of: np.ndarray = first_line + np.arange(raw.num_rows)
        if extra_lines is not None:
            line_of = line_of + np.concatenate(([0], np.cumsum(extra_lines)[:-1]))
        for index, column in sorted(bad_rows.items()):
            line = int(line_of[index])
            value = raw.column(column)[index].as_py()
            error = f"{value!r} is not a valid {self.types[column]}"
            record = _record_text([raw.column(n)[index].as_py() for n in raw.column_names], self.opts)
            if not self.rejects.try_add(self.label, str(line), column, error, record):
                limit = (
                    f" The reject limit of {self.rejects.max_rejects} rows was reached "
                    f"(reject file {self.rejects.describe()})."
                    if self.rejects.enabled
                    else " Set reject_path (and max_rejects) to set bad rows aside."
                )
                raise TransferError(
                    f"{self.label}: line {line}, column {column!r}: {error} (destination type).{limit}"
                )
        keep = np.ones(raw.num_rows, dtype=bool)
        keep[list(bad_rows)] = False
        return table.filter(pa.array(keep))

    def close(self) -> None:
        self._buffer.clear()
        self._stream.close()
        self._handle.close()


def _to_type(strings: pa.Array, target: pa.DataType) -> pa.Array:
    """Text to `target` like PostgreSQL's input would read it; raises ArrowInvalid on any bad value."""
    if pa.types.is_boolean(target):
        words = pc.utf8_lower(pc.utf8_trim_whitespace(strings))
        is_true, is_false = pc.is_in(words, _TRUE), pc.is_in(words, _FALSE)
        if pc.any(pc.and_(pc.is_valid(words), pc.invert(pc.or_(is_true, is_false)))).as_py():
            raise pa.ArrowInvalid("not a boolean")
        return pc.if_else(pc.is_valid(words), is_true, pa.scalar(None, pa.bool_()))
    if pa.types.is_timestamp(target) and target.tz is not None:
        # Text without an offset is UTC, as in the destination session (TimeZone=UTC).
        zoned = pc.match_substring_regex(strings, _ZONE)
        aware = pc.if_else(zoned, strings, pa.scalar(None, pa.string())).cast(target)
        naive = pc.if_else(zoned, pa.scalar(None, pa.string()), strings).cast(pa.timestamp(target.unit))
        return pc.coalesce(aware, naive.cast(target))
    return strings.cast(target)


def _bad_rows(strings: pa.Array, target: pa.DataType, block: int = 1024) -> np.ndarray:
    """Which values fail to convert: blocks first, then one value at a time inside failing blocks."""
    bad = np.zeros(len(strings), dtype=bool)
    for start in range(0, len(strings), block):
        piece = strings.slice(start, block)
        try:
            _to_type(piece, target)
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        for offset in range(len(piece)):
            try:
                _to_type(piece.slice(offset, 1), target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                bad[start + offset] = True
    return bad


def _record_text(values: list[Any], opts: CsvOptions) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=opts.delimiter, quotechar=opts.quote_char, lineterminator="")
    writer.writerow([opts.null_string if v is None else v for v in values])
    return out.getvalue()
