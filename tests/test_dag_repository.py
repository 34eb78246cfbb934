"""The DAG repository (dags/) parses cleanly, without touching a database at parse time."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from harness import REPO_ROOT

pytestmark = pytest.mark.airflow


def test_dags_import_without_errors_or_network(airflow_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"DAG parsing opened a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    assert {"demo_orders_transfer", "partition_maintenance"} <= set(bag.dag_ids)
    maintenance = bag.dags["partition_maintenance"]
    assert {t.queue for t in maintenance.tasks} == {"load"}
    assert len(maintenance.tasks) == 1 + 3 * 3
