"""Stored results, live progress and snooze, in every executor, against a real
worker and database. (Cluster-wide and per-key limits, with several worker
processes, are in test_core_limits.py.)"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import chancy_testjobs as jobs
import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.errors import Snooze
from chancy.job import progress_payload

PROCESS = "chancy.executors.process.ProcessExecutor"
THREADED = "chancy.executors.thread.ThreadedExecutor"
ASYNC = "chancy.executors.asyncex.AsyncExecutor"
EXECUTORS = [
    pytest.param(PROCESS, id="process"),
    pytest.param(THREADED, id="threaded"),
    pytest.param(ASYNC, id="async"),
]


def _name(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def _pick(executor: str, sync: Callable[..., Any], coro: Callable[..., Any]) -> str:
    return _name(coro if executor == ASYNC else sync)


async def _serve(chancy: Chancy, worker: Worker, executor: str, **options: Any) -> str:
    name = f"q_{uuid.uuid4().hex[:8]}"
    options.setdefault("polling_interval", 0.1)
    await chancy.declare(Queue(name, executor=executor, **options), upsert=True)
    deadline = time.monotonic() + 10
    while name not in worker.executors:
        assert time.monotonic() < deadline, "the worker never served the queue"
        await asyncio.sleep(0.02)
    return name


async def _wait(chancy: Chancy, ref: Any, timeout: float = 30) -> QueuedJob:
    job = await chancy.wait_for_job(ref, interval=0.05, timeout=timeout)
    assert job is not None
    return job


# ---------------------------------------------------------------------------
# Stored results
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_a_return_value_is_stored_and_read_back(
    chancy: Chancy, worker: Worker, executor: str
) -> None:
    queue = await _serve(chancy, worker, executor)
    func = _pick(executor, jobs.return_value, jobs.async_return_value)
    value = {"total": 3, "items": ["a", "é", None], "nested": {"ok": True}}
    ref = await chancy.push(Job(func=func, queue=queue, kwargs={"value": value}))
    done = await _wait(chancy, ref)
    assert done.state is QueuedJob.State.SUCCEEDED, done.errors
    assert done.result == value
    assert (await chancy.get_jobs([ref]))[0].result == value
    assert (await chancy.get_job(ref)).result == value  # type: ignore[union-attr]
    # A set comes back as a list, like kwargs.
    ref = await chancy.push(Job(func=func, queue=queue, kwargs={"value": [1]}))
    assert (await _wait(chancy, ref)).result == [1]


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_store_result_false_and_none_store_nothing(
    chancy: Chancy, worker: Worker, executor: str
) -> None:
    queue = await _serve(chancy, worker, executor)
    func = _pick(executor, jobs.return_value, jobs.async_return_value)
    skipped = await chancy.push(
        Job(func=func, queue=queue, kwargs={"value": 42}, store_result=False)
    )
    nothing = await chancy.push(Job(func=func, queue=queue, kwargs={"value": None}))
    for ref in (skipped, nothing):
        done = await _wait(chancy, ref)
        assert done.state is QueuedJob.State.SUCCEEDED and done.result is None
    async with chancy.pool.connection() as conn:
        cursor = await conn.execute(
            f"SELECT count(*) FROM {chancy.sql.jobs} WHERE result IS NOT NULL"
        )
        assert await cursor.fetchone() == (0,)


@pytest.mark.parametrize(
    "chancy", [{"max_result_size": 100, "no_default_plugins": True}], indirect=True
)
@pytest.mark.parametrize("executor", EXECUTORS)
async def test_a_result_over_the_size_limit_fails_the_run_and_writes_nothing(
    chancy: Chancy, worker: Worker, executor: str
) -> None:
    queue = await _serve(chancy, worker, executor)
    func = _pick(executor, jobs.return_value, jobs.async_return_value)
    ref = await chancy.push(
        Job(func=func, queue=queue, kwargs={"value": "x" * 200}, max_attempts=1)
    )
    done = await _wait(chancy, ref)
    assert done.state is QueuedJob.State.FAILED
    assert done.result is None
    message = done.errors[0]["traceback"]
    assert "more than the limit of 100 (Chancy(max_result_size=...))" in message
    ok = await chancy.push(Job(func=func, queue=queue, kwargs={"value": "small"}))
    assert (await _wait(chancy, ok)).result == "small"


def test_max_result_size_is_validated() -> None:
    for bad in (0, -1, 1.5, True, "64k"):
        with pytest.raises(ValueError, match="max_result_size"):
            Chancy("postgresql://localhost/app", max_result_size=bad)  # type: ignore[arg-type]


def test_store_result_and_concurrency_key_survive_pack_and_unpack() -> None:
    job = Job(func="m.f", store_result=False, concurrency_key="customer:42")
    assert Job.unpack(job.pack()) == job
    plain = Job(func="m.f")
    assert "sr" not in plain.pack() and "ck" not in plain.pack()
    assert job.with_concurrency_key(None).concurrency_key is None


# ---------------------------------------------------------------------------
# Live progress
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_progress_is_saved_while_the_job_runs_and_kept_after(
    chancy: Chancy, worker: Worker, executor: str
) -> None:
    queue = await _serve(chancy, worker, executor)
    func = _pick(executor, jobs.report_progress, jobs.async_report_progress)
    ref = await chancy.push(
        Job(func=func, queue=queue, kwargs={"steps": 40, "delay": 0.1})
    )
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while True:
        job = await chancy.get_job(ref)
        assert job is not None
        if job.state is QueuedJob.State.RUNNING and job.progress is not None:
            seen.append(job.progress)
        if job.is_finished:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    # Reports arrived while it ran (not only at the end), and increasing.
    assert seen, "no progress was saved while the job ran"
    dones = [p["done"] for p in seen]
    assert dones == sorted(dones) and dones[0] < 40
    assert seen[0]["total"] == 40 and seen[0]["message"].startswith("step ")
    assert job.state is QueuedJob.State.SUCCEEDED, job.errors
    assert job.progress is not None
    assert job.progress["done"] == 40 and job.progress["message"] == "step 40"
    assert job.progress["at"]


async def test_progress_is_saved_at_most_once_a_second_per_job(
    chancy: Chancy, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[float] = []
    original = worker._write_progress

    async def counted() -> None:
        before = dict(worker._progress_written)
        await original()
        if worker._progress_written != before:
            writes.append(time.monotonic())

    monkeypatch.setattr(worker, "_write_progress", counted)
    queue = await _serve(chancy, worker, ASYNC)
    ref = await chancy.push(
        Job(
            func=_name(jobs.async_report_progress),
            queue=queue,
            kwargs={"steps": 300, "delay": 0.01},
        )
    )
    done = await _wait(chancy, ref)
    assert done.progress is not None and done.progress["done"] == 300
    # 300 reports over about 3 s: a few writes, at least a second apart.
    assert 1 <= len(writes) <= 5
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(writes))


async def test_a_late_report_of_an_abandoned_run_is_discarded(
    chancy: Chancy, worker: Worker
) -> None:
    queue = await _serve(chancy, worker, ASYNC)
    ref = await chancy.push(
        Job(
            func=_name(jobs.async_report_progress),
            queue=queue,
            kwargs={"steps": 30, "delay": 0.1},
        )
    )
    await chancy.wait_for_job(
        ref, interval=0.02, timeout=10, states={QueuedJob.State.RUNNING}
    )
    # Recovery (or a cancel) takes the job away: its claim is cleared.
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"UPDATE {chancy.sql.jobs} SET claim_id = NULL, progress = NULL"
            " WHERE id = %s",
            (ref.identifier,),
        )
    await asyncio.sleep(2.5)  # reports keep coming from the abandoned run
    job = await chancy.get_job(ref)
    assert job is not None and job.progress is None


def test_set_progress_checks_its_arguments_and_where_it_runs() -> None:
    with pytest.raises(ValueError, match="done must be a finite number"):
        progress_payload(-1)
    with pytest.raises(ValueError, match="finite"):
        progress_payload(math.nan)
    with pytest.raises(ValueError, match="more than total"):
        progress_payload(5, 3)
    with pytest.raises(TypeError, match="must be a number"):
        progress_payload("3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most 1000"):
        progress_payload(1, 2, "x" * 1001)
    assert progress_payload(1, None, None)["total"] is None
    job = QueuedJob(id=uuid.uuid4(), func="m.f")
    with pytest.raises(RuntimeError, match="is not running here"):
        job.set_progress(1)


# ---------------------------------------------------------------------------
# Snooze
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_snooze_runs_the_job_later_without_using_an_attempt(
    chancy: Chancy, worker: Worker, executor: str
) -> None:
    queue = await _serve(chancy, worker, executor, eager_polling=True)
    func = _pick(executor, jobs.snooze_once, jobs.async_snooze_once)
    pushed = time.monotonic()
    ref = await chancy.push(Job(func=func, queue=queue, kwargs={"seconds": 0.5}))
    done = await _wait(chancy, ref)
    assert done.state is QueuedJob.State.SUCCEEDED, done.errors
    assert time.monotonic() - pushed >= 0.5
    assert done.attempts == 1 and done.max_attempts == 1
    assert done.errors == []
    assert done.meta["snoozes"] == 1
    assert done.result == "woke up"


@pytest.mark.parametrize("seconds", [-1, "nan", "inf", 10**9, "soon"])
async def test_a_bad_snooze_fails_the_job_with_a_clear_error(
    chancy: Chancy, worker: Worker, seconds: Any
) -> None:
    queue = await _serve(chancy, worker, THREADED)
    ref = await chancy.push(
        Job(func=_name(jobs.snooze_badly), queue=queue, kwargs={"seconds": seconds})
    )
    done = await _wait(chancy, ref)
    assert done.state is QueuedJob.State.FAILED
    assert "Snooze() takes" in done.errors[0]["traceback"]


def test_snooze_validates_its_delay() -> None:
    assert Snooze(0).seconds == 0 and Snooze(1.5).seconds == 1.5
    for bad in (-0.1, math.nan, math.inf, 400 * 86400):
        with pytest.raises(ValueError, match="from 0 to"):
            Snooze(bad)
    with pytest.raises(TypeError):
        Snooze(True)  # type: ignore[arg-type]
    import chancy

    assert chancy.Snooze is Snooze
