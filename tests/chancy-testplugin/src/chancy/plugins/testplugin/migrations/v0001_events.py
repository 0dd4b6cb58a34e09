from __future__ import annotations

from typing import Any

from psycopg import sql

from chancy.migrate import Migration


class CreateEvents(Migration):
    async def up(self, migrator: Any, cursor: Any) -> None:
        await cursor.execute(
            sql.SQL(
                "CREATE TABLE {} (job_id UUID NOT NULL, state TEXT NOT NULL)"
            ).format(migrator.table("testplugin_events"))
        )

    async def down(self, migrator: Any, cursor: Any) -> None:
        await cursor.execute(
            sql.SQL("DROP TABLE {}").format(migrator.table("testplugin_events"))
        )
