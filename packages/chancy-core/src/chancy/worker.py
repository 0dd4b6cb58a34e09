"""The :class:`Worker`: fetches jobs, runs them, saves outcomes, runs plugins."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import platform
import random
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row

from chancy import events
from chancy._encoding import encode_json
from chancy._pool import Checkout
from chancy.errors import TRANSIENT_ERRORS, MigrationsNeededError
from chancy.executors.base import DEFAULT_MAX_LOST_RUNS, Executor
from chancy.hub import Event, Hub
from chancy.job import (
    QueuedJob,
    Reference,
    _progress_sinks,
    fetched_jobs,
    job_from_fetched_row,
)
from chancy.plugin import PluginScope
from chancy.queue import Queue, check_tag_pattern
from chancy.utils import import_string, random_uuid, redact_dsn, wait_event

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = ["Worker"]

#: Seconds between two saves of one running job's progress.
PROGRESS_INTERVAL = 1.0
_EMPTY_LIST = "[]"
#: The key of the fetch's cursor kept on the app's hot connection.
_FETCH = "chancy.worker.fetch"


def _json_time(value: datetime | None) -> str:
    """A timestamp as a JSON string literal (ISO 8601), or ``null``."""
    return "null" if value is None else f'"{value.isoformat()}"'


class _QueueRunner:
    """The polling loop of one served queue."""

    __slots__ = (
        "backlog",
        "closing",
        "executor",
        "queue",
        "reconcile",
        "removed",
        "retiring",
        "stopping",
        "task",
        "update",
        "wake",
    )

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.wake = asyncio.Event()
        self.executor: Executor | None = None
        self.task: asyncio.Task[None] | None = None
        #: A new configuration waiting to be applied by the queue's loop.
        self.update: Queue | None = None
        #: Replaced executors finishing the jobs they still run (an edit that
        #: needs a new executor does not wait for them).
        self.retiring: list[Executor] = []
        #: Stops of drained retiring executors in progress.
        self.closing: set[asyncio.Task[None]] = set()
        #: A fetch failed: rows it may have claimed must be released first.
        self.reconcile = False
        self.removed = False
        self.stopping = False
        #: The last fetch filled every free slot, so more jobs may be waiting:
        #: a finished run makes the queue fetch again at once.
        self.backlog = False


class Worker:
    """A worker process component: serves the queues whose tags match its own.

    Use it as an async context manager, or call :meth:`start` and :meth:`stop`.

    :param chancy: the app.
    :param worker_id: a unique id (default: a random UUID).
    :param heartbeat_poll_interval: seconds between heartbeats.
    :param heartbeat_timeout: seconds without a heartbeat after which the worker
        is presumed dead.
    :param queue_change_poll_interval: seconds between scans of the queue table
        (changes are also picked up at once through notifications).
    :param shutdown_timeout: seconds :meth:`stop` waits for running jobs.
    :param tags: extra tags for queue matching.
    :param register_signal_handlers: stop gracefully on SIGTERM/SIGINT.
    :param backoff_initial: first delay before retrying a failed maintenance loop.
    :param backoff_max: longest delay between retries.
    :param backoff_max_retries: give up (and stop the worker) after this many
        consecutive failures of one loop; ``None`` retries forever.
    :param loop_block_warning: seconds the worker's event loop may be blocked
        (an ``async def`` job doing blocking work, say) before a warning names
        the job or task blocking it; ``None`` turns the watchdog off.
    """

    #: Kept for compatibility: updates are now flushed as soon as they exist.
    send_outgoing_interval: float = 1

    def __init__(
        self,
        chancy: Chancy,
        *,
        worker_id: str | None = None,
        heartbeat_poll_interval: float = 30,
        heartbeat_timeout: float = 90,
        queue_change_poll_interval: float = 10,
        shutdown_timeout: float = 30,
        tags: set[str] | None = None,
        register_signal_handlers: bool = True,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        backoff_max_retries: int | None = None,
        loop_block_warning: float | None = 1.0,
    ) -> None:
        for name, value in (
            ("heartbeat_poll_interval", heartbeat_poll_interval),
            ("heartbeat_timeout", heartbeat_timeout),
            ("queue_change_poll_interval", queue_change_poll_interval),
        ):
            if value <= 0:
                raise ValueError(f"Worker {name} must be positive, got {value!r}")
        if shutdown_timeout < 0:
            raise ValueError(
                f"Worker shutdown_timeout must be >= 0, got {shutdown_timeout!r}"
            )
        if heartbeat_timeout < heartbeat_poll_interval:
            raise ValueError(
                "Worker heartbeat_timeout must be at least heartbeat_poll_interval "
                f"({heartbeat_timeout!r} < {heartbeat_poll_interval!r})"
            )
        self.chancy = chancy
        self.worker_id = worker_id or str(uuid.uuid4())
        self.heartbeat_poll_interval = heartbeat_poll_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.queue_change_poll_interval = queue_change_poll_interval
        self.shutdown_timeout = shutdown_timeout
        self.tags = set(tags or ())
        self.register_signal_handlers = register_signal_handlers
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_max_retries = backoff_max_retries
        if loop_block_warning is not None and not loop_block_warning > 0:
            raise ValueError(
                "Worker loop_block_warning must be positive or None,"
                f" got {loop_block_warning!r}"
            )
        self.loop_block_warning = loop_block_warning
        self._watchdog: _LoopWatchdog | None = None
        #: Lost runs (the process running a job died) after which a job fails
        #: instead of running again; Recovery sets it from its own setting.
        self.max_lost_runs = DEFAULT_MAX_LOST_RUNS

        #: The worker's in-process events (job, queue, plugin and database
        #: notifications); see :class:`~chancy.hub.Hub`.
        self.hub = Hub()
        # Fetches may run on the app's hot connection (autocommit) unless a
        # subclass picks jobs its own way, maybe in several statements.
        self._plain_fetch = type(self).fetch_jobs is Worker.fetch_jobs
        self.hub.on_error = self._on_hub_error
        #: Set while this worker holds the leader lease (a leadership plugin
        #: sets and clears it).
        self.is_leader = asyncio.Event()
        #: Set when the worker starts stopping.
        self.shutdown_event = asyncio.Event()
        self.outgoing: collections.deque[QueuedJob] = collections.deque()
        #: The batch of updates being written right now.
        self._saving: list[QueuedJob] = []
        #: Progress reports not saved yet: job id -> (claim, payload).
        self._progress: dict[uuid.UUID, tuple[uuid.UUID | None, dict[str, Any]]] = {}
        #: When each running job's progress was last saved (monotonic).
        self._progress_written: dict[uuid.UUID, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.manager = _TaskManager(self)

        self._runners: dict[str, _QueueRunner] = {}
        self._flush_wanted = asyncio.Event()
        self._flush_idle = asyncio.Event()
        self._flush_idle.set()
        self._scan_wake = asyncio.Event()
        self._listening = asyncio.Event()
        self._started = False
        self._stopping: asyncio.Future[bool] | None = None
        self._stopped = asyncio.Event()
        self._signals_installed: list[int] = []
        self._start_done = False
        self._stop_requested = False
        self._stop_task: asyncio.Future[bool] | None = None
        self._worker_tags = self._compute_tags()
        self._tag_cache: dict[frozenset[str], bool] = {}

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id}>"

    @property
    def log(self) -> logging.Logger:
        return self.chancy.log

    # ------------------------------------------------------------------
    # Introspection
    # ------------------------------------------------------------------

    def _compute_tags(self) -> set[str]:
        return {
            *self.tags,
            "*",
            f"hostname={socket.gethostname()}",
            f"worker_id={self.worker_id}",
            f"python={platform.python_version()}",
            f"os={platform.system()}",
            f"arch={platform.machine()}",
        }

    def worker_tags(self) -> set[str]:
        """This worker's tags: the extra ones plus ``*``, hostname, id, python, os, arch."""
        return set(self._worker_tags)

    @property
    def queue_wake_events(self) -> dict[str, asyncio.Event]:
        return {name: runner.wake for name, runner in self._runners.items()}

    @property
    def executors(self) -> dict[str, Executor]:
        """Running executors by queue name."""
        return {
            name: runner.executor
            for name, runner in self._runners.items()
            if runner.executor is not None
        }

    def _every_executor(self) -> list[Executor]:
        """Every executor that may run jobs: current ones and retiring ones."""
        found: list[Executor] = []
        for runner in self._runners.values():
            if runner.executor is not None:
                found.append(runner.executor)
            found.extend(runner.retiring)
        return found

    def __len__(self) -> int:
        return len(self._runners)

    def __iter__(self) -> Iterator[Queue]:
        return iter([runner.queue for runner in self._runners.values()])

    def __contains__(self, name: object) -> bool:
        return name in self._runners

    def __getitem__(self, name: str) -> Queue:
        return self._runners[name].queue

    def matches(self, queue: Queue) -> bool:
        """Whether any of the queue's tag patterns fully matches any worker tag."""
        key = frozenset(queue.tags)
        cached = self._tag_cache.get(key)
        if cached is None:
            cached = False
            for pattern in queue.tags:
                try:
                    # Rows stored before patterns were checked may hold one
                    # that backtracks catastrophically: never match it here,
                    # in the event loop.
                    check_tag_pattern(pattern)
                    regex = re.compile(pattern)
                except (re.error, ValueError) as exc:
                    self.log.warning(
                        "Queue %r: ignoring its tag pattern %r (%s)",
                        queue.name,
                        pattern,
                        exc,
                    )
                    continue
                if any(regex.fullmatch(tag) for tag in self._worker_tags):
                    cached = True
                    break
            self._tag_cache[key] = cached
        return cached

    # ------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start serving; returns once running.

        :raises MigrationsNeededError: the database schema is not up to date.
        :raises PluginDependencyError: a plugin's dependency is not enabled.
        """
        if self._started:
            raise RuntimeError(f"{self!r} was already started")
        chancy = self.chancy
        chancy.check_plugin_dependencies()
        if not await chancy.is_up_to_date():
            raise MigrationsNeededError(
                "the database schema is not up to date; run `chancy --app <app> migrate`"
                " (or `await chancy.migrate()`) first"
            )
        self._started = True
        self._loop = asyncio.get_running_loop()
        # Handlers first: a SIGTERM while the worker starts (its row may
        # already be visible) stops it once started, instead of killing it.
        if self.register_signal_handlers:
            self._install_signal_handlers()
        self.hub.on(events.JOB_CANCELLED.name, self._on_job_cancelled)
        self.hub.on(events.JOB_RECOVERED.name, self._on_job_recovered)
        self.hub.on(events.QUEUE_PUSHED.name, self._on_queue_pushed)
        for event in (
            events.QUEUE_DECLARED.name,
            events.QUEUE_PAUSED.name,
            events.QUEUE_RESUMED.name,
            events.QUEUE_DELETED.name,
        ):
            self.hub.on(event, self._on_queue_changed)

        self.manager.add("chancy:flush", self._flush_loop)
        self.manager.add("chancy:heartbeat", self._heartbeat_loop)
        if self.loop_block_warning is not None:
            self._watchdog = _LoopWatchdog(self, self.loop_block_warning)
            self.manager.add("chancy:loop-watchdog", self._watchdog.tick)
        if chancy.can_listen():
            self.manager.add("chancy:listen", self.listen)
            await self._listening.wait()
        for task in chancy.plugin_manager.worker_tasks(self, chancy):
            self.manager.add(task.name, task.factory, scope=task.scope)

        # Quietly: a "default" queue the user configured is kept as it is.
        await chancy._declare(Queue("default"), upsert=False, warn=False)
        await self._scan_queues()
        self.manager.add("chancy:queues", self._queue_scan_loop)
        await chancy.plugin_manager.worker_started(self)
        self.log.info(
            "Worker %s started (queues: %s; event loop: %s)",
            self.worker_id,
            ", ".join(sorted(self._runners)) or "none",
            type(asyncio.get_running_loop()).__module__.split(".")[0],
        )
        await self.hub.emit(events.WORKER_STARTED.name, {"worker": self})
        self._start_done = True
        if self._stop_requested:
            self._stop_task = asyncio.ensure_future(self.stop())

    async def wait_for_shutdown(self) -> None:
        """Wait until the worker has stopped (after a signal or :meth:`stop`)."""
        await self._stopped.wait()

    async def stop(self, *, timeout: float | None = None) -> bool:
        """Stop gracefully: stop fetching, let running jobs finish (up to
        ``shutdown_timeout``), save every outcome, release what the worker holds.

        Jobs still running at the deadline are interrupted and put back to be
        run again, without counting an attempt. Idempotent; concurrent calls
        share one stop. Returns ``False`` if the deadline was hit.
        """
        if self._stopping is not None:
            return await asyncio.shield(self._stopping)
        self._stopping = asyncio.get_running_loop().create_future()
        try:
            result = await self._stop(
                self.shutdown_timeout if timeout is None else timeout
            )
        except BaseException as exc:
            self._stopping.set_exception(exc)
            self._stopped.set()
            raise
        self._stopping.set_result(result)
        self._stopped.set()
        return result

    async def _stop(self, timeout: float) -> bool:
        self.shutdown_event.set()
        if not self._started:
            return True
        self.log.info("Worker %s stopping", self.worker_id)
        deadline = time.monotonic() + timeout
        await self.manager.cancel("chancy:queues")
        for runner in self._runners.values():
            runner.stopping = True
            runner.wake.set()
        runner_tasks = [r.task for r in self._runners.values() if r.task is not None]
        clean = True
        if runner_tasks:
            _, pending = await asyncio.wait(
                runner_tasks, timeout=max(0.0, deadline - time.monotonic())
            )
            if pending:
                clean = False
                self.log.warning(
                    "Worker %s: jobs still running after %ss; interrupting them",
                    self.worker_id,
                    timeout,
                )
                await _TaskManager._cancel_and_wait(list(pending))
        # Plugins and the heartbeat stop; the flusher saves what remains.
        await self.manager.cancel_all(except_names={"chancy:flush"})
        try:
            async with asyncio.timeout(max(5.0, deadline - time.monotonic())):
                await self.flush()
        except TimeoutError:
            self.log.error(
                "Worker %s: %d job update(s) could not be saved; those jobs will be recovered",
                self.worker_id,
                len(self.outgoing),
            )
        await self.manager.cancel_all()
        if self._watchdog is not None:
            self._watchdog.stop()
        await self._release()
        self._remove_signal_handlers()
        try:
            await self.chancy.plugin_manager.worker_stopped(self)
        except Exception:
            self.log.exception("A plugin's worker-stopped hook failed")
        self.is_leader.clear()
        if clean:
            await self.hub.emit(events.WORKER_STOPPED.name, {"worker": self})
            self.log.info("Worker %s stopped", self.worker_id)
        else:
            await self.hub.emit(events.WORKER_SHUTDOWN_TIMEOUT.name, {"worker": self})
        return clean

    async def _release(self) -> None:
        """Put back jobs this worker still holds (interrupted at shutdown) and
        remove its row from the workers table."""
        sql = self.chancy.sql
        try:
            async with self.chancy.pool.connection() as conn, conn.cursor() as cursor:
                await cursor.execute(
                    f"UPDATE {sql.jobs} SET state = 'pending', taken_by = NULL,"
                    f" claim_id = NULL, started_at = NULL"
                    f" WHERE taken_by = %s AND state = 'running' RETURNING queue",
                    (self.worker_id,),
                )
                rows = await cursor.fetchall()
                await cursor.execute(sql.remove_worker, (self.worker_id,))
                if rows:
                    self.log.info(
                        "Worker %s put %d interrupted job(s) back",
                        self.worker_id,
                        len(rows),
                    )
                    await self.chancy.notify_many(
                        cursor,
                        [
                            (events.QUEUE_PUSHED.name, {"q": q})
                            for q in dict.fromkeys(r[0] for r in rows)
                        ],
                    )
        except Exception:
            self.log.exception(
                "Worker %s could not release its jobs; Recovery will", self.worker_id
            )

    # ------------------------------------------------------------------
    # Signals
    # ------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread() or os.name == "nt":
            if os.name == "nt":
                self.log.warning("Signal handlers are not supported on Windows")
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
            self._signals_installed.append(signum)

    def _remove_signal_handlers(self) -> None:
        if not self._signals_installed:
            return
        loop = asyncio.get_running_loop()
        for signum in self._signals_installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        self._signals_installed.clear()

    def _on_signal(self, signum: int) -> None:
        if not self._start_done and not self._stop_requested:
            self.log.info(
                "Received %s while starting: stopping once started (again to exit at"
                " once)",
                signal.Signals(signum).name,
            )
            self._stop_requested = True
            return
        if self._stopping is None and not self._stop_requested:
            self.log.info(
                "Received %s: stopping gracefully (again to exit at once)",
                signal.Signals(signum).name,
            )
            self._stop_task = asyncio.ensure_future(self.stop())
        else:
            self.log.warning(
                "Received %s again: exiting now", signal.Signals(signum).name
            )
            os._exit(1)

    # ------------------------------------------------------------------
    # Hub handlers
    # ------------------------------------------------------------------

    def _on_hub_error(self, event: Event, exc: BaseException) -> None:
        self.log.error("A handler of %r failed: %r", event.name, exc, exc_info=exc)

    async def _on_job_cancelled(self, event: Event) -> None:
        job_id = event.body.get("j")
        if not job_id:
            return
        ref = Reference(job_id)
        for executor in self._every_executor():
            with contextlib.suppress(Exception):
                await executor.cancel(ref)

    async def _on_job_recovered(self, event: Event) -> None:
        """Stop the abandoned run of a recovered job, if it still runs here.

        Only the execution holding the recovered claim is interrupted: this
        worker may already run the job again under a new claim.
        """
        job_id, claim = event.body.get("j"), event.body.get("c")
        if not job_id:
            return
        ref = Reference(job_id)
        for executor in self._every_executor():
            for job in executor.get_running_jobs():
                if job.id == ref.identifier and (
                    claim is None or str(job.claim_id) == str(claim)
                ):
                    with contextlib.suppress(Exception):
                        await executor.cancel(ref)

    def _on_queue_pushed(self, event: Event) -> None:
        runner = self._runners.get(event.body.get("q", ""))
        if runner is not None:
            runner.wake.set()

    def _on_queue_changed(self, event: Event) -> None:
        # The scan applies the new settings; a pause already holds, since
        # fetching checks the queue's state in the same statement.
        self._scan_wake.set()

    # ------------------------------------------------------------------
    # Queues
    # ------------------------------------------------------------------

    async def _queue_scan_loop(self) -> None:
        while True:
            await wait_event(self._scan_wake, self.queue_change_poll_interval)
            self._scan_wake.clear()
            await self._scan_queues()

    async def _scan_queues(self) -> None:
        queues = {
            q.name: q for q in await self.chancy.get_all_queues() if self.matches(q)
        }
        for name, runner in list(self._runners.items()):
            if runner.stopping:
                continue
            new = queues.get(name)
            if new is None:
                if not runner.removed:
                    runner.removed = True
                    runner.wake.set()
            elif new != runner.queue and new != runner.update:
                runner.update = new
                runner.wake.set()
        for name, queue in queues.items():
            if name not in self._runners and not self.shutdown_event.is_set():
                runner = _QueueRunner(queue)
                self._runners[name] = runner
                runner.task = asyncio.create_task(
                    self._run_queue(runner), name=f"queue:{name}"
                )

    async def _run_queue(self, runner: _QueueRunner) -> None:
        failures = 0
        try:
            while True:
                try:
                    restart = await self._serve_queue(runner)
                    failures = 0
                except Exception:
                    if runner.stopping:
                        raise
                    failures += 1
                    delay = min(
                        self.backoff_initial * 2 ** (failures - 1), self.backoff_max
                    )
                    self.log.exception(
                        "Queue %r: its loop crashed; restarting it in %.1fs",
                        runner.queue.name,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                if not restart:
                    return
        finally:
            # Interrupted (shutdown deadline): retiring executors stop now,
            # abandoning what they still run, like the current one did.
            for executor in runner.retiring:
                runner.closing.add(asyncio.ensure_future(executor.stop()))
            runner.retiring.clear()
            if runner.closing:
                await asyncio.gather(*runner.closing, return_exceptions=True)
            if self._runners.get(runner.queue.name) is runner:
                del self._runners[runner.queue.name]

    async def _start_executor(self, runner: _QueueRunner) -> Executor | None:
        queue = runner.queue
        delay = self.backoff_initial
        while not (runner.stopping or runner.removed or runner.update is not None):
            try:
                cls = import_string(queue.executor)
                executor: Executor = cls(self, queue, **queue.executor_options)
                await executor.__aenter__()
                return executor
            except Exception as exc:
                self.log.error(
                    "Queue %r: cannot start executor %r (%s); retrying in %.0fs",
                    queue.name,
                    queue.executor,
                    exc,
                    delay,
                )
                await wait_event(runner.wake, delay)
                runner.wake.clear()
                delay = min(delay * 2, self.backoff_max)
        return None

    async def _serve_queue(self, runner: _QueueRunner) -> bool:
        """Serve until removed, stopped or reconfigured; True means restart."""
        executor = await self._start_executor(runner)
        queue = runner.queue
        if executor is not None:
            runner.executor = executor
            concurrency = executor.concurrency
            self.log.info(
                "Serving queue %r (%s, concurrency %d)",
                queue.name,
                queue.executor.rsplit(".", 1)[-1],
                concurrency,
            )
            await self.hub.emit(
                events.WORKER_QUEUE_STARTED.name,
                {"queue": queue, "executor": executor, "worker": self},
            )
        runner.wake.set()
        failures = 0
        try:
            while True:
                await wait_event(runner.wake, queue.polling_interval)
                runner.wake.clear()
                self._stop_drained(runner)
                if runner.stopping or runner.removed:
                    if (executor is not None and len(executor)) or runner.retiring:
                        continue  # drain: completions wake us
                    if runner.stopping:
                        return False
                    await self.flush()  # drained jobs are saved before we move on
                    self.log.info("Queue %r removed; no longer serving it", queue.name)
                    await self.hub.emit(
                        events.WORKER_QUEUE_REMOVED.name,
                        {"queue": queue, "executor": executor, "worker": self},
                    )
                    return False
                if runner.update is not None:
                    new, runner.update = runner.update, None
                    await self.hub.emit(
                        events.WORKER_QUEUE_UPDATED.name,
                        {"queue": queue, "executor": executor, "worker": self},
                    )
                    # Applied at once, without waiting for running jobs: in
                    # place when the executor can take it, else a new
                    # executor serves new jobs while the old one finishes.
                    if executor is not None and executor.reconfigure(new):
                        runner.queue = queue = new
                        self.log.info("Queue %r changed; applied at once", queue.name)
                    else:
                        if executor is not None:
                            runner.retiring.append(executor)
                            runner.executor = executor = None
                            self._stop_drained(runner)
                        runner.queue = new
                        self.log.info(
                            "Queue %r changed; starting a new executor", queue.name
                        )
                        return True
                if executor is None:
                    return True
                if queue.state is Queue.State.PAUSED:
                    if queue.resume_at is not None and queue.resume_at <= datetime.now(
                        UTC
                    ):
                        self.log.info(
                            "Queue %r: resume_at passed, resuming", queue.name
                        )
                        try:
                            await self.chancy.resume_queue(queue.name)
                        except KeyError:
                            pass
                        except TRANSIENT_ERRORS as exc:
                            self.log.warning(
                                "Queue %r: could not resume (%s)", queue.name, exc
                            )
                            continue
                        queue = Queue.unpack(
                            {**queue.pack(), "state": "active", "resume_at": None}
                        )
                        runner.queue = queue
                    else:
                        continue
                free = executor.concurrency - len(executor)
                for old in runner.retiring:
                    free -= len(old)  # still running: they use the queue's slots
                if free <= 0:
                    await self.hub.emit(
                        events.WORKER_QUEUE_FULL.name,
                        {"queue": queue, "executor": executor, "worker": self},
                    )
                    continue
                try:
                    if runner.reconcile:
                        await self._release_orphans(queue)
                        runner.reconcile = False
                    lane = (
                        self.chancy._hot_connection()
                        if not queue.rate_limit and self._plain_fetch
                        else None
                    )
                    if lane is not None:
                        try:
                            jobs = await self.fetch_jobs(queue, lane, up_to=free)
                        finally:
                            self.chancy._lane.give_back(lane)
                    else:
                        async with Checkout(self.chancy.pool) as conn:
                            jobs = await self.fetch_jobs(queue, conn, up_to=free)
                    failures = 0
                    # A full fetch means a backlog: the next finished run
                    # fetches again at once instead of waiting for the poll.
                    runner.backlog = len(jobs) >= free
                except TRANSIENT_ERRORS as exc:
                    # The claim may have committed and only the reply been
                    # lost: before fetching again, release what was claimed.
                    runner.reconcile = True
                    failures += 1
                    delay = min(
                        self.backoff_initial * 2 ** (failures - 1), self.backoff_max
                    )
                    self.log.warning(
                        "Queue %r: fetching failed (%s); retrying in %.1fs",
                        queue.name,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    runner.wake.set()
                    continue
                for job in jobs:
                    self._track_progress(job)
                    try:
                        executor.check_supported(job)
                    except ValueError as exc:
                        await executor.on_job_completed(job=job, exc=exc)
                        continue
                    await executor.push(job)
        finally:
            runner.executor = None
            if executor is not None:
                try:
                    await executor.stop()
                except Exception:
                    self.log.exception(
                        "Queue %r: stopping its executor failed", queue.name
                    )

    async def _release_orphans(self, queue: Queue) -> None:
        """Put back the jobs of ``queue`` claimed in this worker's name that it
        does not run.

        A fetch whose reply was lost after its claim committed (the
        connection dropped in between) leaves jobs ``running`` under this
        live worker, which Recovery never takes. After a failed fetch the
        queue's loop calls this before fetching again: every such row that is
        not in one of this worker's executors, nor waiting to be saved, goes
        back to ``pending`` (or ``retrying``) without an attempt counted.
        """
        known = {job.id for e in self._every_executor() for job in e.get_running_jobs()}
        known.update(job.id for job in self.outgoing)
        known.update(job.id for job in self._saving)
        async with self.chancy.pool.connection() as conn, conn.cursor() as cursor:
            await cursor.execute(
                self.chancy.sql.release_orphans,
                (queue.name, self.worker_id, list(known)),
            )
            released = await cursor.fetchall()
            if released:
                await self.chancy.notify(
                    cursor, events.QUEUE_PUSHED.name, {"q": queue.name}
                )
        if released:
            self.log.warning(
                "Queue %r: released %d job(s) claimed by a fetch whose reply was lost",
                queue.name,
                len(released),
            )

    def _stop_drained(self, runner: _QueueRunner) -> None:
        """Stop the retiring executors of ``runner`` that finished their jobs."""
        for executor in [e for e in runner.retiring if not len(e)]:
            runner.retiring.remove(executor)
            task = asyncio.ensure_future(self._stop_executor(runner.queue, executor))
            runner.closing.add(task)
            task.add_done_callback(runner.closing.discard)

    async def _stop_executor(self, queue: Queue, executor: Executor) -> None:
        try:
            await executor.stop()
        except Exception:
            self.log.exception("Queue %r: stopping an executor failed", queue.name)

    async def fetch_jobs(
        self, queue: Queue, conn: AsyncConnection[Any], *, up_to: int = 1
    ) -> list[QueuedJob]:
        """Claim up to ``up_to`` runnable jobs of ``queue`` in one transaction.

        Ordered by priority (highest first) then age; ``FOR UPDATE SKIP LOCKED``
        hands each job to exactly one worker. Honours the queue's rate limit.
        Public so that subclasses can change how jobs are picked.
        """
        lane = self.chancy._lane
        # On the app's hot connection, one cursor kept for every fetch.
        kept = conn is lane.conn
        scope = _statement_scope(conn, single=not queue.rate_limit)
        async with scope:
            cursor = lane.cursor(tuple_row, key=_FETCH) if kept else conn.cursor()
            try:
                return await self._claim(queue, cursor, up_to)
            finally:
                if not kept:
                    await cursor.close()

    async def _claim(
        self, queue: Queue, cursor: AsyncCursor[Any], up_to: int
    ) -> list[QueuedJob]:
        """:meth:`fetch_jobs`' statements, on ``cursor`` inside its scope."""
        sql = self.chancy.sql
        if queue.rate_limit:
            cursor.row_factory = tuple_row
            await cursor.execute(
                sql.rate_limit_take,
                {"queue": queue.name, "window": queue.rate_limit_window},
            )
            row = await cursor.fetchone()
            used = row[0] if row else 0
            up_to = min(up_to, queue.rate_limit - used)
            if up_to <= 0:
                return []
        jobs: list[QueuedJob]
        if queue.has_limits:
            # Cluster-wide or per-key limits: one statement too, serialised
            # per queue inside the database (see core migration v3).
            cursor.row_factory = dict_row
            await cursor.execute(
                sql.fetch_limited,
                {
                    "queue": queue.name,
                    "limit": up_to,
                    "worker_id": self.worker_id,
                    "global_concurrency": queue.global_concurrency,
                    "key_concurrency": queue.key_concurrency,
                    "key_rate_limit": queue.key_rate_limit,
                    "key_rate_limit_window": queue.key_rate_limit_window,
                },
                prepare=self.chancy._prepare,
            )
            jobs = [job_from_fetched_row(row) for row in await cursor.fetchall()]
        else:
            claim = random_uuid()
            cursor.row_factory = fetched_jobs(queue.name, claim)
            await cursor.execute(
                sql.fetch_jobs,
                {
                    "queue": queue.name,
                    "limit": up_to,
                    "worker_id": self.worker_id,
                    "claim": claim,
                },
                # Hot path: skip psycopg's 5 unprepared warm-up runs (but
                # never prepare behind a transaction pooler).
                prepare=self.chancy._prepare,
                # Binary results: no timestamps or UUIDs formatted as text
                # by the server and parsed again here.
                binary=True,
            )
            jobs = await cursor.fetchall()
        if queue.rate_limit and jobs:
            await cursor.execute(sql.rate_limit_add, (len(jobs), queue.name))
        if len(jobs) > 1:
            jobs.sort(key=lambda j: (-j.priority, j.id))
        return jobs

    # ------------------------------------------------------------------
    # Completions
    # ------------------------------------------------------------------

    def queue_update(self, job: QueuedJob) -> None:
        """Queue a finished run's new state to be saved (almost at once)."""
        self.outgoing.append(job)
        self._flush_idle.clear()
        self._flush_wanted.set()

    def on_job_completed(self, *, queue: Queue, job: QueuedJob) -> None:
        """Called by executors after each run: wakes the queue when it should fetch."""
        if _progress_sinks.pop(job.id, None) is not None:
            self._progress.pop(job.id, None)
            self._progress_written.pop(job.id, None)
        runner = self._runners.get(queue.name)
        if runner is not None and (
            runner.backlog
            or runner.queue.eager_polling
            or runner.stopping
            or runner.removed
            or runner.retiring
        ):
            runner.wake.set()

    async def flush(self) -> None:
        """Wait until every queued update is saved (or, with no flusher running, save them now)."""
        if self.manager.is_running("chancy:flush"):
            if not self._flush_idle.is_set():  # queued or in flight
                self._flush_wanted.set()
                await self._flush_idle.wait()
        else:
            while self.outgoing:
                await self._write_batch()

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            if not self.outgoing:
                self._flush_idle.set()
                wait = self._progress_wait()
                if wait is None or wait > 0:
                    await wait_event(self._flush_wanted, wait)
            self._flush_wanted.clear()
            try:
                await self._write_batch()
                if self._progress:
                    await self._write_progress()
                failures = 0
            except TRANSIENT_ERRORS as exc:
                failures += 1
                delay = min(
                    self.backoff_initial * 2 ** (failures - 1), self.backoff_max
                )
                self.log.warning(
                    "Saving %d job update(s) failed (%s); retrying in %.1fs",
                    len(self.outgoing),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    # ------------------------------------------------------------------
    # Live progress (QueuedJob.set_progress)
    # ------------------------------------------------------------------

    def _track_progress(self, job: QueuedJob) -> None:
        """Let ``job``'s run report progress (``QueuedJob.set_progress``)."""
        _progress_sinks[job.id] = self._progress_sink

    def _progress_sink(self, job: QueuedJob, payload: dict[str, Any]) -> None:
        """Where a running job's reports arrive, from any thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.report_progress(job, payload)
        else:
            loop.call_soon_threadsafe(self.report_progress, job, payload)

    def report_progress(self, job: QueuedJob, payload: dict[str, Any]) -> None:
        """Keep ``payload`` as ``job``'s latest progress, to be saved (at most
        once a second per job, all due jobs in one statement, fenced by the
        job's claim). Call it on the worker's event loop."""
        if job.id not in _progress_sinks:
            return  # the run already finished: its save carries the last report
        new = job.id not in self._progress
        self._progress[job.id] = (job.claim_id, payload)
        if new:
            self._flush_wanted.set()  # the flusher works out when it is due

    def take_progress(self, job: QueuedJob) -> dict[str, Any] | None:
        """The last progress ``job``'s run reported, if any; the run is over
        (its save writes it)."""
        _progress_sinks.pop(job.id, None)
        self._progress_written.pop(job.id, None)
        found = self._progress.pop(job.id, None)
        return None if found is None else found[1]

    def _progress_wait(self) -> float | None:
        """Seconds until the next progress report is due to be saved."""
        if not self._progress:
            return None
        now = time.monotonic()
        written = self._progress_written
        return max(
            0.0,
            min(written.get(i, 0.0) + PROGRESS_INTERVAL - now for i in self._progress),
        )

    async def _write_progress(self) -> None:
        now = time.monotonic()
        written = self._progress_written
        due = [
            (job_id, claim, payload)
            for job_id, (claim, payload) in self._progress.items()
            if written.get(job_id, 0.0) + PROGRESS_INTERVAL <= now
        ]
        if not due:
            return
        document = json.dumps(
            [
                {"i": str(job_id), "k": str(claim) if claim else None, "p": payload}
                for job_id, claim, payload in due
            ]
        )
        async with self.chancy.pool.connection() as conn:
            await conn.set_autocommit(True)
            try:
                await conn.execute(self.chancy.sql.update_progress, (document,))
            finally:
                await conn.set_autocommit(False)
        for job_id, _claim, payload in due:
            written[job_id] = now
            kept = self._progress.get(job_id)
            if kept is not None and kept[1] is payload:
                del self._progress[job_id]  # saved; newer reports come back

    async def _write_batch(self, limit: int = 1000) -> None:
        batch: list[QueuedJob] = []
        while self.outgoing and len(batch) < limit:
            batch.append(self.outgoing.popleft())
        if not batch:
            return
        self._saving = batch
        try:
            applied = await self._save(batch)
        except BaseException:
            self.outgoing.extendleft(reversed(batch))
            raise
        finally:
            self._saving = []
        if applied:
            self._wake_limited(applied)
        plugins = self.chancy.plugin_manager
        if plugins.has_job_updated:
            for job in applied:
                try:
                    await plugins.job_updated(self, job)
                except Exception:
                    self.log.exception(
                        "A plugin's on_job_updated failed for job %s", job.id
                    )

    def _wake_limited(self, saved: list[QueuedJob]) -> None:
        """Wake the queues with cluster-wide or per-key limits that ``saved``
        freed slots of.

        Their fetch counts the jobs ``running`` in the table, and a run that
        finished here stays ``running`` there until its save commits: a
        fetch woken by the completion itself finds the limit still full.
        Without this wake-up the queue would wait for its next poll.
        """
        limited = [r for r in self._runners.values() if r.queue.has_limits]
        if not limited:
            return
        names = {job.queue for job in saved}
        for runner in limited:
            if runner.queue.name in names:
                runner.wake.set()

    async def _save(self, batch: list[QueuedJob]) -> list[QueuedJob]:
        batch.sort(key=lambda j: j.id)  # a stable lock order
        # The whole batch as one JSON document (jsonb_to_recordset): one C
        # encoder call per job instead of psycopg dumping ten arrays in Python.
        dumps = json.dumps
        rows = []
        for job in batch:
            # .hex: PostgreSQL reads 32 bare hex digits as a uuid, and it is
            # cheaper than str()'s dashed form.
            claim = "null" if job.claim_id is None else f'"{job.claim_id.hex}"'
            rows.append(
                f'{{"i":"{job.id.hex}","k":{claim},'
                f'"s":"{job.state.value}","b":{_json_time(job.started_at)},'
                f'"c":{_json_time(job.completed_at)},"t":{_json_time(job.scheduled_at)},'
                f'"a":{int(job.attempts)},'
                f'"e":{dumps(job.errors) if job.errors else _EMPTY_LIST},'
                f'"m":{dumps(job.meta, default=str) if job.meta else "{}"},'
                f'"x":{int(job.max_attempts)},'
                f'"r":{"null" if job.result is None else encode_json(job.result)},'
                f'"p":{"null" if job.progress is None else dumps(job.progress)}}}'
            )
        document = "[" + ",".join(rows) + "]"
        plugins = self.chancy.plugin_manager
        async with Checkout(self.chancy.pool) as conn:
            scope = _statement_scope(
                conn, single=not plugins.has_jobs_updated_in_transaction
            )
            async with scope, conn.cursor() as cursor:
                await cursor.execute(
                    self.chancy.sql.update_jobs,
                    (document,),
                    prepare=self.chancy._prepare,
                )
                applied_ids = {row[0] for row in await cursor.fetchall()}
                if len(applied_ids) == len(batch):
                    applied = batch
                else:
                    applied = [job for job in batch if job.id in applied_ids]
                    for job in batch:
                        if job.id not in applied_ids:
                            self.log.warning(
                                "Discarded the outcome (%s) of job %s: it was cancelled, recovered"
                                " or retried while it ran here",
                                job.state.value,
                                job.id,
                            )
                if applied and plugins.has_jobs_updated_in_transaction:
                    await plugins.jobs_updated_in_transaction(self, applied, cursor)
        return applied

    # ------------------------------------------------------------------
    # Heartbeat and notifications
    # ------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        failures = 0
        while True:
            try:
                await self.announce()
            except TRANSIENT_ERRORS as exc:
                # Retry within one heartbeat interval whatever the back-off
                # settings: after a database restart the worker must announce
                # itself again before anyone may take it for dead.
                failures += 1
                delay = min(
                    self.backoff_initial * 2 ** (failures - 1),
                    self.backoff_max,
                    self.heartbeat_poll_interval,
                )
                self.log.warning("Heartbeat failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                continue
            if failures:
                self.log.info("Heartbeat sent again after %d failure(s)", failures)
                failures = 0
            await asyncio.sleep(self.heartbeat_poll_interval)

    async def announce(self) -> None:
        """Write this worker's heartbeat (and drop expired workers' rows)."""
        sql = self.chancy.sql
        async with self.chancy.pool.connection() as conn, conn.cursor() as cursor:
            await cursor.execute(sql.heartbeat_expire)
            await cursor.execute(
                sql.heartbeat,
                (
                    self.worker_id,
                    sorted(self._worker_tags),
                    sorted(self._runners),
                    self.heartbeat_timeout,
                ),
            )
            await self.chancy.notify(
                cursor, events.WORKER_ANNOUNCED.name, {"worker_id": self.worker_id}
            )

    async def listen(self) -> None:
        """Relay the database's notifications to ``self.hub`` until cancelled.

        :meth:`start` runs this itself (when :meth:`Chancy.can_listen
        <chancy.app.Chancy.can_listen>`: notifications on, and a session to
        listen on). It connects to :attr:`Chancy.listen_target
        <chancy.app.Chancy.listen_target>`: ``listen_dsn`` when given, which
        bypasses a transaction pooler, else the app's DSN.
        It is public for processes that want the event stream without
        serving queues, such as ``chancy worker web``: run it under
        the worker's task manager and every ``pg_notify`` on the app's channel becomes
        a hub event. Reconnects with back-off when the connection drops.
        """
        chancy = self.chancy
        failures = 0
        while True:
            try:
                conn = await AsyncConnection.connect(
                    chancy.listen_target, autocommit=True
                )
            except TRANSIENT_ERRORS as exc:
                failures += 1
                delay = min(
                    self.backoff_initial * 2 ** (failures - 1), self.backoff_max
                )
                self.log.warning(
                    "LISTEN: cannot connect (%s); retrying in %.1fs",
                    redact_dsn(str(exc), chancy.listen_target),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            try:
                await conn.execute(f'LISTEN "{chancy.sql.channel}"')
                if failures:
                    self.log.info("LISTEN: reconnected")
                    # Notifications may have been missed: poll everything now.
                    self._scan_wake.set()
                    for runner in self._runners.values():
                        runner.wake.set()
                failures = 0
                self._listening.set()
                async for notify in conn.notifies():
                    try:
                        body = json.loads(notify.payload)
                        name = body.pop("t")
                    except (ValueError, KeyError, AttributeError):
                        self.log.debug(
                            "Ignoring malformed notification %r", notify.payload
                        )
                        continue
                    await self.hub.emit(name, body)
            except TRANSIENT_ERRORS as exc:
                failures += 1
                delay = min(
                    self.backoff_initial * 2 ** (failures - 1), self.backoff_max
                )
                self.log.warning(
                    "LISTEN: connection lost (%s); reconnecting in %.1fs", exc, delay
                )
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()

    # ------------------------------------------------------------------
    # Metrics helpers (for whichever metrics plugin listens)
    # ------------------------------------------------------------------

    async def increment_counter(self, key: str, value: float = 1) -> None:
        """Add ``value`` to the counter ``key`` (emits ``metrics.increment_counter``)."""
        await self.hub.emit(
            events.METRICS_INCREMENT_COUNTER.name, {"key": key, "value": value}
        )

    async def record_gauge(self, key: str, value: float) -> None:
        """Set the gauge ``key`` to ``value`` (emits ``metrics.record_gauge``)."""
        await self.hub.emit(
            events.METRICS_RECORD_GAUGE.name, {"key": key, "value": value}
        )

    async def record_histogram_value(self, key: str, value: float) -> None:
        """Add ``value`` to the histogram ``key`` (emits
        ``metrics.record_histogram_value``)."""
        await self.hub.emit(
            events.METRICS_RECORD_HISTOGRAM_VALUE.name, {"key": key, "value": value}
        )


class _LoopWatchdog:
    """Warns when the worker's event loop is blocked, naming what blocks it.

    A task on the loop records the time every ``threshold / 4`` seconds; a
    thread checks it as often. When the loop has not run for ``threshold``
    seconds, the thread looks up the task the loop is running (an
    ``async def`` job of the async executor, usually: time limits and every
    other job of the worker wait meanwhile) and logs it, once per stall.
    """

    def __init__(self, worker: Worker, threshold: float) -> None:
        self.worker = worker
        self.threshold = threshold
        self.loop = asyncio.get_running_loop()
        self.last = time.monotonic()
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._watch, name="chancy-loop-watchdog", daemon=True
        )
        self.thread.start()

    async def tick(self) -> None:
        while True:
            self.last = time.monotonic()
            await asyncio.sleep(self.threshold / 4)

    def stop(self) -> None:
        self.stopped.set()

    def _watch(self) -> None:
        warned_for = 0.0
        while not self.stopped.wait(self.threshold / 4):
            last = self.last
            blocked = time.monotonic() - last
            if blocked < self.threshold or warned_for == last:
                continue
            warned_for = last
            try:
                self._warn(blocked)
            except Exception:  # never let the watchdog die of a race
                continue

    def _warn(self, blocked: float) -> None:
        task = asyncio.current_task(self.loop)
        job = None
        if task is not None:
            for executor in list(self.worker._every_executor()):
                tasks = getattr(executor, "tasks", None)
                if isinstance(tasks, dict) and task in tasks:
                    job = tasks[task]
                    break
        if job is not None:
            self.worker.log.warning(
                "Job %s (%s) has blocked worker %s's event loop for %.1fs: every"
                " other job and the worker's own loops wait meanwhile, and its time"
                " limit cannot act. An async def job must not block: await, use"
                " asyncio.to_thread(), or run it on the threaded executor.",
                job.id,
                job.func,
                self.worker.worker_id,
                blocked,
            )
        else:
            self.worker.log.warning(
                "Worker %s's event loop has been blocked for %.1fs (running %s)",
                self.worker.worker_id,
                blocked,
                task.get_name() if task is not None else "a callback",
            )


class _statement_scope:
    """A transaction, or, for one statement on an idle pooled connection,
    autocommit: a single statement is atomic by itself and skipping BEGIN and
    COMMIT saves two round trips on the hot path.

    A class rather than a generator-based context manager: it is entered for
    every fetch and every save.
    """

    __slots__ = ("conn", "single", "transaction")

    def __init__(self, conn: AsyncConnection[Any], *, single: bool) -> None:
        self.conn = conn
        self.single = single
        self.transaction: Any = None

    async def __aenter__(self) -> None:
        conn = self.conn
        if self.single and conn.autocommit:
            self.single = False  # nothing to switch, nor to switch back
            return
        if (
            self.single
            and not conn.autocommit
            and conn.pgconn.transaction_status == TransactionStatus.IDLE
        ):
            await conn.set_autocommit(True)
        else:
            self.transaction = conn.transaction()
            await self.transaction.__aenter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        if self.transaction is None:  # autocommit
            if self.single:  # switched on by __aenter__
                await self.conn.set_autocommit(False)
            return None
        return await self.transaction.__aexit__(exc_type, exc, tb)  # type: ignore[no-any-return]


class _TaskManager:
    """Supervises named long-running tasks: restarts crashed ones with back-off.

    The one place plugin loops are retried: a loop that raises is restarted
    after ``backoff_initial * 2**(failures - 1)`` seconds (at most
    ``backoff_max``, with jitter); a transient database error
    (:data:`chancy.errors.TRANSIENT_ERRORS`) is logged as one warning line,
    anything else with its traceback. ``backoff_max_retries`` consecutive
    failures stop the worker.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def add(
        self,
        name: str,
        factory: Callable[[], Awaitable[Any]],
        *,
        scope: PluginScope = PluginScope.WORKER,
    ) -> asyncio.Task[None]:
        if name in self.tasks and not self.tasks[name].done():
            raise ValueError(f"a task named {name!r} is already running")
        task = asyncio.create_task(self._supervise(name, factory, scope), name=name)
        self.tasks[name] = task
        return task

    def is_running(self, name: str) -> bool:
        task = self.tasks.get(name)
        return task is not None and not task.done()

    async def _supervise(
        self, name: str, factory: Callable[[], Awaitable[Any]], scope: PluginScope
    ) -> None:
        worker = self.worker
        log = worker.log
        failures = 0
        while True:
            if scope is PluginScope.LEADER and not worker.is_leader.is_set():
                await worker.is_leader.wait()
            started = time.monotonic()
            try:
                if scope is PluginScope.LEADER:
                    await self._run_while_leader(name, factory)
                    continue
                await factory()
                return  # a loop that ends by itself is done
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - started > worker.backoff_max:
                    failures = 0
                failures += 1
                if (
                    worker.backoff_max_retries is not None
                    and failures > worker.backoff_max_retries
                ):
                    log.critical(
                        "Task %s failed %d times in a row; stopping the worker",
                        name,
                        failures,
                    )
                    worker._stop_task = asyncio.ensure_future(worker.stop())
                    return
                delay = min(
                    worker.backoff_initial * 2 ** (failures - 1), worker.backoff_max
                )
                delay *= random.uniform(0.5, 1.0)
                if isinstance(exc, TRANSIENT_ERRORS):
                    # The database is away: one line, not a traceback per try.
                    log.warning(
                        "Task %s failed (%s: %s); restarting it in %.1fs",
                        name,
                        type(exc).__name__,
                        exc,
                        delay,
                    )
                else:
                    log.exception(
                        "Task %s crashed; restarting it in %.1fs", name, delay
                    )
                await asyncio.sleep(delay)

    async def _run_while_leader(
        self, name: str, factory: Callable[[], Awaitable[Any]]
    ) -> None:
        worker = self.worker
        inner = asyncio.ensure_future(factory())
        try:
            while not inner.done():
                await asyncio.wait({inner}, timeout=0.2)
                if not worker.is_leader.is_set() and not inner.done():
                    worker.log.info("Task %s: leadership lost, stopping it", name)
                    inner.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await inner
                    return
            inner.result()
            # Finished by itself while leading: wait until leadership changes.
            while worker.is_leader.is_set():
                await asyncio.sleep(0.2)
        finally:
            if not inner.done():
                inner.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await inner

    @staticmethod
    async def _cancel_and_wait(tasks: list[asyncio.Task[Any]]) -> None:
        # Cancel until done: on Python 3.11 asyncio.wait_for (also inside
        # libraries) can swallow a cancellation that races with its result.
        pending = {t for t in tasks if not t.done()}
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        for task in tasks:
            if not task.cancelled():
                with contextlib.suppress(BaseException):
                    task.exception()

    async def cancel(self, name: str) -> None:
        task = self.tasks.pop(name, None)
        if task is not None:
            await self._cancel_and_wait([task])

    async def cancel_all(
        self, *, except_names: set[str] | frozenset[str] = frozenset()
    ) -> None:
        names = [n for n in self.tasks if n not in except_names]
        await self._cancel_and_wait([self.tasks.pop(name) for name in names])
