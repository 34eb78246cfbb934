"""Dashboard data layer on a real ledger: keyset pages, filters, signed cursors, the rollup, query counts.

Expected values always come from the raw etl_audit.pipeline_runs rows (SQL written here, or Python), never
from the rollup or the code under test. Sessions run in Asia/Kolkata (+05:30) so that any code relying on
the session time zone instead of UTC days shows up.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql

from benchmarks.dashboard_offset import fetch_runs_page_offset
from etl_platform.dashboard.aggregates import fetch_series, fetch_stats
from etl_platform.dashboard.cursor import InvalidCursor, decode_cursor, encode_cursor
from etl_platform.dashboard.queries import RunFilters, fetch_runs_page
from etl_platform.ledger.migrate import migrate

KEY = b"test-cursor-key-0123456789abcdef"
T0 = datetime(2026, 10, 28, 9, 0, tzinfo=UTC)  # runs span Oct/Nov partitions and the default (December)
Run = tuple[str, str, datetime, datetime | None, str, int, int]  # pipeline, run_id, started, finished, ...
INSERT = (
    'INSERT INTO etl_audit.pipeline_runs (pipeline, run_id, started_at, finished_at, status, "rows", bytes) '
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


@pytest.fixture
def ledger(pg_server: Any) -> Iterator[str]:
    """A database of its own (the ledger lives in the fixed etl_audit schema), migrated, with two months."""
    name = f"etl_test_dash_{datetime.now(UTC):%H%M%S%f}"
    with pg_server.connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conninfo = pg_server.conninfo(name, options="-c TimeZone=Asia/Kolkata")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        migrate(conn)
        for month in ("2026-10-01", "2026-11-01"):
            conn.execute("SELECT etl_audit.create_monthly_partition('etl_audit.pipeline_runs', %s)", (month,))
    yield conninfo
    with pg_server.connect() as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def conn(ledger: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(ledger, autocommit=True) as connection:
        yield connection


def make_runs(n: int, pipelines: int, seed: int, start: datetime = T0, days: float = 40) -> list[Run]:
    """Random runs with many equal started_at (whole minutes) across pipelines and within one."""
    rng = random.Random(seed)
    runs: list[Run] = []
    for i in range(n):
        pipeline = f"pipe_{rng.randrange(pipelines):02d}"
        started = start + timedelta(minutes=rng.randrange(int(days * 24 * 60)))
        if rng.random() < 0.05:
            started += timedelta(microseconds=rng.randrange(1, 999_999))
        status = rng.choices(["success", "failed", "running", "pending"], [80, 8, 8, 4])[0]
        finished = None
        if status in ("success", "failed") or rng.random() < 0.1:
            seconds = rng.choice([0.0, 0.95, rng.uniform(0.001, 2), rng.lognormvariate(4, 1.2)])
            finished = started + timedelta(seconds=round(seconds, 6))
        rows = rng.randrange(0, 1_000_000) if finished else 0
        runs.append(
            (pipeline, f"run_{i:05d}", started, finished, status, rows, rows * rng.randrange(50, 200))
        )
    return runs


def insert(conn: psycopg.Connection[Any], runs: list[Run]) -> None:
    with conn.cursor() as cur:
        cur.executemany(INSERT, runs)


def walk(conn: psycopg.Connection[Any], filters: RunFilters, page_size: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = fetch_runs_page(conn, filters, page_size, cursor, KEY)
        assert len(page["runs"]) <= page_size and page["page_size"] == page_size
        seen.extend(page["runs"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def order_key(run: dict[str, Any]) -> tuple[datetime, str, str]:
    return datetime.fromisoformat(run["started_at"]), run["pipeline"], run["run_id"]


# --- keyset pagination -------------------------------------------------------------------------------------


def test_keyset_walk_returns_every_run_once_while_runs_arrive(conn: psycopg.Connection[Any]) -> None:
    insert(conn, make_runs(300, pipelines=4, seed=1))
    before = conn.execute(
        "SELECT pipeline, run_id FROM etl_audit.pipeline_runs ORDER BY started_at DESC, pipeline DESC, run_id DESC"
    ).fetchall()
    ahead_of_walk: set[tuple[str, str]] = set()
    behind_cursor: set[tuple[str, str]] = set()
    seen: list[dict[str, Any]] = []
    cursor = None
    for step in range(1000):
        page = fetch_runs_page(conn, RunFilters(), 7, cursor, KEY)
        seen.extend(page["runs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        last = page["runs"][-1]
        at = datetime.fromisoformat(last["started_at"])
        # A newer run, and runs tied with the page's last row on both sides of the cursor: only the one
        # sorting after the cursor is still ahead of the walk.
        arrivals = [
            ("pipe_00", f"new_{step}", datetime.now(UTC) + timedelta(days=400), None, "running", 0, 0),
            ("pipe_zz", f"tie_before_{step}", at, None, "running", 0, 0),  # sorts before the cursor row
            (last["pipeline"], f"{last['run_id']}_a", at, None, "pending", 0, 0),  # same pipeline, bigger id
            ("pipe_", f"tie_after_{step}", at, None, "pending", 0, 0),  # sorts after: still to come
        ]
        insert(conn, arrivals)
        ahead_of_walk.update((r[0], r[1]) for r in arrivals[:3])
        behind_cursor.add((arrivals[3][0], arrivals[3][1]))
    keys = [(r["pipeline"], r["run_id"]) for r in seen]
    assert len(keys) == len(set(keys)), "a run was returned twice"
    assert [order_key(r) for r in seen] == sorted((order_key(r) for r in seen), reverse=True)
    assert set(before) <= set(keys)
    assert not ahead_of_walk & set(keys)
    assert set(keys) - set(before) == behind_cursor  # arrivals still ahead of the walk are found once
    assert [k for k in keys if k in set(before)] == before


def test_offset_pages_repeat_runs_when_runs_arrive(conn: psycopg.Connection[Any]) -> None:
    """The baseline the keyset walk is compared with: OFFSET shifts under inserts (this test's premise)."""
    insert(conn, make_runs(60, pipelines=2, seed=2))
    seen = []
    for page_number in range(1, 5):
        page = fetch_runs_page_offset(conn, RunFilters(), 10, page_number)
        seen.extend((r["pipeline"], r["run_id"]) for r in page["runs"])
        insert(conn, [("pipe_00", f"new_{page_number}", datetime.now(UTC), None, "running", 0, 0)])
    assert len(seen) > len(set(seen))


def test_run_json_shape(conn: psycopg.Connection[Any]) -> None:
    started = datetime(2026, 11, 2, 10, 0, 3, 120000, tzinfo=UTC)
    insert(
        conn,
        [
            ("etl_orders", "r1", started, started + timedelta(seconds=127.38), "success", 120345, 15400000),
            ("etl_orders", "r2", started + timedelta(hours=1), None, "running", 0, 0),
        ],
    )
    conn.execute("UPDATE etl_audit.pipeline_runs SET error = 'boom' WHERE run_id = 'r1'")
    page = fetch_runs_page(conn, RunFilters(), 50, None, KEY)
    assert page == {
        "runs": [
            {
                "pipeline": "etl_orders", "run_id": "r2", "status": "running",
                "started_at": "2026-11-02T11:00:03.120000+00:00", "finished_at": None, "duration_s": None,
                "rows": 0, "bytes": 0, "rows_per_second": None, "error": None,
            },
            {
                "pipeline": "etl_orders", "run_id": "r1", "status": "success",
                "started_at": "2026-11-02T10:00:03.120000+00:00", "finished_at": "2026-11-02T10:02:10.500000+00:00",
                "duration_s": pytest.approx(127.38), "rows": 120345, "bytes": 15400000,
                "rows_per_second": pytest.approx(120345 / 127.38), "error": "boom",
            },
        ],
        "next_cursor": None,
        "page_size": 50,
    }  # fmt: skip
    json.dumps(page)


FILTER_CASES = {
    "pipeline": {"pipeline": "pipe_02"},
    "status": {"status": "failed"},
    "since": {"since": datetime(2026, 11, 20, 12, 0, tzinfo=timezone(timedelta(hours=2)))},
    "until": {"until": datetime(2026, 11, 1, 0, 0, tzinfo=UTC)},
    "since_until": {"since": T0 + timedelta(days=3, minutes=7), "until": T0 + timedelta(days=9)},
    "all": {
        "pipeline": "pipe_01",
        "status": "success",
        "since": T0 + timedelta(days=2),
        "until": datetime(2026, 12, 2, tzinfo=timezone(timedelta(hours=-5))),
    },
    "unknown_pipeline": {"pipeline": "nope"},
}


@pytest.mark.parametrize("case", FILTER_CASES)
def test_filters_match_an_independent_query(conn: psycopg.Connection[Any], case: str) -> None:
    insert(conn, make_runs(400, pipelines=5, seed=3))
    params = FILTER_CASES[case]
    expected = conn.execute(
        "SELECT pipeline, run_id FROM etl_audit.pipeline_runs "
        "WHERE (%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s) "
        "AND (%(status)s::text IS NULL OR status = %(status)s) "
        "AND (%(since)s::timestamptz IS NULL OR started_at >= %(since)s) "
        "AND (%(until)s::timestamptz IS NULL OR started_at < %(until)s) "
        "ORDER BY started_at DESC, pipeline DESC, run_id DESC",
        {"pipeline": None, "status": None, "since": None, "until": None, **params},
    ).fetchall()
    assert case == "unknown_pipeline" or len(expected) > 10
    seen = walk(conn, RunFilters(**params), 9)
    assert [(r["pipeline"], r["run_id"]) for r in seen] == expected
    offset = fetch_runs_page_offset(conn, RunFilters(**params), 9, 2)["runs"]
    assert [(r["pipeline"], r["run_id"]) for r in offset] == expected[9:18]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"status": "done"}, "status"),
        ({"since": T0, "until": T0}, "since"),
        ({"since": datetime(2026, 1, 1)}, "since"),
        ({"until": datetime(2026, 1, 1)}, "until"),
        ({"pipeline": ""}, "pipeline"),
    ],
)
def test_bad_filters_name_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        RunFilters(**kwargs)


def test_fingerprint_is_stable_and_tells_filters_apart() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert RunFilters(since=T0).fingerprint() == RunFilters(since=T0.astimezone(plus_two)).fingerprint()
    prints = {
        RunFilters().fingerprint(),
        RunFilters(pipeline="a").fingerprint(),
        RunFilters(pipeline="b").fingerprint(),
        RunFilters(status="failed").fingerprint(),
        RunFilters(since=T0).fingerprint(),
        RunFilters(until=T0).fingerprint(),
    }
    assert len(prints) == 6


# --- cursors -----------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_cursor_round_trip() -> None:
    values = (datetime(2026, 11, 2, 10, 0, 3, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))), "p", "r")
    assert decode_cursor(encode_cursor(values, "f", KEY), "f", KEY) == values
    with pytest.raises(ValueError):
        encode_cursor((datetime(2026, 1, 1), "p", "r"), "f", KEY)


def test_tampered_cursors_are_refused(conn: psycopg.Connection[Any]) -> None:
    insert(conn, make_runs(30, pipelines=2, seed=4))
    filters = RunFilters(pipeline="pipe_00")
    token = fetch_runs_page(conn, filters, 3, None, KEY)["next_cursor"]
    assert token is not None
    payload, signature = token.split(".")
    body = json.loads(_unb64(payload))
    body["k"][2] = "run_99999"
    edited = _b64(json.dumps(body, separators=(",", ":")).encode()) + "." + signature
    flipped = payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    cases = {
        "bad signature": [
            edited,
            flipped,
            encode_cursor((T0, "pipe_00", "x"), filters.fingerprint(), b"other"),
        ],
        "bad encoding": ["", "abc", "a.b.c", payload + ".!!", "é." + signature],
        "issued for other filters": [
            fetch_runs_page(conn, RunFilters(pipeline="pipe_01"), 3, None, KEY)["next_cursor"],
            fetch_runs_page(conn, RunFilters(), 3, None, KEY)["next_cursor"],
        ],
    }
    for why, tokens in cases.items():
        for bad in tokens:
            with pytest.raises(InvalidCursor, match=f"invalid cursor: {why}"):
                fetch_runs_page(conn, filters, 3, bad, KEY)
    with pytest.raises(InvalidCursor, match="bad signature"):
        fetch_runs_page(conn, filters, 3, token, b"another key")
    assert fetch_runs_page(conn, filters, 3, token, KEY)["runs"]


def test_signed_but_malformed_payloads_are_refused() -> None:
    import hashlib
    import hmac

    for body in ([1, 2], {"v": 1, "f": "f", "k": ["not a date", "p", "r"]}, {"v": 1, "f": "f", "k": [1, 2, 3]},
                 {"v": 1, "f": "f", "k": ["2026-01-01T00:00:00", "p", "r"]}, {"v": 2, "f": "f", "k": []}):  # fmt: skip
        payload = json.dumps(body).encode()
        token = _b64(payload) + "." + _b64(hmac.new(KEY, payload, hashlib.sha256).digest())
        with pytest.raises(InvalidCursor, match="bad payload"):
            decode_cursor(token, "f", KEY)


@pytest.mark.parametrize("page_size", [0, 101, -1, True])
def test_page_size_out_of_range(conn: psycopg.Connection[Any], page_size: int) -> None:
    with pytest.raises(ValueError, match="page_size"):
        fetch_runs_page(conn, RunFilters(), page_size, None, KEY)
    with pytest.raises(ValueError, match="page_size"):
        fetch_runs_page_offset(conn, RunFilters(), page_size, 1)


# --- rollup, stats and series ------------------------------------------------------------------------------

RAW_STATS = """
SELECT pipeline, count(*),
       count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'running'),
       count(*) FILTER (WHERE status = 'success'), count(*) FILTER (WHERE status = 'failed'),
       avg(d) FILTER (WHERE fin), percentile_cont(0.95) WITHIN GROUP (ORDER BY d) FILTER (WHERE fin),
       coalesce(sum("rows"), 0)::bigint, coalesce(sum(bytes), 0)::bigint,
       sum("rows") FILTER (WHERE fin) / nullif(sum(d) FILTER (WHERE fin), 0), max(started_at)
FROM (SELECT *, extract(epoch FROM finished_at - started_at)::float8 AS d,
             status IN ('success', 'failed') AND finished_at IS NOT NULL AS fin
      FROM etl_audit.pipeline_runs
      WHERE started_at >= coalesce(%(lo)s::timestamptz, '-infinity') AND started_at < coalesce(%(hi)s::timestamptz, 'infinity')) r
GROUP BY GROUPING SETS ((pipeline), ())
"""


def raw_stats(
    conn: psycopg.Connection[Any], lo: datetime | None = None, hi: datetime | None = None
) -> dict[str | None, dict[str, Any]]:
    out = {}
    for row in conn.execute(RAW_STATS, {"lo": lo, "hi": hi}).fetchall():
        pipeline, runs, pending, running, success, failed, avg, p95, rows, bytes_, rps, last = row
        out[pipeline] = {
            "runs": runs,
            "by_status": {"pending": pending, "running": running, "success": success, "failed": failed},
            "avg_duration_s": avg, "p95_duration_s": p95, "rows": rows, "bytes": bytes_,
            "rows_per_second": rps, "last_started_at": last,
        }  # fmt: skip
    return out


def assert_close(actual: float | None, expected: float | None, rel: float, what: str) -> None:
    if expected is None:
        assert actual is None, what
    else:
        assert actual == pytest.approx(expected, rel=rel, abs=1e-9), what


def assert_stats_match(got: dict[str, Any], expected: dict[str | None, dict[str, Any]]) -> None:
    sides = [(None, got["overall"])] + [(p["pipeline"], p) for p in got["pipelines"]]
    assert [name for name, _ in sides] == [None, *sorted(k for k in expected if k is not None)]
    for name, stats in sides:
        want = expected[name]
        for key in ("runs", "by_status", "rows", "bytes"):
            assert stats[key] == want[key], (name, key)
        assert_close(stats["avg_duration_s"], want["avg_duration_s"], 1e-9, f"{name} avg")
        assert_close(stats["rows_per_second"], want["rows_per_second"], 1e-9, f"{name} rows/s")
        p95, want_p95 = stats["p95_duration_s"], want["p95_duration_s"]
        assert (p95 is None) == (want_p95 is None), name
        if want_p95 is not None:
            assert abs(p95 - want_p95) <= 0.10 * want_p95 + 1e-3, (name, p95, want_p95)
        if name is not None:
            assert stats["last_started_at"] == want["last_started_at"].astimezone(UTC).isoformat()


def rollup_rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT pipeline, day, status, duration_bucket, runs, round(duration_sum::numeric, 4), rows_sum, "
        "bytes_sum FROM etl_audit.pipeline_run_rollup ORDER BY 1, 2, 3, 4"
    ).fetchall()


def test_rollup_follows_inserts_updates_and_deletes(conn: psycopg.Connection[Any]) -> None:
    insert(conn, make_runs(600, pipelines=6, seed=5))
    assert_stats_match(fetch_stats(conn, None, None), raw_stats(conn))
    # The listener closes running runs; the writer adds task rows; maintenance deletes; a run moves month.
    conn.execute(
        "UPDATE etl_audit.pipeline_runs SET status = 'success', "
        "finished_at = started_at + (length(run_id) * 7 + right(run_id, 2)::int) * interval '1 second' "
        "WHERE status = 'running' AND run_id LIKE '%1'"
    )
    conn.execute(
        'UPDATE etl_audit.pipeline_runs SET "rows" = "rows" + 5, bytes = bytes + 50 WHERE run_id LIKE \'%7\''
    )
    conn.execute(
        "UPDATE etl_audit.pipeline_runs SET updated_at = now() WHERE run_id LIKE '%3'"
    )  # no-op for stats
    conn.execute("DELETE FROM etl_audit.pipeline_runs WHERE run_id LIKE '%2' OR pipeline = 'pipe_05'")
    moved = conn.execute(
        "UPDATE etl_audit.pipeline_runs SET started_at = started_at + interval '20 days', "
        "finished_at = finished_at + interval '20 days' "
        "WHERE run_id LIKE '%4' AND started_at < '2026-11-01' RETURNING 1"
    ).fetchall()
    assert moved
    expected = raw_stats(conn)
    assert "pipe_05" not in expected
    assert_stats_match(fetch_stats(conn, None, None), expected)
    kept = rollup_rows(conn)
    assert not any(row[4] == 0 for row in kept), "emptied rollup rows are deleted"
    conn.execute("SELECT etl_audit.rebuild_pipeline_run_rollup()")
    assert rollup_rows(conn) == kept
    assert_stats_match(fetch_stats(conn, None, None), expected)


def test_stats_ranges_are_whole_utc_days(conn: psycopg.Connection[Any]) -> None:
    insert(conn, make_runs(500, pipelines=3, seed=6))
    since = datetime(2026, 11, 3, 4, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))  # Nov 2, 23:00 UTC
    until = datetime(2026, 11, 9, 0, 0, 1, tzinfo=UTC)
    got = fetch_stats(conn, since, until)
    lo, hi = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC)
    assert (got["since"], got["until"]) == (lo.isoformat(), hi.isoformat())
    assert_stats_match(got, raw_stats(conn, lo, hi))
    midnight = fetch_stats(conn, None, datetime(2026, 11, 9, tzinfo=UTC))
    assert midnight["until"] == datetime(2026, 11, 9, tzinfo=UTC).isoformat()
    assert_stats_match(midnight, raw_stats(conn, None, datetime(2026, 11, 9, tzinfo=UTC)))
    assert datetime.fromisoformat(got["generated_at"]).utcoffset() == timedelta(0)
    empty = fetch_stats(conn, datetime(2030, 1, 1, tzinfo=UTC), None)
    assert empty["pipelines"] == [] and empty["overall"]["runs"] == 0
    assert empty["overall"]["p95_duration_s"] is None and empty["overall"]["avg_duration_s"] is None
    with pytest.raises(ValueError, match="since"):
        fetch_stats(conn, until, since)


def _percentile_cont(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def expected_series(
    runs: list[Run], lo: datetime, hi: datetime, width: timedelta, pipeline: str | None
) -> dict:
    """Points computed in Python from the inserted runs."""
    groups: dict[tuple[datetime, str], list[Run]] = {}
    for run in runs:
        if lo <= run[2] < hi and pipeline in (None, run[0]):
            ts = run[2].replace(minute=0, second=0, microsecond=0)
            if width == timedelta(days=1):
                ts = ts.replace(hour=0)
            groups.setdefault((ts, run[0]), []).append(run)
    points = {}
    for key, members in groups.items():
        done = [r for r in members if r[3] is not None and r[4] in ("success", "failed")]
        durations = [(r[3] - r[2]).total_seconds() for r in done]  # type: ignore[operator]
        points[key] = {
            "runs": len(members),
            "failed": sum(r[4] == "failed" for r in members),
            "rows": sum(r[5] for r in members),
            "avg_duration_s": sum(durations) / len(durations) if durations else None,
            "p95_duration_s": _percentile_cont(durations, 0.95) if durations else None,
            "rows_per_second": sum(r[5] for r in done) / sum(durations) if sum(durations) > 0 else None,
        }
    return points


@pytest.mark.parametrize(
    ("bucket", "pipeline"), [("day", None), ("day", "pipe_01"), ("hour", None), ("hour", "pipe_02")]
)
def test_series_match_the_runs(conn: psycopg.Connection[Any], bucket: str, pipeline: str | None) -> None:
    runs = make_runs(700, pipelines=3, seed=7, start=datetime(2026, 11, 1, tzinfo=UTC), days=10)
    insert(conn, runs)
    since = datetime(2026, 11, 3, 5, 17, tzinfo=UTC)
    until = datetime(2026, 11, 8, 20, 0, tzinfo=timezone(timedelta(hours=-3)))
    got = fetch_series(conn, pipeline, since, until, bucket)
    if bucket == "day":
        lo, hi, width = (
            datetime(2026, 11, 3, tzinfo=UTC),
            datetime(2026, 11, 9, tzinfo=UTC),
            timedelta(days=1),
        )
    else:
        lo, hi, width = since, until, timedelta(hours=1)
    assert (got["bucket"], got["since"], got["until"]) == (
        bucket,
        lo.isoformat(),
        hi.astimezone(UTC).isoformat(),
    )
    expected = expected_series(runs, lo, hi, width, pipeline)
    keys = [(datetime.fromisoformat(p["ts"]), p["pipeline"]) for p in got["points"]]
    assert keys == sorted(expected)
    p95_tolerance = 0.10 if bucket == "day" else 1e-9
    for point in got["points"]:
        want = expected[(datetime.fromisoformat(point["ts"]), point["pipeline"])]
        assert (point["runs"], point["failed"], point["rows"]) == (want["runs"], want["failed"], want["rows"])
        assert_close(point["avg_duration_s"], want["avg_duration_s"], 1e-9, "avg")
        assert_close(point["rows_per_second"], want["rows_per_second"], 1e-9, "rows/s")
        if want["p95_duration_s"] is None:
            assert point["p95_duration_s"] is None
        else:
            assert (
                abs(point["p95_duration_s"] - want["p95_duration_s"])
                <= p95_tolerance * want["p95_duration_s"] + 1e-3
            )


def test_series_parameters(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(ValueError, match="bucket"):
        fetch_series(conn, None, T0, T0 + timedelta(days=7, seconds=1), "hour")
    with pytest.raises(ValueError, match="bucket"):
        fetch_series(conn, None, T0, T0 + timedelta(days=1), "week")
    with pytest.raises(ValueError, match="since"):
        fetch_series(conn, None, T0, T0, "day")
    assert fetch_series(conn, None, T0, T0 + timedelta(days=7), "hour")["points"] == []


# --- constant query count ----------------------------------------------------------------------------------


class CountingCursor(psycopg.Cursor[Any]):
    executes = 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        CountingCursor.executes += 1
        return super().execute(*args, **kwargs)


def _count(call: Any) -> int:
    CountingCursor.executes = 0
    call()
    return CountingCursor.executes


def test_query_count_does_not_grow_with_page_size_or_pipelines(ledger: str) -> None:
    with psycopg.connect(ledger, autocommit=True, cursor_factory=CountingCursor) as conn:
        now = T0 + timedelta(days=20)
        calls = {
            "runs": lambda size: fetch_runs_page(conn, RunFilters(), size, None, KEY),
            "runs_cursor": lambda size: fetch_runs_page(
                conn, RunFilters(status="success"), size,
                fetch_runs_page(conn, RunFilters(status="success"), size, None, KEY)["next_cursor"], KEY,
            ),
            "stats": lambda size: fetch_stats(conn, None, None),
            "stats_range": lambda size: fetch_stats(conn, T0, now),
            "series_day": lambda size: fetch_series(conn, None, T0, now, "day"),
            "series_hour": lambda size: fetch_series(conn, None, now - timedelta(days=7), now, "hour"),
        }  # fmt: skip
        counts: dict[str, list[int]] = {name: [] for name in calls}
        insert(conn, make_runs(400, pipelines=2, seed=8))
        for pipelines in (2, 40):
            if pipelines == 40:
                insert(conn, make_runs(2000, pipelines=40, seed=9))
                assert conn.execute(
                    "SELECT count(DISTINCT pipeline) FROM etl_audit.pipeline_runs"
                ).fetchone() == (40,)
            for size in (5, 100):
                for name, call in calls.items():
                    counts[name].append(_count(lambda call=call, size=size: call(size)))
    assert counts["runs"] == [1, 1, 1, 1]
    assert counts["runs_cursor"] == [2, 2, 2, 2]  # the first page, then the one after its cursor
    for name in ("stats", "stats_range", "series_day", "series_hour"):
        assert counts[name] == [1, 1, 1, 1], name
