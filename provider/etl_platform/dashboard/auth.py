"""Authentication and authorization of dashboard requests with Airflow's own auth manager.

Airflow mounts plugin apps without any auth, so every route depends on `require_dag_run_reader`:
the token (Authorization: Bearer, else the UI's `_token` cookie) must be valid for the configured auth
manager (401 otherwise, with WWW-Authenticate: Bearer), and its user must be allowed to read DAG runs
(403 otherwise). The dashboard shows every pipeline's runs, so it asks for DAG-run read access without
naming a DAG, which auth managers treat as access to DAG runs in general.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import HTTPException, Request, status

log = logging.getLogger(__name__)

COOKIE_NAME = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def request_token(request: Request) -> str | None:
    """The bearer token if the request carries one, else the `_token` cookie (as Airflow's get_user)."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.cookies.get(COOKIE_NAME) or None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers=_CHALLENGE)


async def require_dag_run_reader(request: Request) -> Any:
    """FastAPI dependency: the authenticated Airflow user allowed to read DAG runs."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from jwt import ExpiredSignatureError, InvalidTokenError

    token = request_token(request)
    if not token:
        raise _unauthorized("Not authenticated")
    manager = get_auth_manager()
    try:
        user = await manager.get_user_from_token(token)
    except ExpiredSignatureError:
        raise _unauthorized("Token expired") from None
    except InvalidTokenError:
        raise _unauthorized("Invalid token") from None
    if not manager.is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN, user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Forbidden: reading DAG runs is not allowed")
    request.state.etl_user = user
    return user
