"""cProfile of a task's execute, logged as the top functions by cumulative time.

Switched on per task with the operator option `profile=True`, or for a whole deployment without editing
DAGs through the environment: `ETL_PROFILE=1` profiles every etl_platform task, and
`ETL_PROFILE=<glob>[,<glob>...]` only the tasks whose `task_id` or `dag_id.task_id` match a glob.
"""

from __future__ import annotations

import contextvars
import cProfile
import functools
import io
import os
import pstats
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase
from typing import Any

from etl_platform.transfer.progress import LoggerLike

ENV_SWITCH = "ETL_PROFILE"
TOP_FUNCTIONS = 20
_ALL = {"1", "true", "yes", "on", "all", "*"}
_NONE = {"", "0", "false", "no", "off"}
_active: contextvars.ContextVar[bool] = contextvars.ContextVar("etl_profile_active", default=False)


def profiling_requested(option: bool, dag_id: str | None, task_id: str) -> bool:
    """The operator option wins; otherwise the environment switch decides."""
    if option:
        return True
    switch = os.environ.get(ENV_SWITCH, "").strip()
    if switch.lower() in _NONE:
        return False
    if switch.lower() in _ALL:
        return True
    names = [task_id, f"{dag_id}.{task_id}"] if dag_id else [task_id]
    globs = [g.strip() for g in switch.split(",") if g.strip()]
    return any(fnmatchcase(name, glob) for glob in globs for name in names)


def top_functions(profile: cProfile.Profile, limit: int = TOP_FUNCTIONS) -> str:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).strip_dirs().sort_stats("cumulative").print_stats(limit)
    return out.getvalue()


@contextmanager
def profiled(log: LoggerLike, label: str, limit: int = TOP_FUNCTIONS) -> Iterator[cProfile.Profile]:
    """Profile the block; log the report also when it raises (a failing task is often the slow one)."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield profile
    finally:
        profile.disable()
        log.info(
            "cProfile of %s, top %d functions by cumulative time:\n%s",
            label,
            limit,
            top_functions(profile, limit),
        )


class ProfiledExecute:
    """Mixin for operators: adds the `profile` option and wraps the subclass's `execute`.

    Put it before BaseOperator in the bases. Only `execute` is profiled: a deferred sensor's wait happens
    in the triggerer, not in this process.
    """

    def __init__(self, *, profile: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.profile = profile

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        execute = cls.__dict__.get("execute")
        if execute is not None and not getattr(execute, "__etl_profiled__", False):
            cls.execute = _wrap(execute)  # type: ignore[attr-defined]


def _wrap(execute: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(execute)
    def execute_maybe_profiled(self: Any, context: Any) -> Any:
        dag_id = getattr(getattr(self, "dag", None), "dag_id", None) if self.has_dag() else None
        requested = profiling_requested(getattr(self, "profile", False), dag_id, self.task_id)
        if not requested or _active.get():  # an overriding execute calling super(): profile once
            return execute(self, context)
        label = f"{dag_id}.{self.task_id}" if dag_id else self.task_id
        token = _active.set(True)
        try:
            with profiled(self.log, label):
                return execute(self, context)
        finally:
            _active.reset(token)

    execute_maybe_profiled.__etl_profiled__ = True  # type: ignore[attr-defined]
    return execute_maybe_profiled
