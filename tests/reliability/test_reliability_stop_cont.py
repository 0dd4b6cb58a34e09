"""SIGSTOP past the heartbeat timeout, then SIGCONT: the late result is refused.

Worker A serves the queues tagged ``lane=a``; it takes a process-executor
job and an async job, and is frozen with SIGSTOP (only the worker process:
its process-executor child finishes the job meanwhile, and the result waits
in the pipe). The leader (worker B) finds A's heartbeat too old and recovers
both jobs; worker C, also serving ``lane=a``, runs them again to success.
Then A is resumed: whatever it does with its stale runs (save the late
result, or stop them on hearing of the recovery), its save is fenced off by
the claim Recovery cleared, and the recovered runs' outcome stands.
"""

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

ROUNDS = rel.scaled(1, 5)
QUEUES = [
    Queue(
        "stop_procs", executor=Chancy.Executor.Process, concurrency=2, tags={"lane=a"}
    ),
    Queue("stop_async", executor=Chancy.Executor.Async, concurrency=5, tags={"lane=a"}),
]
LANE_A = {"worker": {"tags": ["lane=a"]}}


async def test_a_stopped_workers_late_results_are_refused(
    chancy: Chancy, chancy_dsn: str, tmp_path: Path
) -> None:
    timer = rel.Timer()
    await rel.declare_queues(chancy, QUEUES)
    refused = 0
    async with rel.Fleet(chancy_dsn, tmp_path / "runs") as fleet:
        leader = await fleet.start("b")
        await leader.wait_started(60)
        await rel.wait_until(
            lambda: rel.leader_name(chancy), timeout=30, message="no leader"
        )
        for round_ in range(ROUNDS):
            frozen = await fleet.start(f"a{round_}", **LANE_A)
            await frozen.wait_started(60)
            ids = await rel.push_all(
                chancy,
                [
                    rel.job("record_meta", "stop_procs", seconds=2),
                    rel.job("arecord_meta", "stop_async", seconds=2),
                ],
            )
            # Both run in A (the process job's child has started it).
            await rel.wait_until(
                lambda ids=ids, frozen=frozen: _started(chancy, fleet, ids, frozen),
                timeout=30,
                message="A did not start both jobs",
            )
            frozen.send(signal.SIGSTOP)
            await rel.wait_until(
                lambda ids=ids: _recovered(chancy, ids),
                timeout=30,
                message=lambda: _why(chancy, fleet, "the jobs were not recovered"),
            )
            rescuer = await fleet.start(f"c{round_}", **LANE_A)
            await rescuer.wait_started(60)
            await rel.wait_until(
                lambda ids=ids: _succeeded(chancy, ids),
                timeout=30,
                message=lambda: _why(chancy, fleet, "the recovered jobs did not run"),
            )
            before = {str(j.id): j for j in await chancy.get_jobs(ids)}
            frozen.send(signal.SIGCONT)
            # A saves its late result (refused by the fence) or, told that
            # the jobs were recovered, stops its runs without saving.
            await rel.wait_until(
                lambda ids=ids, frozen=frozen: _quiet(chancy, fleet, frozen, ids),
                timeout=20,
                message=lambda: _why(chancy, fleet, "A did not settle"),
            )
            after = {str(j.id): j for j in await chancy.get_jobs(ids)}
            for job_id in ids:
                job, was = after[job_id], before[job_id]
                assert job.state.value == "succeeded"
                # The recovered run's outcome stands, untouched by A.
                assert job.meta["ran_in"] == was.meta["ran_in"]
                assert job.meta["ran_in"] not in (frozen.pid, *_children(fleet, frozen))
                assert (job.completed_at, job.attempts, job.errors) == (
                    was.completed_at,
                    1,
                    was.errors,
                )
                [lost] = job.errors
                assert lost["lost"] is True
                assert (
                    f"worker {frozen.name} stopped sending heartbeats"
                    in lost["traceback"]
                )
            refused += sum(
                1
                for job_id in ids
                if fleet.grep(f"Discarded the outcome (succeeded) of job {job_id}")
            )
            # A keeps serving after it was resumed.
            await rescuer.kill()
            [again] = await rel.push_all(
                chancy, [rel.job("arecord_meta", "stop_async")]
            )
            await rel.wait_until(
                lambda again=again: _succeeded(chancy, [again]),
                timeout=30,
                message="A stopped serving",
            )
            assert (await chancy.get_job(again)).meta["ran_in"] == frozen.pid  # type: ignore[union-attr]
            await frozen.kill()
        for worker in fleet.alive:
            worker.send(signal.SIGTERM)
        for worker in fleet.alive:
            assert await worker.wait(30) == 0, worker.log()

    # The process job's child finished while A was frozen, so A saved that
    # late result on resuming: refused, every round.
    assert refused >= ROUNDS
    rel.report(
        "SIGSTOP past the heartbeat timeout, then SIGCONT",
        test="tests/reliability/test_reliability_stop_cont.py",
        rounds=ROUNDS,
        jobs_recovered=2 * ROUNDS,
        late_results_refused=refused,
        late_results_applied=0,
        seconds=timer.seconds,
    )


def _children(fleet: object, worker: object) -> set[int]:
    runs = rel.read_runs(fleet.directory)  # type: ignore[attr-defined]
    return {r.pid for rs in runs.values() for r in rs if r.ppid == worker.pid}  # type: ignore[attr-defined]


async def _started(
    chancy: Chancy, fleet: object, ids: list[str], worker: object
) -> bool:
    rows = await rel.query(
        chancy,
        "SELECT count(*) FROM {p}jobs WHERE id = ANY(%s::uuid[]) AND state = 'running'"
        " AND taken_by = %s",
        ids,
        worker.name,  # type: ignore[attr-defined]
    )
    runs = rel.read_runs(fleet.directory)  # type: ignore[attr-defined]
    return bool(rows[0][0] == len(ids) and all(job in runs for job in ids))


async def _recovered(chancy: Chancy, ids: list[str]) -> bool:
    rows = await rel.query(
        chancy,
        "SELECT count(*) FROM {p}jobs WHERE id = ANY(%s::uuid[])"
        " AND jsonb_array_length(errors) = 1",
        ids,
    )
    return bool(rows[0][0] == len(ids))


async def _succeeded(chancy: Chancy, ids: list[str]) -> bool:
    rows = await rel.query(
        chancy,
        "SELECT count(*) FROM {p}jobs WHERE id = ANY(%s::uuid[]) AND state = 'succeeded'",
        ids,
    )
    return bool(rows[0][0] == len(ids))


async def _quiet(chancy: Chancy, fleet: object, worker: object, ids: list[str]) -> bool:
    """A heartbeats again and holds none of the jobs (no run of them left)."""
    rows = await rel.query(
        chancy,
        "SELECT last_seen > NOW() - interval '1 second' FROM {p}workers WHERE worker_id = %s",
        worker.name,  # type: ignore[attr-defined]
    )
    if not rows or not rows[0][0]:
        return False
    log = worker.log(tail=10**9)  # type: ignore[attr-defined]
    # The process job: its late result is refused (or, if A heard of the
    # recovery first, the run is stopped and its outcome refused too).
    return all(job in log for job in ids[:1])


async def _why(chancy: Chancy, fleet: object, text: str) -> str:
    jobs = await rel.query(chancy, "SELECT id, state, taken_by, errors FROM {p}jobs")
    # What Recovery looks at: the workers' heartbeats, and who holds locks
    # on the jobs table (its SKIP LOCKED passes over locked rows).
    workers = await rel.query(
        chancy,
        "SELECT worker_id, last_seen, NOW() - last_seen FROM {p}workers"
        " ORDER BY worker_id",
    )
    locks = await rel.query(
        chancy,
        "SELECT l.pid, l.mode, l.granted, a.state, a.xact_start, left(a.query, 120)"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.relation = %s::regclass OR l.locktype = 'transactionid'",
        f"{chancy.prefix}jobs",
    )
    return (
        f"{text}: {jobs}\nworkers: {workers}\nlocks on the jobs table: {locks}\n"
        f"{fleet.logs()}"  # type: ignore[attr-defined]
    )
