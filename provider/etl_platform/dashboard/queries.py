"""Dashboard reads over the run ledger: keyset pages of runs, stats and series from the daily rollup.

Each function runs ONE statement whatever the page size or the number of pipelines (the app counts
statements per request), returns the JSON-ready shape of its endpoint in docs/dashboard.md, and sends
values only as bind parameters: the SQL text is composed from this module's constant fragments.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from etl_platform.dashboard.cursor import decode_cursor, encode_cursor

STATUSES = ("pending", "running", "success", "failed")
FINISHED_STATUSES = ("success", "failed")
BUCKETS = ("hour", "day")
MAX_PAGE_SIZE = 100
MAX_HOUR_SERIES = timedelta(days=7)
# The rollup's histogram (include/sql/003_dashboard.sql): bucket b holds durations in [1.1^b, 1.1^(b+1)) s;
# runs without finished_at sit in NO_DURATION_BUCKET (-1 is a real bucket: [0.909, 1) s).
BUCKET_GROWTH = 1.1
NO_DURATION_BUCKET = -1000

Conn = psycopg.Connection[Any]

_RUNS_PAGE = (
    'SELECT pipeline, run_id, status, started_at, finished_at, "rows", bytes, error '
    "FROM etl_audit.pipeline_runs WHERE {where} "
    "ORDER BY started_at DESC, pipeline DESC, run_id DESC LIMIT %(limit)s"
)
_RUNS = sql.SQL(_RUNS_PAGE)
_RUNS_OFFSET = sql.SQL(_RUNS_PAGE + " OFFSET %(offset)s")  # the benchmark's baseline only
_RUN_FILTERS = {
    "pipeline": sql.SQL("pipeline = %(pipeline)s"),
    "status": sql.SQL("status = %(status)s"),
    "since": sql.SQL("started_at >= %(since)s"),
    "until": sql.SQL("started_at < %(until)s"),
}
# The redundant `started_at <=` lets the (pipeline, started_at DESC, run_id DESC) index seek when a pipeline
# is filtered; without a pipeline the row comparison itself is the (started_at, pipeline, run_id) index bound.
_AFTER_CURSOR = sql.SQL(
    "started_at <= %(c_started_at)s "
    "AND (started_at, pipeline, run_id) < (%(c_started_at)s, %(c_pipeline)s, %(c_run_id)s)"
)

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


def _require_aware(value: datetime | None, name: str) -> None:
    if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _check_range(since: datetime | None, until: datetime | None) -> None:
    _require_aware(since, "since")
    _require_aware(until, "until")
    if since is not None and until is not None and since >= until:
        raise ValueError("since must be earlier than until")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class RunFilters:
    """The runs endpoint's filters; `since <= started_at < until`."""

    pipeline: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.pipeline is not None and (not isinstance(self.pipeline, str) or not self.pipeline):
            raise ValueError("pipeline must be a non-empty string")
        if self.status is not None and self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        _check_range(self.since, self.until)

    def fingerprint(self) -> str:
        """Stable digest of the filters (instants compared in UTC): a cursor is valid only under it."""
        canonical = json.dumps([self.pipeline, self.status, _iso(self.since), _iso(self.until)])
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def params(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if value is not None}


def _where(conditions: Sequence[sql.Composable]) -> sql.Composed | sql.SQL:
    return sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("TRUE")


def _fetchall(conn: Conn, query: sql.Composed, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """One execute on our own tuple-row cursor (the connection's row factory is not assumed)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _check_page_size(page_size: int) -> None:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be an integer in 1..{MAX_PAGE_SIZE}")


def _run_json(row: Sequence[Any]) -> dict[str, Any]:
    pipeline, run_id, status, started_at, finished_at, rows, bytes_, error = row
    duration = None if finished_at is None else (finished_at - started_at).total_seconds()
    return {
        "pipeline": pipeline,
        "run_id": run_id,
        "status": status,
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "duration_s": duration,
        "rows": rows,
        "bytes": bytes_,
        "rows_per_second": rows / duration if duration is not None and duration > 0 else None,
        "error": error,
    }


def fetch_runs_page(
    conn: Conn, filters: RunFilters, page_size: int, cursor: str | None, key: bytes
) -> dict[str, Any]:
    """A page of runs newest first, keyset on (started_at, pipeline, run_id): page 1000 costs page 1.

    Raises InvalidCursor (a ValueError) for a cursor we did not sign for these filters.
    """
    _check_page_size(page_size)
    fingerprint = filters.fingerprint()
    params = filters.params()
    conditions = [_RUN_FILTERS[name] for name in params]
    if cursor is not None:
        params["c_started_at"], params["c_pipeline"], params["c_run_id"] = decode_cursor(
            cursor, fingerprint, key
        )
        conditions.append(_AFTER_CURSOR)
    params["limit"] = page_size + 1
    rows = _fetchall(conn, _RUNS.format(where=_where(conditions)), params)
    page = rows[:page_size]
    next_cursor = None
    if len(rows) > page_size:
        last = page[-1]
        next_cursor = encode_cursor((last[3], last[0], last[1]), fingerprint, key)
    return {"runs": [_run_json(row) for row in page], "next_cursor": next_cursor, "page_size": page_size}


def fetch_runs_page_offset(conn: Conn, filters: RunFilters, page_size: int, page: int) -> dict[str, Any]:
    """Page `page` (1-based) by LIMIT/OFFSET: the benchmark's baseline only, never used by the app.

    OFFSET re-reads every earlier row, and rows inserted during a walk shift pages (duplicates, gaps).
    """
    _check_page_size(page_size)
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValueError("page must be an integer >= 1")
    params = filters.params()
    conditions = [_RUN_FILTERS[name] for name in params]
    params.update(limit=page_size + 1, offset=(page - 1) * page_size)
    rows = _fetchall(conn, _RUNS_OFFSET.format(where=_where(conditions)), params)
    return {
        "runs": [_run_json(row) for row in rows[:page_size]],
        "next_cursor": None,
        "page_size": page_size,
        "page": page,
        "next_page": page + 1 if len(rows) > page_size else None,
    }


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


def _conditions(templates: Mapping[str, sql.Composable], present: Iterable[str]) -> sql.Composed | sql.SQL:
    return _where([templates[name] for name in present if name in templates])


def fetch_stats(conn: Conn, since: datetime | None, until: datetime | None) -> dict[str, Any]:
    """Overall and per-pipeline stats from the rollup, in one query.

    Ranges are day-granular (the rollup is per UTC day): `since` is rounded down to its UTC midnight and
    `until` up to the next one; the response's since/until echo those effective bounds.
    """
    _check_range(since, until)
    since_day, until_day = _day_bounds(since, until)
    params = {
        "since_day": since_day,
        "until_day": until_day,
        "since_ts": _midnight(since_day),
        "until_ts": _midnight(until_day),
    }
    present = [name for name, value in (("since", since), ("until", until)) if value is not None]
    query = _STATS.format(days=_conditions(_DAY_FILTERS, present), raw=_conditions(_RAW_DAY_FILTERS, present))
    overall = _Totals()
    pipelines: dict[str, _Totals] = {}
    last_started: dict[str, datetime | None] = {}
    for pipeline, status, bucket, runs, duration, rows, bytes_, last in _fetchall(conn, query, params):
        overall.add(status, bucket, runs, duration, rows, bytes_)
        totals = pipelines.get(pipeline) or pipelines.setdefault(pipeline, _Totals())
        totals.add(status, bucket, runs, duration, rows, bytes_)
        last_started[pipeline] = last
    return {
        "overall": overall.stats_json(),
        "pipelines": [
            {"pipeline": name, **pipelines[name].stats_json(), "last_started_at": _iso(last_started[name])}
            for name in sorted(pipelines)
        ],
        "since": _iso(_midnight(since_day)),
        "until": _iso(_midnight(until_day)),
        "generated_at": datetime.now(UTC).isoformat(),
    }


def _point(ts: datetime, pipeline: str, runs: int, failed: int, rows: int) -> dict[str, Any]:
    return {"ts": _iso(ts), "pipeline": pipeline, "runs": runs, "failed": failed, "rows": rows}


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
    _check_range(since, until)
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
    query = _SERIES_HOUR.format(where=_conditions(_RUN_FILTERS, names))
    for ts, name, runs, failed, rows, finished, f_rows, f_duration, p95 in _fetchall(conn, query, params):
        points.append(
            {
                **_point(ts, name, runs, failed, rows),
                "rows_per_second": f_rows / f_duration if f_duration > 0 else None,
                "avg_duration_s": f_duration / finished if finished else None,
                "p95_duration_s": p95,
            }
        )
    return {"bucket": "hour", "since": _iso(since), "until": _iso(until), "points": points}


def _day_series(conn: Conn, pipeline: str | None, since: datetime, until: datetime) -> dict[str, Any]:
    since_day, until_day = _day_bounds(since, until)
    params = {"since_day": since_day, "until_day": until_day, "pipeline": pipeline}
    names = ["since", "until"] + ([] if pipeline is None else ["pipeline"])
    totals: dict[tuple[date, str], _Totals] = {}
    query = _SERIES_DAY.format(where=_conditions(_DAY_FILTERS, names))
    for day, name, status, bucket, runs, duration, rows, bytes_ in _fetchall(conn, query, params):
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
        "since": _iso(_midnight(since_day)),
        "until": _iso(_midnight(until_day)),
        "points": points,
    }
