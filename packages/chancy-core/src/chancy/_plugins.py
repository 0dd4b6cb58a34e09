"""The per-app plugin manager: discovery, the Plugin bridge, typed hook calls.

The rest of the core never touches ``pm.hook.*`` directly.
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
    from chancy.job import QueuedJob
    from chancy.migrate import Migrator
    from chancy.worker import Worker

hookimpl = pluggy.HookimplMarker("chancy")

ENTRY_POINT_GROUP = "chancy"

#: Default plugins are enabled in this order; unknown identifiers follow, sorted.
DEFAULT_ORDER = (
    "chancy.leadership",
    "chancy.pruner",
    "chancy.recovery",
    "chancy.metrics",
    "chancy.workflow_plugin",
    "chancy.cron",
)

#: Which distribution provides a built-in identifier (for dependency errors).
KNOWN_DISTRIBUTIONS = {
    "chancy.leadership": "chancy-leadership",
    "chancy.pruner": "chancy-pruner",
    "chancy.recovery": "chancy-recovery",
    "chancy.cron": "chancy-cron",
    "chancy.workflow_plugin": "chancy-workflow",
    "chancy.metrics": "chancy-metrics",
    "chancy.retry_plugin": "chancy-retry",
    "chancy.reprioritize": "chancy-reprioritize",
    "chancy.api": "chancy-web",
    "chancy.web": "chancy-web",
}

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
    if inspect.isawaitable(value):
        return await value
    return value


class PluginBridge:
    """Exposes an overriding :class:`Plugin`'s methods as hookimpls.

    Only methods the subclass overrides become hook implementations, so the
    core calls nothing for hooks a plugin leaves alone.
    """

    def __init__(self, plugin: Plugin, chancy: Chancy) -> None:
        self.plugin = plugin
        p = plugin

        def add(name: str, fn: Callable[..., Any]) -> None:
            setattr(self, name, hookimpl(fn))

        add("chancy_migrators", lambda chancy: p.migrator(chancy))
        add("chancy_cleanup", lambda chancy: p.cleanup(chancy))

        if overrides(p, "run"):
            scope = p.get_scope()

            def chancy_worker_tasks(worker: Worker, chancy: Chancy) -> list[WorkerTask]:
                return [
                    WorkerTask(
                        name=f"plugin:{p.get_identifier()}",
                        factory=lambda: p.run(worker, chancy),
                        scope=scope
                        if isinstance(scope, PluginScope)
                        else PluginScope.WORKER,
                    )
                ]

            add("chancy_worker_tasks", chancy_worker_tasks)
        if overrides(p, "on_job_starting"):
            add(
                "chancy_job_starting",
                lambda worker, job: p.on_job_starting(job=job, worker=worker),
            )
        if overrides(p, "on_job_completed"):
            add(
                "chancy_job_completed",
                lambda worker, job, exc, result: p.on_job_completed(
                    worker=worker, job=job, exc=exc, result=result
                ),
            )
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


class PluginManager:
    """One per :class:`~chancy.Chancy` app: its pluggy manager and typed hook calls."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("chancy")
        self.pm.add_hookspecs(hookspecs)
        self._chains: dict[str, list[Callable[..., Any]]] = {}
        self.discovered: list[type[Plugin]] = []

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
        """Register plugin objects so that hooks are called in the given order."""
        # pluggy calls the most recently registered implementation first.
        for plugin in reversed(list(plugins)):
            if isinstance(plugin, Plugin):
                self.pm.register(
                    PluginBridge(plugin, chancy), name=f"bridge:{id(plugin)}"
                )
            else:
                self.pm.register(plugin)
        self.pm.check_pending()
        self._chains.clear()

    def _chain(self, hook_name: str) -> list[Callable[..., Any]]:
        impls = self._chains.get(hook_name)
        if impls is None:
            hook = getattr(self.pm.hook, hook_name)
            impls = [impl.function for impl in reversed(hook.get_hookimpls())]
            self._chains[hook_name] = impls
        return impls

    # -- typed hook calls ------------------------------------------------------

    def migrators(self, chancy: Chancy) -> list[Migrator]:
        out: list[Migrator] = []
        for impl in self._chain("chancy_migrators"):
            out.extend(m for m in _as_list(impl(chancy=chancy)) if m is not None)
        return out

    def worker_tasks(self, worker: Worker, chancy: Chancy) -> list[WorkerTask]:
        out: list[WorkerTask] = []
        for impl in self._chain("chancy_worker_tasks"):
            out.extend(_as_list(impl(worker=worker, chancy=chancy)))
        return out

    @property
    def has_job_starting(self) -> bool:
        return bool(self._chain("chancy_job_starting"))

    @property
    def has_job_completed(self) -> bool:
        return bool(self._chain("chancy_job_completed"))

    @property
    def has_job_updated(self) -> bool:
        return bool(self._chain("chancy_job_updated"))

    @property
    def has_jobs_updated_in_transaction(self) -> bool:
        return bool(self._chain("chancy_jobs_updated_in_transaction"))

    async def job_starting(self, worker: Worker, job: QueuedJob) -> QueuedJob:
        for impl in self._chain("chancy_job_starting"):
            try:
                new = await await_me_maybe(impl(worker=worker, job=job))
            except NotImplementedError:
                continue
            if new is not None:
                job = new
        return job

    async def job_completed(
        self, worker: Worker, job: QueuedJob, exc: BaseException | None, result: Any
    ) -> QueuedJob:
        for impl in self._chain("chancy_job_completed"):
            try:
                new = await await_me_maybe(
                    impl(worker=worker, job=job, exc=exc, result=result)
                )
            except NotImplementedError:
                continue
            if new is not None:
                job = new
        return job

    async def jobs_updated_in_transaction(
        self, worker: Worker, jobs: list[QueuedJob], cursor: AsyncCursor[Any]
    ) -> None:
        for impl in self._chain("chancy_jobs_updated_in_transaction"):
            await await_me_maybe(impl(worker=worker, jobs=jobs, cursor=cursor))

    async def job_updated(self, worker: Worker, job: QueuedJob) -> None:
        for impl in self._chain("chancy_job_updated"):
            await await_me_maybe(impl(worker=worker, job=job))

    async def worker_started(self, worker: Worker) -> None:
        for impl in self._chain("chancy_worker_started"):
            await await_me_maybe(impl(worker=worker))

    async def worker_stopped(self, worker: Worker) -> None:
        for impl in self._chain("chancy_worker_stopped"):
            await await_me_maybe(impl(worker=worker))

    async def cleanup(self, chancy: Chancy) -> list[tuple[str, int | None]]:
        """Call every ``chancy_cleanup``; return (plugin name, rows removed) pairs."""
        out: list[tuple[str, int | None]] = []
        hook = self.pm.hook.chancy_cleanup
        for impl in reversed(hook.get_hookimpls()):
            plugin = impl.plugin
            name = (
                plugin.plugin.get_identifier()
                if isinstance(plugin, PluginBridge)
                else impl.plugin_name
            )
            try:
                out.append((name, await await_me_maybe(impl.function(chancy=chancy))))
            except Exception:
                chancy.log.exception("The clean-up of plugin %s failed", name)
                out.append((name, None))
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
        for impl in self._chain("chancy_web_routes"):
            out.extend(_as_list(impl(chancy=chancy)))
        return out


def plugin_distribution(identifier: str, cls: type[Plugin] | None = None) -> str | None:
    if cls is not None and cls.get_distribution():
        return cls.get_distribution()
    return KNOWN_DISTRIBUTIONS.get(identifier)


def call_sync_or_async(
    fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Awaitable[Any]:
    return await_me_maybe(fn(*args, **kwargs))
