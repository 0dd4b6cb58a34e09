"""The :class:`Plugin` base class: the friendly face of :mod:`chancy.hookspecs`.

Subclass it, override what you need, and pass an instance to
``Chancy(plugins=[...])`` (or register the class through the ``chancy`` entry
point). Every overridden method is bridged onto the matching hook; methods
left alone cost nothing::

    class RunningJobsCounter(Plugin):
        @staticmethod
        def get_identifier() -> str:
            return "myapp.running_jobs_counter"

        async def run(self, worker, chancy):
            while await self.sleep(60):
                await self.wait_for_leader(worker)
                ...
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from psycopg import AsyncCursor

    from chancy.app import Chancy
    from chancy.job import QueuedJob
    from chancy.migrate import Migrator
    from chancy.worker import Worker

__all__ = ["Plugin", "PluginScope", "WorkerTask"]


class PluginScope(enum.Enum):
    """Where a plugin's :meth:`Plugin.run` loop runs."""

    #: In every worker.
    WORKER = "worker"
    #: Only in the worker that currently holds the leader lease; cancelled when
    #: it loses it (needs a leadership plugin).
    LEADER = "leader"


@attrs.frozen
class WorkerTask:
    """A long-running coroutine a worker supervises (see ``chancy_worker_tasks``)."""

    #: Task name, shown in logs (``plugin:chancy.pruner``).
    name: str
    #: Called (again after each crash) to produce the coroutine to run.
    factory: Callable[[], Awaitable[Any]]
    scope: PluginScope = PluginScope.WORKER


class Plugin:
    """Base class of Chancy plugins.

    Subclasses should call ``super().__init__()``; one that forgets still
    works (the :attr:`wakeup_signal` is created on first use).
    """

    def __init__(self) -> None:
        self.wakeup_signal = asyncio.Event()

    @property
    def wakeup_signal(self) -> asyncio.Event:
        """Set by :meth:`wake_up` to end the current :meth:`sleep` early."""
        event: asyncio.Event | None = self.__dict__.get("_wakeup_signal")
        if event is None:
            event = self.__dict__["_wakeup_signal"] = asyncio.Event()
        return event

    @wakeup_signal.setter
    def wakeup_signal(self, event: asyncio.Event) -> None:
        self.__dict__["_wakeup_signal"] = event

    # -- identity -----------------------------------------------------------

    @classmethod
    def get_scope(cls) -> PluginScope:
        """Where :meth:`run` runs; ``WORKER`` (every worker) by default."""
        return PluginScope.WORKER

    @classmethod
    def get_identifier(cls) -> str:
        """The plugin's unique identifier; a plugin may reuse a built-in's to replace it.

        Override it (as a ``staticmethod`` returning a constant); the default is
        the class's import path.
        """
        return f"{cls.__module__}.{cls.__qualname__}"

    @staticmethod
    def get_dependencies() -> list[str]:
        """Identifiers of the plugins this one needs (checked when a worker starts)."""
        return []

    @classmethod
    def is_default(cls) -> bool:
        """Whether an app enables this plugin, with default settings, when installed."""
        return False

    @classmethod
    def get_distribution(cls) -> str | None:
        """The distribution providing this plugin (named in dependency errors)."""
        return None

    def get_tables(self) -> list[str]:
        """Un-prefixed names of the tables the plugin owns."""
        return []

    def api_plugin(self) -> str | None:
        """Import path of the web-API extension contributing routes, if any."""
        return None

    # -- run loop -----------------------------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """The plugin's long-running loop, supervised by each worker.

        Restarted with back-off if it raises, cancelled on shutdown.
        """

    async def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until :meth:`wake_up`; always returns ``True``."""
        from chancy.utils import wait_event

        await wait_event(self.wakeup_signal, seconds)
        self.wakeup_signal.clear()
        return True

    def wake_up(self) -> None:
        """Interrupt the current :meth:`sleep`."""
        self.wakeup_signal.set()

    @staticmethod
    async def wait_for_leader(worker: Worker) -> None:
        """Wait until ``worker`` holds the leader lease."""
        await worker.is_leader.wait()

    # -- migrations ---------------------------------------------------------

    def migrate_package(self) -> str | None:
        """Dotted name of the package holding this plugin's migrations."""
        return None

    def migrate_key(self) -> str | None:
        """This plugin's key (version line) in the schema-version table."""
        return None

    def migrator(self, chancy: Chancy) -> Migrator | None:
        from chancy.migrate import Migrator

        key, package = self.migrate_key(), self.migrate_package()
        if key is None or package is None:
            return None
        return Migrator(key, package, prefix=chancy.prefix)

    async def migrate(self, chancy: Chancy, *, to_version: int | None = None) -> None:
        migrator = self.migrator(chancy)
        if migrator is None:
            return
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            await migrator.migrate(conn, to_version=to_version)

    # -- maintenance --------------------------------------------------------

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Trim the plugin's tables; called by the pruner. Return rows removed."""
        return None

    # -- job lifecycle --------------------------------------------------------

    async def on_job_starting(self, *, job: QueuedJob, worker: Worker) -> QueuedJob:
        """Return the job (or a replacement) about to run. Not called unless overridden."""
        raise NotImplementedError

    async def on_job_completed(
        self,
        *,
        worker: Worker,
        job: QueuedJob,
        exc: BaseException | None = None,
        result: Any = None,
    ) -> QueuedJob:
        """Return the job (or a replacement) about to be saved. Not called unless overridden."""
        raise NotImplementedError

    async def on_job_updated(self, *, worker: Worker, job: QueuedJob) -> None:
        """A job's update was committed. Not called unless overridden."""

    async def on_jobs_updated_in_transaction(
        self, *, worker: Worker, jobs: list[QueuedJob], cursor: AsyncCursor[Any]
    ) -> None:
        """A batch of updates was written in the still-open transaction."""

    async def on_worker_started(self, *, worker: Worker) -> None:
        """The worker started."""

    async def on_worker_stopped(self, *, worker: Worker) -> None:
        """The worker stopped and flushed its updates."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}()>"


def overrides(plugin: Plugin, name: str) -> bool:
    """Whether ``plugin``'s class overrides :class:`Plugin`'s method ``name``."""
    return getattr(type(plugin), name) is not getattr(Plugin, name)
