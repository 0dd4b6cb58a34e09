"""The :class:`Chancy` application: configuration, pools and the client API."""

from __future__ import annotations

import asyncio
import enum
import functools
import json
import logging
import re
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlencode

import attrs
from psycopg import AsyncConnection, AsyncCursor, Connection, Cursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from chancy import _plugins
from chancy._sql import statements
from chancy.errors import ConfigurationError, PluginDependencyError
from chancy.job import IsAJob, Job, Limit, QueuedJob, Reference, as_job
from chancy.migrate import Migrator
from chancy.plugin import Plugin
from chancy.queue import Queue
from chancy.utils import import_string, json_dumps, uuid7_many

if TYPE_CHECKING:
    from chancy.migrate import Migrator as _Migrator

__all__ = ["Chancy", "DatabaseConnection"]

#: A Django-style ``DATABASES`` entry.
DatabaseConnection = dict[str, Any]

CORE_MIGRATION_KEY = "chancy"

_FINISHED = {QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED}

#: A NUL character in JSON text: ``\u0000`` not itself escaped (``\\u0000``
#: is the text "\u0000", which is fine).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

#: A UTF-16 surrogate escape without its other half (the encoder writes
#: lowercase hex): PostgreSQL's jsonb refuses those. Characters beyond the
#: BMP are escaped as a valid pair (``\ud83d\ude00``) and pass.
_JSON_LONE_SURROGATE = re.compile(
    r"(?<!\\)(?:\\\\)*"
    r"(?:\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})"
    r"|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2})"
)

#: The range of the jobs table's INTEGER columns (priority, max_attempts).
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1

#: Batches of plain (non-unique) jobs at least this large are written with COPY.
COPY_THRESHOLD = 64
#: Rows per ``COPY`` data message: the server parses one chunk while we format
#: the next.
COPY_CHUNK = 250


def _json_default(obj: Any) -> Any:
    """Sets and frozensets are stored as lists (as in the original 0.26)."""
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_json_default)
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)


class _JsonEncoders(threading.local):
    """One C encoder per thread: ``json.dumps(obj, allow_nan=False,
    separators=(",", ":"))`` without the encoder ``JSONEncoder.encode`` builds
    on every call (the larger part of encoding a small ``kwargs`` dict).

    Per thread because the encoder's circular-reference markers are shared by
    its calls; they are cleared after a failed call.
    """

    encode: Callable[[Any], str]

    def __init__(self) -> None:
        if _c_make_encoder is None:  # an interpreter without the C accelerator
            self.encode = _JSON.encode
            return
        markers: dict[int, Any] = {}
        chunks = _c_make_encoder(
            markers,
            _JSON.default,
            json.encoder.encode_basestring_ascii,
            None,  # indent
            ":",
            ",",
            False,  # sort_keys
            False,  # skipkeys
            False,  # allow_nan
        )
        join = "".join

        def encode(obj: Any) -> str:
            try:
                return join(chunks(obj, 0))
            except BaseException:
                markers.clear()
                raise

        self.encode = encode


_json_encoders = _JsonEncoders()


def _encode_json(obj: Any) -> str:
    """``json.dumps(obj, allow_nan=False, separators=(",", ":"))``, faster."""
    return _json_encoders.encode(obj)


#: ``COPY`` text-format escapes (tab, newline, carriage return, backslash).
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(rows: Sequence[tuple[Any, ...]]) -> bytes:
    """Plain-job rows as ``COPY … FROM STDIN`` text-format data.

    Formatting the lines ourselves costs a fraction of psycopg's per-value
    binary dumpers. JSON columns come from :func:`json.dumps` (ASCII, control
    characters escaped), so a backslash is the only character to escape.
    """
    escaped: dict[str, str] = {}

    def text(value: str) -> str:
        out = escaped.get(value)
        if out is None:
            out = escaped[value] = value.translate(_COPY_ESCAPES)
        return out

    lines: list[str] = []
    append = lines.append
    # Jobs made from one template share their scheduled_at object.
    last_when: Any = None
    stamp = ""
    for job_id, queue, func, kwargs, limits, meta, priority, max_attempts, when in rows:
        if "\\" in kwargs:
            kwargs = kwargs.replace("\\", "\\\\")
        if "\\" in meta:
            meta = meta.replace("\\", "\\\\")
        if "\\" in limits:
            limits = limits.replace("\\", "\\\\")
        if when is not last_when:
            last_when, stamp = when, when.isoformat()
        append(
            f"{job_id.hex}\t{text(queue)}\t{text(func)}\t{kwargs}\t{limits}\t{meta}"
            f"\t{priority}\t{max_attempts}\t{stamp}\n"
        )
    return "".join(lines).encode()


class _IdleCheck:
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


_decode_json = json.JSONDecoder().decode


def _load_json(data: Any) -> Any:
    """psycopg's JSON loader without ``json.loads``' encoding sniffing of bytes
    (the server sends UTF-8)."""
    return _decode_json(str(data, "utf-8"))


async def _configure_connection(conn: AsyncConnection[Any]) -> None:
    set_json_loads(_load_json, conn)


def _sync_configure_connection(conn: Connection[Any]) -> None:
    set_json_loads(_load_json, conn)


#: Seconds a pooled connection may sit idle before it is checked on checkout.
IDLE_CHECK_AFTER = 5.0


@functools.lru_cache(maxsize=1024)
def _pushed_payload(queue: str) -> str:
    """The ``queue.pushed`` notification for ``queue`` (the same string every push)."""
    return json_dumps({"t": "queue.pushed", "q": queue})


def _unique_key(row: tuple[Any, ...]) -> str:
    return row[9]  # type: ignore[no-any-return]


@attrs.define(slots=True)
class _InsertPlan:
    #: (id, queue, func, kwargs, limits, meta, priority, max_attempts, scheduled_at)
    plain: list[tuple[Any, ...]]
    #: the same plus unique_key, sorted by key
    unique: list[tuple[Any, ...]]
    refs: list[Reference | None]
    by_key: dict[str, list[int]]
    payloads: list[str]

    @property
    def single_job(self) -> bool:
        """Whether the plan inserts exactly one job (one scalar statement)."""
        return len(self.plain) + len(self.unique) == 1

    def one_job_statement(self, sql: Any) -> tuple[str, tuple[Any, ...]]:
        """The statement and parameters inserting the plan's only job."""
        row = (*self.plain[0], None) if self.plain else self.unique[0]
        if self.payloads:
            return sql.insert_job_notify, (*row, sql.channel, self.payloads[0])
        return sql.insert_job, row

    @property
    def single_statement(self) -> bool:
        """Whether :meth:`Chancy._insert` writes everything in one statement."""
        return (not self.plain) != (not self.unique) and len(
            self.plain
        ) < COPY_THRESHOLD


def _check_escapes(func: str, kw: str, meta_text: str) -> None:
    """Refuse JSON text that PostgreSQL's jsonb cannot hold: a NUL character,
    or half of a UTF-16 surrogate pair."""
    for what, text in (("kwargs", kw), ("meta", meta_text)):
        if "\\u0000" in text and _JSON_NUL.search(text):
            raise ValueError(
                f"cannot store job {func!r}: its {what} contain a NUL character"
                " (\\x00), which PostgreSQL cannot store"
            )
        if "\\ud" in text and _JSON_LONE_SURROGATE.search(text):
            raise ValueError(
                f"cannot store job {func!r}: its {what} contain a lone UTF-16"
                " surrogate (a character from U+D800 to U+DFFF without its pair),"
                " which PostgreSQL cannot store"
            )


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False, default=_json_default)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _dsn_from_django(settings: dict[str, Any]) -> str:
    user = settings.get("USER") or ""
    password = settings.get("PASSWORD") or ""
    host = settings.get("HOST") or ""
    port = str(settings.get("PORT") or "5432")
    name = quote(str(settings.get("NAME") or ""), safe="")
    auth = ""
    if user:
        # Percent-encoded, not plus-quoted as in the original: libpq does not
        # decode "+", so a password with a space would not authenticate.
        auth = quote(user, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        auth += "@"
    if host.startswith("/"):
        # A Unix-socket directory: percent-encoded, as libpq URIs require.
        host = quote(host, safe="")
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    netloc = f"{auth}{host}:{port}" if host else auth
    dsn = f"postgresql://{netloc}/{name}"
    options = settings.get("OPTIONS") or {}
    if options:
        dsn += "?" + urlencode(options)
    return dsn


def _default_logger() -> logging.Logger:
    log = logging.getLogger("chancy")
    if not log.handlers:
        log.setLevel(logging.INFO)
        try:
            from rich.logging import RichHandler  # type: ignore[import-not-found]

            handler: logging.Handler = RichHandler(rich_tracebacks=True)
        except ImportError:
            handler = logging.StreamHandler()
            handler.setFormatter(
                logging.Formatter(
                    "[%(asctime)s][%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S"
                )
            )
        log.addHandler(handler)
    return log


class Chancy:
    """A Chancy application: where the database is and which plugins run.

    :param dsn: a libpq connection string or URI, or a Django ``DATABASES`` entry.
    :param plugins: plugin instances; they replace default plugins with the same
        identifier.
    :param prefix: prepended to every table, index and the notification channel.
    :param min_connection_pool_size: ``min_size`` of the connection pools.
    :param max_connection_pool_size: ``max_size`` of the connection pools.
    :param poll_reconnect_timeout: seconds the pools keep trying to reconnect.
    :param notifications: send NOTIFY and LISTEN (turn off behind pgbouncer in
        transaction mode; workers then rely on polling).
    :param log: the logger to use (default: the ``chancy`` logger).
    :param no_default_plugins: do not enable the installed default plugins.
    :param pool: an existing :class:`psycopg_pool.AsyncConnectionPool` to use
        instead of creating one (ours: the original has no such argument).
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
        plugins: list[Plugin] | None = None,
        prefix: str = "chancy_",
        min_connection_pool_size: int = 1,
        max_connection_pool_size: int = 10,
        poll_reconnect_timeout: int = 300,
        notifications: bool = True,
        log: logging.Logger | None = None,
        no_default_plugins: bool = False,
        pool: AsyncConnectionPool[Any] | None = None,
    ) -> None:
        if dsn is None and pool is None:
            raise ConfigurationError("Chancy() needs a dsn (or an existing pool=)")
        if isinstance(dsn, dict):
            dsn = _dsn_from_django(dsn)
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
            raise ConfigurationError(f"invalid PostgreSQL DSN: {exc}") from None
        if min_connection_pool_size < 0 or max_connection_pool_size < max(
            1, min_connection_pool_size
        ):
            raise ConfigurationError(
                "connection pool sizes must satisfy 0 <= min <= max and max >= 1, got "
                f"min={min_connection_pool_size}, max={max_connection_pool_size}"
            )
        self.dsn: str = dsn
        self.prefix = prefix
        self.sql = statements(prefix)  # validates the prefix
        self.min_connection_pool_size = min_connection_pool_size
        self.max_connection_pool_size = max_connection_pool_size
        self.poll_reconnect_timeout = poll_reconnect_timeout
        self.notifications = notifications
        self.log = log or _default_logger()
        self.no_default_plugins = no_default_plugins

        self._pool: AsyncConnectionPool[Any] | None = pool
        self._external_pool = pool is not None
        self._sync_pool: ConnectionPool[Any] | None = None
        self._open_lock: asyncio.Lock | None = None
        self._idle_check = _IdleCheck(IDLE_CHECK_AFTER)

        self.plugin_manager = _plugins.PluginManager()
        discovered = self.plugin_manager.discover()
        self.plugins: dict[str, Plugin] = {}
        for plugin in plugins or []:
            identifier = plugin.get_identifier() if isinstance(plugin, Plugin) else None
            if identifier is None:
                identifier = (
                    getattr(plugin, "__name__", None)
                    or f"{type(plugin).__module__}.{type(plugin).__qualname__}"
                )
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
            order = {ident: i for i, ident in enumerate(_plugins.DEFAULT_ORDER)}
            defaults.sort(
                key=lambda c: (
                    order.get(c.get_identifier(), len(order)),
                    c.get_identifier(),
                )
            )
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
                configure=_configure_connection,
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
                configure=_sync_configure_connection,
            )
        return self._sync_pool

    async def ensure_open(self) -> AsyncConnectionPool[Any]:
        """Open the async pool if needed, failing fast with a clear error."""
        pool = self.pool
        if not pool.closed:
            return pool
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if pool.closed:
                # One direct connection first: a wrong DSN or a server that is
                # down fails at once with libpq's own message, not a pool timeout.
                try:
                    conn = await AsyncConnection.connect(self.dsn)
                    await conn.close()
                except Exception as exc:
                    raise ConnectionError(
                        f"cannot connect to PostgreSQL: {exc}"
                    ) from exc
                await pool.open(wait=True, timeout=30)
        return self.pool

    def sync_ensure_open(self) -> ConnectionPool[Any]:
        pool = self.sync_pool
        if pool.closed:
            try:
                Connection.connect(self.dsn).close()
            except Exception as exc:
                raise ConnectionError(f"cannot connect to PostgreSQL: {exc}") from exc
            pool.open(wait=True, timeout=30)
        return self.sync_pool

    async def __aenter__(self) -> Chancy:
        await self.ensure_open()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
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
    # Migrations
    # ------------------------------------------------------------------

    def core_migrator(self) -> Migrator:
        return Migrator(CORE_MIGRATION_KEY, "chancy.migrations", prefix=self.prefix)

    def migrators(self) -> list[_Migrator]:
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
        migrators = self.migrators()
        if to_version is not None and to_version < self.core_migrator().latest_version:
            migrators = migrators[1:][::-1] + migrators[:1]
        async with self.pool.connection() as conn:
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

    async def is_up_to_date(self) -> bool:
        """Whether core and every plugin's tables are at their latest version."""
        await self.ensure_open()
        async with self.pool.connection() as conn, conn.cursor() as cursor:
            for migrator in self.migrators():
                if await migrator.is_migration_required(cursor):
                    return False
        return True

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
        )

    async def declare(self, queue: Queue, *, upsert: bool = False) -> Queue:
        """Create ``queue``; if it exists keep it as is, or overwrite it with ``upsert``.

        Returns the queue as stored. Running workers pick the change up at once.
        """
        await self.ensure_open()
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            stored = await self.declare_ex(cursor, queue, upsert=upsert)
            await self.notify(cursor, "queue.declared", {"q": queue.name})
        return stored

    async def declare_ex(
        self, cursor: AsyncCursor[Any], queue: Queue, *, upsert: bool = False
    ) -> Queue:
        """:meth:`declare` on the caller's cursor (no notification, no commit)."""
        params = self._queue_params(queue)
        await cursor.execute(
            self.sql.upsert_queue if upsert else self.sql.declare_queue, params
        )
        row = await cursor.fetchone()
        # Both statements end in RETURNING * after an upsert: always one row.
        return Queue.unpack(cast("dict[str, Any]", row))

    def sync_declare(self, queue: Queue, *, upsert: bool = False) -> Queue:
        self.sync_ensure_open()
        with (
            self.sync_pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            stored = self.sync_declare_ex(cursor, queue, upsert=upsert)
            self.sync_notify(cursor, "queue.declared", {"q": queue.name})
        return stored

    def sync_declare_ex(
        self, cursor: Cursor[Any], queue: Queue, *, upsert: bool = False
    ) -> Queue:
        params = self._queue_params(queue)
        cursor.execute(
            self.sql.upsert_queue if upsert else self.sql.declare_queue, params
        )
        # Both statements end in RETURNING * after an upsert: always one row.
        return Queue.unpack(cast("dict[str, Any]", cursor.fetchone()))

    async def get_all_queues(self) -> list[Queue]:
        """Every declared queue, whatever its state."""
        await self.ensure_open()
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(self.sql.get_all_queues)
            return [Queue.unpack(row) for row in await cursor.fetchall()]

    async def get_queue(self, name: str) -> Queue:
        """The queue named ``name``. :raises KeyError: no such queue."""
        await self.ensure_open()
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(self.sql.get_queue, (name,))
            row = await cursor.fetchone()
        if row is None:
            raise KeyError(f"no queue named {name!r}")
        return Queue.unpack(row)

    async def delete_queue(self, name: str, *, purge_jobs: bool = True) -> None:
        """Delete the queue (and by default every job in it)."""
        await self.ensure_open()
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await self.delete_queue_ex(cursor, name, purge_jobs=purge_jobs)

    async def delete_queue_ex(
        self, cursor: AsyncCursor[Any], name: str, *, purge_jobs: bool = True
    ) -> None:
        await cursor.execute(self.sql.delete_queue, (name,))
        if purge_jobs:
            await cursor.execute(self.sql.delete_queue_jobs, (name,))
        await self.notify(cursor, "queue.deleted", {"q": name})

    async def pause_queue(
        self, name: str, *, resume_at: datetime | timedelta | None = None
    ) -> None:
        """Stop fetching from the queue (running jobs continue), optionally until ``resume_at``."""
        await self.ensure_open()
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await self.pause_queue_ex(cursor, name, resume_at=resume_at)

    async def pause_queue_ex(
        self,
        cursor: AsyncCursor[Any],
        name: str,
        *,
        resume_at: datetime | timedelta | None = None,
    ) -> None:
        if isinstance(resume_at, timedelta):
            resume_at = datetime.now(UTC) + resume_at
        await cursor.execute(self.sql.pause_queue, (resume_at, name))
        if await cursor.fetchone() is None:
            raise KeyError(f"no queue named {name!r}")
        await self.notify(cursor, "queue.paused", {"q": name})

    async def resume_queue(self, name: str) -> None:
        """Make a paused queue active again."""
        await self.ensure_open()
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await self.resume_queue_ex(cursor, name)

    async def resume_queue_ex(self, cursor: AsyncCursor[Any], name: str) -> None:
        await cursor.execute(self.sql.resume_queue, (name,))
        if await cursor.fetchone() is None:
            raise KeyError(f"no queue named {name!r}")
        await self.notify(cursor, "queue.resumed", {"q": name})

    # ------------------------------------------------------------------
    # Pushing jobs
    # ------------------------------------------------------------------

    def _serialise(self, jobs: Iterable[Job | IsAJob]) -> _InsertPlan:
        """Validate and serialise jobs; raises before anything is written.

        Hot path of bulk pushes (a few microseconds per job): valid jobs take
        one chain of exact-type checks; anything else goes through
        :meth:`_check_job`, which accepts subclasses and names the problem.
        Ids are UUIDv7s in the order of ``jobs``.
        """
        jobs = jobs if isinstance(jobs, list) else list(jobs)
        ids = uuid7_many(len(jobs))
        plain: list[tuple[Any, ...]] = []
        unique: list[tuple[Any, ...]] = []
        refs: list[Reference | None] = [None] * len(jobs)
        by_key: dict[str, list[int]] = {}
        queues: dict[str, None] = {}
        dumps = _json_encoders.encode
        # Jobs made from one template share their meta and limits objects.
        meta_obj: Any = None
        meta_text = "{}"
        for index, obj in enumerate(jobs):
            job = obj if type(obj) is Job else as_job(obj)
            func = job.func
            queue = job.queue
            kwargs = job.kwargs
            meta = job.meta
            priority = job.priority
            max_attempts = job.max_attempts
            when = job.scheduled_at
            if not (
                type(func) is str
                and "." in func
                and func[0] != "."
                and func[-1] != "."
                and ".." not in func
                and type(queue) is str
                and queue
                and type(kwargs) is dict
                and type(meta) is dict
                and type(priority) is int
                and type(max_attempts) is int
                and _INT_MIN <= priority <= _INT_MAX
                and 1 <= max_attempts <= _INT_MAX
                and type(when) is datetime
                and "\x00" not in func
                and "\x00" not in queue
            ):
                self._check_job(job)
            try:
                kw = dumps(kwargs) if kwargs else "{}"
                if meta is not meta_obj:
                    meta_text = dumps(meta) if meta else "{}"
                    meta_obj = meta
            except (TypeError, ValueError) as exc:
                what = "kwargs" if kwargs and not _is_json(kwargs) else "meta"
                raise TypeError(
                    f"cannot store job {func!r}: its {what} is not JSON-serialisable ({exc})"
                ) from None
            except RecursionError:
                what = "kwargs" if kwargs and not _is_json(kwargs) else "meta"
                raise ValueError(
                    f"cannot store job {func!r}: its {what} is nested too deeply to be"
                    " stored as JSON"
                ) from None
            if "\\u" in kw or "\\u" in meta_text:
                # Escapes (all non-ASCII text): one search on the hot path.
                _check_escapes(func, kw, meta_text)
            for name in kwargs:
                if type(name) is not str:
                    raise TypeError(
                        f"cannot store job {func!r}: kwargs must have string keys"
                    )
            limits = self._limits_text(job) if job.limits else "[]"
            if queue not in queues:
                queues[queue] = None
            key = job.unique_key
            if key is None:
                job_id = ids[index]
                refs[index] = Reference(job_id)
                plain.append(
                    (
                        job_id,
                        queue,
                        func,
                        kw,
                        limits,
                        meta_text,
                        priority,
                        max_attempts,
                        when,
                    )
                )
            elif not isinstance(key, str):
                raise TypeError(f"job {func!r}: unique_key must be a string or None")
            elif "\x00" in key:
                raise ValueError(
                    f"job {func!r}: unique_key must not contain NUL characters (\\x00)"
                )
            elif key in by_key:
                by_key[key].append(index)  # same key twice in one call: one job
            else:
                by_key[key] = [index]
                unique.append(
                    (ids[index], queue, func, kw, limits, meta_text, priority,
                     max_attempts, when, key)
                )  # fmt: skip
        # Lock unique keys in a stable order so concurrent pushes cannot deadlock.
        unique.sort(key=_unique_key)
        payloads = [_pushed_payload(q) for q in queues] if self.notifications else []
        return _InsertPlan(plain, unique, refs, by_key, payloads)

    def check_job(self, job: Job | IsAJob) -> Job:
        """Raise the error :meth:`push` would raise for ``job``; write nothing.

        For code that stores a job to push it later (cron schedules, workflow
        steps): a job that :meth:`push` would refuse is then refused when it
        is stored, instead of failing every time it is due. Returns the
        :class:`Job` (the template of a function decorated with :func:`job`).

        :raises TypeError: a field has the wrong type, or the kwargs or meta
            cannot be stored as JSON.
        :raises ValueError: a value that cannot be stored (out of range, a NUL
            character, half of a surrogate pair, nested too deeply, ...).
        """
        resolved = as_job(job)
        self._serialise([resolved])
        return resolved

    @staticmethod
    def _limits_text(job: Job) -> str:
        limits = job.limits
        if not isinstance(limits, list | tuple) or not all(
            isinstance(limit, Limit) for limit in limits
        ):
            raise TypeError(
                f"job {job.func!r}: limits must be a list of chancy.Limit, got {limits!r}"
            )
        return _json_encoders.encode([limit.serialize() for limit in limits])

    @staticmethod
    def _check_job(job: Job) -> None:
        """Raise the error naming what is wrong with ``job``'s fields, if anything is."""
        func = job.func
        if not isinstance(func, str) or "." not in func or not all(func.split(".")):
            raise ValueError(
                f"job func must be an import path like 'module.function', got {func!r}"
            )
        queue = job.queue
        if not isinstance(queue, str) or not queue:
            raise ValueError(
                f"job {func!r}: queue must be a non-empty string, got {queue!r}"
            )
        if "\x00" in func or "\x00" in queue:
            raise ValueError(
                f"job {func!r}: func and queue must not contain NUL characters (\\x00)"
            )
        if type(job.kwargs) is not dict:
            raise TypeError(f"cannot store job {func!r}: kwargs must be a dict")
        if not isinstance(job.meta, dict):
            raise TypeError(
                f"cannot store job {func!r}: meta must be a dict, got"
                f" {type(job.meta).__name__}"
            )
        priority, max_attempts = job.priority, job.max_attempts
        if type(priority) is not int:
            raise TypeError(f"job {func!r}: priority must be an int, got {priority!r}")
        if not _INT_MIN <= priority <= _INT_MAX:
            raise ValueError(
                f"job {func!r}: priority must fit in 32 bits"
                f" ({_INT_MIN}..{_INT_MAX}), got {priority!r}"
            )
        if type(max_attempts) is not int or not 1 <= max_attempts <= _INT_MAX:
            raise ValueError(
                f"job {func!r}: max_attempts must be an int from 1 to {_INT_MAX},"
                f" got {max_attempts!r}"
            )
        if not isinstance(job.scheduled_at, datetime):
            raise TypeError(f"job {func!r}: scheduled_at must be a datetime")

    def _columns(self, rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
        columns = list(zip(*rows, strict=True))
        return tuple(list(c) for c in columns)

    @staticmethod
    def _finish_refs(plan: _InsertPlan, rows: list[Any]) -> list[Reference]:
        refs = plan.refs
        if plan.by_key:
            for row in rows:
                job_id, key = (
                    (row["id"], row["unique_key"]) if isinstance(row, dict) else row
                )
                for index in plan.by_key.get(key, ()):
                    refs[index] = Reference(job_id)
        return refs  # type: ignore[return-value]

    async def push(self, job: Job | IsAJob) -> Reference:
        """Push one job; returns its reference.

        For a unique job whose key is held by an unfinished job, nothing is
        inserted and that job's reference is returned.
        """
        return (await self.push_many_ex(None, [job]))[0]

    async def push_ex(self, cursor: AsyncCursor[Any], job: Job | IsAJob) -> Reference:
        """:meth:`push` on the caller's cursor: visible when the caller commits."""
        return (await self.push_many_ex(cursor, [job]))[0]

    def sync_push(self, job: Job | IsAJob) -> Reference:
        return self.sync_push_many_ex(None, [job])[0]

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
        plan = self._serialise(batches[0])
        for index in range(len(batches)):
            sent = asyncio.Event()
            task = asyncio.ensure_future(self._push_plan(None, plan, sent))
            next_plan: _InsertPlan | None = None
            error: Exception | None = None
            try:
                if index + 1 < len(batches):
                    # Wait until this batch's data is on the wire, then prepare
                    # the next one while the server ingests and commits it.
                    waiter = asyncio.ensure_future(sent.wait())
                    await asyncio.wait(
                        {task, waiter}, return_when=asyncio.FIRST_COMPLETED
                    )
                    waiter.cancel()
                    try:
                        next_plan = self._serialise(batches[index + 1])
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

    def sync_push_many(
        self, jobs: Iterable[Job | IsAJob], *, batch_size: int = 1000
    ) -> Iterator[list[Reference]]:
        jobs = list(jobs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for start in range(0, len(jobs), batch_size):
            yield self.sync_push_many_ex(None, jobs[start : start + batch_size])

    async def push_many_ex(
        self,
        cursor: AsyncCursor[Any] | AsyncConnection[Any] | None,
        jobs: Sequence[Job | IsAJob],
    ) -> list[Reference]:
        """Insert every job on the caller's cursor (or connection), in one round trip
        for small batches and with ``COPY`` for large ones.

        Nothing is committed: the jobs, and the notifications waking workers,
        become visible when the caller commits. With ``None``, a pooled
        connection is used and committed.
        """
        if not jobs:
            return []
        return await self._push_plan(cursor, self._serialise(jobs))

    async def _push_plan(
        self,
        cursor: AsyncCursor[Any] | AsyncConnection[Any] | None,
        plan: _InsertPlan,
        sent: asyncio.Event | None = None,
    ) -> list[Reference]:
        if cursor is None:
            await self.ensure_open()
            async with self.pool.connection() as conn:
                if plan.single_statement:
                    # One statement is atomic on its own: skip BEGIN/COMMIT.
                    await conn.set_autocommit(True)
                    try:
                        async with conn.cursor() as cur:
                            rows = await self._insert(cur, plan, sent)
                    finally:
                        await conn.set_autocommit(False)
                else:
                    async with conn.cursor() as cur:
                        rows = await self._insert(cur, plan, sent)
        elif isinstance(cursor, AsyncConnection):
            async with cursor.cursor() as cur:
                rows = await self._insert(cur, plan, sent)
        else:
            rows = await self._insert(cursor, plan, sent)
        return self._finish_refs(plan, rows)

    async def _insert(
        self,
        cur: AsyncCursor[Any],
        plan: _InsertPlan,
        sent: asyncio.Event | None = None,
    ) -> list[Any]:
        """Write the plan; ``sent`` is set once the bulk of the data is on the wire."""
        sql = self.sql
        rows: list[Any] = []
        if plan.single_job:
            # Scalar parameters: binding one-element arrays costs more (see _sql).
            await cur.execute(*plan.one_job_statement(sql), prepare=True)
            return await cur.fetchall() if plan.unique else []
        notified = False
        if len(plan.plain) >= COPY_THRESHOLD:
            plain = plan.plain
            async with cur.copy(sql.copy_jobs) as copy:
                for start in range(0, len(plain), COPY_CHUNK):
                    await copy.write(_copy_text(plain[start : start + COPY_CHUNK]))
                if sent is not None:
                    sent.set()
        elif plan.plain:
            params = self._columns([(*r, None) for r in plan.plain])
            if plan.payloads and not plan.unique:
                await cur.execute(
                    sql.insert_jobs_notify, (*params, sql.channel, plan.payloads)
                )
                notified = True
            else:
                await cur.execute(sql.insert_jobs, params)
        if plan.unique:
            params = self._columns(plan.unique)
            if plan.payloads and not notified:
                await cur.execute(
                    sql.insert_jobs_notify, (*params, sql.channel, plan.payloads)
                )
                notified = True
            else:
                await cur.execute(sql.insert_jobs, params)
            rows = await cur.fetchall()
        if plan.payloads and not notified:
            await cur.execute(sql.notify_many, (sql.channel, plan.payloads))
        return rows

    def sync_push_many_ex(
        self, cursor: Cursor[Any] | Connection[Any] | None, jobs: Sequence[Job | IsAJob]
    ) -> list[Reference]:
        if not jobs:
            return []
        plan = self._serialise(jobs)
        if cursor is None:
            self.sync_ensure_open()
            with self.sync_pool.connection() as conn:
                # One statement is atomic on its own: skip BEGIN/COMMIT.
                single = plan.single_job
                if single:
                    conn.autocommit = True
                try:
                    with conn.cursor() as cur:
                        rows = self._sync_insert(cur, plan)
                finally:
                    if single:
                        conn.autocommit = False
        elif isinstance(cursor, Connection):
            with cursor.cursor() as cur:
                rows = self._sync_insert(cur, plan)
        else:
            rows = self._sync_insert(cursor, plan)
        return self._finish_refs(plan, rows)

    def _sync_insert(self, cur: Cursor[Any], plan: _InsertPlan) -> list[Any]:
        sql = self.sql
        if plan.single_job:
            cur.execute(*plan.one_job_statement(sql), prepare=True)
            return cur.fetchall() if plan.unique else []
        if plan.plain:
            plain = plan.plain
            with cur.copy(sql.copy_jobs) as copy:
                for start in range(0, len(plain), COPY_CHUNK):
                    copy.write(_copy_text(plain[start : start + COPY_CHUNK]))
        rows: list[Any] = []
        if plan.unique:
            cur.execute(sql.insert_jobs, self._columns(plan.unique))
            rows = cur.fetchall()
        if plan.payloads:
            cur.execute(sql.notify_many, (sql.channel, plan.payloads))
        return rows

    # ------------------------------------------------------------------
    # Reading and waiting for jobs
    # ------------------------------------------------------------------

    async def get_job(self, ref: Reference | uuid.UUID | str) -> QueuedJob | None:
        """The job, or ``None`` if it no longer exists (e.g. pruned)."""
        await self.ensure_open()
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(self.sql.get_job, (_ref_id(ref),))
            row = await cursor.fetchone()
        return QueuedJob.unpack(row) if row is not None else None

    def sync_get_job(self, ref: Reference | uuid.UUID | str) -> QueuedJob | None:
        self.sync_ensure_open()
        with (
            self.sync_pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            cursor.execute(self.sql.get_job, (_ref_id(ref),))
            row = cursor.fetchone()
        return QueuedJob.unpack(row) if row is not None else None

    async def get_jobs(self, refs: list[Reference]) -> list[QueuedJob]:
        """The existing jobs among ``refs`` (missing ones are omitted), in one query."""
        if not refs:
            return []
        await self.ensure_open()
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(self.sql.get_jobs, ([_ref_id(r) for r in refs],))
            return [QueuedJob.unpack(row) for row in await cursor.fetchall()]

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
        wanted = _FINISHED if states is None else {QueuedJob.State(s) for s in states}

        async def poll() -> QueuedJob | None:
            while True:
                job = await self.get_job(ref)
                if job is None or job.state in wanted:
                    return job
                await asyncio.sleep(interval)

        if timeout is None:
            return await poll()
        async with asyncio.timeout(timeout):
            return await poll()

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
        wanted = _FINISHED if states is None else {QueuedJob.State(s) for s in states}
        pending = {_ref_id(r) for r in refs}
        done: list[QueuedJob] = []

        async def poll() -> list[QueuedJob]:
            while pending:
                jobs = await self.get_jobs([Reference(i) for i in pending])
                seen = set()
                for job in sorted(
                    jobs,
                    key=lambda j: j.completed_at or datetime.max.replace(tzinfo=UTC),
                ):
                    seen.add(job.id)
                    if job.state in wanted:
                        done.append(job)
                        pending.discard(job.id)
                pending.intersection_update(seen)  # deleted jobs never finish
                if pending:
                    await asyncio.sleep(interval)
            return done

        if timeout is None:
            return await poll()
        async with asyncio.timeout(timeout):
            return await poll()

    # ------------------------------------------------------------------
    # Changing jobs
    # ------------------------------------------------------------------

    async def cancel_job(self, ref: Reference) -> None:
        """Cancel a job: a pending job never runs, a running one is interrupted.

        The job ends ``failed`` with an error entry marked ``"cancelled": true``;
        a late result of the interrupted run is discarded.
        """
        await self.ensure_open()
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await self.cancel_job_ex(cursor, ref)

    async def cancel_job_ex(self, cursor: AsyncCursor[Any], ref: Reference) -> None:
        job_id = _ref_id(ref)
        await cursor.execute(self.sql.cancel_job, (job_id,))
        await self.notify(cursor, "job.cancelled", {"j": str(job_id)})

    async def purge_jobs(self, refs: list[Reference]) -> list[Reference]:
        """Delete jobs outright; returns the references that existed."""
        await self.ensure_open()
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            return await self.purge_jobs_ex(cursor, refs)

    async def purge_jobs_ex(
        self, cursor: AsyncCursor[Any], refs: list[Reference]
    ) -> list[Reference]:
        await cursor.execute(self.sql.purge_jobs, ([_ref_id(r) for r in refs],))
        return [Reference(row["id"]) for row in await cursor.fetchall()]

    async def retry_jobs(self, refs: list[Reference]) -> list[Reference]:
        """Run finished (or waiting) jobs again from scratch; running jobs are skipped.

        Attempts are reset to 0; the error history is kept.
        """
        await self.ensure_open()
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            return await self.retry_jobs_ex(cursor, refs)

    async def retry_jobs_ex(
        self, cursor: AsyncCursor[Any], refs: list[Reference]
    ) -> list[Reference]:
        await cursor.execute(self.sql.retry_jobs, ([_ref_id(r) for r in refs],))
        rows = await cursor.fetchall()
        await self.notify_many(
            cursor,
            [
                ("queue.pushed", {"q": q})
                for q in dict.fromkeys(r["queue"] for r in rows)
            ],
        )
        return [Reference(row["id"]) for row in rows]

    # ------------------------------------------------------------------
    # Workers and notifications
    # ------------------------------------------------------------------

    async def get_all_workers(self) -> list[dict[str, Any]]:
        """Rows of the workers table, each with an ``is_leader`` flag."""
        await self.ensure_open()
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(self.sql.get_all_workers)
            return [
                {**row, "tags": row["tags"] or [], "queues": row["queues"] or []}
                for row in await cursor.fetchall()
            ]

    async def notify(
        self, cursor: AsyncCursor[Any], event: str, payload: dict[str, Any]
    ) -> None:
        """Send ``event`` to every worker when the cursor's transaction commits."""
        if not self.notifications:
            return
        await cursor.execute(
            self.sql.notify, (self.sql.channel, json_dumps({"t": event, **payload}))
        )

    def sync_notify(
        self, cursor: Cursor[Any], event: str, payload: dict[str, Any]
    ) -> None:
        if not self.notifications:
            return
        cursor.execute(
            self.sql.notify, (self.sql.channel, json_dumps({"t": event, **payload}))
        )

    async def notify_many(
        self, cursor: AsyncCursor[Any], events: list[tuple[str, dict[str, Any]]]
    ) -> None:
        """Send several notifications in one statement."""
        if not self.notifications or not events:
            return
        await cursor.execute(
            self.sql.notify_many,
            (self.sql.channel, [json_dumps({"t": e, **p}) for e, p in events]),
        )

    # ------------------------------------------------------------------
    # Plugins
    # ------------------------------------------------------------------

    def check_plugin_dependencies(self) -> None:
        """Raise :class:`PluginDependencyError` naming what to install if a plugin's
        dependency is missing."""
        for identifier, plugin in self.plugins.items():
            if not isinstance(plugin, Plugin):
                continue
            for dependency in plugin.get_dependencies():
                if dependency in self.plugins:
                    continue
                dist = _plugins.plugin_distribution(dependency)
                hint = (
                    f" Install it with `pip install {dist}`"
                    + (
                        " (or enable it in Chancy(plugins=[...]))"
                        if self.no_default_plugins
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


def _ref_id(ref: Reference | uuid.UUID | str) -> uuid.UUID:
    if isinstance(ref, Reference):
        return ref.identifier
    if isinstance(ref, uuid.UUID):
        return ref
    return uuid.UUID(str(ref))
