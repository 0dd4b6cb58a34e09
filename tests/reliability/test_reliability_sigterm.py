"""SIGTERM during long jobs: each finishes within ``shutdown_timeout`` or goes
back to the queue; nothing stays running.

A worker process runs, in every executor, jobs that end well within its
``shutdown_timeout`` and jobs that would run far longer. On SIGTERM it stops
fetching, lets the short ones finish and saves them, puts the long ones back
(``pending``, no attempt counted, no error) and exits 0 within the timeout
plus a small margin, leaving no process-executor child behind. A worker
started afterwards runs the jobs that were put back.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from chancy import Chancy, Queue


def _harness() -> ModuleType:
    """``_reliability.py`` next to this file (tests do not import each other)."""
    module = sys.modules.get("_reliability")
    if module is None:
        spec = importlib.util.spec_from_file_location(
            "_reliability", Path(__file__).with_name("_reliability.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["_reliability"] = module
        spec.loader.exec_module(module)
    return module


rel = _harness()
pytestmark = pytest.mark.reliability

ROUNDS = rel.scaled(1, 5)
SHUTDOWN_TIMEOUT = 3.0
#: Seconds a stopping worker may take beyond its shutdown_timeout (saving,
#: putting jobs back, stopping executors and plugins, leaving the process).
MARGIN = 5.0
SHORT, LONG = 1.0, 60.0
EXECUTORS = {
    "term_async": (Chancy.Executor.Async, "along_once"),
    "term_threads": (Chancy.Executor.Threaded, "long_once"),
    "term_procs": (Chancy.Executor.Process, "long_once"),
}
QUEUES = [
    Queue(
        name, executor=executor, concurrency=4, polling_interval=1, tags={"lane=term"}
    )
    for name, (executor, _) in EXECUTORS.items()
]
LANE = {"worker": {"tags": ["lane=term"], "shutdown_timeout": SHUTDOWN_TIMEOUT}}


async def test_sigterm_finishes_short_jobs_and_puts_long_ones_back(
    chancy: Chancy, chancy_dsn: str, tmp_path: Path
) -> None:
    timer = rel.Timer()
    await rel.declare_queues(chancy, QUEUES)
    directory = tmp_path / "runs"
    finished = put_back = 0
    stop_seconds: list[float] = []
    async with rel.Fleet(chancy_dsn, directory) as fleet:
        for round_ in range(ROUNDS):
            worker = await fleet.start(f"term{round_}", **LANE)
            await worker.wait_started(60)
            short: list[str] = []
            long: list[str] = []
            for queue, (_, func) in EXECUTORS.items():
                short += await rel.push_all(
                    chancy, [rel.job(func, queue, seconds=SHORT)] * 2
                )
                long += await rel.push_all(
                    chancy, [rel.job(func, queue, seconds=LONG)] * 2
                )
            everything = short + long
            await rel.wait_until(
                lambda ids=everything: _all_started(directory, ids),
                timeout=30,
                message=lambda: _why(chancy, fleet),
            )
            children = _children(directory, worker.pid)
            assert children  # the process executor's
            sent = time.monotonic()
            worker.send(signal.SIGTERM)
            assert await worker.wait(SHUTDOWN_TIMEOUT + MARGIN) == 0, worker.log()
            stop_seconds.append(round(time.monotonic() - sent, 2))
            assert "STOPPED False" in worker.output()  # the deadline was hit
            assert not any(_alive(pid) for pid in children), children

            jobs = {str(j.id): j for j in await chancy.get_jobs(everything)}
            for job_id in short:
                job = jobs[job_id]
                assert (job.state.value, job.attempts, job.errors) == (
                    "succeeded",
                    1,
                    [],
                )
            for job_id in long:
                job = jobs[job_id]
                assert (job.state.value, job.attempts, job.errors) == (
                    "pending",
                    0,
                    [],
                ), job
                assert job.started_at is None and job.completed_at is None
            assert (await rel.states(chancy))["running"] == 0
            finished += len(short)
            put_back += len(long)

            # Another worker runs the jobs that were put back (at once: a
            # job's later runs do not sleep).
            rescuer = await fleet.start(f"rescue{round_}", **LANE)
            await rescuer.wait_started(60)
            await rel.wait_finished(
                chancy, len(jobs) * (round_ + 1), timeout=30, fleet=fleet
            )
            rescuer.send(signal.SIGTERM)
            assert await rescuer.wait(SHUTDOWN_TIMEOUT + MARGIN) == 0, rescuer.log()

    assert await rel.states(chancy) == {"succeeded": 12 * ROUNDS}
    runs = rel.read_runs(directory)
    # Each job's effect happened once: short jobs in the stopped worker,
    # long ones (interrupted, no effect) in the next one.
    assert set(rel.effects(runs).values()) == {1}
    rel.report(
        "SIGTERM during long jobs",
        test="tests/reliability/test_reliability_sigterm.py",
        rounds=ROUNDS,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        seconds_to_stop=stop_seconds,
        jobs_finished_during_shutdown=finished,
        jobs_put_back=put_back,
        left_running=0,
        seconds=timer.seconds,
    )


async def _all_started(directory: Path, ids: list[str]) -> bool:
    runs = rel.read_runs(directory)
    return all(job in runs for job in ids)


def _children(directory: Path, pid: int) -> set[int]:
    runs = rel.read_runs(directory)
    return {r.pid for rs in runs.values() for r in rs if r.ppid == pid}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def _why(chancy: Chancy, fleet: object) -> str:
    return f"not every job started: {dict(await rel.states(chancy))}\n{fleet.logs()}"  # type: ignore[attr-defined]
