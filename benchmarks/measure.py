"""Runs one benchmark method in a fresh child process and measures it.

Peak RSS and CPU come from os.wait4 on the child (ru_maxrss is per process, so every method gets
its own clean number). Time is measured twice: by the child around the work itself (what the
results report) and by the parent from spawn to exit (interpreter start and imports included). The
parent waits on a pidfd, so it sees the exit within a millisecond, not at its next poll; the child's
own marks (interpreter up, imports done, work started/ended, result written) split spawn-to-exit
into phases.
A capped child is killed, with its whole process group, once its work has run for `cap_seconds`.
A StatsD sink on a local UDP port receives the metrics children send.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.1
WATCH_SECONDS = 1.0
KILL_GRACE_SECONDS = 5.0


@dataclass
class ChildOutcome:
    """What one child run produced, as seen from the parent."""

    method: str
    returncode: int  # negative: killed by that signal
    capped: bool
    timed_out: bool
    spawn_to_exit_seconds: float
    work_seconds: float | None  # the child's own timing, or the time until the cap hit
    peak_rss_mb: float  # ru_maxrss of the child (and of any children it waited for)
    user_cpu_seconds: float
    system_cpu_seconds: float
    result: dict[str, Any] = field(default_factory=dict)
    log_path: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # spawn-to-exit split by the child's marks

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and "error" not in self.result


BYTECODE_DIR = REPO_ROOT / "benchmarks" / "results" / ".pycache"


def child_env(extra: dict[str, str], *, bytecode_cache: bool = True) -> dict[str, str]:
    """The parent's environment plus `extra`, with the repo root importable.

    With `bytecode_cache`, children keep compiled modules under results/.pycache, as a deployed
    worker keeps them (pip writes them at install, Python on first import). An environment with
    PYTHONDONTWRITEBYTECODE would otherwise recompile Airflow from source in every child: about
    1.7 s of its start-up that no real task pays.
    """
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(BYTECODE_DIR)
    env.update(extra)
    return env


def warm_bytecode(env: dict[str, str], modules: tuple[str, ...]) -> float:
    """Imports `modules` once in a throw-away child, so the first measured child does not pay for
    compiling them into the cache; returns the seconds it took."""
    started = time.monotonic()
    code = "; ".join(f"import {m}" for m in modules)
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def run_method(
    method: str,
    args: dict[str, Any],
    *,
    env: dict[str, str],
    log_path: Path,
    cap_seconds: float | None,
    timed_out_after: float,
    watch: Callable[[], None] | None = None,
    module: str = "benchmarks.methods",
) -> ChildOutcome:
    """Runs `python -m benchmarks.methods <method> <json-args>` and waits for it, enforcing the limits.

    `cap_seconds` counts from when the child signals that its work started (after its imports);
    `timed_out_after` is a safety limit from spawn, for methods that have no cap. `watch` is called
    about once a second while the child runs (the runner uses it to spot foreign database sessions).
    """
    with tempfile.TemporaryDirectory(prefix="etl-bench-") as tmp:
        result_path = Path(tmp) / "result.json"
        started_path = Path(tmp) / "started"
        child_args = {**args, "result_path": str(result_path), "started_path": str(started_path)}
        cmd = [sys.executable, "-m", module, method, json.dumps(child_args)]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            spawned_wall = time.time()
            spawned = time.monotonic()
            proc = subprocess.Popen(
                cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            status, usage, capped, timed_out, work_cut, exited = _wait(
                proc, started_path, cap_seconds, timed_out_after, spawned, watch
            )
        result: dict[str, Any] = {}
        if result_path.exists():
            with contextlib.suppress(ValueError):
                result = json.loads(result_path.read_text())
    returncode = os.waitstatus_to_exitcode(status)
    proc.returncode = returncode  # reaped with wait4 above; keep Popen from waiting again
    work = result.get("seconds")
    return ChildOutcome(
        method=method,
        returncode=returncode,
        capped=capped,
        timed_out=timed_out,
        spawn_to_exit_seconds=round(exited - spawned, 3),
        work_seconds=round(work_cut, 3) if work_cut is not None else work,
        peak_rss_mb=round(usage.ru_maxrss / 1024.0, 1),  # Linux reports KiB
        user_cpu_seconds=round(usage.ru_utime, 2),
        system_cpu_seconds=round(usage.ru_stime, 2),
        result=result,
        log_path=str(log_path),
        phases=phases(result.get("marks"), spawned_wall, spawned_wall + (exited - spawned)),
    )


PHASES = (
    ("startup", "spawned", "main"),  # interpreter start, `import benchmarks.methods`
    ("imports", "main", "work_started"),  # the method's imports and set-up (the operator's included)
    ("work", "work_started", "work_ended"),  # what the method times
    ("result", "work_ended", "result_written"),  # hashing the imported provider code, the JSON
    ("exit", "result_written", "exited"),  # atexit handlers and the exit, until the parent reaps it
)


def phases(marks: dict[str, float] | None, spawned: float, exited: float) -> dict[str, float]:
    """Spawn-to-exit split at the child's wall-clock marks (empty when the child left none)."""
    if not marks:
        return {}
    points = {**marks, "spawned": spawned, "exited": exited}
    return {
        name: round(points[b] - points[a], 3)
        for name, a, b in PHASES
        if points.get(a) is not None and points.get(b) is not None
    }


def _wait(
    proc: subprocess.Popen[bytes],
    started_path: Path,
    cap_seconds: float | None,
    timed_out_after: float,
    spawned: float,
    watch: Callable[[], None] | None,
) -> tuple[int, Any, bool, bool, float | None, float]:
    """Waits for the child (a pidfd wakes us when it exits; wait4(WNOHANG) reaps it); kills its
    process group at the cap or the timeout. The last value is the monotonic time of the exit."""
    work_started: float | None = None
    last_watch = 0.0
    pidfd = _pidfd(proc.pid)
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                return status, usage, False, False, None, time.monotonic()
            now = time.monotonic()
            if work_started is None and started_path.exists():
                # The child writes its wall-clock start; translate it onto our monotonic clock.
                with contextlib.suppress(ValueError):
                    work_started = now - (time.time() - float(started_path.read_text()))
            cut = _check_limits(proc, cap_seconds, timed_out_after, spawned, work_started)
            if cut is not None:
                return cut
            if pidfd is None:
                time.sleep(POLL_SECONDS)
            elif select.select([pidfd], [], [], POLL_SECONDS)[0]:
                continue  # exited: reap it now, before any watch() call delays the reading
            if watch is not None and now - last_watch >= WATCH_SECONDS:
                watch()
                last_watch = now
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _pidfd(pid: int) -> int | None:
    """A file descriptor that turns readable when `pid` exits (Linux 5.3+), else None (we poll)."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def _check_limits(
    proc: subprocess.Popen[bytes],
    cap_seconds: float | None,
    timed_out_after: float,
    spawned: float,
    work_started: float | None,
) -> tuple[int, Any, bool, bool, float | None, float] | None:
    """Kills the child at the cap (counted from its work start) or the timeout (from spawn)."""
    now = time.monotonic()
    if cap_seconds is not None and work_started is not None and now - work_started >= cap_seconds:
        status, usage = _kill(proc)
        return status, usage, True, False, now - work_started, time.monotonic()
    if now - spawned >= timed_out_after:
        status, usage = _kill(proc)
        cut = now - work_started if work_started is not None else None
        return status, usage, False, True, cut, time.monotonic()
    return None


def _kill(proc: subprocess.Popen[bytes]) -> tuple[int, Any]:
    """SIGTERM, then SIGKILL, to the child's process group (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return status, usage
        time.sleep(POLL_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    _, status, usage = os.wait4(proc.pid, 0)
    return status, usage


class StatsdSink:
    """A UDP StatsD listener on 127.0.0.1 that tallies what arrives between window() and take()."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._packets = 0
        self._counters: dict[str, float] = {}
        self._timers: dict[str, int] = {}
        self._gauges: dict[str, float] = {}
        self._thread = threading.Thread(target=self._drain, name="statsd-sink", daemon=True)
        self._thread.start()

    def window(self) -> None:
        """Starts a fresh tally (call before each method)."""
        with self._lock:
            self._packets = 0
            self._counters, self._timers, self._gauges = {}, {}, {}

    def take(self, settle_seconds: float = 0.3) -> dict[str, Any]:
        """The tally since window(), after letting in-flight datagrams land."""
        time.sleep(settle_seconds)
        with self._lock:
            return {
                "packets": self._packets,
                "counters": dict(sorted(self._counters.items())),
                "timer_samples": dict(sorted(self._timers.items())),
                "gauges": dict(sorted(self._gauges.items())),
            }

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def _drain(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._packets += 1
                for line in data.decode(errors="replace").splitlines():
                    self._record(line)

    def _record(self, line: str) -> None:
        # name:value|type[|@rate][|#tags]
        name, _, rest = line.partition(":")
        fields = rest.split("|")
        if len(fields) < 2:
            return
        try:
            value = float(fields[0])
        except ValueError:
            return
        kind = fields[1]
        if kind == "c":
            self._counters[name] = self._counters.get(name, 0.0) + value
        elif kind == "ms":
            self._timers[name] = self._timers.get(name, 0) + 1
        elif kind == "g":
            self._gauges[name] = value
