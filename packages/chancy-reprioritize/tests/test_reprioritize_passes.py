"""Reprioritize passes against a real database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from chancy import Chancy, Job, Queue, Worker
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.reprioritize import Reprioritize
from chancy.plugins.rule import Age
from chancy.plugins.rule import Queue as QueueRule
from chancy.rule import JobRules

NO_DEFAULTS = {"plugins": [], "no_default_plugins": True}
uses_db = pytest.mark.parametrize("chancy", [NO_DEFAULTS], indirect=True)
STATES = ("pending", "running", "retrying", "succeeded", "failed")


def simple_job() -> None:
    pass


async def insert_job(
    chancy: Chancy, *, state: str = "pending", queue: str = "default", priority: int = 0
) -> uuid.UUID:
    """A job in ``state``, created a minute ago."""
    job_id = uuid.uuid4()
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"INSERT INTO {chancy.sql.jobs} (id, queue, func, state, priority, created_at)"
            " VALUES (%s, %s, 'somewhere.something', %s, %s,"
            " NOW() - interval '1 minute')",
            (job_id, queue, state, priority),
        )
    return job_id


async def priorities(chancy: Chancy) -> dict[uuid.UUID, int]:
    async with chancy.pool.connection() as conn:
        cursor = await conn.execute(f"SELECT id, priority FROM {chancy.sql.jobs}")
        return {row[0]: row[1] for row in await cursor.fetchall()}


@pytest.mark.parametrize(
    "chancy",
    [
        {
            "plugins": [
                ImmediateLeadership(),
                Reprioritize(
                    JobRules.Age() > 0, check_interval=0.2, priority_increase=5
                ),
            ],
            "no_default_plugins": True,
        }
    ],
    indirect=True,
)
async def test_basic_reprioritization(chancy: Chancy, worker: Worker) -> None:
    """The original's test: a waiting job gains priority within 2 seconds."""
    await chancy.declare(Queue("default", executor=Chancy.Executor.Async))
    done = asyncio.ensure_future(worker.hub.wait_for("reprioritize.done", timeout=2))
    ref = await chancy.push(
        Job.from_func(simple_job).with_scheduled_at(
            datetime.now(tz=UTC) + timedelta(minutes=10)
        )
    )
    initial = await chancy.get_job(ref)
    assert initial is not None
    async with asyncio.timeout(2):
        while True:
            updated = await chancy.get_job(ref)
            assert updated is not None
            if updated.priority > initial.priority:
                break
            await asyncio.sleep(0.05)
    assert (updated.priority - initial.priority) % 5 == 0
    (event,) = await done
    assert set(event.body) == {"rows", "elapsed"}
    plugin = chancy.plugins["chancy.reprioritize"]
    assert isinstance(plugin, Reprioritize)
    assert plugin.passes >= 1 and plugin.rows_updated >= 1


@uses_db
async def test_a_pass_raises_each_matching_job_once(chancy: Chancy) -> None:
    """Batches smaller than the matching rows, and rows that still match after
    the update: every job is raised exactly once per pass."""
    ids = [await insert_job(chancy) for _ in range(7)]
    plugin = Reprioritize(Age() > 0, batch_size=2, priority_increase=3)
    assert await plugin.reprioritize(chancy) == 7
    assert await priorities(chancy) == dict.fromkeys(ids, 3)
    assert await plugin.reprioritize(chancy) == 7
    assert await priorities(chancy) == dict.fromkeys(ids, 6)
    assert (plugin.passes, plugin.last_updated, plugin.rows_updated) == (2, 7, 14)


@uses_db
async def test_only_waiting_jobs_are_raised(chancy: Chancy) -> None:
    ids = {state: await insert_job(chancy, state=state) for state in STATES}
    plugin = Reprioritize(Age() > 0, batch_size=1)
    assert await plugin.reprioritize(chancy) == 2
    assert await priorities(chancy) == {
        ids["pending"]: 1,
        ids["retrying"]: 1,
        ids["running"]: 0,
        ids["succeeded"]: 0,
        ids["failed"]: 0,
    }


@uses_db
async def test_the_rule_selects_the_jobs(chancy: Chancy) -> None:
    a = await insert_job(chancy, queue="a")
    b = await insert_job(chancy, queue="b")
    young = Reprioritize(Age() > 3600)
    assert await young.reprioritize(chancy) == 0
    plugin = Reprioritize((QueueRule() == "a") & (Age() > 0), priority_increase=-2)
    assert await plugin.reprioritize(chancy) == 1
    assert await priorities(chancy) == {a: -2, b: 0}


@uses_db
async def test_locked_jobs_are_skipped_and_priorities_saturate(
    chancy: Chancy,
) -> None:
    locked = await insert_job(chancy)
    top = await insert_job(chancy, priority=2**31 - 2)
    free = await insert_job(chancy)
    plugin = Reprioritize(Age() > 0, priority_increase=5, batch_size=1)
    async with chancy.pool.connection() as conn, conn.transaction():
        await conn.execute(
            f"SELECT 1 FROM {chancy.sql.jobs} WHERE id = %s FOR UPDATE", (locked,)
        )
        assert await plugin.reprioritize(chancy) == 2
    assert await priorities(chancy) == {locked: 0, top: 2**31 - 1, free: 5}


@uses_db
async def test_a_pass_notifies_what_it_did(chancy: Chancy, worker: Worker) -> None:
    # A queue the worker does not serve: it would otherwise take the jobs
    # (pending -> running) before the pass sees them.
    await insert_job(chancy, queue="unserved")
    await insert_job(chancy, queue="unserved")
    waiter = asyncio.ensure_future(worker.hub.wait_for("reprioritize.done", timeout=5))
    await asyncio.sleep(0)
    plugin = Reprioritize(Age() > 0)
    assert await plugin.reprioritize(chancy) == 2
    (event,) = await waiter
    assert event.body["rows"] == 2 and event.body["elapsed"] >= 0


@pytest.mark.parametrize(
    "chancy",
    [
        {
            "plugins": [
                ImmediateLeadership(),
                Reprioritize(JobRules.Age() > 0, check_interval=3600),
            ],
            "no_default_plugins": True,
        }
    ],
    indirect=True,
)
async def test_wake_up_runs_a_pass_on_the_leader(
    chancy: Chancy, worker: Worker
) -> None:
    job = await insert_job(chancy, queue="unserved")  # out of the worker's reach
    plugin = chancy.plugins["chancy.reprioritize"]
    assert isinstance(plugin, Reprioritize)
    assert plugin.passes == 0  # the first pass waits one interval
    waiting = asyncio.ensure_future(plugin.wait_for_passes(1, timeout=2))
    await asyncio.sleep(0)
    plugin.wake_up()
    await waiting
    assert (plugin.passes, plugin.last_updated) == (1, 1)
    assert await priorities(chancy) == {job: 1}
