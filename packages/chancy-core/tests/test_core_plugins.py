"""The hookspecs, the Plugin bridge, discovery and supervision of plugin loops."""

from __future__ import annotations

import asyncio
import types
import uuid
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


# ---------------------------------------------------------------------------
# Hooks are called the way pluggy promises
# ---------------------------------------------------------------------------


def _tagged(job: QueuedJob, tag: str) -> QueuedJob:
    return attrs.evolve(job, meta={**job.meta, "by": [*job.meta.get("by", []), tag]})


class PartialArgs:
    """A hookimpl that takes only some of the spec's arguments."""

    @chancy.hookimpl
    def chancy_job_completed(self, job: QueuedJob) -> QueuedJob:
        return _tagged(job, "partial")


class Early:
    @chancy.hookimpl(tryfirst=True)
    def chancy_job_starting(self, job: QueuedJob) -> None:
        CALLS.append("early")


class Late:
    @chancy.hookimpl(trylast=True)
    def chancy_job_starting(self, job: QueuedJob) -> None:
        CALLS.append("late")


class Middle:
    @chancy.hookimpl
    def chancy_job_starting(self, job: QueuedJob) -> QueuedJob:
        CALLS.append("middle")
        return _tagged(job, "middle")


class Wrapper:
    """A new-style wrapper around every other implementation."""

    @chancy.hookimpl(wrapper=True)
    def chancy_job_completed(self, job: QueuedJob) -> Any:
        CALLS.append("wrapper:before")
        results = yield
        CALLS.append(f"wrapper:after:{len(results)}")
        return [*results, _tagged(job, "wrapper")]


async def _complete(app: Chancy) -> QueuedJob:
    job = QueuedJob(id=uuid.uuid4(), func="m.f")
    return await app.plugin_manager.job_completed(None, job, None, None)  # type: ignore[arg-type]


async def test_a_hookimpl_may_take_only_some_of_the_arguments(
    chancy_just_app: Chancy,
) -> None:
    app = Chancy(chancy_just_app.dsn, plugins=[PartialArgs()], no_default_plugins=True)
    assert (await _complete(app)).meta == {"by": ["partial"]}


async def test_tryfirst_and_trylast_order_plain_hookimpls(
    chancy_just_app: Chancy,
) -> None:
    app = Chancy(
        chancy_just_app.dsn,
        plugins=[Late(), Middle(), Early()],
        no_default_plugins=True,
    )
    job = QueuedJob(id=uuid.uuid4(), func="m.f")
    started = await app.plugin_manager.job_starting(None, job)  # type: ignore[arg-type]
    assert CALLS == ["early", "middle", "late"]
    assert started.meta == {"by": ["middle"]}


async def test_a_wrapper_sees_and_replaces_the_results(chancy_just_app: Chancy) -> None:
    app = Chancy(
        chancy_just_app.dsn,
        plugins=[PartialArgs(), Wrapper()],
        no_default_plugins=True,
    )
    done = await _complete(app)
    # The wrapper ran around the other implementation and its result is the
    # job saved (the last result), not its generator.
    assert CALLS == ["wrapper:before", "wrapper:after:1"]
    assert isinstance(done, QueuedJob)
    assert done.meta == {"by": ["wrapper"]}


async def test_unregistering_takes_effect_at_once_and_updates_the_flags(
    chancy_just_app: Chancy,
) -> None:
    plain, recorder = PartialArgs(), Recorder()
    app = Chancy(
        chancy_just_app.dsn, plugins=[recorder, plain], no_default_plugins=True
    )
    manager = app.plugin_manager
    assert manager.has_job_completed and manager.has_job_starting
    assert (await _complete(app)).meta == {"by": ["partial"]}
    manager.unregister(plain)
    assert manager.has_job_completed  # Recorder still implements it
    assert (await _complete(app)).meta == {"completed_by": "r"}
    manager.unregister(recorder)
    assert not manager.has_job_completed and not manager.has_job_starting
    assert not manager.has_job_updated
    assert (await _complete(app)).meta == {}
    manager.register_plugins([plain], app)
    assert manager.has_job_completed


class Broken(Plugin):
    identifier = "test.broken"

    async def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: Any = None, result: Any = None
    ) -> QueuedJob:
        raise NotImplementedError("a bug deep inside the plugin")


class CallsSuper(Plugin):
    identifier = "test.calls_super"

    async def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: Any = None, result: Any = None
    ) -> QueuedJob:
        CALLS.append("super")
        return await super().on_job_completed(worker=worker, job=job)


async def test_a_not_implemented_error_from_inside_a_plugin_is_not_swallowed(
    chancy_just_app: Chancy,
) -> None:
    app = Chancy(chancy_just_app.dsn, plugins=[Broken()], no_default_plugins=True)
    with pytest.raises(NotImplementedError, match="deep inside"):
        await _complete(app)
    # The base class's own "not implemented" (a plugin calling super()) is
    # still the original's "skip".
    app = Chancy(
        chancy_just_app.dsn, plugins=[CallsSuper(), Recorder()], no_default_plugins=True
    )
    assert (await _complete(app)).meta == {"completed_by": "r"}
    assert CALLS == ["super", "r:completed"]


def test_plugin_facts_are_class_attributes_and_the_getters_read_them() -> None:
    class Facts(Plugin):
        identifier = "test.facts"
        scope = PluginScope.LEADER
        dependencies = ("chancy.leadership",)
        default_enabled = True
        distribution = "chancy-facts"
        tables = ("facts",)
        migrations_key = "facts"
        migrations_package = "facts.migrations"

    plugin = Facts()
    assert Facts.get_identifier() == "test.facts"
    assert Facts.get_scope() is PluginScope.LEADER
    assert Facts.get_dependencies() == ["chancy.leadership"]
    assert Facts.is_default() and Facts.get_distribution() == "chancy-facts"
    assert plugin.get_tables() == ["facts"]
    assert (plugin.migrate_key(), plugin.migrate_package()) == (
        "facts",
        "facts.migrations",
    )
    # Without an identifier: the class's import path.
    assert Plugin.get_identifier() == "chancy.plugin.Plugin"


def test_core_names_its_events_only_through_chancy_events() -> None:
    # Every event the core sends or emits is declared once, with its payload.
    import re
    from pathlib import Path

    from chancy import events

    src = Path(events.__file__).parent
    for path in src.rglob("*.py"):
        text = path.read_text()
        literals = re.findall(
            r"\b(?:emit|notify|on)\(\s*(?:cursor,\s*)?\"([a-z_]+\.[a-z_.]+)\"", text
        )
        assert literals == [], (path, literals)
    assert all(
        spec.delivery in ("notified", "local") for spec in events.CORE_EVENTS.values()
    )
    assert "queue.pushed" in events.CORE_EVENTS


class PushTracer:
    """Adds a marker to every pushed job's meta and records each push call."""

    def __init__(self) -> None:
        self.pushed: list[tuple[int, list[Any] | None, str | None]] = []
        self.pushing = 0

    @chancy.hookimpl
    def chancy_jobs_pushing(self, jobs: list[Job]) -> list[Job]:
        self.pushing += 1
        return [j.with_meta({**j.meta, "traced": True}) for j in jobs]

    @chancy.hookimpl
    def chancy_jobs_pushed(
        self, jobs: list[Job], references: list[Any] | None, error: Any
    ) -> None:
        self.pushed.append(
            (len(jobs), references, type(error).__name__ if error else None)
        )


async def test_the_push_hooks_see_every_push_call(chancy_dsn: str) -> None:
    tracer = PushTracer()
    app = Chancy(chancy_dsn, plugins=[tracer], no_default_plugins=True)
    async with app:
        await app.migrate()
        try:
            ref = await app.push(Job(func="m.f"))
            refs = [
                r
                async for b in app.push_many([Job(func="m.f")] * 150, batch_size=100)
                for r in b
            ]
            # Refused before anything is written: still reported, so that
            # every chancy_jobs_pushing has its chancy_jobs_pushed.
            with pytest.raises(ValueError):
                await app.push(Job(func="m.f", priority=2**40))
            sync_ref = await asyncio.to_thread(_sync_push, app)
            stored = await app.get_jobs([ref, refs[0], refs[-1], sync_ref])
            assert all(j.meta == {"traced": True} for j in stored)
            assert [(n, refs_ is not None, err) for n, refs_, err in tracer.pushed] == [
                (1, True, None),
                (100, True, None),
                (50, True, None),
                (1, False, "ValueError"),
                (1, True, None),
            ]
            assert tracer.pushed[0][1] == [ref]
            # check_job validates without the hooks (nothing is pushed).
            app.check_job(Job(func="m.f"))
            assert len(tracer.pushed) == 5
            assert tracer.pushing == 5
            # A push_many left after its first batch: the second batch was
            # already prepared (its hooks ran), so it is reported too.
            batches = app.push_many([Job(func="m.f")] * 20, batch_size=10)
            async for _ in batches:
                break
            await batches.aclose()
            assert tracer.pushing == 7
            assert [(n, r is not None) for n, r, _ in tracer.pushed[5:]] == [
                (10, True),
                (10, False),
            ]
        finally:
            await app.migrate(to_version=0)


async def test_a_streamed_push_is_one_push_to_the_hooks(chancy: Chancy) -> None:
    """A push serialised while it is written is still one call to each hook,
    with every job; what the pushing hook changed applies to every chunk."""
    tracer = PushTracer()
    chancy.plugin_manager.register_plugins([tracer], chancy)
    try:
        jobs = [Job(func="m.f", kwargs={"i": i}) for i in range(1_500)]
        refs = await chancy.push_many_ex(None, jobs)
        stored = await chancy.get_jobs([refs[0], refs[-1]])
        assert [j.meta for j in stored] == [{"traced": True}] * 2
        jobs[1_400] = Job(func="m.f", kwargs={"oops": object()})
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            await chancy.push_many_ex(None, jobs)
        assert tracer.pushing == 2
        assert [(n, err) for n, _, err in tracer.pushed] == [
            (1_500, None),
            (1_500, "TypeError"),
        ]
        assert tracer.pushed[0][1] == refs
        assert tracer.pushed[1][1] is None
    finally:
        chancy.plugin_manager.unregister(tracer)


def _sync_push(app: Chancy) -> Any:
    with app:
        return app.sync_push(Job(func="m.f"))


async def test_a_failed_push_is_reported_to_the_pushed_hook(chancy: Chancy) -> None:
    tracer = PushTracer()
    chancy.plugin_manager.register_plugins([tracer], chancy)
    try:
        # A statement the database refuses: the jobs table is gone.
        async with chancy.pool.connection() as conn:
            await conn.execute(f"ALTER TABLE {chancy.sql.jobs} RENAME TO gone")
        with pytest.raises(Exception, match="does not exist"):
            await chancy.push(Job(func="m.f"))
        assert tracer.pushed[-1][1:] == (None, "UndefinedTable")
        async with chancy.pool.connection() as conn:
            await conn.execute(f"ALTER TABLE gone RENAME TO {chancy.sql.jobs}")
    finally:
        chancy.plugin_manager.unregister(tracer)
    assert not chancy.plugin_manager.has_jobs_pushing


class MetaStamp(Plugin):
    """A Plugin subclass using the push methods."""

    identifier = "tests.meta_stamp"

    def __init__(self) -> None:
        super().__init__()
        self.pushed: list[tuple[int, str | None]] = []

    def on_jobs_pushing(self, *, chancy: Chancy, jobs: Any) -> list[Job]:
        return [j.with_meta({**j.meta, "stamped": True}) for j in jobs]

    def on_jobs_pushed(
        self, *, chancy: Chancy, jobs: Any, references: Any, error: Any
    ) -> None:
        self.pushed.append((len(jobs), type(error).__name__ if error else None))


async def test_plugin_push_methods_become_the_push_hooks(chancy_dsn: str) -> None:
    stamp = MetaStamp()
    app = Chancy(chancy_dsn, plugins=[stamp], no_default_plugins=True)
    assert app.plugin_manager.has_jobs_pushing and app.plugin_manager.has_jobs_pushed
    async with app:
        await app.migrate()
        try:
            ref = await app.push(Job(func="m.f"))
            job = await app.get_job(ref)
            assert job is not None and job.meta == {"stamped": True}
            with pytest.raises(ValueError):
                await app.push(Job(func="m.f", priority=2**40))
            assert stamp.pushed == [(1, None), (1, "ValueError")]
        finally:
            await app.migrate(to_version=0)
    # A plugin that overrides neither adds no push hook.
    plain = Chancy(chancy_dsn, plugins=[Plugin()], no_default_plugins=True)
    assert not plain.plugin_manager.has_jobs_pushing


async def test_a_push_of_something_not_a_job_keeps_its_own_error(
    chancy: Chancy,
) -> None:
    errors: list[Any] = []

    @_plugins.hookimpl
    def chancy_jobs_pushed(error: Any) -> None:
        errors.append(error)

    module = types.ModuleType("only_pushed")
    module.chancy_jobs_pushed = chancy_jobs_pushed  # type: ignore[attr-defined]
    chancy.plugin_manager.register_plugins([module], chancy)
    try:
        with pytest.raises(TypeError) as raised:
            await chancy.push_many_ex(None, [object()])  # type: ignore[list-item]
        # No pushing hook ran for it, so none is reported, and the error is
        # the one validation raised (nothing chained from reporting it).
        assert errors == []
        assert raised.value.__context__ is None
    finally:
        chancy.plugin_manager.unregister(module)
