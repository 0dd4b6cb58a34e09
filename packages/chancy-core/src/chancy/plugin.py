"""The :class:`Plugin` base class: the friendly face of :mod:`chancy.hookspecs`.

Subclass it, declare the plugin's facts as class attributes, override the
methods you need, and pass an instance to ``Chancy(plugins=[...])`` (or return
the class from a ``chancy_register_plugins`` hook in a module registered
through the ``chancy`` entry point)::

    class RunningJobsCounter(Plugin):
        identifier = "myapp.running_jobs_counter"
        scope = PluginScope.LEADER  # run() only on the elected leader

        async def run(self, worker, chancy):
            while await self.sleep(60):
                ...

Every member is sugar over a hook of :mod:`chancy.hookspecs`; only the
methods a subclass overrides become hook implementations, so the others cost
nothing:

* ``identifier``: the key in ``Chancy.plugins``; a plugin reusing a
  built-in's identifier replaces it;
* ``scope``: where :meth:`~Plugin.run` runs (``WORKER`` or ``LEADER``);
* ``dependencies``: identifiers that must be enabled too, and
  ``dependency_distributions``: where to get them (named in the error);
* ``default_enabled``: enabled with default settings when installed, and
  ``default_order``: its position among the default plugins;
* ``distribution``: the distribution providing the plugin;
* ``tables``: un-prefixed names of the tables it owns;
* ``migrations_key`` and ``migrations_package``: its migration line
  (``chancy_migrators``);
* :meth:`~Plugin.run`: ``chancy_worker_tasks``;
* :meth:`~Plugin.on_worker_started` / :meth:`~Plugin.on_worker_stopped`:
  ``chancy_worker_started`` / ``chancy_worker_stopped``;
* :meth:`~Plugin.on_jobs_pushing` / :meth:`~Plugin.on_jobs_pushed`:
  ``chancy_jobs_pushing`` / ``chancy_jobs_pushed``;
* :meth:`~Plugin.on_job_starting`: ``chancy_job_starting``;
* :meth:`~Plugin.on_job_completed`: ``chancy_job_completed``;
* :meth:`~Plugin.on_jobs_updated_in_transaction`:
  ``chancy_jobs_updated_in_transaction``;
* :meth:`~Plugin.on_job_updated`: ``chancy_job_updated``;
* :meth:`~Plugin.cleanup`: ``chancy_cleanup``.

The original Chancy's getters (``get_identifier()``, ``get_scope()``,
``get_dependencies()``, ``migrate_key()``, ``migrate_package()``,
``get_tables()``, ``api_plugin()``) keep working: the core reads every fact
through them, and a subclass may override them instead of setting the
attributes.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

if TYPE_CHECKING:
    from psycopg import AsyncCursor

    from chancy.app import Chancy
    from chancy.job import Job, QueuedJob, Reference
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

    # -- facts (class attributes) -----------------------------------------------

    #: The plugin's unique identifier; ``None`` means its import path. A plugin
    #: may reuse a built-in's identifier to replace it.
    identifier: ClassVar[str | None] = None
    #: Where :meth:`~Plugin.run` runs.
    scope: ClassVar[PluginScope] = PluginScope.WORKER
    #: Identifiers of the plugins this one needs (checked when a worker starts).
    dependencies: ClassVar[tuple[str, ...]] = ()
    #: ``{identifier: distribution}`` for dependencies, named in the error
    #: when one is missing (``pip install <distribution>``).
    dependency_distributions: ClassVar[Mapping[str, str]] = {}
    #: Whether an app enables this plugin, with default settings, when it is
    #: installed (unless ``no_default_plugins=True``).
    default_enabled: ClassVar[bool] = False
    #: Default plugins are enabled (and their hooks called) in this order.
    default_order: ClassVar[int] = 1000
    #: The distribution providing this plugin.
    distribution: ClassVar[str | None] = None
    #: Un-prefixed names of the tables the plugin owns.
    tables: ClassVar[tuple[str, ...]] = ()
    #: The plugin's key (version line) in the schema-version table.
    migrations_key: ClassVar[str | None] = None
    #: Dotted name of the package holding its migrations.
    migrations_package: ClassVar[str | None] = None

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

    # -- the original's getters, reading the facts -------------------------------

    @classmethod
    def get_scope(cls) -> PluginScope:
        """Where :meth:`~Plugin.run` runs: :attr:`scope`."""
        return cls.scope

    @classmethod
    def get_identifier(cls) -> str:
        """:attr:`identifier`, or the class's import path when it is not set."""
        return cls.identifier or f"{cls.__module__}.{cls.__qualname__}"

    @classmethod
    def get_dependencies(cls) -> list[str]:
        """:attr:`dependencies`, as a list."""
        return list(cls.dependencies)

    @classmethod
    def is_default(cls) -> bool:
        """:attr:`default_enabled`."""
        return cls.default_enabled

    @classmethod
    def get_distribution(cls) -> str | None:
        """:attr:`distribution`."""
        return cls.distribution

    def get_tables(self) -> list[str]:
        """:attr:`tables`, as a list."""
        return list(self.tables)

    def api_plugin(self) -> str | None:
        """The original's way to add web routes: the import path of an
        ``ApiPlugin`` subclass. chancy-web still honours it; new plugins
        contribute routes through the ``chancy_web_routes`` hook."""
        return None

    # -- run loop -----------------------------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """The plugin's long-running loop, supervised by each worker
        (``chancy_worker_tasks``).

        Restarted with back-off if it raises, cancelled on shutdown; with
        ``scope = PluginScope.LEADER`` it runs only while the worker leads.
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
        """Wait until ``worker`` holds the leader lease (not needed in a
        ``LEADER``-scoped :meth:`~Plugin.run`, which only runs while it does)."""
        await worker.is_leader.wait()

    # -- migrations ---------------------------------------------------------

    def migrate_package(self) -> str | None:
        """:attr:`migrations_package`."""
        return self.migrations_package

    def migrate_key(self) -> str | None:
        """:attr:`migrations_key`."""
        return self.migrations_key

    def migrator(self, chancy: Chancy) -> Migrator | None:
        """The plugin's migrator (``chancy_migrators``), from
        :meth:`migrate_key` and :meth:`migrate_package`."""
        from chancy.migrate import Migrator

        key, package = self.migrate_key(), self.migrate_package()
        if key is None or package is None:
            return None
        return Migrator(key, package, prefix=chancy.prefix)

    async def migrate(self, chancy: Chancy, *, to_version: int | None = None) -> None:
        """Migrate this plugin's line alone (``Chancy.migrate`` does every line)."""
        migrator = self.migrator(chancy)
        if migrator is None:
            return
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            await migrator.migrate(conn, to_version=to_version)

    # -- maintenance --------------------------------------------------------

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Trim the plugin's tables; called by the pruner (``chancy_cleanup``).
        Return the rows removed, or ``None``."""
        return None

    # -- pushing --------------------------------------------------------------

    def on_jobs_pushing(
        self, *, chancy: Chancy, jobs: Sequence[Job]
    ) -> Sequence[Job] | None:
        """Return replacements for the jobs a push call is about to store, or
        ``None`` (``chancy_jobs_pushing``). Synchronous: sync pushes call it too.

        Called only when overridden, once per push call, in the caller's thread.
        """
        return None

    def on_jobs_pushed(
        self,
        *,
        chancy: Chancy,
        jobs: Sequence[Job],
        references: Sequence[Reference] | None,
        error: BaseException | None,
    ) -> None:
        """A push call wrote its jobs or failed (``chancy_jobs_pushed``);
        synchronous. Called only when overridden, once for every call of
        :meth:`on_jobs_pushing`."""

    # -- job lifecycle --------------------------------------------------------

    async def on_job_starting(self, *, job: QueuedJob, worker: Worker) -> QueuedJob:
        """Return the job (or a replacement) about to run (``chancy_job_starting``).

        Called only when overridden, for every job, in plugin order: each
        plugin sees the job the previous one returned.
        """
        raise NotImplementedError

    async def on_job_completed(
        self,
        *,
        worker: Worker,
        job: QueuedJob,
        exc: BaseException | None = None,
        result: Any = None,
    ) -> QueuedJob:
        """Return the job (or a replacement) about to be saved
        (``chancy_job_completed``).

        Called only when overridden, for every finished run, in plugin order:
        each plugin sees the job the previous one returned.
        """
        raise NotImplementedError

    async def on_job_updated(self, *, worker: Worker, job: QueuedJob) -> None:
        """A job's update was committed (``chancy_job_updated``)."""

    async def on_jobs_updated_in_transaction(
        self, *, worker: Worker, jobs: list[QueuedJob], cursor: AsyncCursor[Any]
    ) -> None:
        """A batch of updates was written in the still-open transaction
        (``chancy_jobs_updated_in_transaction``)."""

    async def on_worker_started(self, *, worker: Worker) -> None:
        """The worker started (``chancy_worker_started``)."""

    async def on_worker_stopped(self, *, worker: Worker) -> None:
        """The worker stopped and flushed its updates (``chancy_worker_stopped``)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}()>"


def overrides(plugin: Plugin, name: str) -> bool:
    """Whether ``plugin``'s class overrides :class:`Plugin`'s method ``name``."""
    return getattr(type(plugin), name) is not getattr(Plugin, name)
