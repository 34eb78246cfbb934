"""What every API router declares alike: its documented error responses and the strict-query dependency."""

from __future__ import annotations

from typing import Any

from fastapi import Depends

from etl_platform.dashboard.params import ParameterErrorBody, reject_repeated

PARAMETER_ERROR: dict[int | str, dict[str, Any]] = {
    400: {"model": ParameterErrorBody, "description": "a query parameter is unknown, repeated or invalid"}
}
LEDGER_ERRORS: dict[int | str, dict[str, Any]] = {
    **PARAMETER_ERROR,
    503: {"description": "dashboard not configured, ledger or Redis unavailable"},
}
# API routes: after auth (the app's dependency), each parameter at most once; then the route's query model.
STRICT = [Depends(reject_repeated)]
