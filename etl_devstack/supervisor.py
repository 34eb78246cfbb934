"""The platform's processes as a supervisor sees them: start one in its own process group, record it in
pids.json, tell whether it runs, signal or stop its whole tree (also from another Python process)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from etl_devstack.runfiles import read_json, write_private
from etl_devstack.settings import REPO_ROOT, Echo, PlatformError


@dataclass
class ProcessStatus:
    name: str
    pid: int
    alive: bool
    log: str
    started_at: float | None = None  # the recorded start (epoch seconds): uptime while alive

    def uptime_s(self, now: float | None = None) -> float | None:
        if not self.alive or self.started_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.started_at)


def alive(pid: int, create_time: float | None = None) -> bool:
    """True if `pid` runs and is the process recorded (same start time), zombies counting as dead."""
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.05:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def _descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def _reap(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.poll()


def _proc_alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_pid(pid: int, sig: int, timeout: float) -> None:
    """Signal one process and wait for it; SIGKILL when it outlives `timeout`."""
    try:
        proc = psutil.Process(pid)
        proc.send_signal(sig)
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    except psutil.Error:
        pass


class Supervisor:
    """The processes recorded in one run folder's pids.json; `airflow_home` tells ours from others'."""

    def __init__(self, pids_file: Path, airflow_home: Path):
        self.pids_file = pids_file
        self.airflow_home = airflow_home
        self.children: dict[str, subprocess.Popen[bytes]] = {}  # started by this Python process

    def pids(self) -> dict[str, Any]:
        data = read_json(self.pids_file)
        data.setdefault("processes", {})
        data.setdefault("servers", {})
        return data

    def save_pids(self, data: dict[str, Any]) -> None:
        write_private(self.pids_file, json.dumps(data, indent=2) + "\n")

    def record_server(self, name: str, record: dict[str, Any]) -> None:
        data = self.pids()
        data["servers"][name] = record
        self.save_pids(data)

    def status(self) -> list[ProcessStatus]:
        """Each recorded process and whether it still runs (empty when nothing is up)."""
        _reap(self.children.values())
        return [
            ProcessStatus(
                name,
                rec["pid"],
                alive(rec["pid"], rec.get("create_time")),
                rec["log"],
                rec.get("create_time"),
            )
            for name, rec in self.pids()["processes"].items()
        ]

    def refuse_running(self, name: str) -> None:
        """PlatformError when the process recorded under `name` still runs (never two of one)."""
        record = self.pids()["processes"].get(name)
        if record and alive(record["pid"], record.get("create_time")):
            raise PlatformError(f"{name} already runs (pid {record['pid']})")

    def start(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> int:
        """Start (or restart, as a process supervisor would) one process in its own process group."""
        self.refuse_running(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session and process group: down() signals the group
            )
        self.children[name] = proc
        data = self.pids()
        data["processes"][name] = {
            "pid": proc.pid,
            "pgid": proc.pid,
            "create_time": psutil.Process(proc.pid).create_time(),
            "cmd": cmd,
            "log": str(log_path),
        }
        self.save_pids(data)
        return proc.pid

    def kill(self, name: str, sig: int = signal.SIGKILL) -> list[int]:
        """Signal one process's group and every descendant, like a crashed host or container would.

        Task runners fork into process groups of their own (the Task SDK supervisor does that), so
        the group alone would leave a task running on without its worker. Returns the pids signalled.
        """
        record = self.pids()["processes"][name]
        targets = self.tree(record)
        self.signal_group(record, targets, sig)
        for proc in targets:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        _reap(self.children.values())
        return sorted(p.pid for p in targets)

    def _ours(self, proc: psutil.Process) -> bool:
        """Started for this platform: every such process inherits its AIRFLOW_HOME."""
        with contextlib.suppress(psutil.Error):
            return proc.environ().get("AIRFLOW_HOME") == str(self.airflow_home)
        return False

    def tree(self, record: dict[str, Any]) -> list[psutil.Process]:
        """The live processes of a record: its group and all descendants (in any group).

        After a reboot the recorded group id may belong to someone else. A group id is never reused
        while any member of the group lives (the kernel keeps the number in use), so in this boot the
        group is the recorded one when its leader is the recorded process or gone; otherwise only
        members carrying this platform's AIRFLOW_HOME count (setproctitle, which Celery's pool
        children and the api-server use, can blank /proc/<pid>/environ: the leader test does not
        depend on it).
        """
        members = _group_members(record["pgid"])
        leader_gone = all(p.pid != record["pgid"] for p in members)
        this_boot = float(record.get("create_time") or 0) >= psutil.boot_time()
        recorded = this_boot and (leader_gone or alive(record["pid"], record.get("create_time")))
        found = {p.pid: p for p in members if recorded or self._ours(p)}
        if alive(record["pid"], record.get("create_time")):
            found.update((p.pid, p) for p in [psutil.Process(record["pid"]), *_descendants(record["pid"])])
        for proc in list(found.values()):
            found.update((p.pid, p) for p in _descendants(proc.pid))
        return list(found.values())

    def signal_group(self, record: dict[str, Any], procs: list[psutil.Process], sig: int) -> None:
        """killpg when the recorded leader is still the recorded process, else each member found."""
        if alive(record["pid"], record.get("create_time")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record["pgid"], sig)
            return
        for proc in procs:
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) == record["pgid"]:
                    proc.send_signal(sig)

    def stop_leftovers(self, record: dict[str, Any], timeout: float = 10) -> int:
        """SIGTERM what is left of a dead process (its group's members, their children), SIGKILL after
        `timeout`. Task runners of a dead worker run in groups of their own and are left to finish."""
        procs = self.tree(record)
        if not procs:
            return 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _gone, left = psutil.wait_procs(procs, timeout=timeout)
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(left, timeout=5)
        return len(procs)

    def stop_processes(self, records: dict[str, Any], timeout: float, echo: Echo) -> list[str]:
        """SIGTERM each record's group, SIGKILL whatever of their trees outlives `timeout`."""
        tracked: dict[int, psutil.Process] = {}
        stopped = []
        for name, record in records.items():
            procs = self.tree(record)
            if not procs:
                continue
            stopped.append(name)
            tracked.update((p.pid, p) for p in procs)
            echo(f"stopping {name} (pid {record['pid']})")
            self.signal_group(record, procs, signal.SIGTERM)  # task runners: their supervisor stops them
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(self.children.values())
            for record in records.values():  # task runners started while shutting down
                tracked.update((p.pid, p) for p in self.tree(record))
            if not [p for p in tracked.values() if _proc_alive(p)]:
                break
            time.sleep(0.3)
        self._kill_remaining(records, tracked, timeout, echo)
        return stopped

    def _kill_remaining(
        self, records: dict[str, Any], tracked: dict[int, psutil.Process], timeout: float, echo: Echo
    ) -> None:
        for record in records.values():
            procs = self.tree(record)
            self.signal_group(record, procs, signal.SIGKILL)
            tracked.update((p.pid, p) for p in procs)
        leftovers = [p for p in tracked.values() if _proc_alive(p)]
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=10)
        _reap(self.children.values())
        if leftovers:
            echo(f"killed {len(leftovers)} process(es) that outlived SIGTERM by {timeout:g} s")

    def stop_servers(self, servers: dict[str, Any], timeout: float, echo: Echo) -> list[str]:
        """Stop the embedded servers `up` started (after the processes: they may still write on their way out)."""
        stopped = []
        for name in ("redis", "postgres"):
            record = servers.get(name)
            if record and alive(record["pid"], record.get("create_time")):
                echo(f"stopping the embedded {name} (pid {record['pid']})")
                # postgres: SIGINT is a fast shutdown; redis: SIGTERM saves nothing here and exits.
                stop_pid(record["pid"], signal.SIGINT if name == "postgres" else signal.SIGTERM, timeout)
                stopped.append(name)
        return stopped
