"""The ``{prefix}web_secrets`` table: secrets shared by every worker's web API.

One row per secret (``name`` is the primary key). The API stores the key that
signs session cookies and bearer tokens under ``secret_key`` the first time a
worker needs it (``INSERT … ON CONFLICT DO NOTHING``), so every worker of the
cluster, and the same worker after a restart, signs with the same key.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncCursor, sql

from chancy.migrate import Migration, Migrator


class CreateWebSecrets(Migration):
    async def up(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        await cursor.execute(
            sql.SQL(
                """
                CREATE TABLE {secrets} (
                    name TEXT PRIMARY KEY,
                    value TEXT NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
                )
                """
            ).format(secrets=migrator.table("web_secrets"))
        )

    async def down(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        await cursor.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(migrator.table("web_secrets"))
        )
