"""Cluster-wide and per-key limits, with several worker processes against a
real database: the limits hold when many workers fetch at the same moment."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import chancy_testjobs as jobs
import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker

ASYNC = Chancy.Executor.Async
SLEEP = f"{jobs.sleep_for.__module__}.{jobs.sleep_for.__qualname__}"
ASYNC_NOOP = f"{jobs.async_noop.__module__}.{jobs.async_noop.__qualname__}"

WORKER = """
import asyncio, sys
from chancy import Chancy, Worker

async def main():
    app = Chancy(sys.argv[1], no_default_plugins=True)
    async with app, Worker(app, worker_id=sys.argv[2], shutdown_timeout=5) as worker:
        print("ready", flush=True)
        await worker.wait_for_shutdown()

asyncio.run(main())
"""


async def _start_workers(dsn: str, count: int) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, dsn, f"w{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        for i in range(count)
    ]
    for proc in procs:
        assert proc.stdout is not None
        seen = ""
        while "ready" not in seen:
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line, seen
            seen += line
    return procs


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _sample(
    chancy: Chancy, query: str, params: Any, stop: asyncio.Event
) -> AsyncIterator[Any]:
    async with chancy.pool.connection() as conn:
        await conn.set_autocommit(True)
        while not stop.is_set():
            cursor = await conn.execute(query, params)
            yield await cursor.fetchall()
            await asyncio.sleep(0.01)


async def test_global_concurrency_holds_across_worker_processes(
    chancy: Chancy, chancy_dsn: str
) -> None:
    await chancy.declare(
        Queue(
            "global",
            executor=ASYNC,
            concurrency=10,
            global_concurrency=3,
            polling_interval=0.05,
        )
    )
    refs = await chancy.push_many_ex(
        None,
        [Job(func=SLEEP, queue="global", kwargs={"seconds": 0.2}) for _ in range(45)],
    )
    procs = await _start_workers(chancy_dsn, 4)
    stop = asyncio.Event()
    peak = 0
    samples = 0

    async def watch() -> None:
        nonlocal peak, samples
        query = (
            f"SELECT count(*) FROM {chancy.sql.jobs}"
            " WHERE queue = 'global' AND state = 'running'"
        )
        async for rows in _sample(chancy, query, None, stop):
            samples += 1
            peak = max(peak, rows[0][0])

    watcher = asyncio.ensure_future(watch())
    try:
        done = await chancy.wait_for_jobs(refs, interval=0.1, timeout=90)
    finally:
        stop.set()
        await watcher
        _stop(procs)
    assert [j.state for j in done] == [QueuedJob.State.SUCCEEDED] * 45
    assert samples > 100
    # 4 workers x 10 slots, but never more than 3 running anywhere, and the
    # limit was used (not a lucky serial run).
    assert peak == 3
    takers = {j.id: None for j in done}
    assert len(takers) == 45


async def test_a_hot_key_does_not_starve_the_others(
    chancy: Chancy, chancy_dsn: str
) -> None:
    await chancy.declare(
        Queue(
            "keys",
            executor=ASYNC,
            concurrency=10,
            key_concurrency=1,
            polling_interval=0.05,
        )
    )
    hot = [
        Job(func=SLEEP, queue="keys", kwargs={"seconds": 0.05}, concurrency_key="A")
        for _ in range(1000)
    ]
    await chancy.push_many_ex(None, hot)
    cold = await chancy.push_many_ex(
        None,
        [
            Job(func=SLEEP, queue="keys", kwargs={"seconds": 0.05}, concurrency_key="B")
            for _ in range(10)
        ],
    )
    procs = await _start_workers(chancy_dsn, 3)
    stop = asyncio.Event()
    most_per_key = 0

    async def watch() -> None:
        nonlocal most_per_key
        query = (
            f"SELECT concurrency_key, count(*) FROM {chancy.sql.jobs}"
            " WHERE queue = 'keys' AND state = 'running' GROUP BY 1"
        )
        async for rows in _sample(chancy, query, None, stop):
            for _key, count in rows:
                most_per_key = max(most_per_key, count)

    watcher = asyncio.ensure_future(watch())
    started = time.monotonic()
    try:
        done = await chancy.wait_for_jobs(cold, interval=0.05, timeout=60)
        took = time.monotonic() - started
        async with chancy.pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT count(*) FROM {chancy.sql.jobs}"
                " WHERE concurrency_key = 'A' AND state = 'succeeded'"
            )
            (hot_done,) = await cursor.fetchone()  # type: ignore[misc]
    finally:
        stop.set()
        await watcher
        await chancy.delete_queue("keys")  # drop the rest of the hot backlog
        _stop(procs)
    assert [j.state for j in done] == [QueuedJob.State.SUCCEEDED] * 10
    # B ran alongside A's backlog, one at a time, not after it: A finished
    # only a small part of its 1,000 jobs meanwhile.
    assert hot_done < 500, (hot_done, took)
    assert most_per_key == 1


async def test_key_rate_limit_starts_at_most_n_per_window(
    chancy: Chancy, chancy_dsn: str
) -> None:
    window = 60
    # Stay inside one window (they are aligned on multiples of its length).
    left = window - time.time() % window
    if left < 10:
        await asyncio.sleep(left + 0.5)
    await chancy.declare(
        Queue(
            "rated",
            executor=ASYNC,
            concurrency=10,
            key_rate_limit=3,
            key_rate_limit_window=window,
            polling_interval=0.05,
        )
    )
    await chancy.push_many_ex(
        None,
        [
            *(
                Job(
                    func=SLEEP,
                    queue="rated",
                    kwargs={"seconds": 0},
                    concurrency_key="K",
                )
                for _ in range(10)
            ),
            *(
                Job(
                    func=SLEEP,
                    queue="rated",
                    kwargs={"seconds": 0},
                    concurrency_key="L",
                )
                for _ in range(2)
            ),
        ],
    )
    procs = await _start_workers(chancy_dsn, 2)
    try:
        await asyncio.sleep(3)
        async with chancy.pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT concurrency_key, count(*) FILTER (WHERE state = 'succeeded'),"
                f" count(*) FILTER (WHERE state = 'pending')"
                f" FROM {chancy.sql.jobs} WHERE queue = 'rated' GROUP BY 1 ORDER BY 1"
            )
            rows = await cursor.fetchall()
    finally:
        _stop(procs)
    assert rows == [("K", 3, 7), ("L", 2, 0)]


def test_limits_are_validated() -> None:
    for name in ("global_concurrency", "key_concurrency", "key_rate_limit"):
        for bad in (0, -1, 2**31, 1.5, True):
            with pytest.raises(ValueError, match=name):
                kwargs: dict[str, Any] = {name: bad}
                if name == "key_rate_limit":
                    kwargs["key_rate_limit_window"] = 1
                Queue("q", **kwargs)
    with pytest.raises(ValueError, match="set together"):
        Queue("q", key_rate_limit=3)
    with pytest.raises(ValueError, match="set together"):
        Queue("q", key_rate_limit_window=3)
    queue = Queue("q", global_concurrency=2, key_concurrency=1)
    assert queue.has_limits
    assert queue.pack()["global_concurrency"] == 2
    assert "key_rate_limit" not in queue.pack()
    assert "global_concurrency" not in Queue("plain").pack()
    assert Queue.unpack({**queue.pack(), "resume_at": None}) == queue


async def test_a_concurrency_key_must_be_a_string(chancy: Chancy) -> None:
    with pytest.raises(TypeError, match="concurrency_key must be a string"):
        await chancy.push(Job(func="m.f", concurrency_key=42))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="store_result must be True or False"):
        await chancy.push(Job(func="m.f", store_result="yes"))  # type: ignore[arg-type]
    async with chancy.pool.connection() as conn:
        cursor = await conn.execute(f"SELECT count(*) FROM {chancy.sql.jobs}")
        assert await cursor.fetchone() == (0,)


async def test_limits_round_trip_through_declare(chancy: Chancy) -> None:
    declared = await chancy.declare(
        Queue(
            "q",
            global_concurrency=5,
            key_concurrency=2,
            key_rate_limit=10,
            key_rate_limit_window=60,
        )
    )
    assert declared == await chancy.get_queue("q")
    assert (declared.global_concurrency, declared.key_concurrency) == (5, 2)
    assert (declared.key_rate_limit, declared.key_rate_limit_window) == (10, 60)


@pytest.mark.parametrize(
    "limits",
    [{"global_concurrency": 4}, {"key_concurrency": 4}],
    ids=["global", "key"],
)
async def test_a_limited_queue_drains_without_waiting_for_its_poll(
    chancy: Chancy, worker: Worker, limits: dict[str, int]
) -> None:
    """A finished run stays ``running`` in the table until its save commits,
    so the fetch its completion triggers finds the limit still full: the
    worker must fetch again once the save is in, not at the next poll
    (30 s here), or a limited backlog drains one batch per poll."""
    await chancy.declare(
        Queue(
            "limited",
            executor=ASYNC,
            concurrency=4,
            polling_interval=30,
            eager_polling=True,
            **limits,
        )
    )
    refs = await chancy.push_many_ex(
        None,
        [Job(func=ASYNC_NOOP, queue="limited", concurrency_key="k") for _ in range(40)],
    )
    done = await chancy.wait_for_jobs(refs, interval=0.05, timeout=15)
    assert {j.state for j in done} == {QueuedJob.State.SUCCEEDED}
