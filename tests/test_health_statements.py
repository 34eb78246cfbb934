"""avg_response_time with pg_stat_statements: the mean over the interval since the previous reading.

Needs a PostgreSQL with shared_preload_libraries=pg_stat_statements: a private one is started from
the Debian binaries under /usr/lib/postgresql (about 2 s), run as the `postgres` system user when
this process is root. Skipped when those binaries are missing.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from etl_platform.health import probes

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))


@pytest.fixture(scope="module")
def statements_server() -> Iterator[str]:
    if not BIN or not glob.glob("/usr/lib/postgresql/*/lib/pg_stat_statements.so"):
        pytest.skip("no local PostgreSQL binaries with pg_stat_statements")
    bindir = Path(BIN[-1]).parent
    workdir = Path(tempfile.mkdtemp(prefix="etl-pgss-"))
    workdir.chmod(0o777)
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    data = workdir / "data"
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [
            *run_as,
            str(bindir / "postgres"),
            "-D", str(data),
            "-p", str(port),
            "-k", str(workdir),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "shared_preload_libraries=pg_stat_statements",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    conninfo = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                break
            except psycopg.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield conninfo
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_slow_workload_raises_the_interval_mean_and_it_falls_back_when_calm(statements_server: str) -> None:
    state = probes.ProbeState()

    def reading() -> tuple[float, str]:
        return asyncio.run(probes.avg_response_time(statements_server, 5, state))

    first = reading()
    assert first[1] == "probe query latency (first reading)"
    with psycopg.connect(statements_server, autocommit=True) as conn:
        for _ in range(5):
            conn.execute("SELECT pg_sleep(0.2)")
    busy, busy_detail = reading()
    assert busy_detail.startswith("pg_stat_statements mean over the last")
    # 1 s of sleeps over the five sleeps plus a handful of the probe's own quick statements
    assert 0.05 < busy < 0.25, busy
    calm, calm_detail = reading()
    assert calm_detail.startswith("pg_stat_statements mean over the last")
    assert calm < 0.01, calm  # no slow statement since the last reading...
    with psycopg.connect(statements_server) as conn:
        row = conn.execute(
            "SELECT sum(total_exec_time) / sum(calls) / 1000.0 FROM pg_stat_statements"
        ).fetchone()
    assert row is not None and float(row[0]) > 10 * calm  # ...though the lifetime mean still shows them
