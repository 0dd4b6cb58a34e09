"""Run jobs in a pool of threads inside the worker process."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import enum
import inspect
import itertools
import logging
import os
import queue as queue_module
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from chancy.errors import JobCancelledError
from chancy.executors.base import Executor, time_limit_of
from chancy.job import QueuedJob, Reference

if TYPE_CHECKING:
    from chancy.queue import Queue
    from chancy.worker import Worker

__all__ = ["ThreadedExecutor"]

log = logging.getLogger("chancy.executors.thread")

#: Seconds between repeated interruptions of a job that swallowed one.
_REINTERRUPT_INTERVAL = 1.0
#: Seconds the watchdog lets an async job's own ``asyncio.timeout`` act first.
_ASYNC_GRACE = 0.5
#: Seconds an interrupted shutdown waits for the interrupted threads.
_INTERRUPT_WAIT = 5.0


_PENDING, _STARTED, _FINISHED, _CANCELLED = range(4)


class _Call:
    """A call submitted to :class:`_JobThreads` and its result: the part of
    :class:`concurrent.futures.Future` the executor uses, without the
    condition variable a ``Future`` creates and notifies for every call
    (about a tenth of the event loop's time in a threaded burn-down).

    ``state`` changes under the pool's lock; ``callback(call)`` runs once,
    when the call finished (in its thread) or was cancelled (in the
    canceller's).
    """

    __slots__ = ("arg", "callback", "error", "fn", "lock", "result", "state")

    def __init__(
        self,
        fn: Callable[[Any], Any],
        arg: Any,
        callback: Callable[[_Call], None],
        lock: threading.Lock,
    ) -> None:
        self.fn = fn
        self.arg = arg
        self.callback = callback
        self.lock = lock
        self.state = _PENDING
        self.result: Any = None
        self.error: BaseException | None = None

    def cancel(self) -> bool:
        """Cancel the call if no thread took it yet; returns whether it did."""
        with self.lock:
            if self.state != _PENDING:
                return self.state == _CANCELLED
            self.state = _CANCELLED
        self.callback(self)
        return True

    def cancelled(self) -> bool:
        return self.state == _CANCELLED

    def done(self) -> bool:
        return self.state >= _FINISHED


class _JobThreads:
    """Up to ``size`` daemon threads, started on demand, running submitted calls.

    What the executor needs of :class:`concurrent.futures.ThreadPoolExecutor`
    (``submit`` returning a handle on the call, ``shutdown`` that can cancel
    what has not started), with one difference: the threads are daemon
    threads. The interpreter joins a thread pool's threads when it exits, so
    a job stuck in C code (a long ``time.sleep``, a read without timeout)
    that the interruption of a shutdown cannot reach kept the stopped
    worker's process alive until the job returned, and kept running it while
    another worker, which got the job put back, ran it again. A daemon
    thread dies with the process instead.
    """

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._work: queue_module.SimpleQueue[_Call | None] = queue_module.SimpleQueue()
        self._threads: set[threading.Thread] = set()
        #: Released by a thread each time it becomes idle (as in the stdlib pool).
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._shutdown = False
        self._numbers = itertools.count()

    def submit(
        self,
        fn: Callable[[Any], Any],
        arg: Any,
        callback: Callable[[_Call], None],
    ) -> _Call:
        """Run ``fn(arg)`` in a thread (``fn`` must not raise); ``callback(call)``
        once it returned or was cancelled."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot run new jobs after the executor stopped")
            call = _Call(fn, arg, callback, self._lock)
            self._work.put(call)
            if (
                not self._idle.acquire(blocking=False)
                and len(self._threads) < self.size
            ):
                thread = threading.Thread(
                    target=self._serve,
                    name=f"{self.name}_{next(self._numbers)}",
                    daemon=True,
                )
                self._threads.add(thread)
                thread.start()
            return call

    def _serve(self) -> None:
        lock = self._lock
        while True:
            call = self._work.get()
            if call is None:
                self._work.put(None)  # the next thread stops too
                return
            with lock:
                started = call.state == _PENDING
                if started:
                    call.state = _STARTED
            if started:
                try:
                    call.result = call.fn(call.arg)
                except BaseException as exc:  # fn should not raise; be defensive
                    call.error = exc
                    del exc
                with lock:
                    call.state = _FINISHED
                call.callback(call)
            del call
            self._idle.release()

    def shutdown(self, *, cancel_futures: bool = False) -> None:
        """Accept no more calls; with ``cancel_futures``, cancel those not
        started. Returns at once: the threads finish what they run (or die
        with the process)."""
        cancelled: list[_Call] = []
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        call = self._work.get_nowait()
                    except queue_module.Empty:
                        break
                    if call is not None:
                        cancelled.append(call)
            self._work.put(None)
        for call in cancelled:  # outside the lock, which cancel() takes
            call.cancel()


class _WorkerInterrupted(BaseException):
    """Raised inside a job's thread when the worker stops without waiting for it.

    A ``BaseException`` so that ``except Exception`` in job code does not
    swallow it; it is never recorded (the worker puts the job back).
    """


class _Reason(enum.Enum):
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


_INJECTED: dict[_Reason, type[BaseException]] = {
    # PyThreadState_SetAsyncExc raises a class (instantiated without arguments);
    # the thread replaces it with a properly worded exception afterwards.
    _Reason.TIMEOUT: TimeoutError,
    _Reason.CANCELLED: JobCancelledError,
    _Reason.INTERRUPTED: _WorkerInterrupted,
}


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> int:
    """Raise ``exc`` in the thread at its next bytecode (``None`` clears a pending one)."""
    return int(
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread_id), None if exc is None else ctypes.py_object(exc)
        )
    )


def _wake() -> None:
    """Scheduled on a job's event loop only to make its ``select()`` return."""


class _State(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"


class _Run:
    """One run of a job: the token that interruptions are checked against.

    ``state``, ``thread_id`` and ``reason`` change only under the executor's
    lock, so an interruption can never reach a thread that has already moved
    on to another job.
    """

    __slots__ = (
        "deferred",
        "future",
        "job",
        "loop",
        "reason",
        "seconds",
        "state",
        "thread_id",
        "timer",
        "waiter",
    )

    def __init__(self, job: QueuedJob, seconds: float | None) -> None:
        self.job = job
        self.seconds = seconds
        self.state = _State.PENDING
        self.thread_id: int | None = None
        self.reason: _Reason | None = None
        self.future: _Call | None = None
        #: Set while :meth:`ThreadedExecutor.stop` waits for the run's call.
        self.waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        #: The event loop of an ``async def`` job, running in its thread.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.deferred = False


@attrs.define(slots=True)
class _Outcome:
    job: QueuedJob
    result: Any = None
    exc: BaseException | None = None
    #: The run never started because the job was cancelled: nothing to record.
    skipped: bool = False
    #: Interrupted by an interrupted shutdown: nothing to record.
    interrupted: bool = False


def _timeout_error(job: QueuedJob, seconds: float | None) -> TimeoutError:
    limit = f" of {seconds:g}s" if seconds is not None else ""
    return TimeoutError(f"job {job.func} exceeded its time limit{limit}")


class ThreadedExecutor(Executor):
    """Runs jobs in a pool of threads of the worker's process.

    Suited to I/O-bound synchronous code. ``async def`` jobs run in a fresh
    event loop inside their thread. Threads share the GIL, so CPU-bound jobs
    do not run in parallel (use the process executor for those).

    Time limits are enforced twice: the job's ``context.deadline`` makes
    :meth:`QueuedJob.checkpoint() <chancy.QueuedJob.checkpoint>` raise ``TimeoutError`` for jobs that check,
    and a watchdog on the worker's event loop raises ``TimeoutError`` inside
    the job's thread when the deadline passes (through
    ``PyThreadState_SetAsyncExc``). That asynchronous exception is delivered
    at the next Python bytecode: a thread blocked in a long C call (a single
    ``time.sleep(60)``, a socket read without timeout) is only interrupted
    when the call returns. Cancelling a running job uses the same mechanism
    with :class:`~chancy.errors.JobCancelledError`. No memory limits.

    A worker that stops waits ``shutdown_timeout`` for running jobs, then
    interrupts them the same way and puts them back; a thread that the
    interruption cannot reach within a few seconds is abandoned. Job threads
    are daemon threads, so an abandoned one does not keep the worker's
    process alive: it ends when the process exits.

    Default concurrency: ``min(32, cpu_count + 4)``.
    """

    capabilities = (
        Executor.Capability.SYNC_JOBS
        | Executor.Capability.ASYNC_JOBS
        | Executor.Capability.CANCELLATION
        | Executor.Capability.AUTOMATIC_TIME_LIMITS
        | Executor.Capability.COOPERATIVE_TIME_LIMITS
    )

    def __init__(self, worker: Worker, queue: Queue, **options: Any) -> None:
        super().__init__(worker, queue, **options)
        self.pool = _JobThreads(self.concurrency, f"chancy-{queue.name}")
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._runs: dict[Any, _Run] = {}
        self._reporting: set[asyncio.Task[None]] = set()
        self._stopped = False
        # Finished futures on their way from the pool threads to the loop:
        # one wake-up of the loop drains every completion that arrived
        # meanwhile, instead of one call_soon_threadsafe (a write to the
        # loop's self-pipe and a loop iteration) per job.
        self._done: collections.deque[_Call] = collections.deque()
        self._drain_scheduled = False

    def __len__(self) -> int:
        return len(self._runs)

    def get_default_concurrency(self) -> int:
        return min(32, (os.cpu_count() or 1) + 4)

    def reconfigure(self, queue: Queue) -> bool:
        # The pool's size is fixed when it is created: another concurrency
        # needs a new pool (the worker swaps executors without waiting).
        current = self.concurrency
        if (queue.concurrency or self.get_default_concurrency()) != current:
            return False
        return super().reconfigure(queue)

    def get_running_jobs(self) -> list[QueuedJob]:
        return [run.job for run in self._runs.values()]

    # ------------------------------------------------------------------
    # Starting
    # ------------------------------------------------------------------

    async def push(self, job: QueuedJob) -> None:
        if self._stopped:
            raise RuntimeError(
                f"{type(self).__name__} for queue {self.queue.name!r} is stopped"
            )
        run = _Run(job, None)
        self._runs[job.id] = run
        try:
            job = await self.on_job_starting(job)
            seconds = time_limit_of(job)
            if seconds is not None:
                job = attrs.evolve(job, deadline=time.monotonic() + seconds)
            run.job, run.seconds = job, seconds
            if run.reason is not None:  # cancelled while plugins ran
                self._finish(run, self._outcome_before_start(run))
                return
            run.future = self.pool.submit(self._call, run, self._on_future_done)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                self._runs.pop(job.id, None)
                raise
            self._finish(run, _Outcome(run.job, exc=exc))
            return
        if seconds is not None:
            run.timer = self._loop.call_later(seconds, self._on_deadline, run)

    # ------------------------------------------------------------------
    # Inside the thread
    # ------------------------------------------------------------------

    def _call(self, run: _Run) -> _Outcome:
        """Run the job in this pool thread; never raises."""
        thread_id = threading.get_ident()
        with self._lock:
            if run.reason is not None:
                run.state = _State.DONE
                return self._outcome_before_start(run)
            run.thread_id = thread_id
            run.state = _State.RUNNING
        outcome: _Outcome | None = None
        while True:
            # An interruption may be delivered anywhere until the run is
            # marked done under the lock, including in this bookkeeping: keep
            # the first outcome and retry until the run is disarmed.
            try:
                if outcome is None:
                    outcome = self._execute(run)
                with self._lock:
                    run.state = _State.DONE
                    run.thread_id = None
                    _set_async_exc(thread_id, None)  # drop one not yet delivered
                return outcome
            except BaseException as late:
                if outcome is None:
                    outcome = self._failure(run, late)

    def _execute(self, run: _Run) -> _Outcome:
        job = run.job
        try:
            func, kwargs = self.get_function_and_kwargs(job)
            if inspect.iscoroutinefunction(func):
                result = self._run_coroutine(run, func, kwargs)
            else:
                result = func(**kwargs)
        except BaseException as exc:
            return self._failure(run, exc)
        return _Outcome(job, result=result)

    def _run_coroutine(self, run: _Run, func: Any, kwargs: dict[str, Any]) -> Any:
        """Run an ``async def`` job in a fresh event loop in this thread.

        The time limit also applies as ``asyncio.timeout`` inside that loop,
        and :meth:`_interrupt` wakes the loop so that an injected exception
        is not held up by a long ``select()``.
        """
        job = run.job

        async def main() -> Any:
            remaining = job.time_remaining
            if remaining is None:
                return await func(**kwargs)
            try:
                async with asyncio.timeout(remaining):
                    return await func(**kwargs)
            except TimeoutError as exc:
                if exc.args:
                    raise
                raise _timeout_error(job, run.seconds) from None

        with asyncio.Runner() as runner:
            run.loop = runner.get_loop()
            try:
                return runner.run(main())
            finally:
                run.loop = None

    def _failure(self, run: _Run, exc: BaseException) -> _Outcome:
        """Turn what the job raised into an outcome, rewording our interruptions."""
        job = run.job
        reason = run.reason
        if reason is _Reason.INTERRUPTED and isinstance(exc, _WorkerInterrupted):
            return _Outcome(job, exc=exc, interrupted=True)
        if reason is _Reason.TIMEOUT and type(exc) is TimeoutError and not exc.args:
            exc = _timeout_error(job, run.seconds).with_traceback(exc.__traceback__)
        elif (
            reason is _Reason.CANCELLED
            and type(exc) is JobCancelledError
            and not exc.args
        ):
            exc = JobCancelledError(
                f"job {job.func} was cancelled while it ran"
            ).with_traceback(exc.__traceback__)
        elif not isinstance(exc, Exception):
            # KeyboardInterrupt, SystemExit, a stray _WorkerInterrupted...:
            # record it as the run's error rather than killing the pool thread.
            pass
        return _Outcome(job, exc=exc)

    def _outcome_before_start(self, run: _Run) -> _Outcome:
        if run.reason is _Reason.TIMEOUT:
            return _Outcome(
                run.job,
                exc=TimeoutError(
                    f"job {run.job.func} exceeded its time limit of {run.seconds:g}s"
                    " before it could start"
                ),
            )
        if run.reason is _Reason.INTERRUPTED:
            return _Outcome(run.job, interrupted=True)
        return _Outcome(run.job, skipped=True)

    # ------------------------------------------------------------------
    # Back on the worker's event loop
    # ------------------------------------------------------------------

    def _on_future_done(self, call: _Call) -> None:
        """Done callback: runs in the pool thread (or wherever the call was cancelled)."""
        self._done.append(call)
        if self._drain_scheduled:
            return  # a drain is queued on the loop and will see this one
        self._drain_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain_done)
        except RuntimeError:  # the loop is closed: nobody is left to record it
            log.warning(
                "Job %s finished after its worker's event loop closed", call.arg.job.id
            )

    def _drain_done(self) -> None:
        # Cleared before draining: a completion appended from now on either
        # is drained below or schedules the next drain itself.
        self._drain_scheduled = False
        done = self._done
        while done:
            call = done.popleft()
            run: _Run = call.arg
            if run.waiter is not None and not run.waiter.done():
                run.waiter.set_result(None)
            self._collect(run, call)

    def _collect(self, run: _Run, call: _Call) -> None:
        if call.cancelled():
            # Cancelled before a thread picked it up: there is no result
            # (spec §17.9).
            with self._lock:
                run.state = _State.DONE
            outcome = self._outcome_before_start(run)
        elif call.error is not None:  # _call never raises; be defensive
            outcome = _Outcome(run.job, exc=call.error)
        else:
            outcome = call.result
        self._finish(run, outcome)

    def _finish(self, run: _Run, outcome: _Outcome) -> None:
        if run.timer is not None:
            run.timer.cancel()
            run.timer = None
        if not (outcome.interrupted or outcome.skipped):
            # Most runs: record the outcome here, without a task per job.
            try:
                done = self.complete_now(
                    job=outcome.job, exc=outcome.exc, result=outcome.result
                )
            except Exception:
                log.exception("Recording the outcome of job %s failed", run.job.id)
                done = True
            if done:
                self._forget_run(run)
                return
        task = self._loop.create_task(
            self._report(run, outcome), name=f"job-done:{run.job.id}"
        )
        self._reporting.add(task)
        task.add_done_callback(self._reporting.discard)

    async def _report(self, run: _Run, outcome: _Outcome) -> None:
        try:
            if outcome.interrupted:
                return  # the worker puts the job back to pending
            if outcome.skipped:
                # Cancelled before it started: the database already holds the outcome.
                self.worker.on_job_completed(queue=self.queue, job=outcome.job)
                return
            await self.on_job_completed(
                job=outcome.job, exc=outcome.exc, result=outcome.result
            )
        finally:
            self._forget_run(run)

    def _forget_run(self, run: _Run) -> None:
        """The run is recorded: it no longer counts as running here."""
        if self._runs.get(run.job.id) is run:
            del self._runs[run.job.id]

    def _interrupt(self, run: _Run, reason: _Reason) -> None:
        """Stop a run for ``reason``: drop it if not started, else raise inside its thread."""
        with self._lock:
            if run.state is _State.DONE:
                return
            if run.reason is None:
                run.reason = reason
            if run.state is _State.RUNNING and run.thread_id is not None:
                _set_async_exc(run.thread_id, _INJECTED[run.reason])
                loop = run.loop
                if loop is not None:
                    # Wake the job's own loop so the exception is delivered now.
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(_wake)
                return
        # Not started: a future that is cancelled never runs; one that a thread
        # already took sees ``reason`` in _call and does not run the job.
        if run.future is not None:
            run.future.cancel()

    def _on_deadline(self, run: _Run) -> None:
        run.timer = None
        if run.state is _State.DONE or self._runs.get(run.job.id) is not run:
            return
        if run.loop is not None and not run.deferred:
            # An async job: give its own asyncio.timeout the first go.
            run.deferred = True
            run.timer = self._loop.call_later(_ASYNC_GRACE, self._on_deadline, run)
            return
        self._interrupt(run, _Reason.TIMEOUT)
        # Code that swallows the exception (``except BaseException``) is
        # interrupted again until it gives up.
        run.timer = self._loop.call_later(_REINTERRUPT_INTERVAL, self._on_deadline, run)

    async def cancel(self, ref: Reference) -> None:
        run = self._runs.get(ref.identifier)
        if run is not None:
            self._interrupt(run, _Reason.CANCELLED)

    # ------------------------------------------------------------------
    # Stopping
    # ------------------------------------------------------------------

    async def stop(self) -> None:
        """Wait for running jobs (without blocking the event loop), then shut the pool.

        When the worker interrupts its shutdown (the task calling this is
        being cancelled), running jobs are interrupted instead and no
        outcome is recorded for them: the worker puts them back to pending.
        """
        if self._stopped:
            return
        self._stopped = True
        task = asyncio.current_task()
        interrupted = task is not None and task.cancelling() > 0
        try:
            if interrupted:
                await self._interrupt_all()
            else:
                self.pool.shutdown()
                # Waited for on the event loop, not in a thread that would be
                # left blocked if this wait is interrupted.
                pending = self._pending_futures()
                if pending:
                    await asyncio.wait(pending)
        except asyncio.CancelledError:
            # Interrupted while waiting for the running jobs.
            await self._interrupt_all()
            raise
        finally:
            # Completions reach the loop through call_soon_threadsafe; let the
            # queued ones run, then wait until they are recorded.
            await asyncio.sleep(0)
            while self._reporting:
                await asyncio.gather(*list(self._reporting), return_exceptions=True)

    def _pending_futures(self) -> set[asyncio.Future[Any]]:
        """A future on the loop for each run whose call has not ended, set
        when its completion reaches the loop."""
        pending: set[asyncio.Future[Any]] = set()
        for run in self._runs.values():
            call = run.future
            if call is None or call.done():
                continue
            if run.waiter is None:
                run.waiter = self._loop.create_future()
            pending.add(run.waiter)
        return pending

    async def _interrupt_all(self) -> None:
        for run in list(self._runs.values()):
            self._interrupt(run, _Reason.INTERRUPTED)
        self.pool.shutdown(cancel_futures=True)
        pending = self._pending_futures()
        done: set[asyncio.Future[Any]] = set()
        if pending:
            done, _ = await asyncio.wait(pending, timeout=_INTERRUPT_WAIT)
        if len(done) < len(pending):
            stuck = [
                run.job.id for run in self._runs.values() if run.state is _State.RUNNING
            ]
            log.warning(
                "Queue %r: %d job thread(s) did not stop when interrupted (blocked in C"
                " code?): %s; abandoning them (they end with this process)",
                self.queue.name,
                len(stuck),
                ", ".join(map(str, stuck)),
            )
