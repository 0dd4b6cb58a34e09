"""The executor contract shared by every built-in and custom executor."""

from __future__ import annotations

import abc
import enum
import inspect
import logging
import sys
import time
import traceback
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from chancy._encoding import JSON_NUL, encode_json
from chancy.errors import Snooze, WorkerLostError
from chancy.job import Limit, QueuedJob, Reference, replace_job
from chancy.utils import import_string

if TYPE_CHECKING:
    from chancy.queue import Queue
    from chancy.worker import Worker

__all__ = [
    "DEFAULT_MAX_LOST_RUNS",
    "LOST_RUNS_KEY",
    "SNOOZES_KEY",
    "ConcurrentExecutor",
    "Executor",
    "check_result",
    "get_function_and_kwargs",
    "lost_run",
    "lost_runs_of",
    "snoozed",
    "time_limit_of",
]

#: Lost runs (the process running the job died) a job may have before it fails.
DEFAULT_MAX_LOST_RUNS = 3
#: The key of ``QueuedJob.meta`` counting a job's lost runs.
LOST_RUNS_KEY = "lost_runs"
#: ``Chancy(max_result_size=...)``'s default: 64 KiB of JSON.
DEFAULT_MAX_RESULT_SIZE = 64 * 1024
#: The key of ``QueuedJob.meta`` counting a job's snoozes.
SNOOZES_KEY = "snoozes"

log = logging.getLogger("chancy.executors")

_function_cache: dict[str, tuple[Callable[..., Any], str | None]] = {}
_async_cache: dict[str, tuple[Callable[..., Any], bool]] = {}


def _context_parameter(func: Callable[..., Any]) -> str | None:
    """Name of the keyword-only parameter annotated with ``QueuedJob`` (or a subclass).

    String annotations (``from __future__ import annotations``) are resolved;
    annotations that are not classes (``list[str]``) are ignored.
    """
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    hints: dict[str, Any] = {}
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        hints = {}
    for name, param in signature.parameters.items():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        annotation = hints.get(name, param.annotation)
        if isinstance(annotation, str):
            module = sys.modules.get(getattr(func, "__module__", ""), None)
            try:
                annotation = eval(annotation, vars(module) if module else {})
            except Exception:
                continue
        if isinstance(annotation, type) and issubclass(annotation, QueuedJob):
            return name
    return None


def get_function_and_kwargs(
    job: QueuedJob,
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """Import the job's function and build its keyword arguments.

    The current job is passed to a keyword-only parameter annotated
    ``QueuedJob``. Lookups are cached per process.

    :raises ImportError: naming the job's function if it cannot be imported.
    """
    cached = _function_cache.get(job.func)
    if cached is None:
        try:
            func = import_string(job.func)
        except ImportError as exc:
            raise ImportError(f"cannot run job {job.func!r}: {exc}") from None
        if not callable(func):
            raise TypeError(f"cannot run job {job.func!r}: it is not callable")
        cached = (func, _context_parameter(func))
        _function_cache[job.func] = cached
    func, context_name = cached
    kwargs = dict(job.kwargs)
    if context_name is not None:
        kwargs[context_name] = job
    return func, kwargs


def is_async_function(name: str, func: Callable[..., Any]) -> bool:
    """Whether the job function ``func`` (imported as ``name``) is ``async def``;
    cached per process like the import itself."""
    found = _async_cache.get(name)
    if found is None or found[0] is not func:
        found = _async_cache[name] = (func, inspect.iscoroutinefunction(func))
    return found[1]


def time_limit_of(job: QueuedJob) -> float | None:
    """Seconds of the job's first TIME limit, or ``None``."""
    for limit in job.limits:
        if limit.type_ is Limit.Type.TIME:
            return float(limit.value)
    return None


def memory_limit_of(job: QueuedJob) -> int | None:
    """Bytes of the job's last MEMORY limit, or ``None``."""
    found = None
    for limit in job.limits:
        if limit.type_ is Limit.Type.MEMORY:
            found = int(limit.value)
    return found


def lost_runs_of(job: QueuedJob) -> int:
    """How many runs of ``job`` were lost so far (``meta["lost_runs"]``)."""
    value = job.meta.get(LOST_RUNS_KEY)
    return value if type(value) is int and value > 0 else 0


def lost_run(
    job: QueuedJob, reason: str, *, max_lost_runs: int, now: datetime | None = None
) -> QueuedJob:
    """The job after a lost run: the process running it died mid-run.

    A lost run is recorded in ``errors`` (marked ``"lost": true``) and counted
    in ``meta["lost_runs"]``, but it does not use up one of the job's own
    attempts: the job runs again (``pending``, or ``retrying`` if it has
    failed attempts). At ``max_lost_runs`` lost runs it fails instead, so a
    job that kills its process every time does not loop forever. Recovery
    applies the same rule, in SQL, to the jobs of workers that died.
    """
    lost = lost_runs_of(job) + 1
    if lost >= max_lost_runs:
        text = (
            f"chancy.errors.WorkerLostError: {reason}; the job was lost {lost}"
            f" time{'s' if lost != 1 else ''} (max_lost_runs={max_lost_runs}),"
            " so it fails without running again"
        )
        state = QueuedJob.State.FAILED
        completed_at: datetime | None = now or _utcnow()
    else:
        text = (
            f"chancy.errors.WorkerLostError: {reason} (lost run {lost} of at most"
            f" {max_lost_runs}; it runs again)"
        )
        state = QueuedJob.State.RETRYING if job.attempts else QueuedJob.State.PENDING
        completed_at = None
    return attrs.evolve(
        job,
        state=state,
        completed_at=completed_at,
        meta={**job.meta, LOST_RUNS_KEY: lost},
        errors=[
            *job.errors,
            {"attempt": job.attempts, "traceback": text, "lost": True},
        ],
        deadline=None,
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Executor(abc.ABC):
    """Runs one queue's jobs for one worker.

    Subclasses implement :meth:`push`, :meth:`stop`, :meth:`cancel`,
    :meth:`get_default_concurrency` and ``__len__``, and report every finished
    run through :meth:`on_job_completed`. Constructor options come from
    ``Queue.executor_options``.
    """

    class Capability(enum.Flag):
        """What an executor can do (:attr:`Executor.capabilities`)."""

        SYNC_JOBS = enum.auto()
        ASYNC_JOBS = enum.auto()
        CANCELLATION = enum.auto()
        AUTOMATIC_TIME_LIMITS = enum.auto()
        COOPERATIVE_TIME_LIMITS = enum.auto()
        MEMORY_LIMITS = enum.auto()

    #: What this executor can do; jobs needing more fail fast with a clear error.
    capabilities: Executor.Capability = Capability(0)

    def __init__(self, worker: Worker, queue: Queue, **options: Any) -> None:
        if options:
            raise TypeError(
                f"{type(self).__name__} takes no executor options, got {sorted(options)}"
            )
        self.worker = worker
        self.queue = queue

    # -- abstract ---------------------------------------------------------------

    @abc.abstractmethod
    async def push(self, job: QueuedJob) -> None:
        """Start running ``job`` (it is already marked running in the database)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Release every resource; running jobs are waited for or interrupted."""

    @abc.abstractmethod
    async def cancel(self, ref: Reference) -> None:
        """Interrupt the job if it runs here (best effort)."""

    @abc.abstractmethod
    def get_default_concurrency(self) -> int:
        """Concurrency used when the queue's is ``None``."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Jobs currently inside the executor."""

    # -- provided -------------------------------------------------------------------

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """Raise :class:`ValueError` naming the ``executor_options`` this
        executor's constructor does not take (a worker could not start the
        queue). Checked when a queue is declared.

        The names come from the keyword parameters of every ``__init__`` in
        the class's hierarchy; a class outside Chancy that takes ``**options``
        itself may take anything, so then nothing is refused.
        """
        if not options:
            return
        accepted: set[str] = set()
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or not issubclass(klass, Executor):
                continue
            try:
                parameters = list(inspect.signature(init).parameters.values())
            except (TypeError, ValueError):
                return  # cannot tell: the worker decides
            if not klass.__module__.startswith("chancy.executors") and any(
                p.kind is p.VAR_KEYWORD for p in parameters
            ):
                return
            accepted.update(
                p.name
                for p in parameters
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in ("self", "worker", "queue")
            )
        unknown = sorted(set(options) - accepted)
        if unknown:
            takes = ", ".join(sorted(accepted)) if accepted else "none"
            raise ValueError(
                f"executor_options: {cls.__name__} takes no option"
                f" {', '.join(repr(k) for k in unknown)} (it takes: {takes})"
            )

    @classmethod
    def get_capabilities(cls) -> Executor.Capability:
        return cls.capabilities

    @classmethod
    def supports(cls, capability: Executor.Capability) -> bool:
        return capability in cls.capabilities

    @property
    def concurrency(self) -> int:
        return self.queue.concurrency or self.get_default_concurrency()

    @property
    def free_slots(self) -> int:
        return max(0, self.concurrency - len(self))

    def get_running_jobs(self) -> list[QueuedJob]:
        return []

    def is_job_running(self, ref: Reference) -> bool:
        return any(job.id == ref.identifier for job in self.get_running_jobs())

    def reconfigure(self, queue: Queue) -> bool:
        """Take a new configuration of this executor's queue without a restart.

        Called when the queue is edited, paused or resumed while it is
        served. Return ``True`` after adopting ``queue`` (the worker reads
        the concurrency from ``self.queue`` before every fetch), or ``False``
        when the change needs a new executor: the worker then starts one at
        once for new jobs and lets this one finish its running jobs, without
        waiting for them. The default adopts every change that keeps the
        executor class and its options.
        """
        if str(queue.executor) != str(self.queue.executor) or (
            queue.executor_options != self.queue.executor_options
        ):
            return False
        self.queue = queue
        return True

    async def __aenter__(self) -> Executor:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()

    get_function_and_kwargs = staticmethod(get_function_and_kwargs)

    def check_supported(self, job: QueuedJob) -> None:
        """Raise ``ValueError`` if the job needs a limit this executor cannot honour."""
        caps = self.get_capabilities()
        if (
            memory_limit_of(job) is not None
            and self.Capability.MEMORY_LIMITS not in caps
        ):
            raise ValueError(
                f"{type(self).__name__} cannot enforce memory limits; run job {job.func!r}"
                " on a queue using the process executor"
            )

    async def on_job_starting(self, job: QueuedJob) -> QueuedJob:
        """Let plugins replace the job before it runs."""
        plugins = self.worker.chancy.plugin_manager
        if plugins.has_job_starting:
            return await plugins.job_starting(self.worker, job)
        return job

    async def on_job_completed(
        self,
        *,
        job: QueuedJob,
        exc: BaseException | None = None,
        result: Any = None,
        tb: str | None = None,
    ) -> None:
        """Record a finished run: compute the new state, run plugin hooks, queue the save.

        :param tb: a traceback already formatted elsewhere (a child process).
        """
        new, exc, result = self._new_state(job, exc, result, tb)
        plugins = self.worker.chancy.plugin_manager
        if plugins.has_job_completed:
            try:
                new = await plugins.job_completed(self.worker, new, exc, result)
            except Exception:
                log.exception("A plugin's on_job_completed failed for job %s", job.id)
        self._record_outcome(new)

    def complete_now(
        self,
        *,
        job: QueuedJob,
        exc: BaseException | None = None,
        result: Any = None,
        tb: str | None = None,
    ) -> bool:
        """:meth:`on_job_completed` without a coroutine, when nothing in it
        would wait: no plugin implements ``on_job_completed`` and the method
        is not overridden. Returns ``False``, having done nothing, otherwise.

        Executors whose runs finish outside the event loop (threads) call it
        first, to save creating a task per job.
        """
        if (
            type(self).on_job_completed is not Executor.on_job_completed
            or self.worker.chancy.plugin_manager.has_job_completed
        ):
            return False
        new, _exc, _result = self._new_state(job, exc, result, tb)
        self._record_outcome(new)
        return True

    def _record_outcome(self, new: QueuedJob) -> None:
        self.worker.queue_update(new)
        self.worker.on_job_completed(queue=self.queue, job=new)

    def _new_state(
        self,
        job: QueuedJob,
        exc: BaseException | None,
        result: Any,
        tb: str | None,
    ) -> tuple[QueuedJob, BaseException | None, Any]:
        """The job after this run, and the run's exception and result as the
        hooks see them (a result that cannot be stored becomes the error)."""
        worker = self.worker
        now = _utcnow()
        attempts = job.attempts + 1
        take_progress = getattr(worker, "take_progress", None)  # stand-in workers
        progress = take_progress(job) if take_progress is not None else None
        if progress is not None:
            job = replace_job(job, progress=progress)
        if exc is None and tb is None and result is not None and job.store_result:
            limit = getattr(worker.chancy, "max_result_size", DEFAULT_MAX_RESULT_SIZE)
            try:
                check_result(result, limit)
            except (TypeError, ValueError) as error:
                exc, result = error, None
        if isinstance(exc, Snooze):
            new = snoozed(job, exc.seconds, now)
        elif isinstance(exc, WorkerLostError):
            # The process running the job died: not the job's own attempt.
            new = lost_run(job, str(exc), max_lost_runs=worker.max_lost_runs, now=now)
            log.warning(
                "Job %s (%s): %s", job.id, job.func, new.errors[-1]["traceback"]
            )
        elif exc is None and tb is None:
            new = replace_job(
                job,
                state=QueuedJob.State.SUCCEEDED,
                attempts=attempts,
                completed_at=now,
                deadline=None,
                result=result if job.store_result else None,
            )
        else:
            if tb is None:
                tb = "".join(traceback.format_exception(exc))
            failed = attempts >= job.max_attempts
            new = attrs.evolve(
                job,
                state=QueuedJob.State.FAILED if failed else QueuedJob.State.RETRYING,
                attempts=attempts,
                completed_at=now if failed else None,
                errors=[*job.errors, {"attempt": job.attempts, "traceback": tb}],
                deadline=None,
                result=None,
            )
            log.debug("Job %s (%s) failed:\n%s", job.id, job.func, tb)
        return new, exc, result


def check_result(result: Any, limit: int) -> str:
    """The return value as stored (JSON text), or the error that fails the run.

    :raises TypeError: the value cannot be stored as JSON.
    :raises ValueError: its JSON is larger than ``limit`` bytes, or holds a
        NUL character (PostgreSQL's jsonb cannot).
    """
    try:
        text = encode_json(result)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the job's return value cannot be stored as JSON ({exc}); return"
            " something JSON can hold, or set store_result=False on the job"
        ) from None
    if len(text) > limit:
        raise ValueError(
            f"the job's return value is {len(text)} bytes as JSON, more than the"
            f" limit of {limit} (Chancy(max_result_size=...)); store it elsewhere,"
            " or set store_result=False on the job"
        )
    if "\\u0000" in text and JSON_NUL.search(text):
        raise ValueError(
            "the job's return value holds a NUL character, which PostgreSQL cannot store"
        )
    return text


def snoozed(job: QueuedJob, seconds: float, now: datetime) -> QueuedJob:
    """The job after it raised :class:`~chancy.errors.Snooze`: to run again
    after ``seconds``, without an attempt used, the snooze counted in
    ``meta["snoozes"]``."""
    count = job.meta.get(SNOOZES_KEY)
    count = count if type(count) is int and count > 0 else 0
    return attrs.evolve(
        job,
        state=QueuedJob.State.RETRYING if job.attempts else QueuedJob.State.PENDING,
        scheduled_at=now + timedelta(seconds=seconds),
        completed_at=None,
        meta={**job.meta, SNOOZES_KEY: count + 1},
        deadline=None,
        result=None,
    )


class ConcurrentExecutor(Executor):
    """Base of executors backed by a ``concurrent.futures`` pool: tracks future → job."""

    def __init__(self, worker: Worker, queue: Queue, **options: Any) -> None:
        super().__init__(worker, queue, **options)
        self.jobs: dict[Any, QueuedJob] = {}

    def __len__(self) -> int:
        return len(self.jobs)

    def get_running_jobs(self) -> list[QueuedJob]:
        return list(self.jobs.values())

    async def cancel(self, ref: Reference) -> None:
        for future, job in list(self.jobs.items()):
            if job.id == ref.identifier and future.cancel():
                # Never started: nothing runs, the cancellation is already saved.
                self.jobs.pop(future, None)
                self.worker.on_job_completed(queue=self.queue, job=job)


def monotonic_deadline(seconds: float | None) -> float | None:
    return None if seconds is None else time.monotonic() + seconds
