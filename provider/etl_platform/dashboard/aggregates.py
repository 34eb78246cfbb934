"""Dashboard aggregates from the ledger: stats and series, mostly from the daily rollup.

Each function runs ONE statement whatever the number of pipelines (the app counts statements per
request) and returns the JSON-ready shape of its endpoint in docs/dashboard.md; values go as bind
parameters only. Durations come from the rollup's histogram, so p95 is an estimate within 10 %.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from psycopg import sql

from etl_platform.dashboard.query_common import (
    FINISHED_STATUSES,
    RUN_FILTERS,
    STATUSES,
    Conn,
    check_range,
    conditions_for,
    fetchall,
    iso,
)

BUCKETS = ("hour", "day")
MAX_HOUR_SERIES = timedelta(days=7)
# The rollup's histogram (include/sql/003_dashboard.sql): bucket b holds durations in [1.1^b, 1.1^(b+1)) s;
# runs without finished_at sit in NO_DURATION_BUCKET (-1 is a real bucket: [0.909, 1) s).
BUCKET_GROWTH = 1.1
NO_DURATION_BUCKET = -1000

_STATS = sql.SQL(
    """
WITH agg AS (
    SELECT pipeline, status, duration_bucket, sum(runs)::bigint AS runs, sum(duration_sum) AS duration_sum,
           sum(rows_sum)::bigint AS rows_sum, sum(bytes_sum)::bigint AS bytes_sum
    FROM etl_audit.pipeline_run_rollup
    WHERE {days}
    GROUP BY pipeline, status, duration_bucket
), latest AS MATERIALIZED (  -- once per pipeline, not once per output row
    SELECT p.pipeline,
           (SELECT max(r.started_at) FROM etl_audit.pipeline_runs r WHERE r.pipeline = p.pipeline AND {raw})
    FROM (SELECT DISTINCT pipeline FROM agg) p
)
SELECT agg.pipeline, agg.status, agg.duration_bucket, agg.runs, agg.duration_sum, agg.rows_sum,
       agg.bytes_sum, latest.max
FROM agg JOIN latest USING (pipeline)
"""
)
_DAY_FILTERS = {
    "since": sql.SQL("day >= %(since_day)s"),
    "until": sql.SQL("day < %(until_day)s"),
    "pipeline": sql.SQL("pipeline = %(pipeline)s"),
}
_RAW_DAY_FILTERS = {
    "since": sql.SQL("r.started_at >= %(since_ts)s"),
    "until": sql.SQL("r.started_at < %(until_ts)s"),
}
_SERIES_DAY = sql.SQL(
    "SELECT day, pipeline, status, duration_bucket, runs, duration_sum, rows_sum, bytes_sum "
    "FROM etl_audit.pipeline_run_rollup WHERE {where}"
)
_SERIES_HOUR = sql.SQL(
    """
SELECT date_trunc('hour', started_at, 'UTC') AS ts, pipeline, count(*) AS runs,
       count(*) FILTER (WHERE status = 'failed') AS failed, coalesce(sum("rows"), 0)::bigint AS rows_sum,
       count(*) FILTER (WHERE finished) AS finished_runs,
       coalesce(sum("rows") FILTER (WHERE finished), 0)::bigint AS finished_rows,
       coalesce(sum(duration) FILTER (WHERE finished), 0) AS finished_duration,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration) FILTER (WHERE finished) AS p95
FROM (
    SELECT started_at, pipeline, status, "rows",
           extract(epoch FROM finished_at - started_at)::double precision AS duration,
           status IN ('success', 'failed') AND finished_at IS NOT NULL AS finished
    FROM etl_audit.pipeline_runs
    WHERE {where}
) r
GROUP BY 1, 2
ORDER BY 1, 2
"""
)


def _day_bounds(since: datetime | None, until: datetime | None) -> tuple[date | None, date | None]:
    """UTC days [since's day, until's day rounded up): the rollup is per day."""
    since_day = None if since is None else since.astimezone(UTC).date()
    until_day = None
    if until is not None:
        utc = until.astimezone(UTC)
        until_day = utc.date() if utc.timetz() == time(tzinfo=UTC) else utc.date() + timedelta(days=1)
    return since_day, until_day


def _floor_hour(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(value: datetime) -> datetime:
    floor = _floor_hour(value)
    return floor if floor == value else floor + timedelta(hours=1)


def align_range(
    since: datetime | None, until: datetime | None, bucket: str
) -> tuple[datetime | None, datetime | None]:
    """The bounds a stats ('day') or series query really covers, so that requests differing only inside
    a bucket share one cache entry: whole UTC days for the rollup; whole hours for 'hour', both ends
    rounded up (a 7-day range stays within 7 days; the current hour is complete so far), and a range
    inside one hour becomes that hour."""
    if bucket == "day":
        since_day, until_day = _day_bounds(since, until)
        return _midnight(since_day), _midnight(until_day)
    start = None if since is None else _ceil_hour(since)
    end = None if until is None else _ceil_hour(until)
    if since is not None and start is not None and end is not None and start >= end:
        start = _floor_hour(since)  # a range inside one hour: that whole hour
    return start, end


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(), tzinfo=UTC)


def _percentile(buckets: Mapping[int, int], q: float) -> float | None:
    """q-quantile as percentile_cont defines it, each ranked run placed evenly inside its bucket.

    Every estimate lies in the same 10 %-wide bucket as the true value, so the error is under 10 %.
    """
    n = sum(buckets.values())
    if n == 0:
        return None
    position = q * (n - 1)
    wanted = [math.floor(position), min(math.floor(position) + 1, n - 1)]
    found: list[float] = []
    seen = 0
    for bucket in sorted(buckets):
        count = buckets[bucket]
        low = BUCKET_GROWTH**bucket
        while wanted and wanted[0] < seen + count:
            found.append(low + low * (BUCKET_GROWTH - 1) * (wanted.pop(0) - seen + 0.5) / count)
        seen += count
    return found[0] + (found[1] - found[0]) * (position - math.floor(position))


@dataclass
class _Totals:
    """Sums over rollup rows; finished means success/failed with a finished_at (a duration)."""

    runs: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    rows: int = 0
    bytes: int = 0
    finished_rows: int = 0
    finished_duration: float = 0.0
    durations: dict[int, int] = field(default_factory=dict)

    def add(self, status: str, bucket: int, runs: int, duration: float, rows: int, bytes_: int) -> None:
        self.runs += runs
        self.by_status[status] = self.by_status.get(status, 0) + runs
        self.rows += rows
        self.bytes += bytes_
        if status in FINISHED_STATUSES and bucket != NO_DURATION_BUCKET:
            self.finished_rows += rows
            self.finished_duration += duration
            self.durations[bucket] = self.durations.get(bucket, 0) + runs

    def avg_duration(self) -> float | None:
        finished = sum(self.durations.values())
        return self.finished_duration / finished if finished else None

    def rows_per_second(self) -> float | None:
        return self.finished_rows / self.finished_duration if self.finished_duration > 0 else None

    def stats_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "by_status": self.by_status,
            "avg_duration_s": self.avg_duration(),
            "p95_duration_s": _percentile(self.durations, 0.95),
            "rows": self.rows,
            "bytes": self.bytes,
            "rows_per_second": self.rows_per_second(),
        }


def fetch_stats(conn: Conn, since: datetime | None, until: datetime | None) -> dict[str, Any]:
    """Overall and per-pipeline stats from the rollup, in one query.

    Ranges are day-granular (the rollup is per UTC day): `since` is rounded down to its UTC midnight and
    `until` up to the next one; the response's since/until echo those effective bounds.
    """
    check_range(since, until)
    since_day, until_day = _day_bounds(since, until)
    params = {
        "since_day": since_day,
        "until_day": until_day,
        "since_ts": _midnight(since_day),
        "until_ts": _midnight(until_day),
    }
    present = [name for name, value in (("since", since), ("until", until)) if value is not None]
    query = _STATS.format(
        days=conditions_for(_DAY_FILTERS, present), raw=conditions_for(_RAW_DAY_FILTERS, present)
    )
    overall = _Totals()
    pipelines: dict[str, _Totals] = {}
    last_started: dict[str, datetime | None] = {}
    for pipeline, status, bucket, runs, duration, rows, bytes_, last in fetchall(conn, query, params):
        overall.add(status, bucket, runs, duration, rows, bytes_)
        totals = pipelines.get(pipeline) or pipelines.setdefault(pipeline, _Totals())
        totals.add(status, bucket, runs, duration, rows, bytes_)
        last_started[pipeline] = last
    return {
        "overall": overall.stats_json(),
        "pipelines": [
            {"pipeline": name, **pipelines[name].stats_json(), "last_started_at": iso(last_started[name])}
            for name in sorted(pipelines)
        ],
        "since": iso(_midnight(since_day)),
        "until": iso(_midnight(until_day)),
        "generated_at": datetime.now(UTC).isoformat(),
    }


def _point(ts: datetime, pipeline: str, runs: int, failed: int, rows: int) -> dict[str, Any]:
    return {"ts": iso(ts), "pipeline": pipeline, "runs": runs, "failed": failed, "rows": rows}


def fetch_series(
    conn: Conn, pipeline: str | None, since: datetime, until: datetime, bucket: str
) -> dict[str, Any]:
    """Points per (bucket, pipeline), ordered by ts then pipeline, in one query.

    'day' reads the rollup, so its range is day-granular like fetch_stats (echoed since/until are the
    effective UTC midnights); 'hour' reads the runs with exact bounds and allows at most 7 days.
    """
    if bucket not in BUCKETS:
        raise ValueError("bucket must be 'hour' or 'day'")
    if since is None or until is None:
        raise ValueError("since and until are required")
    check_range(since, until)
    if pipeline is not None and (not isinstance(pipeline, str) or not pipeline):
        raise ValueError("pipeline must be a non-empty string")
    if bucket == "hour":
        if until - since > MAX_HOUR_SERIES:
            raise ValueError("bucket 'hour' allows at most 7 days between since and until")
        return _hour_series(conn, pipeline, since, until)
    return _day_series(conn, pipeline, since, until)


def _hour_series(conn: Conn, pipeline: str | None, since: datetime, until: datetime) -> dict[str, Any]:
    params = {"since": since, "until": until, "pipeline": pipeline}
    names = ["since", "until"] + ([] if pipeline is None else ["pipeline"])
    points = []
    query = _SERIES_HOUR.format(where=conditions_for(RUN_FILTERS, names))
    for ts, name, runs, failed, rows, finished, f_rows, f_duration, p95 in fetchall(conn, query, params):
        points.append(
            {
                **_point(ts, name, runs, failed, rows),
                "rows_per_second": f_rows / f_duration if f_duration > 0 else None,
                "avg_duration_s": f_duration / finished if finished else None,
                "p95_duration_s": p95,
            }
        )
    return {"bucket": "hour", "since": iso(since), "until": iso(until), "points": points}


def _day_series(conn: Conn, pipeline: str | None, since: datetime, until: datetime) -> dict[str, Any]:
    since_day, until_day = _day_bounds(since, until)
    params = {"since_day": since_day, "until_day": until_day, "pipeline": pipeline}
    names = ["since", "until"] + ([] if pipeline is None else ["pipeline"])
    totals: dict[tuple[date, str], _Totals] = {}
    query = _SERIES_DAY.format(where=conditions_for(_DAY_FILTERS, names))
    for day, name, status, bucket, runs, duration, rows, bytes_ in fetchall(conn, query, params):
        point = totals.get((day, name)) or totals.setdefault((day, name), _Totals())
        point.add(status, bucket, runs, duration, rows, bytes_)
    points = []
    for (day, name), t in sorted(totals.items()):
        ts = datetime.combine(day, time(), tzinfo=UTC)
        points.append(
            {
                **_point(ts, name, t.runs, t.by_status["failed"], t.rows),
                "rows_per_second": t.rows_per_second(),
                "avg_duration_s": t.avg_duration(),
                "p95_duration_s": _percentile(t.durations, 0.95),
            }
        )
    return {
        "bucket": "day",
        "since": iso(_midnight(since_day)),
        "until": iso(_midnight(until_day)),
        "points": points,
    }
