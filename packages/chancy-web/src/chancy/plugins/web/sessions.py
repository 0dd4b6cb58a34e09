"""Server-side state of the web API: logins and login attempts.

Session cookies and bearer tokens are signed, so they cannot be forged; but a
signature alone cannot be taken back. Every login therefore also gets a row
(see :mod:`chancy.plugins.web.migrations.v0002_sessions`): its cookie and its
token name a random session id, and are accepted only while that row says the
login is neither revoked (logged out), idle for longer than the idle timeout,
nor older than its maximum age. Each use moves the idle deadline (sliding
expiry). Login attempts are counted per user and per client address in the
same database, so throttling holds across every web server of the cluster.

When the ``web`` migrations were not applied, the same rules are kept in the
memory of the process (with a warning): correct for one process, not shared.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from psycopg import sql

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = ["DatabaseStore", "MemoryStore", "SessionRow", "Store", "digest"]

#: Most attempts a counter records (the window resets it anyway).
_ATTEMPTS_CAP: Final = 1_000_000


def digest(secret: str) -> str:
    """The key a session id or a revoked token is stored under (SHA-256, hex),
    so the table never holds a usable credential."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class SessionRow(NamedTuple):
    username: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class Store(abc.ABC):
    """Where logins and login attempts are kept."""

    @abc.abstractmethod
    async def create(
        self, key: str, username: str, *, now: datetime, expires_at: datetime
    ) -> None:
        """Record a new login."""

    @abc.abstractmethod
    async def get(self, key: str) -> SessionRow | None:
        """The login stored under ``key``."""

    @abc.abstractmethod
    async def touch(self, key: str, *, now: datetime) -> None:
        """Mark the login used at ``now`` (moves its idle deadline)."""

    @abc.abstractmethod
    async def revoke(
        self, key: str, username: str, *, now: datetime, expires_at: datetime
    ) -> None:
        """Revoke the login under ``key``; record it revoked if it is not stored
        (a stateless token), until ``expires_at``."""

    @abc.abstractmethod
    async def hit(
        self, keys: Sequence[str], *, now: datetime, window: float
    ) -> dict[str, tuple[int, datetime]]:
        """Count one attempt for each key: ``{key: (attempts in the current
        window, start of the window)}``."""

    @abc.abstractmethod
    async def forget(self, key: str) -> None:
        """Reset the attempts of ``key``."""

    @abc.abstractmethod
    async def cleanup(self, *, now: datetime, window: float) -> int:
        """Delete expired logins and finished windows; how many rows went."""


class DatabaseStore(Store):
    """The tables ``{prefix}web_sessions`` and ``{prefix}web_login_attempts``."""

    def __init__(self, chancy: Chancy) -> None:
        self.chancy = chancy
        self.sessions = sql.Identifier(f"{chancy.prefix}web_sessions")
        self.attempts = sql.Identifier(f"{chancy.prefix}web_login_attempts")

    async def _execute(
        self, statement: sql.Composable, params: Any = None
    ) -> list[tuple[Any, ...]]:
        await self.chancy.ensure_open()
        async with self.chancy.pool.connection() as conn:
            cursor = await conn.execute(statement, params)
            return await cursor.fetchall() if cursor.description else []

    async def create(
        self, key: str, username: str, *, now: datetime, expires_at: datetime
    ) -> None:
        await self._execute(
            sql.SQL(
                "INSERT INTO {t} (id, username, created_at, last_used_at, expires_at)"
                " VALUES (%s, %s, %s, %s, %s)"
            ).format(t=self.sessions),
            (key, username, now, now, expires_at),
        )

    async def get(self, key: str) -> SessionRow | None:
        rows = await self._execute(
            sql.SQL(
                "SELECT username, created_at, last_used_at, expires_at, revoked_at"
                " FROM {t} WHERE id = %s"
            ).format(t=self.sessions),
            (key,),
        )
        return SessionRow(*rows[0]) if rows else None

    async def touch(self, key: str, *, now: datetime) -> None:
        await self._execute(
            sql.SQL(
                "UPDATE {t} SET last_used_at = GREATEST(last_used_at, %s) WHERE id = %s"
            ).format(t=self.sessions),
            (now, key),
        )

    async def revoke(
        self, key: str, username: str, *, now: datetime, expires_at: datetime
    ) -> None:
        await self._execute(
            sql.SQL(
                "INSERT INTO {t} AS s"
                " (id, username, created_at, last_used_at, expires_at, revoked_at)"
                " VALUES (%(key)s, %(user)s, %(now)s, %(now)s, %(expires)s, %(now)s)"
                " ON CONFLICT (id) DO UPDATE"
                " SET revoked_at = COALESCE(s.revoked_at, EXCLUDED.revoked_at)"
            ).format(t=self.sessions),
            {"key": key, "user": username, "now": now, "expires": expires_at},
        )

    async def hit(
        self, keys: Sequence[str], *, now: datetime, window: float
    ) -> dict[str, tuple[int, datetime]]:
        rows = await self._execute(
            sql.SQL(
                "INSERT INTO {t} AS a (key, window_start, attempts)"
                " SELECT k, %(now)s, 1 FROM unnest(%(keys)s::text[]) AS k ORDER BY k"
                " ON CONFLICT (key) DO UPDATE SET"
                " attempts = CASE WHEN a.window_start > %(cutoff)s"
                "   THEN LEAST(a.attempts + 1, %(cap)s) ELSE 1 END,"
                " window_start = CASE WHEN a.window_start > %(cutoff)s"
                "   THEN a.window_start ELSE EXCLUDED.window_start END"
                " RETURNING key, attempts, window_start"
            ).format(t=self.attempts),
            {
                "keys": sorted(set(keys)),
                "now": now,
                "cutoff": now - timedelta(seconds=window),
                "cap": _ATTEMPTS_CAP,
            },
        )
        return {key: (attempts, start) for key, attempts, start in rows}

    async def forget(self, key: str) -> None:
        await self._execute(
            sql.SQL("DELETE FROM {t} WHERE key = %s").format(t=self.attempts), (key,)
        )

    async def cleanup(self, *, now: datetime, window: float) -> int:
        sessions = await self._execute(
            sql.SQL("DELETE FROM {t} WHERE expires_at < %s RETURNING 1").format(
                t=self.sessions
            ),
            (now,),
        )
        attempts = await self._execute(
            sql.SQL("DELETE FROM {t} WHERE window_start < %s RETURNING 1").format(
                t=self.attempts
            ),
            (now - timedelta(seconds=window),),
        )
        return len(sessions) + len(attempts)


class MemoryStore(Store):
    """The same rules in this process's memory (when the tables are missing)."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionRow] = {}
        self.attempts: dict[str, tuple[int, datetime]] = {}

    async def create(
        self, key: str, username: str, *, now: datetime, expires_at: datetime
    ) -> None:
        self.sessions[key] = SessionRow(username, now, now, expires_at, None)

    async def get(self, key: str) -> SessionRow | None:
        return self.sessions.get(key)

    async def touch(self, key: str, *, now: datetime) -> None:
        row = self.sessions.get(key)
        if row is not None and row.last_used_at < now:
            self.sessions[key] = row._replace(last_used_at=now)

    async def revoke(
        self, key: str, username: str, *, now: datetime, expires_at: datetime
    ) -> None:
        row = self.sessions.get(key)
        if row is None:
            self.sessions[key] = SessionRow(username, now, now, expires_at, now)
        elif row.revoked_at is None:
            self.sessions[key] = row._replace(revoked_at=now)

    async def hit(
        self, keys: Sequence[str], *, now: datetime, window: float
    ) -> dict[str, tuple[int, datetime]]:
        cutoff = now - timedelta(seconds=window)
        out = {}
        for key in sorted(set(keys)):
            attempts, start = self.attempts.get(key, (0, now))
            if start <= cutoff:
                attempts, start = 0, now
            self.attempts[key] = out[key] = (min(attempts + 1, _ATTEMPTS_CAP), start)
        return out

    async def forget(self, key: str) -> None:
        self.attempts.pop(key, None)

    async def cleanup(self, *, now: datetime, window: float) -> int:
        cutoff = now - timedelta(seconds=window)
        old_sessions = [k for k, row in self.sessions.items() if row.expires_at < now]
        old_attempts = [k for k, (_, start) in self.attempts.items() if start < cutoff]
        for key in old_sessions:
            del self.sessions[key]
        for key in old_attempts:
            del self.attempts[key]
        return len(old_sessions) + len(old_attempts)


class FallbackStore(Store):
    """The database tables, or this process's memory once they turn out to be
    missing (logged once, as a warning)."""

    def __init__(self, chancy: Chancy) -> None:
        self.chancy = chancy
        self.database = DatabaseStore(chancy)
        self.memory: MemoryStore | None = None
        self._lock = asyncio.Lock()

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        import psycopg.errors

        if self.memory is None:
            try:
                return await getattr(self.database, name)(*args, **kwargs)
            except psycopg.errors.UndefinedTable:
                async with self._lock:
                    if self.memory is None:
                        self.chancy.log.warning(
                            "Api: the tables %sweb_sessions and %sweb_login_attempts"
                            " do not exist (apply the `web` migrations with `chancy"
                            " --app … migrate`); logins and login throttling are"
                            " kept in this process's memory, not shared with other"
                            " workers",
                            self.chancy.prefix,
                            self.chancy.prefix,
                        )
                        self.memory = MemoryStore()
        return await getattr(self.memory, name)(*args, **kwargs)

    async def create(
        self, key: str, username: str, *, now: datetime, expires_at: datetime
    ) -> None:
        await self._call("create", key, username, now=now, expires_at=expires_at)

    async def get(self, key: str) -> SessionRow | None:
        row: SessionRow | None = await self._call("get", key)
        return row

    async def touch(self, key: str, *, now: datetime) -> None:
        await self._call("touch", key, now=now)

    async def revoke(
        self, key: str, username: str, *, now: datetime, expires_at: datetime
    ) -> None:
        await self._call("revoke", key, username, now=now, expires_at=expires_at)

    async def hit(
        self, keys: Sequence[str], *, now: datetime, window: float
    ) -> dict[str, tuple[int, datetime]]:
        out: dict[str, tuple[int, datetime]] = await self._call(
            "hit", keys, now=now, window=window
        )
        return out

    async def forget(self, key: str) -> None:
        await self._call("forget", key)

    async def cleanup(self, *, now: datetime, window: float) -> int:
        count: int = await self._call("cleanup", now=now, window=window)
        return count


def utc(timestamp: float) -> datetime:
    """A POSIX timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(timestamp, UTC)
