"""Run jobs in child processes, one job per process at a time.

A small pool of our own rather than :class:`concurrent.futures.ProcessPoolExecutor`:
when a child dies we know exactly which job it was running (the pool only
says it is broken, and every later job fails until it is rebuilt), we can
signal the child running a given job without a ``Manager`` process, and
children are started only when there is work.

Protocol, over one duplex pipe per child (``multiprocessing`` framing):

* parent → child: a pickled :class:`~chancy.job.QueuedJob` to run, or ``None``
  to exit;
* child → parent: ``("started",)`` when it begins a job, then
  ``("ok", job, pickled_result)`` or
  ``("error", job, traceback_text, exception_type_name, message)``; ``job``
  carries the job's ``meta`` as the function left it (``None`` if it could
  not be pickled).
"""

from __future__ import annotations

import asyncio
import atexit
import builtins
import contextlib
import ctypes
import functools
import inspect
import itertools
import logging
import multiprocessing
import multiprocessing.context
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
import warnings
from multiprocessing.connection import Connection
from types import FrameType
from typing import TYPE_CHECKING, Any

import attrs

from chancy import errors
from chancy.errors import ChancyError, JobCancelledError, Snooze, WorkerLostError
from chancy.executors.base import (
    Executor,
    check_result,
    memory_limit_of,
    time_limit_of,
)
from chancy.job import QueuedJob, Reference, _progress_sinks

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from chancy.queue import Queue
    from chancy.worker import Worker

__all__ = ["ProcessExecutor", "RemoteJobError"]

log = logging.getLogger("chancy.executors.process")

#: The parent kills a child this many seconds after the job's time limit if
#: the child's own SIGALRM did not stop it (a job stuck in C code).
HARD_TIMEOUT_GRACE = 2.0
#: Likewise after a cancellation signal.
CANCEL_GRACE = 5.0
#: Seconds a child gets to exit after being asked to, before it is killed.
CLOSE_TIMEOUT = 5.0

_HAS_MEMORY_LIMITS = resource is not None and hasattr(resource, "RLIMIT_AS")
_HAS_SIGNALS = hasattr(signal, "SIGUSR1") and hasattr(signal, "setitimer")


class RemoteJobError(ChancyError):
    """Stands for an exception raised in a child whose class the parent does not rebuild.

    Only built-in exceptions and :mod:`chancy.errors` are rebuilt as
    themselves (the parent does not import job modules); the recorded
    traceback is always the child's own.
    """

    def __init__(self, message: str, *, type_name: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name


def rebuild_exception(type_name: str, message: str) -> BaseException:
    """An exception standing for the one a job raised in another interpreter."""
    module, _, name = type_name.rpartition(".")
    cls: Any = None
    if module == "builtins":
        cls = getattr(builtins, name, None)
    elif module == "chancy.errors":
        cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        with contextlib.suppress(Exception):
            return cls(message) if message else cls()
    return RemoteJobError(
        f"{type_name}: {message}" if message else type_name, type_name=type_name
    )


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


# ---------------------------------------------------------------------------
# The child side
# ---------------------------------------------------------------------------


class _ChildState:
    """What the signal handlers of a child need to know about the current run."""

    running = False
    func = ""
    seconds: float | None = None
    #: SIGUSR1 arrived for the current job before it was running.
    cancel_pending = False


_child_state = _ChildState()


def _on_sigalrm(signum: int, frame: FrameType | None) -> None:
    state = _child_state
    if state.running:
        limit = f" of {state.seconds:g}s" if state.seconds is not None else ""
        raise TimeoutError(f"job {state.func} exceeded its time limit{limit}")


def _on_sigusr1(signum: int, frame: FrameType | None) -> None:
    state = _child_state
    if state.running:
        raise JobCancelledError(f"job {state.func} was cancelled while it ran")
    # Between "started" and the call: cancel as soon as it runs. (A late
    # signal meant for a job that already finished lands while the child is
    # idle; the flag is reset when the next job arrives.)
    state.cancel_pending = True


#: Extra seconds before SIGALRM backs up ``asyncio.timeout`` for coroutine jobs.
_ASYNC_ALARM_DELAY = 0.5


async def _with_timeout(job: QueuedJob, seconds: float | None, coro: Any) -> Any:
    if seconds is None:
        return await coro
    try:
        async with asyncio.timeout(seconds):
            return await coro
    except TimeoutError as exc:
        if exc.args:
            raise
        raise TimeoutError(
            f"job {job.func} exceeded its time limit of {seconds:g}s"
        ) from None


#: Seconds between the orphan watchdog's checks of the parent process.
ORPHAN_CHECK_INTERVAL = 0.25
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Make sure this child never outlives the worker that started it.

    When the worker is SIGKILLed, Recovery gives its jobs to other workers;
    a child still running one would make two live runs of the same job, both
    with side effects. On Linux the kernel kills the child the moment its
    parent dies (``PR_SET_PDEATHSIG``); elsewhere a watchdog thread checks
    the parent every :data:`ORPHAN_CHECK_INTERVAL` seconds. The parent is
    checked once right away, in case it died before this ran.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):  # pragma: no cover - unusual libc
            armed = False
    if os.getppid() != parent_pid:
        os._exit(1)
    if armed:
        return

    def watch() -> None:
        # Signals sent to the process (SIGALRM time limits, SIGUSR1
        # cancellation) must keep going to the thread running the job.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            time.sleep(ORPHAN_CHECK_INTERVAL)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="chancy-orphan-watchdog", daemon=True).start()


def _send_progress(
    conn: Connection, sending: threading.Lock, job: QueuedJob, payload: dict[str, Any]
) -> None:
    """In a child: send a running job's progress report to the parent."""
    with sending:  # the job's own threads may report too
        conn.send(("progress", payload))


def _child_main(
    executor_cls: type[ProcessExecutor], conn: Connection, parent_pid: int | None = None
) -> None:
    """Entry point of a child process: run jobs until told to stop or orphaned."""
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    executor_cls.on_initialize_worker()
    sending = threading.Lock()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if job is None:
            return
        _child_state.cancel_pending = False
        _progress_sinks[job.id] = functools.partial(_send_progress, conn, sending)
        try:
            conn.send(("started",))
            message = executor_cls.job_wrapper(job)
            with sending:
                _send_reply(conn, message)
        except (EOFError, OSError):
            return
        finally:
            _progress_sinks.pop(job.id, None)


def _send_reply(conn: Connection, message: tuple[Any, ...]) -> None:
    try:
        conn.send(message)
        return
    except (OSError, EOFError):
        raise
    except Exception:
        log.warning(
            "The job's meta could not be pickled; its changes are lost", exc_info=True
        )
    conn.send((message[0], None, *message[2:]))


def _apply_memory_limit(limit: int) -> tuple[int, int] | None:
    """Lower the soft ``RLIMIT_AS`` to ``limit`` bytes; returns the limits to restore."""
    if not _HAS_MEMORY_LIMITS or resource is None:
        warnings.warn(
            "memory limits are not supported on this platform; ignored",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    previous = resource.getrlimit(resource.RLIMIT_AS)
    hard = previous[1]
    soft = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return previous


class ProcessExecutor(Executor):
    """Runs each job in a child process (the default executor).

    Children are started on demand, up to the queue's concurrency, with the
    ``spawn`` start method unless ``mp_context`` says otherwise; each runs one
    job at a time, exits after ``maximum_jobs_per_worker`` jobs and after
    ``idle_timeout`` seconds without work, so an idle queue has no processes.
    Job functions must be importable by name in a fresh interpreter.

    Limits: a TIME limit arms ``SIGALRM`` in the child (``TimeoutError``
    inside the job) and, as a safety net, the parent kills a child that is
    still busy ``HARD_TIMEOUT_GRACE`` (2) seconds after the limit. A MEMORY
    limit is applied as the soft ``RLIMIT_AS`` for the run (``MemoryError``).
    Cancelling a running job sends ``SIGUSR1`` (``JobCancelledError`` inside
    the job). A child that dies while running a job (killed, segfault, OOM
    killer, ``os._exit``) is replaced, and the run is *lost*: recorded in the
    job's ``errors`` as :class:`~chancy.errors.WorkerLostError` and counted
    in ``meta["lost_runs"]``, without using up one of the job's attempts; the
    job runs again, and fails once it was lost ``Worker.max_lost_runs`` times
    (3, or Recovery's ``max_lost_runs``).

    Children never outlive the worker: if it is killed (SIGKILL, OOM), they
    die with it (``PR_SET_PDEATHSIG`` on Linux, a watchdog of the parent
    process elsewhere), so a job Recovery hands to another worker is never
    still running here.

    Subclasses may override :meth:`on_initialize_worker` and :meth:`job_wrapper`
    (both run in the child); they must be importable module-level classes.

    :param maximum_jobs_per_worker: jobs a child runs before it is replaced.
    :param mp_context: a :mod:`multiprocessing` context, or a start method name.
    :param idle_timeout: seconds an idle child is kept (``None``: until stop).

    Default concurrency: the number of CPUs this process may use.
    """

    capabilities = (
        Executor.Capability.SYNC_JOBS
        | Executor.Capability.ASYNC_JOBS
        | Executor.Capability.CANCELLATION
        | Executor.Capability.AUTOMATIC_TIME_LIMITS
        | (
            Executor.Capability.MEMORY_LIMITS
            if _HAS_MEMORY_LIMITS
            else Executor.Capability(0)
        )
    )

    def __init__(
        self,
        worker: Worker,
        queue: Queue,
        *,
        maximum_jobs_per_worker: int = 100,
        mp_context: multiprocessing.context.BaseContext | str | None = None,
        idle_timeout: float | None = 60,
        **options: Any,
    ) -> None:
        super().__init__(worker, queue, **options)
        if os.name != "posix" or not _HAS_SIGNALS:
            raise RuntimeError(
                "the process executor needs a POSIX system; use the threaded executor here"
            )
        if not isinstance(maximum_jobs_per_worker, int) or maximum_jobs_per_worker < 1:
            raise ValueError(
                f"maximum_jobs_per_worker must be a positive integer, got {maximum_jobs_per_worker!r}"
            )
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(
                f"idle_timeout must be positive or None, got {idle_timeout!r}"
            )
        if mp_context is None or isinstance(mp_context, str):
            mp_context = multiprocessing.get_context(mp_context or "spawn")
        self.maximum_jobs_per_worker = maximum_jobs_per_worker
        self.idle_timeout = idle_timeout
        self.mp_context = mp_context
        self._loop = asyncio.get_running_loop()
        self._runs: dict[uuid.UUID, _Run] = {}
        self._children: set[_Child] = set()
        self._idle: list[_Child] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._counter = itertools.count(1)
        self._stopped = False

    def __len__(self) -> int:
        return len(self._runs)

    def get_default_concurrency(self) -> int:
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0)) or 1
        return os.cpu_count() or 1

    def get_running_jobs(self) -> list[QueuedJob]:
        return [run.job for run in self._runs.values()]

    @property
    def pids(self) -> list[int]:
        """Process ids of the live children (busy or idle)."""
        return [child.pid for child in self._children]

    # ------------------------------------------------------------------
    # In the child
    # ------------------------------------------------------------------

    @classmethod
    def on_initialize_worker(cls) -> None:
        """Prepare a new child process (runs once in the child, before any job).

        Installs the handlers turning ``SIGALRM`` into ``TimeoutError`` and
        ``SIGUSR1`` into :class:`~chancy.errors.JobCancelledError` while a job
        runs, ignores ``SIGINT`` (Ctrl-C reaches the whole process group; the
        worker decides what happens to running jobs), and calls
        ``django.setup()`` when ``DJANGO_SETTINGS_MODULE`` is set and Django
        is installed.
        """
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)  # inherited from the worker's loop with fork
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGALRM, _on_sigalrm)
        signal.signal(signal.SIGUSR1, _on_sigusr1)
        if os.environ.get("DJANGO_SETTINGS_MODULE"):
            try:
                import django  # type: ignore[import-not-found, unused-ignore]
            except ImportError:
                pass
            else:
                django.setup()

    @classmethod
    def job_wrapper(cls, job: QueuedJob) -> tuple[Any, ...]:
        """Run one job in this child and return the message for the parent.

        Resolves the function, applies the limits for this run only (the
        memory limit as the soft ``RLIMIT_AS``, the time limit as a
        ``SIGALRM`` timer), runs it (coroutine functions in a fresh event
        loop) and returns ``("ok", job, pickled_result)`` or ``("error", job,
        traceback_text, exception_type_name, message)``. A result that cannot
        be pickled is replaced by ``None`` with a warning: the work was done.
        """
        seconds = time_limit_of(job)
        memory = memory_limit_of(job)
        if seconds is not None:
            job = attrs.evolve(job, deadline=time.monotonic() + seconds)
        state = _child_state
        state.func, state.seconds = job.func, seconds
        result: Any = None
        error: BaseException | None = None
        completed = False
        started = False
        previous_limit: tuple[int, int] | None = None
        while True:
            # The signal handlers raise only while ``state.running``; this
            # loop makes sure the timer and the memory limit are always reset,
            # even if a signal lands in the middle of the bookkeeping.
            try:
                if not started:
                    started = True
                    try:
                        func, kwargs = cls.get_function_and_kwargs(job)
                        if memory is not None:
                            previous_limit = _apply_memory_limit(memory)
                        state.running = True
                        if state.cancel_pending:
                            raise JobCancelledError(
                                f"job {job.func} was cancelled while it ran"
                            )
                        coroutine = inspect.iscoroutinefunction(func)
                        if seconds is not None:
                            # A coroutine is first stopped by asyncio.timeout
                            # (a cleaner traceback); SIGALRM backs it up.
                            delay = seconds + (_ASYNC_ALARM_DELAY if coroutine else 0)
                            signal.setitimer(signal.ITIMER_REAL, max(delay, 0.001))
                        if coroutine:
                            result = asyncio.run(
                                _with_timeout(job, seconds, func(**kwargs))
                            )
                        else:
                            result = func(**kwargs)
                        completed = True
                    except BaseException as exc:
                        error = exc
                state.running = False
                if seconds is not None:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                if previous_limit is not None and resource is not None:
                    resource.setrlimit(resource.RLIMIT_AS, previous_limit)
                    previous_limit = None
                break
            except BaseException as late:
                if error is None and not completed:
                    error = late
        if isinstance(error, Snooze):
            return ("snooze", job, error.seconds)
        if error is None and result is not None and job.store_result:
            # Checked here, where the value is: the parent stores its JSON.
            try:
                check_result(result, sys.maxsize)
            except (TypeError, ValueError) as exc:
                error = exc
        if error is not None:
            if type(error) is MemoryError and not error.args and memory is not None:
                error = MemoryError(
                    f"job {job.func} exceeded its memory limit of {memory} bytes"
                ).with_traceback(error.__traceback__)
            tb = "".join(traceback.format_exception(error))
            return ("error", job, tb, _type_name(error), str(error))
        try:
            payload: bytes | None = pickle.dumps(result)
        except Exception as exc:
            log.warning(
                "Job %s (%s) returned a value that cannot be pickled (%s); its plugins"
                " get None instead",
                job.id,
                job.func,
                exc,
            )
            payload = None
        return ("ok", job, payload)

    # ------------------------------------------------------------------
    # Running jobs (parent)
    # ------------------------------------------------------------------

    async def push(self, job: QueuedJob) -> None:
        if self._stopped:
            raise RuntimeError(
                f"{type(self).__name__} for queue {self.queue.name!r} is stopped"
            )
        run = _Run(job)
        self._runs[job.id] = run
        run.task = asyncio.create_task(self._run(run), name=f"job:{job.id}")

    async def _run(self, run: _Run) -> None:
        try:
            try:
                run.job = await self.on_job_starting(run.job)
            except Exception as exc:
                await self.on_job_completed(job=run.job, exc=exc)
                return
            run.seconds = time_limit_of(run.job)
            for attempt in itertools.count():
                if run.cancel_requested:
                    # Cancelled before it started: the database holds the outcome.
                    self.worker.on_job_completed(queue=self.queue, job=run.job)
                    return
                try:
                    child = await self._acquire_child()
                except Exception as exc:
                    log.exception(
                        "Queue %r: cannot start a worker process", self.queue.name
                    )
                    await self.on_job_completed(job=run.job, exc=exc)
                    return
                try:
                    message = await self._exchange(child, run)
                except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
                    lost = await self._child_lost(child, run, exc)
                    if not run.started and attempt == 0 and child.jobs_done > 0:
                        # An idle child died (or was killed) before taking the
                        # job: the job never ran, try a fresh child.
                        run.child = None
                        run.cancel_timers()
                        continue
                    await self.on_job_completed(job=run.job, exc=lost)
                    return
                except Exception as exc:
                    # An answer we cannot read: the child's state is unknown.
                    log.exception(
                        "Job %s (%s): bad answer from its worker process",
                        run.job.id,
                        run.job.func,
                    )
                    child.run = None
                    self._retire(child, kill=True)
                    await self.on_job_completed(job=run.job, exc=exc)
                    return
                break
            run.answered = True
            self._release_child(child)
            await self._record(run, message)
        except asyncio.CancelledError:
            holder = run.child
            if holder is not None and holder.run is run:
                # Abandoned at shutdown, mid-job: the worker puts the job back.
                holder.run = None
                self._retire(holder, kill=True)
            raise
        finally:
            run.cancel_timers()
            if self._runs.get(run.job.id) is run:
                del self._runs[run.job.id]

    async def _exchange(self, child: _Child, run: _Run) -> tuple[Any, ...]:
        """Hand the job to the child and wait for its answer."""
        run.child, child.run = child, run
        await child.send(run.job)
        while True:
            message = await child.recv()
            if message[0] == "progress":
                self.worker.report_progress(run.job, message[1])
                continue
            if message[0] != "started":
                run.cancel_timers()
                return message  # type: ignore[no-any-return]
            run.started = True
            if run.seconds is not None:
                run.hard_timer = self._loop.call_later(
                    run.seconds + HARD_TIMEOUT_GRACE, self._on_hard_deadline, run
                )
            if run.cancel_requested:
                self._signal_cancel(run)

    async def _record(self, run: _Run, message: tuple[Any, ...]) -> None:
        job = run.job
        kind, child_job = message[0], message[1]
        if child_job is not None:
            job = attrs.evolve(job, meta=child_job.meta)
        if kind == "snooze":
            await self.on_job_completed(job=job, exc=Snooze(message[2]))
        elif kind == "ok":
            result = None
            if message[2] is not None:
                try:
                    result = pickle.loads(message[2])
                except Exception as exc:
                    log.warning(
                        "The result of job %s (%s) cannot be unpickled in the worker (%s);"
                        " its plugins get None instead",
                        job.id,
                        job.func,
                        exc,
                    )
            await self.on_job_completed(job=job, result=result)
        else:
            tb, type_name, text = message[2], message[3], message[4]
            await self.on_job_completed(
                job=job, exc=rebuild_exception(type_name, text), tb=tb
            )

    async def cancel(self, ref: Reference) -> None:
        run = self._runs.get(ref.identifier)
        if run is None or run.cancel_requested:
            return
        run.cancel_requested = True
        if run.started:
            self._signal_cancel(run)
        # Otherwise: dropped before it is sent, or signalled once "started" arrives.

    def _signal_cancel(self, run: _Run) -> None:
        child = run.child
        if child is None or child.run is not run:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGUSR1)
        run.cancel_timer = self._loop.call_later(
            CANCEL_GRACE, self._on_cancel_deadline, run
        )

    def _on_cancel_deadline(self, run: _Run) -> None:
        run.cancel_timer = None
        self._kill_running(
            run,
            JobCancelledError(
                f"job {run.job.func} was cancelled and did not stop within {CANCEL_GRACE:g}s;"
                " its worker process was killed"
            ),
        )

    def _on_hard_deadline(self, run: _Run) -> None:
        run.hard_timer = None
        self._kill_running(
            run,
            TimeoutError(
                f"job {run.job.func} exceeded its time limit of {run.seconds:g}s and did not"
                f" stop within {HARD_TIMEOUT_GRACE:g}s of it; its worker process was killed"
            ),
        )

    def _kill_running(self, run: _Run, reason: BaseException) -> None:
        child = run.child
        if child is None or child.run is not run or child.kill_reason is not None:
            return
        log.warning("Killing worker process %d: %s", child.pid, reason)
        child.kill_reason = reason
        with contextlib.suppress(ProcessLookupError):
            child.process.kill()

    async def _child_lost(
        self, child: _Child, run: _Run, exc: BaseException
    ) -> BaseException:
        """The child's pipe broke while it held ``run``: reap it, explain why."""
        child.run = None
        self._discard(child)
        exitcode = await _reap(child.process, 2.0)
        await child.close()
        if child.kill_reason is not None:
            return child.kill_reason
        if exitcode is None:
            how = f"its pipe broke: {exc!r}"
        elif exitcode < 0:
            try:
                name = signal.Signals(-exitcode).name
            except ValueError:
                name = "unknown signal"
            how = f"killed by signal {-exitcode} ({name})"
        else:
            how = f"exit code {exitcode}"
        if run.started:
            text = f"the worker process running this job died ({how})"
        else:
            text = f"the worker process died before it could start this job ({how})"
        log.error("Job %s (%s): %s", run.job.id, run.job.func, text)
        return WorkerLostError(text)

    # ------------------------------------------------------------------
    # Children (parent)
    # ------------------------------------------------------------------

    async def _acquire_child(self) -> _Child:
        while self._idle:
            child = self._idle.pop()  # most recently used: the others may idle out
            child.cancel_idle_timer()
            if child.process.is_alive():
                return child
            self._discard(child)
            self._track(self._finish_close(child))
        return await self._start_child()

    async def _start_child(self) -> _Child:
        parent_conn, child_conn = self.mp_context.Pipe(duplex=True)
        process = self.mp_context.Process(  # type: ignore[attr-defined]
            target=_child_main,
            args=(type(self), child_conn, os.getpid()),
            name=f"chancy-{self.queue.name}-{next(self._counter)}",
        )
        try:
            process.start()
        finally:
            child_conn.close()
        _live_processes.add(process)
        sock = socket.socket(fileno=os.dup(parent_conn.fileno()))
        parent_conn.close()
        try:
            reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        except BaseException:
            sock.close()  # the child sees EOF and exits
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            self._track(_reap(process, CLOSE_TIMEOUT))
            raise
        child = _Child(process, reader, writer)
        self._children.add(child)
        log.debug("Queue %r: started worker process %d", self.queue.name, child.pid)
        return child

    def _release_child(self, child: _Child) -> None:
        """A child answered: keep it for the next job, or retire it."""
        child.run = None
        child.jobs_done += 1
        if self._stopped or child.jobs_done >= self.maximum_jobs_per_worker:
            self._retire(child)
            return
        self._idle.append(child)
        if self.idle_timeout is not None:
            child.idle_timer = self._loop.call_later(
                self.idle_timeout, self._on_idle_timeout, child
            )

    def _on_idle_timeout(self, child: _Child) -> None:
        child.idle_timer = None
        if child in self._idle:
            log.debug(
                "Queue %r: worker process %d idle, closing it",
                self.queue.name,
                child.pid,
            )
            self._retire(child)

    def _discard(self, child: _Child) -> None:
        child.cancel_idle_timer()
        self._children.discard(child)
        with contextlib.suppress(ValueError):
            self._idle.remove(child)

    def _retire(self, child: _Child, *, kill: bool = False) -> None:
        self._discard(child)
        if kill:
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
            self._track(self._finish_close(child))
        else:
            self._track(self._close_child(child))

    def _track(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_child(self, child: _Child) -> None:
        """Ask a child to exit, give it :data:`CLOSE_TIMEOUT` seconds, then kill it."""
        with contextlib.suppress(Exception):
            await child.send(None)
        await self._finish_close(child)

    async def _finish_close(self, child: _Child) -> None:
        try:
            await _reap(child.process, CLOSE_TIMEOUT)
        finally:
            await child.close()

    # ------------------------------------------------------------------
    # Stopping
    # ------------------------------------------------------------------

    async def stop(self) -> None:
        """Wait for running jobs (without blocking the loop), then close every child.

        When the worker interrupts its shutdown (the task calling this is
        being cancelled), the children running jobs are killed instead and
        no outcome is recorded for those jobs: the worker puts them back.
        """
        if self._stopped:
            return
        self._stopped = True
        task = asyncio.current_task()
        interrupted = task is not None and task.cancelling() > 0
        try:
            if interrupted:
                await self._abandon_running()
            else:
                tasks = [
                    run.task for run in self._runs.values() if run.task is not None
                ]
                if tasks:
                    await asyncio.wait(tasks)
        except asyncio.CancelledError:
            await self._abandon_running()
            raise
        finally:
            for child in list(self._children):
                self._retire(child, kill=child.run is not None)
            while self._closing:
                await asyncio.gather(*list(self._closing), return_exceptions=True)

    async def _abandon_running(self) -> None:
        tasks = []
        for run in list(self._runs.values()):
            child = run.child
            if child is not None and child.run is run:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
            if run.task is not None:
                if not run.answered:
                    # Answered runs are only being recorded: let them finish.
                    run.task.cancel()
                tasks.append(run.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------------------
# Parent-side helpers
# ---------------------------------------------------------------------------


class _Run:
    """One run of one job in this executor."""

    __slots__ = (
        "answered",
        "cancel_requested",
        "cancel_timer",
        "child",
        "hard_timer",
        "job",
        "seconds",
        "started",
        "task",
    )

    def __init__(self, job: QueuedJob) -> None:
        self.job = job
        self.seconds: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.child: _Child | None = None
        self.started = False
        self.answered = False
        self.cancel_requested = False
        self.hard_timer: asyncio.TimerHandle | None = None
        self.cancel_timer: asyncio.TimerHandle | None = None

    def cancel_timers(self) -> None:
        for timer in (self.hard_timer, self.cancel_timer):
            if timer is not None:
                timer.cancel()
        self.hard_timer = self.cancel_timer = None


class _Child:
    """A child process and the parent's end of its pipe (as asyncio streams)."""

    __slots__ = (
        "idle_timer",
        "jobs_done",
        "kill_reason",
        "pid",
        "process",
        "reader",
        "run",
        "writer",
    )

    def __init__(
        self, process: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.process = process
        self.pid: int = process.pid
        self.reader = reader
        self.writer = writer
        self.run: _Run | None = None
        self.jobs_done = 0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.kill_reason: BaseException | None = None

    def cancel_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    async def send(self, obj: Any) -> None:
        data = pickle.dumps(obj)
        if len(data) > 0x7FFFFFFF:
            header = struct.pack("!i", -1) + struct.pack("!Q", len(data))
        else:
            header = struct.pack("!i", len(data))
        self.writer.write(header + data)
        await self.writer.drain()

    async def recv(self) -> Any:
        (size,) = struct.unpack("!i", await self.reader.readexactly(4))
        if size == -1:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return pickle.loads(await self.reader.readexactly(size))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        if self.process.exitcode is not None:
            _live_processes.discard(self.process)
            with contextlib.suppress(ValueError):
                self.process.close()


async def _reap(process: Any, timeout: float) -> int | None:
    """Wait (polling, without blocking the loop) for ``process`` to exit; kill it after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.005
    killed = False
    while process.exitcode is None:
        if loop.time() >= deadline:
            if killed:
                log.error(
                    "Worker process %d does not die; giving up on it", process.pid
                )
                return None
            log.warning(
                "Worker process %d did not exit in time; killing it", process.pid
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            killed = True
            deadline = loop.time() + timeout
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    return int(process.exitcode)


#: Children not yet reaped, so that none outlives an interpreter that exits
#: without stopping its executors.
_live_processes: set[Any] = set()


@atexit.register
def _terminate_leftover_children() -> None:
    for process in list(_live_processes):
        with contextlib.suppress(Exception):
            if process.exitcode is None:
                process.terminate()
