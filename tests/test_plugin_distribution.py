"""A third-party plugin distribution: discovered through its entry point, it
owns a migration line and sees job updates inside the saving transaction."""

from __future__ import annotations

import pytest
from chancy.plugins.testplugin import TestPlugin

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.errors import PluginDependencyError
from chancy.plugin import Plugin


async def noop() -> None:
    return None


@pytest.mark.parametrize("chancy", [{"plugins": [TestPlugin()]}], indirect=True)
async def test_plugin_migrations_and_transactional_hook(
    chancy: Chancy, worker: Worker
) -> None:
    async with chancy.pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(
            f'SELECT version_of, version FROM "{chancy.prefix}schema_version" ORDER BY 1'
        )
        versions = dict(await cur.fetchall())
    assert versions["chancy"] == chancy.core_migrator().latest_version
    assert versions["testplugin"] == 2

    await chancy.declare(
        Queue("tp", executor=Chancy.Executor.Async, polling_interval=0.1), upsert=True
    )
    ref = await chancy.push(Job(func=f"{noop.__module__}.noop", queue="tp"))
    done = await chancy.wait_for_job(ref, interval=0.02, timeout=5)
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED
    async with chancy.pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(
            f'SELECT job_id, state FROM "{chancy.prefix}testplugin_events"'
        )
        assert await cur.fetchall() == [(ref.identifier, "succeeded")]


def test_discovered_but_not_default_enabled(chancy_dsn: str) -> None:
    app = Chancy(chancy_dsn)
    assert "chancy.testplugin" not in app.plugins
    assert TestPlugin in app.plugin_manager.discovered


class NeedsTestPlugin(Plugin):
    @staticmethod
    def get_identifier() -> str:
        return "tests.needs_testplugin"

    @staticmethod
    def get_dependencies() -> list[str]:
        return ["chancy.testplugin"]


def test_a_dependency_that_is_installed_but_not_enabled_is_named(
    chancy_dsn: str,
) -> None:
    # chancy-testplugin is installed, but its is_default() is false: the error
    # names its distribution (from TestPlugin.get_distribution()) and says
    # that the plugin may be enabled.
    app = Chancy(chancy_dsn, plugins=[NeedsTestPlugin()])
    with pytest.raises(PluginDependencyError) as error:
        app.check_plugin_dependencies()
    message = str(error.value)
    assert "'chancy.testplugin' from the distribution 'chancy-testplugin'" in message
    assert "(or enable it in Chancy(plugins=[...]))" in message
    Chancy(
        chancy_dsn, plugins=[NeedsTestPlugin(), TestPlugin()]
    ).check_plugin_dependencies()
