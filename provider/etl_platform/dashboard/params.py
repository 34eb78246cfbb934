"""Typed query parameters of every dashboard API route, checked before anything uses them.

Each route reads its query string into one model below (FastAPI documents the fields, with their
constraints, in the app's OpenAPI schema). Anything a model refuses is the client's mistake and answers
400 with a JSON body naming the parameter (`parameter_errors`), never 422 and never a 500 from deeper down:

- an unknown parameter (`?pipline=x`) or one given twice (`?pipeline=a&pipeline=b`): each API route reads
  exactly its own fields, once (the page and its static files ignore query strings: browsers and the
  Airflow UI may add cache-busting ones);
- text with a control character: C0 (U+0000-U+001F, tab included: no dag id or cursor has one), DEL and C1
  (U+007F-U+009F); PostgreSQL text cannot hold NUL at all. Over-long values, by the limits below;
- instants that are not ISO 8601 or lie outside [TIME_MIN, TIME_MAX] once moved to UTC (an offset may push
  year 1 or 9999 out of what Python represents); inside it, the day/hour rounding and the default 14-day
  window stay representable in both Python and PostgreSQL timestamptz. `since` must precede `until`.
Cursors are shape-checked here; their signature is checked against the filters by the route (also 400).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from etl_platform.dashboard.aggregates import MAX_HOUR_SERIES
from etl_platform.dashboard.queries import MAX_PAGE_SIZE

ID_MAX_LENGTH = 250  # Airflow's ID_LEN: dag ids (the ledger's pipelines)
TIME_MAX_LENGTH = 64
# Enough for a cursor over Airflow-sized ids (250 characters each, even if every one is a JSON-escaped
# astral character: 12 bytes) after base64; tests/test_dashboard_api.py checks the worst case fits.
CURSOR_MAX_LENGTH = 12_000
TIME_MIN = datetime(1900, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(9999, 1, 1, tzinfo=UTC)
SERIES_DEFAULT_SPAN = timedelta(days=14)
DEFAULT_PAGE_SIZE = 50
MAX_NAME_IN_MESSAGE = 80

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
_CURSOR = re.compile(CURSOR_PATTERN)

RunStatus = Literal["pending", "running", "success", "failed"]
Bucket = Literal["hour", "day"]


# ------------------------------------------------------------------------------------------ field types
def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise PydanticCustomError(
            "control_character", "must not contain control characters (U+0000-U+001F, U+007F-U+009F)"
        )
    return value


def _cursor_shape(value: str) -> str:
    if not _CURSOR.fullmatch(value):
        raise PydanticCustomError("invalid_cursor", "invalid cursor: not one this API issued")
    return value


def parse_instant(value: object) -> datetime:
    """An ISO 8601 instant in UTC (no offset: UTC), inside [TIME_MIN, TIME_MAX]."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and len(value) <= TIME_MAX_LENGTH:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError(
                "datetime_format", "must be an ISO 8601 date-time such as 2026-11-28T00:00:00Z"
            ) from None
    else:
        raise PydanticCustomError(
            "datetime_format", f"must be an ISO 8601 date-time of at most {TIME_MAX_LENGTH} characters"
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed past Python's range by its offset
        utc = None
    if utc is None or not TIME_MIN <= utc <= TIME_MAX:
        raise PydanticCustomError(
            "datetime_range",
            "must lie between {low} and {high} (UTC)",
            {"low": TIME_MIN.isoformat(), "high": TIME_MAX.isoformat()},
        )
    return utc


_RANGE = f"between {TIME_MIN:%Y-%m-%dT%H:%M:%SZ} and {TIME_MAX:%Y-%m-%dT%H:%M:%SZ} once in UTC"
_TEXT_SCHEMA = {"pattern": NO_CONTROL_PATTERN}

Pipeline = Annotated[
    str,
    Field(min_length=1, max_length=ID_MAX_LENGTH, json_schema_extra=_TEXT_SCHEMA),
    AfterValidator(_no_control),
]
Instant = Annotated[datetime, BeforeValidator(parse_instant)]
PageSize = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]
Cursor = Annotated[
    str,
    Field(max_length=CURSOR_MAX_LENGTH, json_schema_extra={"pattern": CURSOR_PATTERN}),
    AfterValidator(_cursor_shape),
]
_PIPELINE = "dag id; no control characters (U+0000-U+001F, U+007F-U+009F)"
_SINCE = f"on started_at, inclusive; ISO 8601, no offset means UTC; {_RANGE}"
_UNTIL = f"on started_at, exclusive, later than since; ISO 8601, no offset means UTC; {_RANGE}"


def _range_error(parameter: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("parameter_range", message, {"parameter": parameter})


def _check_order(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise _range_error("until", "until must be later than since")


# ------------------------------------------------------------------------------------------ models
class _Query(BaseModel):
    """Unknown fields are refused (extra_forbidden); values never change after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RunsQuery(_Query):
    pipeline: Pipeline | None = Field(default=None, description=_PIPELINE)
    status: RunStatus | None = Field(default=None, description="run status")
    since: Instant | None = Field(default=None, description=_SINCE)
    until: Instant | None = Field(default=None, description=_UNTIL)
    page_size: PageSize = Field(default=DEFAULT_PAGE_SIZE, description="runs per page")
    cursor: Cursor | None = Field(
        default=None, description="next_cursor of the previous page, with the same filters; opaque, signed"
    )

    @model_validator(mode="after")
    def _ordered(self) -> RunsQuery:
        _check_order(self.since, self.until)
        return self


class StatsQuery(_Query):
    since: Instant | None = Field(default=None, description=_SINCE + "; rounded down to a UTC day")
    until: Instant | None = Field(default=None, description=_UNTIL + "; rounded up to a UTC day")

    @model_validator(mode="after")
    def _ordered(self) -> StatsQuery:
        _check_order(self.since, self.until)
        return self


class SeriesQuery(_Query):
    pipeline: Pipeline | None = Field(default=None, description=_PIPELINE)
    since: Instant | None = Field(default=None, description=_SINCE + "; default: 14 days before until")
    until: Instant | None = Field(default=None, description=_UNTIL + "; default: now")
    bucket: Bucket = Field(default="day", description="'hour' allows at most 7 days")
    _window: tuple[datetime, datetime] = PrivateAttr()

    @model_validator(mode="after")
    def _resolve_window(self) -> SeriesQuery:
        """The defaults filled in once, so the checks and the query see the same `now`."""
        _check_order(self.since, self.until)
        end = self.until or datetime.now(UTC)
        start = self.since or end - SERIES_DEFAULT_SPAN
        if start >= end:  # only a `since` in the future gets here
            raise _range_error("since", "since must be earlier than until (default: now)")
        if self.bucket == "hour" and end - start > MAX_HOUR_SERIES:
            raise _range_error("bucket", "bucket 'hour' allows at most 7 days between since and until")
        self._window = (start, end)
        return self

    @property
    def window(self) -> tuple[datetime, datetime]:
        """(since, until) with the defaults applied."""
        return self._window


class StreamQuery(_Query):
    pipeline: Pipeline | None = Field(default=None, description=_PIPELINE + "; default: every pipeline")


def _map_index(value: object) -> object:
    """The UI fills {MAP_INDEX} only for mapped tasks: anything not an integer means "not mapped" (-1)."""
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            return -1
    return value


MapIndex = Annotated[int, BeforeValidator(_map_index), Field(ge=-1, le=2_147_483_647)]


class TransferQuery(_Query):
    dag_id: Pipeline = Field(description=_PIPELINE)
    run_id: Pipeline = Field(description="run id; no control characters")
    task_id: Pipeline | None = Field(default=None, description="task id; default: every transfer task")
    map_index: MapIndex | None = Field(
        default=None,
        description="map index, -1 for a task that is not mapped; text that is not an integer (the UI's "
        "literal {MAP_INDEX}) means -1; default: every map index",
    )


class NoQuery(_Query):
    """Routes that take no parameters: any given is unknown."""


# ------------------------------------------------------------------------------------------ dependencies
def reject_repeated(request: Request) -> None:
    """Route dependency, solved after auth and before the route's model: each parameter at most once."""
    counts = Counter(name for name, _ in request.query_params.multi_items())
    repeated = sorted(name for name, n in counts.items() if n > 1)
    if repeated:
        raise RequestValidationError(
            [
                {"loc": ("query", name), "type": "repeated", "msg": "given more than once; give it once"}
                for name in repeated
            ]
        )


def invalid_parameter(parameter: str, message: str) -> RequestValidationError:
    """A check made after the model (the cursor's signature): the same 400 as the model's own."""
    return RequestValidationError([{"loc": ("query", parameter), "type": "value_error", "msg": message}])


# ------------------------------------------------------------------------------------------ 400 body
class ParameterError(BaseModel):
    parameter: str | None = Field(description="the query parameter at fault")
    message: str


class ParameterErrorBody(BaseModel):
    """What every refused parameter answers (400)."""

    detail: str = Field(description="every error as 'parameter: message', joined by '; '")
    errors: list[ParameterError]


def _parameter(error: dict[str, Any]) -> str | None:
    ctx = error.get("ctx") or {}
    if isinstance(ctx.get("parameter"), str):
        return str(ctx["parameter"])
    loc = [part for part in error.get("loc", ()) if part not in ("query", "path")]
    return str(loc[0]) if loc else None


def _route_parameters(request: Request) -> list[str]:
    """The query parameters the matched route takes: its model's fields (FastAPI keeps the model as the
    route's single query field)."""
    fields = getattr(getattr(request.scope.get("route"), "dependant", None), "query_params", [])
    model = fields[0].field_info.annotation if len(fields) == 1 else None
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return [field.alias for field in fields]


def _message(error: dict[str, Any], allowed: Sequence[str]) -> str:
    if error.get("type") == "extra_forbidden":
        takes = ", ".join(allowed) if allowed else "no parameters"
        return f"unknown parameter (this endpoint takes: {takes})"
    return str(error.get("msg", "invalid"))


def _shown(name: str | None) -> str:
    if name is None:
        return "request"
    return name if len(name) <= MAX_NAME_IN_MESSAGE else name[:MAX_NAME_IN_MESSAGE] + "..."


def without_422(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI schema without FastAPI's generated 422 responses: validation errors are 400 here."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    return schema


def parameter_errors(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's validation errors as a 400 naming each parameter (the input is never echoed)."""
    allowed = _route_parameters(request)
    errors = []
    for error in exc.errors():
        name = _parameter(error)
        errors.append(
            {"parameter": None if name is None else _shown(name), "message": _message(error, allowed)}
        )
    detail = "; ".join(f"{_shown(e['parameter'])}: {e['message']}" for e in errors) or "invalid request"
    return JSONResponse({"detail": detail, "errors": errors}, status_code=status.HTTP_400_BAD_REQUEST)
