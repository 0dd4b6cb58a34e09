"""SIGKILL of random workers every few seconds, with replacements started.

Jobs of every executor (async, threaded, process) keep arriving while worker
processes are killed one after the other; a new worker is started for each
one killed. Every job finishes (succeeded, at its first attempt: a lost run
is not an attempt); a job runs more than once only when a run of it was in a
killed worker (or in a process-executor child of one); no two runs of one job
ever overlap, so no orphaned child keeps running a job that another worker
runs again; every lost run recorded names a worker that was killed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import signal
import sys
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

WORKERS = 4
KILLS = rel.scaled(3, 60)
KILL_EVERY = rel.scaled(2.0, 3.0)
#: Jobs pushed per second while workers are being killed.
RATE = rel.scaled(40, 40)
#: A job may be lost many times in a row here (its workers were killed at
#: random); the cap on lost runs is tested with poison jobs instead.
MAX_LOST_RUNS = 20
QUEUES = [
    Queue(
        "k_async", executor=Chancy.Executor.Async, concurrency=10, polling_interval=1
    ),
    Queue(
        "k_threads",
        executor=Chancy.Executor.Threaded,
        concurrency=4,
        polling_interval=1,
    ),
    Queue(
        "k_procs", executor=Chancy.Executor.Process, concurrency=2, polling_interval=1
    ),
]
FUNCS = {"k_async": "arecord", "k_threads": "record", "k_procs": "record"}
#: A record written this long after the kill of its process would be an orphan's.
GRACE = 0.5


async def test_killed_workers_lose_nothing_and_rerun_only_their_jobs(
    chancy: Chancy, chancy_dsn: str, tmp_path: Path
) -> None:
    timer = rel.Timer()
    rnd = random.Random()
    await rel.declare_queues(chancy, QUEUES)
    directory = tmp_path / "runs"
    config = {
        "recovery": {**rel.FAST_RECOVERY["recovery"], "max_lost_runs": MAX_LOST_RUNS}
    }
    ids: list[str] = []

    async def feed(stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = []
            for _ in range(RATE):
                queue = rnd.choice(list(FUNCS))
                seconds = round(rnd.uniform(0.05, 1.0), 3)
                batch.append(rel.job(FUNCS[queue], queue, seconds=seconds))
            ids.extend(await rel.push_all(chancy, batch))
            await asyncio.sleep(1)

    async with rel.Fleet(chancy_dsn, directory) as fleet:
        await fleet.start_many(WORKERS, **config)
        stop = asyncio.Event()
        feeder = asyncio.create_task(feed(stop))
        try:
            for _ in range(KILLS):
                await asyncio.sleep(KILL_EVERY)
                victim = rnd.choice(fleet.alive)
                await victim.kill()
                replacement = await fleet.start(**config)
                await replacement.wait_started(60)
        finally:
            stop.set()
            await feeder
        counts = await rel.wait_finished(
            chancy, len(ids), timeout=rel.scaled(60, 300), fleet=fleet
        )
        survivors = fleet.alive
        for worker in survivors:
            worker.send(signal.SIGTERM)
        for worker in survivors:
            assert await worker.wait(30) == 0, worker.log()
        killed = {w.name: w.killed_at for w in fleet.procs if w.killed_at}
        killed_pids = fleet.killed
        logs = fleet.logs()

    assert counts == {"succeeded": len(ids)}, (counts, logs)
    runs = rel.read_runs(directory)
    duplicates, missing, unknown = rel.exactly_once(ids, runs)
    assert not missing and not unknown, (missing[:10], unknown[:10])

    # A job ran again only after a run in a killed worker; its last run ended.
    reruns = 0
    for job, job_runs in runs.items():
        *earlier, last = job_runs
        assert last.end is not None, (job, job_runs)
        for run in earlier:
            assert run.in_process(killed_pids), (
                f"job {job} ran again although its run in pid {run.pid} was not in a"
                f" killed worker: {job_runs}"
            )
        reruns += len(earlier)
    # Nothing ran in a killed worker (or its children) after the kill...
    for job, job_runs in runs.items():
        for run in job_runs:
            died = killed_pids.get(run.pid, killed_pids.get(run.ppid))
            if died is not None:
                assert run.start <= died + GRACE, (job, run, died)
                assert run.end is None or run.end <= died + GRACE, (job, run, died)
    # ...and no two runs of a job overlapped.
    assert not rel.overlapping(runs, killed_pids)

    rows = await rel.query(
        chancy,
        "SELECT id::text, attempts, COALESCE((meta->>'lost_runs')::int, 0), errors"
        " FROM {p}jobs",
    )
    lost_by_job = {}
    for job, attempts, lost_runs, errors in rows:
        assert attempts == 1, (job, attempts, errors)
        lost = [e for e in errors if e.get("lost")]
        assert len(lost) == lost_runs == len(errors), (job, errors)
        lost_by_job[job] = lost_runs
        # Every lost run names a killed worker: no live worker was recovered.
        for entry in lost:
            assert any(
                f"worker {name} stopped sending heartbeats" in entry["traceback"]
                for name in killed
            ), entry
        # Each run followed by another one (it was in a killed worker) is a
        # lost run; a lost run may also be a job fetched but not started yet.
        assert lost_runs >= len(runs.get(job, [])) - 1, (job, lost_runs, runs.get(job))
    assert sum(lost_by_job.values()) >= reruns
    assert await rel.states(chancy) == {"succeeded": len(ids)}
    rel.report(
        "SIGKILL of random workers",
        test="tests/reliability/test_reliability_kill.py",
        workers=WORKERS,
        jobs=len(ids),
        kills=len(killed),
        lost_runs_recorded=sum(lost_by_job.values()),
        reruns_after_kill=reruns,
        duplicated_effects=len(duplicates),
        missing=len(missing),
        overlapping_runs=0,
        seconds=timer.seconds,
    )
