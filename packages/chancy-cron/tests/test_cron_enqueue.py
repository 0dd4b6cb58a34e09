"""Schedules in the database, firing exactly once with many workers, with or
without a leadership plugin.

To make a schedule due without waiting, tests move its ``next_run`` into the
past. Pushed jobs go to a queue no worker serves, so they stay pending and the
number of firings is read from the plugins' counters (a push whose unique key
is held by a pending job is a no-op, so counting jobs would hide a double
firing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from chancy import Chancy, Job, Worker, job
from chancy.plugins.cron import Cron, CronExpressionError, UnknownTimeZoneError
from chancy.plugins.leadership import ImmediateLeadership, Leadership

QUEUE = "cron_test_unserved"


def cron_app(poll_interval: float = 60) -> dict[str, Any]:
    return {
        "plugins": [Cron(poll_interval=poll_interval), ImmediateLeadership()],
        "no_default_plugins": True,
    }


def uses_cron(poll_interval: float = 60) -> pytest.MarkDecorator:
    """The ``chancy`` fixture with fresh Cron and ImmediateLeadership plugins."""
    return pytest.mark.parametrize("chancy", [cron_app(poll_interval)], indirect=True)


def uses_cron_alone(poll_interval: float = 60) -> pytest.MarkDecorator:
    """The ``chancy`` fixture with a fresh Cron plugin and no leadership plugin."""
    app = {"plugins": [Cron(poll_interval=poll_interval)], "no_default_plugins": True}
    return pytest.mark.parametrize("chancy", [app], indirect=True)


def a_job(key: str, **kwargs: Any) -> Job:
    return Job(func="app.tasks.work", queue=QUEUE, kwargs=kwargs, unique_key=key)


def plugin_of(app: Chancy) -> Cron:
    plugin = app.plugins["chancy.cron"]
    assert isinstance(plugin, Cron)
    return plugin


async def sql(app: Chancy, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with app.pool.connection() as conn:
        cursor = await conn.execute(query.replace("{p}", app.prefix), params)
        return await cursor.fetchall() if cursor.description else []


async def make_due(app: Chancy, *keys: str) -> None:
    if keys:
        await sql(
            app,
            "UPDATE {p}cron SET next_run = NOW() - interval '1 minute'"
            " WHERE unique_key = ANY(%s)",
            list(keys),
        )
    else:
        await sql(app, "UPDATE {p}cron SET next_run = NOW() - interval '1 minute'")


async def due_count(app: Chancy) -> int:
    return (await sql(app, "SELECT count(*) FROM {p}cron WHERE next_run <= NOW()"))[0][
        0
    ]


async def jobs_with_key(app: Chancy, key: str) -> list[tuple[Any, ...]]:
    return await sql(
        app,
        "SELECT id, func, queue, kwargs, scheduled_at, state FROM {p}jobs WHERE unique_key = %s",
        key,
    )


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 5, interval: float = 0.02
) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def cluster(
    dsn: str, plugins: list[list[Any]], **worker_options: Any
) -> AsyncIterator[list[Worker]]:
    """One app and one started worker per plugin list, all on the same database."""
    workers: list[Worker] = []
    apps = [
        Chancy(dsn, plugins=p, no_default_plugins=True, max_connection_pool_size=4)
        for p in plugins
    ]
    try:
        for i, app in enumerate(apps):
            await app.ensure_open()
            worker = Worker(
                app,
                worker_id=f"cron-test-{i}",
                register_signal_handlers=False,
                shutdown_timeout=5,
                **worker_options,
            )
            await worker.start()
            workers.append(worker)
        yield workers
    finally:
        for worker in workers:
            await worker.stop()
        for app in apps:
            await app.__aexit__(None, None, None)


# ---------------------------------------------------------------------------
# Managing schedules
# ---------------------------------------------------------------------------


@uses_cron()
async def test_schedule_stores_expression_and_next_run(chancy: Chancy) -> None:
    before = datetime.now(UTC)
    await Cron.schedule(chancy, "*/5 * * * *", a_job("five", n=1))
    schedules = await Cron.get_schedules(chancy)
    assert list(schedules) == ["five"]
    row = schedules["five"]
    assert row["unique_key"] == "five"
    assert row["cron"] == "*/5 * * * *"
    assert row["timezone"] == "UTC"
    assert row["last_run"] is None
    assert (
        before - timedelta(seconds=5)
        < row["next_run"]
        <= before + timedelta(minutes=5, seconds=5)
    )
    assert row["next_run"].minute % 5 == 0 and row["next_run"].second == 0
    stored = row["job"]
    assert isinstance(stored, Job)
    assert (stored.func, stored.queue, stored.kwargs, stored.unique_key) == (
        "app.tasks.work",
        QUEUE,
        {"n": 1},
        "five",
    )
    assert await jobs_with_key(chancy, "five") == []  # nothing pushed yet


@uses_cron()
async def test_schedule_several_jobs_a_decorated_function_and_a_time_zone(
    chancy: Chancy,
) -> None:
    @job(queue=QUEUE, unique_key="decorated")
    def decorated() -> None: ...

    await Cron.schedule(
        chancy, "30 2 * * *", decorated, a_job("plain"), timezone="America/New_York"
    )
    schedules = await Cron.get_schedules(chancy)
    assert set(schedules) == {"decorated", "plain"}
    for row in schedules.values():
        assert row["timezone"] == "America/New_York"
        local = row["next_run"].astimezone(ZoneInfo("America/New_York"))
        assert (local.hour, local.minute) in {(2, 30), (3, 0)}
    assert schedules["decorated"]["job"].func.endswith("decorated")


@uses_cron()
async def test_rescheduling_replaces_expression_job_and_time_zone(
    chancy: Chancy,
) -> None:
    await Cron.schedule(chancy, "*/5 * * * *", a_job("k", n=1))
    await sql(chancy, "UPDATE {p}cron SET last_run = NOW() - interval '1 day'")
    await Cron.schedule(chancy, "0 12 * * *", a_job("k", n=2), timezone="Asia/Tokyo")
    row = (await Cron.get_schedules(chancy))["k"]
    assert row["cron"] == "0 12 * * *"
    assert row["timezone"] == "Asia/Tokyo"
    assert row["job"].kwargs == {"n": 2}
    assert row["next_run"].astimezone(ZoneInfo("Asia/Tokyo")).hour == 12
    assert row["last_run"] is not None  # history is kept


@uses_cron()
async def test_unschedule(chancy: Chancy) -> None:
    await Cron.schedule(chancy, "* * * * *", a_job("a"), a_job("b"), a_job("c"))
    assert await Cron.unschedule(chancy, "a", "c", "missing") == ["a", "c"]
    assert list(await Cron.get_schedules(chancy)) == ["b"]
    assert await Cron.unschedule(chancy) == []
    assert await Cron.unschedule(chancy, "a") == []


@uses_cron()
async def test_get_schedules_filter(chancy: Chancy) -> None:
    # Yearly, not hourly: at hh:59 an hourly and a per-minute schedule are
    # due at the same moment and "soonest first" has no order between them.
    await Cron.schedule(chancy, "0 0 1 1 *", a_job("yearly"))
    await Cron.schedule(chancy, "* * * * *", a_job("minutely"))
    everything = await Cron.get_schedules(chancy)
    assert list(everything) == ["minutely", "yearly"]  # soonest first
    assert list(await Cron.get_schedules(chancy, unique_keys=["yearly"])) == ["yearly"]
    assert list(await Cron.get_schedules(chancy, unique_keys=["yearly", "nope"])) == [
        "yearly"
    ]
    assert await Cron.get_schedules(chancy, unique_keys=[]) == {}


@uses_cron()
async def test_ex_variants_use_the_callers_transaction(chancy: Chancy) -> None:
    async with chancy.pool.connection() as conn:
        async with conn.transaction(force_rollback=True), conn.cursor() as cursor:
            await Cron.schedule_ex(chancy, cursor, "* * * * *", a_job("rolled-back"))
            inside = await Cron.get_schedules_ex(chancy, cursor)
            assert list(inside) == ["rolled-back"]
    assert await Cron.get_schedules(chancy) == {}
    async with chancy.pool.connection() as conn:
        async with conn.transaction(), conn.cursor() as cursor:
            await Cron.schedule_ex(chancy, cursor, "* * * * *", a_job("kept"))
    assert list(await Cron.get_schedules(chancy)) == ["kept"]
    async with chancy.pool.connection() as conn:
        async with conn.transaction(), conn.cursor() as cursor:
            assert await Cron.unschedule_ex(chancy, cursor, "kept") == ["kept"]
    assert await Cron.get_schedules(chancy) == {}


@uses_cron()
async def test_a_job_without_unique_key_is_refused_and_nothing_written(
    chancy: Chancy,
) -> None:
    keyless = Job(func="app.tasks.work", queue=QUEUE)
    with pytest.raises(ValueError, match="requires that each job has a unique_key"):
        await Cron.schedule(chancy, "* * * * *", a_job("valid"), keyless)
    assert await Cron.get_schedules(chancy) == {}


class NotJson:
    pass


@uses_cron()
@pytest.mark.parametrize(
    ("cron", "timezone", "second_job", "error", "message"),
    [
        ("61 * * * *", "UTC", None, CronExpressionError, "'61 \\* \\* \\* \\*'"),
        ("0 0 30 2 *", "UTC", None, CronExpressionError, "matches no date"),
        ("not a cron", "UTC", None, ValueError, "'not a cron'"),
        (
            "* * * * *",
            "Mars/Olympus_Mons",
            None,
            UnknownTimeZoneError,
            "'Mars/Olympus_Mons'",
        ),
        ("* * * * *", "UTC", a_job("bad", value=NotJson()), TypeError, "JSON"),
        ("* * * * *", "UTC", a_job("bad", value=float("nan")), TypeError, "JSON"),
        (
            "* * * * *",
            "UTC",
            a_job("valid"),
            ValueError,
            "two jobs with the unique_key",
        ),
        ("* * * * *", "UTC", "not a job", TypeError, "expected a Job"),
        # Jobs that push() would refuse every time the schedule is due:
        (
            "* * * * *",
            "UTC",
            a_job("bad").with_priority(2**31),
            ValueError,
            "priority must fit in 32 bits",
        ),
        (
            "* * * * *",
            "UTC",
            a_job("bad").with_max_attempts(2**40),
            ValueError,
            "max_attempts must be an int from 1",
        ),
        ("* * * * *", "UTC", a_job("bad", s="\x00"), ValueError, "NUL"),
        ("* * * * *", "UTC", a_job("bad", s="\ud800"), ValueError, "lone UTF-16"),
        ("* * * * *", "UTC", a_job("bad").with_queue("q\x00"), ValueError, "NUL"),
        ("* * * * *", "UTC", a_job("k\x00"), ValueError, "NUL"),
        ("* * * * *", "UTC", a_job("bad").with_meta([1]), TypeError, "meta must be"),  # type: ignore[arg-type]
        (
            "* * * * *",
            "UTC",
            a_job("bad").with_limits(["1s"]),  # type: ignore[list-item]
            TypeError,
            "limits must be a list of chancy.Limit",
        ),
    ],
)
async def test_invalid_input_writes_nothing(
    chancy: Chancy, cron: str, timezone: str, second_job: Any, error: type, message: str
) -> None:
    jobs: list[Any] = [a_job("valid")]
    if second_job is not None:
        jobs.append(second_job)
    with pytest.raises(error, match=message):
        await Cron.schedule(chancy, cron, *jobs, timezone=timezone)
    assert await Cron.get_schedules(chancy) == {}


# ---------------------------------------------------------------------------
# Firing
# ---------------------------------------------------------------------------


@uses_cron()
async def test_a_due_schedule_fires_once(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = plugin_of(chancy)
    await Cron.schedule(chancy, "*/5 * * * *", a_job("due", n=7), a_job("later"))
    assert await plugin.run_once(chancy) == []  # nothing due yet
    await make_due(chancy, "due")
    with caplog.at_level(logging.DEBUG, logger=chancy.log.name):
        assert await plugin.run_once(chancy) == ["due"]
    assert any("fired 'due'" in r.getMessage() for r in caplog.records)
    jobs = await jobs_with_key(chancy, "due")
    assert len(jobs) == 1
    _, func, queue, kwargs, scheduled_at, state = jobs[0]
    assert (func, queue, kwargs, state) == (
        "app.tasks.work",
        QUEUE,
        {"n": 7},
        "pending",
    )
    assert abs(scheduled_at - datetime.now(UTC)) < timedelta(seconds=30)
    row = (await Cron.get_schedules(chancy, unique_keys=["due"]))["due"]
    assert row["last_run"] is not None
    assert row["next_run"] > row["last_run"]
    assert row["next_run"].minute % 5 == 0
    assert await plugin.run_once(chancy) == []  # advanced: not due again
    assert plugin.fired_count == 1
    assert plugin.last_fired == []
    assert plugin.fired.is_set()
    assert await jobs_with_key(chancy, "later") == []


@uses_cron()
async def test_missed_ticks_fire_once_on_recovery(chancy: Chancy) -> None:
    plugin = plugin_of(chancy)
    await Cron.schedule(chancy, "* * * * *", a_job("missed"))
    # Due for an hour: sixty missed runs.
    await sql(chancy, "UPDATE {p}cron SET next_run = NOW() - interval '1 hour'")
    assert await plugin.run_once(chancy) == ["missed"]
    assert await plugin.run_once(chancy) == []
    assert len(await jobs_with_key(chancy, "missed")) == 1
    row = (await Cron.get_schedules(chancy))["missed"]
    now = datetime.now(UTC)
    assert now < row["next_run"] <= now + timedelta(minutes=1)  # the next one after now


@uses_cron()
async def test_a_still_pending_run_makes_the_next_push_a_no_op(chancy: Chancy) -> None:
    plugin = plugin_of(chancy)
    await Cron.schedule(chancy, "* * * * *", a_job("slow"))
    for _ in range(3):
        await make_due(chancy)
        assert await plugin.run_once(chancy) == ["slow"]
    assert plugin.fired_count == 3
    assert len(await jobs_with_key(chancy, "slow")) == 1


@uses_cron()
async def test_a_broken_schedule_is_postponed_and_does_not_block_others(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = plugin_of(chancy)
    await Cron.schedule(chancy, "* * * * *", a_job("good"), a_job("broken"))
    await sql(
        chancy, "UPDATE {p}cron SET timezone = 'Gone/Away' WHERE unique_key = 'broken'"
    )
    await make_due(chancy)
    with caplog.at_level(logging.ERROR, logger=chancy.log.name):
        assert await plugin.run_once(chancy) == ["good"]
    assert any("'broken' cannot fire" in r.getMessage() for r in caplog.records)
    row = (await Cron.get_schedules(chancy))["broken"]
    assert row["next_run"] > datetime.now(UTC) + timedelta(minutes=30)
    assert row["last_run"] is None


@uses_cron()
async def test_a_stored_job_that_push_refuses_does_not_block_the_others(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    # Written by an older version or by hand: push() refuses the job. It
    # used to fail the whole batch, so no due schedule fired, on every pass.
    plugin = plugin_of(chancy)
    await Cron.schedule(chancy, "* * * * *", a_job("good"), a_job("poison"))
    await sql(
        chancy,
        "UPDATE {p}cron SET job = jsonb_set(job, ARRAY['p'], to_jsonb(2^40))"
        " WHERE unique_key = 'poison'",
    )
    await make_due(chancy)
    with caplog.at_level(logging.ERROR, logger=chancy.log.name):
        assert await plugin.run_once(chancy) == ["good"]
    assert any(
        "'poison' cannot fire" in r.getMessage() and "32 bits" in r.getMessage()
        for r in caplog.records
    )
    assert len(await jobs_with_key(chancy, "good")) == 1
    assert await jobs_with_key(chancy, "poison") == []
    row = (await Cron.get_schedules(chancy))["poison"]
    assert row["next_run"] > datetime.now(UTC) + timedelta(minutes=30)


@uses_cron()
async def test_concurrent_passes_never_fire_a_row_twice(
    chancy: Chancy, chancy_dsn: str
) -> None:
    """Three apps, each with its own Cron, racing on the same due rows."""
    keys = [f"race-{i}" for i in range(60)]
    await Cron.schedule(chancy, "0 0 1 1 *", *[a_job(k) for k in keys])
    plugins = [Cron(poll_interval=60) for _ in range(3)]
    apps = [
        Chancy(chancy_dsn, plugins=[p, ImmediateLeadership()], no_default_plugins=True)
        for p in plugins
    ]
    try:
        for app in apps:
            await app.ensure_open()
        for _ in range(3):
            await make_due(chancy)
            results = await asyncio.gather(
                *(p.run_once(a) for p, a in zip(plugins, apps, strict=True))
            )
            fired = [key for result in results for key in result]
            assert sorted(fired) == sorted(keys)  # each exactly once
        assert sum(p.fired_count for p in plugins) == 3 * len(keys)
    finally:
        for app in apps:
            await app.__aexit__(None, None, None)


@uses_cron()
async def test_three_leading_workers_fire_each_due_row_once(
    chancy: Chancy, chancy_dsn: str
) -> None:
    """Every worker believes it leads: the row locks alone prevent double firing."""
    keys = [f"w-{i}" for i in range(20)]
    await Cron.schedule(chancy, "0 0 1 1 *", *[a_job(k) for k in keys])
    plugins = [Cron(poll_interval=0.2) for _ in range(3)]
    async with cluster(
        chancy_dsn, [[p, ImmediateLeadership()] for p in plugins]
    ) as workers:
        assert all(w.is_leader.is_set() for w in workers)
        for round_ in range(1, 4):
            await make_due(chancy)
            for p in plugins:
                p.wake_up()

            async def all_fired() -> bool:
                return await due_count(chancy) == 0

            await eventually(all_fired)
            # One more pass each, so any double firing would have happened.
            await asyncio.gather(*(p.wait_for_pass(timeout=5) for p in plugins))
            assert sum(p.fired_count for p in plugins) == round_ * len(keys)
    for key in keys:
        assert len(await jobs_with_key(chancy, key)) == 1


@uses_cron()
async def test_with_real_leadership_only_the_leader_fires_and_failover_works(
    chancy: Chancy, chancy_dsn: str
) -> None:
    keys = [f"l-{i}" for i in range(10)]
    await Cron.schedule(chancy, "0 0 1 1 *", *[a_job(k) for k in keys])
    plugins = [Cron(poll_interval=0.2) for _ in range(3)]
    stacks = [[p, Leadership(poll_interval=0.2, timeout=0.6)] for p in plugins]
    async with cluster(chancy_dsn, stacks) as workers:

        async def one_leader() -> bool:
            return sum(w.is_leader.is_set() for w in workers) == 1

        await eventually(one_leader)
        leader = next(i for i, w in enumerate(workers) if w.is_leader.is_set())
        await make_due(chancy)
        plugins[leader].wake_up()

        async def none_due() -> bool:
            return await due_count(chancy) == 0

        await eventually(none_due)
        assert plugins[leader].fired_count == len(keys)
        assert sum(p.fired_count for p in plugins) == len(keys)

        # The leader goes away; another worker takes over and fires.
        await workers[leader].stop()
        others = [i for i in range(3) if i != leader]

        async def new_leader() -> bool:
            return any(workers[i].is_leader.is_set() for i in others)

        await eventually(new_leader)
        successor = next(i for i in others if workers[i].is_leader.is_set())
        await make_due(chancy)
        plugins[successor].wake_up()
        await eventually(none_due)
        await plugins[successor].wait_for_pass(timeout=5)
        assert plugins[successor].fired_count == len(keys)
        assert sum(p.fired_count for p in plugins) == 2 * len(keys)


@uses_cron()
@pytest.mark.parametrize("outcome", ["commit", "rollback"])
async def test_failover_mid_tick_does_not_double_fire(
    chancy: Chancy, chancy_dsn: str, outcome: str
) -> None:
    """A pass holding the due row (a leader mid-tick) makes others skip it."""
    await Cron.schedule(chancy, "0 0 1 1 *", a_job("tick"))
    await make_due(chancy)
    old, new = Cron(), Cron()
    old_app = Chancy(
        chancy_dsn, plugins=[old, ImmediateLeadership()], no_default_plugins=True
    )
    new_app = Chancy(
        chancy_dsn, plugins=[new, ImmediateLeadership()], no_default_plugins=True
    )
    entered, release = asyncio.Event(), asyncio.Event()
    original_push = old_app.push_many_ex

    async def stalled_push(cursor: Any, jobs: list[Any]) -> Any:
        entered.set()  # the row is locked now
        await release.wait()
        if outcome == "rollback":
            raise ConnectionError("the old leader died mid-tick")
        return await original_push(cursor, jobs)

    old_app.push_many_ex = stalled_push  # type: ignore[method-assign]
    try:
        await old_app.ensure_open()
        await new_app.ensure_open()
        stalled = asyncio.create_task(old.run_once(old_app))
        await asyncio.wait_for(entered.wait(), 5)
        assert await new.run_once(new_app) == []  # skipped: locked by the old leader
        assert await jobs_with_key(chancy, "tick") == []
        release.set()
        if outcome == "commit":
            assert await stalled == ["tick"]
            assert await new.run_once(new_app) == []  # already advanced
        else:
            with pytest.raises(ConnectionError):
                await stalled
            assert await new.run_once(new_app) == ["tick"]  # the new leader fires it
        assert old.fired_count + new.fired_count == 1
        assert len(await jobs_with_key(chancy, "tick")) == 1
    finally:
        release.set()
        await old_app.__aexit__(None, None, None)
        await new_app.__aexit__(None, None, None)


@uses_cron(poll_interval=0.5)
async def test_seconds_level_schedule_fires_about_every_second(
    chancy: Chancy, worker: Worker
) -> None:
    plugin = plugin_of(chancy)
    await Cron.schedule(chancy, "* * * * * *", a_job("every-second"))
    seen: list[float] = []
    last = plugin.fired_count
    async with asyncio.timeout(8):
        while len(seen) < 4:
            await asyncio.sleep(0.01)
            if plugin.fired_count > last:
                seen.extend([time.monotonic()] * (plugin.fired_count - last))
                last = plugin.fired_count
    spread = seen[3] - seen[0]
    assert 2.0 <= spread <= 4.5, seen  # four firings, about a second apart
    row = (await Cron.get_schedules(chancy))["every-second"]
    assert row["next_run"] - row["last_run"] <= timedelta(seconds=1)


@uses_cron(poll_interval=30)
async def test_a_new_schedule_wakes_the_leader(chancy: Chancy, worker: Worker) -> None:
    plugin = plugin_of(chancy)

    async def first_pass_done() -> bool:
        return plugin.passes >= 1

    await eventually(first_pass_done)  # now it sleeps for 30 s
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await Cron.schedule(chancy, "* * * * * *", a_job("soon"))
    await asyncio.wait_for(plugin.fired.wait(), 5)
    assert time.monotonic() - started < 3
    assert plugin.fired_count >= 1


# ---------------------------------------------------------------------------
# Without a leadership plugin
# ---------------------------------------------------------------------------


@uses_cron_alone()
async def test_schedules_are_managed_without_any_worker(
    chancy: Chancy, chancy_dsn: str
) -> None:
    """No worker, no leadership: the class methods only need the database,
    also from an app that does not enable Cron at all (a web app, a script)."""
    assert "chancy.leadership" not in chancy.plugins
    await Cron.schedule(chancy, "*/5 * * * *", a_job("five", n=1))
    plain = Chancy(chancy_dsn, plugins=[], no_default_plugins=True)
    try:
        assert "chancy.cron" not in plain.plugins
        await Cron.schedule(plain, "0 * * * *", a_job("hourly"), timezone="Asia/Tokyo")
        schedules = await Cron.get_schedules(plain)
        assert list(schedules) == ["five", "hourly"]
        assert schedules["five"]["job"].kwargs == {"n": 1}
        assert schedules["hourly"]["timezone"] == "Asia/Tokyo"
        assert list(await Cron.get_schedules(chancy, unique_keys=["hourly"])) == [
            "hourly"
        ]
        assert await Cron.unschedule(plain, "five", "missing") == ["five"]
        assert list(await Cron.get_schedules(chancy)) == ["hourly"]
        assert await Cron.unschedule(chancy, "hourly") == ["hourly"]
        assert await Cron.get_schedules(plain) == {}
    finally:
        await plain.__aexit__(None, None, None)
    assert await jobs_with_key(chancy, "five") == []  # nothing fires without a worker


@uses_cron_alone(poll_interval=30)
async def test_a_worker_without_leadership_starts_and_fires_a_due_schedule(
    chancy: Chancy, worker: Worker
) -> None:
    plugin = plugin_of(chancy)
    assert plugin.get_dependencies() == []
    before = plugin.passes
    await Cron.schedule(chancy, "0 0 1 1 *", a_job("yearly", n=3))
    # One pass after the schedule's (it may already be done), not one more.
    await plugin.wait_for_passes(max(0, before + 1 - plugin.passes), timeout=5)
    assert plugin.fired_count == 0
    await make_due(chancy, "yearly")
    plugin.wake_up()
    await asyncio.wait_for(plugin.fired.wait(), 5)
    assert not worker.is_leader.is_set()  # no leadership: it fired anyway
    assert plugin.last_fired == ["yearly"]
    jobs = await jobs_with_key(chancy, "yearly")
    assert [(func, queue, kwargs) for _, func, queue, kwargs, _, _ in jobs] == [
        ("app.tasks.work", QUEUE, {"n": 3})
    ]
    row = (await Cron.get_schedules(chancy))["yearly"]
    assert row["last_run"] is not None
    assert row["next_run"] > datetime.now(UTC)


@uses_cron_alone(poll_interval=30)
async def test_a_due_row_held_by_another_pass_is_looked_at_again_soon(
    chancy: Chancy, chancy_dsn: str, worker: Worker
) -> None:
    """A pass that finds a due row locked (another worker firing it) checks
    again within a fraction of a second instead of sleeping ``poll_interval``,
    so it fires the row if that other pass rolls back."""
    plugin = plugin_of(chancy)
    before = plugin.passes
    await Cron.schedule(chancy, "0 0 1 1 *", a_job("held"))
    # The pass the schedule's notification wakes may finish before this
    # line: wait for one pass after `before`, not one more from now (that
    # one would come poll_interval, 30 s, later).
    await plugin.wait_for_passes(max(0, before + 1 - plugin.passes), timeout=5)
    other = Chancy(chancy_dsn, plugins=[], no_default_plugins=True)
    try:
        await other.ensure_open()
        for _ in range(20):
            # A pass still under way (the one at start-up, or the one the
            # schedule woke, on a loaded machine) may fire the row between
            # make_due and the lock: then undo that and try again.
            await sql(chancy, "DELETE FROM {p}jobs WHERE unique_key = 'held'")
            plugin.fired.clear()
            fired_before = plugin.fired_count
            await make_due(chancy, "held")
            async with other.pool.connection() as conn:
                async with conn.transaction(force_rollback=True):
                    # Another worker's pass, mid-firing: it holds the due row.
                    cursor = await conn.execute(
                        f"SELECT next_run <= NOW() FROM {chancy.prefix}cron"
                        " WHERE unique_key = 'held' FOR UPDATE"
                    )
                    row = await cursor.fetchone()
                    assert row is not None
                    if not row[0]:
                        continue  # fired meanwhile
                    plugin.wake_up()
                    await plugin.wait_for_pass(passes=2, timeout=5)
                    assert plugin.fired_count == fired_before  # skipped, still looking
                    released = time.monotonic()
                # That pass rolled back: the row is due and free again.
            break
        else:
            raise AssertionError("could not hold the due row before a pass fired it")
        await asyncio.wait_for(plugin.fired.wait(), 5)
        assert time.monotonic() - released < 3  # not poll_interval (30 s) later
        assert plugin.fired_count == fired_before + 1
        assert len(await jobs_with_key(chancy, "held")) == 1
    finally:
        await other.__aexit__(None, None, None)
