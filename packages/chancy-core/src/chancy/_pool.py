"""Connection pools: health checks of idle connections and per-connection setup."""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from chancy._encoding import load_json

__all__ = [
    "IDLE_CHECK_AFTER",
    "IdleCheck",
    "configure_async_connection",
    "configure_sync_connection",
]

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


async def configure_async_connection(conn: AsyncConnection[Any]) -> None:
    """Set up a new pooled connection: Chancy's faster JSON loader."""
    set_json_loads(load_json, conn)


def configure_sync_connection(conn: Connection[Any]) -> None:
    set_json_loads(load_json, conn)
