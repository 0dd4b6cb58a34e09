"""The built-in executors against a real worker and database: outcomes,
context injection, retries, time limits, cancellation, and the process
executor's own pool (crashes, memory limits, recycling, no idle children).

Job functions live in :mod:`chancy_testjobs` so that spawned child
processes can import them.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chancy_testjobs as jobs
import pytest

from chancy import Job, Limit, Queue, QueuedJob
from chancy.app import Chancy
from chancy.executors.base import Executor
from chancy.worker import Worker

PROCESS = "chancy.executors.process.ProcessExecutor"
THREADED = "chancy.executors.thread.ThreadedExecutor"
ASYNC = "chancy.executors.asyncex.AsyncExecutor"
SUB = "chancy.executors.sub.SubInterpreterExecutor"


def _sub_available() -> bool:
    try:
        import chancy.executors.sub  # noqa: F401
    except ImportError:
        return False
    return True


ALL = [
    pytest.param(PROCESS, id="process"),
    pytest.param(THREADED, id="threaded"),
    pytest.param(ASYNC, id="async"),
    pytest.param(
        SUB,
        id="sub",
        marks=pytest.mark.skipif(
            not _sub_available(), reason="no sub-interpreters here"
        ),
    ),
]
SYNC = [p for p in ALL if p.id != "async"]
INTERRUPTIBLE = [p for p in ALL if p.id != "sub"]
INTERRUPTIBLE_SYNC = [p for p in INTERRUPTIBLE if p.id != "async"]


def _name(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


async def _serve(
    chancy: Chancy, worker: Worker, executor: str, **options: Any
) -> tuple[str, Executor]:
    """Declare a fresh queue served by ``executor``; return it once the worker serves it."""
    name = f"q_{uuid.uuid4().hex[:8]}"
    options.setdefault("polling_interval", 0.1)
    await chancy.declare(Queue(name, executor=executor, **options), upsert=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        served = worker.executors.get(name)
        if served is not None:
            return name, served
        await asyncio.sleep(0.02)
    raise AssertionError(f"the worker never served queue {name!r}")


async def _push(
    chancy: Chancy, queue: str, func: Callable[..., Any], **fields: Any
) -> Any:
    return await chancy.push(Job(func=_name(func), queue=queue, **fields))


async def _wait(
    chancy: Chancy, ref: Any, timeout: float = 20, **kwargs: Any
) -> QueuedJob:
    job = await chancy.wait_for_job(ref, interval=0.05, timeout=timeout, **kwargs)
    assert job is not None
    return job


async def _until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def _sync_or_async(
    executor: str, sync: Callable[..., Any], coro: Callable[..., Any]
) -> Any:
    return coro if executor == ASYNC else sync


# ---------------------------------------------------------------------------
# Every executor
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("executor", SYNC)
async def test_sync_job_succeeds(chancy: Chancy, worker: Worker, executor: str) -> None:
    queue, _ = await _serve(chancy, worker, executor)
    ref = await _push(chancy, queue, jobs.add, kwargs={"a": 1, "b": 2})
    job = await _wait(chancy, ref)
    assert job.state is QueuedJob.State.SUCCEEDED
    assert job.attempts == 1
    assert job.errors == []
    assert job.completed_at is not None


@pytest.mark.parametrize("executor", ALL)
async def test_async_job_succeeds(
    chancy: Chancy, worker: Worker, executor: str
) -> None:
    queue, _ = await _serve(chancy, worker, executor)
    ref = await _push(chancy, queue, jobs.async_noop)
    job = await _wait(chancy, ref)
    assert job.state is QueuedJob.State.SUCCEEDED, job.errors


async def test_async_executor_rejects_sync_jobs(chancy: Chancy, worker: Worker) -> None:
    queue, _ = await _serve(chancy, worker, ASYNC)
    job = await _wait(chancy, await _push(chancy, queue, jobs.noop))
    assert job.state is QueuedJob.State.FAILED
    assert "ValueError" in job.errors[0]["traceback"]


@pytest.mark.parametrize("executor", ALL)
async def test_context_meta_is_saved(
    chancy: Chancy, worker: Worker, executor: str
) -> None:
    queue, _ = await _serve(chancy, worker, executor)
    func = _sync_or_async(executor, jobs.set_meta, jobs.async_set_meta)
    ref = await _push(
        chancy, queue, func, kwargs={"key": "answer", "value": 42}, meta={"kept": True}
    )
    job = await _wait(chancy, ref)
    assert job.state is QueuedJob.State.SUCCEEDED, job.errors
    assert job.meta == {"kept": True, "answer": 42}


@pytest.mark.parametrize("executor", ALL)
async def test_failing_job_records_traceback(
    chancy: Chancy, worker: Worker, executor: str
) -> None:
    queue, _ = await _serve(chancy, worker, executor)
    func = _sync_or_async(executor, jobs.fail, jobs.async_fail)
    ref = await _push(chancy, queue, func, kwargs={"message": "boom-1234"})
    job = await _wait(chancy, ref)
    assert job.state is QueuedJob.State.FAILED
    assert job.attempts == 1
    assert len(job.errors) == 1
    assert job.errors[0]["attempt"] == 0
    tb = job.errors[0]["traceback"]
    assert "ValueError: boom-1234" in tb
    assert "Traceback" in tb  # the job's own frames, not just a summary


@pytest.mark.parametrize(
    "kind", ["SystemExit", "KeyboardInterrupt", "CustomBaseError", "CancelledError"]
)
@pytest.mark.parametrize("style", ["sync", "async"])
@pytest.mark.parametrize("executor", ALL)
async def test_a_base_exception_is_the_jobs_failure_and_the_worker_keeps_serving(
    chancy: Chancy, worker: Worker, executor: str, style: str, kind: str
) -> None:
    # A poison job raising SystemExit, KeyboardInterrupt, CancelledError of its
    # own or any BaseException subclass fails like any other exception: the
    # traceback is recorded, the attempt counted (so max_attempts caps it) and
    # the worker goes on serving the queue.
    if executor == ASYNC and style == "sync":
        pytest.skip("the async executor runs only async jobs")
    queue, _ = await _serve(chancy, worker, executor)
    func = jobs.async_raise_base if style == "async" else jobs.raise_base
    ref = await _push(chancy, queue, func, kwargs={"kind": kind}, max_attempts=2)
    job = await _wait(chancy, ref)
    assert job.state is QueuedJob.State.FAILED, job.errors
    assert job.attempts == 2
    assert [e["attempt"] for e in job.errors] == [0, 1]
    assert kind in job.errors[-1]["traceback"]
    after = _sync_or_async(executor, jobs.noop, jobs.async_noop)
    ok = await _wait(chancy, await _push(chancy, queue, after))
    assert ok.state is QueuedJob.State.SUCCEEDED
    assert not worker.shutdown_event.is_set()


@pytest.mark.parametrize("executor", ALL)
async def test_retries_until_max_attempts(
    chancy: Chancy, worker: Worker, executor: str
) -> None:
    queue, _ = await _serve(chancy, worker, executor)
    func = _sync_or_async(executor, jobs.fail, jobs.async_fail)
    ref = await _push(chancy, queue, func, max_attempts=3)
    job = await _wait(chancy, ref)
    assert job.state is QueuedJob.State.FAILED
    assert job.attempts == 3
    assert [e["attempt"] for e in job.errors] == [0, 1, 2]


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("executor", INTERRUPTIBLE)
async def test_time_limit_interrupts_the_job(
    chancy: Chancy, worker: Worker, executor: str, kind: str
) -> None:
    if executor == ASYNC and kind == "sync":
        pytest.skip("the async executor runs only async jobs")
    queue, _ = await _serve(chancy, worker, executor)
    if kind == "async":
        func = jobs.async_sleep
    else:
        # Never sleeps, never calls checkpoint(): only a real interruption stops it.
        func = jobs.busy_loop
    started = time.monotonic()
    ref = await _push(
        chancy, queue, func, kwargs={"seconds": 30}, limits=[Limit(Limit.Type.TIME, 1)]
    )
    job = await _wait(chancy, ref, timeout=15)
    assert time.monotonic() - started < 10
    assert job.state is QueuedJob.State.FAILED
    assert "finished" not in job.meta
    tb = job.errors[0]["traceback"]
    assert "TimeoutError" in tb
    assert "exceeded its time limit of 1s" in tb


@pytest.mark.parametrize("executor", [p for p in SYNC if p.id != "process"])
async def test_cooperative_time_limit(
    chancy: Chancy, worker: Worker, executor: str
) -> None:
    queue, _ = await _serve(chancy, worker, executor)
    ref = await _push(
        chancy,
        queue,
        jobs.cooperative_loop,
        kwargs={"seconds": 30},
        limits=[Limit(Limit.Type.TIME, 1)],
    )
    job = await _wait(chancy, ref, timeout=15)
    assert job.state is QueuedJob.State.FAILED
    assert "TimeoutError" in job.errors[0]["traceback"]
    assert "exceeded its time limit" in job.errors[0]["traceback"]


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("executor", INTERRUPTIBLE)
async def test_cancel_running_job(
    chancy: Chancy, worker: Worker, executor: str, kind: str
) -> None:
    if executor == ASYNC and kind == "sync":
        pytest.skip("the async executor runs only async jobs")
    queue, served = await _serve(chancy, worker, executor)
    func = jobs.async_sleep if kind == "async" else jobs.sleep_loop
    ref = await _push(chancy, queue, func, kwargs={"seconds": 30}, max_attempts=3)
    await _wait(chancy, ref, states={QueuedJob.State.RUNNING})
    await _until(lambda: len(served) == 1)
    await asyncio.sleep(0.3)  # let it really start (a child may still be booting)
    await _cancel_and_check(chancy, worker, served, ref)


async def _cancel_and_check(
    chancy: Chancy, worker: Worker, served: Executor, ref: Any
) -> None:
    await chancy.cancel_job(ref)
    job = await _wait(chancy, ref, timeout=5)
    assert job.state is QueuedJob.State.FAILED
    # The run is interrupted, not left to finish its 30 seconds.
    await _until(lambda: len(served) == 0, timeout=10)
    await worker.flush()
    job = await _wait(chancy, ref)
    assert job.state is QueuedJob.State.FAILED  # not overwritten by the late outcome
    assert "finished" not in job.meta
    assert len(job.errors) == 1 and job.errors[0].get("cancelled") is True
    assert job.attempts == 0


async def test_process_cancel_while_the_child_boots(
    chancy: Chancy, worker: Worker
) -> None:
    """Cancelled before the child said "started": signalled as soon as it does."""
    queue, served = await _serve(chancy, worker, PROCESS)
    ref = await _push(chancy, queue, jobs.sleep_loop, kwargs={"seconds": 30})
    await _until(lambda: len(served) == 1)
    await _cancel_and_check(chancy, worker, served, ref)


@pytest.mark.parametrize("executor", INTERRUPTIBLE_SYNC)
async def test_a_result_that_cannot_be_stored_fails_the_run_unless_not_stored(
    chancy: Chancy, worker: Worker, executor: str
) -> None:
    queue, _ = await _serve(chancy, worker, executor)
    job = await _wait(chancy, await _push(chancy, queue, jobs.unpicklable))
    assert job.state is QueuedJob.State.FAILED
    assert "return value cannot be stored as JSON" in job.errors[0]["traceback"]
    assert job.result is None
    # With store_result=False the value is not kept, and the work was done.
    job = await _wait(
        chancy, await _push(chancy, queue, jobs.unpicklable, store_result=False)
    )
    assert job.state is QueuedJob.State.SUCCEEDED, job.errors
    assert job.result is None


@pytest.mark.parametrize("executor", INTERRUPTIBLE_SYNC)
async def test_interrupted_shutdown_puts_running_jobs_back(
    chancy: Chancy, worker: Worker, executor: str
) -> None:
    queue, served = await _serve(chancy, worker, executor)
    ref = await _push(chancy, queue, jobs.sleep_loop, kwargs={"seconds": 30})
    await _wait(chancy, ref, states={QueuedJob.State.RUNNING})
    await asyncio.sleep(0.3)
    started = time.monotonic()
    assert await worker.stop(timeout=0.3) is False
    assert time.monotonic() - started < 10
    job = await _wait(chancy, ref, states={QueuedJob.State.PENDING}, timeout=5)
    assert job.errors == []
    assert job.attempts == 0
    assert len(served) == 0
    if executor == PROCESS:
        assert served.pids == []  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# Process executor
# ---------------------------------------------------------------------------


async def test_process_child_crash_is_a_lost_run_and_the_job_runs_again(
    chancy: Chancy, worker: Worker
) -> None:
    # A default job (max_attempts=1) whose child process dies mid-run: the
    # lost run is recorded but is not the job's attempt, so it runs again.
    queue, served = await _serve(chancy, worker, PROCESS, concurrency=1)
    job = await _wait(chancy, await _push(chancy, queue, jobs.kill_self_once))
    assert job.state is QueuedJob.State.SUCCEEDED, job.errors
    assert job.attempts == 1
    assert job.meta["lost_runs"] == 1
    (error,) = job.errors
    assert error["lost"] is True and error["attempt"] == 0
    tb = error["traceback"]
    assert "WorkerLostError" in tb
    assert "the worker process running this job died" in tb
    assert "SIGKILL" in tb
    assert "lost run 1 of at most 3" in tb
    # The executor keeps working with a fresh child.
    ok = await _wait(chancy, await _push(chancy, queue, jobs.record_pid))
    assert ok.state is QueuedJob.State.SUCCEEDED, ok.errors
    assert served.pids == [ok.meta["pid"]]  # type: ignore[attr-defined]


async def test_process_a_job_that_kills_its_child_every_time_fails_after_3_lost_runs(
    chancy: Chancy, worker: Worker
) -> None:
    queue, _ = await _serve(chancy, worker, PROCESS, concurrency=1)
    job = await _wait(
        chancy, await _push(chancy, queue, jobs.kill_self, max_attempts=5)
    )
    assert job.state is QueuedJob.State.FAILED
    assert job.attempts == 0  # never an attempt of its own: always lost
    assert job.meta["lost_runs"] == 3
    assert [e["lost"] for e in job.errors] == [True, True, True]
    assert "lost 3 times (max_lost_runs=3)" in job.errors[-1]["traceback"]
    assert job.completed_at is not None


ORPHAN_WORKER = """
import asyncio, sys
from chancy import Chancy, Worker, Queue

async def main():
    app = Chancy(sys.argv[1], no_default_plugins=True)
    async with app:
        await app.declare(
            Queue("orphans", executor=Chancy.Executor.Process, polling_interval=0.1),
            upsert=True,
        )
        async with Worker(app) as worker:
            print("ready", flush=True)
            await worker.wait_for_shutdown()

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie that nobody reaped yet counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(os.name != "posix", reason="the process executor needs POSIX")
async def test_process_children_die_with_a_killed_worker(
    chancy: Chancy, chancy_dsn: str, tmp_path: Path
) -> None:
    # A SIGKILLed worker's jobs are run again elsewhere by Recovery: a child
    # still running one would make two live runs of the same job.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_WORKER, chancy_dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    child_pid = None
    try:
        assert proc.stdout is not None
        seen = ""
        while "ready" not in seen:
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line, seen
            seen += line
        pid_file = tmp_path / "child.pid"
        ref = await chancy.push(
            Job(
                func=_name(jobs.record_pid_and_sleep),
                queue="orphans",
                kwargs={"path": str(pid_file), "seconds": 120},
            )
        )
        await _wait(chancy, ref, states={QueuedJob.State.RUNNING})
        await _until(lambda: pid_file.exists() and pid_file.read_text() != "")
        child_pid = int(pid_file.read_text())
        assert _alive(child_pid)
        proc.kill()
        await asyncio.to_thread(proc.wait, 10)
        await _until(lambda: not _alive(child_pid), timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
        if child_pid is not None and _alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)


ORPHAN_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(child.pid, flush=True)
time.sleep(120)
"""
ORPHAN_CHILD = """
import os, sys, time
sys.platform = "darwin"  # no PR_SET_PDEATHSIG: the watchdog thread must act
from chancy.executors.process import _die_with_parent
_die_with_parent(os.getppid())
print("armed", flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(os.name != "posix", reason="the process executor needs POSIX")
async def test_process_orphan_watchdog_without_pdeathsig() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_PARENT, ORPHAN_CHILD],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    child_pid = None
    try:
        assert parent.stdout is not None
        child_pid = int(await asyncio.to_thread(parent.stdout.readline))
        # The child shares the parent's stdout: wait until its watchdog runs
        # (a fixed sleep lost the race on a loaded machine, and a parent
        # killed earlier leaves the child watching init instead).
        armed = await asyncio.to_thread(parent.stdout.readline)
        assert armed.strip() == "armed"
        assert _alive(child_pid)
        parent.kill()
        await asyncio.to_thread(parent.wait, 10)
        await _until(lambda: not _alive(child_pid), timeout=5)
    finally:
        if parent.poll() is None:
            parent.kill()
        if child_pid is not None and _alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)


async def test_process_kills_a_child_that_ignores_its_time_limit(
    chancy: Chancy, worker: Worker
) -> None:
    queue, _ = await _serve(chancy, worker, PROCESS, concurrency=1)
    started = time.monotonic()
    ref = await _push(
        chancy,
        queue,
        jobs.stubborn_loop,
        kwargs={"seconds": 30},
        limits=[Limit(Limit.Type.TIME, 1)],
    )
    job = await _wait(chancy, ref, timeout=15)
    assert time.monotonic() - started < 10
    assert job.state is QueuedJob.State.FAILED
    tb = job.errors[0]["traceback"]
    assert "TimeoutError" in tb and "exceeded its time limit of 1s" in tb
    assert "worker process was killed" in tb
    ok = await _wait(chancy, await _push(chancy, queue, jobs.noop))
    assert ok.state is QueuedJob.State.SUCCEEDED


async def test_process_memory_limit(chancy: Chancy, worker: Worker) -> None:
    queue, _ = await _serve(chancy, worker, PROCESS, concurrency=1)
    limit = Limit(Limit.Type.MEMORY, 512 * 1024**2)
    job = await _wait(
        chancy,
        await _push(
            chancy, queue, jobs.allocate, kwargs={"size": 1024**3}, limits=[limit]
        ),
    )
    assert job.state is QueuedJob.State.FAILED
    assert "MemoryError" in job.errors[0]["traceback"]
    # The limit applied to that run only.
    job = await _wait(
        chancy,
        await _push(chancy, queue, jobs.allocate, kwargs={"size": 600 * 1024**2}),
    )
    assert job.state is QueuedJob.State.SUCCEEDED, job.errors


async def test_process_children_are_recycled(chancy: Chancy, worker: Worker) -> None:
    queue, _ = await _serve(
        chancy,
        worker,
        PROCESS,
        concurrency=1,
        executor_options={"maximum_jobs_per_worker": 2},
    )
    pids = []
    for _ in range(4):
        job = await _wait(chancy, await _push(chancy, queue, jobs.record_pid))
        assert job.state is QueuedJob.State.SUCCEEDED, job.errors
        pids.append(job.meta["pid"])
    assert pids[0] == pids[1] != pids[2] == pids[3]


async def test_process_no_children_while_idle(chancy: Chancy, worker: Worker) -> None:
    queue, served = await _serve(
        chancy, worker, PROCESS, concurrency=2, executor_options={"idle_timeout": 0.3}
    )
    assert served.pids == []  # type: ignore[attr-defined]
    before = {p.pid for p in multiprocessing.active_children()}
    job = await _wait(chancy, await _push(chancy, queue, jobs.record_pid))
    assert job.state is QueuedJob.State.SUCCEEDED
    assert job.meta["pid"] not in before
    await _until(lambda: served.pids == [], timeout=5)  # type: ignore[attr-defined]
    await _until(
        lambda: (
            job.meta["pid"] not in {p.pid for p in multiprocessing.active_children()}
        ),
        timeout=5,
    )


async def test_process_meta_survives_a_failure(chancy: Chancy, worker: Worker) -> None:
    queue, _ = await _serve(chancy, worker, PROCESS, concurrency=1)
    ref = await _push(
        chancy, queue, jobs.set_meta_then_fail, kwargs={"key": "step", "value": 3}
    )
    job = await _wait(chancy, ref)
    assert job.state is QueuedJob.State.FAILED
    assert job.meta == {"step": 3}


async def test_process_executor_options_are_validated(
    chancy: Chancy, worker: Worker
) -> None:
    from chancy.executors.process import ProcessExecutor

    queue = Queue("validated", executor=PROCESS)
    with pytest.raises(ValueError, match="maximum_jobs_per_worker"):
        ProcessExecutor(worker, queue, maximum_jobs_per_worker=0)
    with pytest.raises(TypeError, match="no executor options"):
        ProcessExecutor(worker, queue, unknown=1)


# ---------------------------------------------------------------------------
# Threaded executor without a database
# ---------------------------------------------------------------------------


def _fake_worker() -> Any:
    updates: list[QueuedJob] = []
    completed: list[QueuedJob] = []
    plugins = types.SimpleNamespace(has_job_starting=False, has_job_completed=False)
    return types.SimpleNamespace(
        chancy=types.SimpleNamespace(plugin_manager=plugins),
        queue_update=updates.append,
        on_job_completed=lambda *, queue, job: completed.append(job),
        updates=updates,
        completed=completed,
    )


def _queued(func: Callable[..., Any], **kwargs: Any) -> QueuedJob:
    return QueuedJob(id=uuid.uuid4(), func=_name(func), queue="t", kwargs=kwargs)


async def test_threaded_cancel_before_start_does_not_break_completion() -> None:
    """Spec §17.9: a cancelled, never-started future must not crash the callback."""
    from chancy.executors.thread import ThreadedExecutor

    fake = _fake_worker()
    executor = ThreadedExecutor(fake, Queue("t", executor=THREADED, concurrency=1))
    first = _queued(jobs.sleep_loop, seconds=0.3)
    second = _queued(jobs.noop)
    await executor.push(first)
    await executor.push(second)  # waits for the only thread
    await executor.cancel(_ref(second))
    await executor.stop()
    assert [j.id for j in fake.updates] == [first.id]
    assert fake.updates[0].state is QueuedJob.State.SUCCEEDED
    assert second.id in {j.id for j in fake.completed}
    assert len(executor) == 0


def _ref(job: QueuedJob) -> Any:
    from chancy.job import Reference

    return Reference(job.id)


async def test_threaded_stop_does_not_block_the_loop() -> None:
    from chancy.executors.thread import ThreadedExecutor

    fake = _fake_worker()
    executor = ThreadedExecutor(fake, Queue("t", executor=THREADED, concurrency=1))
    await executor.push(_queued(jobs.sleep_loop, seconds=0.5))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await executor.stop()
    ticker.cancel()
    assert ticks > 10
    assert fake.updates[0].state is QueuedJob.State.SUCCEEDED


STUCK_WORKER = """
import asyncio, sys
from chancy import Chancy, Worker, Queue

async def main():
    app = Chancy(sys.argv[1], no_default_plugins=True)
    async with app:
        await app.declare(
            Queue("stuck", executor=Chancy.Executor.Threaded, polling_interval=0.1),
            upsert=True,
        )
        worker = Worker(app, shutdown_timeout=1, register_signal_handlers=True)
        await worker.start()
        print("ready", flush=True)
        await worker.wait_for_shutdown()
    print("stopped", flush=True)

asyncio.run(main())
"""


@pytest.mark.skipif(os.name != "posix", reason="sends SIGTERM")
async def test_threaded_job_stuck_in_c_does_not_keep_a_stopped_worker_alive(
    chancy: Chancy, chancy_dsn: str, tmp_path: Path
) -> None:
    # A single time.sleep(120) cannot be interrupted (the exception injected
    # into its thread waits for the call to return). The worker gives up on
    # it after shutdown_timeout and puts the job back; its process must then
    # exit, not wait two minutes for the thread (which would also keep running
    # the job while another worker runs it again).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_WORKER, chancy_dsn],
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
        pid_file = tmp_path / "pid"
        ref = await chancy.push(
            Job(
                func=_name(jobs.record_pid_and_sleep),
                queue="stuck",
                kwargs={"path": str(pid_file), "seconds": 120},
            )
        )
        await _until(lambda: pid_file.exists() and pid_file.read_text() != "")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(proc.communicate, timeout=20)
        assert time.monotonic() - started < 15, output
        assert proc.returncode == 0, output
        assert "stopped" in output
        job = await chancy.get_job(ref)
        assert job is not None
        assert (job.state, job.attempts, job.errors) == (
            QueuedJob.State.PENDING,
            0,
            [],
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------
# Sub-interpreters
# ---------------------------------------------------------------------------


@pytest.mark.skipif(_sub_available(), reason="sub-interpreters are available here")
def test_sub_interpreter_import_error_is_explicit() -> None:
    sys.modules.pop("chancy.executors.sub", None)
    with pytest.raises(ImportError, match=r"Python 3\.14.*interpreters-pep-734"):
        import chancy.executors.sub  # noqa: F401


class _PicklingThreadPool:
    """Stands in for InterpreterPoolExecutor where there is none: a thread
    pool that pickles calls and results across the boundary, as it does."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from concurrent.futures import ThreadPoolExecutor

        class Pool(ThreadPoolExecutor):
            def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
                import pickle

                call = pickle.dumps((fn, args, kwargs))

                def run() -> Any:
                    fn, args, kwargs = pickle.loads(call)
                    return pickle.loads(pickle.dumps(fn(*args, **kwargs)))

                return super().submit(run)

        return Pool(*args, **kwargs)


@pytest.fixture
def fake_sub(monkeypatch: pytest.MonkeyPatch) -> Any:
    """chancy.executors.sub imported over a stand-in InterpreterPoolExecutor."""
    if _sub_available():
        pytest.skip("real sub-interpreters are available and tested above")
    package = types.ModuleType("interpreters_backports")
    concurrent = types.ModuleType("interpreters_backports.concurrent")
    futures = types.ModuleType("interpreters_backports.concurrent.futures")
    futures.InterpreterPoolExecutor = _PicklingThreadPool  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "interpreters_backports", package)
    monkeypatch.setitem(sys.modules, "interpreters_backports.concurrent", concurrent)
    monkeypatch.setitem(
        sys.modules, "interpreters_backports.concurrent.futures", futures
    )
    monkeypatch.delitem(sys.modules, "chancy.executors.sub", raising=False)
    import chancy.executors
    from chancy.executors import sub

    yield sub
    # Forget the module built over the stand-in.
    sys.modules.pop("chancy.executors.sub", None)
    if getattr(chancy.executors, "sub", None) is sub:
        delattr(chancy.executors, "sub")


async def test_sub_interpreter_executor_with_a_stand_in_pool(
    chancy: Chancy, worker: Worker, fake_sub: Any
) -> None:
    queue, _ = await _serve(chancy, worker, SUB, concurrency=2)
    refs = {
        "ok": await _push(chancy, queue, jobs.add, kwargs={"a": 1, "b": 2}),
        "async": await _push(chancy, queue, jobs.async_noop),
        "meta": await _push(
            chancy, queue, jobs.set_meta, kwargs={"key": "k", "value": "v"}
        ),
        "fail": await _push(chancy, queue, jobs.fail, kwargs={"message": "sub-boom"}),
        "unpicklable": await _push(chancy, queue, jobs.unpicklable),
        "cooperative": await _push(
            chancy,
            queue,
            jobs.cooperative_loop,
            kwargs={"seconds": 30},
            limits=[Limit(Limit.Type.TIME, 1)],
        ),
    }
    done = {key: await _wait(chancy, ref) for key, ref in refs.items()}
    for key in ("ok", "async", "meta", "unpicklable"):
        assert done[key].state is QueuedJob.State.SUCCEEDED, done[key].errors
    assert done["meta"].meta == {"k": "v"}
    assert done["fail"].state is QueuedJob.State.FAILED
    assert "ValueError: sub-boom" in done["fail"].errors[0]["traceback"]
    assert done["cooperative"].state is QueuedJob.State.FAILED
    assert "exceeded its time limit" in done["cooperative"].errors[0]["traceback"]


async def test_sub_interpreter_memory_limits_fail_fast(
    chancy: Chancy, worker: Worker, fake_sub: Any
) -> None:
    queue, _ = await _serve(chancy, worker, SUB)
    ref = await _push(
        chancy, queue, jobs.noop, limits=[Limit(Limit.Type.MEMORY, 1024**3)]
    )
    job = await _wait(chancy, ref)
    assert job.state is QueuedJob.State.FAILED
    assert "cannot enforce memory limits" in job.errors[0]["traceback"]


def test_capabilities() -> None:
    from chancy.executors.process import ProcessExecutor
    from chancy.executors.thread import ThreadedExecutor

    cap = Executor.Capability
    assert ThreadedExecutor.get_capabilities() == (
        cap.SYNC_JOBS
        | cap.ASYNC_JOBS
        | cap.CANCELLATION
        | cap.AUTOMATIC_TIME_LIMITS
        | cap.COOPERATIVE_TIME_LIMITS
    )
    assert ProcessExecutor.supports(cap.MEMORY_LIMITS)
    assert ProcessExecutor.supports(cap.AUTOMATIC_TIME_LIMITS)
    assert not ThreadedExecutor.supports(cap.MEMORY_LIMITS)
