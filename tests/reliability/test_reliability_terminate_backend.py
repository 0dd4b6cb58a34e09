"""Repeated ``pg_terminate_backend`` of every connection of the workers.

Four worker processes run short jobs of every executor while, every half
second or so, the test terminates every server process serving them (pool
connections in the middle of a fetch or a save, LISTEN connections, the
leader's lease). The workers never die, so nothing is recovered and nothing
may run twice: a fetch whose reply was lost is released and fetched again, a
save whose reply was lost is saved again (the same outcome, still under the
run's claim). Every job's side effect happens exactly once, every job
succeeded at its first attempt, nothing is left running.
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
from psycopg.conninfo import make_conninfo

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
JOBS = rel.scaled(1_500, 15_000)
ROUNDS = rel.scaled(15, 240)
APPLICATION = "chancy-reliability-worker"
SHARES = {
    "t_async": ("arecord", 0.5),
    "t_threads": ("record", 0.35),
    "t_procs": ("record", 0.15),
}
QUEUES = [
    Queue(
        "t_async", executor=Chancy.Executor.Async, concurrency=20, polling_interval=1
    ),
    Queue(
        "t_threads",
        executor=Chancy.Executor.Threaded,
        concurrency=4,
        polling_interval=1,
    ),
    Queue(
        "t_procs", executor=Chancy.Executor.Process, concurrency=2, polling_interval=1
    ),
]


async def test_terminated_connections_lose_and_duplicate_nothing(
    chancy: Chancy, chancy_dsn: str, tmp_path: Path
) -> None:
    timer = rel.Timer()
    rnd = random.Random()
    await rel.declare_queues(chancy, QUEUES)
    jobs = []
    for queue, (func, share) in SHARES.items():
        jobs += [
            rel.job(func, queue, seconds=round(rnd.uniform(0, 0.05), 3))
            for _ in range(round(JOBS * share))
        ]
    rnd.shuffle(jobs)
    directory = tmp_path / "runs"
    terminated = 0
    worker_dsn = make_conninfo(chancy_dsn, application_name=APPLICATION)
    async with rel.Fleet(chancy_dsn, directory) as fleet:
        # The workers stay alive throughout: this test is about connections,
        # not Recovery. With the fleet's 3 s heartbeat timeout, a loaded
        # machine (load 10 seen) plus a terminated connection every half
        # second can starve a live worker's heartbeats that long, and the
        # leader then rightly re-queues its running jobs (at least once, as
        # docs/guarantees.md says of workers presumed dead): a duplicate the
        # test would blame on the connection handling.
        workers = await fleet.start_many(
            WORKERS,
            dsn=worker_dsn,
            recovery={"poll_interval": 0.3, "heartbeat_timeout": 60.0},
            worker={"heartbeat_timeout": 60.0},
        )
        ids: list[str] = []
        # Jobs arrive in slices while connections are being terminated.
        slices = [jobs[i::ROUNDS] for i in range(ROUNDS)]
        for part in slices:
            ids += await rel.push_all(chancy, part)
            await asyncio.sleep(rnd.uniform(0.3, 0.8))
            rows = await rel.query(
                chancy,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s",
                APPLICATION,
            )
            terminated += rows[0][0]
        counts = await rel.wait_finished(
            chancy, len(ids), timeout=rel.scaled(90, 600), fleet=fleet
        )
        assert all(w.alive for w in workers), fleet.logs()
        for worker in workers:
            worker.send(signal.SIGTERM)
        for worker in workers:
            assert await worker.wait(30) == 0, worker.log()
        released = len(fleet.grep("claimed by a fetch whose reply was lost"))
        logs = fleet.logs()

    assert counts == {"succeeded": len(ids)}, (counts, logs)
    runs = rel.read_runs(directory)
    duplicates, missing, unknown = rel.exactly_once(ids, runs)
    assert not duplicates, f"{len(duplicates)} jobs ran more than once: {duplicates}"
    assert not missing, f"{len(missing)} jobs never ran: {missing[:20]}"
    assert not unknown, unknown
    assert all(len(job_runs) == 1 for job_runs in runs.values())
    rows = await rel.query(
        chancy,
        "SELECT count(*) FILTER (WHERE attempts <> 1 OR errors <> '[]'::jsonb),"
        " count(*) FILTER (WHERE state <> 'succeeded') FROM {p}jobs",
    )
    assert rows == [(0, 0)]
    assert terminated >= ROUNDS  # every round cut some connections
    rel.report(
        "pg_terminate_backend of the workers' connections",
        test="tests/reliability/test_reliability_terminate_backend.py",
        workers=WORKERS,
        jobs=len(ids),
        termination_rounds=ROUNDS,
        connections_terminated=terminated,
        fetches_released=released,
        duplicates=len(duplicates),
        missing=len(missing),
        seconds=timer.seconds,
    )
