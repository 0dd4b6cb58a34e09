"""The per-app plugin manager: discovery, the Plugin bridge, typed hook calls.

The rest of the core never touches ``pm.hook.*`` directly: it calls the typed
methods of :class:`PluginManager`, which call ``pm.hook.<name>(...)`` and await
whatever the implementations return that is awaitable (as datasette does). So
pluggy's rules hold for plugin authors: an implementation may take only some
of the spec's arguments, ``tryfirst``/``trylast`` order it, ``wrapper=True``
implementations wrap the others, and registering or unregistering at any time
takes effect on the next call.

:class:`~chancy.plugin.Plugin` instances are bridged onto the hooks: one
bridge per plugin for the hooks whose results are collected, and one shared
chain for the per-job hooks that return a replacement job
(``chancy_job_starting``, ``chancy_job_completed``), which calls the plugins'
methods in ``Chancy.plugins`` order, each seeing the job the previous one
returned, as in the original Chancy. Only overridden methods are bridged.

Per-job hooks are called on the hot path; when nothing implements one, the
core skips the call on a flag (``has_job_completed``…) recomputed whenever a
plugin is registered or unregistered.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import types
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from chancy import hookspecs
from chancy.plugin import Plugin, PluginScope, WorkerTask, overrides

if TYPE_CHECKING:
    from psycopg import AsyncCursor

    from chancy.app import Chancy
    from chancy.job import Job, QueuedJob, Reference
    from chancy.migrate import Migrator
    from chancy.worker import Worker

hookimpl = pluggy.HookimplMarker("chancy")

ENTRY_POINT_GROUP = "chancy"

_entry_point_cache: list[tuple[str, str, str, types.ModuleType]] | None = None


def _load_entry_points() -> list[tuple[str, str, str, types.ModuleType]]:
    """(entry name, distribution, version, module) for each ``chancy`` entry point.

    Loaded once per process; every app registers the same modules.
    """
    global _entry_point_cache
    if _entry_point_cache is None:
        found = []
        seen = set()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen:
                continue
            seen.add(ep.name)
            module = ep.load()
            dist = ep.dist
            found.append(
                (
                    ep.name,
                    dist.name if dist else "?",
                    dist.version if dist else "?",
                    module,
                )
            )
        _entry_point_cache = found
    return _entry_point_cache


def installed_plugins() -> list[dict[str, Any]]:
    """Every plugin distribution found through entry points, with its classes."""
    rows = []
    for name, dist, version, module in _load_entry_points():
        classes: list[type[Plugin]] = []
        register = getattr(module, "chancy_register_plugins", None)
        if register is not None:
            classes = _as_list(register())
        rows.append(
            {"name": name, "distribution": dist, "version": version, "plugins": classes}
        )
    return rows


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


async def await_me_maybe(value: Any) -> Any:
    """``value``, awaited if it is awaitable (datasette's idiom)."""
    if inspect.isawaitable(value):
        return await value
    return value


def plugin_identifier(plugin: Any) -> str:
    """The key of a plugin object in ``Chancy.plugins``.

    A :class:`Plugin`'s :meth:`~Plugin.get_identifier`; a module's name; for
    any other object holding hookimpls, its class's import path.
    """
    if isinstance(plugin, Plugin):
        return plugin.get_identifier()
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    name = getattr(plugin, "identifier", None)
    if isinstance(name, str):
        return name
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}"


def _raised_by_base(exc: NotImplementedError, name: str) -> bool:
    """Whether ``exc`` is the base :class:`Plugin` method's "not implemented"
    (a subclass calling ``super()``), not an error from deep inside a plugin."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code is getattr(Plugin, name).__code__


class _PluginBridge:
    """One :class:`Plugin`'s overridden methods as hookimpls (all but the
    chained per-job hooks, see :class:`_JobChain`)."""

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        p = plugin
        ident = p.get_identifier()

        def add(name: str, fn: Callable[..., Any]) -> None:
            setattr(self, name, hookimpl(fn))

        add("chancy_migrators", lambda chancy: p.migrator(chancy))

        async def cleanup(chancy: Chancy) -> tuple[str, int | None]:
            return ident, await await_me_maybe(p.cleanup(chancy))

        if overrides(p, "cleanup"):
            add("chancy_cleanup", cleanup)

        if overrides(p, "run"):

            def chancy_worker_tasks(worker: Worker, chancy: Chancy) -> list[WorkerTask]:
                scope = p.get_scope()
                return [
                    WorkerTask(
                        name=f"plugin:{ident}",
                        factory=lambda: p.run(worker, chancy),
                        scope=scope
                        if isinstance(scope, PluginScope)
                        else PluginScope.WORKER,
                    )
                ]

            add("chancy_worker_tasks", chancy_worker_tasks)
        if overrides(p, "on_job_updated"):
            add(
                "chancy_job_updated",
                lambda worker, job: p.on_job_updated(worker=worker, job=job),
            )
        if overrides(p, "on_jobs_updated_in_transaction"):
            add(
                "chancy_jobs_updated_in_transaction",
                lambda worker, jobs, cursor: p.on_jobs_updated_in_transaction(
                    worker=worker, jobs=jobs, cursor=cursor
                ),
            )
        if overrides(p, "on_jobs_pushing"):
            add(
                "chancy_jobs_pushing",
                lambda chancy, jobs: p.on_jobs_pushing(chancy=chancy, jobs=jobs),
            )
        if overrides(p, "on_jobs_pushed"):
            add(
                "chancy_jobs_pushed",
                lambda chancy, jobs, references, error: p.on_jobs_pushed(
                    chancy=chancy, jobs=jobs, references=references, error=error
                ),
            )
        if overrides(p, "on_worker_started"):
            add(
                "chancy_worker_started",
                lambda worker: p.on_worker_started(worker=worker),
            )
        if overrides(p, "on_worker_stopped"):
            add(
                "chancy_worker_stopped",
                lambda worker: p.on_worker_stopped(worker=worker),
            )


class _JobChain:
    """The per-job hooks of every :class:`Plugin`, chained in plugin order.

    Registered with pluggy only while at least one plugin overrides the
    method (an attribute is set per hook), so an unused hook costs nothing.
    """

    def __init__(self) -> None:
        self.starting: list[Plugin] = []
        self.completed: list[Plugin] = []

    def refresh(self, plugins: Iterable[Plugin]) -> None:
        plugins = list(plugins)
        self.starting = [p for p in plugins if overrides(p, "on_job_starting")]
        self.completed = [p for p in plugins if overrides(p, "on_job_completed")]

        async def chancy_job_starting(worker: Worker, job: QueuedJob) -> QueuedJob:
            return await self._starting(worker, job)

        async def chancy_job_completed(
            worker: Worker, job: QueuedJob, exc: BaseException | None, result: Any
        ) -> QueuedJob:
            return await self._completed(worker, job, exc, result)

        for members, fn in (
            (self.starting, chancy_job_starting),
            (self.completed, chancy_job_completed),
        ):
            name = fn.__name__
            if members:
                setattr(self, name, hookimpl(fn))
            elif name in self.__dict__:
                delattr(self, name)

    async def _starting(self, worker: Worker, job: QueuedJob) -> QueuedJob:
        for plugin in self.starting:
            try:
                new = await await_me_maybe(
                    plugin.on_job_starting(job=job, worker=worker)
                )
            except NotImplementedError as exc:
                if _raised_by_base(exc, "on_job_starting"):
                    continue
                raise
            if new is not None:
                job = new
        return job

    async def _completed(
        self, worker: Worker, job: QueuedJob, exc: BaseException | None, result: Any
    ) -> QueuedJob:
        for plugin in self.completed:
            try:
                new = await await_me_maybe(
                    plugin.on_job_completed(
                        worker=worker, job=job, exc=exc, result=result
                    )
                )
            except NotImplementedError as error:
                if _raised_by_base(error, "on_job_completed"):
                    continue
                raise
            if new is not None:
                job = new
        return job


class _ChancyPluginManager(pluggy.PluginManager):
    """pluggy's manager, telling Chancy's facade of every registration change."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        super().__init__("chancy")
        self._on_change = on_change

    def register(self, plugin: object, name: str | None = None) -> str | None:
        result = super().register(plugin, name)
        self._on_change()
        return result

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        result = super().unregister(plugin, name)
        self._on_change()
        return result


class PluginManager:
    """One per :class:`~chancy.Chancy` app: its pluggy manager and typed hook calls."""

    def __init__(self) -> None:
        self.pm = _ChancyPluginManager(self._refresh_flags)
        self.pm.add_hookspecs(hookspecs)
        self.discovered: list[type[Plugin]] = []
        self._plugins: list[Plugin] = []
        self._chain = _JobChain()
        self.has_job_starting = False
        self.has_job_completed = False
        self.has_job_updated = False
        self.has_jobs_updated_in_transaction = False
        self.has_jobs_pushing = False
        self.has_jobs_pushed = False

    def _refresh_flags(self) -> None:
        hook = self.pm.hook
        self.has_job_starting = bool(hook.chancy_job_starting.get_hookimpls())
        self.has_job_completed = bool(hook.chancy_job_completed.get_hookimpls())
        self.has_job_updated = bool(hook.chancy_job_updated.get_hookimpls())
        self.has_jobs_updated_in_transaction = bool(
            hook.chancy_jobs_updated_in_transaction.get_hookimpls()
        )
        self.has_jobs_pushing = bool(hook.chancy_jobs_pushing.get_hookimpls())
        self.has_jobs_pushed = bool(hook.chancy_jobs_pushed.get_hookimpls())

    # -- registration --------------------------------------------------------

    def discover(self) -> list[type[Plugin]]:
        """Register entry-point modules; return the plugin classes they provide.

        ``CHANCY_DISABLE_PLUGIN_AUTOLOAD`` skips entry points altogether;
        ``CHANCY_DISABLE_PLUGINS`` (comma-separated entry names) blocks some.
        """
        blocked = {
            name.strip()
            for name in os.environ.get("CHANCY_DISABLE_PLUGINS", "").split(",")
            if name.strip()
        }
        for name in blocked:
            self.pm.set_blocked(name)
        if os.environ.get("CHANCY_DISABLE_PLUGIN_AUTOLOAD"):
            return []
        classes: list[type[Plugin]] = []
        for name, _dist, _version, module in _load_entry_points():
            if name in blocked or self.pm.is_registered(module):
                continue
            self.pm.register(module, name=name)
        for result in self.pm.hook.chancy_register_plugins():
            for cls in _as_list(result):
                if cls not in classes:
                    classes.append(cls)
        self.pm.check_pending()
        self.discovered = classes
        return classes

    def register_plugins(self, plugins: Iterable[Any], chancy: Chancy) -> None:
        """Register plugin objects so that hooks are called in the given order.

        :class:`Plugin` instances are bridged; anything else (a module or an
        object with ``@chancy.hookimpl`` methods) is registered as it is.
        """
        # pluggy calls the most recently registered implementation first.
        for plugin in reversed(list(plugins)):
            if isinstance(plugin, Plugin):
                self._plugins.insert(0, plugin)
                self.pm.register(_PluginBridge(plugin), name=_bridge_name(plugin))
            elif not self.pm.is_registered(plugin):
                self.pm.register(plugin, name=plugin_identifier(plugin))
        self._update_chain()
        self.pm.check_pending()

    def unregister(self, plugin: Any) -> None:
        """Remove a plugin registered with :meth:`register_plugins`; hooks stop
        calling it at once."""
        if isinstance(plugin, Plugin):
            if plugin in self._plugins:
                self._plugins.remove(plugin)
            if self.pm.get_plugin(_bridge_name(plugin)) is not None:
                self.pm.unregister(name=_bridge_name(plugin))
            self._update_chain()
        elif self.pm.is_registered(plugin):
            self.pm.unregister(plugin)

    def _update_chain(self) -> None:
        """Re-register the per-job chain with the hooks its plugins override."""
        if self.pm.is_registered(self._chain):
            self.pm.unregister(self._chain)
        self._chain.refresh(self._plugins)
        if self._chain.starting or self._chain.completed:
            # Registered last: called first, before plain hookimpls (unless
            # those are marked tryfirst).
            self.pm.register(self._chain, name="chancy:plugins")

    # -- typed hook calls ------------------------------------------------------

    def migrators(self, chancy: Chancy) -> list[Migrator]:
        out: list[Migrator] = []
        for result in self.pm.hook.chancy_migrators(chancy=chancy):
            out.extend(m for m in _as_list(result) if m is not None)
        return out

    def worker_tasks(self, worker: Worker, chancy: Chancy) -> list[WorkerTask]:
        out: list[WorkerTask] = []
        for result in self.pm.hook.chancy_worker_tasks(worker=worker, chancy=chancy):
            out.extend(_as_list(result))
        return out

    def jobs_pushing(self, chancy: Chancy, jobs: list[Job]) -> list[Job]:
        """The jobs to store: each result that is not ``None`` replaces them."""
        for value in self.pm.hook.chancy_jobs_pushing(chancy=chancy, jobs=jobs):
            replaced = list(value)
            if len(replaced) != len(jobs):
                raise ValueError(
                    "a chancy_jobs_pushing implementation returned"
                    f" {len(replaced)} jobs for {len(jobs)}"
                )
            jobs = replaced
        return jobs

    def jobs_pushed(
        self,
        chancy: Chancy,
        jobs: list[Job],
        references: list[Reference] | None,
        error: BaseException | None,
    ) -> None:
        """Tell every implementation; one that fails is logged."""
        try:
            self.pm.hook.chancy_jobs_pushed(
                chancy=chancy, jobs=jobs, references=references, error=error
            )
        except Exception:
            chancy.log.exception("A plugin's chancy_jobs_pushed failed")

    async def job_starting(self, worker: Worker, job: QueuedJob) -> QueuedJob:
        """The job to run: each result that is not ``None`` replaces it (the
        plugins' chain first, then plain hookimpls in pluggy's order)."""
        for value in self.pm.hook.chancy_job_starting(worker=worker, job=job):
            new = await await_me_maybe(value)
            if new is not None:
                job = new
        return job

    async def job_completed(
        self, worker: Worker, job: QueuedJob, exc: BaseException | None, result: Any
    ) -> QueuedJob:
        """The job to save: each result that is not ``None`` replaces it."""
        for value in self.pm.hook.chancy_job_completed(
            worker=worker, job=job, exc=exc, result=result
        ):
            new = await await_me_maybe(value)
            if new is not None:
                job = new
        return job

    async def jobs_updated_in_transaction(
        self, worker: Worker, jobs: list[QueuedJob], cursor: AsyncCursor[Any]
    ) -> None:
        for value in self.pm.hook.chancy_jobs_updated_in_transaction(
            worker=worker, jobs=jobs, cursor=cursor
        ):
            await await_me_maybe(value)

    async def job_updated(self, worker: Worker, job: QueuedJob) -> None:
        """Call every implementation; one that fails is logged, the others still run."""
        for value in self.pm.hook.chancy_job_updated(worker=worker, job=job):
            try:
                await await_me_maybe(value)
            except Exception:
                worker.log.exception(
                    "A plugin's on_job_updated failed for job %s", job.id
                )

    async def worker_started(self, worker: Worker) -> None:
        for value in self.pm.hook.chancy_worker_started(worker=worker):
            await await_me_maybe(value)

    async def worker_stopped(self, worker: Worker) -> None:
        for value in self.pm.hook.chancy_worker_stopped(worker=worker):
            try:
                await await_me_maybe(value)
            except Exception:
                worker.log.exception("A plugin's worker-stopped hook failed")

    async def cleanup(self, chancy: Chancy) -> list[tuple[str, int | None]]:
        """Call every ``chancy_cleanup``; return (plugin name, rows removed) pairs.

        A clean-up that fails is logged and reported as ``None``; the others
        still run.
        """
        out: list[tuple[str, int | None]] = []
        try:
            results = self.pm.hook.chancy_cleanup(chancy=chancy)
        except Exception:
            chancy.log.exception("A plugin's clean-up failed")
            return out
        for value in results:
            try:
                found = await await_me_maybe(value)
            except Exception:
                chancy.log.exception("A plugin's clean-up failed")
                out.append(("?", None))
                continue
            if isinstance(found, tuple) and len(found) == 2:
                out.append(found)  # a Plugin's bridge names its plugin
            else:
                out.append(("hookimpl", found))
        return out

    def cli_commands(self) -> list[Any]:
        """Commands from every ``chancy_cli_commands``; a failing plugin is skipped with a warning."""
        out: list[Any] = []
        for impl in reversed(self.pm.hook.chancy_cli_commands.get_hookimpls()):
            try:
                out.extend(_as_list(impl.function()))
            except Exception as exc:
                import warnings

                warnings.warn(
                    f"the plugin {impl.plugin_name!r} failed to add CLI commands: {exc!r}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return out

    def web_routes(self, chancy: Chancy) -> list[Any]:
        out: list[Any] = []
        for result in self.pm.hook.chancy_web_routes(chancy=chancy):
            out.extend(_as_list(result))
        return out


def _bridge_name(plugin: Plugin) -> str:
    return f"plugin:{plugin.get_identifier()}:{id(plugin)}"


def plugin_distribution(identifier: str, cls: type[Plugin] | None = None) -> str | None:
    """The distribution providing the plugin ``identifier``, when known: the
    class's own :attr:`~Plugin.distribution`, else that of an installed class
    with that identifier."""
    if cls is not None and cls.get_distribution():
        return cls.get_distribution()
    for row in installed_plugins():
        for found in row["plugins"]:
            if found.get_identifier() == identifier:
                return found.get_distribution() or str(row["distribution"])
    return None


def call_sync_or_async(
    fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Awaitable[Any]:
    return await_me_maybe(fn(*args, **kwargs))
