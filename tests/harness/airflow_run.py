"""Run DAGs through `dag.test()` and read their results back from the metadata DB (test side only).

airflow is imported inside the functions: importing this module must not import airflow (see airflow_env).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .airflow_env import TEST_DAGS_FOLDER

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

_migrated = False


def ensure_metadata_db() -> Path:
    """Create/upgrade the metadata DB once per process; returns AIRFLOW_HOME.

    In-process `upgradedb()` takes about 2 s on SQLite; `airflow db migrate` in a subprocess takes about
    8 s, mostly re-importing airflow, which the test process imports anyway.
    """
    global _migrated
    if not _migrated:
        from airflow.utils.db import upgradedb

        upgradedb()
        _migrated = True
    return Path(os.environ["AIRFLOW_HOME"])


@contextmanager
def connections_env(conn_env: Mapping[str, str] | None) -> Iterator[None]:
    """Set AIRFLOW_CONN_* env vars for the duration; keys are conn ids or full AIRFLOW_CONN_ names."""
    names = {
        key if key.startswith("AIRFLOW_CONN_") else f"AIRFLOW_CONN_{key.upper()}": value
        for key, value in (conn_env or {}).items()
    }
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def run_dag(
    dag_id: str,
    *,
    conf: dict[str, Any] | None = None,
    logical_date: datetime | None = None,
    conn_env: Mapping[str, str] | None = None,
    dags_folder: Path | None = None,
) -> DagRun:
    """Parse the test dags folder, run `dag_id` once with `dag.test()` and return the finished DagRun.

    `dags_folder` runs a DAG from another folder (the production dags/): its DAGs are serialized into
    the metadata DB first, as dag.test() only syncs the configured bundle.

    dag.test() runs every task in this process, retries included (UP_FOR_RETRY tasks run again once
    retry_delay has passed) and triggers inline. `logical_date=None` means now.
    """
    from airflow.dag_processing.dagbag import DagBag

    ensure_metadata_db()
    bag = DagBag(dag_folder=str(dags_folder or TEST_DAGS_FOLDER))
    assert not bag.import_errors, f"DAG import errors: {bag.import_errors}"
    assert dag_id in bag.dags, f"{dag_id!r} not in {sorted(bag.dags)}"
    if dags_folder is not None:
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import sync_bag_to_db

        DagBundlesManager().sync_bundles_to_db()
        sync_bag_to_db(bag, "dags-folder", None)
    kwargs: dict[str, Any] = {"run_conf": conf}
    if logical_date is not None:
        kwargs["logical_date"] = logical_date
    with connections_env(conn_env):
        return bag.dags[dag_id].test(**kwargs)


@dataclass(frozen=True)
class TaskOutcome:
    state: str | None
    try_number: int


def task_outcomes(dag_run: DagRun) -> dict[str, TaskOutcome]:
    """State and try_number of each task instance; mapped ones are keyed "task_id[map_index]"."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        )
        return {
            ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": TaskOutcome(
                str(ti.state) if ti.state else None, ti.try_number
            )
            for ti in tis
        }


def xcom_value(dag_run: DagRun, task_id: str, *, key: str = "return_value", map_index: int = -1) -> Any:
    """The XCom a task pushed in this run (its return value by default), decoded as the Task SDK does.

    Raises KeyError if the task pushed nothing under `key`.
    """
    from airflow.models.xcom import XComModel
    from airflow.sdk.serde import deserialize
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
                XComModel.map_index == map_index,
            )
        ).first()
        if row is None:
            raise KeyError(f"no XCom {key!r} from {task_id!r} in run {dag_run.run_id}")
        return deserialize(row.value)
