"""The export's spec: validated at parse time, and importable without pyarrow or pandas."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from etl_platform.transfer import export
from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.export_spec import ExportSpec, FileFormat
from harness import REPO_ROOT

_PROBE = """
import json, sys
import etl_platform.operators.transfer
from etl_platform.transfer.export_spec import ExportSpec
spec = ExportSpec(destination="s3://bucket/orders/", source_table="public.orders", file_format="csv",
                  compression="gzip", partition_by="region")
print(json.dumps({"suffix": spec.format.suffix,
                  "heavy": sorted(m for m in ("pyarrow", "pandas") if m in sys.modules)}))
"""


def test_operator_import_and_export_spec_need_no_pyarrow() -> None:
    """A fresh interpreter (as the dag-processor parses in a child): the operator module and a built
    export spec pull in neither pyarrow nor pandas, which only the export's task needs."""
    run = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "provider"), str(REPO_ROOT)])},
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"suffix": ".csv.gz", "heavy": []}


def test_export_module_still_offers_the_spec() -> None:
    """transfer.export re-exports the spec, so `from etl_platform.transfer.export import ExportSpec` works."""
    assert export.ExportSpec is ExportSpec


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"destination": "", "source_table": "t"}, "destination (a directory URL) is required"),
        ({"destination": "d"}, "exactly one of source_table or source_sql"),
        ({"destination": "d", "source_table": "t", "source_sql": "SELECT 1"}, "exactly one of"),
        ({"destination": "d", "source_sql": "SELECT 1"}, "key_column is required with source_sql"),
        ({"destination": "d", "source_table": "t", "file_format": "orc"}, "file_format 'orc' is not one of"),
        (
            {"destination": "d", "source_table": "t", "compression": "gzip2"},
            "compression 'gzip2' is not one of",
        ),
        (
            {"destination": "d", "source_table": "t", "file_format": "csv", "compression": "snappy"},
            "for csv files",
        ),
        ({"destination": "d", "source_table": "t", "rows_per_file": 0}, "rows_per_file must be a positive"),
        ({"destination": "d", "source_table": "t", "chunk_rows": True}, "chunk_rows must be a positive"),
        (
            {"destination": "d", "source_table": "t", "max_open_files": 2.5},
            "max_open_files must be a positive",
        ),
    ],
)
def test_export_spec_refuses_nonsense(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TransferConfigError, match=re.escape(message)):
        ExportSpec(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("file_format", "compression", "expected", "suffix"),
    [
        ("parquet", None, FileFormat("parquet", "snappy"), ".parquet"),
        ("parquet", "zstd", FileFormat("parquet", "zstd"), ".parquet"),
        ("csv", None, FileFormat("csv", "none"), ".csv"),
        ("csv", "zstd", FileFormat("csv", "zstd"), ".csv.zst"),
    ],
)
def test_export_spec_format_defaults(
    file_format: str, compression: str | None, expected: FileFormat, suffix: str
) -> None:
    spec = ExportSpec(destination="d", source_table="t", file_format=file_format, compression=compression)
    assert spec.format == expected
    assert spec.format.suffix == suffix
    assert spec.source_label == "t"
    assert (
        ExportSpec(destination="d", source_sql="SELECT 1 AS id", key_column="id").source_label == "source_sql"
    )
