"""Run ``async def`` jobs as tasks on the worker's own event loop."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import attrs

from chancy.errors import JobCancelledError
from chancy.executors.base import (
    Executor,
    is_async_function,
    monotonic_deadline,
    time_limit_of,
)
from chancy.job import QueuedJob, Reference

if TYPE_CHECKING:
    from chancy.queue import Queue
    from chancy.worker import Worker

__all__ = ["AsyncExecutor"]


class AsyncExecutor(Executor):
    """Runs coroutine jobs concurrently on the worker's event loop.

    The cheapest executor for I/O-bound work. CPU-bound code blocks the whole
    worker; use threads or processes for it. Synchronous functions fail the
    run with ``ValueError``. Time limits are enforced with ``asyncio.timeout``;
    cancellation cancels the task. Whatever a job raises (``SystemExit``,
    ``KeyboardInterrupt`` and other ``BaseException`` subclasses included) is
    recorded as that run's failure and never stops the worker. A job that
    blocks the event loop blocks the whole worker, and its time limit only
    acts once it yields. Default concurrency: 100.
    """

    capabilities = (
        Executor.Capability.ASYNC_JOBS
        | Executor.Capability.CANCELLATION
        | Executor.Capability.AUTOMATIC_TIME_LIMITS
        | Executor.Capability.COOPERATIVE_TIME_LIMITS
    )

    def __init__(self, worker: Worker, queue: Queue, **options: Any) -> None:
        super().__init__(worker, queue, **options)
        self.tasks: dict[asyncio.Task[Any], QueuedJob] = {}
        self._cancelled: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self.tasks)

    def get_default_concurrency(self) -> int:
        return 100

    def get_running_jobs(self) -> list[QueuedJob]:
        return list(self.tasks.values())

    async def push(self, job: QueuedJob) -> None:
        task = asyncio.create_task(self._run(job), name=f"job:{job.id}")
        self.tasks[task] = job
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self.tasks.pop(task, None)
        self._cancelled.discard(task)

    async def _run(self, job: QueuedJob) -> None:
        try:
            job = await self.on_job_starting(job)
            seconds = time_limit_of(job)
            if seconds is not None:
                job = attrs.evolve(job, deadline=monotonic_deadline(seconds))
            func, kwargs = self.get_function_and_kwargs(job)
            if not is_async_function(job.func, func):
                raise ValueError(
                    f"the async executor only runs 'async def' functions; {job.func!r} is"
                    " synchronous (use the threaded or process executor)"
                )
            if seconds is None:
                result = await func(**kwargs)
            else:
                try:
                    async with asyncio.timeout(seconds):
                        result = await func(**kwargs)
                except TimeoutError:
                    raise TimeoutError(
                        f"job {job.func} exceeded its time limit of {seconds:g}s"
                    ) from None
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task in self._cancelled:
                # cancel_job: the database already holds the outcome.
                await self._finish(job, exc=JobCancelledError(str(exc) or "cancelled"))
                return
            if task is not None and task.cancelling():
                raise  # the worker is stopping: it puts the job back
            # The job raised CancelledError itself (nobody cancelled this
            # task): that is the run's failure like any other exception.
            await self._finish(job, exc=exc)
        except BaseException as exc:
            # Whatever a job raises is that job's failure, recorded and
            # counted: SystemExit and KeyboardInterrupt too, which would
            # otherwise escape the task and stop the worker's event loop,
            # and BaseException subclasses, which would leave it running.
            await self._finish(job, exc=exc)
        else:
            await self._finish(job, result=result)

    async def _finish(self, job: QueuedJob, **outcome: Any) -> None:
        # Free the slot first, so the wake-up that follows sees it free.
        task = asyncio.current_task()
        if task is not None:
            self.tasks.pop(task, None)
        await self.on_job_completed(job=job, **outcome)

    async def cancel(self, ref: Reference) -> None:
        for task, job in list(self.tasks.items()):
            if job.id == ref.identifier:
                self._cancelled.add(task)
                task.cancel("cancelled with cancel_job")

    async def stop(self) -> None:
        """Cancel whatever still runs and wait for it; the worker releases those jobs."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel("worker shutting down")
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
