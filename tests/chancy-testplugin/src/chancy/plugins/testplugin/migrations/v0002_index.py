from __future__ import annotations

from typing import Any

from psycopg import sql

from chancy.migrate import Migration


class IndexEvents(Migration):
    async def up(self, migrator: Any, cursor: Any) -> None:
        await cursor.execute(
            sql.SQL("CREATE INDEX {} ON {} (job_id)").format(
                migrator.table("testplugin_events_job_id"),
                migrator.table("testplugin_events"),
            )
        )

    async def down(self, migrator: Any, cursor: Any) -> None:
        await cursor.execute(
            sql.SQL("DROP INDEX {}").format(migrator.table("testplugin_events_job_id"))
        )
