"""The ``{prefix}cron`` table: one row per schedule, keyed by the job's unique key."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncCursor, sql

from chancy.migrate import Migration, Migrator


class CreateSchedules(Migration):
    async def up(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        await cursor.execute(
            sql.SQL(
                """
                CREATE TABLE {cron} (
                    unique_key TEXT PRIMARY KEY,
                    job JSONB NOT NULL,
                    cron TEXT NOT NULL,
                    timezone TEXT NOT NULL DEFAULT 'UTC',
                    last_run TIMESTAMPTZ,
                    next_run TIMESTAMPTZ NOT NULL
                )
                """
            ).format(cron=migrator.table("cron"))
        )
        await cursor.execute(
            sql.SQL("CREATE INDEX {index} ON {cron} (next_run)").format(
                index=migrator.table("cron_next_run_idx"), cron=migrator.table("cron")
            )
        )

    async def down(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        await cursor.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(migrator.table("cron"))
        )
