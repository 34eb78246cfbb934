"""The ETL performance page in a real browser against the real api-server with the plugin loaded.

Seeds the run ledger (etl_audit.pipeline_runs in the warehouse database, kept summed by the rollup
trigger of 003_dashboard.sql) with three pipelines of 60 runs each, signs in through the simple auth
manager's login form (which sets the `_token` cookie the page's fetch and EventSource send), then checks
what a data engineer sees: the stats cards add up to the ledger, page 2 of the runs is other runs, both
charts are drawn, the failing and the slow pipeline are flagged, a click on a pipeline filters the runs,
the live indicator says live and a published run event shows up as a new row. Leaves a full-page
screenshot in the test's tmp dir and in benchmarks/results/dashboard-screenshot.png.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
import pytest
import redis
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from benchmarks.datagen import create_empty_like_orders
from etl_devstack.platform import Platform
from etl_platform.events import VERSION_KEY, publish_run_event, run_event
from tests.e2e.browser import chromium, console_log
from tests.e2e.helpers import AirflowApi, ensure_dag_ready, wait_run_finished, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO_ROOT / "benchmarks" / "results" / "dashboard-screenshot.png"
RUNS_PER_PIPELINE = 60
PAGE_SIZE = 50  # the page's default
STATS_RANGE = timedelta(days=7)  # the page's default range; the API rounds `since` down to UTC midnight
STAT_CARDS = ("runs", "success", "failed", "running", "rows")


@dataclass(frozen=True)
class Seed:
    fast: str  # one failed run, the newest run still running
    failing: str  # every sixth run failed
    slow: str  # ten times longer than the others

    @property
    def names(self) -> list[str]:
        return [self.fast, self.failing, self.slow]


def _warehouse(platform: Platform) -> str:
    state = platform.state()
    return state.pg_server().conninfo(state.databases["warehouse"])


def _redis(platform: Platform) -> redis.Redis:
    """The dashboard's Redis: [etl_platform] redis_conn_id is empty, so the Celery broker's."""
    return redis.Redis.from_url(platform.state().redis_url)


def _seed_rows(seed: Seed, now: datetime) -> list[tuple[Any, ...]]:
    rows = []
    for p, name in enumerate(seed.names):
        for i in range(RUNS_PER_PIPELINE):
            started = now - timedelta(minutes=70 * (i + 1) + 7 * p)
            seconds = {0: 30 + 3 * (i % 7), 1: 60 + (i % 5), 2: 600 + 10 * (i % 4)}[p]
            failed = (p == 0 and i == 5) or (p == 1 and i % 6 == 0)
            running = p == 0 and i == 0
            status = "running" if running else "failed" if failed else "success"
            n_rows = 0 if running or failed else 10_000 * (p + 1) + 37 * i
            error = (
                "psycopg.errors.QueryCanceled: canceling statement due to statement timeout "
                f"CONTEXT: COPY orders_clean, line {1000 + i}: " + "x" * 120
                if failed
                else None
            )
            rows.append(
                (
                    name,
                    f"seed__{name}__{i:03d}",
                    started,
                    None if running else started + timedelta(seconds=seconds),
                    status,
                    n_rows,
                    n_rows * 100,
                    error,
                )
            )
    return rows


@pytest.fixture
def seed(platform: Platform) -> Iterator[Seed]:
    """3 x 60 runs over the last three days; deleted afterwards (the trigger takes them out of the rollup)."""
    tag = secrets.token_hex(3)
    seed = Seed(f"dash_{tag}_fast", f"dash_{tag}_failing", f"dash_{tag}_slow")
    conninfo = _warehouse(platform)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO etl_audit.pipeline_runs "
            "(pipeline, run_id, started_at, finished_at, status, rows, bytes, error) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            _seed_rows(seed, datetime.now(UTC)),
        )
    client = _redis(platform)
    try:
        # Plain INSERTs do not move the dashboard's cache version; a finished-run event does.
        publish_run_event(client, run_event("dag_run", seed.fast, f"seed__{seed.fast}__001", "success"))
        yield seed
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("DELETE FROM etl_audit.pipeline_runs WHERE pipeline = ANY(%s)", (seed.names,))
        client.incr(VERSION_KEY)  # nobody reads the seeded figures from a cache afterwards
        client.close()


def _expected_stats(platform: Platform) -> dict[str, int]:
    """What the page's overview must show for its default range, straight from the ledger."""
    since_day = (datetime.now(UTC) - STATS_RANGE).date()
    since = datetime(since_day.year, since_day.month, since_day.day, tzinfo=UTC)
    with psycopg.connect(_warehouse(platform), autocommit=True) as conn:
        by_status = dict(
            conn.execute(
                "SELECT status, count(*) FROM etl_audit.pipeline_runs WHERE started_at >= %s GROUP BY status",
                (since,),
            ).fetchall()
        )
        row = conn.execute(
            "SELECT coalesce(sum(rows), 0) FROM etl_audit.pipeline_runs WHERE started_at >= %s", (since,)
        ).fetchone()
    assert row is not None
    return {
        "runs": sum(by_status.values()),
        "success": by_status.get("success", 0),
        "failed": by_status.get("failed", 0),
        "running": by_status.get("running", 0),
        "rows": int(row[0]),
    }


# ------------------------------------------------------------------------------------------ page reading
def _cards(driver: WebDriver) -> dict[str, int | None]:
    values = driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#stats [data-stat]')]"
        ".map(c => [c.dataset.stat, c.dataset.value]))"
    )
    return {k: int(float(values[k])) if values.get(k) else None for k in STAT_CARDS if k in values}


def _run_keys(driver: WebDriver) -> list[tuple[str, str]]:
    return [
        tuple(pair)
        for pair in driver.execute_script(
            "return [...document.querySelectorAll('#runs tbody tr[data-run-id]')]"
            ".map(tr => [tr.dataset.pipeline, tr.dataset.runId])"
        )
    ]


def _text(driver: WebDriver, css: str) -> str:
    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except WebDriverException:
        return ""


def _drawn_paths(driver: WebDriver, chart: str) -> int:
    return int(
        driver.execute_script(
            "return [...document.querySelectorAll(arguments[0] + ' svg path')]"
            ".filter(p => (p.getAttribute('d') || '').length > 10).length",
            chart,
        )
    )


def _click(driver: WebDriver, css: str) -> None:
    """Scroll the element to the middle first: the sticky top bar would take a click at the edge."""
    element = driver.find_element(By.CSS_SELECTOR, css)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def _explain(driver: WebDriver, platform: Platform) -> str:
    return (
        f"url: {driver.current_url}\n#error: {_text(driver, '#error')!r}\n"
        f"#live-status: {_text(driver, '#live-status')!r} #page-info: {_text(driver, '#page-info')!r}\n"
        f"cards: {_cards(driver)}\nconsole:\n{console_log(driver)}\n{platform.tails(['api-server'], 30)}"
    )


def _login(driver: WebDriver, platform: Platform, next_url: str) -> None:
    """The real sign-in: the simple auth manager's form, which sets the `_token` cookie and redirects."""
    user, password = platform.login()
    driver.get(f"{platform.api_url}/auth/login?next={quote(next_url, safe='')}")
    form = wait_until(
        lambda: driver.find_elements(By.CSS_SELECTOR, "input[name=username]"),
        timeout=60,
        what="the login form",
        explain=lambda: _explain(driver, platform),
    )
    form[0].send_keys(user)
    driver.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(
        lambda: driver.get_cookie("_token") and driver.current_url.startswith(next_url),
        timeout=60,
        interval=0.5,
        what=f"the login to set the _token cookie and go to {next_url}",
        explain=lambda: _explain(driver, platform),
    )


# ------------------------------------------------------------------------------------------ the test
def test_dashboard_page(platform: Platform, api: AirflowApi, seed: Seed, tmp_path: Path) -> None:
    page = f"{platform.api_url}/etl/"
    with chromium(log_path=tmp_path / "chromedriver.log") as driver:

        def why() -> str:
            return _explain(driver, platform)

        _login(driver, platform, page)

        # Overview: the cards add up to the ledger in the default range (seed plus any earlier runs).
        def cards_match() -> bool:
            return _cards(driver) == _expected_stats(platform)

        wait_until(cards_match, timeout=60, what="#stats to show the ledger's totals", explain=why)
        expected = _expected_stats(platform)
        assert expected["runs"] >= 3 * RUNS_PER_PIPELINE
        assert not driver.find_element(By.ID, "error").is_displayed(), _text(driver, "#error")

        # Pipelines: the failing one and the slow one are flagged.
        wait_until(
            lambda: driver.find_elements(By.CSS_SELECTOR, f"#pipelines tr[data-pipeline='{seed.slow}']"),
            timeout=30,
            what="the seeded pipelines in #pipelines",
            explain=why,
        )
        flags = driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('#pipelines tbody tr[data-pipeline]')]"
            ".map(tr => [tr.dataset.pipeline, tr.className]))"
        )
        assert "failing" in flags[seed.failing], flags
        assert "failing" in flags[seed.fast], flags  # one failed run is a failure rate above 0
        assert "slow" in flags[seed.slow] and "failing" not in flags[seed.slow], flags
        assert "slow" not in flags[seed.fast], flags

        # Runs: page 1 is the API's page 1, Next shows the next 50 others, Previous goes back.
        wait_until(
            lambda: len(_run_keys(driver)) == PAGE_SIZE, timeout=30, what="a full page of runs", explain=why
        )
        first = _run_keys(driver)
        api_first = api.request("GET", "/etl/api/runs", params={"page_size": PAGE_SIZE})["runs"]
        assert first == [(r["pipeline"], r["run_id"]) for r in api_first]
        assert driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-run-id] .badge.failed")
        _click(driver, "#next-page")
        wait_until(
            lambda: "page 2" in _text(driver, "#page-info").lower() and len(_run_keys(driver)) == PAGE_SIZE,
            timeout=30,
            what="page 2 of the runs",
            explain=why,
        )
        second = _run_keys(driver)
        assert not set(first) & set(second), "page 2 repeats runs of page 1"
        _click(driver, "#prev-page")
        wait_until(
            lambda: "page 1" in _text(driver, "#page-info").lower() and _run_keys(driver) == first,
            timeout=30,
            what="Previous back to page 1",
            explain=why,
        )

        # Charts: both drawn from /etl/api/series.
        wait_until(
            lambda: _drawn_paths(driver, "#throughput-chart") and _drawn_paths(driver, "#duration-chart"),
            timeout=30,
            what="paths in both chart SVGs",
            explain=why,
        )

        # A click on a pipeline filters the runs and the cards.
        _click(driver, f"#pipelines tr[data-pipeline='{seed.failing}'] td")
        wait_until(
            lambda: (
                (keys := _run_keys(driver))
                and len(keys) == PAGE_SIZE
                and {p for p, _ in keys} == {seed.failing}
            ),
            timeout=30,
            what=f"the runs filtered to {seed.failing}",
            explain=why,
        )
        assert driver.find_element(By.ID, "filter-pipeline").get_attribute("value") == seed.failing
        wait_until(
            lambda: _cards(driver).get("runs") == RUNS_PER_PIPELINE and _cards(driver).get("failed") == 10,
            timeout=30,
            what="the cards of the selected pipeline",
            explain=why,
        )
        _click(driver, "#clear-pipeline")
        wait_until(lambda: _run_keys(driver) == first, timeout=30, what="all pipelines again", explain=why)

        # Live: the stream is connected, and a published run event becomes a row on page 1.
        wait_until(
            lambda: _text(driver, "#live-status") == "live",
            timeout=30,
            what="#live-status to say live",
            explain=why,
        )
        live_run = f"manual__{secrets.token_hex(4)}"
        started = datetime.now(UTC)
        with psycopg.connect(_warehouse(platform), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO etl_audit.pipeline_runs (pipeline, run_id, started_at, status) "
                "VALUES (%s, %s, %s, 'running')",
                (seed.fast, live_run, started),
            )
        client = _redis(platform)
        try:
            publish_run_event(client, run_event("dag_run", seed.fast, live_run, "running", at=started))
            row = f"#runs tbody tr[data-run-id='{live_run}']"
            wait_until(
                lambda: driver.find_elements(By.CSS_SELECTOR, row),
                timeout=15,
                interval=0.2,
                what="the running run to appear",
                explain=why,
            )
            with psycopg.connect(_warehouse(platform), autocommit=True) as conn:
                conn.execute(
                    "UPDATE etl_audit.pipeline_runs SET status = 'success', finished_at = %s, rows = 4242 "
                    "WHERE pipeline = %s AND run_id = %s",
                    (started + timedelta(seconds=3), seed.fast, live_run),
                )
            publish_run_event(client, run_event("dag_run", seed.fast, live_run, "success"))
        finally:
            client.close()
        wait_until(
            lambda: (
                driver.execute_script(
                    "const tr = document.querySelector(arguments[0]); return tr && tr.dataset.status", row
                )
                == "success"
            ),
            timeout=15,
            interval=0.2,
            what="the run's row to turn success",
            explain=why,
        )
        # The finished-run event moved the cache version; the page refreshes its stats on the event.
        wait_until(cards_match, timeout=70, what="#stats to count the live run", explain=why)

        # The whole page, for people.
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.set_window_size(1400, min(max(height + 40, 1000), 6000))
        shot = tmp_path / "dashboard-screenshot.png"
        assert driver.save_screenshot(str(shot)), "screenshot failed"
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
        driver.set_window_size(1400, 1000)

        # The Airflow UI lists the page in its navigation (external view, category browse).
        views = [
            view
            for plugin in api.request("GET", "/api/v2/plugins")["plugins"]
            for view in plugin.get("external_views", [])
        ]
        assert any(v["name"] == "ETL performance" and v["href"] == "/etl/" for v in views), views
        _check_ui_nav(driver, platform, why)
        ui_shot = tmp_path / "dashboard-in-airflow-ui.png"
        assert driver.save_screenshot(str(ui_shot)), "screenshot failed"
        shutil.copyfile(ui_shot, SCREENSHOT.with_name(ui_shot.name))


def _menu_item(driver: WebDriver, text: str) -> Any:
    """The open menu's item with this text, once shown (the menu animates in; React may re-render it)."""
    try:
        for item in driver.find_elements(By.CSS_SELECTOR, "[role=menuitem]"):
            if item.is_displayed() and item.text.strip() == text:
                return item
    except WebDriverException:
        pass
    return None


def _check_ui_nav(driver: WebDriver, platform: Platform, why: Any) -> None:
    """Open the React UI, open its Browse menu and follow "ETL performance" to the page in an iframe."""
    driver.get(f"{platform.api_url}/")
    browse = wait_until(
        lambda: driver.find_elements(By.CSS_SELECTOR, "button[aria-label=Browse]"),
        timeout=90,
        what="the Airflow UI's Browse menu",
        explain=why,
    )
    browse[0].click()
    entry = wait_until(
        lambda: _menu_item(driver, "ETL performance"),
        timeout=30,
        what='"ETL performance" in the Browse menu',
        explain=why,
    )
    entry.click()
    frame = wait_until(
        lambda: [
            f
            for f in driver.find_elements(By.TAG_NAME, "iframe")
            if "/etl/" in (f.get_attribute("src") or "")
        ],
        timeout=30,
        what="the dashboard's iframe in the Airflow UI",
        explain=why,
    )
    driver.switch_to.frame(frame[0])
    try:
        wait_until(
            lambda: (
                driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-run-id]")
                and _text(driver, "#live-status") == "live"
            ),
            timeout=30,
            what="the runs table and the live stream inside the iframe",
            explain=why,
        )
        assert not driver.find_element(By.ID, "error").is_displayed(), _text(driver, "#error")
    finally:
        driver.switch_to.default_content()


# ------------------------------------------------------------------------------------------ the Transfer view
TRANSFER_DAG, TRANSFER_TASK, TRANSFER_ROWS = "e2e_transfer_view", "copy_orders", 6_000


def _encode_component(value: str) -> str:
    """JavaScript's encodeURIComponent, which the page and Airflow's UI use."""
    return quote(value, safe="!~*'()")


def _attempts(driver: WebDriver) -> list[dict[str, Any]]:
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll('section.attempt')].map(s => ({"
            "task: s.dataset.taskId, status: s.dataset.status,"
            "facts: Object.fromEntries([...s.querySelectorAll('.card')].map("
            "c => [c.querySelector('.label').textContent, c.querySelector('.value').textContent])),"
            "charts: [...s.querySelectorAll('[data-chart]')].map(f => [f.dataset.chart,"
            "  [...f.querySelectorAll('circle')].length,"
            "  [...f.querySelectorAll('path')].filter(p => (p.getAttribute('d') || '').length > 10).length])}))"
        )
    )


def _transfer_shown(driver: WebDriver) -> list[dict[str, Any]] | None:
    attempts = _attempts(driver)
    return attempts if attempts and attempts[-1]["status"] == "success" else None


def test_transfer_view_of_a_real_run(platform: Platform, api: AirflowApi, tmp_path: Path) -> None:
    """A real transfer on the platform, then its Transfer view: on its own (attempt, figures, three charts,
    "Open in Airflow" pointing at the run), from the ETL performance page's run row, and as the tab the
    plugin adds to Airflow's DAG run and task instance pages (an iframe), whose link leaves the iframe."""
    with psycopg.connect(_warehouse(platform)) as conn:
        create_empty_like_orders(conn, "orders", schema="e2e_transfer_view")
    ensure_dag_ready(platform, api, TRANSFER_DAG)
    run = api.request(
        "POST", f"/api/v2/dags/{TRANSFER_DAG}/dagRuns", json={"logical_date": datetime.now(UTC).isoformat()}
    )
    run_id = str(run["dag_run_id"])
    finished = wait_run_finished(platform, api, TRANSFER_DAG, run_id)
    assert finished["state"] == "success", finished
    run_page = f"{platform.api_url}/dags/{TRANSFER_DAG}/runs/{_encode_component(run_id)}"
    view = f"{platform.api_url}/etl/transfer?" + urlencode({"dag_id": TRANSFER_DAG, "run_id": run_id})

    with chromium(log_path=tmp_path / "chromedriver.log") as driver:

        def why() -> str:
            return _explain(driver, platform) + f"\nattempts: {_attempts(driver)}"

        _login(driver, platform, f"{platform.api_url}/etl/")

        # The ETL performance page links the run to its Transfer view and to Airflow's run page.
        row = f"#runs tbody tr[data-run-id='{run_id}']"
        links = wait_until(
            lambda: driver.execute_script(
                "const tr = document.querySelector(arguments[0]);"
                "return tr && [tr.querySelector('a.transfer-link').href, tr.querySelector('a.airflow-link').href]",
                row,
            ),
            timeout=60,
            what=f"the run {run_id} and its links in #runs",
            explain=why,
        )
        assert links == [view, run_page], links

        # The view on its own: the attempt, its figures and its three charts.
        driver.get(view)
        [attempt] = wait_until(lambda: _transfer_shown(driver), timeout=60, what="the attempt", explain=why)
        assert attempt["task"] == TRANSFER_TASK, attempt
        recorded = api.request("GET", "/etl/api/transfer", params={"dag_id": TRANSFER_DAG, "run_id": run_id})
        [chunks] = [a["chunks"] for a in recorded["attempts"]]
        # parallelism=2: two streams of 3,000 keys, 2,000-row chunks -> 2 + 2 chunks
        assert len(chunks) == 4 and sum(c["rows"] for c in chunks) == TRANSFER_ROWS, chunks
        assert attempt["facts"]["Rows"] == f"{TRANSFER_ROWS:,}" and attempt["facts"]["Chunks"] == "4", attempt
        assert attempt["facts"]["Strategy"] == "swap" and attempt["facts"]["Resumed from"] == "start", attempt
        charts = {name: (dots, paths) for name, dots, paths in attempt["charts"]}
        assert charts == {"rows": (5, 1), "rate": (4, 1), "memory": (4, 1)}, charts  # rows: start + chunks
        open_airflow = driver.find_element(By.ID, "open-airflow")
        assert open_airflow.get_attribute("href") == run_page
        assert open_airflow.get_attribute("target") == "_top"
        assert not driver.find_element(By.ID, "error").is_displayed(), _text(driver, "#error")
        shot = tmp_path / "transfer-view.png"
        assert driver.save_screenshot(str(shot)), "screenshot failed"

        # The Transfer tab of the DAG run page: the view in an iframe; "Open in Airflow" leaves it.
        driver.get(f"{run_page}/plugin/etl-transfer-run")
        _in_transfer_frame(driver, why, f"dag_id={TRANSFER_DAG}&run_id={_encode_component(run_id)}")
        try:
            wait_until(
                lambda: _transfer_shown(driver), timeout=60, what="the attempt in the iframe", explain=why
            )
            _click(driver, "#open-airflow")
        finally:
            driver.switch_to.default_content()
        wait_until(
            lambda: driver.current_url.rstrip("/") == run_page,
            timeout=30,
            what="the UI to show the run's page after Open in Airflow",
            explain=why,
        )

        # The task instance tab: the task's attempts only (map_index of a task that is not mapped).
        driver.get(f"{run_page}/tasks/{TRANSFER_TASK}/plugin/etl-transfer-task")
        _in_transfer_frame(driver, why, f"task_id={TRANSFER_TASK}")
        try:
            [task_attempt] = wait_until(
                lambda: _transfer_shown(driver), timeout=60, what="the task's attempt", explain=why
            )
            assert task_attempt["task"] == TRANSFER_TASK
            assert driver.find_element(By.ID, "open-airflow").get_attribute("href") == (
                f"{run_page}/tasks/{TRANSFER_TASK}"
            )
        finally:
            driver.switch_to.default_content()


def _in_transfer_frame(driver: WebDriver, why: Any, expected: str) -> None:
    """Switch into the UI's iframe showing the Transfer view (its src holds `expected`)."""
    frame = wait_until(
        lambda: [
            f
            for f in driver.find_elements(By.TAG_NAME, "iframe")
            if "/etl/transfer?" in (f.get_attribute("src") or "")
            and expected in (f.get_attribute("src") or "")
        ],
        timeout=90,
        what=f"the Transfer iframe ({expected}) in the Airflow UI",
        explain=lambda: (
            why()
            + f"\niframes: {[f.get_attribute('src') for f in driver.find_elements(By.TAG_NAME, 'iframe')]}"
        ),
    )
    driver.switch_to.frame(frame[0])
