"""Run jobs in sub-interpreters (experimental).

Needs :class:`concurrent.futures.InterpreterPoolExecutor` (Python 3.14), or
on Python 3.13 the ``interpreters-pep-734`` backport. Importing this module
anywhere else raises :class:`ImportError`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pickle
import sys
import time
import traceback
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import attrs

from chancy.errors import Snooze
from chancy.executors.base import (
    ConcurrentExecutor,
    Executor,
    get_function_and_kwargs,
    time_limit_of,
)
from chancy.job import QueuedJob, Reference

if TYPE_CHECKING:
    from chancy.queue import Queue
    from chancy.worker import Worker

try:
    from concurrent.futures import InterpreterPoolExecutor  # type: ignore[attr-defined]
except ImportError:
    try:
        from interpreters_backports.concurrent.futures import (  # type: ignore[import-not-found, unused-ignore]
            InterpreterPoolExecutor,
        )
    except ImportError:
        try:
            from interpreters_backport.concurrent.futures import (  # type: ignore[import-not-found, unused-ignore]
                InterpreterPoolExecutor,
            )
        except ImportError:
            raise ImportError(
                "sub-interpreters need Python 3.14, or 3.13 with"
                " `pip install interpreters-pep-734`"
            ) from None

__all__ = ["SubInterpreterExecutor"]

log = logging.getLogger("chancy.executors.sub")


def _run_job(job: QueuedJob) -> tuple[Any, ...]:
    """Run ``job`` inside a sub-interpreter; returns a message like the process executor's.

    ``("ok", meta, result)`` or ``("error", meta, traceback_text,
    exception_type_name, message)``. Everything crossing the interpreter
    boundary is pickled, so a result that cannot be is replaced by ``None``.
    """
    try:
        func, kwargs = get_function_and_kwargs(job)
        if inspect.iscoroutinefunction(func):
            result = asyncio.run(func(**kwargs))
        else:
            result = func(**kwargs)
    except BaseException as exc:
        if isinstance(exc, Snooze):
            return ("snooze", _picklable_meta(job), exc.seconds)
        cls = type(exc)
        return (
            "error",
            _picklable_meta(job),
            "".join(traceback.format_exception(exc)),
            f"{cls.__module__}.{cls.__qualname__}",
            str(exc),
        )
    try:
        pickle.dumps(result)
    except Exception as exc:
        log.warning(
            "Job %s (%s) returned a value that cannot be pickled (%s); its plugins get"
            " None instead",
            job.id,
            job.func,
            exc,
        )
        result = None
    return ("ok", _picklable_meta(job), result)


def _picklable_meta(job: QueuedJob) -> dict[str, Any] | None:
    try:
        pickle.dumps(job.meta)
    except Exception:
        return None
    return job.meta


class SubInterpreterExecutor(ConcurrentExecutor):
    """Runs jobs in a pool of sub-interpreters, each in its own thread.

    Each sub-interpreter has its own GIL, so CPU-bound Python code runs in
    parallel without the cost of processes. Job functions, their arguments
    and results are pickled across the boundary, and many C extensions cannot
    be imported in a sub-interpreter. Each interpreter starts with the
    worker's ``sys.path``.

    Time limits are cooperative only: the job's ``context.deadline`` makes
    :meth:`QueuedJob.checkpoint` raise ``TimeoutError``. A running job
    cannot be interrupted (a job not started yet can still be cancelled).
    No memory limits. Default concurrency: ``min(32, cpu_count + 4)``.
    """

    capabilities = (
        Executor.Capability.SYNC_JOBS
        | Executor.Capability.ASYNC_JOBS
        | Executor.Capability.COOPERATIVE_TIME_LIMITS
    )

    def __init__(self, worker: Worker, queue: Queue, **options: Any) -> None:
        super().__init__(worker, queue, **options)
        # The initializer is pickled into each interpreter: ``exec`` of a
        # small script keeps it free of imports that need the path it sets.
        script = f"import sys\nsys.path[:] = {list(sys.path)!r}\n"
        self.pool = InterpreterPoolExecutor(
            max_workers=self.concurrency,
            thread_name_prefix=f"chancy-{queue.name}",
            initializer=exec,
            initargs=(script, {}),
        )
        self._loop = asyncio.get_running_loop()
        self._reporting: set[asyncio.Task[None]] = set()
        self._abandoned = False

    def get_default_concurrency(self) -> int:
        return min(32, (os.cpu_count() or 1) + 4)

    def reconfigure(self, queue: Queue) -> bool:
        # The pool's size is fixed when it is created: another concurrency
        # needs a new pool (the worker swaps executors without waiting).
        current = self.concurrency
        if (queue.concurrency or self.get_default_concurrency()) != current:
            return False
        return super().reconfigure(queue)

    async def push(self, job: QueuedJob) -> None:
        try:
            job = await self.on_job_starting(job)
            seconds = time_limit_of(job)
            if seconds is not None:
                job = attrs.evolve(job, deadline=time.monotonic() + seconds)
            future = self.pool.submit(_run_job, job)
        except Exception as exc:
            await self.on_job_completed(job=job, exc=exc)
            return
        self.jobs[future] = job
        future.add_done_callback(self._on_future_done)

    def _on_future_done(self, future: Future[Any]) -> None:
        try:
            self._loop.call_soon_threadsafe(self._collect, future)
        except RuntimeError:
            log.warning("A job finished after its worker's event loop closed")

    def _collect(self, future: Future[Any]) -> None:
        job = self.jobs.get(future)
        if job is None or future.cancelled() or self._abandoned:
            # Cancelled before it started (ConcurrentExecutor.cancel already
            # told the worker): never ask a cancelled future for its outcome.
            self.jobs.pop(future, None)
            return
        task = self._loop.create_task(self._report(future, job))
        self._reporting.add(task)
        task.add_done_callback(self._reporting.discard)

    async def _report(self, future: Future[Any], job: QueuedJob) -> None:
        from chancy.executors.process import rebuild_exception

        try:
            exc = future.exception()
            if exc is not None:
                await self.on_job_completed(job=job, exc=exc)
                return
            kind, meta, *rest = future.result()
            if meta is not None:
                job = attrs.evolve(job, meta=meta)
            if kind == "ok":
                await self.on_job_completed(job=job, result=rest[0])
            elif kind == "snooze":
                await self.on_job_completed(job=job, exc=Snooze(rest[0]))
            else:
                tb, type_name, text = rest
                await self.on_job_completed(
                    job=job, exc=rebuild_exception(type_name, text), tb=tb
                )
        finally:
            self.jobs.pop(future, None)

    async def cancel(self, ref: Reference) -> None:
        """Drop the job if it has not started; a running job cannot be interrupted."""
        await super().cancel(ref)

    async def stop(self) -> None:
        """Wait for running jobs without blocking the event loop, then shut the pool."""
        task = asyncio.current_task()
        if task is not None and task.cancelling() > 0:
            # Interrupted shutdown: running jobs cannot be interrupted; let them
            # finish unobserved (the worker puts them back to pending).
            self._abandoned = True
            self.pool.shutdown(wait=False, cancel_futures=True)
            return
        await asyncio.to_thread(self.pool.shutdown, wait=True)
        await asyncio.sleep(0)
        while self._reporting:
            await asyncio.gather(*list(self._reporting), return_exceptions=True)
