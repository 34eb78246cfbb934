"""A subprocess (`airflow dags test`, or any command) with StatsD pointed at a real UDP socket.

A subprocess because Airflow's Stats client reads its settings once per process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StatsdRun:
    returncode: int
    output: str  # stdout + stderr
    lines: list[str]  # every StatsD line received, e.g. "airflow.etl.transfer.rows,dag_id=...:1200|c"


def dags_test_with_statsd(dag_id: str, *, conf: dict[str, Any] | None = None, **options: Any) -> StatsdRun:
    """`airflow dags test <dag_id>` under `run_with_statsd` (same options)."""
    command = [str(Path(sys.executable).parent / "airflow"), "dags", "test", dag_id]
    if conf is not None:
        command += ["-c", json.dumps(conf)]
    return run_with_statsd(command, **options)


def run_with_statsd(
    command: list[str], *, env: dict[str, str] | None = None, influx_tags: bool = True, timeout: float = 300
) -> StatsdRun:
    """Run `command`; with `influx_tags`, tags ride along as `,key=value` after the metric name."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(0.5)
        run_env = {
            **os.environ,
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(udp.getsockname()[1]),
            "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": str(influx_tags),
            **(env or {}),
        }
        done = subprocess.run(
            command, env=run_env, capture_output=True, text=True, timeout=timeout, check=False
        )
        packets = []
        while True:
            try:
                packets.append(udp.recv(65536).decode(errors="replace"))
            except TimeoutError:
                break
    lines = [line for packet in packets for line in packet.splitlines() if line]
    return StatsdRun(done.returncode, done.stdout + done.stderr, lines)
