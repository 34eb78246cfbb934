"""`make demo` is the README's main job: run it end to end (small), and refuse a server that is not there."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from harness import REPO_ROOT

DEMO = REPO_ROOT / "scripts" / "demo.py"


def _demo(**env: str) -> subprocess.CompletedProcess[str]:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_DEMO_")}
    run_env.update(PYTHONPATH=str(REPO_ROOT), **env)
    return subprocess.run(
        [sys.executable, str(DEMO)], env=run_env, capture_output=True, text=True, timeout=600, check=False
    )


def test_demo_loads_every_generated_order_and_prints_its_summary() -> None:
    done = _demo(ETL_DEMO_ROWS="30000")  # no URL: its own embedded PostgreSQL
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "[demo] using embedded PostgreSQL" in out
    assert re.search(r"rows loaded\s+30,000\s+warehouse holds 30,000 \(OK\)", out), out[-2000:]
    assert re.search(r"ledger row\s+status success, 30,000 rows", out), out[-2000:]
    assert re.search(r"monthly partitions\s+\d+", out)


def test_demo_refuses_a_named_server_that_does_not_answer_without_showing_its_password() -> None:
    done = _demo(ETL_DEMO_POSTGRES_URL="postgresql://etl:s3cret-pw@127.0.0.1:1/nowhere")
    out = done.stdout + done.stderr
    assert done.returncode == 2, out[-2000:]
    assert "ETL_DEMO_POSTGRES_URL=postgresql://etl:***@127.0.0.1:1/nowhere does not answer" in out
    assert "s3cret-pw" not in out
