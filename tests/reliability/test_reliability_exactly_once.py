"""Exactly once without faults: four worker processes share thousands of jobs
over queues of every executor (async, threaded, process), and each job's side
effect happens once, none is missing, and every job succeeded at its first
attempt."""

from __future__ import annotations

import importlib.util
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
JOBS = rel.scaled(2_000, 20_000)
#: Share of the jobs per queue (the process executor is the slowest).
SHARES = {"rel_async": 0.5, "rel_threads": 0.35, "rel_procs": 0.15}
QUEUES = [
    Queue(
        "rel_async", executor=Chancy.Executor.Async, concurrency=50, polling_interval=1
    ),
    Queue(
        "rel_threads",
        executor=Chancy.Executor.Threaded,
        concurrency=8,
        polling_interval=1,
    ),
    Queue(
        "rel_procs", executor=Chancy.Executor.Process, concurrency=2, polling_interval=1
    ),
]


async def test_every_job_runs_exactly_once_without_faults(
    chancy: Chancy, chancy_dsn: str, tmp_path: Path
) -> None:
    timer = rel.Timer()
    await rel.declare_queues(chancy, QUEUES)
    jobs = []
    for queue, share in SHARES.items():
        func = "arecord" if queue == "rel_async" else "record"
        jobs += [rel.job(func, queue) for _ in range(round(JOBS * share))]
    directory = tmp_path / "runs"
    async with rel.Fleet(chancy_dsn, directory) as fleet:
        workers = await fleet.start_many(WORKERS)
        # Pushed while the workers run: notifications and fetches race.
        ids = await rel.push_all(chancy, jobs)
        counts = await rel.wait_finished(
            chancy, len(ids), timeout=rel.scaled(100, 900), fleet=fleet
        )
        for worker in workers:
            worker.send(signal.SIGTERM)
        for worker in workers:
            assert await worker.wait(30) == 0, worker.log()

    assert counts == {"succeeded": len(ids)}, counts
    runs = rel.read_runs(directory)
    duplicates, missing, unknown = rel.exactly_once(ids, runs)
    assert not duplicates, f"{len(duplicates)} jobs ran more than once: {duplicates}"
    assert not missing, f"{len(missing)} jobs never ran: {missing[:20]}"
    assert not unknown, unknown
    assert all(len(job_runs) == 1 for job_runs in runs.values())
    rows = await rel.query(
        chancy,
        "SELECT count(*) FILTER (WHERE attempts <> 1 OR errors <> '[]'::jsonb"
        " OR state <> 'succeeded' OR taken_by IS NULL) FROM {p}jobs",
    )
    assert rows == [(0,)]
    # The jobs were shared: several workers ran some of them.
    per_worker = {
        w.name: sum(1 for job_runs in runs.values() if job_runs[0].in_process([w.pid]))
        for w in workers
    }
    assert sum(1 for n in per_worker.values() if n) >= 2, per_worker
    assert sum(per_worker.values()) == len(ids), per_worker
    rel.report(
        "exactly once without faults",
        test="tests/reliability/test_reliability_exactly_once.py",
        workers=WORKERS,
        jobs=len(ids),
        jobs_per_worker=per_worker,
        duplicates=len(duplicates),
        missing=len(missing),
        seconds=timer.seconds,
    )
