"""The whole story with real processes: a worker is SIGKILLed while it runs
jobs, and another worker, with Recovery, runs every one of them again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import Recovery

HERE = Path(__file__).resolve().parent
NO_DEFAULTS = {"plugins": [], "no_default_plugins": True}
JOBS = 6


async def expect_line(
    proc: asyncio.subprocess.Process, line: str, timeout: float
) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(timeout):
        while True:
            got = await proc.stdout.readline()
            if not got:
                raise AssertionError(
                    f"the worker process exited before printing {line!r}"
                )
            if got.decode().strip() == line:
                return


def read_runs(path: Path) -> list[tuple[str, str, int, float]]:
    """(kind, job id, pid, time) for each line the jobs wrote."""
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        kind, job_id, pid, at = line.split()
        runs.append((kind, job_id, int(pid), float(at)))
    return runs


@pytest.mark.parametrize("chancy", [NO_DEFAULTS], indirect=True)
async def test_jobs_of_a_killed_worker_are_run_again_by_another(
    chancy: Chancy, chancy_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(HERE))  # the survivor imports _recovery_jobs too
    runs_path = tmp_path / "runs.txt"
    # Long polling: workers fetch when notified (push, recovery) or at start.
    await chancy.declare(
        Queue(
            "lost", executor=Chancy.Executor.Async, concurrency=10, polling_interval=30
        )
    )
    refs = []
    for _ in range(JOBS):
        refs.append(
            await chancy.push(
                Job(
                    func="_recovery_jobs.sleep_and_record",
                    queue="lost",
                    kwargs={
                        "path": str(runs_path),
                        "first_seconds": 60,
                        "then_seconds": 0.3,
                    },
                    # The default max_attempts=1: a lost run is not an attempt.
                )
            )
        )
    job_ids = {str(ref.identifier) for ref in refs}

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), env.get("PYTHONPATH")) if p
    )
    with (tmp_path / "doomed.log").open("wb") as log:
        doomed = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "_recovery_worker.py"),
            chancy_dsn,
            "doomed",
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
        )
    survivor: Worker | None = None
    recovery = Recovery(poll_interval=0.2, heartbeat_timeout=1)
    app = Chancy(
        chancy_dsn, plugins=[Leadership(0.2, 0.6), recovery], no_default_plugins=True
    )
    try:
        await expect_line(doomed, "LEADER", timeout=30)
        # The doomed worker takes every job.
        async with asyncio.timeout(15):
            while len([r for r in read_runs(runs_path) if r[0] == "start"]) < JOBS:
                await asyncio.sleep(0.02)

        # A second worker joins while the first is alive and busy: it neither
        # leads nor runs anything.
        await app.ensure_open()
        survivor = Worker(
            app,
            worker_id="survivor",
            heartbeat_poll_interval=0.2,
            heartbeat_timeout=1,
            register_signal_handlers=False,
            shutdown_timeout=10,
        )
        await survivor.start()
        await asyncio.sleep(0.3)
        assert not survivor.is_leader.is_set()

        doomed.send_signal(signal.SIGKILL)
        await doomed.wait()
        killed_at = time.time()
        assert doomed.returncode == -signal.SIGKILL
        runs = read_runs(runs_path)
        assert len(runs) == JOBS and all(kind == "start" for kind, *_ in runs)

        done = await chancy.wait_for_jobs(refs, interval=0.05, timeout=30)
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()
        if survivor is not None:
            await survivor.stop()
        await app.__aexit__(None, None, None)

    assert len(done) == JOBS
    for job in done:
        assert job.state is QueuedJob.State.SUCCEEDED, job
        assert job.attempts == 1  # the lost run is not an attempt...
        assert len(job.errors) == 1  # ...but it is recorded
        assert job.errors[0]["attempt"] == 0
        assert job.errors[0]["lost"] is True
        assert job.errors[0]["traceback"].startswith(
            "chancy.errors.WorkerLostError: worker doomed stopped sending heartbeats"
        )
        assert job.meta["lost_runs"] == 1
    assert recovery.rows_recovered == JOBS

    runs = read_runs(runs_path)
    starts = Counter(job_id for kind, job_id, _pid, _at in runs if kind == "start")
    ends = Counter(job_id for kind, job_id, _pid, _at in runs if kind == "end")
    # Every job ran exactly twice: once in the killed worker (never finished)
    # and once in the survivor, which started it only after the kill.
    assert starts == Counter({job_id: 2 for job_id in job_ids})
    assert ends == Counter({job_id: 1 for job_id in job_ids})
    doomed_pid = doomed.pid
    for job_id in job_ids:
        mine = [(kind, pid, at) for kind, jid, pid, at in runs if jid == job_id]
        assert [pid for kind, pid, _ in mine if kind == "start"] == [
            doomed_pid,
            os.getpid(),
        ]
        assert [pid for kind, pid, _ in mine if kind == "end"] == [os.getpid()]
        second_start = next(
            at for kind, pid, at in mine if kind == "start" and pid == os.getpid()
        )
        assert second_start > killed_at
