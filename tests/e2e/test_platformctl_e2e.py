"""`make up` / `make down` as commands: what `up` prints is true of the platform it started.

The session's platform is started by scripts/platformctl.py's cmd_up (conftest.py), the function
`make up` runs, and stopped by cmd_down in the fixture's teardown, which also checks that no process
with the platform's AIRFLOW_HOME is left and that the PostgreSQL and Redis it used still answer. A
second platform started here would cost about three more minutes on a two-core machine.
"""

from __future__ import annotations

import re

import httpx
import pytest

from etl_devstack.platform import Platform
from scripts import platformctl

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
