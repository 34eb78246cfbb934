"""A `make up` platform described on disk, with nothing started: what its processes would be given."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any


def described_platform(run_dir: Path, *, pgbouncer: bool = False) -> Any:
    """An etl_devstack Platform whose state file looks like `up` wrote it (local PostgreSQL and Redis)."""
    from etl_devstack.platform import Platform, PlatformSettings, PlatformState

    platform = Platform(run_dir, PlatformSettings())
    state = PlatformState(
        postgres={"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": None, "embedded": False},
        redis_url="redis://127.0.0.1:6379/0",
        redis_embedded=False,
        ports={"worker_log_server": 1, "trigger_log_server": 2, "scheduler_health": 3, "pgbouncer": 4},
        databases=platform.settings.databases,
        pgbouncer=pgbouncer,
    )
    platform.run_dir.mkdir(parents=True)
    platform.state_file.write_text(json.dumps(asdict(state)))
    return platform
