"""`make up` / `make down` as commands: what `up` prints is true of the platform it started.

The session's platform is started by scripts/platformctl.py's cmd_up (conftest.py), the function
`make up` runs, and stopped by cmd_down in the fixture's teardown, which also checks that no process
with the platform's AIRFLOW_HOME is left and that the PostgreSQL and Redis it used still answer. A
second platform started here would cost about three more minutes on a two-core machine. The last test
kills processes of the running platform and has `up` bring exactly those back (`make up` reconciles).
"""

from __future__ import annotations

import re
import signal
import time

import httpx
import pytest

from etl_devstack.platform import Platform
from scripts import platformctl
from tests.e2e.helpers import (
    GATE_DAG_ID,
    AirflowApi,
    alive_pids,
    ensure_dag_ready,
    gate_hold,
    task_instance,
    trigger_gate,
    wait_gate_deferred_in_triggerer,
    wait_run_finished,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _field(printed: str, label: str) -> str:
    match = re.search(rf"^  {re.escape(label)}:\s+(.+)$", printed, re.M)
    assert match, f"`up` printed no {label!r} line:\n{printed}"
    return match.group(1).strip()


def test_up_prints_a_working_ui_url_and_login(platform: Platform, up_output: str) -> None:
    assert "etl-platform is up" in up_output
    url = _field(up_output, "UI")
    assert url == f"http://localhost:{platform.settings.port}"
    page = httpx.get(url, follow_redirects=True, timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower(), (page.status_code, page.text[:300])

    user, password = _field(up_output, "login").split(" / ")
    assert (user, password) == platform.login()
    token = httpx.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=30)
    assert token.status_code in (200, 201) and token.json()["access_token"], token.text
    wrong = httpx.post(f"{url}/auth/token", json={"username": user, "password": password + "x"}, timeout=30)
    assert wrong.status_code == 401, wrong.text
    me = httpx.get(
        f"{url}/api/v2/dags", headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=30
    )
    assert me.status_code == 200, me.text

    workers = _field(up_output, "workers")
    for spec in platform.settings.workers:
        assert f"{spec.celery_hostname} -q {','.join(spec.queues)} -c {spec.concurrency}" in workers
    assert "PgBouncer" in up_output
    assert password not in up_output.replace(f"login:       {user} / {password}", ""), (
        "password printed twice"
    )


def test_up_again_changes_nothing_and_status_lists_every_process(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.name: p.pid for p in platform.status()}
    assert platformctl.cmd_up(platform) == 0
    printed = capsys.readouterr().out
    assert "is already up" in printed
    assert {p.name: p.pid for p in platform.status()} == before
    for name in platform.process_names():
        assert re.search(rf"^  {re.escape(name)}\s+pid {before[name]}\s+running", printed, re.M), printed


def test_up_restarts_exactly_the_dead_processes_and_a_deferred_run_completes(
    platform: Platform, api: AirflowApi, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scheduler, the triggerer and a worker are SIGKILLed (whole trees, like a crash) while a gate
    run is deferred in that triggerer: `status` says DEAD and exits 1; `up` (cmd_up, what `make up` runs)
    restarts exactly those three, waits until they are ready (fresh heartbeats, worker ping) and exits
    0; every other process keeps its pid; the new triggerer takes the trigger over and the run
    completes once the gate's reading recovers."""
    ensure_dag_ready(platform, api, GATE_DAG_ID)
    victims = ("scheduler", "triggerer", "worker-monitoring")
    with gate_hold(platform) as hold:
        run_id = trigger_gate(api, hold)
        deferred = wait_gate_deferred_in_triggerer(platform, api, run_id)
        before = {p.name: p.pid for p in platform.status()}
        assert all(p.alive for p in platform.status()), before
        killed = [pid for name in victims for pid in platform.kill(name, signal.SIGKILL)]
        wait_until(lambda: not alive_pids(killed), timeout=15, interval=0.2, what=f"{victims} to die")
        capsys.readouterr()

        assert platformctl.print_status(platform) == platformctl.STATUS_DEAD
        printed = capsys.readouterr().out
        for name in victims:
            assert re.search(rf"^  {re.escape(name)}\s+pid {before[name]}\s+DEAD", printed, re.M), printed

        started = time.monotonic()
        assert platformctl.cmd_up(platform, timeout=300) == 0
        printed = capsys.readouterr().out
        with capsys.disabled():
            print(f"\n`up` restarted {victims} in {time.monotonic() - started:.1f} s:\n{printed}")
        assert f"restarted {', '.join(victims)}" in printed, printed
        after = {p.name: p for p in platform.status()}
        assert all(p.alive for p in after.values()), after
        for name, pid in before.items():
            if name in victims:
                assert after[name].pid != pid, f"{name} was not restarted"
            else:
                assert after[name].pid == pid, f"{name} was restarted too ({pid} -> {after[name].pid})"
        assert platform.dead() == []
        assert platformctl.print_status(platform) == 0
        assert "worker-monitoring" in capsys.readouterr().out
        # The new triggerer takes the trigger over once the killed one's heartbeat is older than
        # [triggerer] triggerer_health_check_threshold (30 s): the same trigger, a live triggerer job.
        taken_over = wait_gate_deferred_in_triggerer(platform, api, run_id, other_than=deferred)
        assert taken_over["trigger"]["id"] == deferred["trigger"]["id"], (deferred, taken_over)
        assert taken_over["trigger"]["triggerer_id"] != deferred["trigger"]["triggerer_id"]
        released = time.monotonic()
    run = wait_run_finished(platform, api, GATE_DAG_ID, run_id)
    assert run["state"] == "success", run
    assert task_instance(api, GATE_DAG_ID, run_id, "gate")["try_number"] == 1
    with capsys.disabled():
        print(f"the deferred run finished {time.monotonic() - released:.1f} s after its queue was emptied")
