"""Compares two transfer-benchmark results at different row counts: memory and time per row.

    python benchmarks/compare_scale.py                     # newest result of the two largest sizes
    python benchmarks/compare_scale.py small.json large.json

A streaming transfer should show flat peak RSS (ratio ~1.0) and flat seconds per row (ratio ~1.0)
as the table grows; LIMIT/OFFSET paging would show seconds per row growing with the size.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PIPE = "psql_pipe"
LIMIT = 1.10  # the targets: time per row and peak memory at the large size within 10 %


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    if doc.get("kind") != "transfer-benchmark":
        raise SystemExit(f"{path} is not a transfer-benchmark results file")
    return doc


def newest_per_size(results_dir: Path) -> dict[int, Path]:
    """The newest transfer-*.json for each row count found in `results_dir`."""
    newest: dict[int, tuple[str, Path]] = {}
    for path in results_dir.glob("transfer-*.json"):
        try:
            doc = load(path)
        except (ValueError, SystemExit):
            continue
        rows, stamp = int(doc["rows"]), str(doc["timestamp"])
        if rows not in newest or stamp > newest[rows][0]:
            newest[rows] = (stamp, path)
    return {rows: path for rows, (_, path) in newest.items()}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return round(b / a, 3)


def compare(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """Per method present in both: peak RSS, RSS over empty_task, microseconds per row, and large/small ratios."""
    methods: dict[str, Any] = {}
    for name, s in small["methods"].items():
        big = large["methods"].get(name)
        if big is None:
            continue
        row: dict[str, Any] = {}
        for label, m in (("small", s), ("large", big)):
            per_row = m["seconds"] / m["rows"] * 1e6 if m["rows"] and m["seconds"] else None
            row[label] = {
                "status": m["status"],
                "rows": m["rows"],
                "seconds": m["seconds"],
                "us_per_row": round(per_row, 3) if per_row is not None else None,
                "peak_rss_mb": m["peak_rss_mb"],
                "rss_over_empty_mb": m.get("rss_over_empty_mb"),
            }
        row["ratio_us_per_row"] = _ratio(row["small"]["us_per_row"], row["large"]["us_per_row"])
        row["ratio_peak_rss"] = _ratio(row["small"]["peak_rss_mb"], row["large"]["peak_rss_mb"])
        over_s, over_l = row["small"]["rss_over_empty_mb"], row["large"]["rss_over_empty_mb"]
        row["delta_rss_over_empty_mb"] = (
            round(over_l - over_s, 1) if over_s is not None and over_l is not None else None
        )
        methods[name] = row
    pipe = methods.get(PIPE, {}).get("ratio_us_per_row")
    for name, row in methods.items():
        # The same server slows down on a bigger table too (checkpoints once the WAL passes
        # max_wal_size, cache misses): the operator's own scaling is its ratio over the pipe's.
        row["ratio_us_per_row_vs_pipe"] = _ratio(pipe, row["ratio_us_per_row"]) if name != PIPE else None
    return {
        "kind": "transfer-scale-check",
        "timestamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "small": {"rows": small["rows"], "results": small["timestamp"]},
        "large": {"rows": large["rows"], "results": large["timestamp"]},
        "methods": methods,
    }


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_report(comparison: dict[str, Any]) -> str:
    n_small, n_large = comparison["small"]["rows"], comparison["large"]["rows"]
    header = (
        "method",
        f"us/row @{n_small:,}",
        f"us/row @{n_large:,}",
        "ratio",
        "ratio / pipe's",
        f"peak RSS MB @{n_small:,}",
        f"peak RSS MB @{n_large:,}",
        "ratio",
        "over-empty MB (small -> large)",
    )
    rows = [header]
    for name, m in comparison["methods"].items():
        s, big = m["small"], m["large"]
        rows.append(
            (
                name,
                _f(s["us_per_row"], 3),
                _f(big["us_per_row"], 3),
                _f(m["ratio_us_per_row"], 3),
                _f(m.get("ratio_us_per_row_vs_pipe"), 3),
                _f(s["peak_rss_mb"]),
                _f(big["peak_rss_mb"]),
                _f(m["ratio_peak_rss"], 3),
                f"{_f(s['rss_over_empty_mb'])} -> {_f(big['rss_over_empty_mb'])}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"scale check: {n_small:,} rows vs {n_large:,} rows (ratio = large / small)"]
    for i, row in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"targets (large / small <= {LIMIT}):")
    for name, m in comparison["methods"].items():
        if name in (PIPE, "empty_task"):
            continue
        for label, key in (
            ("time per row", "ratio_us_per_row"),
            ("time per row over the pipe's", "ratio_us_per_row_vs_pipe"),
            ("peak RSS", "ratio_peak_rss"),
        ):
            value = m.get(key)
            verdict = " n/a" if value is None else ("PASS" if value <= LIMIT else "FAIL")
            lines.append(f"  [{verdict}] {name} {label}: {_f(value, 3)}")
    return "\n".join(lines)


def write(comparison: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"scale-{comparison['timestamp']}.json"
    path.write_text(json.dumps(comparison, indent=2))
    return path


def main(argv: list[str]) -> int:
    if len(argv) == 3:
        docs = [load(Path(argv[1])), load(Path(argv[2]))]
    elif len(argv) == 1:
        found = newest_per_size(RESULTS_DIR)
        if len(found) < 2:
            raise SystemExit(f"need results at two row counts in {RESULTS_DIR}; found {sorted(found)}")
        sizes = sorted(found)[-2:]
        docs = [load(found[n]) for n in sizes]
    else:
        print(__doc__, file=sys.stderr)
        return 2
    small, large = sorted(docs, key=lambda d: d["rows"])
    comparison = compare(small, large)
    print(format_report(comparison))
    print(f"\nwritten: {write(comparison)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
