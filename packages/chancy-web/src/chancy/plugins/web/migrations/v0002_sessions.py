"""The ``{prefix}web_sessions`` and ``{prefix}web_login_attempts`` tables.

They hold the state every web server of the cluster must share, so that it
holds whichever worker answers:

* ``web_sessions``: one row per login (its session cookie and its bearer
  token), keyed by the SHA-256 of the random session id (the id itself is
  only in the signed cookie and token). Logging out sets ``revoked_at``; a
  login unused for the idle timeout, or older than its maximum age, is no
  longer accepted. Rows are also written for revoked stateless tokens
  (``TokenAuthBackend``), keyed by the SHA-256 of the token. Rows past
  ``expires_at`` are deleted.
* ``web_login_attempts``: login attempts per user and per client address in
  a fixed window, for throttling.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncCursor, sql

from chancy.migrate import Migration, Migrator


class CreateWebSessions(Migration):
    async def up(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        await cursor.execute(
            sql.SQL(
                """
                CREATE TABLE {sessions} (
                    id TEXT PRIMARY KEY,
                    username TEXT NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL,
                    last_used_at TIMESTAMPTZ NOT NULL,
                    expires_at TIMESTAMPTZ NOT NULL,
                    revoked_at TIMESTAMPTZ
                )
                """
            ).format(sessions=migrator.table("web_sessions"))
        )
        await cursor.execute(
            sql.SQL("CREATE INDEX {index} ON {sessions} (expires_at)").format(
                index=migrator.table("web_sessions_expires_at"),
                sessions=migrator.table("web_sessions"),
            )
        )
        await cursor.execute(
            sql.SQL(
                """
                CREATE TABLE {attempts} (
                    key TEXT PRIMARY KEY,
                    window_start TIMESTAMPTZ NOT NULL,
                    attempts INTEGER NOT NULL
                )
                """
            ).format(attempts=migrator.table("web_login_attempts"))
        )

    async def down(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        for table in ("web_login_attempts", "web_sessions"):
            await cursor.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(migrator.table(table))
            )
