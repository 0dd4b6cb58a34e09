"""The :class:`Trigger` plugin: PostgreSQL triggers that push a job when a table changes."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Final

import attrs
from psycopg import AsyncConnection, AsyncCursor, errors, pq, sql
from psycopg.rows import dict_row

from chancy.errors import ChancyError, ConfigurationError, MigrationsNeededError
from chancy.job import IsAJob, Job, Limit, as_job
from chancy.plugin import Plugin
from chancy.utils import uuid7

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = ["OPERATIONS", "Trigger", "TriggerConfig", "UnknownTriggerError"]

IDENTIFIER: Final = "chancy.trigger"
DISTRIBUTION: Final = "chancy-trigger"

#: The operations a trigger can fire on, in the order they are stored.
OPERATIONS: Final = ("INSERT", "UPDATE", "DELETE")
#: The key of the pushed job's ``meta`` that describes the statement.
META_KEY: Final = "trigger"
#: Database triggers are named this plus the 32 hex digits of their id.
TRIGGER_NAME_PREFIX: Final = "chancy_trigger_"

#: PostgreSQL truncates longer names, so no relation can have one.
_MAX_NAME_BYTES: Final = 63
_INT4 = range(-(2**31), 2**31)
_RELKINDS: Final = {
    "v": "a view",
    "m": "a materialized view",
    "f": "a foreign table",
    "i": "an index",
    "I": "an index",
    "S": "a sequence",
    "c": "a composite type",
    "t": "a TOAST table",
}
_COLUMNS: Final = (
    "id",
    "trigger_name",
    "schema_name",
    "table_name",
    "operations",
    "job_template",
    "enabled",
    "installed",
    "created_at",
    "updated_at",
)


class UnknownTriggerError(ChancyError, LookupError):
    """No trigger is registered with the given id."""


@attrs.frozen(kw_only=True)
class TriggerConfig:
    """A registered trigger, as :meth:`Trigger.get_triggers` returns it."""

    #: The id :meth:`Trigger.register_trigger` returned.
    id: uuid.UUID
    #: The name of the trigger in the database (``chancy_trigger_<hex id>``).
    trigger_name: str
    #: The schema of the table; its current one if the table was moved.
    schema_name: str
    #: The table; its current name if it was renamed.
    table_name: str
    #: The operations that fire it, among ``INSERT``, ``UPDATE``, ``DELETE``.
    operations: tuple[str, ...]
    #: The job pushed each time it fires, as registered (its ``scheduled_at``
    #: is not used: each job is scheduled when its statement ran).
    job_template: Job
    #: A disabled trigger stays installed but pushes nothing.
    enabled: bool
    #: Whether the database trigger exists; ``False`` once its table was
    #: dropped (:meth:`Trigger.unregister_trigger` then removes the record).
    installed: bool
    created_at: datetime
    updated_at: datetime


class _Statements:
    """The statements of one table prefix."""

    __slots__ = (
        "context",
        "delete",
        "insert",
        "locate",
        "lock",
        "select",
        "set_enabled",
    )

    def __init__(self, prefix: str) -> None:
        table = sql.Identifier(f"{prefix}triggers")
        # Where the plugin's objects are (the schema of the table, as the
        # session resolves unqualified names, like every other statement),
        # whether the trigger function exists, and the jobs table's oid.
        self.context = sql.SQL(
            "SELECT n.nspname AS schema_name,"
            " pg_catalog.to_regclass(%(jobs)s)::oid AS jobs_oid,"
            " EXISTS (SELECT 1 FROM pg_catalog.pg_proc p"
            " WHERE p.pronamespace = n.oid AND p.proname = %(fire)s) AS has_fire"
            " FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = pg_catalog.to_regclass(%(triggers)s)"
        )
        self.insert = sql.SQL(
            "INSERT INTO {t} (id, trigger_name, schema_name, table_name, operations,"
            " job_template, enabled, notify_channel)"
            " VALUES (%s, %s, %s, %s, %s::text[], %s::jsonb, %s, %s)"
        ).format(t=table)
        self.lock = sql.SQL(
            "SELECT id, trigger_name FROM {t} WHERE id = %s FOR UPDATE"
        ).format(t=table)
        self.delete = sql.SQL("DELETE FROM {t} WHERE id = %s").format(t=table)
        self.set_enabled = sql.SQL(
            "UPDATE {t} SET enabled = %s, updated_at = NOW() WHERE id = %s RETURNING id"
        ).format(t=table)
        # Trigger names embed a UUID, so a name identifies one trigger
        # wherever its table now is.
        self.locate = sql.SQL(
            "SELECT n.nspname AS schema_name, c.relname AS table_name"
            " FROM pg_catalog.pg_trigger tg"
            " JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE tg.tgname = %s AND NOT tg.tgisinternal"
        )
        self.select = sql.SQL(
            "SELECT t.id, t.trigger_name,"
            " coalesce(cur.schema_name, t.schema_name) AS schema_name,"
            " coalesce(cur.table_name, t.table_name) AS table_name,"
            " t.operations, t.job_template, t.enabled,"
            " (cur.table_name IS NOT NULL) AS installed, t.created_at, t.updated_at"
            " FROM {t} AS t"
            " LEFT JOIN LATERAL (SELECT n.nspname AS schema_name,"
            " c.relname AS table_name FROM pg_catalog.pg_trigger tg"
            " JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE tg.tgname = t.trigger_name AND NOT tg.tgisinternal LIMIT 1) AS cur"
            " ON TRUE"
            " WHERE (%(ids)s::uuid[] IS NULL OR t.id = ANY(%(ids)s::uuid[]))"
            " AND (%(schema)s::text IS NULL"
            " OR coalesce(cur.schema_name, t.schema_name) = %(schema)s::text)"
            " AND (%(table)s::text IS NULL"
            " OR coalesce(cur.table_name, t.table_name) = %(table)s::text)"
            " ORDER BY t.created_at, t.id"
        ).format(t=table)


@cache
def _sql(prefix: str) -> _Statements:
    return _Statements(prefix)


def _missing_tables(chancy: Chancy) -> MigrationsNeededError:
    return MigrationsNeededError(
        f"the {chancy.prefix}triggers table or its functions do not exist: run"
        " `await chancy.migrate()` (or `chancy migrate`) with the Trigger plugin"
        " enabled first"
    )


@contextlib.asynccontextmanager
async def _atomic(conn: AsyncConnection[Any]) -> AsyncIterator[None]:
    """Make several statements on the caller's connection all-or-nothing
    without committing the caller's transaction.

    Inside a transaction: a savepoint, so a failure leaves the caller's
    transaction usable. On an autocommit connection: a transaction of its
    own. On an idle connection that is not in autocommit mode, the
    statements open the transaction the caller will commit or roll back.
    """
    if conn.autocommit or conn.info.transaction_status == pq.TransactionStatus.INTRANS:
        async with conn.transaction():
            yield
    else:
        yield


# -- validation (before anything is written) ------------------------------------------


def _name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {value!r}")
    if not value:
        raise ConfigurationError(f"{what} must not be empty")
    if "\x00" in value:
        raise ConfigurationError(f"{what} must not contain a NUL character: {value!r}")
    if len(value.encode()) > _MAX_NAME_BYTES:
        raise ConfigurationError(
            f"{what} {value!r} is longer than PostgreSQL's limit of"
            f" {_MAX_NAME_BYTES} bytes, so no such table can exist"
        )
    return value


def _operations(operations: object) -> tuple[str, ...]:
    if isinstance(operations, str | bytes) or not isinstance(operations, Iterable):
        raise TypeError(
            "operations must be a list of operation names such as"
            f" ['INSERT', 'UPDATE'], got {operations!r}"
        )
    chosen: set[str] = set()
    for op in operations:
        if not isinstance(op, str):
            raise TypeError(f"operations must be strings, got {op!r}")
        name = op.strip().upper()
        if name not in OPERATIONS:
            raise ConfigurationError(
                f"unknown operation {op!r}: a trigger fires on INSERT, UPDATE or DELETE"
            )
        chosen.add(name)
    if not chosen:
        raise ConfigurationError(
            "operations must name at least one of INSERT, UPDATE and DELETE"
        )
    return tuple(op for op in OPERATIONS if op in chosen)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _int4(value: object, what: str, func: str, *, minimum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value not in _INT4:
        raise TypeError(
            f"job template {func!r}: {what} must be an int that fits PostgreSQL's"
            f" integer type, got {value!r}"
        )
    if minimum is not None and value < minimum:
        raise ConfigurationError(
            f"job template {func!r}: {what} must be at least {minimum}, got {value!r}"
        )


def _template(job_template: object) -> tuple[Job, str]:
    """The template as a :class:`Job` and as stored; raises if it cannot be stored."""
    try:
        job = as_job(job_template)  # type: ignore[arg-type]
    except TypeError as exc:
        raise TypeError(f"job_template: {exc}") from None
    func = job.func
    if not isinstance(func, str) or "." not in func or not all(func.split(".")):
        raise ConfigurationError(
            f"job template func must be an import path like 'module.function', got"
            f" {func!r}"
        )
    if not isinstance(job.queue, str) or not job.queue:
        raise ConfigurationError(
            f"job template {func!r}: queue must be a non-empty string, got {job.queue!r}"
        )
    if not isinstance(job.kwargs, dict) or not all(
        isinstance(k, str) for k in job.kwargs
    ):
        raise TypeError(
            f"job template {func!r}: kwargs must be a dict with string keys"
        )
    if not isinstance(job.meta, dict) or not all(isinstance(k, str) for k in job.meta):
        raise TypeError(f"job template {func!r}: meta must be a dict with string keys")
    if META_KEY in job.meta:
        raise ConfigurationError(
            f"job template {func!r}: meta[{META_KEY!r}] is set by the trigger itself"
            " (it describes the statement that fired); use another key"
        )
    _int4(job.priority, "priority", func)
    _int4(job.max_attempts, "max_attempts", func, minimum=1)
    if not isinstance(job.limits, list) or not all(
        isinstance(limit, Limit) for limit in job.limits
    ):
        raise TypeError(f"job template {func!r}: limits must be a list of Limit")
    if job.unique_key is not None and (
        not isinstance(job.unique_key, str) or not job.unique_key
    ):
        raise TypeError(
            f"job template {func!r}: unique_key must be a non-empty string or None,"
            f" got {job.unique_key!r}"
        )
    # Stored as given, scheduled_at included (for get_triggers); the trigger
    # function ignores it and schedules each job when its statement ran.
    packed = job.pack()
    if _has_nul(packed):
        raise ConfigurationError(
            f"job template {func!r} cannot be stored: PostgreSQL's jsonb cannot hold"
            " the NUL character"
        )
    try:
        text = json.dumps(packed, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"job template {func!r} cannot be stored: its kwargs or meta are not"
            f" JSON-serialisable ({exc})"
        ) from None
    return job, text


def _trigger_id(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise ConfigurationError(
                f"{value!r} is not a trigger id (a UUID)"
            ) from None
    raise TypeError(f"a trigger id is a UUID, got {value!r}")


def _config(row: Mapping[str, Any]) -> TriggerConfig:
    return TriggerConfig(
        id=row["id"],
        trigger_name=row["trigger_name"],
        schema_name=row["schema_name"],
        table_name=row["table_name"],
        operations=tuple(row["operations"]),
        job_template=Job.unpack(row["job_template"]),
        enabled=row["enabled"],
        installed=row["installed"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class Trigger(Plugin):
    """Pushes a job whenever rows of a table are inserted, updated or deleted.

    :meth:`register_trigger` installs a statement-level ``AFTER`` trigger on
    one of your tables. Each statement that runs one of the chosen operations
    on it inserts one job, built from the template, into the jobs table in the
    same transaction (so the job exists exactly when the change is
    committed) and notifies ``queue.pushed``, so a running worker starts it
    at once. No worker needs to run: the job waits in its queue. The job's
    ``meta["trigger"]`` describes the statement::

        {"operation": "INSERT", "timestamp": "2025-01-31T12:00:00.123456+00:00",
         "table_name": "orders", "schema_name": "public",
         "trigger_name": "chancy_trigger_0195...", "trigger_id": "0195..."}

    Triggers are managed from any process with the class methods below (and
    their ``_ex`` variants, which use the caller's cursor and commit
    nothing); they live in the ``{prefix}triggers`` table. The plugin itself
    runs nothing in the worker; it owns the migration that creates that
    table and the two SQL functions the triggers call.

    Installed, it is enabled by default, so ``chancy.migrate()`` creates its
    table. Migrating it down (also ``chancy.migrate(to_version=0)``) first
    drops every trigger it installed, leaving your tables as they were.
    """

    identifier = IDENTIFIER
    distribution = DISTRIBUTION
    #: Enabled when installed: it runs no loop and only owns a table.
    default_enabled = True
    tables = ("triggers",)
    migrations_key = "trigger"
    migrations_package = "chancy.plugins.trigger.migrations"
    #: Position among the default plugins (spec: leadership, pruner,
    #: recovery, metrics, workflow, then the others).
    default_order = 70

    def __repr__(self) -> str:
        return "<Trigger()>"

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Remove nothing: ``{prefix}triggers`` holds configuration, not history.

        A row stays until :meth:`unregister_trigger` removes it, even when its
        table was dropped (:attr:`TriggerConfig.installed` is then ``False``):
        deleting it behind the user's back would also lose the template.
        The jobs the triggers pushed are ordinary jobs, pruned like any other.
        """
        return None

    # -- registering ------------------------------------------------------------

    @classmethod
    async def register_trigger(
        cls,
        chancy: Chancy,
        *,
        table_name: str,
        operations: Iterable[str],
        job_template: Job | IsAJob,
        schema_name: str = "public",
        enabled: bool = True,
    ) -> uuid.UUID:
        """Install a trigger on ``schema_name.table_name``; returns its id.

        Each statement running one of ``operations`` on the table pushes one
        job made from ``job_template`` (a :class:`~chancy.Job` or an
        ``@job``-decorated function), whatever the number of rows it touched,
        even none: the trigger is statement-level. ``INSERT ... ON CONFLICT DO
        UPDATE`` counts as an INSERT and an UPDATE. A template with a
        ``unique_key`` pushes nothing while a job with that key is unfinished,
        as :meth:`Chancy.push() <chancy.app.Chancy.push>` does.

        The template is stored, not its function: change it by registering
        again and unregistering the old trigger. Its ``scheduled_at`` is not
        used; each job is scheduled at the time of its transaction.

        Needs the right to create triggers on the table (its owner, or the
        ``TRIGGER`` privilege). Sessions that then modify the table need
        ``INSERT`` on the jobs table and ``SELECT`` on ``{prefix}triggers``.

        :param table_name: the table's name as it is in the database (case
            and all; it is quoted, never parsed).
        :param operations: names among ``"INSERT"``, ``"UPDATE"`` and
            ``"DELETE"`` (any case).
        :param schema_name: the table's schema.
        :param enabled: ``False`` installs the trigger disabled
            (:meth:`enable_trigger` turns it on).
        :raises ConfigurationError: an unknown operation, schema or table, a
            relation that is not a table, the jobs table itself, or a template
            that cannot be stored (the message names the problem).
        :raises TypeError: arguments of the wrong type, or a template whose
            kwargs cannot be stored as JSON.
        :raises MigrationsNeededError: the plugin's table does not exist yet.

        Nothing is changed when it raises: the record and the database
        trigger are created in one transaction.
        """
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            async with conn.transaction(), conn.cursor() as cursor:
                return await cls.register_trigger_ex(
                    chancy,
                    cursor,
                    table_name=table_name,
                    operations=operations,
                    job_template=job_template,
                    schema_name=schema_name,
                    enabled=enabled,
                )

    @classmethod
    async def register_trigger_ex(
        cls,
        chancy: Chancy,
        cursor: AsyncCursor[Any],
        *,
        table_name: str,
        operations: Iterable[str],
        job_template: Job | IsAJob,
        schema_name: str = "public",
        enabled: bool = True,
    ) -> uuid.UUID:
        """:meth:`register_trigger` on the caller's cursor; the caller commits.

        Every argument is checked, and the table looked up, before anything
        is written. Inside a transaction the statements run in a savepoint,
        so a failure (a missing privilege, say) leaves the caller's
        transaction usable; on an autocommit connection they run in a
        transaction of their own. Either way nothing is left half done.
        """
        table_name = _name(table_name, "table_name")
        schema_name = _name(schema_name, "schema_name")
        ops = _operations(operations)
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be True or False, got {enabled!r}")
        job, packed = _template(job_template)
        statements = _sql(chancy.prefix)
        conn = cursor.connection
        async with _atomic(conn), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                statements.context,
                {
                    "jobs": sql.Identifier(f"{chancy.prefix}jobs").as_string(cur),
                    "triggers": sql.Identifier(f"{chancy.prefix}triggers").as_string(
                        cur
                    ),
                    "fire": f"{chancy.prefix}trigger_fire",
                },
            )
            context = await cur.fetchone()
            if context is None or not context["has_fire"]:
                raise _missing_tables(chancy)
            await cur.execute(
                "SELECT c.oid, c.relkind FROM pg_catalog.pg_class c"
                " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = %s",
                (schema_name, table_name),
            )
            target = await cur.fetchone()
            if target is None:
                await cur.execute(
                    "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s",
                    (schema_name,),
                )
                if await cur.fetchone() is None:
                    raise ConfigurationError(
                        f"cannot install a trigger: the schema {schema_name!r} does"
                        " not exist"
                    )
                hint = (
                    " (table_name is the bare name: pass the schema as schema_name)"
                    if "." in table_name
                    else ""
                )
                raise ConfigurationError(
                    f"cannot install a trigger: the table {table_name!r} does not"
                    f" exist in the schema {schema_name!r}{hint}"
                )
            kind = str(target["relkind"])
            if kind not in ("r", "p"):
                raise ConfigurationError(
                    f"cannot install a trigger on {schema_name}.{table_name}: it is"
                    f" {_RELKINDS.get(kind, 'not a table')}, not a table"
                )
            if target["oid"] == context["jobs_oid"]:
                raise ConfigurationError(
                    "cannot install a trigger on Chancy's own jobs table: every job"
                    " it pushed would fire it again"
                )
            trigger_id = uuid7()
            trigger_name = f"{TRIGGER_NAME_PREFIX}{trigger_id.hex}"
            await cur.execute(
                statements.insert,
                (
                    trigger_id,
                    trigger_name,
                    schema_name,
                    table_name,
                    list(ops),
                    packed,
                    enabled,
                    chancy.sql.channel if chancy.notifications else None,
                ),
            )
            await cur.execute(
                sql.SQL(
                    "CREATE TRIGGER {name} AFTER {ops} ON {table}"
                    " FOR EACH STATEMENT EXECUTE FUNCTION {fire}({arg})"
                ).format(
                    name=sql.Identifier(trigger_name),
                    # Only the validated keywords of OPERATIONS get here.
                    ops=sql.SQL(" OR ").join(sql.SQL(op) for op in ops),
                    table=sql.Identifier(schema_name, table_name),
                    fire=sql.Identifier(
                        context["schema_name"], f"{chancy.prefix}trigger_fire"
                    ),
                    arg=sql.Literal(str(trigger_id)),
                )
            )
        chancy.log.info(
            "Trigger: %s pushes %s (queue %r) on %s of %s.%s%s",
            trigger_name,
            job.func,
            job.queue,
            "/".join(ops),
            schema_name,
            table_name,
            "" if enabled else " (disabled)",
        )
        return trigger_id

    # -- removing -----------------------------------------------------------------

    @classmethod
    async def unregister_trigger(
        cls, chancy: Chancy, trigger_id: uuid.UUID | str
    ) -> None:
        """Drop the trigger from its table and forget it.

        Jobs it already pushed are not touched. If its table was dropped (or
        the trigger removed by hand), only the record is removed.

        :raises UnknownTriggerError: no trigger has this id.
        """
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            async with conn.transaction(), conn.cursor() as cursor:
                await cls.unregister_trigger_ex(chancy, cursor, trigger_id)

    @classmethod
    async def unregister_trigger_ex(
        cls, chancy: Chancy, cursor: AsyncCursor[Any], trigger_id: uuid.UUID | str
    ) -> None:
        """:meth:`unregister_trigger` on the caller's cursor; the caller commits.

        Atomic like :meth:`register_trigger_ex` (a savepoint inside a
        transaction).
        """
        tid = _trigger_id(trigger_id)
        statements = _sql(chancy.prefix)
        conn = cursor.connection
        async with _atomic(conn), conn.cursor(row_factory=dict_row) as cur:
            try:
                await cur.execute(statements.lock, (tid,))
            except errors.UndefinedTable:
                raise _missing_tables(chancy) from None
            row = await cur.fetchone()
            if row is None:
                raise UnknownTriggerError(f"no trigger is registered with id {tid}")
            name = row["trigger_name"]
            await cur.execute(statements.locate, (name,))
            for where in await cur.fetchall():
                await cur.execute(
                    sql.SQL("DROP TRIGGER {} ON {}").format(
                        sql.Identifier(name),
                        sql.Identifier(where["schema_name"], where["table_name"]),
                    )
                )
            await cur.execute(statements.delete, (tid,))
        chancy.log.info("Trigger: removed %s", name)

    # -- enabling and disabling ----------------------------------------------------

    @classmethod
    async def enable_trigger(cls, chancy: Chancy, trigger_id: uuid.UUID | str) -> None:
        """Make the trigger push jobs again.

        :raises UnknownTriggerError: no trigger has this id.
        """
        await cls._set_enabled(chancy, None, trigger_id, True)

    @classmethod
    async def enable_trigger_ex(
        cls, chancy: Chancy, cursor: AsyncCursor[Any], trigger_id: uuid.UUID | str
    ) -> None:
        """:meth:`enable_trigger` on the caller's cursor; the caller commits."""
        await cls._set_enabled(chancy, cursor, trigger_id, True)

    @classmethod
    async def disable_trigger(cls, chancy: Chancy, trigger_id: uuid.UUID | str) -> None:
        """Stop the trigger from pushing jobs; it stays installed.

        Statements on the table then only read the trigger's record (one
        primary-key lookup per statement); no lock is taken on your table.

        :raises UnknownTriggerError: no trigger has this id.
        """
        await cls._set_enabled(chancy, None, trigger_id, False)

    @classmethod
    async def disable_trigger_ex(
        cls, chancy: Chancy, cursor: AsyncCursor[Any], trigger_id: uuid.UUID | str
    ) -> None:
        """:meth:`disable_trigger` on the caller's cursor; the caller commits."""
        await cls._set_enabled(chancy, cursor, trigger_id, False)

    @classmethod
    async def _set_enabled(
        cls,
        chancy: Chancy,
        cursor: AsyncCursor[Any] | None,
        trigger_id: uuid.UUID | str,
        enabled: bool,
    ) -> None:
        tid = _trigger_id(trigger_id)
        if cursor is None:
            await chancy.ensure_open()
            async with chancy.pool.connection() as conn:
                async with conn.transaction(), conn.cursor() as cur:
                    await cls._set_enabled(chancy, cur, tid, enabled)
            return
        try:
            await cursor.execute(_sql(chancy.prefix).set_enabled, (enabled, tid))
        except errors.UndefinedTable:
            raise _missing_tables(chancy) from None
        if await cursor.fetchone() is None:
            raise UnknownTriggerError(f"no trigger is registered with id {tid}")
        chancy.log.info(
            "Trigger: %s%s %s",
            TRIGGER_NAME_PREFIX,
            tid.hex,
            "enabled" if enabled else "disabled",
        )

    # -- listing --------------------------------------------------------------------

    @classmethod
    async def get_triggers(
        cls,
        chancy: Chancy,
        *,
        trigger_ids: Iterable[uuid.UUID | str] | None = None,
        table_name: str | None = None,
        schema_name: str | None = None,
    ) -> dict[uuid.UUID, TriggerConfig]:
        """Registered triggers by id, oldest first.

        :param trigger_ids: only these (all when ``None``).
        :param table_name: only those on tables with this name.
        :param schema_name: only those on tables in this schema.
        """
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn, conn.cursor() as cursor:
            return await cls.get_triggers_ex(
                chancy,
                cursor,
                trigger_ids=trigger_ids,
                table_name=table_name,
                schema_name=schema_name,
            )

    @classmethod
    async def get_triggers_ex(
        cls,
        chancy: Chancy,
        cursor: AsyncCursor[Any],
        *,
        trigger_ids: Iterable[uuid.UUID | str] | None = None,
        table_name: str | None = None,
        schema_name: str | None = None,
    ) -> dict[uuid.UUID, TriggerConfig]:
        """:meth:`get_triggers` on the caller's cursor."""
        ids: list[uuid.UUID] | None = None
        if trigger_ids is not None:
            if isinstance(trigger_ids, str | uuid.UUID):
                raise TypeError("trigger_ids must be a list of ids, not a single id")
            ids = [_trigger_id(t) for t in trigger_ids]
        for value, what in ((table_name, "table_name"), (schema_name, "schema_name")):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{what} must be a string or None, got {value!r}")
        async with cursor.connection.cursor(row_factory=dict_row) as cur:
            try:
                await cur.execute(
                    _sql(chancy.prefix).select,
                    {"ids": ids, "schema": schema_name, "table": table_name},
                )
            except errors.UndefinedTable:
                raise _missing_tables(chancy) from None
            rows = await cur.fetchall()
        return {row["id"]: _config(row) for row in rows}
