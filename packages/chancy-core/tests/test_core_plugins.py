"""The hookspecs, the Plugin bridge, discovery and supervision of plugin loops."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import attrs
import pytest

import chancy
from chancy import Chancy, Job, Queue, QueuedJob, Worker, _plugins
from chancy.errors import PluginDependencyError
from chancy.plugin import Plugin, PluginScope

CALLS: list[str] = []


async def noop() -> None:
    CALLS.append("ran")


class Recorder(Plugin):
    """Implements every per-job hook, one of them synchronously."""

    def __init__(self, tag: str = "r") -> None:
        super().__init__()
        self.tag = tag

    @classmethod
    def get_identifier(cls) -> str:
        return "test.recorder"

    async def on_job_starting(self, *, job: QueuedJob, worker: Worker) -> QueuedJob:
        CALLS.append(f"{self.tag}:starting")
        return attrs.evolve(job, meta={**job.meta, "started_by": self.tag})

    def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: Any = None, result: Any = None
    ) -> QueuedJob:  # type: ignore[override]
        CALLS.append(f"{self.tag}:completed")
        return attrs.evolve(job, meta={**job.meta, "completed_by": self.tag})

    async def on_job_updated(self, *, worker: Worker, job: QueuedJob) -> None:
        CALLS.append(f"{self.tag}:updated:{job.state.value}")


class Second(Plugin):
    @staticmethod
    def get_identifier() -> str:
        return "test.second"

    async def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: Any = None, result: Any = None
    ) -> QueuedJob:
        CALLS.append("second:completed")
        assert job.meta.get("completed_by") == "r"  # chained after Recorder
        return job


class Flaky(Plugin):
    runs = 0
    second_run = asyncio.Event

    def __init__(self) -> None:
        super().__init__()
        self.restarted = asyncio.Event()

    @staticmethod
    def get_identifier() -> str:
        return "test.flaky"

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        type(self).runs += 1
        if type(self).runs == 1:
            raise RuntimeError("first run crashes")
        self.restarted.set()
        await asyncio.sleep(3600)


class LeaderOnly(Plugin):
    def __init__(self) -> None:
        super().__init__()
        self.running = asyncio.Event()
        self.cancelled = asyncio.Event()

    @staticmethod
    def get_identifier() -> str:
        return "test.leader_only"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.LEADER

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        self.running.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


class NeedsLeader(Plugin):
    @staticmethod
    def get_identifier() -> str:
        return "test.needs_leader"

    @staticmethod
    def get_dependencies() -> list[str]:
        return ["chancy.leadership"]


@pytest.fixture(autouse=True)
def _clear() -> None:
    CALLS.clear()
    Flaky.runs = 0


def fn(f: Any) -> str:
    return f"{f.__module__}.{f.__qualname__}"


@pytest.mark.parametrize(
    "chancy",
    [{"plugins": [Recorder(), Second()], "no_default_plugins": True}],
    indirect=True,
)
async def test_job_hooks_are_called_in_plugin_order_and_chained(
    chancy: Chancy, worker: Worker
) -> None:
    await chancy.declare(
        Queue("h", executor=Chancy.Executor.Async, polling_interval=0.1), upsert=True
    )
    ref = await chancy.push(Job(func=fn(noop), queue="h"))
    done = await chancy.wait_for_job(ref, interval=0.02, timeout=5)
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED
    assert done.meta == {"started_by": "r", "completed_by": "r"}
    for _ in range(100):
        if "r:updated:succeeded" in CALLS:
            break
        await asyncio.sleep(0.01)
    assert CALLS == [
        "r:starting",
        "ran",
        "r:completed",
        "second:completed",
        "r:updated:succeeded",
    ]


def test_unimplemented_hooks_are_not_registered(chancy_just_app: Chancy) -> None:
    app = Chancy(chancy_just_app.dsn, plugins=[NeedsLeader()], no_default_plugins=True)
    pm = app.plugin_manager
    assert not pm.has_job_starting
    assert not pm.has_job_completed
    assert not pm.has_job_updated
    assert not pm.has_jobs_updated_in_transaction
    assert Chancy(
        chancy_just_app.dsn, plugins=[Recorder()], no_default_plugins=True
    ).plugin_manager.has_job_completed


def test_plain_hookimpl_module_is_a_plugin(chancy_just_app: Chancy) -> None:
    module = types.ModuleType("my_hooks")

    @chancy.hookimpl
    def chancy_job_completed(
        worker: Any, job: QueuedJob, exc: Any, result: Any
    ) -> QueuedJob:
        return attrs.evolve(job, meta={"plain": True})

    module.chancy_job_completed = chancy_job_completed  # type: ignore[attr-defined]
    app = Chancy(chancy_just_app.dsn, plugins=[module], no_default_plugins=True)  # type: ignore[list-item]
    assert app.plugin_manager.has_job_completed
    assert "my_hooks" in app.plugins


def test_duplicate_identifiers_are_rejected(chancy_just_app: Chancy) -> None:
    with pytest.raises(ValueError, match="given twice"):
        Chancy(chancy_just_app.dsn, plugins=[Recorder(), Recorder()])

    class Impostor(Plugin):
        @staticmethod
        def get_identifier() -> str:
            return "test.recorder"

    with pytest.raises(ValueError, match="share the identifier"):
        Chancy(chancy_just_app.dsn, plugins=[Recorder(), Impostor()])


def test_missing_dependency_names_distribution_and_pip_install(
    chancy_just_app: Chancy,
) -> None:
    app = Chancy(chancy_just_app.dsn, plugins=[NeedsLeader()], no_default_plugins=True)
    with pytest.raises(PluginDependencyError) as info:
        app.check_plugin_dependencies()
    message = str(info.value)
    assert "chancy.leadership" in message and "chancy-leadership" in message
    assert "pip install chancy-leadership" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "chancy", [{"plugins": [Flaky()], "no_default_plugins": True}], indirect=True
)
@pytest.mark.parametrize("worker", [{"backoff_initial": 0.05}], indirect=True)
async def test_crashing_plugin_loop_is_logged_and_restarted(
    chancy: Chancy, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = chancy.plugins["test.flaky"]
    await asyncio.wait_for(plugin.restarted.wait(), 5)  # type: ignore[attr-defined]
    assert Flaky.runs == 2
    records = caplog.get_records("setup") + caplog.get_records("call")
    assert any("plugin:test.flaky crashed" in r.getMessage() for r in records)


@pytest.mark.parametrize(
    "chancy", [{"plugins": [LeaderOnly()], "no_default_plugins": True}], indirect=True
)
async def test_leader_scoped_loop_runs_only_while_leading(
    chancy: Chancy, worker: Worker
) -> None:
    plugin = chancy.plugins["test.leader_only"]
    await asyncio.sleep(0.3)
    assert not plugin.running.is_set()  # type: ignore[attr-defined]
    worker.is_leader.set()
    await asyncio.wait_for(plugin.running.wait(), 2)  # type: ignore[attr-defined]
    worker.is_leader.clear()
    await asyncio.wait_for(plugin.cancelled.wait(), 2)  # type: ignore[attr-defined]


async def test_plugin_helpers_sleep_wake_and_repr() -> None:
    plugin = NeedsLeader()
    assert repr(plugin) == "<NeedsLeader()>"
    waiter = asyncio.ensure_future(plugin.sleep(30))
    await asyncio.sleep(0)
    plugin.wake_up()
    assert await asyncio.wait_for(waiter, 1) is True
    assert Plugin.get_scope() is PluginScope.WORKER
    assert plugin.cleanup is not None


class Forgetful(Plugin):
    """Forgets to call super().__init__(): still a working plugin."""

    def __init__(self) -> None:
        self.loops = 0
        self.done = asyncio.Event()

    @staticmethod
    def get_identifier() -> str:
        return "test.forgetful"

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        while await self.sleep(0.01):
            self.loops += 1
            if self.loops == 3:
                self.done.set()


@pytest.mark.parametrize(
    "chancy", [{"plugins": [Forgetful()], "no_default_plugins": True}], indirect=True
)
async def test_a_plugin_that_forgets_super_init_still_runs(
    chancy: Chancy, worker: Worker
) -> None:
    plugin = chancy.plugins["test.forgetful"]
    assert isinstance(plugin, Forgetful)
    await asyncio.wait_for(plugin.done.wait(), 5)
    plugin.wake_up()
    assert plugin.wakeup_signal is plugin.wakeup_signal


def test_installed_plugins_lists_entry_point_distributions() -> None:
    rows = _plugins.installed_plugins()
    assert all({"name", "distribution", "version", "plugins"} <= set(r) for r in rows)


def test_every_hookspec_is_documented() -> None:
    from chancy import hookspecs

    specs = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("chancy_")]
    assert specs
    for spec in specs:
        doc = spec.__doc__ or ""
        assert "Called" in doc, spec.__name__
        assert "versionadded" in doc, spec.__name__
