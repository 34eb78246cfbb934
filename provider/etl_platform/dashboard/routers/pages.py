"""The page (/) and the files under static/ it loads (its stylesheet and ES modules)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter()


@router.get("/")
def index() -> FileResponse:
    return static_file("index.html")


@router.get("/static/{path:path}")
def static(path: str) -> FileResponse:
    return static_file(path)


def static_file(path: str) -> FileResponse:
    """A file under static/ (never outside it: the resolved path must stay in the folder)."""
    root = STATIC_DIR.resolve()
    try:
        target = (root / path).resolve()
        found = target.is_relative_to(root) and target.is_file()
    except (ValueError, OSError):  # a NUL byte, a name too long: not a file of ours either
        found = False
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    return FileResponse(target, headers={"Cache-Control": "no-cache"})
