"""Connection pools: health checks of idle connections, per-connection setup,
and the detection of a connection pooler (PgBouncer and the like)."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from chancy._encoding import load_json

__all__ = [
    "IDLE_CHECK_AFTER",
    "Checkout",
    "IdleCheck",
    "behind_pooler",
    "configure_async_connection",
    "configure_sync_connection",
    "sync_behind_pooler",
]

logger = logging.getLogger("chancy")

#: The server's own process id for this connection.
_BACKEND_PID = "SELECT pg_backend_pid()"

#: Seconds a pooled connection may sit idle before it is checked on checkout.
IDLE_CHECK_AFTER = 5.0


class IdleCheck:
    """Pool ``check`` callback: test a connection before handing it out only
    if it was last handed out ``after`` seconds ago or more.

    A connection idle that long may have been cut by a database restart or a
    firewall; checking costs one round trip, so connections reused at once
    (the hot path) are not checked. When a check fails, every idle connection
    is checked in the background, so the pool sheds all the dead ones at
    once; the caller gets a live connection instead of an error.

    (The time of the last checkout, not of the return, is kept: a pool
    ``reset`` callback would move every return into a background task.)
    """

    __slots__ = ("after", "last_used", "sweeps")

    def __init__(self, after: float) -> None:
        self.after = after
        self.last_used: weakref.WeakKeyDictionary[Any, float] = (
            weakref.WeakKeyDictionary()
        )
        self.sweeps: set[asyncio.Task[None]] = set()

    def idle_too_long(self, conn: Any) -> bool:
        now = time.monotonic()
        at = self.last_used.get(conn)
        self.last_used[conn] = now
        return at is not None and now - at >= self.after

    async def check(self, conn: AsyncConnection[Any], pool: Any = None) -> None:
        if not self.idle_too_long(conn):
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            if pool is not None and not self.sweeps:
                sweep = asyncio.ensure_future(pool.check())
                self.sweeps.add(sweep)
                sweep.add_done_callback(self.sweeps.discard)
            raise

    def sync_check(self, conn: Connection[Any]) -> None:
        if self.idle_too_long(conn):
            ConnectionPool.check_connection(conn)


_IN_TRANSACTION = (TransactionStatus.INTRANS, TransactionStatus.INERROR)


class Checkout:
    """``async with Checkout(pool) as conn``: what ``pool.connection()`` does
    (commit on success, roll back on an exception, hand the connection back),
    for the hot paths (a push, a fetch, a save).

    ``pool.connection()`` is a generator-based context manager wrapped around
    the connection's own ``async with``; together they cost ~20 µs a use,
    several times that on a CPU just woken from waiting for the server.
    """

    __slots__ = ("conn", "pool")

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self.conn: AsyncConnection[Any] | None = None

    async def __aenter__(self) -> AsyncConnection[Any]:
        conn: AsyncConnection[Any] = await self.pool.getconn()
        self.conn = conn
        return conn

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn = self.conn
        assert conn is not None
        self.conn = None
        try:
            # Nothing to end after a statement in autocommit (the push and
            # fetch hot paths) or on a broken connection: skip commit().
            if conn.pgconn.transaction_status in _IN_TRANSACTION:
                if exc_type is None:
                    await conn.commit()
                else:
                    try:
                        await conn.rollback()
                    except Exception as error:  # a broken connection: the
                        # pool replaces it; the caller's exception goes on
                        logger.debug("Rollback after %r failed: %s", exc, error)
        finally:
            await self.pool.putconn(conn)


async def configure_async_connection(conn: AsyncConnection[Any]) -> None:
    """Set up a new pooled connection: Chancy's faster JSON loader."""
    set_json_loads(load_json, conn)


def configure_sync_connection(conn: Connection[Any]) -> None:
    set_json_loads(load_json, conn)


# ---------------------------------------------------------------------------
# Is there a pooler between us and PostgreSQL?
#
# A server sends each new connection its process id (BackendKeyData, which
# libpq reports as ``backend_pid``) and ``pg_backend_pid()`` returns the same
# number. A pooler that hands server connections out per transaction cannot
# pass one server's id on: PgBouncer, for one, sends every client a random
# key of its own, so the two differ. Run on a connection that is idle; the
# probe leaves it idle (rolled back).
# ---------------------------------------------------------------------------


async def behind_pooler(conn: AsyncConnection[Any]) -> bool:
    """Whether ``conn`` reaches PostgreSQL through a pooler or proxy."""
    cursor = await conn.execute(_BACKEND_PID, prepare=False)
    row = await cursor.fetchone()
    if not conn.autocommit:
        await conn.rollback()
    return row is None or row[0] != conn.info.backend_pid


def sync_behind_pooler(conn: Connection[Any]) -> bool:
    """:func:`behind_pooler` for a sync connection."""
    row = conn.execute(_BACKEND_PID, prepare=False).fetchone()
    if not conn.autocommit:
        conn.rollback()
    return row is None or row[0] != conn.info.backend_pid
