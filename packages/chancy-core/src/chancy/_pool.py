"""Connection pools: health checks of idle connections, per-connection setup,
and the detection of a connection pooler (PgBouncer and the like)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import time
import weakref
from typing import Any

from psycopg import AsyncConnection, AsyncCursor, Connection
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from chancy._encoding import load_json

__all__ = [
    "IDLE_CHECK_AFTER",
    "Checkout",
    "IdleCheck",
    "Lane",
    "behind_pooler",
    "configure_async_connection",
    "configure_sync_connection",
    "sweep_soon",
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

    __slots__ = ("after", "last_used")

    def __init__(self, after: float) -> None:
        self.after = after
        self.last_used: weakref.WeakKeyDictionary[Any, float] = (
            weakref.WeakKeyDictionary()
        )

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
            if pool is not None:
                sweep_soon(pool)
            raise

    def sync_check(self, conn: Connection[Any]) -> None:
        if self.idle_too_long(conn):
            ConnectionPool.check_connection(conn)


#: The sweep of each pool under way (see sweep_soon).
_sweeps: weakref.WeakKeyDictionary[Any, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


def sweep_soon(pool: AsyncConnectionPool[Any]) -> None:
    """Check every idle connection of ``pool`` in the background, once at a
    time: after one connection was found dead (a database restart kills them
    all), the pool replaces the others before they are handed out, instead of
    failing one caller for each."""
    running = _sweeps.get(pool)
    if (running is not None and not running.done()) or pool.closed:
        return
    task = asyncio.ensure_future(pool.check())
    _sweeps[pool] = task
    task.add_done_callback(_log_sweep)


def _log_sweep(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug(
            "Checking the pool's idle connections failed: %s", task.exception()
        )


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
            if exc_type is not None and conn.broken:
                sweep_soon(self.pool)  # the others may be dead too
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


class Lane:
    """One autocommit connection kept beside the pool for the hot single
    statements (pushing one job, a worker's fetch), while they come often.

    A pooled connection costs a checkout, a return and two autocommit
    switches per statement (~0.2 ms measured on a slow 2-core machine, a
    tenth of a push); the lane costs none of those. It is opened (outside the
    pool: a busy pool is never short of a connection because of it, as the
    LISTEN connection is not counted either) when a second hot statement
    comes within :data:`HOT_WITHIN` seconds of the first, so an app that
    pushes now and then never holds it, and is closed once it has been idle
    :data:`IDLE_CHECK_AFTER` seconds (a connection idle that long may have
    been cut; the pool checks its own before handing them out).

    One user at a time: :meth:`take` returns ``None`` while it is busy (or
    not open, or opened on another event loop), and the caller uses the
    pool. A connection left in a transaction or broken by an error is closed
    and replaced; the error reaches the caller as it would from the pool.
    """

    __slots__ = (
        "busy",
        "check_after",
        "closing",
        "conn",
        "connect",
        "cursors",
        "idle_after",
        "loop",
        "on_broken",
        "opening",
        "timer",
        "tried_at",
        "tried_loop",
        "used_at",
    )

    #: Seconds within which a second hot statement opens the lane.
    HOT_WITHIN = 1.0

    def __init__(
        self, connect: Any, idle_after: float = IDLE_CHECK_AFTER, on_broken: Any = None
    ) -> None:
        #: ``async () -> AsyncConnection``: opens the lane's connection.
        self.connect = connect
        #: ``() -> None``, called when a use found the connection broken.
        self.on_broken = on_broken
        #: Seconds of idleness after which the connection is closed.
        self.idle_after = idle_after
        #: Seconds of idleness after which the socket is looked at before a
        #: use (one system call; a connection in steady use skips it).
        self.check_after = 0.5
        self.cursors: dict[Any, AsyncCursor[Any]] = {}
        self.conn: AsyncConnection[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.busy = False
        self.used_at = 0.0
        self.tried_at = 0.0
        self.tried_loop: asyncio.AbstractEventLoop | None = None
        #: Closings under way (kept referenced until done).
        self.closing: set[asyncio.Task[None]] = set()
        self.opening: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def take(self) -> AsyncConnection[Any] | None:
        """The lane's connection, marked busy, or ``None``: use the pool."""
        conn = self.conn
        running = asyncio.get_running_loop()
        if conn is None:
            if self.opening is None:
                # Opened for the second hot statement within HOT_WITHIN on one
                # event loop (code that runs each call on a new loop, such as
                # asgiref's async_to_sync, never opens one to throw it away).
                now = time.monotonic()
                if self.tried_loop is running and now - self.tried_at < self.HOT_WITHIN:
                    self._open(running)
                self.tried_at, self.tried_loop = now, running
            return None
        if self.loop is not running:
            # Another loop's (another thread's): only a gone loop's is closed.
            if self.loop is None or self.loop.is_closed():
                self._discard()
            return None
        if self.busy:
            return None
        idle = time.monotonic() - self.used_at
        if (
            conn.closed
            or idle >= self.idle_after
            or (idle >= self.check_after and _readable(conn))
        ):
            # Idle so long it may have been cut, or with something to read
            # while idle: the server closing it (a restart, a terminated
            # backend sends its FATAL error first). Never used then.
            self._discard()
            return None
        self.busy = True
        return conn

    def cursor(self, row_factory: Any, key: Any = None) -> AsyncCursor[Any]:
        """A cursor of the lane's connection with ``row_factory``, kept for
        the next use (executing again on a cursor discards its last result).

        Kept per ``row_factory``, or per ``key`` when given: a caller whose
        row factory changes with each use (the worker's fetch) keeps one
        cursor under its own key and sets the factory on it before each
        statement (``row_factory`` is then only the new cursor's first).
        """
        key = row_factory if key is None else key
        cursor = self.cursors.get(key)
        if cursor is None:
            assert self.conn is not None
            cursor = self.cursors[key] = self.conn.cursor(row_factory=row_factory)
        return cursor

    def give_back(self, conn: AsyncConnection[Any]) -> None:
        """End a use of :meth:`take`'s connection; closes it if it is not idle."""
        self.busy = False
        if conn is not self.conn:
            return
        if conn.closed or conn.pgconn.transaction_status != TransactionStatus.IDLE:
            broken = conn.broken
            self._discard()
            if broken and self.on_broken is not None:
                self.on_broken()  # a restart: the pool's connections died too
        else:
            self.used_at = time.monotonic()

    def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        self.opening = loop.create_task(self._opener(loop), name="chancy-lane-open")

    async def _opener(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            conn = await self.connect()
        except Exception as exc:  # the pool goes on serving; try again later
            logger.debug("Could not open the hot-statement connection: %s", exc)
            return
        finally:
            self.opening = None
        if self.conn is not None:  # pragma: no cover - opened twice
            await conn.close()
            return
        self.conn, self.loop, self.used_at = conn, loop, time.monotonic()
        self.timer = loop.call_later(self.idle_after, self._idle_tick)

    def _idle_tick(self) -> None:
        self.timer = None
        if self.conn is None:
            return
        idle = time.monotonic() - self.used_at
        if not self.busy and idle >= self.idle_after:
            self._discard()
        else:
            assert self.loop is not None
            self.timer = self.loop.call_later(
                max(self.idle_after - idle, 0.01), self._idle_tick
            )

    def _discard(self) -> None:
        """Forget the connection and close it (in the background)."""
        conn, loop = self.conn, self.loop
        self.conn = self.loop = None
        self.cursors = {}
        self.busy = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if conn is None or conn.closed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is loop:
            task = running.create_task(conn.close())
            self.closing.add(task)
            task.add_done_callback(self.closing.discard)
        else:  # its loop is gone or elsewhere: drop the socket without a goodbye
            conn.pgconn.finish()

    async def close(self) -> None:
        """Close the connection now (the app is closing)."""
        opening = self.opening
        if opening is not None:
            opening.cancel()
            with contextlib.suppress(BaseException):
                await opening
        self._discard()
        if self.closing:
            await asyncio.gather(*list(self.closing), return_exceptions=True)


def _readable(conn: AsyncConnection[Any]) -> bool:
    """Whether an idle connection's socket has something to read (or is closed)."""
    try:
        ready, _, _ = select.select([conn.pgconn.socket], (), (), 0)
    except (OSError, ValueError):
        return True
    return bool(ready)
