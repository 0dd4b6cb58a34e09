"""The worker against a real database: fetching, running, saving, queues, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker, job
from chancy.errors import MigrationsNeededError
from chancy.executors.asyncex import AsyncExecutor
from chancy.executors.base import Executor
from chancy.hub import Event

ASYNC = Chancy.Executor.Async
RUNS: list[Any] = []


@job(queue="fast")
async def record(*, value: Any = None) -> str:
    RUNS.append(value)
    return "ok"


async def slow(*, seconds: float = 0.2, value: Any = None) -> None:
    await asyncio.sleep(seconds)
    RUNS.append(value)


async def fail(*, message: str = "boom") -> None:
    raise RuntimeError(message)


def sync_function() -> None:
    pass


async def with_context(*, context: QueuedJob, note: str) -> None:
    context.meta["note"] = note
    context.meta["attempts_seen"] = context.attempts


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    RUNS.clear()


async def declare(chancy: Chancy, name: str = "fast", **kwargs: Any) -> Queue:
    options = {"executor": ASYNC, "concurrency": 10, "polling_interval": 0.1}
    options.update(kwargs)
    return await chancy.declare(Queue(name, **options), upsert=True)


async def wait_served(worker: Worker, name: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while name not in worker.executors:
        if time.monotonic() > deadline:
            raise AssertionError(f"worker never served {name!r}")
        await asyncio.sleep(0.01)


def fn(f: Any) -> str:
    return f"{f.__module__}.{f.__qualname__}"


async def _until(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_job_runs_and_its_meta_change_is_saved(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy)
    ref = await chancy.push(
        Job(func=fn(with_context), queue="fast", kwargs={"note": "hi"})
    )
    done = await chancy.wait_for_job(ref, interval=0.02, timeout=10)
    assert done is not None
    assert done.state is QueuedJob.State.SUCCEEDED
    assert done.meta == {"note": "hi", "attempts_seen": 0}
    assert done.attempts == 1
    assert done.started_at is not None and done.completed_at is not None
    assert done.completed_at >= done.started_at


async def test_failures_retry_until_max_attempts_with_tracebacks(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy)
    ref = await chancy.push(
        Job(func=fn(fail), queue="fast", max_attempts=3, kwargs={"message": "kaput"})
    )
    done = await chancy.wait_for_job(ref, interval=0.02, timeout=10)
    assert done is not None and done.state is QueuedJob.State.FAILED
    assert done.attempts == 3
    assert [e["attempt"] for e in done.errors] == [0, 1, 2]
    assert all("RuntimeError: kaput" in e["traceback"] for e in done.errors)
    assert done.completed_at is not None


async def test_unknown_function_fails_the_job_not_the_worker(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy)
    bad = await chancy.push(Job(func="no_such_module.nope", queue="fast"))
    sync = await chancy.push(Job(func=fn(sync_function), queue="fast"))
    good = await chancy.push(record.job.with_kwargs(value=1))
    results = {
        j.id: j
        for j in await chancy.wait_for_jobs(
            [bad, sync, good], interval=0.02, timeout=10
        )
    }
    assert results[bad.identifier].state is QueuedJob.State.FAILED
    assert "no_such_module" in results[bad.identifier].errors[0]["traceback"]
    assert "only runs 'async def'" in results[sync.identifier].errors[0]["traceback"]
    assert results[good.identifier].state is QueuedJob.State.SUCCEEDED


async def test_fifo_within_priority_and_priority_first(
    chancy: Chancy, worker: Worker
) -> None:
    await chancy.pause_queue("default")
    await declare(chancy, concurrency=1)
    await chancy.pause_queue("fast")
    refs = [await chancy.push(record.job.with_kwargs(value=i)) for i in range(5)]
    refs.append(
        await chancy.push(record.job.with_kwargs(value="urgent").with_priority(10))
    )
    await chancy.resume_queue("fast")
    await chancy.wait_for_jobs(refs, interval=0.02, timeout=10)
    assert RUNS == ["urgent", 0, 1, 2, 3, 4]


async def test_a_stale_view_of_a_paused_queue_fetches_nothing(
    chancy: Chancy, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose view of the queue is stale (its scan read the queue
    before the pause) still takes nothing from it once the pause is committed."""
    await declare(chancy)
    await wait_served(worker, "fast")
    read, release = asyncio.Event(), asyncio.Event()
    get_all_queues = chancy.get_all_queues

    async def stale_read() -> list[Queue]:
        queues = await get_all_queues()  # still says "active"
        read.set()
        await release.wait()
        return queues

    monkeypatch.setattr(chancy, "get_all_queues", stale_read)
    # Only this test's scans run: the worker's own would apply the pause.
    await worker.manager.cancel("chancy:queues")
    scan = asyncio.create_task(worker._scan_queues())
    await read.wait()
    await chancy.pause_queue("fast")
    release.set()
    await scan
    ref = await chancy.push(record.job.with_kwargs(value="while-paused"))
    await asyncio.sleep(0.3)  # three polling intervals
    assert RUNS == []
    monkeypatch.undo()
    await chancy.resume_queue("fast")
    await worker._scan_queues()  # what the cancelled scan loop would do
    await chancy.wait_for_job(ref, interval=0.02, timeout=10)
    assert RUNS == ["while-paused"]


async def test_a_queue_paused_before_its_runner_exists_runs_nothing(
    chancy: Chancy, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for a queue the worker does not serve yet: the scan that
    creates its runner read it as active, the pause came before the runner."""
    read, release = asyncio.Event(), asyncio.Event()
    get_all_queues = chancy.get_all_queues

    async def stale_read() -> list[Queue]:
        queues = await get_all_queues()
        read.set()
        await release.wait()
        return queues

    monkeypatch.setattr(chancy, "get_all_queues", stale_read)
    # Only this test's scans run: the worker's own would apply the pause.
    await worker.manager.cancel("chancy:queues")
    await declare(chancy, "late")
    scan = asyncio.create_task(worker._scan_queues())
    await read.wait()
    await chancy.pause_queue("late")
    release.set()
    await scan
    await wait_served(worker, "late")
    ref = await chancy.push(
        record.job.with_kwargs(value="while-paused").with_queue("late")
    )
    await asyncio.sleep(0.3)
    assert RUNS == []
    monkeypatch.undo()
    await chancy.resume_queue("late")
    await worker._scan_queues()  # what the cancelled scan loop would do
    await chancy.wait_for_job(ref, interval=0.02, timeout=10)
    assert RUNS == ["while-paused"]


async def test_scheduled_job_waits_for_its_time(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    at = datetime.now(UTC) + timedelta(seconds=1)
    ref = await chancy.push(record.job.with_kwargs(value="later").with_scheduled_at(at))
    await asyncio.sleep(0.5)
    assert RUNS == []
    done = await chancy.wait_for_job(ref, interval=0.02, timeout=10)
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED
    assert done.started_at is not None and done.started_at >= at


async def test_paused_queue_runs_nothing_until_resumed(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy)
    await wait_served(worker, "fast")
    await chancy.pause_queue("fast")
    ref = await chancy.push(record.job.with_kwargs(value=1))
    await asyncio.sleep(0.4)
    assert (await chancy.get_job(ref)).state is QueuedJob.State.PENDING  # type: ignore[union-attr]
    await chancy.resume_queue("fast")
    assert (
        await chancy.wait_for_job(ref, interval=0.02, timeout=5)
    ).state is QueuedJob.State.SUCCEEDED  # type: ignore[union-attr]


async def test_paused_queue_resumes_itself_at_resume_at(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy)
    await wait_served(worker, "fast")
    await chancy.pause_queue("fast", resume_at=timedelta(seconds=0.5))
    ref = await chancy.push(record.job.with_kwargs(value=1))
    done = await chancy.wait_for_job(ref, interval=0.02, timeout=5)
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED
    assert (await chancy.get_queue("fast")).state is Queue.State.ACTIVE


async def test_rate_limit_caps_starts_per_window(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy, rate_limit=3, rate_limit_window=86400)
    refs = [await chancy.push(record.job.with_kwargs(value=i)) for i in range(8)]
    await asyncio.sleep(1.0)
    jobs = await chancy.get_jobs(refs)
    assert sum(j.state is QueuedJob.State.SUCCEEDED for j in jobs) == 3
    assert sum(j.state is QueuedJob.State.PENDING for j in jobs) == 5


async def test_notification_wakes_a_slow_polling_queue(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy, polling_interval=60)
    await wait_served(worker, "fast")
    await asyncio.sleep(0.2)  # let the first (immediate) poll pass
    start = time.monotonic()
    ref = await chancy.push(record.job.with_kwargs(value=1))
    done = await chancy.wait_for_job(ref, interval=0.01, timeout=5)
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("chancy", [{"notifications": False}], indirect=True)
@pytest.mark.parametrize("worker", [{"queue_change_poll_interval": 0.2}], indirect=True)
async def test_polling_alone_works_without_notifications(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy, polling_interval=0.1)
    ref = await chancy.push(record.job.with_kwargs(value=1))
    done = await chancy.wait_for_job(ref, interval=0.02, timeout=10)
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED


async def test_eager_polling_drains_a_low_concurrency_queue(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy, concurrency=1, polling_interval=30, eager_polling=True)
    await wait_served(worker, "fast")
    refs = [
        await chancy.push(
            Job(func=fn(slow), queue="fast", kwargs={"seconds": 0.05, "value": i})
        )
        for i in range(5)
    ]
    jobs = await chancy.wait_for_jobs(refs, interval=0.02, timeout=5)
    assert len(jobs) == 5


async def test_a_backlog_drains_without_waiting_for_the_polling_interval(
    chancy: Chancy, worker: Worker
) -> None:
    # Default settings otherwise (no eager polling): a fetch that filled every
    # free slot makes each finished run fetch again, so 20 jobs at
    # concurrency 5 do not drain in waves of one 30 s polling interval.
    await declare(chancy, concurrency=5, polling_interval=30)
    await wait_served(worker, "fast")
    refs = [
        ref
        async for batch in chancy.push_many(
            [
                Job(func=fn(slow), queue="fast", kwargs={"seconds": 0.1, "value": i})
                for i in range(20)
            ]
        )
        for ref in batch
    ]
    jobs = await chancy.wait_for_jobs(refs, interval=0.05, timeout=20)
    assert len(jobs) == 20
    assert {j.state for j in jobs} == {QueuedJob.State.SUCCEEDED}


async def test_queue_reconfiguration_is_picked_up_at_runtime(
    chancy: Chancy, worker: Worker
) -> None:
    # A new executor type: new jobs run on it at once, while the job the old
    # executor runs finishes there (it is neither interrupted nor waited for).
    await declare(chancy, concurrency=2)
    await wait_served(worker, "fast")
    updated = asyncio.ensure_future(
        worker.hub.wait_for("worker.queue.updated", timeout=5)
    )
    running = await chancy.push(
        Job(func=fn(slow), queue="fast", kwargs={"seconds": 3, "value": "old"})
    )
    await chancy.wait_for_job(
        running, interval=0.01, timeout=5, states={QueuedJob.State.RUNNING}
    )
    await chancy.declare(
        Queue(
            "fast",
            executor=Chancy.Executor.Threaded,
            concurrency=3,
            polling_interval=0.1,
        ),
        upsert=True,
    )
    assert await updated
    await _until(
        lambda: type(worker.executors.get("fast")).__name__ == "ThreadedExecutor"
    )
    executor = worker.executors["fast"]
    assert executor.concurrency == 3
    new = await chancy.push(Job(func=fn(sync_function), queue="fast"))
    done = await chancy.wait_for_job(new, interval=0.02, timeout=5)
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED
    # The old job still runs on the old executor, then is saved as usual.
    old = await chancy.get_job(running)
    assert old is not None and old.state is QueuedJob.State.RUNNING
    old = await chancy.wait_for_job(running, interval=0.05, timeout=10)
    assert old is not None and old.state is QueuedJob.State.SUCCEEDED
    assert RUNS == ["old"]


async def test_an_edit_in_place_takes_effect_without_draining(
    chancy: Chancy, worker: Worker
) -> None:
    # Pause and resume (from the dashboard, say) while three long jobs run:
    # new jobs start at once in the free slots, not after the long ones.
    await declare(chancy, concurrency=4, polling_interval=30)
    await wait_served(worker, "fast")
    executor = worker.executors["fast"]
    long_refs = [
        await chancy.push(
            Job(func=fn(slow), queue="fast", kwargs={"seconds": 3600, "value": i})
        )
        for i in range(3)
    ]
    await _until(lambda: len(executor) == 3)
    await chancy.pause_queue("fast")
    await _until(lambda: worker["fast"].state is Queue.State.PAUSED)
    paused = await chancy.push(
        Job(func=fn(slow), queue="fast", kwargs={"seconds": 0, "value": "p"})
    )
    await chancy.resume_queue("fast")
    done = await chancy.wait_for_job(paused, interval=0.02, timeout=10)
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED
    # A concurrency change applies to the same executor, at once too.
    await declare(chancy, concurrency=5, polling_interval=30)
    await _until(lambda: worker["fast"].concurrency == 5)
    assert worker.executors["fast"] is executor
    assert executor.concurrency == 5 and len(executor) == 3
    for ref in long_refs:
        await chancy.cancel_job(ref)
    await _until(lambda: len(executor) == 0)


async def test_deleted_queue_is_dropped(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    await wait_served(worker, "fast")
    removed = asyncio.ensure_future(
        worker.hub.wait_for("worker.queue.removed", timeout=5)
    )
    await chancy.delete_queue("fast")
    events = await removed
    assert events and events[0].body["queue"].name == "fast"
    assert "fast" not in worker.executors


@pytest.mark.parametrize("worker", [{"tags": {"gpu=1"}}], indirect=True)
async def test_queue_tags_match_worker_tags_fully(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy, name="gpu", tags={"gpu=1"})
    await declare(chancy, name="gpu-prefix", tags={"gpu"})
    await declare(chancy, name="other", tags={"region=eu"})
    await wait_served(worker, "gpu")
    await asyncio.sleep(0.2)
    assert "gpu" in worker
    assert "gpu-prefix" not in worker  # 'gpu' is not a full match of 'gpu=1'
    assert "other" not in worker
    assert {"*", "gpu=1", f"worker_id={worker.worker_id}"} <= worker.worker_tags()


async def test_cancel_running_job_interrupts_it_and_stays_final(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy)
    ref = await chancy.push(
        Job(
            func=fn(slow),
            queue="fast",
            kwargs={"seconds": 2, "value": "end"},
            max_attempts=3,
        )
    )
    await chancy.wait_for_job(
        ref, interval=0.01, timeout=5, states={QueuedJob.State.RUNNING}
    )
    await chancy.cancel_job(ref)
    await asyncio.sleep(0.3)
    await worker.flush()
    done = await chancy.get_job(ref)
    assert done is not None and done.state is QueuedJob.State.FAILED
    assert RUNS == []  # interrupted before its end
    assert not worker.executors["fast"].get_running_jobs()


async def test_late_outcome_of_a_lost_claim_is_discarded(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    await declare(chancy)
    ref = await chancy.push(record.job)
    async with chancy.pool.connection() as conn:
        (claimed,) = await worker_no_start.fetch_jobs(Queue("fast"), conn, up_to=5)
    assert claimed.state is QueuedJob.State.RUNNING and claimed.claim_id is not None
    await chancy.cancel_job(ref)  # clears the claim
    import attrs

    worker_no_start.queue_update(
        attrs.evolve(claimed, state=QueuedJob.State.SUCCEEDED, attempts=1)
    )
    await worker_no_start.flush()
    assert (await chancy.get_job(ref)).state is QueuedJob.State.FAILED  # type: ignore[union-attr]


async def test_fetch_hands_each_job_to_one_worker(chancy: Chancy) -> None:
    refs = [
        r async for batch in chancy.push_many([Job(func="m.f")] * 50) for r in batch
    ]
    workers = [Worker(chancy, worker_id=f"w{i}") for i in range(4)]

    async def grab(w: Worker) -> list[QueuedJob]:
        got: list[QueuedJob] = []
        while True:
            async with chancy.pool.connection() as conn:
                batch = await w.fetch_jobs(Queue("default"), conn, up_to=3)
            if not batch:
                return got
            got.extend(batch)

    results = await asyncio.gather(*(grab(w) for w in workers))
    ids = [j.id for got in results for j in got]
    assert len(ids) == len(set(ids)) == len(refs)


async def test_start_refuses_an_unmigrated_database(chancy_just_app: Chancy) -> None:
    async with chancy_just_app:
        with pytest.raises(MigrationsNeededError):
            await Worker(chancy_just_app, register_signal_handlers=False).start()


async def test_worker_events_heartbeat_and_clean_stop(chancy: Chancy) -> None:
    seen: list[str] = []
    w = Worker(chancy, register_signal_handlers=False, worker_id="events")
    w.hub.on_any(lambda e: seen.append(e.name))
    await w.start()
    assert "worker.started" in seen
    assert "default" in w  # auto-declared
    assert any(row["worker_id"] == "events" for row in await chancy.get_all_workers())
    assert await w.stop() is True
    assert "worker.stopped" in seen
    assert not any(
        row["worker_id"] == "events" for row in await chancy.get_all_workers()
    )
    assert await w.stop() is True  # idempotent


async def test_stop_waits_for_running_jobs_and_saves_them(chancy: Chancy) -> None:
    w = Worker(chancy, register_signal_handlers=False, shutdown_timeout=5)
    await w.start()
    await declare(chancy)
    ref = await chancy.push(
        Job(func=fn(slow), queue="fast", kwargs={"seconds": 0.5, "value": 1})
    )
    await chancy.wait_for_job(
        ref, interval=0.01, timeout=5, states={QueuedJob.State.RUNNING}
    )
    assert await w.stop() is True
    done = await chancy.get_job(ref)
    assert (
        done is not None and done.state is QueuedJob.State.SUCCEEDED
    )  # saved before stop returned


async def test_stop_timeout_puts_interrupted_jobs_back(chancy: Chancy) -> None:
    w = Worker(chancy, register_signal_handlers=False, shutdown_timeout=0.3)
    await w.start()
    await declare(chancy)
    ref = await chancy.push(Job(func=fn(slow), queue="fast", kwargs={"seconds": 30}))
    await chancy.wait_for_job(
        ref, interval=0.01, timeout=5, states={QueuedJob.State.RUNNING}
    )
    timed_out: list[Event] = []
    w.hub.on("worker.shutdown_timeout", timed_out.append)
    assert await w.stop() is False
    assert timed_out
    job_ = await chancy.get_job(ref)
    assert (
        job_ is not None
        and job_.state is QueuedJob.State.PENDING
        and job_.attempts == 0
    )


@pytest.mark.parametrize("worker", [{"backoff_initial": 0.05}], indirect=True)
async def test_listener_reconnects_after_its_connection_dies(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy, polling_interval=60)
    await wait_served(worker, "fast")
    async with chancy.pool.connection() as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%%' AND datname = current_database()"
        )
    # Pushed while the listener may be down: the reconnect wakes every queue,
    # so a missed notification costs nothing.
    ref = await chancy.push(record.job.with_kwargs(value=1))
    done = await chancy.wait_for_job(ref, interval=0.02, timeout=10)
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED


async def test_listen_relays_notifications_without_serving_queues(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    """Worker.listen() alone: the event stream of a process that runs no jobs."""
    worker = worker_no_start
    worker.manager.add("chancy:listen", worker.listen)
    try:
        async with asyncio.timeout(5):
            while True:  # LISTEN is in place once a notification comes back
                heard = asyncio.ensure_future(worker.hub.wait_for("probe", timeout=0.2))
                await asyncio.sleep(0)
                async with chancy.pool.connection() as conn, conn.cursor() as cur:
                    await chancy.notify(cur, "probe", {"n": 1})
                if await heard:
                    break
        got = asyncio.ensure_future(worker.hub.wait_for("queue.pushed", timeout=5))
        await asyncio.sleep(0)
        await chancy.push(record.job)
        (event,) = await got
        assert event.body == {"q": "fast"}
        assert len(worker) == 0  # nothing was served
    finally:
        await worker.manager.cancel_all()


async def test_executor_that_cannot_honour_memory_limits_fails_fast(
    chancy: Chancy, worker: Worker
) -> None:
    from chancy import Limit

    await declare(chancy)
    ref = await chancy.push(record.job.with_limits([Limit(Limit.Type.MEMORY, 10**9)]))
    done = await chancy.wait_for_job(ref, interval=0.02, timeout=5)
    assert done is not None and done.state is QueuedJob.State.FAILED
    assert "cannot enforce memory limits" in done.errors[0]["traceback"]


def test_bad_worker_settings_are_rejected(chancy_just_app: Chancy) -> None:
    with pytest.raises(ValueError, match="heartbeat_poll_interval"):
        Worker(chancy_just_app, heartbeat_poll_interval=0)
    with pytest.raises(ValueError, match="shutdown_timeout"):
        Worker(chancy_just_app, shutdown_timeout=-1)


def test_async_executor_capabilities() -> None:
    assert AsyncExecutor.supports(Executor.Capability.CANCELLATION)
    assert not AsyncExecutor.supports(Executor.Capability.MEMORY_LIMITS)


SIGTERM_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from chancy import Chancy, Worker, Queue, Job

    async def main():
        app = Chancy(sys.argv[1], no_default_plugins=True)
        async with app:
            await app.declare(Queue("sig", executor=Chancy.Executor.Async, polling_interval=0.1), upsert=True)
            async with Worker(app, shutdown_timeout=10) as worker:
                print("ready", flush=True)
                await worker.wait_for_shutdown()
        print("exited cleanly", flush=True)

    asyncio.run(main())
    """
)


async def test_sigterm_stops_gracefully_and_finishes_running_jobs(
    chancy: Chancy, chancy_dsn: str
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SCRIPT, chancy_dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = ""
        while "ready" not in seen:
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line, seen
            seen += line
        ref = await chancy.push(
            Job(func="asyncio.sleep", queue="sig", kwargs={"delay": 1})
        )
        await chancy.wait_for_job(
            ref, interval=0.01, timeout=10, states={QueuedJob.State.RUNNING}
        )
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0, out
        assert "exited cleanly" in out
        done = await chancy.get_job(ref)
        assert done is not None and done.state is QueuedJob.State.SUCCEEDED
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize(
    "worker", [{"backoff_initial": 0.1, "backoff_max": 0.5}], indirect=True
)
async def test_worker_heals_after_every_connection_is_killed(
    chancy: Chancy, worker: Worker, chancy_dsn: str
) -> None:
    """Like a database restart: every backend of the database dies at once."""
    await declare(chancy, polling_interval=0.2)
    await wait_served(worker, "fast")
    import psycopg

    with psycopg.connect(chancy_dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    refs = []
    for i in range(3):
        # The app's own pooled connections were killed too: retry the push.
        for _ in range(20):
            try:
                refs.append(await chancy.push(record.job.with_kwargs(value=i)))
                break
            except psycopg.OperationalError:
                await asyncio.sleep(0.05)
    jobs = await chancy.wait_for_jobs(refs, interval=0.05, timeout=15)
    assert len(jobs) == 3 and all(j.state is QueuedJob.State.SUCCEEDED for j in jobs)


class CuttingProxy:
    """A TCP proxy to PostgreSQL on 127.0.0.1 that, once, forwards a fetch of
    queue ``queue`` to the server and then cuts the connection instead of
    forwarding the server's reply: the claim has committed, but the worker
    never learns which jobs it claimed."""

    def __init__(self, host: str, port: int, queue: str) -> None:
        self.target = (host, port)
        # The fetch binds the queue's name; the heartbeat (which names the
        # queues it serves too) writes the workers table.
        self.needle = queue.encode()
        self.cut = asyncio.Event()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        armed = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                if (
                    self.needle in data
                    and b"_workers" not in data
                    and not self.cut.is_set()
                ):
                    armed.set()

        async def downstream() -> None:
            pending = b""
            while data := await up_reader.read(65536):
                if armed.is_set() and not self.cut.is_set():
                    pending += data
                    if b"Z\x00\x00\x00\x05" in pending:  # ReadyForQuery: committed
                        self.cut.set()
                        return
                    continue
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (writer, up_writer):
                w.close()


async def test_jobs_claimed_by_a_fetch_whose_reply_was_lost_are_run(
    chancy: Chancy, chancy_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    port = int(conninfo_to_dict(chancy_dsn).get("port") or 5432)
    try:
        tcp = make_conninfo(chancy_dsn, host="127.0.0.1", port=port)
        await (await psycopg.AsyncConnection.connect(tcp)).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"the test server does not answer on 127.0.0.1:{port}: {exc}")
    proxy = CuttingProxy("127.0.0.1", port, "cut_here")
    await proxy.start()
    await declare(chancy, "cut_here", polling_interval=0.2)
    ref = await chancy.push(
        Job(func=fn(slow), queue="cut_here", kwargs={"seconds": 0, "value": 1})
    )
    app = Chancy(
        make_conninfo(chancy_dsn, host="127.0.0.1", port=proxy.port),
        no_default_plugins=True,
    )
    try:
        async with (
            app,
            Worker(
                app,
                register_signal_handlers=False,
                backoff_initial=0.05,
                backoff_max=0.2,
            ),
        ):
            await asyncio.wait_for(proxy.cut.wait(), 10)
            done = await chancy.wait_for_job(ref, interval=0.05, timeout=10)
    finally:
        await proxy.stop()
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED, done
    assert done.errors == [] and done.attempts == 1
    assert RUNS == [1]
    # The claim had committed: the worker found the row in its name and put it back.
    assert "released 1 job(s) claimed by a fetch whose reply was lost" in caplog.text


async def test_a_stored_tag_pattern_that_backtracks_is_ignored_not_matched(
    chancy: Chancy, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    # Queue() refuses such patterns now; a row stored earlier (or by raw SQL)
    # must not freeze the worker's event loop when it scans the queues.
    bad = "worker_id=.{8}([0-9a-f-]+)+!"
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"INSERT INTO {chancy.sql.queues} (name, tags) VALUES ('evil', %s)",
            ([bad],),
        )
    started = time.monotonic()
    await worker._scan_queues()
    assert time.monotonic() - started < 1
    assert "evil" not in worker.executors
    assert "ignoring its tag pattern" in caplog.text


@pytest.mark.parametrize("worker", [{"loop_block_warning": 0.3}], indirect=True)
async def test_an_async_job_blocking_the_loop_is_named_in_a_warning(
    chancy: Chancy, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    import chancy_testjobs

    await declare(chancy, "blocking")
    ref = await chancy.push(
        Job(
            func=fn(chancy_testjobs.block_the_loop),
            queue="blocking",
            kwargs={"seconds": 1.2},
        )
    )
    done = await chancy.wait_for_job(ref, interval=0.05, timeout=10)
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED
    warnings = [r.getMessage() for r in caplog.records if "blocked" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per stall
    assert f"Job {ref.identifier} (chancy_testjobs.block_the_loop)" in warnings[0]
    assert "must not block" in warnings[0]


def test_loop_block_warning_is_validated(chancy_just_app: Chancy) -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match="loop_block_warning"):
            Worker(chancy_just_app, loop_block_warning=bad)
    assert Worker(chancy_just_app, loop_block_warning=None).loop_block_warning is None


async def test_fetched_job_is_the_stored_job(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    """The worker builds fetched jobs without attrs' converters (hot path):
    every field must still match the row as get_job reads it."""
    from chancy import Limit
    from chancy.job import replace_job

    await declare(chancy)
    ref = await chancy.push(
        record.job.with_kwargs(value={"a": [1, 2]})
        .with_limits([Limit(Limit.Type.TIME, 30)])
        .with_meta({"k": "v"})
        .with_priority(3)
        .with_max_attempts(4)
        .with_unique_key("u-1")
        .with_concurrency_key("customer:1")
    )
    async with chancy.pool.connection() as conn:
        (fetched,) = await worker_no_start.fetch_jobs(Queue("fast"), conn, up_to=5)
    stored = await chancy.get_job(ref)
    assert stored is not None
    assert type(fetched) is QueuedJob
    for field in [
        "id",
        "func",
        "queue",
        "kwargs",
        "priority",
        "max_attempts",
        "scheduled_at",
        "limits",
        "unique_key",
        "meta",
        "concurrency_key",
        "store_result",
        "created_at",
        "started_at",
        "completed_at",
        "attempts",
        "state",
        "errors",
        "claim_id",
        "result",
        "progress",
    ]:
        assert getattr(fetched, field) == getattr(stored, field), field
    assert fetched.state is QueuedJob.State.RUNNING
    assert fetched == stored

    done = replace_job(fetched, state=QueuedJob.State.SUCCEEDED, attempts=1)
    assert done.state is QueuedJob.State.SUCCEEDED and done.attempts == 1
    assert done.claim_id == fetched.claim_id and done.kwargs == fetched.kwargs
    assert fetched.state is QueuedJob.State.RUNNING  # the original is unchanged
    with pytest.raises(TypeError, match="no field"):
        replace_job(fetched, nonsense=1)


async def test_fetched_retry_is_the_stored_job(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    """A job fetched again after a failed attempt (errors, attempts,
    completed_at and progress set by the first run) matches its row too."""
    await declare(chancy)
    ref = await chancy.push(record.job.with_max_attempts(3))
    queue = Queue("fast")
    async with chancy.pool.connection() as conn:
        (first,) = await worker_no_start.fetch_jobs(queue, conn, up_to=5)
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"UPDATE {chancy.sql.jobs} SET state = 'retrying', attempts = 1,"
            " completed_at = NOW(), progress = '{\"step\": 2}'::jsonb,"
            ' errors = \'[{"attempt": 0, "traceback": "boom"}]\'::jsonb,'
            " claim_id = NULL WHERE id = %s",
            (ref.identifier,),
        )
    async with chancy.pool.connection() as conn:
        (again,) = await worker_no_start.fetch_jobs(queue, conn, up_to=5)
    stored = await chancy.get_job(ref)
    assert stored is not None
    assert again == stored
    assert again.claim_id == stored.claim_id and again.claim_id != first.claim_id
    assert again.errors == [{"attempt": 0, "traceback": "boom"}]
    assert again.progress == {"step": 2} and again.attempts == 1
    assert again.completed_at == stored.completed_at is not None


async def test_each_fetch_claims_under_a_fresh_claim(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    """One fetch claims all its jobs under one new random claim (stored on
    each row); the next fetch uses another, so a stale outcome of either is
    fenced off by (job id, claim)."""
    await declare(chancy)
    refs = [await chancy.push(record.job.with_kwargs(value=i)) for i in range(4)]
    queue = Queue("fast")
    async with chancy.pool.connection() as conn:
        one = await worker_no_start.fetch_jobs(queue, conn, up_to=2)
        two = await worker_no_start.fetch_jobs(queue, conn, up_to=2)
    assert len(one) == len(two) == 2
    assert len({j.claim_id for j in one}) == 1
    assert len({j.claim_id for j in two}) == 1
    assert one[0].claim_id != two[0].claim_id
    stored = {j.id: j for j in await chancy.get_jobs(refs)}
    for fetched in one + two:
        assert stored[fetched.id].claim_id == fetched.claim_id
        assert stored[fetched.id].state is QueuedJob.State.RUNNING


async def test_fetches_on_the_hot_connection_keep_one_cursor_across_kinds(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    """On the app's hot connection the fetch reuses one kept cursor, and
    switching between a plain queue, one with cluster limits and one with a
    rate limit on it still builds each kind's jobs right."""
    await declare(chancy)
    await declare(chancy, "limited", global_concurrency=5)
    await declare(chancy, "rated", rate_limit=10, rate_limit_window=60)
    for name in ("fast", "limited", "rated"):
        await chancy.push_many_ex(
            None, [record.job.with_queue(name).with_kwargs(value=i) for i in range(4)]
        )
    queues = {q.name: q for q in await chancy.get_all_queues()}
    lane = chancy._lane
    await chancy.push(Job(func="m.f", queue="elsewhere"))
    await chancy.push(Job(func="m.f", queue="elsewhere"))
    await _until(lambda: lane.conn is not None)
    cursors: list[Any] = []
    got: dict[str, list[QueuedJob]] = {"fast": [], "limited": [], "rated": []}
    for name in ("fast", "limited", "rated", "fast", "limited", "rated"):
        conn = chancy._hot_connection()
        assert conn is not None
        try:
            got[name] += await worker_no_start.fetch_jobs(queues[name], conn, up_to=2)
        finally:
            lane.give_back(conn)
        cursors.append(lane.cursors.get("chancy.worker.fetch"))
    assert cursors[0] is not None and all(c is cursors[0] for c in cursors)
    stored = {
        j.id: j
        for j in await chancy.get_jobs([j.id for js in got.values() for j in js])
    }
    for name, jobs in got.items():
        assert len(jobs) == 4, (name, jobs)
        for fetched in jobs:
            assert fetched.queue == name and fetched == stored[fetched.id]
            assert fetched.state is QueuedJob.State.RUNNING


async def test_fetches_use_the_hot_connection_unless_a_subclass_picks_jobs(
    chancy: Chancy,
) -> None:
    """A worker polling often fetches on the app's autocommit hot connection;
    a subclass overriding fetch_jobs (maybe several statements, one
    transaction) always gets a pooled connection in a transaction."""
    await declare(chancy, polling_interval=0.02)
    seen: list[bool] = []

    class Picky(Worker):
        async def fetch_jobs(self, queue: Queue, conn: Any, *, up_to: int = 1) -> Any:
            seen.append(conn.autocommit)
            return await super().fetch_jobs(queue, conn, up_to=up_to)

    async with Picky(chancy, register_signal_handlers=False):
        await _until(lambda: len(seen) >= 20)
        ref = await chancy.push(Job(func=fn(record), queue="fast", kwargs={"value": 1}))
        done = await chancy.wait_for_job(ref, interval=0.02, timeout=10)
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED
    assert not any(seen)

    async with Worker(chancy, register_signal_handlers=False) as plain:
        await wait_served(plain, "fast")
        await _until(lambda: chancy._lane.conn is not None)
        requests = chancy.pool.get_stats().get("requests_num", 0)
        await asyncio.sleep(0.3)  # ~15 polls of an empty queue
        # Polls no longer check connections out of the pool (the heartbeat
        # and the like may).
        assert chancy.pool.get_stats().get("requests_num", 0) - requests < 5
        refs = [
            await chancy.push(Job(func=fn(record), queue="fast", kwargs={"value": i}))
            for i in range(5)
        ]
        for ref in refs:
            done = await chancy.wait_for_job(ref, interval=0.02, timeout=10)
            assert done is not None and done.state is QueuedJob.State.SUCCEEDED
