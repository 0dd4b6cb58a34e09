"""Make the workers and leader tables crash-safe (WAL-logged).

They were ``UNLOGGED``: PostgreSQL empties unlogged tables after a crash
(``pg_ctl restart -m immediate``, an OOM kill, a power cut), so live,
heartbeating workers vanished from the registry, a second leader could be
elected while the first still led, and Recovery's first pass after the
restart took every running job for lost. Logged tables keep both across a
crash; the heartbeat costs one small WAL record per worker and interval.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncCursor, sql

from chancy.migrate import Migration, Migrator


class CrashSafeRegistry(Migration):
    async def up(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        for name in ("workers", "leader"):
            await cursor.execute(
                sql.SQL("ALTER TABLE {} SET LOGGED").format(migrator.table(name))
            )

    async def down(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        for name in ("workers", "leader"):
            await cursor.execute(
                sql.SQL("ALTER TABLE {} SET UNLOGGED").format(migrator.table(name))
            )
