"""Workflows against a real database: ordering, fan-out/fan-in, failures,
retries, cancellation, restarts, concurrent advancing, validation, scale."""

from __future__ import annotations

import asyncio
import collections
import io
import json
import time
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.plugins.leadership import ImmediateLeadership, Leadership
from chancy.plugins.workflow import (
    CycleError,
    EmptyWorkflowError,
    InvalidStepError,
    Sequence,
    UnknownDependencyError,
    Workflow,
    WorkflowPlugin,
    WorkflowRules,
    WorkflowStep,
)

# A long polling interval: everything below must advance without waiting for
# the leader's periodic pass (the prompt path and `workflow.created`).
SLOW_POLL = 60

# -- jobs (module level, so the in-process async executor can import them) ------

RUNS: list[str] = []
ATTEMPTS: collections.Counter[str] = collections.Counter()
GATES: dict[str, asyncio.Event] = {}
STARTED: dict[str, asyncio.Event] = {}


async def record(*, name: str) -> None:
    RUNS.append(name)


async def noop() -> None:
    return None


async def fail(*, name: str) -> None:
    RUNS.append(name)
    raise RuntimeError(f"step {name} failed")


async def flaky(*, name: str) -> None:
    ATTEMPTS[name] += 1
    if ATTEMPTS[name] < 2:
        raise RuntimeError("first attempt fails")
    RUNS.append(name)


async def gated(*, name: str) -> None:
    STARTED.setdefault(name, asyncio.Event()).set()
    await GATES.setdefault(name, asyncio.Event()).wait()
    RUNS.append(name)


async def sleepy(*, name: str, seconds: float) -> None:
    STARTED.setdefault(name, asyncio.Event()).set()
    await asyncio.sleep(seconds)
    RUNS.append(name)


@pytest.fixture(autouse=True)
def _reset() -> None:
    RUNS.clear()
    ATTEMPTS.clear()
    GATES.clear()
    STARTED.clear()


def J(func: Any, **kwargs: Any) -> Job:
    return Job.from_func(func, queue="wf", kwargs=kwargs)


def workflows(polling_interval: float = SLOW_POLL, **options: Any) -> Any:
    """Fresh plugin instances for one test (events belong to one event loop)."""
    return pytest.mark.parametrize(
        "chancy",
        [
            {
                "plugins": [
                    ImmediateLeadership(),
                    WorkflowPlugin(polling_interval=polling_interval, **options),
                ],
                "no_default_plugins": True,
            }
        ],
        indirect=True,
    )


async def declare(chancy: Chancy, name: str = "wf", concurrency: int = 50) -> None:
    await chancy.declare(
        Queue(
            name,
            executor=Chancy.Executor.Async,
            concurrency=concurrency,
            polling_interval=0.1,
            eager_polling=True,
        ),
        upsert=True,
    )


async def wait(
    chancy: Chancy, workflow_id: str, timeout: float = 10, interval: float = 0.02
) -> Workflow:
    return await WorkflowPlugin.wait_for_workflow(
        chancy, workflow_id, interval=interval, timeout=timeout
    )


async def eventually(check: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{check.__name__} never became true")
        await asyncio.sleep(0.02)


async def step_jobs(chancy: Chancy, workflow_id: str) -> dict[str, list[QueuedJob]]:
    """Every job carrying this workflow's id, by step."""
    async with (
        chancy.pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            f"SELECT * FROM {chancy.sql.jobs} WHERE meta->>'workflow_id' = %s ORDER BY id",
            (workflow_id,),
        )
        rows = await cur.fetchall()
    out: dict[str, list[QueuedJob]] = collections.defaultdict(list)
    for row in rows:
        out[row["meta"]["workflow_step_id"]].append(QueuedJob.unpack(row))
    return dict(out)


async def assert_exactly_once(chancy: Chancy, wf: Workflow) -> dict[str, QueuedJob]:
    """One job per step that has one, and it is the job recorded on the step."""
    jobs = await step_jobs(chancy, wf.id)
    assert all(len(found) == 1 for found in jobs.values()), {
        k: len(v) for k, v in jobs.items() if len(v) != 1
    }
    with_job = {sid for sid, step in wf if step.job_id is not None}
    assert set(jobs) == with_job
    for step_id, (job,) in jobs.items():
        assert str(job.id) == wf[step_id].job_id
        assert job.meta["workflow_id"] == wf.id
    return {step_id: found[0] for step_id, found in jobs.items()}


def assert_dependencies_respected(wf: Workflow, jobs: dict[str, QueuedJob]) -> None:
    for step_id, step in wf:
        for dep in step.dependencies:
            assert jobs[dep].completed_at is not None
            assert jobs[step_id].started_at is not None
            assert jobs[step_id].started_at >= jobs[dep].completed_at, (dep, step_id)


async def table_counts(chancy: Chancy) -> tuple[int, int]:
    async with chancy.pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(f'SELECT count(*) FROM "{chancy.prefix}workflows"')
        (workflows_count,) = await cur.fetchone()  # type: ignore[misc]
        await cur.execute(f'SELECT count(*) FROM "{chancy.prefix}workflow_steps"')
        (steps_count,) = await cur.fetchone()  # type: ignore[misc]
    return workflows_count, steps_count


# -- shapes ------------------------------------------------------------------------


@workflows()
async def test_sequential_steps_run_in_order(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    wf = (
        Workflow("chain")
        .add("a", J(record, name="a"))
        .add("b", J(record, name="b"), ["a"])
        .add("c", J(record, name="c"), ["b"])
    )
    workflow_id = await WorkflowPlugin.push(chancy, wf)
    assert workflow_id == wf.id and wf.created_at is not None
    done = await wait(chancy, workflow_id)
    assert done.state is Workflow.State.COMPLETED
    assert RUNS == ["a", "b", "c"]
    assert [s.state for _, s in done] == [QueuedJob.State.SUCCEEDED] * 3
    jobs = await assert_exactly_once(chancy, done)
    assert_dependencies_respected(done, jobs)
    assert jobs["b"].meta == {"workflow_id": wf.id, "workflow_step_id": "b"}


@workflows()
async def test_fan_out_then_fan_in(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    wf = Workflow("fan").add("start", J(record, name="start"))
    wf.add_group(
        [(f"part{i}", J(record, name=f"part{i}")) for i in range(8)], ["start"]
    )
    wf.add("merge", J(record, name="merge"), [f"part{i}" for i in range(8)])
    done = await wait(chancy, await WorkflowPlugin.push(chancy, wf))
    assert done.state is Workflow.State.COMPLETED
    assert RUNS[0] == "start" and RUNS[-1] == "merge"
    assert sorted(RUNS[1:-1]) == [f"part{i}" for i in range(8)]
    jobs = await assert_exactly_once(chancy, done)
    assert_dependencies_respected(done, jobs)


@workflows()
async def test_a_wide_fan_out_is_pushed_at_once(chancy: Chancy, worker: Worker) -> None:
    """150 steps become ready together (one multi-row push, COPY in the core)."""
    await declare(chancy, concurrency=200)
    wf = Workflow("wide").add("start", J(record, name="start"))
    wf.add_group([(f"p{i}", J(record, name=f"p{i}")) for i in range(150)], ["start"])
    wf.add("end", J(record, name="end"), [f"p{i}" for i in range(150)])
    done = await wait(chancy, await WorkflowPlugin.push(chancy, wf), interval=0.05)
    assert done.state is Workflow.State.COMPLETED
    jobs = await assert_exactly_once(chancy, done)
    assert len(jobs) == 152 and len(RUNS) == 152
    assert_dependencies_respected(done, jobs)


@workflows()
async def test_a_step_with_a_held_unique_key_tracks_the_existing_job(
    chancy: Chancy,
) -> None:
    existing = await chancy.push(J(record, name="existing").with_unique_key("k"))
    wf = Workflow("unique").add("a", J(record, name="a").with_unique_key("k"))
    await WorkflowPlugin.push(chancy, wf)
    async with chancy.pool.connection() as conn, conn.cursor() as cursor:
        assert await WorkflowPlugin.process_workflow(cursor, chancy, wf)
    assert wf["a"].job_id == str(existing.identifier)


@workflows()
async def test_diamond(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    wf = (
        Workflow("diamond")
        .add("top", J(record, name="top"))
        .add("left", J(sleepy, name="left", seconds=0.2), ["top"])
        .add("right", J(record, name="right"), ["top"])
        .add("bottom", J(record, name="bottom"), ["left", "right"])
    )
    done = await wait(chancy, await WorkflowPlugin.push(chancy, wf))
    assert done.state is Workflow.State.COMPLETED
    assert RUNS == ["top", "right", "left", "bottom"]
    assert_dependencies_respected(done, await assert_exactly_once(chancy, done))


@workflows()
async def test_sequence(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    seq = Sequence("seq", [J(record, name="one"), J(record, name="two")])
    seq.add(J(record, name="three"))
    done = await wait(chancy, await seq.push(chancy))
    assert done.name == "seq" and done.state is Workflow.State.COMPLETED
    assert RUNS == ["one", "two", "three"]
    assert list(done.steps) == ["step_0", "step_1", "step_2"]
    assert done["step_2"].dependencies == ["step_1"]


@workflows()
async def test_step_jobs_keep_their_settings(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    await declare(chancy, "other")
    wf = (
        Workflow("settings")
        .add("q", J(record, name="q").with_queue("other"))
        .add("p", J(record, name="p").with_priority(7).with_max_attempts(3), ["q"])
        .add("m", J(record, name="m").with_meta({"mine": 1}), ["p"])
    )
    done = await wait(chancy, await WorkflowPlugin.push(chancy, wf))
    assert done.state is Workflow.State.COMPLETED
    jobs = await assert_exactly_once(chancy, done)
    assert jobs["q"].queue == "other"
    assert (jobs["p"].priority, jobs["p"].max_attempts) == (7, 3)
    assert jobs["m"].meta == {"mine": 1, "workflow_id": wf.id, "workflow_step_id": "m"}
    assert done["p"].job.priority == 7 and done["q"].job.queue == "other"


# -- failures, retries, cancellation ----------------------------------------------------


@workflows()
async def test_a_failed_step_fails_the_workflow(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    wf = (
        Workflow("failing")
        .add("a", J(record, name="a"))
        .add("b", J(fail, name="b"), ["a"])
        .add("c", J(record, name="c"), ["b"])
        .add("d", J(record, name="d"), ["c"])
    )
    done = await wait(chancy, await WorkflowPlugin.push(chancy, wf))
    assert done.state is Workflow.State.FAILED
    assert done["a"].state is QueuedJob.State.SUCCEEDED
    assert done["b"].state is QueuedJob.State.FAILED
    assert done["c"].state is None and done["c"].job_id is None
    assert done["d"].state is None and done["d"].job_id is None
    jobs = await assert_exactly_once(chancy, done)
    assert "step b failed" in jobs["b"].errors[-1]["traceback"]
    assert RUNS == ["a", "b"]
    # Nothing more happens later, even after a leader pass.
    plugin = chancy.plugins["chancy.workflow_plugin"]
    assert isinstance(plugin, WorkflowPlugin)
    await plugin.run_once(chancy)
    again = await WorkflowPlugin.fetch_workflow(chancy, wf.id)
    assert again is not None and again.state is Workflow.State.FAILED
    assert again["c"].job_id is None


@workflows()
async def test_a_failed_branch_leaves_running_siblings_alone(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy)
    wf = (
        Workflow("siblings")
        .add("bad", J(fail, name="bad"))
        .add("slow", J(gated, name="slow"))
        .add("after_slow", J(record, name="after_slow"), ["slow"])
    )
    workflow_id = await WorkflowPlugin.push(chancy, wf)
    failed = await wait(chancy, workflow_id)
    assert failed.state is Workflow.State.FAILED
    assert failed["slow"].state is QueuedJob.State.RUNNING  # not cancelled
    GATES["slow"].set()

    async def slow_finished() -> bool:
        found = await WorkflowPlugin.fetch_workflow(chancy, workflow_id)
        return found is not None and found["slow"].state is QueuedJob.State.SUCCEEDED

    await eventually(slow_finished)
    final = await WorkflowPlugin.fetch_workflow(chancy, workflow_id)
    assert final is not None and final.state is Workflow.State.FAILED
    assert final["after_slow"].job_id is None  # a failed workflow pushes nothing more


@workflows()
async def test_a_step_retried_after_a_failure(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    wf = (
        Workflow("retry")
        .add("flaky", J(flaky, name="flaky").with_max_attempts(2))
        .add("after", J(record, name="after"), ["flaky"])
    )
    done = await wait(chancy, await WorkflowPlugin.push(chancy, wf))
    assert done.state is Workflow.State.COMPLETED
    assert ATTEMPTS["flaky"] == 2 and RUNS == ["flaky", "after"]
    jobs = await assert_exactly_once(chancy, done)
    assert jobs["flaky"].attempts == 2 and len(jobs["flaky"].errors) == 1


@workflows()
async def test_cancel_a_workflow(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    wf = (
        Workflow("cancel")
        .add("running", J(gated, name="running"))
        # No worker serves this queue: the step's job stays pending.
        .add("queued", J(record, name="queued").with_queue("nobody"))
        .add("waiting", J(record, name="waiting"), ["running", "queued"])
        .add("done", J(record, name="done"))
    )
    workflow_id = await WorkflowPlugin.push(chancy, wf)
    STARTED.setdefault("running", asyncio.Event())
    await asyncio.wait_for(STARTED["running"].wait(), 5)

    async def done_finished() -> bool:
        found = await WorkflowPlugin.fetch_workflow(chancy, workflow_id)
        return found is not None and found["done"].state is QueuedJob.State.SUCCEEDED

    await eventually(done_finished)
    await WorkflowPlugin.cancel_workflow(chancy, workflow_id)
    cancelled = await wait(chancy, workflow_id)
    assert cancelled.state is Workflow.State.CANCELLED
    jobs = await assert_exactly_once(chancy, cancelled)
    for step_id in ("running", "queued"):
        assert jobs[step_id].state is QueuedJob.State.FAILED
        assert jobs[step_id].errors[-1].get("cancelled") is True
        assert cancelled[step_id].state is QueuedJob.State.FAILED
    assert jobs["done"].state is QueuedJob.State.SUCCEEDED
    assert cancelled["waiting"].job_id is None
    # The interrupted job never finished; a later pass pushes nothing.
    plugin = chancy.plugins["chancy.workflow_plugin"]
    assert isinstance(plugin, WorkflowPlugin)
    await plugin.run_once(chancy)
    await asyncio.sleep(0.2)
    assert "running" not in RUNS
    final = await WorkflowPlugin.fetch_workflow(chancy, workflow_id)
    assert final is not None and final.state is Workflow.State.CANCELLED
    assert final["waiting"].job_id is None
    # Cancelling again, or a finished workflow, changes nothing; unknown ids raise.
    await WorkflowPlugin.cancel_workflow(chancy, workflow_id)
    with pytest.raises(KeyError):
        await WorkflowPlugin.cancel_workflow(chancy, str(uuid.uuid4()))


@workflows()
async def test_cancel_a_workflow_that_has_not_started(chancy: Chancy) -> None:
    wf = (
        Workflow("early")
        .add("a", J(record, name="a"))
        .add("b", J(record, name="b"), ["a"])
    )
    workflow_id = await WorkflowPlugin.push(chancy, wf)
    await WorkflowPlugin.cancel_workflow(chancy, workflow_id)
    plugin = chancy.plugins["chancy.workflow_plugin"]
    assert isinstance(plugin, WorkflowPlugin)
    await plugin.run_once(chancy)
    found = await WorkflowPlugin.fetch_workflow(chancy, workflow_id)
    assert found is not None and found.state is Workflow.State.CANCELLED
    assert [step.job_id for _, step in found] == [None, None]
    assert await step_jobs(chancy, workflow_id) == {}


# -- exactly once: restarts and concurrency ------------------------------------------------


@workflows()
async def test_a_restarted_worker_finishes_the_workflow(chancy: Chancy) -> None:
    await declare(chancy)
    wf = Workflow("restart")
    for i in range(6):
        wf.add(
            f"s{i}", J(sleepy, name=f"s{i}", seconds=0.15), [f"s{i - 1}"] if i else None
        )
    wf.add("side", J(record, name="side"), ["s0"])
    first = Worker(
        chancy, worker_id="first", register_signal_handlers=False, shutdown_timeout=0
    )
    await first.start()
    try:
        workflow_id = await WorkflowPlugin.push(chancy, wf)
        STARTED.setdefault("s2", asyncio.Event())
        await asyncio.wait_for(STARTED["s2"].wait(), 5)
    finally:
        await first.stop()  # s2 is interrupted and put back
    assert "s2" not in RUNS
    midway = await WorkflowPlugin.fetch_workflow(chancy, workflow_id)
    assert midway is not None and midway.state is Workflow.State.RUNNING
    assert midway["s3"].job_id is None

    # A new process: its own app, plugins and worker.
    app = Chancy(
        chancy.dsn,
        plugins=[ImmediateLeadership(), WorkflowPlugin(polling_interval=SLOW_POLL)],
        no_default_plugins=True,
    )
    async with app, Worker(app, worker_id="second", register_signal_handlers=False):
        done = await wait(app, workflow_id)
    assert done.state is Workflow.State.COMPLETED
    assert [r for r in RUNS if r != "side"] == [f"s{i}" for i in range(6)]
    jobs = await assert_exactly_once(chancy, done)
    assert len(jobs) == len(wf)
    assert jobs["s2"].attempts == 1  # the interrupted run was given back
    assert_dependencies_respected(done, jobs)


@workflows(polling_interval=0.02)
async def test_leader_failover_mid_workflow(chancy: Chancy) -> None:
    """Two workers with real elections: the leader stops, the other takes over."""
    await declare(chancy)
    apps = [
        Chancy(
            chancy.dsn,
            plugins=[Leadership(0.2, 0.6), WorkflowPlugin(polling_interval=0.02)],
            no_default_plugins=True,
        )
        for _ in range(2)
    ]
    workers = [
        Worker(
            app, worker_id=f"w{i}", register_signal_handlers=False, shutdown_timeout=0
        )
        for i, app in enumerate(apps)
    ]
    try:
        for app in apps:
            await app.ensure_open()
        await workers[0].start()
        await asyncio.wait_for(workers[0].is_leader.wait(), 5)
        await workers[1].start()
        wf = Workflow("failover")
        for i in range(8):
            wf.add(
                f"s{i}",
                J(sleepy, name=f"s{i}", seconds=0.1),
                [f"s{i - 1}"] if i else None,
            )
        workflow_id = await WorkflowPlugin.push(chancy, wf)
        STARTED.setdefault("s3", asyncio.Event())
        await asyncio.wait_for(STARTED["s3"].wait(), 5)
        await workers[0].stop()
        await asyncio.wait_for(workers[1].is_leader.wait(), 5)
        done = await wait(chancy, workflow_id)
    finally:
        for w in workers:
            await w.stop()
        for app in apps:
            await app.__aexit__(None, None, None)
    assert done.state is Workflow.State.COMPLETED
    jobs = await assert_exactly_once(chancy, done)
    assert len(jobs) == len(wf)
    assert_dependencies_respected(done, jobs)


@workflows(polling_interval=0.01)
async def test_concurrent_advancing_never_pushes_a_step_twice(chancy: Chancy) -> None:
    """Two workers that both believe they lead, passes every 10 ms, plus
    direct process_workflow calls racing with them."""
    await declare(chancy)
    apps = [
        Chancy(
            chancy.dsn,
            plugins=[ImmediateLeadership(), WorkflowPlugin(polling_interval=0.01)],
            no_default_plugins=True,
        )
        for _ in range(2)
    ]
    workers = [
        Worker(app, worker_id=f"c{i}", register_signal_handlers=False)
        for i, app in enumerate(apps)
    ]
    wf = Workflow("race")
    wf.add_group([(f"root{i}", J(noop)) for i in range(20)])
    for i in range(20):
        wf.add(f"mid{i}", J(noop), [f"root{i}", f"root{(i + 1) % 20}"])
    wf.add("sink", J(noop), [f"mid{i}" for i in range(20)])
    stop = asyncio.Event()

    async def meddle() -> None:
        while not stop.is_set():
            async with chancy.pool.connection() as conn:
                async with conn.transaction(), conn.cursor() as cursor:
                    await WorkflowPlugin.process_workflow(cursor, chancy, wf)
            await asyncio.sleep(0.005)

    try:
        for app in apps:
            await app.ensure_open()
        for w in workers:
            await w.start()
        workflow_id = await WorkflowPlugin.push(chancy, wf)
        meddlers = [asyncio.create_task(meddle()) for _ in range(3)]
        done = await wait(chancy, workflow_id, timeout=20)
        stop.set()
        await asyncio.gather(*meddlers)
    finally:
        stop.set()
        for w in workers:
            await w.stop()
        for app in apps:
            await app.__aexit__(None, None, None)
    assert done.state is Workflow.State.COMPLETED
    jobs = await assert_exactly_once(chancy, done)
    assert len(jobs) == len(wf) == 41
    assert_dependencies_respected(done, jobs)


# -- the prompt path under contention, pruned jobs ------------------------------------------


@workflows()
async def test_a_step_finishing_while_the_workflow_is_locked_is_caught_up(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy)
    wf = (
        Workflow("locked")
        .add("a", J(gated, name="a"))
        .add("b", J(record, name="b"), ["a"])
    )
    workflow_id = await WorkflowPlugin.push(chancy, wf)
    STARTED.setdefault("a", asyncio.Event())
    await asyncio.wait_for(STARTED["a"].wait(), 5)
    async with await psycopg.AsyncConnection.connect(chancy.dsn) as other:
        await other.execute(
            f'SELECT 1 FROM "{chancy.prefix}workflows" WHERE id = %s FOR UPDATE',
            (workflow_id,),
        )
        GATES["a"].set()

        async def a_saved() -> bool:
            job = await step_jobs(chancy, workflow_id)
            return job["a"][0].state is QueuedJob.State.SUCCEEDED

        await eventually(a_saved)
        await asyncio.sleep(0.1)
        assert "b" not in await step_jobs(chancy, workflow_id)  # still locked
        await other.rollback()
    done = await wait(chancy, workflow_id, timeout=5)  # far below the 60 s poll
    assert done.state is Workflow.State.COMPLETED
    await assert_exactly_once(chancy, done)


@workflows()
async def test_pruned_step_jobs_do_not_stall_the_workflow(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy)
    wf = (
        Workflow("pruned")
        .add("a", J(record, name="a"))
        .add("b", J(gated, name="b"), ["a"])
        .add("c", J(record, name="c"), ["b"])
    )
    workflow_id = await WorkflowPlugin.push(chancy, wf)
    STARTED.setdefault("b", asyncio.Event())
    await asyncio.wait_for(STARTED["b"].wait(), 5)
    before = await WorkflowPlugin.fetch_workflow(chancy, workflow_id)
    assert before is not None and before["a"].job_id is not None
    assert await chancy.purge_jobs([before["a"].job_id])  # type: ignore[list-item]
    GATES["b"].set()
    done = await wait(chancy, workflow_id)
    assert done.state is Workflow.State.COMPLETED
    assert done["a"].state is QueuedJob.State.SUCCEEDED  # remembered on the step
    assert RUNS == ["a", "b", "c"]


@workflows()
async def test_a_job_deleted_before_it_finished_fails_its_step(chancy: Chancy) -> None:
    wf = (
        Workflow("lost")
        .add("a", J(record, name="a"))
        .add("b", J(record, name="b"), ["a"])
    )
    workflow_id = await WorkflowPlugin.push(chancy, wf)
    async with chancy.pool.connection() as conn, conn.cursor() as cursor:
        assert await WorkflowPlugin.process_workflow(cursor, chancy, wf)
    assert wf.state is Workflow.State.RUNNING and wf["a"].job_id is not None
    await chancy.purge_jobs([wf["a"].job_id])  # type: ignore[list-item]
    plugin = chancy.plugins["chancy.workflow_plugin"]
    assert isinstance(plugin, WorkflowPlugin)
    await plugin.run_once(chancy)
    found = await WorkflowPlugin.fetch_workflow(chancy, workflow_id)
    assert found is not None and found.state is Workflow.State.FAILED
    assert found["a"].state is QueuedJob.State.FAILED and found["b"].job_id is None


# -- the API without a worker ----------------------------------------------------------------


@workflows()
async def test_process_workflow_by_hand(chancy: Chancy) -> None:
    wf = (
        Workflow("manual")
        .add_group([("x", J(record, name="x")), ("y", J(record, name="y"))])
        .add("z", J(record, name="z"), ["x", "y"])
    )
    await WorkflowPlugin.push(chancy, wf)
    assert wf.state is Workflow.State.PENDING
    async with chancy.pool.connection() as conn, conn.cursor() as cursor:
        assert await WorkflowPlugin.process_workflow(cursor, chancy, wf) is True
        assert await WorkflowPlugin.process_workflow(cursor, chancy, wf) is False
    assert wf.state is Workflow.State.RUNNING
    assert wf["x"].state is QueuedJob.State.PENDING and wf["z"].job_id is None
    jobs = await step_jobs(chancy, wf.id)
    assert sorted(jobs) == ["x", "y"]
    assert jobs["x"][0].meta == {"workflow_id": wf.id, "workflow_step_id": "x"}
    assert jobs["x"][0].queue == "wf"
    with pytest.raises(KeyError):
        async with chancy.pool.connection() as conn, conn.cursor() as cursor:
            await WorkflowPlugin.process_workflow(cursor, chancy, Workflow("unsaved"))


@workflows()
async def test_push_on_the_callers_transaction(chancy: Chancy) -> None:
    wf = Workflow("tx").add("a", J(record, name="a"))
    async with chancy.pool.connection() as conn:
        async with conn.transaction():
            async with conn.cursor() as cursor:
                await WorkflowPlugin.push_ex(cursor, chancy, wf)
                found = await WorkflowPlugin.fetch_workflow_ex(cursor, chancy, wf.id)
                assert found is not None and list(found.steps) == ["a"]
            raise psycopg.Rollback()
    assert await WorkflowPlugin.fetch_workflow(chancy, wf.id) is None
    assert await table_counts(chancy) == (0, 0)


@workflows()
async def test_pushing_again_updates_the_workflow(chancy: Chancy) -> None:
    events: list[dict[str, Any]] = []
    wf = Workflow("again").add("a", J(record, name="a"))
    async with await psycopg.AsyncConnection.connect(
        chancy.dsn, autocommit=True
    ) as listener:
        await listener.execute(f'LISTEN "{chancy.prefix}events"')

        async def next_event() -> None:
            async for note in listener.notifies(timeout=2, stop_after=1):
                events.append(json.loads(note.payload))

        first_id = await WorkflowPlugin.push(chancy, wf)
        await next_event()
        async with chancy.pool.connection() as conn, conn.cursor() as cursor:
            await WorkflowPlugin.process_workflow(cursor, chancy, wf)
        await next_event()  # the step's job: queue.pushed
        job_id = wf["a"].job_id
        wf.name = "renamed"
        wf.add("b", J(record, name="b"), ["a"])
        wf["a"].job = J(record, name="changed")
        assert await WorkflowPlugin.push(chancy, wf) == first_id
        await next_event()
    assert events == [
        {"t": "workflow.created", "id": first_id, "name": "again"},
        {"t": "queue.pushed", "q": "wf"},
        {"t": "workflow.updated", "id": first_id, "name": "renamed"},
    ]
    found = await WorkflowPlugin.fetch_workflow(chancy, first_id)
    assert found is not None and found.name == "renamed"
    assert list(found.steps) == ["a", "b"]
    assert found["a"].job_id == job_id  # a step with a job keeps it...
    assert found["a"].job.kwargs == {"name": "a"}  # ...and its job
    assert await table_counts(chancy) == (1, 2)


@workflows()
async def test_invalid_workflows_write_nothing(chancy: Chancy) -> None:
    cyclic = Workflow("cyclic").add("a", J(record, name="a"), ["b"])
    cyclic.add("b", J(record, name="b"), ["a"])
    mismatched = Workflow("mismatched").add("a", J(record, name="a"))
    mismatched.steps["other"] = WorkflowStep(J(record, name="x"), "x")
    cases: list[tuple[Workflow, type[Exception]]] = [
        (Workflow("empty"), EmptyWorkflowError),
        (
            Workflow("dangling").add("a", J(record, name="a"), ["ghost"]),
            UnknownDependencyError,
        ),
        (cyclic, CycleError),
        (
            Workflow("json").add("ok", J(noop)).add("bad", J(record, name=object())),
            InvalidStepError,
        ),
        (mismatched, ValueError),
        # Jobs that push() would refuse when the step is due:
        (
            Workflow("range").add("a", J(noop).with_priority(2**31)),
            InvalidStepError,
        ),
        (Workflow("nul").add("a", J(record, name="\x00")), InvalidStepError),
        (Workflow("surrogate").add("a", J(record, name="\udc00")), InvalidStepError),
        (Workflow("nul\x00name").add("a", J(noop)), InvalidStepError),
        (Workflow("nul step").add("a\x00", J(noop)), InvalidStepError),
    ]
    for wf, error in cases:
        with pytest.raises(error):
            await WorkflowPlugin.push(chancy, wf)
        async with chancy.pool.connection() as conn:
            async with conn.transaction(), conn.cursor() as cursor:
                with pytest.raises(error):
                    await WorkflowPlugin.push_ex(cursor, chancy, wf)
        assert wf.created_at is None
    with pytest.raises(EmptyWorkflowError):
        await Sequence("nothing").push(chancy)
    assert await table_counts(chancy) == (0, 0)
    assert await step_jobs(chancy, cyclic.id) == {}


@workflows()
async def test_wait_for_workflow_errors(chancy: Chancy) -> None:
    with pytest.raises(KeyError):
        await WorkflowPlugin.wait_for_workflow(chancy, str(uuid.uuid4()), interval=0.01)
    with pytest.raises(KeyError):
        await WorkflowPlugin.wait_for_workflow(chancy, "not-a-uuid", interval=0.01)
    workflow_id = await WorkflowPlugin.push(chancy, Workflow("w").add("a", J(noop)))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await WorkflowPlugin.wait_for_workflow(
            chancy, workflow_id, interval=0.02, timeout=0.2
        )
    assert time.monotonic() - started < 2


@workflows()
async def test_fetch_workflows_filters(chancy: Chancy) -> None:
    ids = [
        await WorkflowPlugin.push(chancy, Workflow(f"w{i}").add("a", J(noop)))
        for i in range(3)
    ]
    await WorkflowPlugin.cancel_workflow(chancy, ids[1])
    everything = await WorkflowPlugin.fetch_workflows(chancy)
    assert [w.id for w in everything] == ids[::-1]  # newest first
    cancelled = await WorkflowPlugin.fetch_workflows(
        chancy, states=[Workflow.State.CANCELLED]
    )
    assert [w.id for w in cancelled] == [ids[1]]
    pending = await WorkflowPlugin.fetch_workflows(
        chancy, states=["pending"], ids=ids[:2]
    )
    assert [w.id for w in pending] == [ids[0]]
    assert len(await WorkflowPlugin.fetch_workflows(chancy, limit=2)) == 2
    assert await WorkflowPlugin.fetch_workflow(chancy, str(uuid.uuid4())) is None
    one = await WorkflowPlugin.fetch_workflow(chancy, uuid.UUID(ids[2]))
    assert one is not None and one.name == "w2" and one["a"].state is None


@workflows()
async def test_pictures_of_a_stored_workflow(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    wf = (
        Workflow("picture")
        .add("ok", J(record, name="ok"))
        .add("bad", J(fail, name="bad"), ["ok"])
        .add("never", J(record, name="never"), ["bad"])
    )
    done = await wait(chancy, await WorkflowPlugin.push(chancy, wf))
    out = io.StringIO()
    WorkflowPlugin.generate_dot(done, out)
    dot = out.getvalue()
    assert 'label="picture (failed)";' in dot
    assert '"ok" [label="ok\\nsucceeded", fillcolor=lightgreen];' in dot
    assert '"bad" [label="bad\\nfailed", fillcolor=lightpink];' in dot
    assert '"never" [label="never\\nnot started", fillcolor=lightgrey];' in dot
    assert '"ok" -> "bad";' in dot and '"bad" -> "never";' in dot
    mermaid = WorkflowPlugin.generate_mermaid(done)
    assert 'title: "picture (failed)"' in mermaid
    assert 's1["bad<br/>failed"]:::failed' in mermaid and "s1 --> s2" in mermaid


@workflows(pruning_rule=WorkflowRules.Age() >= 0)
async def test_cleanup_deletes_finished_workflows(chancy: Chancy) -> None:
    finished = Workflow("finished").add("a", J(noop)).add("b", J(noop), ["a"])
    await WorkflowPlugin.push(chancy, finished)
    await WorkflowPlugin.cancel_workflow(chancy, finished.id)
    await WorkflowPlugin.push(chancy, Workflow("active").add("a", J(noop)))
    assert await table_counts(chancy) == (2, 3)
    plugin = chancy.plugins["chancy.workflow_plugin"]
    assert await plugin.cleanup(chancy) == 1
    assert await table_counts(chancy) == (1, 1)  # steps went with it
    assert await WorkflowPlugin.fetch_workflow(chancy, finished.id) is None
    assert (
        await WorkflowPlugin(pruning_rule=WorkflowRules.Age() > 3600).cleanup(chancy)
        == 0
    )


@workflows(max_workflows_per_run=2)
async def test_passes_visit_every_workflow_oldest_first(chancy: Chancy) -> None:
    plugin = chancy.plugins["chancy.workflow_plugin"]
    assert isinstance(plugin, WorkflowPlugin)
    ids = [
        await WorkflowPlugin.push(chancy, Workflow(f"w{i}").add("a", J(noop)))
        for i in range(4)
    ]
    # An empty workflow left by an old version: marked failed.
    empty = str(uuid.uuid4())
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f'INSERT INTO "{chancy.prefix}workflows" (id, name, state) VALUES (%s, %s, %s)',
            (empty, "empty", "pending"),
        )
    position = await plugin.run_once(chancy)
    assert position is not None
    states = {w.id: w.state for w in await WorkflowPlugin.fetch_workflows(chancy)}
    assert [states[i] for i in ids] == ["running", "running", "pending", "pending"]
    position = await plugin.run_once(chancy, position=position)
    position = await plugin.run_once(chancy, position=position)
    assert position is None  # the end: the next pass starts over
    states = {w.id: w.state for w in await WorkflowPlugin.fetch_workflows(chancy)}
    assert [states[i] for i in ids] == ["running"] * 4
    assert states[empty] == "failed"


# -- scale -------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
@workflows()
async def test_a_thousand_steps(chancy: Chancy, worker: Worker) -> None:
    """10 chains of 100 steps (wide and deep); must stay well under 20 s."""
    await declare(chancy, concurrency=100)
    wf = Workflow("big")
    for chain in range(10):
        for i in range(100):
            wf.add(f"c{chain}_{i}", J(noop), [f"c{chain}_{i - 1}"] if i else None)
    started = time.monotonic()
    workflow_id = await WorkflowPlugin.push(chancy, wf)
    pushed = time.monotonic() - started
    done = await wait(chancy, workflow_id, timeout=20, interval=0.1)
    elapsed = time.monotonic() - started
    assert done.state is Workflow.State.COMPLETED
    assert len(done) == 1000
    jobs = await assert_exactly_once(chancy, done)
    assert len(jobs) == 1000
    assert_dependencies_respected(done, jobs)
    assert pushed < 2 and elapsed < 20, (pushed, elapsed)
    print(f"1000 steps: push {pushed:.3f}s, completed after {elapsed:.2f}s")
