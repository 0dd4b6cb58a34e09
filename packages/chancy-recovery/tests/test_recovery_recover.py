"""Recovery passes against a real database, with jobs of made-up workers
inserted directly."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import attrs
import pytest
from psycopg.rows import dict_row

from chancy import Chancy, QueuedJob, Worker
from chancy.hub import Event
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.recovery import Recovery

NO_DEFAULTS = {"plugins": [], "no_default_plugins": True}
uses_db = pytest.mark.parametrize("chancy", [NO_DEFAULTS], indirect=True)


def lost_error(
    worker_id: str, attempt: int, lost: int, *, max_lost_runs: int = 3
) -> dict[str, Any]:
    text = (
        f"chancy.errors.WorkerLostError: worker {worker_id} stopped sending"
        " heartbeats while running this job"
    )
    if lost >= max_lost_runs:
        text += (
            f"; the job was lost {lost} time{'s' if lost != 1 else ''}"
            f" (max_lost_runs={max_lost_runs}), so it fails without running again"
        )
    else:
        text += f" (lost run {lost} of at most {max_lost_runs}; it runs again)"
    return {"attempt": attempt, "traceback": text, "lost": True}


async def insert_job(
    chancy: Chancy,
    *,
    state: str = "running",
    taken_by: str | None = "dead",
    attempts: int = 0,
    max_attempts: int = 3,
    queue: str = "default",
    errors: str = "[]",
    meta: str = "{}",
) -> tuple[uuid.UUID, uuid.UUID]:
    job_id, claim = uuid.uuid4(), uuid.uuid4()
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"INSERT INTO {chancy.sql.jobs} (id, queue, func, state, taken_by, claim_id,"
            " attempts, max_attempts, started_at, errors, meta)"
            " VALUES (%s, %s, 'somewhere.something', %s, %s, %s, %s, %s, NOW(), %s::jsonb,"
            " %s::jsonb)",
            (
                job_id,
                queue,
                state,
                taken_by,
                claim,
                attempts,
                max_attempts,
                errors,
                meta,
            ),
        )
    return job_id, claim


async def heartbeat(
    chancy: Chancy, worker_id: str, *, seen_ago: float, expires_in: float
) -> None:
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"INSERT INTO {chancy.sql.workers} (worker_id, last_seen, expires_at)"
            " VALUES (%s, NOW() - make_interval(secs => %s), NOW() + make_interval(secs => %s))",
            (worker_id, seen_ago, expires_in),
        )


async def row(chancy: Chancy, job_id: uuid.UUID) -> dict[str, Any]:
    async with (
        chancy.pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cursor,
    ):
        await cursor.execute(
            f"SELECT * FROM {chancy.sql.jobs} WHERE id = %s", (job_id,)
        )
        found = await cursor.fetchone()
    assert found is not None
    return found


async def worker_ids(chancy: Chancy) -> set[str]:
    async with chancy.pool.connection() as conn:
        cursor = await conn.execute(f"SELECT worker_id FROM {chancy.sql.workers}")
        return {r[0] for r in await cursor.fetchall()}


@uses_db
@pytest.mark.parametrize(
    "worker_no_start", [{"worker_id": "leader", "heartbeat_timeout": 30}], indirect=True
)
async def test_jobs_of_dead_workers_are_recovered_and_live_ones_untouched(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    await heartbeat(chancy, "alive", seen_ago=1, expires_in=60)
    await heartbeat(chancy, "stale", seen_ago=3600, expires_in=-3000)  # expired row
    await heartbeat(
        chancy, "quiet", seen_ago=60, expires_in=60
    )  # silent, row not expired
    dead, _ = await insert_job(chancy, taken_by="dead")  # no row at all
    stale, _ = await insert_job(
        chancy,
        taken_by="stale",
        attempts=1,
        errors='[{"attempt": 0, "traceback": "x"}]',
    )
    quiet, _ = await insert_job(chancy, taken_by="quiet")
    alive, alive_claim = await insert_job(chancy, taken_by="alive")
    # Jobs that are not running are never touched, whoever took them last.
    pending, _ = await insert_job(chancy, state="pending", taken_by="dead")
    retrying, _ = await insert_job(chancy, state="retrying", taken_by="dead")

    plugin = Recovery(poll_interval=3600)
    assert await plugin.recover(worker_no_start, chancy) == 3
    assert (plugin.passes, plugin.last_recovered, plugin.rows_recovered) == (1, 3, 3)
    assert plugin.recovered_event.is_set()

    # A lost run does not use up an attempt: recorded, counted, run again.
    job = await row(chancy, dead)
    assert job["state"] == "pending"
    assert job["attempts"] == 0
    assert job["errors"] == [lost_error("dead", 0, 1)]
    assert job["meta"] == {"lost_runs": 1}
    assert job["claim_id"] is None and job["taken_by"] is None
    assert job["completed_at"] is None
    assert job["started_at"] is not None  # when the lost run started, kept

    # A job with a failed attempt behind it goes back to retrying.
    job = await row(chancy, stale)
    assert job["state"] == "retrying" and job["attempts"] == 1
    assert job["errors"] == [
        {"attempt": 0, "traceback": "x"},
        lost_error("stale", 1, 1),
    ]
    job = await row(chancy, quiet)
    assert job["state"] == "pending" and job["errors"] == [lost_error("quiet", 0, 1)]

    job = await row(chancy, alive)
    assert (job["state"], job["attempts"], job["claim_id"], job["taken_by"]) == (
        "running",
        0,
        alive_claim,
        "alive",
    )
    assert job["errors"] == []
    for untouched in (pending, retrying):
        job = await row(chancy, untouched)
        assert (
            job["attempts"] == 0 and job["errors"] == [] and job["taken_by"] == "dead"
        )

    # Expired worker rows are deleted; silent ones that have not expired stay.
    assert await worker_ids(chancy) == {"alive", "quiet"}
    # A second pass finds nothing left to do.
    assert await plugin.recover(worker_no_start, chancy) == 0
    assert plugin.rows_recovered == 3


@uses_db
async def test_a_job_lost_max_lost_runs_times_fails(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    # The default job (max_attempts=1) whose worker died runs again...
    default, _ = await insert_job(chancy, attempts=0, max_attempts=1)
    # ...until it was lost max_lost_runs times: a poison job does not loop.
    poison, _ = await insert_job(chancy, meta='{"lost_runs": 2, "keep": "me"}')
    fewer, _ = await insert_job(chancy, meta='{"lost_runs": 1}')
    assert await Recovery().recover(worker_no_start, chancy) == 3

    job = await row(chancy, default)
    assert (job["state"], job["attempts"], job["max_attempts"]) == ("pending", 0, 1)
    assert job["completed_at"] is None

    job = await row(chancy, poison)
    assert job["state"] == "failed"
    assert job["attempts"] == 0
    assert job["completed_at"] is not None
    assert job["errors"] == [lost_error("dead", 0, 3)]
    assert "lost 3 times" in job["errors"][-1]["traceback"]
    assert job["meta"] == {"lost_runs": 3, "keep": "me"}
    assert job["claim_id"] is None and job["taken_by"] is None

    # The cap is a setting.
    job = await row(chancy, fewer)
    assert job["state"] == "pending" and job["meta"] == {"lost_runs": 2}
    again, _ = await insert_job(chancy, meta='{"lost_runs": 1}')
    assert await Recovery(max_lost_runs=2).recover(worker_no_start, chancy) == 1
    job = await row(chancy, again)
    assert job["state"] == "failed"
    assert job["errors"] == [lost_error("dead", 0, 2, max_lost_runs=2)]


@uses_db
async def test_max_lost_runs_is_validated(chancy: Chancy) -> None:
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="max_lost_runs"):
            Recovery(max_lost_runs=bad)  # type: ignore[arg-type]


@uses_db
@pytest.mark.parametrize("worker_no_start", [{"worker_id": "me"}], indirect=True)
async def test_the_leader_never_recovers_its_own_jobs(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    # The worker running the pass is alive by definition, even with no row
    # in the workers table (emptied by a crash, or its heartbeat failing).
    mine, _ = await insert_job(chancy, taken_by="me")
    theirs, _ = await insert_job(chancy, taken_by="dead")
    assert await Recovery().recover(worker_no_start, chancy) == 1
    assert (await row(chancy, mine))["state"] == "running"
    assert (await row(chancy, theirs))["state"] == "pending"


@uses_db
async def test_nothing_is_recovered_until_the_server_was_up_one_heartbeat_timeout(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    # After a restart, every worker first gets one heartbeat timeout to
    # reconnect and announce itself: a threshold longer than the server's
    # uptime stands for "the server started a moment ago".
    async with chancy.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT EXTRACT(EPOCH FROM NOW() - pg_postmaster_start_time())::float8"
        )
        (uptime,) = await cursor.fetchone()  # type: ignore[misc]
    job_id, _ = await insert_job(chancy, taken_by="dead")  # no worker row at all
    plugin = Recovery(heartbeat_timeout=uptime + 3600)
    assert await plugin.recover(worker_no_start, chancy) == 0
    assert (await row(chancy, job_id))["state"] == "running"
    assert await Recovery(heartbeat_timeout=1).recover(worker_no_start, chancy) == 1


@uses_db
@pytest.mark.parametrize("worker_no_start", [{"worker_id": "dead"}], indirect=True)
async def test_a_late_save_from_the_presumed_dead_worker_changes_nothing(
    chancy: Chancy, worker_no_start: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    job_id, claim = await insert_job(chancy, taken_by="dead")
    held = await chancy.get_job(job_id)
    assert held is not None and held.claim_id == claim

    leader = Worker(chancy, worker_id="leader", register_signal_handlers=False)
    assert await Recovery().recover(leader, chancy) == 1
    recovered = await row(chancy, job_id)

    # The "dead" worker was only cut off: it finishes the run and saves it
    # through the core's normal update path, with the claim it fetched.
    caplog.set_level(logging.WARNING, logger="chancy")
    finished = attrs.evolve(held, state=QueuedJob.State.SUCCEEDED, attempts=1)
    worker_no_start.queue_update(finished)
    await worker_no_start.flush()
    assert await row(chancy, job_id) == recovered
    assert "Discarded the outcome" in caplog.text

    # The same with raw SQL, fenced on the old claim.
    async with chancy.pool.connection() as conn:
        cursor = await conn.execute(
            f"UPDATE {chancy.sql.jobs} SET state = 'succeeded' WHERE id = %s AND claim_id = %s",
            (job_id, claim),
        )
        assert cursor.rowcount == 0


@uses_db
@pytest.mark.parametrize(
    "worker_no_start",
    [{"heartbeat_poll_interval": 1, "heartbeat_timeout": 10}],
    indirect=True,
)
async def test_the_threshold_is_the_leaders_heartbeat_timeout_unless_given(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    await heartbeat(chancy, "late", seen_ago=5, expires_in=60)
    job_id, _ = await insert_job(chancy, taken_by="late")
    # Seen 5 s ago: alive for a leader that waits 10 s...
    assert await Recovery().recover(worker_no_start, chancy) == 0
    assert (await row(chancy, job_id))["state"] == "running"
    # ...presumed dead with an explicit 2 s threshold.
    assert await Recovery(heartbeat_timeout=2).recover(worker_no_start, chancy) == 1
    assert (await row(chancy, job_id))["state"] == "pending"


@uses_db
async def test_jobs_locked_by_another_transaction_are_skipped(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    locked, _ = await insert_job(chancy)
    free, _ = await insert_job(chancy)
    plugin = Recovery()
    async with chancy.pool.connection() as conn:
        async with conn.transaction():
            await conn.execute(
                f"SELECT 1 FROM {chancy.sql.jobs} WHERE id = %s FOR UPDATE", (locked,)
            )
            assert (
                await asyncio.wait_for(plugin.recover(worker_no_start, chancy), 5) == 1
            )
    assert (await row(chancy, free))["state"] == "pending"
    assert (await row(chancy, locked))["state"] == "running"
    assert await plugin.recover(worker_no_start, chancy) == 1
    assert (await row(chancy, locked))["state"] == "pending"


@uses_db
async def test_a_pass_notifies_each_recovered_job_and_the_totals(
    chancy: Chancy, worker: Worker
) -> None:
    seen: list[Event] = []
    for name in ("job.recovered", "queue.pushed", "recovery.recovered"):
        worker.hub.on(name, seen.append)
    retry, retry_claim = await insert_job(chancy, queue="again")
    failed, failed_claim = await insert_job(
        chancy, queue="over", meta='{"lost_runs": 2}'
    )

    waiter = asyncio.ensure_future(worker.hub.wait_for("recovery.recovered", timeout=5))
    await asyncio.sleep(0)
    assert await Recovery().recover(worker, chancy) == 2
    assert await waiter

    recovered = {e.body["j"]: e.body["c"] for e in seen if e.name == "job.recovered"}
    assert recovered == {str(retry): str(retry_claim), str(failed): str(failed_claim)}
    # Workers are woken for the queue with a job to run again.
    assert [e.body["q"] for e in seen if e.name == "queue.pushed"] == ["again"]
    (summary,) = [e.body for e in seen if e.name == "recovery.recovered"]
    assert summary["rows_recovered"] == 2 and summary["elapsed"] >= 0
    # The job notifications come before the queue wake-ups.
    names = [e.name for e in seen]
    assert names.index("queue.pushed") > max(
        i for i, n in enumerate(names) if n == "job.recovered"
    )


@pytest.mark.parametrize(
    "chancy",
    [
        {
            "plugins": [
                ImmediateLeadership(),
                Recovery(poll_interval=0.1, heartbeat_timeout=1),
            ],
            "no_default_plugins": True,
        }
    ],
    indirect=True,
)
async def test_the_leader_recovers_without_being_asked(
    chancy: Chancy, worker: Worker
) -> None:
    plugin = chancy.plugins["chancy.recovery"]
    assert isinstance(plugin, Recovery)
    await plugin.wait_for_passes(1, timeout=5)
    # A queue no worker serves: the live worker must not run the job again
    # before we look at it.
    job_id, _ = await insert_job(chancy, queue="unserved")
    async with asyncio.timeout(5):
        while plugin.rows_recovered < 1:
            await plugin.wait_for_passes(1)
    assert (await row(chancy, job_id))["state"] == "pending"


@pytest.mark.parametrize(
    "chancy",
    [
        {
            "plugins": [
                ImmediateLeadership(),
                Recovery(poll_interval=3600, heartbeat_timeout=1),
            ],
            "no_default_plugins": True,
        }
    ],
    indirect=True,
)
async def test_wake_up_runs_a_pass_now_instead_of_after_poll_interval(
    chancy: Chancy, worker: Worker
) -> None:
    plugin = chancy.plugins["chancy.recovery"]
    assert isinstance(plugin, Recovery)
    if plugin.passes == 0:
        await plugin.wait_for_passes(1, timeout=5)  # the pass at start
    job_id, _ = await insert_job(chancy, queue="unserved")
    plugin.wake_up()
    await plugin.wait_for_passes(1, timeout=5)
    assert (await row(chancy, job_id))["state"] == "pending"
