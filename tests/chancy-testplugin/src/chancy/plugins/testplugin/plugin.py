from __future__ import annotations

from typing import Any

from chancy.plugin import Plugin


class TestPlugin(Plugin):
    """Records each saved job's id in ``{prefix}testplugin_events``."""

    __test__ = False  # not a pytest test class

    @staticmethod
    def get_identifier() -> str:
        return "chancy.testplugin"

    @classmethod
    def get_distribution(cls) -> str:
        return "chancy-testplugin"

    def migrate_key(self) -> str:
        return "testplugin"

    def migrate_package(self) -> str:
        return "chancy.plugins.testplugin.migrations"

    def get_tables(self) -> list[str]:
        return ["testplugin_events"]

    async def on_jobs_updated_in_transaction(
        self, *, worker: Any, jobs: list[Any], cursor: Any
    ) -> None:
        table = f'"{worker.chancy.prefix}testplugin_events"'
        for job in jobs:
            await cursor.execute(
                f"INSERT INTO {table} (job_id, state) VALUES (%s, %s)",
                (job.id, job.state.value),
            )
