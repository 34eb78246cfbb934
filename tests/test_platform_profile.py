"""`make up`'s profiles and `make status`, without starting the platform (tests/e2e starts the real one).

The small profile must serve every queue a DAG in dags/ routes to with its one worker, hand that worker
the right command, and trim the Airflow settings it says it trims; `status` must tell running from dead
processes by their recorded start time and exit non-zero on a dead one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from harness import REPO_ROOT, PgServer
from harness.local_platform import described_platform


def _dag_queues(folder: Path) -> set[str]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder))
    assert not bag.import_errors, bag.import_errors
    return {task.queue for dag in bag.dags.values() for task in dag.tasks}


def test_small_profile_is_one_worker_serving_every_queue_the_dags_use(
    airflow_home: Path, tmp_path: Path
) -> None:
    from etl_devstack.platform import DEFAULT_WORKERS, SMALL_PROFILE_ENV, PlatformSettings

    small = PlatformSettings.from_env({"ETL_PLATFORM_PROFILE": "small"})
    full = PlatformSettings.from_env({})
    assert (small.profile, full.profile) == ("small", "full")
    assert full.workers == DEFAULT_WORKERS
    (worker,) = small.workers
    full_queues = {q for w in full.workers for q in w.queues}
    assert (
        set(worker.queues)
        == full_queues
        == {
            "extract",
            "transform",
            "load",
            "notifications",
            "monitoring",
            "default",
        }
    )
    assert _dag_queues(REPO_ROOT / "dags") <= set(worker.queues)
    assert worker.concurrency < sum(w.concurrency for w in full.workers)
    assert worker.serve_logs  # the only worker: it serves the task logs

    platform = described_platform(tmp_path / "run")
    platform.settings = small
    assert platform.process_names() == ["api-server", "scheduler", "dag-processor", "triggerer", "worker-all"]
    cmd = platform.command("worker-all")
    assert cmd[1:3] == ["celery", "worker"]
    assert cmd[cmd.index("-q") + 1].split(",") == list(worker.queues)
    assert cmd[cmd.index("-c") + 1] == str(worker.concurrency)
    assert "--skip-serve-logs" not in cmd
    env = platform.process_env("worker-all")
    assert env["ETL_CELERY_MAX_MEMORY_PER_CHILD_KIB"] == str(worker.max_memory_per_child_kib)
    for key, value in SMALL_PROFILE_ENV.items():
        assert env[key] == value, key

    assert platform.command("triggerer")[1:] == ["triggerer", "--skip-serve-logs"]

    platform.settings = full
    assert platform.command("triggerer")[1:] == ["triggerer"]
    full_env = platform.process_env("scheduler")
    assert all(full_env.get(key) != value for key, value in SMALL_PROFILE_ENV.items())


def test_an_unknown_profile_names_the_known_ones() -> None:
    from etl_devstack.platform import PlatformSettings

    with pytest.raises(
        ValueError, match=r"ETL_PLATFORM_PROFILE must be one of \['full', 'small'\], got 'tiny'"
    ):
        PlatformSettings.from_env({"ETL_PLATFORM_PROFILE": "tiny"})
    with pytest.raises(ValueError, match="got 'laptop'"):
        PlatformSettings(profile="laptop")


def test_extra_dag_folders_become_bundles_airflow_reads(tmp_path: Path) -> None:
    """The e2e suite's DAG folder is a second LocalDagBundle; Airflow's bundle manager accepts the list."""
    from etl_devstack.platform import DAGS_FOLDER, PlatformSettings

    platform = described_platform(tmp_path / "run")
    extra = REPO_ROOT / "tests" / "dags" / "e2e"
    platform.settings = replace(
        PlatformSettings(), extra_dag_folders=(str(extra),), extra_env=(("AIRFLOW__X__Y", "z"),)
    )
    env = platform.env()
    assert env["AIRFLOW__X__Y"] == "z"
    code = (
        "from airflow.dag_processing.bundles.manager import DagBundlesManager\n"
        "m = DagBundlesManager()\n"
        "import json\n"
        "print(json.dumps({b.name: str(b.path) for b in m.get_all_dag_bundles()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    bundles = json.loads(out.strip().splitlines()[-1])
    assert bundles == {"dags-folder": str(DAGS_FOLDER), "extra-e2e": str(extra)}


def _sleeper(home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sleep", "300"], env={**os.environ, "AIRFLOW_HOME": str(home)}, start_new_session=True
    )


def test_status_tells_dead_from_running_and_exits_1(
    pg_server: PgServer, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two recorded processes: one runs, one was killed. `status` lists both (pid, state, uptime), says
    which is dead, exits 1; with the dead one's pid reused by another process it is still dead (the
    recorded start time differs); nothing recorded: exit 3."""
    import psutil

    from etl_devstack.platform import PlatformSettings, WorkerSpec
    from scripts import platformctl

    platform = described_platform(tmp_path / "run")
    state = json.loads(platform.state_file.read_text())
    state["postgres"] |= {"host": pg_server.host, "port": pg_server.port, "user": pg_server.user}
    state["redis_url"] = redis_url  # the harness's Redis, embedded where none answers
    state["databases"]["airflow"] = pg_server.admin_dbname
    workers = (WorkerSpec("a", ("default",), 1), WorkerSpec("b", ("load",), 1))
    platform.settings = replace(PlatformSettings(), workers=workers)
    state["settings"] = asdict(platform.settings)
    platform.state_file.write_text(json.dumps(state))
    assert platformctl.print_status(platform) == platformctl.STATUS_NOTHING_UP

    live, dead = _sleeper(platform.airflow_home), _sleeper(platform.airflow_home)
    try:
        records: dict[str, Any] = {}
        for name, proc in (("worker-a", live), ("worker-b", dead)):
            records[name] = {
                "pid": proc.pid,
                "pgid": proc.pid,
                "create_time": psutil.Process(proc.pid).create_time(),
                "cmd": ["sleep"],
                "log": str(tmp_path / f"{name}.log"),
            }
        platform.pids_file.write_text(json.dumps({"processes": records, "servers": {}}))
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        capsys.readouterr()
        assert platformctl.print_status(platform) == platformctl.STATUS_DEAD
        out = capsys.readouterr().out
        assert f"worker-a               pid {live.pid:<8} running" in out, out
        assert f"worker-b               pid {dead.pid:<8} DEAD" in out, out
        assert "never started" in out  # the core processes: recorded nowhere
        assert "dead: api-server, scheduler, dag-processor, triggerer, worker-b" in out, out
        assert "postgres               answers" in out and "redis" in out, out
        assert platform.dead() == ["api-server", "scheduler", "dag-processor", "triggerer", "worker-b"]

        # The live one's record with another start time: a reused pid is not our process.
        records["worker-a"]["create_time"] -= 100
        platform.pids_file.write_text(json.dumps({"processes": records, "servers": {}}))
        assert "worker-a" in platform.dead()
    finally:
        live.kill()
        live.wait()


def test_a_running_platform_keeps_the_settings_it_was_started_with(tmp_path: Path) -> None:
    """`make up` with ETL_PLATFORM_PROFILE=small on a platform started full restarts full processes."""
    from etl_devstack.platform import DEFAULT_WORKERS, PlatformSettings

    platform = described_platform(tmp_path / "run")
    state = json.loads(platform.state_file.read_text())
    started_with = replace(PlatformSettings(), port=18080, extra_env=(("A", "b"),))
    state["settings"] = json.loads(json.dumps(asdict(started_with)))  # as platform.json stores it
    platform.state_file.write_text(json.dumps(state))

    platform.settings = PlatformSettings.from_env({"ETL_PLATFORM_PROFILE": "small"})
    notes: list[str] = []
    platform.use_recorded_settings(notes.append)
    assert platform.settings == started_with
    assert platform.settings.workers == DEFAULT_WORKERS
    assert len(notes) == 1 and "profile" in notes[0] and "workers" in notes[0] and "port" in notes[0], notes
    assert "worker-all" not in platform.process_names()


def test_up_on_a_running_platform_names_a_process_that_cannot_restart(
    pg_server: PgServer, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every process runs but PgBouncer, whose port someone else took meanwhile: `up` (cmd_up) starts
    only PgBouncer, sees it exit, and fails with exit 1 naming it and showing its log's complaint; the
    running processes are left alone."""
    import socket

    import psutil

    from etl_devstack.platform import PGBOUNCER_PROCESS, PlatformSettings, WorkerSpec, pgbouncer_binary
    from scripts import platformctl

    if pgbouncer_binary() is None:
        pytest.fail("pgbouncer is not installed (`make system-deps` installs the Debian package)")
    platform = described_platform(tmp_path / "run", pgbouncer=True)
    state = json.loads(platform.state_file.read_text())
    state["postgres"] |= {"host": pg_server.host, "port": pg_server.port, "user": pg_server.user}
    state["redis_url"] = redis_url  # the harness's Redis, embedded where none answers
    state["databases"]["airflow"] = pg_server.admin_dbname
    platform.settings = replace(PlatformSettings(), workers=(WorkerSpec("a", ("default",), 1),))
    state["settings"] = asdict(platform.settings)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    state["ports"]["pgbouncer"] = taken.getsockname()[1]
    platform.state_file.write_text(json.dumps(state))

    running = {name: _sleeper(platform.airflow_home) for name in platform.process_names()[1:]}
    try:
        records = {
            name: {
                "pid": proc.pid,
                "pgid": proc.pid,
                "create_time": psutil.Process(proc.pid).create_time(),
                "cmd": ["sleep"],
                "log": str(platform.log_path(name)),
            }
            for name, proc in running.items()
        }
        platform.pids_file.write_text(json.dumps({"processes": records, "servers": {}}))
        assert platform.dead() == [PGBOUNCER_PROCESS]

        assert platformctl.cmd_up(platform, timeout=30) == 1
        out = capsys.readouterr()
        assert "pgbouncer is not running (never started): starting it" in out.out, out.out
        assert "[up] failed: pgbouncer exited after its restart" in out.err, out.err
        assert "Address already in use" in out.err, out.err  # the tail of pgbouncer's log
        assert all(proc.poll() is None for proc in running.values()), "a running process was touched"
        assert {p.name: p.pid for p in platform.status() if p.alive} == {n: p.pid for n, p in running.items()}
    finally:
        taken.close()
        for proc in running.values():
            proc.kill()
            proc.wait()
        platform.down(echo=lambda _msg: None)
