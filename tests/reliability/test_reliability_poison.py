"""Poison jobs in every executor end failed within their cap, and the
workers keep serving.

* A job whose run kills its process (``os._exit``, a segfault, SIGKILL) in a
  process-executor child: the worker sees the child die and records a lost
  run; at ``max_lost_runs`` (3) lost runs the job fails. No attempt counted.
* A job that kills the whole worker (a segfault in a threaded job,
  ``os._exit`` in an async one), on workers of their own that the test
  starts again each time one dies: Recovery records each lost run, and the
  job fails at the third.
* A job raising ``SystemExit``, ``KeyboardInterrupt``, a ``CancelledError``
  of its own or another ``BaseException`` subclass, in every executor:
  recorded like any failure, it fails after ``max_attempts``.

The two workers serving the first and last kinds are the same processes
from start to end, and run ordinary jobs of every executor afterwards.
"""

from __future__ import annotations

import asyncio
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

MAX_LOST_RUNS = 3
MAX_ATTEMPTS = 2
#: Poison jobs of each kind (the soak pushes more of each).
COPIES = rel.scaled(1, 3)
MAIN = {"worker": {"tags": ["lane=main"]}}
KILLER = {"worker": {"tags": ["lane=killer"]}}
QUEUES = [
    Queue(
        "p_procs", executor=Chancy.Executor.Process, concurrency=2, tags={"lane=main"}
    ),
    Queue(
        "p_threads",
        executor=Chancy.Executor.Threaded,
        concurrency=2,
        tags={"lane=main"},
    ),
    Queue("p_async", executor=Chancy.Executor.Async, concurrency=5, tags={"lane=main"}),
    Queue(
        "k_threads",
        executor=Chancy.Executor.Threaded,
        concurrency=1,
        tags={"lane=killer"},
    ),
    Queue(
        "k_async", executor=Chancy.Executor.Async, concurrency=1, tags={"lane=killer"}
    ),
]
#: (queue, job function, kwargs): runs that kill their process.
LOSES_ITS_PROCESS = [
    ("p_procs", "exit_hard", {}),
    ("p_procs", "segfault", {}),
    ("p_procs", "kill_self", {}),
    ("k_threads", "segfault", {}),
    ("k_async", "aexit_hard", {}),
]
#: Runs that raise something that is not an Exception.
RAISES = [
    *(
        (queue, "raise_base", {"kind": kind})
        for queue in ("p_procs", "p_threads")
        for kind in ("SystemExit", "KeyboardInterrupt", "PoisonBaseError")
    ),
    *(
        ("p_async", "araise_base", {"kind": kind})
        for kind in (
            "SystemExit",
            "KeyboardInterrupt",
            "PoisonBaseError",
            "CancelledError",
        )
    ),
]


async def test_poison_jobs_fail_within_their_caps_and_workers_keep_serving(
    chancy: Chancy, chancy_dsn: str, tmp_path: Path
) -> None:
    timer = rel.Timer()
    await rel.declare_queues(chancy, QUEUES)
    config = {
        "recovery": {**rel.FAST_RECOVERY["recovery"], "max_lost_runs": MAX_LOST_RUNS}
    }
    lost_ids: dict[str, tuple[str, str]] = {}
    raised_ids: dict[str, tuple[str, str, str]] = {}
    killer_deaths = 0
    async with rel.Fleet(chancy_dsn, tmp_path / "runs") as fleet:
        main = [await fleet.start(f"main{i}", **MAIN, **config) for i in range(2)]
        await asyncio.gather(*(w.wait_started(60) for w in main))
        await rel.wait_until(
            lambda: rel.leader_name(chancy), timeout=30, message="no leader"
        )
        for _ in range(COPIES):
            for queue, func, kwargs in LOSES_ITS_PROCESS:
                [ref] = await rel.push_all(chancy, [rel.job(func, queue, **kwargs)])
                lost_ids[ref] = (queue, func)
            for queue, func, kwargs in RAISES:
                job = rel.job(func, queue, **kwargs).with_max_attempts(MAX_ATTEMPTS)
                [ref] = await rel.push_all(chancy, [job])
                raised_ids[ref] = (queue, func, kwargs["kind"])
        every = [*lost_ids, *raised_ids]

        # Killer workers: started again each time a poison job kills one.
        killer = await fleet.start(None, **KILLER, **config)
        deadline = asyncio.get_running_loop().time() + rel.scaled(90, 300)
        while not await _finished(chancy, every):
            if not killer.alive:
                killer_deaths += 1
                killer = await fleet.start(None, **KILLER, **config)
            assert asyncio.get_running_loop().time() < deadline, await _why(
                chancy, fleet
            )
            await asyncio.sleep(0.2)
        await killer.kill()

        # The main workers never died, and serve every executor still.
        assert all(w.alive for w in main), fleet.logs()
        healthy = await rel.push_all(
            chancy,
            [
                rel.job("record_meta", "p_procs"),
                rel.job("record_meta", "p_threads"),
                rel.job("arecord_meta", "p_async"),
            ]
            * 2,
        )
        await rel.wait_until(
            lambda: _finished(chancy, healthy), timeout=30, message="healthy jobs"
        )
        for worker in main:
            worker.send(signal.SIGTERM)
        for worker in main:
            assert await worker.wait(30) == 0, worker.log()
        main_pids = {w.pid for w in main}

    jobs = {str(j.id): j for j in await chancy.get_jobs([*every, *healthy])}
    for job_id, (queue, func) in lost_ids.items():
        job = jobs[job_id]
        what = (queue, func, job.state.value, job.attempts, job.errors)
        assert job.state.value == "failed", what
        assert job.attempts == 0, what  # a lost run is not an attempt
        assert job.meta["lost_runs"] == MAX_LOST_RUNS, what
        assert [e.get("lost") for e in job.errors] == [True] * MAX_LOST_RUNS, what
        assert f"max_lost_runs={MAX_LOST_RUNS}" in job.errors[-1]["traceback"], what
    for job_id, (queue, func, kind) in raised_ids.items():
        job = jobs[job_id]
        what = (queue, func, kind, job.state.value, job.attempts, job.errors)
        assert job.state.value == "failed", what
        assert job.attempts == MAX_ATTEMPTS, what
        assert len(job.errors) == MAX_ATTEMPTS and not any(
            e.get("lost") for e in job.errors
        ), what
        assert all(kind in e["traceback"] for e in job.errors), what
        assert "lost_runs" not in job.meta, what
    for job_id in healthy:
        job = jobs[job_id]
        assert job.state.value == "succeeded", job
        [run] = rel.read_runs(fleet.directory)[job_id]
        assert run.in_process(main_pids) and job.meta["ran_in"] == run.pid, run
    # A worker-killing job dies with each worker that takes it: three lost
    # runs each, so three killer workers at least were lost.
    assert killer_deaths >= MAX_LOST_RUNS, killer_deaths
    assert await rel.states(chancy) == {
        "failed": len(every),
        "succeeded": len(healthy),
    }
    rel.report(
        "poison jobs",
        test="tests/reliability/test_reliability_poison.py",
        poison_jobs=len(every),
        killing_their_process=len(lost_ids),
        raising_base_exceptions=len(raised_ids),
        workers_killed_by_poison=killer_deaths,
        max_lost_runs=MAX_LOST_RUNS,
        max_attempts=MAX_ATTEMPTS,
        main_workers_restarted=0,
        seconds=timer.seconds,
    )


async def _finished(chancy: Chancy, ids: list[str]) -> bool:
    rows = await rel.query(
        chancy,
        "SELECT count(*) FROM {p}jobs WHERE id = ANY(%s::uuid[])"
        " AND state IN ('succeeded', 'failed')",
        ids,
    )
    return bool(rows[0][0] == len(ids))


async def _why(chancy: Chancy, fleet: object) -> str:
    rows = await rel.query(
        chancy,
        "SELECT func, queue, state, attempts, meta, taken_by FROM {p}jobs"
        " WHERE state NOT IN ('succeeded', 'failed')",
    )
    return f"poison jobs did not finish: {rows}\n{fleet.logs()}"  # type: ignore[attr-defined]
