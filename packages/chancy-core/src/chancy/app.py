"""The :class:`Chancy` application: configuration, pools and the client API.

Every client method has an async and a sync form (``push`` and
``sync_push``…). Both run the same operation (``chancy._ops``), on the
async pool or the sync pool, or on the caller's cursor for the ``_ex`` forms,
so they cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from psycopg import AsyncConnection, AsyncCursor, Connection, Cursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from chancy import _dsn, _ops, _plugins, events
from chancy._dsn import dsn_from_django
from chancy._ops import InsertPlan, Operation, Savepoint, ref_id, run_async, run_sync
from chancy._pool import (
    IDLE_CHECK_AFTER,
    Checkout,
    IdleCheck,
    Lane,
    behind_pooler,
    configure_async_connection,
    configure_sync_connection,
    sweep_soon,
    sync_behind_pooler,
)
from chancy._sql import statements
from chancy.errors import ConfigurationError, PluginDependencyError
from chancy.executors.base import DEFAULT_MAX_RESULT_SIZE
from chancy.job import IsAJob, Job, QueuedJob, Reference, as_job
from chancy.migrate import Migrator
from chancy.plugin import Plugin
from chancy.queue import Queue
from chancy.utils import import_string, redact_dsn

__all__ = ["Chancy", "DatabaseConnection"]

#: A Django-style ``DATABASES`` entry (``ENGINE``, ``NAME``, ``USER``,
#: ``PASSWORD``, ``HOST``, ``PORT``, ``OPTIONS``), accepted as the DSN.
DatabaseConnection = _dsn.DatabaseConnection

CORE_MIGRATION_KEY = "chancy"


_FINISHED = {QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED}

T = TypeVar("T")

AnyCursor = AsyncCursor[Any] | AsyncConnection[Any]
AnySyncCursor = Cursor[Any] | Connection[Any]


#: The queue settings a plain declare() keeps when the queue exists.
_QUEUE_SETTINGS = (
    "state",
    "concurrency",
    "tags",
    "executor",
    "executor_options",
    "polling_interval",
    "rate_limit",
    "rate_limit_window",
    "resume_at",
    "eager_polling",
    "global_concurrency",
    "key_concurrency",
    "key_rate_limit",
    "key_rate_limit_window",
)


def _queue_differences(given: Queue, stored: Queue) -> list[str]:
    """``field: stored X, given Y`` for each setting that differs."""
    out = []
    for name in _QUEUE_SETTINGS:
        mine, theirs = getattr(given, name), getattr(stored, name)
        if name == "executor":
            mine, theirs = str(mine), str(theirs)
        if mine != theirs:
            if name == "tags":
                mine, theirs = sorted(mine), sorted(theirs)
            elif isinstance(mine, enum.Enum):
                mine, theirs = mine.value, getattr(theirs, "value", theirs)
            out.append(f"{name}: stored {theirs!r}, given {mine!r}")
    return out


def _default_logger() -> logging.Logger:
    """The ``chancy`` logger, as the application configured it.

    A library adds no handler of its own (only core's ``NullHandler``):
    ``logging.basicConfig`` in the application shows each line once. The
    ``chancy`` command line and the demo call :func:`chancy.utils.configure_logging`.
    """
    return logging.getLogger("chancy")


class Chancy:
    """A Chancy application: where the database is and which plugins run.

    :param dsn: a libpq connection string or URI, or a Django ``DATABASES`` entry.
    :param plugins: :class:`~chancy.plugin.Plugin` instances (they replace default
        plugins with the same identifier), and plain pluggy plugins: modules or
        objects with ``@chancy.hookimpl`` functions, keyed by their name.
    :param prefix: prepended to every table, index and the notification channel.
    :param min_connection_pool_size: ``min_size`` of the connection pools.
    :param max_connection_pool_size: ``max_size`` of the connection pools.
    :param poll_reconnect_timeout: seconds the pools keep trying to reconnect.
    :param notifications: send NOTIFY and LISTEN; when off, workers rely on
        polling alone.
    :param log: the logger to use (default: the ``chancy`` logger).
    :param no_default_plugins: do not enable the installed default plugins.
    :param pool: an existing :class:`psycopg_pool.AsyncConnectionPool` to use
        instead of creating one (ours: the original has no such argument).
    :param max_result_size: the largest return value a job may store, in bytes
        of JSON (64 KiB by default); a larger one fails the run with an error
        that says so (ours: the original stores no results).
    :param transaction_pooling: whether connections to ``dsn`` go through a
        pooler that hands out server connections per transaction (PgBouncer's
        ``pool_mode = transaction``). When true, nothing Chancy runs outlives
        its transaction: no server-side prepared statements and no LISTEN on
        ``dsn``. ``None`` (the default) detects a pooler on the first
        connection (the process id the server reported when the connection
        was made differs from ``pg_backend_pid()``: PgBouncer hands each
        client a key of its own) and, when one is found, assumes transaction
        pooling. An explicit ``True`` or ``False``
        always wins (ours: the original has no such setting).
    :param listen_dsn: where workers LISTEN for notifications when ``dsn``
        goes through a transaction pooler: a DSN (or Django ``DATABASES``
        entry) that reaches PostgreSQL directly, or through a pooler in
        session mode. Without it, workers behind a transaction pooler do not
        LISTEN and poll instead, and say so once in the log (ours).
    """

    class Executor(str, enum.Enum):
        """Import paths of the built-in executors, usable as ``Queue.executor``."""

        Process = "chancy.executors.process.ProcessExecutor"
        Threaded = "chancy.executors.thread.ThreadedExecutor"
        Async = "chancy.executors.asyncex.AsyncExecutor"
        SubInterpreter = "chancy.executors.sub.SubInterpreterExecutor"

        def __str__(self) -> str:
            return self.value

    def __init__(
        self,
        dsn: str | DatabaseConnection | None = None,
        *,
        plugins: Sequence[Plugin | object] | None = None,
        prefix: str = "chancy_",
        min_connection_pool_size: int = 1,
        max_connection_pool_size: int = 10,
        poll_reconnect_timeout: int = 300,
        notifications: bool = True,
        log: logging.Logger | None = None,
        no_default_plugins: bool = False,
        pool: AsyncConnectionPool[Any] | None = None,
        max_result_size: int = DEFAULT_MAX_RESULT_SIZE,
        transaction_pooling: bool | None = None,
        listen_dsn: str | DatabaseConnection | None = None,
    ) -> None:
        if dsn is None and pool is None:
            raise ConfigurationError("Chancy() needs a dsn (or an existing pool=)")
        if isinstance(dsn, dict):
            dsn = dsn_from_django(dsn)
        if dsn is None and pool is not None:
            # psycopg_pool also takes a callable conninfo: rejected just below.
            dsn = pool.conninfo  # type: ignore[assignment]
        if not isinstance(dsn, str):
            raise ConfigurationError(
                f"dsn must be a connection string or a Django DATABASES dict, got {type(dsn).__name__}"
            )
        try:
            conninfo_to_dict(dsn)
        except Exception as exc:
            raise ConfigurationError(
                redact_dsn(f"invalid PostgreSQL DSN: {exc}", dsn)
            ) from None
        if min_connection_pool_size < 0 or max_connection_pool_size < max(
            1, min_connection_pool_size
        ):
            raise ConfigurationError(
                "connection pool sizes must satisfy 0 <= min <= max and max >= 1, got "
                f"min={min_connection_pool_size}, max={max_connection_pool_size}"
            )
        if (
            isinstance(max_result_size, bool)
            or not isinstance(max_result_size, int)
            or max_result_size < 1
        ):
            raise ConfigurationError(
                f"max_result_size must be a positive number of bytes, got {max_result_size!r}"
            )
        if transaction_pooling is not None and not isinstance(
            transaction_pooling, bool
        ):
            raise ConfigurationError(
                "transaction_pooling must be True, False or None (detect),"
                f" got {transaction_pooling!r}"
            )
        if isinstance(listen_dsn, dict):
            listen_dsn = dsn_from_django(listen_dsn)
        if listen_dsn is not None:
            if not isinstance(listen_dsn, str):
                raise ConfigurationError(
                    "listen_dsn must be a connection string or a Django DATABASES"
                    f" dict, got {type(listen_dsn).__name__}"
                )
            try:
                conninfo_to_dict(listen_dsn)
            except Exception as exc:
                raise ConfigurationError(
                    redact_dsn(f"invalid listen_dsn: {exc}", listen_dsn)
                ) from None
        #: Largest return value a job may store, in bytes of JSON.
        self.max_result_size = max_result_size
        #: The DSN of every connection (a Django dict is converted to a string).
        self.dsn: str = dsn
        self.prefix = prefix
        self.sql = statements(prefix)  # validates the prefix
        self.min_connection_pool_size = min_connection_pool_size
        self.max_connection_pool_size = max_connection_pool_size
        self.poll_reconnect_timeout = poll_reconnect_timeout
        self.notifications = notifications
        #: Whether ``dsn`` goes through a transaction pooler: as given, or
        #: ``None`` until detected on the first connection (then a bool).
        self.transaction_pooling: bool | None = transaction_pooling
        #: Where workers LISTEN when ``dsn`` goes through a transaction pooler.
        self.listen_dsn: str | None = listen_dsn
        self._said_no_listen = False
        self._pooling_detected = False
        self.log = log or _default_logger()
        self.no_default_plugins = no_default_plugins

        self._pool: AsyncConnectionPool[Any] | None = pool
        self._external_pool = pool is not None
        self._sync_pool: ConnectionPool[Any] | None = None
        self._open_lock: asyncio.Lock | None = None
        self._idle_check = IdleCheck(IDLE_CHECK_AFTER)
        #: The connection for hot single statements (see _hot_connection()).
        self._lane = Lane(self._open_lane, on_broken=self._sweep_pool)
        #: Queues known to be declared, or already warned about (see push).
        self._checked_queues: set[str] = {"default"}

        self.plugin_manager = _plugins.PluginManager()
        discovered = self.plugin_manager.discover()
        #: Every enabled plugin by identifier: ``Plugin`` instances, and plain
        #: hookimpl modules or objects.
        self.plugins: dict[str, Any] = {}
        for plugin in plugins or []:
            identifier = _plugins.plugin_identifier(plugin)
            if identifier in self.plugins:
                existing = self.plugins[identifier]
                if type(existing) is type(plugin):
                    raise ValueError(
                        f"the plugin {type(plugin).__name__} ({identifier!r}) was given twice"
                    )
                raise ValueError(
                    f"plugins {type(existing).__name__} and {type(plugin).__name__} share the"
                    f" identifier {identifier!r}; only one may be enabled"
                )
            self.plugins[identifier] = plugin
        if not no_default_plugins:
            defaults = [cls for cls in discovered if cls.is_default()]
            defaults.sort(key=lambda c: (c.default_order, c.get_identifier()))
            for cls in defaults:
                identifier = cls.get_identifier()
                if identifier not in self.plugins:
                    self.plugins[identifier] = cls()
        self.plugin_manager.register_plugins(self.plugins.values(), self)

    def __repr__(self) -> str:
        return f"<Chancy prefix={self.prefix!r} plugins={list(self.plugins)}>"

    # ------------------------------------------------------------------
    # Pools
    # ------------------------------------------------------------------

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The async connection pool (created closed, on first use)."""
        if self._pool is None:
            self._pool = AsyncConnectionPool(
                self.dsn,
                min_size=self.min_connection_pool_size,
                max_size=self.max_connection_pool_size,
                reconnect_timeout=self.poll_reconnect_timeout,
                open=False,
                name=f"chancy-{self.prefix}",
                check=self._check_pooled,
                configure=self._configure_async,
            )
        return self._pool

    async def _check_pooled(self, conn: AsyncConnection[Any]) -> None:
        await self._idle_check.check(conn, self._pool)

    @property
    def sync_pool(self) -> ConnectionPool[Any]:
        """The synchronous connection pool (created closed, on first use)."""
        if self._sync_pool is None:
            self._sync_pool = ConnectionPool(
                self.dsn,
                min_size=self.min_connection_pool_size,
                max_size=self.max_connection_pool_size,
                reconnect_timeout=self.poll_reconnect_timeout,
                open=False,
                name=f"chancy-sync-{self.prefix}",
                check=self._idle_check.sync_check,
                configure=self._configure_sync,
            )
        return self._sync_pool

    async def ensure_open(self) -> AsyncConnectionPool[Any]:
        """Open the async pool if needed, failing fast with a clear error."""
        pool = self.pool
        if not pool.closed:
            if self.transaction_pooling is None:
                # A pool opened by its owner: detect on one of its connections.
                async with pool.connection() as conn:
                    self._pooler_found(await behind_pooler(conn))
                self._check_external_pool()
            return pool
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if pool.closed:
                # One direct connection first: a wrong DSN or a server that is
                # down fails at once with libpq's own message, not a pool timeout.
                try:
                    conn = await self._connect()
                    await conn.close()
                except Exception as exc:
                    raise ConnectionError(
                        redact_dsn(f"cannot connect to PostgreSQL: {exc}", self.dsn)
                    ) from exc
                self._check_external_pool()
                await pool.open(wait=True, timeout=30)
        return self.pool

    def sync_ensure_open(self) -> ConnectionPool[Any]:
        pool = self.sync_pool
        if pool.closed:
            try:
                self._sync_connect().close()
            except Exception as exc:
                raise ConnectionError(
                    redact_dsn(f"cannot connect to PostgreSQL: {exc}", self.dsn)
                ) from exc
            pool.open(wait=True, timeout=30)
        return self.sync_pool

    # ------------------------------------------------------------------
    # Connection poolers (PgBouncer in transaction mode)
    # ------------------------------------------------------------------

    @property
    def _prepare(self) -> bool | None:
        """How hot statements are prepared: at once (``True``), never
        (``False``: behind a transaction pooler, where a prepared statement
        would outlive its transaction), or as the connection's own
        ``prepare_threshold`` decides (``None``: not known yet)."""
        pooling = self.transaction_pooling
        return None if pooling is None else not pooling

    def _pooler_found(self, found: bool) -> None:
        """Record what the detection found, unless the setting was given."""
        if self.transaction_pooling is not None:
            return
        self.transaction_pooling = found
        self._pooling_detected = True
        if found:
            self.log.info(
                "PostgreSQL is reached through a connection pooler (the server's"
                " process id differs from the one the connection was given):"
                " assuming transaction pooling, so Chancy prepares no statements"
                " and does not LISTEN on this DSN. Pass"
                " Chancy(transaction_pooling=False) if the pooler pools sessions."
            )

    async def _setup_connection(self, conn: AsyncConnection[Any]) -> None:
        if self.transaction_pooling is None:
            self._pooler_found(await behind_pooler(conn))
        if self.transaction_pooling:
            conn.prepare_threshold = None

    def _sync_setup_connection(self, conn: Connection[Any]) -> None:
        if self.transaction_pooling is None:
            self._pooler_found(sync_behind_pooler(conn))
        if self.transaction_pooling:
            conn.prepare_threshold = None

    async def _configure_async(self, conn: AsyncConnection[Any]) -> None:
        """Set up each new connection of :attr:`pool`."""
        await configure_async_connection(conn)
        await self._setup_connection(conn)

    def _configure_sync(self, conn: Connection[Any]) -> None:
        """Set up each new connection of :attr:`sync_pool`."""
        configure_sync_connection(conn)
        self._sync_setup_connection(conn)

    async def _connect(self, *, autocommit: bool = False) -> AsyncConnection[Any]:
        """A connection of its own to :attr:`dsn` (outside the pool), set up
        for the pooler in between, if any (detected here the first time)."""
        conn = await AsyncConnection.connect(self.dsn, autocommit=autocommit)
        try:
            await self._setup_connection(conn)
        except BaseException:
            await conn.close()
            raise
        return conn

    def _sweep_pool(self) -> None:
        if self._pool is not None:
            sweep_soon(self._pool)

    async def _open_lane(self) -> AsyncConnection[Any]:
        conn = await self._connect(autocommit=True)
        await configure_async_connection(conn)
        return conn

    def _hot_connection(self) -> AsyncConnection[Any] | None:
        """An autocommit connection for one hot single statement, or ``None``.

        While single statements come often (pushes one job at a time, a
        worker's fetches), the app keeps one autocommit connection open
        beside its pool (not counted in its size) and lends it to one caller
        at a time, saving the checkout, return and autocommit switches of a
        pooled connection. ``None`` when it is busy, not open (yet), or the
        pool was given as ``pool=`` (whose connection settings the app cannot
        copy): use the pool then. Give it back with ``self._lane.give_back``,
        also after an error.
        """
        if self._external_pool:
            return None
        return self._lane.take()

    def _sync_connect(self) -> Connection[Any]:
        """:meth:`_connect` for a sync connection."""
        conn = Connection.connect(self.dsn)
        try:
            self._sync_setup_connection(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_external_pool(self) -> None:
        """Warn when a pool given as ``pool=`` prepares statements behind a
        transaction pooler (Chancy's own pools never do there)."""
        pool = self._pool
        kwargs = pool.kwargs if pool is not None else None
        if (
            self._external_pool
            and self.transaction_pooling
            and not callable(kwargs)  # a callable's result cannot be told
            and (kwargs or {}).get("prepare_threshold", 5) is not None
        ):
            self.log.warning(
                "The pool given to Chancy(pool=...) goes through a transaction"
                " pooler but lets psycopg prepare statements, which fails there"
                " (DuplicatePreparedStatement); create it with"
                " kwargs={'prepare_threshold': None}."
            )

    def can_listen(self) -> bool:
        """Whether workers LISTEN for notifications.

        They do when notifications are on and there is a session to listen
        on: :attr:`dsn` without a transaction pooler, or :attr:`listen_dsn`.
        When notifications are on but :attr:`dsn` goes through a transaction
        pooler and no ``listen_dsn`` was given, this says once, in the log,
        that workers poll instead and why. Call it once the app is open (the
        pooler is detected on the first connection).
        """
        if not self.notifications:
            return False
        if self.listen_dsn is not None or not self.transaction_pooling:
            return True
        if not self._said_no_listen:
            self._said_no_listen = True
            self.log.warning(
                "Notifications are off for workers: PostgreSQL is reached through a"
                " transaction pooler (transaction_pooling=True, %s), where LISTEN"
                " cannot work, and no listen_dsn was given. Workers poll each queue"
                " every polling_interval instead, and cancel_job() cannot interrupt"
                " a running job. Pass Chancy(listen_dsn=...) with a DSN that reaches"
                " PostgreSQL directly to wake workers at once.",
                "detected" if self._pooling_detected else "as configured",
            )
        return False

    @property
    def listen_target(self) -> str:
        """The DSN workers LISTEN on: :attr:`listen_dsn` if given, else :attr:`dsn`."""
        return self.listen_dsn or self.dsn

    async def __aenter__(self) -> Chancy:
        await self.ensure_open()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._lane.close()
        if self._pool is not None and not self._external_pool:
            await self._pool.close()
            self._pool = None

    def __enter__(self) -> Chancy:
        self.sync_ensure_open()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._sync_pool is not None:
            self._sync_pool.close()
            self._sync_pool = None

    # ------------------------------------------------------------------
    # Running operations (one implementation, two drivers)
    # ------------------------------------------------------------------

    async def _run(
        self,
        operation: Operation,
        cursor: AnyCursor | None = None,
        *,
        autocommit: bool = False,
        dicts: bool = True,
    ) -> Any:
        """Carry ``operation`` out on the caller's cursor or connection, or
        on a pooled connection (committed when it returns; with
        ``autocommit``, statement by statement, for single statements)."""
        if cursor is not None:
            if isinstance(cursor, AsyncConnection):
                async with cursor.cursor() as cur:
                    return await run_async(cur, operation, self._prepare)
            return await run_async(cursor, operation, self._prepare)
        pool = await self.ensure_open()
        factory: Any = dict_row if dicts else tuple_row
        prepare = self._prepare
        if autocommit and (lane := self._hot_connection()) is not None:
            try:
                return await run_async(self._lane.cursor(factory), operation, prepare)
            finally:
                self._lane.give_back(lane)
        async with Checkout(pool) as conn:
            if not autocommit:
                async with conn.cursor(row_factory=factory) as cur:
                    return await run_async(cur, operation, prepare)
            # One statement is atomic on its own: skip BEGIN and COMMIT.
            await conn.set_autocommit(True)
            try:
                async with conn.cursor(row_factory=factory) as cur:
                    return await run_async(cur, operation, prepare)
            finally:
                await conn.set_autocommit(False)

    def _sync_run(
        self,
        operation: Operation,
        cursor: AnySyncCursor | None = None,
        *,
        autocommit: bool = False,
        dicts: bool = True,
    ) -> Any:
        """:meth:`_run` on the sync pool or the caller's sync cursor."""
        if cursor is not None:
            if isinstance(cursor, Connection):
                with cursor.cursor() as cur:
                    return run_sync(cur, operation, self._prepare)
            return run_sync(cursor, operation, self._prepare)
        self.sync_ensure_open()
        factory: Any = dict_row if dicts else tuple_row
        prepare = self._prepare
        with self.sync_pool.connection() as conn:
            if not autocommit:
                with conn.cursor(row_factory=factory) as cur:
                    return run_sync(cur, operation, prepare)
            conn.autocommit = True
            try:
                with conn.cursor(row_factory=factory) as cur:
                    return run_sync(cur, operation, prepare)
            finally:
                conn.autocommit = False

    @staticmethod
    def _no_running_loop(name: str) -> None:
        """Refuse a blocking call from inside a running event loop.

        The sync API blocks its thread until the database answers; on a thread
        running an event loop it would stall every task on it. The original's
        own sync methods (``sync_push`` and the few others it has) keep
        working there, for code written for it.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        raise RuntimeError(
            f"Chancy.sync_{name}() was called from inside a running event loop, where"
            f" it would block every task; use `await chancy.{name}(...)` instead (or"
            " call it from a thread: asyncio.to_thread)"
        )

    # ------------------------------------------------------------------
    # Migrations
    # ------------------------------------------------------------------

    def core_migrator(self) -> Migrator:
        return Migrator(CORE_MIGRATION_KEY, "chancy.migrations", prefix=self.prefix)

    def migrators(self) -> list[Migrator]:
        """Core's migrator followed by every plugin's, in plugin order."""
        return [self.core_migrator(), *self.plugin_manager.migrators(self)]

    async def migrate(self, *, to_version: int | None = None) -> None:
        """Migrate core, then every plugin, each line in its own transaction.

        ``to_version=None`` means the latest of each line. A number is applied
        to core as given and to each plugin capped at that plugin's latest
        version; ``to_version=0`` therefore removes every table. Going down,
        plugins are migrated before core.
        """
        await self.ensure_open()
        async with self.pool.connection() as conn:
            await self._migrate_on(conn, to_version)

    async def _migrate_on(
        self, conn: AsyncConnection[Any], to_version: int | None
    ) -> None:
        migrators = self.migrators()
        if to_version is not None and to_version < self.core_migrator().latest_version:
            migrators = migrators[1:][::-1] + migrators[:1]
        for migrator in migrators:
            target = to_version
            if target is not None and migrator.key != CORE_MIGRATION_KEY:
                target = min(target, migrator.latest_version)
            if await migrator.migrate(conn, to_version=target):
                self.log.info(
                    "Migrated %r to version %s",
                    migrator.key,
                    target if target is not None else migrator.latest_version,
                )

    def sync_migrate(self, *, to_version: int | None = None) -> None:
        """:meth:`migrate`, from code without an event loop (a script, Django).

        Migrations are written against psycopg's async API; this runs them on
        one connection of their own in a private event loop.
        """
        self._no_running_loop("migrate")

        async def main() -> None:
            conn = await self._connect()
            try:
                await self._migrate_on(conn, to_version)
            finally:
                await conn.close()

        asyncio.run(main())

    async def is_up_to_date(self) -> bool:
        """Whether core and every plugin's tables are at their latest version."""
        await self.ensure_open()
        async with self.pool.connection() as conn, conn.cursor() as cursor:
            return await self._up_to_date_on(cursor)

    async def _up_to_date_on(self, cursor: AsyncCursor[Any]) -> bool:
        for migrator in self.migrators():
            if await migrator.is_migration_required(cursor):
                return False
        return True

    def sync_is_up_to_date(self) -> bool:
        """:meth:`is_up_to_date`, from code without an event loop."""
        self._no_running_loop("is_up_to_date")

        async def main() -> bool:
            conn = await self._connect(autocommit=True)
            try:
                async with conn.cursor() as cursor:
                    return await self._up_to_date_on(cursor)
            finally:
                await conn.close()

        return asyncio.run(main())

    # ------------------------------------------------------------------
    # Queues
    # ------------------------------------------------------------------

    def _queue_params(self, queue: Queue) -> tuple[Any, ...]:
        if not isinstance(queue, Queue):
            raise TypeError(f"expected a Queue, got {type(queue).__name__}")
        try:
            from chancy.executors.base import Executor

            executor_cls = import_string(str(queue.executor))
        except ImportError as exc:
            raise ConfigurationError(
                f"Queue {queue.name!r}: executor {queue.executor!r} cannot be imported ({exc})"
            ) from None
        if not (isinstance(executor_cls, type) and issubclass(executor_cls, Executor)):
            raise ConfigurationError(
                f"Queue {queue.name!r}: {queue.executor!r} is not an Executor subclass"
            )
        try:
            options = json.dumps(queue.executor_options)
        except TypeError as exc:
            raise ConfigurationError(
                f"Queue {queue.name!r}: executor_options must be JSON-serialisable ({exc})"
            ) from None
        try:
            executor_cls.check_options(queue.executor_options)
        except ValueError as exc:
            raise ConfigurationError(f"Queue {queue.name!r}: {exc}") from None
        return (
            queue.name,
            queue.state.value,
            queue.concurrency,
            sorted(queue.tags),
            str(queue.executor),
            options,
            queue.polling_interval,
            queue.rate_limit,
            queue.rate_limit_window,
            queue.resume_at,
            queue.eager_polling,
            queue.global_concurrency,
            queue.key_concurrency,
            queue.key_rate_limit,
            queue.key_rate_limit_window,
        )

    def _declare_op(
        self, queue: Queue, *, upsert: bool, warn: bool, notify: bool
    ) -> Operation:
        params = self._queue_params(queue)
        row = yield _ops.Execute(
            self.sql.upsert_queue if upsert else self.sql.declare_queue,
            params,
            fetch="one",
        )
        if notify and self.notifications:
            yield from _ops.notify_many(
                self.sql, [(events.QUEUE_DECLARED.name, {"q": queue.name})]
            )
        # Both statements end in RETURNING * after an upsert: always one row.
        stored = Queue.unpack(row)
        self._checked_queues.add(stored.name)
        if warn and not upsert:
            differences = _queue_differences(queue, stored)
            if differences:
                self.log.warning(
                    "declare(): queue %r already exists with other settings (%s);"
                    " the stored ones are kept. Use declare(queue, upsert=True) to"
                    " apply yours.",
                    queue.name,
                    "; ".join(differences),
                )
        return stored

    async def declare(self, queue: Queue, *, upsert: bool = False) -> Queue:
        """Create ``queue``; if it exists keep it as is, or overwrite it with ``upsert``.

        Returns the queue as stored. Running workers pick the change up at once.
        When the queue exists with other settings and ``upsert`` is false, the
        stored settings are kept and a warning names the fields that differ.
        """
        return await self._declare(queue, upsert=upsert, warn=True)

    async def _declare(self, queue: Queue, *, upsert: bool, warn: bool) -> Queue:
        return await self._run(  # type: ignore[no-any-return]
            self._declare_op(queue, upsert=upsert, warn=warn, notify=True)
        )

    def sync_declare(self, queue: Queue, *, upsert: bool = False) -> Queue:
        """:meth:`declare`, synchronously."""
        return self._sync_run(  # type: ignore[no-any-return]
            self._declare_op(queue, upsert=upsert, warn=True, notify=True)
        )

    async def declare_ex(
        self, cursor: AsyncCursor[Any], queue: Queue, *, upsert: bool = False
    ) -> Queue:
        """:meth:`declare` on the caller's cursor (no notification, no commit)."""
        return await self._run(  # type: ignore[no-any-return]
            self._declare_op(queue, upsert=upsert, warn=True, notify=False), cursor
        )

    def sync_declare_ex(
        self, cursor: Cursor[Any], queue: Queue, *, upsert: bool = False
    ) -> Queue:
        """:meth:`declare_ex` on the caller's sync cursor."""
        return self._sync_run(  # type: ignore[no-any-return]
            self._declare_op(queue, upsert=upsert, warn=True, notify=False), cursor
        )

    def _get_all_queues_op(self) -> Operation:
        rows = yield from _ops.fetch_all(self.sql.get_all_queues)
        return [Queue.unpack(row) for row in rows]

    async def get_all_queues(self) -> list[Queue]:
        """Every declared queue, whatever its state."""
        return await self._run(self._get_all_queues_op())  # type: ignore[no-any-return]

    def sync_get_all_queues(self) -> list[Queue]:
        """:meth:`get_all_queues`, synchronously."""
        self._no_running_loop("get_all_queues")
        return self._sync_run(self._get_all_queues_op())  # type: ignore[no-any-return]

    def _undeclared_op(self) -> Operation:
        rows = yield _ops.Execute(self.sql.undeclared_queues, fetch="all", dicts=False)
        return {name: count for name, count in rows}

    async def get_undeclared_queues(self) -> dict[str, int]:
        """Queues that have jobs waiting to run but were never declared.

        No worker serves such a queue, so its jobs wait forever. Returns
        ``{queue name: number of pending or retrying jobs}``.
        """
        return await self._run(self._undeclared_op())  # type: ignore[no-any-return]

    def sync_get_undeclared_queues(self) -> dict[str, int]:
        """:meth:`get_undeclared_queues`, synchronously."""
        self._no_running_loop("get_undeclared_queues")
        return self._sync_run(self._undeclared_op())  # type: ignore[no-any-return]

    def _get_queue_op(self, name: str) -> Operation:
        row = yield from _ops.fetch_one(self.sql.get_queue, (name,))
        if row is None:
            raise KeyError(f"no queue named {name!r}")
        return Queue.unpack(row)

    async def get_queue(self, name: str) -> Queue:
        """The queue named ``name``. :raises KeyError: no such queue."""
        return await self._run(self._get_queue_op(name))  # type: ignore[no-any-return]

    def sync_get_queue(self, name: str) -> Queue:
        """:meth:`get_queue`, synchronously."""
        self._no_running_loop("get_queue")
        return self._sync_run(self._get_queue_op(name))  # type: ignore[no-any-return]

    def _delete_queue_op(self, name: str, purge_jobs: bool) -> Operation:
        yield _ops.Execute(self.sql.delete_queue, (name,))
        if purge_jobs:
            yield _ops.Execute(self.sql.delete_queue_jobs, (name,))
        if self.notifications:
            yield from _ops.notify_many(
                self.sql, [(events.QUEUE_DELETED.name, {"q": name})]
            )

    async def delete_queue(self, name: str, *, purge_jobs: bool = True) -> None:
        """Delete the queue (and by default every job in it)."""
        await self._run(self._delete_queue_op(name, purge_jobs))

    async def delete_queue_ex(
        self, cursor: AsyncCursor[Any], name: str, *, purge_jobs: bool = True
    ) -> None:
        """:meth:`delete_queue` on the caller's cursor."""
        await self._run(self._delete_queue_op(name, purge_jobs), cursor)

    def sync_delete_queue(self, name: str, *, purge_jobs: bool = True) -> None:
        """:meth:`delete_queue`, synchronously."""
        self._no_running_loop("delete_queue")
        self._sync_run(self._delete_queue_op(name, purge_jobs))

    def sync_delete_queue_ex(
        self, cursor: Cursor[Any], name: str, *, purge_jobs: bool = True
    ) -> None:
        """:meth:`delete_queue_ex` on the caller's sync cursor."""
        self._sync_run(self._delete_queue_op(name, purge_jobs), cursor)

    def _pause_queue_op(
        self, name: str, resume_at: datetime | timedelta | None
    ) -> Operation:
        if isinstance(resume_at, timedelta):
            resume_at = datetime.now(UTC) + resume_at
        row = yield _ops.Execute(self.sql.pause_queue, (resume_at, name), fetch="one")
        if row is None:
            raise KeyError(f"no queue named {name!r}")
        if self.notifications:
            yield from _ops.notify_many(
                self.sql, [(events.QUEUE_PAUSED.name, {"q": name})]
            )

    async def pause_queue(
        self, name: str, *, resume_at: datetime | timedelta | None = None
    ) -> None:
        """Stop fetching from the queue (running jobs continue), optionally until ``resume_at``."""
        await self._run(self._pause_queue_op(name, resume_at))

    async def pause_queue_ex(
        self,
        cursor: AsyncCursor[Any],
        name: str,
        *,
        resume_at: datetime | timedelta | None = None,
    ) -> None:
        """:meth:`pause_queue` on the caller's cursor."""
        await self._run(self._pause_queue_op(name, resume_at), cursor)

    def sync_pause_queue(
        self, name: str, *, resume_at: datetime | timedelta | None = None
    ) -> None:
        """:meth:`pause_queue`, synchronously."""
        self._no_running_loop("pause_queue")
        self._sync_run(self._pause_queue_op(name, resume_at))

    def sync_pause_queue_ex(
        self,
        cursor: Cursor[Any],
        name: str,
        *,
        resume_at: datetime | timedelta | None = None,
    ) -> None:
        """:meth:`pause_queue_ex` on the caller's sync cursor."""
        self._sync_run(self._pause_queue_op(name, resume_at), cursor)

    def _resume_queue_op(self, name: str) -> Operation:
        row = yield _ops.Execute(self.sql.resume_queue, (name,), fetch="one")
        if row is None:
            raise KeyError(f"no queue named {name!r}")
        if self.notifications:
            yield from _ops.notify_many(
                self.sql, [(events.QUEUE_RESUMED.name, {"q": name})]
            )

    async def resume_queue(self, name: str) -> None:
        """Make a paused queue active again."""
        await self._run(self._resume_queue_op(name))

    async def resume_queue_ex(self, cursor: AsyncCursor[Any], name: str) -> None:
        """:meth:`resume_queue` on the caller's cursor."""
        await self._run(self._resume_queue_op(name), cursor)

    def sync_resume_queue(self, name: str) -> None:
        """:meth:`resume_queue`, synchronously."""
        self._no_running_loop("resume_queue")
        self._sync_run(self._resume_queue_op(name))

    def sync_resume_queue_ex(self, cursor: Cursor[Any], name: str) -> None:
        """:meth:`resume_queue_ex` on the caller's sync cursor."""
        self._sync_run(self._resume_queue_op(name), cursor)

    # ------------------------------------------------------------------
    # Pushing jobs
    # ------------------------------------------------------------------

    def check_job(self, job: Job | IsAJob) -> Job:
        """Raise the error :meth:`push` would raise for ``job``; write nothing.

        For code that stores a job to push it later (cron schedules, workflow
        steps): a job that :meth:`push` would refuse is then refused when it
        is stored, instead of failing every time it is due. Returns the
        :class:`~chancy.job.Job` (the template of a function decorated with
        ``@job``).

        :raises TypeError: a field has the wrong type, or the kwargs or meta
            cannot be stored as JSON.
        :raises ValueError: a value that cannot be stored (out of range, a NUL
            character, half of a surrogate pair, nested too deeply, ...).
        """
        resolved = as_job(job)
        self._plan([resolved], hooks=False)
        return resolved

    def _plan(self, jobs: Iterable[Job | IsAJob], *, hooks: bool = True) -> InsertPlan:
        """Validate and encode ``jobs``; raises before anything is written."""
        plugins = self.plugin_manager
        if hooks and plugins.has_jobs_pushing:
            jobs = plugins.jobs_pushing(self, [as_job(j) for j in jobs])
        try:
            plan = _ops.serialise(jobs, notifications=self.notifications, stream=True)
        except BaseException as exc:
            # Every chancy_jobs_pushing is followed by one chancy_jobs_pushed
            # (a tracer ends the span it started), also when nothing is written.
            # (Something that is not a job fails as_job() here as it did in
            # the pushing hook, which then never ran: nothing to report.)
            if hooks and plugins.has_jobs_pushed:
                given: list[Job] | None = None
                with contextlib.suppress(TypeError):
                    given = [as_job(j) for j in jobs]
                if given is not None:
                    plugins.jobs_pushed(self, given, None, exc)
            raise
        if hooks and plugins.has_jobs_pushed:
            plan.jobs = [as_job(j) for j in jobs]
        return plan

    def _pushed(
        self,
        plan: InsertPlan,
        references: list[Reference] | None,
        error: BaseException | None,
    ) -> None:
        if plan.jobs is not None:
            self.plugin_manager.jobs_pushed(self, plan.jobs, references, error)

    def _push_op(
        self,
        plan: InsertPlan,
        sent: asyncio.Event | None = None,
        *,
        on_callers: bool = False,
    ) -> Operation:
        if on_callers and not plan.single_statement:
            # On the caller's cursor, several statements (or a COPY that
            # meets a bad job half-way) either all count or leave nothing,
            # and the caller's transaction goes on either way.
            rows = yield Savepoint(_ops.insert(self.sql, plan, sent))
        else:
            rows = yield from _ops.insert(self.sql, plan, sent)
        unchecked = self._unchecked(plan)
        if unchecked:
            yield from self._check_declared_op(unchecked)
        return plan.finish_refs(rows)

    def _unchecked(self, plan: InsertPlan) -> list[str]:
        checked = self._checked_queues
        return [q for q in plan.queues if q not in checked]

    def _check_declared_op(self, names: list[str]) -> Operation:
        """Warn, once per queue, about jobs pushed to a queue nobody declared.

        Costs one query the first time a queue is pushed to by this app (on
        the same connection, so a queue declared in the same transaction
        counts), nothing afterwards. It runs in a savepoint: it never breaks
        the push or the caller's transaction (e.g. for a role that may insert
        jobs but not read the queues table).
        """
        try:
            found = yield Savepoint(_ops.declared_queues(self.sql, names))
        except Exception as exc:
            self.log.debug(
                "Could not check that queues %s are declared: %s", names, exc
            )
            self._checked_queues.update(names)
            return
        for name in names:
            self._checked_queues.add(name)
            if name not in found:
                self.log.warning(
                    "Jobs were pushed to queue %r, which nobody declared: no worker"
                    " runs them until it is declared (chancy.declare(Queue(%r)) or"
                    " `chancy queue declare %s`)",
                    name,
                    name,
                    name,
                )

    async def _push(
        self,
        cursor: AnyCursor | None,
        plan: InsertPlan,
        sent: asyncio.Event | None = None,
    ) -> list[Reference]:
        try:
            refs: list[Reference] = await self._run(
                self._push_op(plan, sent, on_callers=cursor is not None),
                cursor,
                autocommit=plan.single_statement,
                dicts=False,
            )
        except BaseException as exc:
            self._pushed(plan, None, exc)
            raise
        self._pushed(plan, refs, None)
        return refs

    async def push(self, job: Job | IsAJob) -> Reference:
        """Push one job; returns its reference.

        For a unique job whose key is held by an unfinished job, nothing is
        inserted and that job's reference is returned.
        """
        return (await self._push(None, self._plan([job])))[0]

    async def push_ex(self, cursor: AsyncCursor[Any], job: Job | IsAJob) -> Reference:
        """:meth:`push` on the caller's cursor: visible when the caller commits."""
        return (await self._push(cursor, self._plan([job])))[0]

    def sync_push(self, job: Job | IsAJob) -> Reference:
        """:meth:`push`, synchronously."""
        return self.sync_push_many_ex(None, [job])[0]

    def sync_push_ex(self, cursor: Cursor[Any], job: Job | IsAJob) -> Reference:
        """:meth:`push_ex` on the caller's sync cursor."""
        return self.sync_push_many_ex(cursor, [job])[0]

    async def push_many(
        self, jobs: Iterable[Job | IsAJob], *, batch_size: int = 1000
    ) -> AsyncIterator[list[Reference]]:
        """Push jobs in batches, each in its own transaction, yielding each batch's references.

        An async generator: nothing is inserted until it is iterated, and the
        next batch is not inserted before the caller asks for it. While a
        batch's rows are being written by the server, the next batch is
        validated and serialised, so Python and PostgreSQL work in parallel.
        """
        jobs = list(jobs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not jobs:
            return
        batches = [jobs[i : i + batch_size] for i in range(0, len(jobs), batch_size)]
        plan = self._plan(batches[0])
        # A plan whose hooks ran but that is not being pushed yet: if the
        # iteration ends first, chancy_jobs_pushed still hears of it.
        waiting: InsertPlan | None = None
        try:
            for index in range(len(batches)):
                sent = asyncio.Event()
                task = asyncio.ensure_future(self._push(None, plan, sent))
                waiting = None
                next_plan: InsertPlan | None = None
                error: Exception | None = None
                try:
                    if index + 1 < len(batches):
                        # Wait until this batch's data is on the wire, then
                        # prepare the next one while the server ingests and
                        # commits it.
                        waiter = asyncio.ensure_future(sent.wait())
                        await asyncio.wait(
                            {task, waiter}, return_when=asyncio.FIRST_COMPLETED
                        )
                        waiter.cancel()
                        try:
                            next_plan = waiting = self._plan(batches[index + 1])
                        except Exception as exc:  # raised once this batch is committed
                            error = exc
                    refs = await task
                finally:
                    if not task.done():  # we were cancelled: so is the batch
                        task.cancel()
                        await asyncio.wait({task})
                yield refs
                if error is not None:
                    raise error
                if next_plan is not None:
                    plan = next_plan
        except BaseException as exc:
            if waiting is not None:
                self._pushed(waiting, None, exc)
            raise

    def sync_push_many(
        self, jobs: Iterable[Job | IsAJob], *, batch_size: int = 1000
    ) -> Iterator[list[Reference]]:
        """:meth:`push_many`, synchronously: a generator of each batch's references."""
        jobs = list(jobs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for start in range(0, len(jobs), batch_size):
            yield self.sync_push_many_ex(None, jobs[start : start + batch_size])

    async def push_many_ex(
        self,
        cursor: AnyCursor | None,
        jobs: Sequence[Job | IsAJob],
    ) -> list[Reference]:
        """Insert every job on the caller's cursor (or connection), in one round trip
        for small batches and with ``COPY`` for large ones.

        Nothing is committed: the jobs, and the notifications waking workers,
        become visible when the caller commits. With ``None``, a pooled
        connection is used and committed. On a connection in autocommit, the
        jobs are written in one transaction of their own.

        A push of thousands of jobs is serialised while it is written, so a
        bad job late in the list is found after the rows before it went to
        the server: it raises the same error, and nothing of the push is
        written (it runs in a savepoint), leaving the caller's transaction
        usable.
        """
        if not jobs:
            return []
        return await self._push(cursor, self._plan(jobs))

    def sync_push_many_ex(
        self, cursor: AnySyncCursor | None, jobs: Sequence[Job | IsAJob]
    ) -> list[Reference]:
        """:meth:`push_many_ex` on the caller's sync cursor (or connection), or,
        with ``None``, on a pooled connection."""
        if not jobs:
            return []
        plan = self._plan(jobs)
        try:
            refs: list[Reference] = self._sync_run(
                self._push_op(plan, on_callers=cursor is not None),
                cursor,
                autocommit=plan.single_statement,
                dicts=False,
            )
        except BaseException as exc:
            self._pushed(plan, None, exc)
            raise
        self._pushed(plan, refs, None)
        return refs

    # ------------------------------------------------------------------
    # Reading and waiting for jobs
    # ------------------------------------------------------------------

    def _get_job_op(self, ref: Reference | uuid.UUID | str) -> Operation:
        row = yield from _ops.fetch_one(self.sql.get_job, (ref_id(ref),))
        return QueuedJob.unpack(row) if row is not None else None

    async def get_job(self, ref: Reference | uuid.UUID | str) -> QueuedJob | None:
        """The job, or ``None`` if it no longer exists (e.g. pruned)."""
        return await self._run(self._get_job_op(ref))  # type: ignore[no-any-return]

    def sync_get_job(self, ref: Reference | uuid.UUID | str) -> QueuedJob | None:
        """:meth:`get_job`, synchronously."""
        return self._sync_run(self._get_job_op(ref))  # type: ignore[no-any-return]

    def _get_jobs_op(self, refs: list[Reference]) -> Operation:
        rows = yield from _ops.fetch_all(
            self.sql.get_jobs, ([ref_id(r) for r in refs],)
        )
        return [QueuedJob.unpack(row) for row in rows]

    async def get_jobs(self, refs: list[Reference]) -> list[QueuedJob]:
        """The existing jobs among ``refs`` (missing ones are omitted), in one query."""
        if not refs:
            return []
        return await self._run(self._get_jobs_op(refs))  # type: ignore[no-any-return]

    def sync_get_jobs(self, refs: list[Reference]) -> list[QueuedJob]:
        """:meth:`get_jobs`, synchronously."""
        self._no_running_loop("get_jobs")
        if not refs:
            return []
        return self._sync_run(self._get_jobs_op(refs))  # type: ignore[no-any-return]

    async def wait_for_job(
        self,
        ref: Reference,
        *,
        interval: float = 1,
        timeout: float | None = None,
        states: set[QueuedJob.State] | None = None,
    ) -> QueuedJob | None:
        """Poll until the job reaches one of ``states`` (default: succeeded or failed).

        Returns ``None`` if the job disappeared.
        :raises TimeoutError: ``timeout`` seconds passed first.
        """
        waiting = _JobWait([ref], states)
        async with asyncio.timeout(timeout):
            while not waiting.done:
                waiting.seen(await self.get_jobs(waiting.pending_refs()))
                if not waiting.done:
                    await asyncio.sleep(interval)
        return waiting.single()

    def sync_wait_for_job(
        self,
        ref: Reference,
        *,
        interval: float = 1,
        timeout: float | None = None,
        states: set[QueuedJob.State] | None = None,
    ) -> QueuedJob | None:
        """:meth:`wait_for_job`, synchronously (sleeps between polls)."""
        self._no_running_loop("wait_for_job")
        waiting = _JobWait([ref], states)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not waiting.done:
            waiting.seen(self.sync_get_jobs(waiting.pending_refs()))
            if not waiting.done:
                _sleep_until(deadline, interval)
        return waiting.single()

    async def wait_for_jobs(
        self,
        refs: list[Reference],
        *,
        interval: float = 1,
        timeout: float | None = None,
        states: set[QueuedJob.State] | None = None,
    ) -> list[QueuedJob]:
        """Poll until every job reached one of ``states``; returns them in the order
        they were seen finishing. Jobs that disappear are dropped from the wait.

        :raises TimeoutError: ``timeout`` seconds passed first.
        """
        waiting = _JobWait(refs, states)
        async with asyncio.timeout(timeout):
            while not waiting.done:
                waiting.seen(await self.get_jobs(waiting.pending_refs()))
                if not waiting.done:
                    await asyncio.sleep(interval)
        return waiting.finished

    def sync_wait_for_jobs(
        self,
        refs: list[Reference],
        *,
        interval: float = 1,
        timeout: float | None = None,
        states: set[QueuedJob.State] | None = None,
    ) -> list[QueuedJob]:
        """:meth:`wait_for_jobs`, synchronously (sleeps between polls)."""
        self._no_running_loop("wait_for_jobs")
        waiting = _JobWait(refs, states)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not waiting.done:
            waiting.seen(self.sync_get_jobs(waiting.pending_refs()))
            if not waiting.done:
                _sleep_until(deadline, interval)
        return waiting.finished

    # ------------------------------------------------------------------
    # Changing jobs
    # ------------------------------------------------------------------

    def _cancel_job_op(self, ref: Reference) -> Operation:
        job_id = ref_id(ref)
        yield _ops.Execute(self.sql.cancel_job, (job_id,))
        if self.notifications:
            yield from _ops.notify_many(
                self.sql, [(events.JOB_CANCELLED.name, {"j": str(job_id)})]
            )

    async def cancel_job(self, ref: Reference) -> None:
        """Cancel a job: a pending job never runs, a running one is interrupted.

        The job ends ``failed`` with an error entry marked ``"cancelled": true``;
        a late result of the interrupted run is discarded.
        """
        await self._run(self._cancel_job_op(ref))

    async def cancel_job_ex(self, cursor: AsyncCursor[Any], ref: Reference) -> None:
        """:meth:`cancel_job` on the caller's cursor."""
        await self._run(self._cancel_job_op(ref), cursor)

    def sync_cancel_job(self, ref: Reference) -> None:
        """:meth:`cancel_job`, synchronously."""
        self._no_running_loop("cancel_job")
        self._sync_run(self._cancel_job_op(ref))

    def sync_cancel_job_ex(self, cursor: Cursor[Any], ref: Reference) -> None:
        """:meth:`cancel_job_ex` on the caller's sync cursor."""
        self._sync_run(self._cancel_job_op(ref), cursor)

    def _purge_jobs_op(self, refs: list[Reference]) -> Operation:
        rows = yield _ops.Execute(
            self.sql.purge_jobs, ([ref_id(r) for r in refs],), fetch="all"
        )
        return [Reference(row["id"]) for row in rows]

    async def purge_jobs(self, refs: list[Reference]) -> list[Reference]:
        """Delete jobs outright; returns the references that existed."""
        return await self._run(self._purge_jobs_op(refs))  # type: ignore[no-any-return]

    async def purge_jobs_ex(
        self, cursor: AsyncCursor[Any], refs: list[Reference]
    ) -> list[Reference]:
        """:meth:`purge_jobs` on the caller's cursor."""
        return await self._run(self._purge_jobs_op(refs), cursor)  # type: ignore[no-any-return]

    def sync_purge_jobs(self, refs: list[Reference]) -> list[Reference]:
        """:meth:`purge_jobs`, synchronously."""
        self._no_running_loop("purge_jobs")
        return self._sync_run(self._purge_jobs_op(refs))  # type: ignore[no-any-return]

    def sync_purge_jobs_ex(
        self, cursor: Cursor[Any], refs: list[Reference]
    ) -> list[Reference]:
        """:meth:`purge_jobs_ex` on the caller's sync cursor."""
        return self._sync_run(self._purge_jobs_op(refs), cursor)  # type: ignore[no-any-return]

    def _retry_jobs_op(self, refs: list[Reference]) -> Operation:
        rows = yield _ops.Execute(
            self.sql.retry_jobs, ([ref_id(r) for r in refs],), fetch="all"
        )
        if self.notifications:
            yield from _ops.notify_many(
                self.sql,
                [
                    (events.QUEUE_PUSHED.name, {"q": q})
                    for q in dict.fromkeys(r["queue"] for r in rows)
                ],
            )
        return [Reference(row["id"]) for row in rows]

    async def retry_jobs(self, refs: list[Reference]) -> list[Reference]:
        """Run finished (or waiting) jobs again from scratch; running jobs are skipped.

        Attempts are reset to 0; the error history is kept.
        """
        return await self._run(self._retry_jobs_op(refs))  # type: ignore[no-any-return]

    async def retry_jobs_ex(
        self, cursor: AsyncCursor[Any], refs: list[Reference]
    ) -> list[Reference]:
        """:meth:`retry_jobs` on the caller's cursor."""
        return await self._run(self._retry_jobs_op(refs), cursor)  # type: ignore[no-any-return]

    def sync_retry_jobs(self, refs: list[Reference]) -> list[Reference]:
        """:meth:`retry_jobs`, synchronously."""
        self._no_running_loop("retry_jobs")
        return self._sync_run(self._retry_jobs_op(refs))  # type: ignore[no-any-return]

    def sync_retry_jobs_ex(
        self, cursor: Cursor[Any], refs: list[Reference]
    ) -> list[Reference]:
        """:meth:`retry_jobs_ex` on the caller's sync cursor."""
        return self._sync_run(self._retry_jobs_op(refs), cursor)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------
    # Workers and notifications
    # ------------------------------------------------------------------

    def _workers_op(self) -> Operation:
        rows = yield from _ops.fetch_all(self.sql.get_all_workers)
        return [
            {**row, "tags": row["tags"] or [], "queues": row["queues"] or []}
            for row in rows
        ]

    async def get_all_workers(self) -> list[dict[str, Any]]:
        """Rows of the workers table, each with an ``is_leader`` flag."""
        return await self._run(self._workers_op())  # type: ignore[no-any-return]

    def sync_get_all_workers(self) -> list[dict[str, Any]]:
        """:meth:`get_all_workers`, synchronously."""
        self._no_running_loop("get_all_workers")
        return self._sync_run(self._workers_op())  # type: ignore[no-any-return]

    def _notify_op(self, events_: list[tuple[str, dict[str, Any]]]) -> Operation:
        if self.notifications:
            yield from _ops.notify_many(self.sql, events_)

    async def notify(
        self, cursor: AsyncCursor[Any], event: str, payload: dict[str, Any]
    ) -> None:
        """Send ``event`` to every worker when the cursor's transaction commits."""
        await self._run(self._notify_op([(event, payload)]), cursor)

    def sync_notify(
        self, cursor: Cursor[Any], event: str, payload: dict[str, Any]
    ) -> None:
        """:meth:`notify` on a sync cursor."""
        self._sync_run(self._notify_op([(event, payload)]), cursor)

    async def notify_many(
        self, cursor: AsyncCursor[Any], events: list[tuple[str, dict[str, Any]]]
    ) -> None:
        """Send several notifications in one statement."""
        await self._run(self._notify_op(events), cursor)

    def sync_notify_many(
        self, cursor: Cursor[Any], events: list[tuple[str, dict[str, Any]]]
    ) -> None:
        """:meth:`notify_many` on a sync cursor."""
        self._sync_run(self._notify_op(events), cursor)

    # ------------------------------------------------------------------
    # Plugins
    # ------------------------------------------------------------------

    def check_plugin_dependencies(self) -> None:
        """Raise :class:`~chancy.errors.PluginDependencyError` naming what to install if a plugin's
        dependency is missing."""
        for identifier, plugin in self.plugins.items():
            if not isinstance(plugin, Plugin):
                continue
            for dependency in plugin.get_dependencies():
                if dependency in self.plugins:
                    continue
                installed = next(
                    (
                        cls
                        for cls in self.plugin_manager.discovered
                        if cls.get_identifier() == dependency
                    ),
                    None,
                )
                dist = plugin.dependency_distributions.get(
                    dependency
                ) or _plugins.plugin_distribution(dependency, installed)
                not_enabled_by_default = self.no_default_plugins or (
                    installed is not None and not installed.is_default()
                )
                hint = (
                    f" Install it with `pip install {dist}`"
                    + (
                        " (or enable it in Chancy(plugins=[...]))"
                        if not_enabled_by_default
                        else ""
                    )
                    if dist
                    else ""
                )
                raise PluginDependencyError(
                    f"the plugin {type(plugin).__name__} ({identifier!r}) needs the plugin"
                    f" {dependency!r}{' from the distribution ' + repr(dist) if dist else ''},"
                    f" which is not enabled.{hint}"
                )


class _JobWait:
    """The bookkeeping of :meth:`Chancy.wait_for_job(s)`, shared by the async and
    sync forms."""

    def __init__(
        self, refs: list[Reference], states: set[QueuedJob.State] | None
    ) -> None:
        self.wanted = (
            _FINISHED if states is None else {QueuedJob.State(s) for s in states}
        )
        self.pending = {ref_id(r) for r in refs}
        self.finished: list[QueuedJob] = []
        self.gone = False

    @property
    def done(self) -> bool:
        return not self.pending

    def pending_refs(self) -> list[Reference]:
        return [Reference(i) for i in self.pending]

    def seen(self, jobs: list[QueuedJob]) -> None:
        present = set()
        for job in sorted(
            jobs, key=lambda j: j.completed_at or datetime.max.replace(tzinfo=UTC)
        ):
            present.add(job.id)
            if job.state in self.wanted:
                self.finished.append(job)
                self.pending.discard(job.id)
        if self.pending - present:
            self.gone = True
        self.pending &= present  # deleted jobs never finish

    def single(self) -> QueuedJob | None:
        """The one job waited for, or ``None`` if it disappeared."""
        return self.finished[0] if self.finished else None


def _sleep_until(deadline: float | None, interval: float) -> None:
    """Sleep ``interval`` seconds, or raise :class:`TimeoutError` at ``deadline``."""
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the jobs did not reach the states waited for in time")
        interval = min(interval, left)
    time.sleep(interval)


def _ref_id(ref: Reference | uuid.UUID | str) -> uuid.UUID:
    """Kept for code that imported it from here; see :func:`chancy._ops.ref_id`."""
    return ref_id(ref)
