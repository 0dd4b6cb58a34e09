"""Retries of real jobs: a worker, the async executor and a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.plugin import Plugin
from chancy.plugins.retry import RetryPlugin, retry_settings

QUEUE = "retry"
#: Fast defaults for the tests: 0.1 s, 0.2 s, 0.4 s... plus up to 0.05 s.
FAST = {"backoff": 0.1, "backoff_jitter": [0, 0.05]}


class TransientError(Exception):
    pass


async def job_that_fails() -> None:
    raise ValueError("This job should fail")


async def successful_job() -> None:
    pass


ERRORS: dict[str, type[BaseException]] = {
    "TransientError": TransientError,
    "ValueError": ValueError,
    "PermissionError": PermissionError,
    "ConnectionResetError": ConnectionResetError,
}


async def raise_named(*, name: str) -> None:
    raise ERRORS[name](f"raised {name}")


class Recorder(Plugin):
    """Sees each run's outcome after the RetryPlugin (plugins run in order)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[QueuedJob, datetime]] = []

    @staticmethod
    def get_identifier() -> str:
        return "tests.recorder"

    async def on_job_completed(
        self,
        *,
        worker: Worker,
        job: QueuedJob,
        exc: BaseException | None = None,
        result: Any = None,
    ) -> QueuedJob:
        self.seen.append((job, datetime.now(UTC)))
        return job


def app(*plugins: Plugin) -> Any:
    return pytest.mark.parametrize(
        "chancy",
        [{"plugins": list(plugins), "no_default_plugins": True}],
        indirect=True,
    )


async def declare(chancy: Chancy) -> None:
    await chancy.declare(
        Queue(
            QUEUE,
            executor=Chancy.Executor.Async,
            concurrency=10,
            polling_interval=0.1,
            eager_polling=True,
        ),
        upsert=True,
    )


async def run(chancy: Chancy, job: Job) -> QueuedJob:
    ref = await chancy.push(job.with_queue(QUEUE))
    done = await chancy.wait_for_job(ref, interval=0.05, timeout=15)
    assert done is not None
    return done


@app(RetryPlugin(default_settings=FAST))
async def test_retry_with_the_plugins_settings(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    job = await run(chancy, Job.from_func(job_that_fails, max_attempts=3))
    assert job.state is QueuedJob.State.FAILED
    assert job.attempts == 3
    assert len(job.errors) == 3
    for i, error in enumerate(job.errors):
        assert error["attempt"] == i
        assert "ValueError: This job should fail" in error["traceback"]
    assert job.completed_at is not None


@app(RetryPlugin(), Recorder())
async def test_retry_with_custom_settings(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    settings = {
        "backoff": 0.1,
        "backoff_factor": 3,
        "backoff_limit": 0.25,
        "backoff_jitter": [0, 0.05],
    }
    pushed = datetime.now(UTC)
    job = await run(
        chancy,
        Job.from_func(
            job_that_fails, max_attempts=3, meta={"retry_settings": settings}
        ),
    )
    assert job.state is QueuedJob.State.FAILED
    assert (job.attempts, len(job.errors)) == (3, 3)
    assert job.meta["retry_settings"] == settings  # left as given
    # Waits of 0.1 s then min(0.3, 0.25) s, each plus up to 0.05 s: the final
    # scheduled_at (set by the second failure) is at least 0.35 s after push.
    after_push = (job.scheduled_at - pushed).total_seconds()
    assert 0.35 <= after_push < 3
    recorder = chancy.plugins["tests.recorder"]
    assert isinstance(recorder, Recorder)
    (first, at_1), (second, at_2), (last, _) = recorder.seen
    assert first.state is second.state is QueuedJob.State.RETRYING
    assert first.completed_at is None and second.completed_at is None
    assert 0.1 - 0.01 <= (first.scheduled_at - at_1).total_seconds() <= 0.15
    assert 0.25 - 0.01 <= (second.scheduled_at - at_2).total_seconds() <= 0.3
    assert second.scheduled_at == job.scheduled_at
    assert last.state is QueuedJob.State.FAILED


@app(RetryPlugin())
async def test_no_retry_on_success(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    job = await run(
        chancy,
        Job.from_func(
            successful_job,
            max_attempts=3,
            meta={"retry_settings": retry_settings(backoff=1)},
        ),
    )
    assert job.state is QueuedJob.State.SUCCEEDED
    assert job.attempts == 1
    assert job.errors == []


@app(RetryPlugin())
async def test_respect_max_attempts(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)
    job = await run(
        chancy,
        Job.from_func(
            job_that_fails,
            max_attempts=2,
            meta={"retry_settings": {**FAST, "backoff_factor": 2, "backoff_limit": 10}},
        ),
    )
    assert job.state is QueuedJob.State.FAILED
    assert job.attempts == 2
    assert len(job.errors) == 2


@app(RetryPlugin(fail_on=[PermissionError], default_settings=FAST))
async def test_retry_on_and_fail_on(chancy: Chancy, worker: Worker) -> None:
    await declare(chancy)

    def failing(name: str, **settings: Any) -> Job:
        job = Job.from_func(raise_named, kwargs={"name": name}, max_attempts=3)
        return job.with_meta({"retry_settings": retry_settings(**settings)})

    jobs = {
        "listed": failing("TransientError", retry_on=[TransientError]),
        "subclass": failing("ConnectionResetError", retry_on=["OSError"]),
        "not listed": failing("ValueError", retry_on=[TransientError]),
        "job fail_on": failing("ValueError", fail_on=["ValueError"]),
        "plugin fail_on": failing("PermissionError"),
        "job overrides plugin": failing("PermissionError", fail_on=[]),
    }
    refs = {
        name: await chancy.push(job.with_queue(QUEUE)) for name, job in jobs.items()
    }
    done = {
        j.id: j
        for j in await chancy.wait_for_jobs(
            list(refs.values()), interval=0.05, timeout=15
        )
    }
    result = {name: done[ref.identifier] for name, ref in refs.items()}
    assert {name: job.attempts for name, job in result.items()} == {
        "listed": 3,
        "subclass": 3,
        "not listed": 1,
        "job fail_on": 1,
        "plugin fail_on": 1,
        "job overrides plugin": 3,
    }
    assert all(job.state is QueuedJob.State.FAILED for job in result.values())
    assert all(job.completed_at is not None for job in result.values())
    assert "does not match retry_on" in result["not listed"].errors[0]["traceback"]
    tracebacks = {name: job.errors[0]["traceback"] for name, job in result.items()}
    assert "matches fail_on entry 'ValueError'" in tracebacks["job fail_on"]
    assert "'builtins.PermissionError'" in tracebacks["plugin fail_on"]


@app(RetryPlugin(default_settings=FAST))
async def test_invalid_settings_fail_the_job_and_the_worker_carries_on(
    chancy: Chancy, worker: Worker
) -> None:
    await declare(chancy)
    bad = await run(
        chancy,
        Job.from_func(
            job_that_fails,
            max_attempts=3,
            meta={"retry_settings": {"backoff": "soon", "backoff_factor": 2}},
        ),
    )
    assert bad.state is QueuedJob.State.FAILED
    assert bad.attempts == 1
    (error,) = bad.errors
    assert "ValueError: This job should fail" in error["traceback"]
    assert "'backoff' must be a number of seconds" in error["traceback"]
    good = await run(chancy, Job.from_func(successful_job))
    assert good.state is QueuedJob.State.SUCCEEDED
    retried = await run(chancy, Job.from_func(job_that_fails, max_attempts=2))
    assert retried.attempts == 2
    assert retried.scheduled_at > retried.created_at + timedelta(seconds=0.1)  # type: ignore[operator]
