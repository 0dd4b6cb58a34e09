"""Pruning against a real database."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from psycopg import sql

from chancy import Chancy, Job, Worker
from chancy.hub import Event
from chancy.plugin import Plugin
from chancy.plugins.leadership import ImmediateLeadership, Leadership
from chancy.plugins.pruner import Pruner
from chancy.plugins.rule import Age, Queue, State
from chancy.rule import SQLAble

NO_DEFAULTS = {"plugins": [], "no_default_plugins": True}
uses_db = pytest.mark.parametrize("chancy", [NO_DEFAULTS], indirect=True)
STATES = ("pending", "running", "retrying", "succeeded", "failed")


async def insert_job(
    chancy: Chancy, *, state: str = "succeeded", queue: str = "default", age: float = 0
) -> uuid.UUID:
    """A job in ``state``, created ``age`` seconds ago."""
    job_id = uuid.uuid4()
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"INSERT INTO {chancy.sql.jobs} (id, queue, func, state, created_at)"
            " VALUES (%s, %s, 'somewhere.something', %s, NOW() - make_interval(secs => %s))",
            (job_id, queue, state, age),
        )
    return job_id


async def remaining(chancy: Chancy) -> set[uuid.UUID]:
    async with chancy.pool.connection() as conn:
        cursor = await conn.execute(f"SELECT id FROM {chancy.sql.jobs}")
        return {r[0] for r in await cursor.fetchall()}


async def prune(chancy: Chancy, pruner: Pruner) -> int:
    async with chancy.pool.connection() as conn, conn.cursor() as cursor:
        return await pruner.prune(chancy, cursor)


class Everything:
    """A custom SQLAble: matches every row."""

    def to_sql(self) -> sql.Composable:
        return sql.SQL("TRUE")


@uses_db
@pytest.mark.parametrize(
    "rule",
    [
        Age() > 0,
        State().is_in(["pending", "running", "retrying"]),
        (State() == "pending") | (Age() >= 0),
        Everything(),
    ],
    ids=["age", "unfinished-states", "or", "custom-true"],
)
async def test_unfinished_jobs_are_never_pruned_whatever_the_rule(
    chancy: Chancy, rule: SQLAble
) -> None:
    ids = {
        state: await insert_job(chancy, state=state, age=10 * 86400) for state in STATES
    }
    removed = await prune(chancy, Pruner(rule))
    left = await remaining(chancy)
    assert {ids["pending"], ids["running"], ids["retrying"]} <= left
    assert removed == len(ids) - len(left)
    if removed:
        assert left == {ids["pending"], ids["running"], ids["retrying"]}


@uses_db
async def test_age_rule_keeps_fresh_jobs_and_removes_old_ones(chancy: Chancy) -> None:
    fresh = (await chancy.push(Job(func="somewhere.something"))).identifier
    old = (await chancy.push(Job(func="somewhere.something"))).identifier
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"UPDATE {chancy.sql.jobs} SET state = 'succeeded', completed_at = NOW()"
        )
        await conn.execute(
            f"UPDATE {chancy.sql.jobs} SET created_at = created_at - interval '2 hours'"
            " WHERE id = %s",
            (old,),
        )
    assert await prune(chancy, Pruner(Age() > 60 * 60, poll_interval=10)) == 1
    assert await remaining(chancy) == {fresh}


@uses_db
async def test_the_default_rule_keeps_finished_jobs_one_day(chancy: Chancy) -> None:
    hours = await insert_job(chancy, state="failed", age=23 * 3600)
    await insert_job(chancy, state="failed", age=25 * 3600)
    await insert_job(chancy, state="succeeded", age=25 * 3600)
    assert await prune(chancy, Pruner()) == 2
    assert await remaining(chancy) == {hours}


@uses_db
async def test_queue_and_age_rule(chancy: Chancy) -> None:
    old_x = await insert_job(chancy, queue="x", age=10)
    fresh_x = await insert_job(chancy, queue="x", age=0)
    old_y = await insert_job(chancy, queue="y", age=10)
    running_x = await insert_job(chancy, queue="x", state="running", age=10)
    assert await prune(chancy, Pruner((Queue() == "x") & (Age() > 1))) == 1
    assert old_x not in await remaining(chancy)
    assert await remaining(chancy) == {fresh_x, old_y, running_x}


@uses_db
async def test_rule_values_are_parameters(chancy: Chancy) -> None:
    odd = "o'brien %s 100%"
    gone = await insert_job(chancy, queue=odd)
    kept = await insert_job(chancy, queue="o'brien")
    assert await prune(chancy, Pruner(Queue() == odd)) == 1
    assert await remaining(chancy) == {kept}
    assert gone not in await remaining(chancy)


@uses_db
async def test_maximum_to_prune_bounds_a_pass(chancy: Chancy) -> None:
    for _ in range(12):
        await insert_job(chancy, age=10)
    pruner = Pruner(Age() > 1, maximum_to_prune=5, batch_size=2)
    assert [await pruner.run_once(chancy) for _ in range(4)] == [5, 5, 2, 0]
    assert await remaining(chancy) == set()
    assert (pruner.passes, pruner.last_removed, pruner.rows_removed) == (4, 0, 12)


@uses_db
async def test_prune_on_the_callers_transaction_commits_with_it(chancy: Chancy) -> None:
    for _ in range(5):
        await insert_job(chancy, age=10)
    pruner = Pruner(Age() > 1, batch_size=2)

    class Rollback(Exception):
        pass

    async with chancy.pool.connection() as conn:
        with pytest.raises(Rollback):
            async with conn.transaction(), conn.cursor() as cursor:
                assert await pruner.prune(chancy, cursor) == 5
                raise Rollback
    assert (
        len(await remaining(chancy)) == 5
    )  # rolled back with the caller's transaction
    assert await prune(chancy, pruner) == 5
    assert await remaining(chancy) == set()


@uses_db
async def test_a_pass_notifies_what_it_removed(chancy: Chancy, worker: Worker) -> None:
    await insert_job(chancy, age=10)
    await insert_job(chancy, age=10)
    waiter = asyncio.ensure_future(worker.hub.wait_for("pruner.removed", timeout=5))
    await asyncio.sleep(0)
    assert await Pruner(Age() > 1).run_once(chancy) == 2
    (event,) = await waiter
    assert event.body["rows_removed"] == 2 and event.body["elapsed"] >= 0


class Cleaner(Plugin):
    """A plugin with a table of its own to trim."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.called = asyncio.Event()

    @staticmethod
    def get_identifier() -> str:
        return "tests.cleaner"

    async def cleanup(self, chancy: Chancy) -> int | None:
        self.calls += 1
        self.called.set()
        return 7


@pytest.mark.parametrize(
    "chancy",
    [
        {
            "plugins": [
                ImmediateLeadership(),
                Pruner(Age() > 1, poll_interval=0.1),
                Cleaner(),
            ],
            "no_default_plugins": True,
        }
    ],
    indirect=True,
)
async def test_every_plugins_cleanup_is_called_after_a_pass(
    chancy: Chancy, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chancy")
    cleaner = chancy.plugins["tests.cleaner"]
    assert isinstance(cleaner, Cleaner)
    await asyncio.wait_for(cleaner.called.wait(), 5)
    pruner = chancy.plugins["chancy.pruner"]
    assert isinstance(pruner, Pruner)
    await pruner.wait_for_passes(1, timeout=5)
    assert cleaner.calls >= 1
    assert "cleanup of tests.cleaner removed 7 row(s)" in caplog.text


@pytest.mark.parametrize(
    "chancy",
    [
        {
            "plugins": [Leadership(0.2, 0.6), Pruner(Age() > 60, poll_interval=0.1)],
            "no_default_plugins": True,
        }
    ],
    indirect=True,
)
async def test_the_leader_prunes_without_being_asked(
    chancy: Chancy, worker: Worker
) -> None:
    pruner = chancy.plugins["chancy.pruner"]
    assert isinstance(pruner, Pruner)
    removed: list[Event] = []
    worker.hub.on("pruner.removed", removed.append)
    await asyncio.wait_for(worker.is_leader.wait(), 2)
    old = await insert_job(chancy, age=3600)
    fresh = await insert_job(chancy, age=0)
    async with asyncio.timeout(5):
        while old in await remaining(chancy):
            await pruner.wait_for_passes(1)
    assert await remaining(chancy) == {fresh}
    await asyncio.sleep(0.1)
    assert any(e.body["rows_removed"] == 1 for e in removed)


@pytest.mark.parametrize(
    "chancy",
    [
        {
            "plugins": [Leadership(0.1, 0.3), Pruner(Age() > 1, poll_interval=0.05)],
            "no_default_plugins": True,
        }
    ],
    indirect=True,
)
async def test_a_worker_that_does_not_lead_does_not_prune(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"INSERT INTO {chancy.sql.leader} (id, worker_id, expires_at)"
            " VALUES (1, 'someone-else', NOW() + interval '1 hour')"
        )
    kept = await insert_job(chancy, age=10)
    await worker_no_start.start()
    leadership = chancy.plugins["chancy.leadership"]
    assert isinstance(leadership, Leadership)
    await leadership.wait_for_round(rounds=3, timeout=5)
    pruner = chancy.plugins["chancy.pruner"]
    assert isinstance(pruner, Pruner)
    assert not worker_no_start.is_leader.is_set()
    assert pruner.passes == 0
    assert await remaining(chancy) == {kept}


@pytest.mark.parametrize(
    "chancy",
    [
        {
            "plugins": [ImmediateLeadership(), Pruner(Age() > 60, poll_interval=3600)],
            "no_default_plugins": True,
        }
    ],
    indirect=True,
)
async def test_wake_up_runs_a_pass_now_instead_of_after_poll_interval(
    chancy: Chancy, worker: Worker
) -> None:
    pruner = chancy.plugins["chancy.pruner"]
    assert isinstance(pruner, Pruner)
    if pruner.passes == 0:
        await pruner.wait_for_passes(1, timeout=5)  # the pass at start
    old = await insert_job(chancy, age=3600)
    pruner.wake_up()
    await pruner.wait_for_passes(1, timeout=5)
    assert old not in await remaining(chancy)


@pytest.mark.parametrize(
    "chancy",
    [
        {
            "plugins": [
                ImmediateLeadership(),
                Pruner(
                    Age() > 60, maximum_to_prune=20, batch_size=10, poll_interval=3600
                ),
            ],
            "no_default_plugins": True,
        }
    ],
    indirect=True,
)
async def test_a_backlog_is_pruned_in_catch_up_passes_not_one_per_interval(
    chancy: Chancy,
) -> None:
    """A pass that removed its whole maximum runs the next soon after
    (``catch_up_interval``), not a ``poll_interval`` later: otherwise a queue
    finishing more than maximum_to_prune / poll_interval jobs a second grows
    its table forever."""
    pruner = chancy.plugins["chancy.pruner"]
    assert isinstance(pruner, Pruner)
    pruner.catch_up_interval = 0.05
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"INSERT INTO {chancy.sql.jobs} (id, queue, func, state, created_at)"
            " SELECT gen_random_uuid(), 'default', 'm.f', 'succeeded',"
            " NOW() - interval '1 hour' FROM generate_series(1, 95)"
        )
    fresh = await insert_job(chancy, age=0)
    async with Worker(chancy):
        async with asyncio.timeout(10):
            while len(await remaining(chancy)) > 1:
                await asyncio.sleep(0.05)
    assert await remaining(chancy) == {fresh}
    assert pruner.passes >= 5  # 95 rows at 20 a pass, without waiting an hour
