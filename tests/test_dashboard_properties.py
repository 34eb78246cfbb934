"""Property-based tests over the whole dashboard API: no request with a valid token gets a 5xx.

Requests come from the app's own OpenAPI schema (schemathesis: values that fit it, and values that break
it: wrong types, nested objects, out-of-range numbers, unknown keys), and from a strategy aimed at what the
issue found (instants at the ends of the representable range with any offset, control characters,
over-long text, forged and truncated cursors, repeated and unknown names, bytes that are not UTF-8). They
go over real HTTP to the app on uvicorn, with a real ledger (PostgreSQL) and Redis behind it.

Every answer must be below 500; a 400 must be the JSON body naming parameters the request really sent;
a request repeating a parameter or sending one the route does not take must be a 400 naming it. Hypothesis
runs derandomized with a fixed number of examples and no example database, so CI sees the same requests.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import httpx
import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode

from etl_platform.dashboard.app import create_app
from harness import RedisDb
from test_dashboard_api import Tokens, insert_runs, make_runs, serve, settings_for

from test_dashboard_api import ledger, tokens  # isort: skip

__all__ = ["ledger", "tokens"]  # the fixtures, shared with tests/test_dashboard_api.py

ROUTE_PARAMS = {
    "/api/runs": ("pipeline", "status", "since", "until", "page_size", "cursor"),
    "/api/stats": ("since", "until"),
    "/api/series": ("pipeline", "since", "until", "bucket"),
    "/api/stream": ("pipeline",),
    "/api/transfer": ("dag_id", "run_id", "task_id", "map_index"),
    "/metrics": (),
}
REQUIRED_PARAMS = {"/api/transfer": {"dag_id", "run_id"}}  # a 400 may name these when they are missing
LENIENT_ROUTES = ("/", "/transfer", "/static/{path}")  # the pages and their files ignore query strings
EXAMPLES = {"schema_positive": 120, "schema_negative": 100, "targeted": 250}
MAX_QUERY = 8192  # what common proxies let through in a request line; longer ones test nothing new


def _property_settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


# ------------------------------------------------------------------------------------------ the server
class Api:
    """The app on uvicorn with a seeded ledger, and an HTTP client carrying a valid token."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.client = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(30)
        )
        self.cursor = ""
        self.statuses: Counter[int] = Counter()

    def get(self, path: str, query: str) -> httpx.Response:
        """GET path?query; an event stream is closed once its status is known (it never ends)."""
        url = f"{self.base}{path}" + (f"?{query}" if query else "")
        with self.client.stream("GET", url) as resp:
            if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                resp.read()
        self.statuses[resp.status_code] += 1
        return resp


@contextmanager
def running_api(tokens: Tokens, ledger: str, redis_db: RedisDb) -> Iterator[Api]:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
    insert_runs(ledger, make_runs(["etl_orders", "etl_customers"], 8, start))
    app = create_app(settings_for(ledger, redis_db.url, keepalive_s=0.2))
    with serve(app) as base:
        api = Api(base, tokens.admin)
        first = api.get("/api/runs", "page_size=2")
        assert first.status_code == 200, first.text
        api.cursor = first.json()["next_cursor"]
        try:
            yield api
        finally:
            api.client.close()


# ------------------------------------------------------------------------------------------ checks
def _text(value: Any) -> str:
    """A generated query value as the text a client would send (nested values as JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def _pairs(query: dict[str, Any] | None) -> list[tuple[str, str]]:
    pairs = []
    for name, value in (query or {}).items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((name, _text(item)))
    return pairs


def _encode(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def check_answer(
    api: Api, path: str, pairs: list[tuple[str, str]], raw_names: set[str] | None = None
) -> None:
    """The properties every request must have (see the module docstring)."""
    resp = api.get(path, _encode(pairs) if raw_names is None else pairs[0][1])
    sent = raw_names if raw_names is not None else {name for name, _ in pairs}
    assert resp.status_code < 500, (path, pairs, resp.status_code, resp.text[:500])
    if path not in ROUTE_PARAMS:  # the page and its files: found or not, whatever the query
        assert resp.status_code in (200, 404), (path, pairs, resp.status_code, resp.text[:500])
        return
    assert resp.status_code in (200, 400), (path, pairs, resp.status_code, resp.text[:500])
    counts = Counter(sent) if raw_names is not None else Counter(name for name, _ in pairs)
    wrong = {name for name in sent if name not in ROUTE_PARAMS[path] or counts[name] > 1}
    if resp.status_code == 400:
        body = resp.json()
        assert set(body) == {"detail", "errors"} and body["errors"], body
        named = {error["parameter"] for error in body["errors"]}
        shown = {name if len(name) <= 80 else name[:80] + "..." for name in sent}
        missing = REQUIRED_PARAMS.get(path, set()) - sent
        assert named and named <= shown | missing, (path, pairs, body)
    else:
        assert not wrong, f"{path} answered {resp.status_code} to unknown or repeated {wrong}: {pairs}"
        if not resp.headers["content-type"].startswith("text/event-stream") and path != "/metrics":
            assert isinstance(resp.json(), dict)


# ------------------------------------------------------------------------------------------ schemathesis
def _schema_cases(mode: GenerationMode) -> st.SearchStrategy[Any]:
    schema = schemathesis.openapi.from_dict(create_app().openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(op.path for op in operations) == sorted([*ROUTE_PARAMS, *LENIENT_ROUTES])
    return st.sampled_from(operations).flatmap(lambda op: op.as_strategy(generation_mode=mode))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_schema_generated_requests_never_get_a_5xx(
    tokens: Tokens, ledger: str, redis_db: RedisDb, mode: GenerationMode
) -> None:
    strategy = _schema_cases(mode)
    with running_api(tokens, ledger, redis_db) as api:

        @_property_settings(EXAMPLES[f"schema_{mode.value}"])
        @given(case=strategy)
        def every_route(case: Any) -> None:
            pairs = _pairs(case.query)
            assume(len(_encode(pairs)) <= MAX_QUERY)
            check_answer(api, case.formatted_path, pairs)

        every_route()
    print(f"{mode.value}: statuses {dict(api.statuses)}")
    # positive: the generator reached the routes' real work; negative: the refusals
    assert api.statuses[200 if mode is GenerationMode.POSITIVE else 400] > 10, api.statuses


# ------------------------------------------------------------------------------------------ targeted
_OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
_EDGE_INSTANTS = st.one_of(
    st.datetimes(datetime(1, 1, 1), datetime(1, 1, 3)),
    st.datetimes(datetime(1899, 12, 30), datetime(1900, 1, 2)),
    st.datetimes(datetime(9998, 12, 30), datetime(9999, 1, 2)),
    st.datetimes(datetime(9999, 12, 29), datetime(9999, 12, 31, 23, 59, 59, 999999)),
    st.datetimes(datetime(2026, 1, 1), datetime(2027, 1, 1)),
)
_INSTANTS = st.one_of(
    st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), _EDGE_INSTANTS, _OFFSETS),
    _EDGE_INSTANTS.map(lambda d: d.isoformat()),  # no offset: UTC
    _EDGE_INSTANTS.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S") + "Z"),
    st.sampled_from(["1e300", "-1", "0", "99999999999999999999", "294277-01-01", "+10000-01-01", "NaN"]),
)
_CONTROL = st.sampled_from([chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]])
_TEXT = st.one_of(
    st.text(max_size=20),
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=5), _CONTROL, st.text(max_size=5)),
    st.integers(240, 300).map(lambda n: "p" * n),
    st.sampled_from(["etl_orders", "etl_customers", "*", "etl_*", "?", "[a]", "%", "\\", "'", ""]),
)


@st.composite
def _cursors(draw: st.DrawFn, real: str) -> str:
    """The real cursor, truncated, extended, with one character replaced, or bits of its payload."""
    kind = draw(st.sampled_from(["real", "cut", "grow", "flip", "payload", "text"]))
    if kind == "real":
        return real
    if kind == "cut":
        return real[: draw(st.integers(0, len(real) - 1))]
    if kind == "grow":
        return real + draw(st.text(alphabet=string.ascii_letters + "._-=\x00", min_size=1, max_size=8))
    if kind == "flip":
        at = draw(st.integers(0, len(real) - 1))
        return real[:at] + draw(st.sampled_from("A_-.=\x00\u00e9")) + real[at + 1 :]
    if kind == "payload":
        return real.split(".")[0]
    return draw(_TEXT)


def _value(name: str, real_cursor: str) -> st.SearchStrategy[str]:
    return {
        "since": _INSTANTS,
        "until": _INSTANTS,
        "pipeline": _TEXT,
        "status": st.one_of(st.sampled_from(["pending", "running", "success", "failed", "SUCCESS"]), _TEXT),
        "bucket": st.one_of(st.sampled_from(["hour", "day", "week", "Hour"]), _TEXT),
        "page_size": st.one_of(st.integers(-5, 120).map(str), st.sampled_from(["1e2", "5.0", " 5", "0x10"])),
        "cursor": _cursors(real_cursor),
    }.get(name, _TEXT)


@st.composite
def _requests(draw: st.DrawFn, real_cursor: str) -> tuple[str, list[tuple[str, str]]]:
    path = draw(st.sampled_from(sorted(ROUTE_PARAMS)))
    names = draw(st.lists(st.sampled_from(ROUTE_PARAMS[path]), max_size=4)) if ROUTE_PARAMS[path] else []
    if draw(st.integers(0, 9)) == 0:  # now and then a name the route does not take
        names.append(draw(st.sampled_from(["pipline", "sinc", "x", "", "page", "pipeline\x00", "a" * 300])))
    pairs = [(name, draw(_value(name, real_cursor))) for name in names]
    return path, draw(st.permutations(pairs))


def test_targeted_requests_never_get_a_5xx(tokens: Tokens, ledger: str, redis_db: RedisDb) -> None:
    with running_api(tokens, ledger, redis_db) as api:

        @_property_settings(EXAMPLES["targeted"])
        @given(request=_requests(api.cursor))
        def every_route(request: tuple[str, list[tuple[str, str]]]) -> None:
            path, pairs = request
            check_answer(api, path, pairs)

        every_route()

        @_property_settings(40)
        @given(
            path=st.sampled_from(sorted(ROUTE_PARAMS)),
            name=st.binary(max_size=6),
            value=st.binary(max_size=12),
        )
        def undecodable(path: str, name: bytes, value: bytes) -> None:
            """Bytes that are not UTF-8, percent-encoded: decoded with U+FFFD, never a 500."""
            query = f"{quote(name, safe='')}={quote(value, safe='')}"
            check_answer(api, path, [("", query)], raw_names={name.decode("utf-8", "replace")})

        undecodable()
    print(f"targeted: statuses {dict(api.statuses)}")
    assert api.statuses[200] > 20 and api.statuses[400] > 20, api.statuses
