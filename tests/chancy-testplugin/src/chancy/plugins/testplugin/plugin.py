from __future__ import annotations

from typing import Any

from chancy.plugin import Plugin


class TestPlugin(Plugin):
    """Records each saved job's id in ``{prefix}testplugin_events``."""

    identifier = "chancy.testplugin"
    distribution = "chancy-testplugin"
    tables = ("testplugin_events",)
    migrations_key = "testplugin"
    migrations_package = "chancy.plugins.testplugin.migrations"

    __test__ = False  # not a pytest test class

    async def on_jobs_updated_in_transaction(
        self, *, worker: Any, jobs: list[Any], cursor: Any
    ) -> None:
        table = f'"{worker.chancy.prefix}testplugin_events"'
        for job in jobs:
            await cursor.execute(
                f"INSERT INTO {table} (job_id, state) VALUES (%s, %s)",
                (job.id, job.state.value),
            )
