"""Triggers against a real PostgreSQL: what fires, what it pushes, what is left behind."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from chancy import Chancy, Job, Limit, Queue, QueuedJob, Worker
from chancy.errors import ConfigurationError, MigrationsNeededError
from chancy.plugins.trigger import Trigger, UnknownTriggerError

ONLY_TRIGGER = {"plugins": [Trigger()], "no_default_plugins": True}
uses_db = pytest.mark.parametrize("chancy", [ONLY_TRIGGER], indirect=True)
TEMPLATE = Job(func="chancy_testjobs.async_noop", queue="triggered")

Exec = Callable[..., Awaitable[list[dict[str, Any]]]]


@pytest.fixture
async def run(chancy: Chancy) -> Exec:
    """Run one statement in its own committed transaction; return its rows."""

    async def execute(query: Any, params: Any = None) -> list[dict[str, Any]]:
        async with chancy.pool.connection() as conn:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query, params)
                return await cur.fetchall() if cur.description else []

    return execute


@pytest.fixture
async def table(chancy: Chancy, run: Exec) -> AsyncIterator[str]:
    """A user table ``public.<name>`` (id serial, n int), dropped after the test."""
    name = f"orders_{secrets.token_hex(4)}"
    await run(
        sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, n int)").format(
            sql.Identifier(name)
        )
    )
    try:
        yield name
    finally:
        await run(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


async def jobs(run: Exec) -> list[QueuedJob]:
    rows = await run("SELECT * FROM chancy_jobs ORDER BY id")
    return [QueuedJob.unpack(row) for row in rows]


async def installed(run: Exec, table_name: str, schema: str = "public") -> list[str]:
    """Names of the non-internal triggers on a table."""
    rows = await run(
        "SELECT tg.tgname FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND NOT tg.tgisinternal",
        (schema, table_name),
    )
    return [r["tgname"] for r in rows]


def insert(table_name: str, rows: int = 1, schema: str = "public") -> sql.Composed:
    return sql.SQL("INSERT INTO {} (n) SELECT g FROM generate_series(1, {}) g").format(
        sql.Identifier(schema, table_name), sql.Literal(rows)
    )


# -- firing -------------------------------------------------------------------------


@uses_db
async def test_each_operation_pushes_one_job_per_statement(
    chancy: Chancy, run: Exec, table: str
) -> None:
    trigger_id = await Trigger.register_trigger(
        chancy,
        table_name=table,
        operations=["INSERT", "UPDATE", "DELETE"],
        job_template=TEMPLATE,
    )
    t = sql.Identifier(table)
    await run(insert(table, 100))
    assert len(await jobs(run)) == 1
    await run(sql.SQL("UPDATE {} SET n = n + 1").format(t))
    await run(sql.SQL("DELETE FROM {} WHERE n > 50").format(t))
    await run(sql.SQL("DELETE FROM {}").format(t))
    # Statement-level: a statement that touches no row fires too.
    await run(sql.SQL("UPDATE {} SET n = 0 WHERE false").format(t))
    pushed = await jobs(run)
    assert [j.meta["trigger"]["operation"] for j in pushed] == [
        "INSERT",
        "UPDATE",
        "DELETE",
        "DELETE",
        "UPDATE",
    ]
    assert {j.meta["trigger"]["trigger_id"] for j in pushed} == {str(trigger_id)}
    # Several statements in one transaction: one job each, committed together.
    async with chancy.pool.connection() as conn:
        async with conn.transaction():
            await conn.execute(insert(table, 3))
            await conn.execute(insert(table, 3))
            raise psycopg.Rollback
    assert len(await jobs(run)) == 5  # rolled back: no job either
    async with chancy.pool.connection() as conn:
        async with conn.transaction():
            await conn.execute(insert(table, 3))
            await conn.execute(insert(table, 3))
    assert len(await jobs(run)) == 7


@uses_db
async def test_only_the_chosen_operations_fire(
    chancy: Chancy, run: Exec, table: str
) -> None:
    await Trigger.register_trigger(
        chancy, table_name=table, operations=["delete"], job_template=TEMPLATE
    )
    t = sql.Identifier(table)
    await run(insert(table, 5))
    await run(sql.SQL("UPDATE {} SET n = 0").format(t))
    assert await jobs(run) == []
    await run(sql.SQL("DELETE FROM {} WHERE n = 0").format(t))
    assert [j.meta["trigger"]["operation"] for j in await jobs(run)] == ["DELETE"]


@uses_db
async def test_the_job_is_the_template_plus_a_description_of_the_statement(
    chancy: Chancy, run: Exec, table: str
) -> None:
    template = Job(
        func="chancy_testjobs.add",
        queue="sums",
        kwargs={"a": 1, "b": 2},
        priority=7,
        max_attempts=3,
        limits=[Limit(Limit.Type.TIME, 30)],
        meta={"source": "orders"},
        scheduled_at=datetime.now().astimezone() + timedelta(days=30),  # not used
    )
    trigger_id = await Trigger.register_trigger(
        chancy, table_name=table, operations=["INSERT"], job_template=template
    )
    config = (await Trigger.get_triggers(chancy))[trigger_id]
    [before] = await run("SELECT clock_timestamp() AS t")
    await run(insert(table))
    [after] = await run("SELECT clock_timestamp() AS t")
    [pushed] = await jobs(run)
    assert pushed.state is QueuedJob.State.PENDING
    assert (pushed.func, pushed.queue, pushed.kwargs) == (
        "chancy_testjobs.add",
        "sums",
        {"a": 1, "b": 2},
    )
    assert (pushed.priority, pushed.max_attempts, pushed.attempts) == (7, 3, 0)
    assert pushed.limits == [Limit(Limit.Type.TIME, 30)]
    assert pushed.unique_key is None
    assert before["t"] <= pushed.scheduled_at <= after["t"]
    meta = dict(pushed.meta)
    described = meta.pop("trigger")
    assert meta == {"source": "orders"}
    stamp = datetime.fromisoformat(described.pop("timestamp"))
    assert before["t"] <= stamp <= after["t"]
    assert stamp.utcoffset() == timedelta(0)
    assert described == {
        "operation": "INSERT",
        "table_name": table,
        "schema_name": "public",
        "trigger_name": config.trigger_name,
        "trigger_id": str(trigger_id),
    }
    assert config.trigger_name == f"chancy_trigger_{trigger_id.hex}"


@uses_db
async def test_job_ids_are_uuid7_in_fifo_order_with_pushed_jobs(
    chancy: Chancy, run: Exec, table: str
) -> None:
    await Trigger.register_trigger(
        chancy, table_name=table, operations=["INSERT"], job_template=TEMPLATE
    )
    order: list[str] = []
    for step in range(6):
        # Ids order by their millisecond first: keep the steps apart.
        await asyncio.sleep(0.003)
        if step % 2:
            await run(insert(table))
            order.append("trigger")
        else:
            await chancy.push(Job(func="app.tasks.pushed", queue="triggered"))
            order.append("push")
    pushed = await jobs(run)  # ORDER BY id
    assert ["trigger" if "trigger" in j.meta else "push" for j in pushed] == order
    for j in pushed:
        assert j.id.version == 7 and j.id.variant == uuid.RFC_4122
    rows = await run(
        "SELECT chancy_uuid7() AS id, clock_timestamp() AS t"
        " FROM generate_series(1, 200)"
    )
    for row in rows:
        made: uuid.UUID = row["id"]
        assert made.version == 7 and made.variant == uuid.RFC_4122
        millis = made.int >> 80
        assert abs(millis - row["t"].timestamp() * 1000) < 5
    assert len({r["id"] for r in rows}) == 200


@uses_db
async def test_a_unique_template_deduplicates_like_push(
    chancy: Chancy, run: Exec, table: str
) -> None:
    await Trigger.register_trigger(
        chancy,
        table_name=table,
        operations=["INSERT"],
        job_template=TEMPLATE.with_unique_key("refresh-orders"),
    )
    await run(insert(table))
    await run(insert(table))
    [first] = await jobs(run)
    assert first.unique_key == "refresh-orders"
    # A push with the same key returns the job the trigger made.
    assert await chancy.push(TEMPLATE.with_unique_key("refresh-orders")) == first.id
    await run("UPDATE chancy_jobs SET state = 'succeeded' WHERE id = %s", (first.id,))
    await run(insert(table))
    assert [j.id == first.id for j in await jobs(run)] == [True, False]


# -- enabling, listing, removing ----------------------------------------------------


@uses_db
async def test_disabled_triggers_push_nothing(
    chancy: Chancy, run: Exec, table: str
) -> None:
    trigger_id = await Trigger.register_trigger(
        chancy,
        table_name=table,
        operations=["INSERT"],
        job_template=TEMPLATE,
        enabled=False,
    )
    assert (await Trigger.get_triggers(chancy))[trigger_id].enabled is False
    await run(insert(table))
    assert await jobs(run) == []
    await Trigger.enable_trigger(chancy, trigger_id)
    await run(insert(table))
    assert len(await jobs(run)) == 1
    await Trigger.disable_trigger(chancy, str(trigger_id))
    await run(insert(table))
    assert len(await jobs(run)) == 1
    config = (await Trigger.get_triggers(chancy))[trigger_id]
    assert config.enabled is False and config.installed is True
    assert config.updated_at > config.created_at
    with pytest.raises(UnknownTriggerError, match="no trigger"):
        await Trigger.enable_trigger(chancy, uuid.uuid4())
    with pytest.raises(ConfigurationError, match="not a trigger id"):
        await Trigger.disable_trigger(chancy, "orders")


@uses_db
async def test_get_triggers_filters_and_follows_renamed_tables(
    chancy: Chancy, run: Exec, table: str
) -> None:
    first = await Trigger.register_trigger(
        chancy, table_name=table, operations=["INSERT"], job_template=TEMPLATE
    )
    template = Job(func="app.tasks.other", queue="other", kwargs={"x": [1]})
    second = await Trigger.register_trigger(
        chancy,
        table_name=table,
        operations=["update", "DELETE"],
        job_template=template,
    )
    everything = await Trigger.get_triggers(chancy)
    assert list(everything) == [first, second]
    other = everything[second]
    assert other.operations == ("UPDATE", "DELETE")
    assert other.job_template == template
    assert (other.schema_name, other.table_name) == ("public", table)
    assert list(await Trigger.get_triggers(chancy, trigger_ids=[second])) == [second]
    assert list(await Trigger.get_triggers(chancy, table_name="nope")) == []
    assert len(await Trigger.get_triggers(chancy, schema_name="public")) == 2
    with pytest.raises(TypeError, match="list of ids"):
        await Trigger.get_triggers(chancy, trigger_ids=str(first))  # type: ignore[arg-type]

    # The database trigger moves with its table; so does the listing.
    renamed = f"{table}_renamed"
    await run(
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            sql.Identifier(table), sql.Identifier(renamed)
        )
    )
    try:
        await run(insert(renamed))
        [pushed] = await jobs(run)
        assert pushed.meta["trigger"]["table_name"] == renamed
        config = (await Trigger.get_triggers(chancy, table_name=renamed))[first]
        assert config.installed and config.table_name == renamed
        await Trigger.unregister_trigger(chancy, first)
        await Trigger.unregister_trigger(chancy, second)
        assert await installed(run, renamed) == []
    finally:
        await run(sql.SQL("DROP TABLE {}").format(sql.Identifier(renamed)))


@uses_db
async def test_unregister_removes_the_trigger_from_the_table(
    chancy: Chancy, run: Exec, table: str
) -> None:
    keep = await Trigger.register_trigger(
        chancy, table_name=table, operations=["DELETE"], job_template=TEMPLATE
    )
    trigger_id = await Trigger.register_trigger(
        chancy, table_name=table, operations=["INSERT"], job_template=TEMPLATE
    )
    await run(insert(table))
    assert len(await jobs(run)) == 1
    assert sorted(await installed(run, table)) == sorted(
        f"chancy_trigger_{t.hex}" for t in (keep, trigger_id)
    )
    await Trigger.unregister_trigger(chancy, trigger_id)
    assert await installed(run, table) == [f"chancy_trigger_{keep.hex}"]
    assert list(await Trigger.get_triggers(chancy)) == [keep]
    await run(insert(table))
    assert len(await jobs(run)) == 1  # the job already pushed is kept
    with pytest.raises(UnknownTriggerError, match=str(trigger_id)):
        await Trigger.unregister_trigger(chancy, trigger_id)


@uses_db
async def test_a_dropped_table_leaves_a_record_that_can_be_removed(
    chancy: Chancy, run: Exec
) -> None:
    await run("CREATE TABLE short_lived (n int)")
    trigger_id = await Trigger.register_trigger(
        chancy, table_name="short_lived", operations=["INSERT"], job_template=TEMPLATE
    )
    await run("DROP TABLE short_lived")
    config = (await Trigger.get_triggers(chancy))[trigger_id]
    assert config.installed is False and config.table_name == "short_lived"
    # The pruner's clean-up keeps it (and everything else).
    assert await chancy.plugins["chancy.trigger"].cleanup(chancy) is None
    await chancy.plugin_manager.cleanup(chancy)
    assert trigger_id in await Trigger.get_triggers(chancy)
    await Trigger.unregister_trigger(chancy, trigger_id)
    assert await Trigger.get_triggers(chancy) == {}


@uses_db
async def test_cleanup_keeps_every_trigger(
    chancy: Chancy, run: Exec, table: str
) -> None:
    trigger_id = await Trigger.register_trigger(
        chancy, table_name=table, operations=["INSERT"], job_template=TEMPLATE
    )
    await run("UPDATE chancy_triggers SET created_at = now() - interval '400 days'")
    before = await Trigger.get_triggers(chancy)
    results = await chancy.plugin_manager.cleanup(chancy)
    assert ("chancy.trigger", None) in results
    assert await Trigger.get_triggers(chancy) == before
    await run(insert(table))
    assert [j.meta["trigger"]["trigger_id"] for j in await jobs(run)] == [
        str(trigger_id)
    ]


# -- transactions and bad input ---------------------------------------------------


@uses_db
async def test_ex_variants_use_the_callers_transaction(
    chancy: Chancy, run: Exec, table: str
) -> None:
    async with chancy.pool.connection() as conn:
        async with conn.transaction() as tx, conn.cursor() as cur:
            trigger_id = await Trigger.register_trigger_ex(
                chancy,
                cur,
                table_name=table,
                operations=["INSERT"],
                job_template=TEMPLATE,
            )
            assert trigger_id in await Trigger.get_triggers_ex(chancy, cur)
            raise psycopg.Rollback(tx)
    assert await Trigger.get_triggers(chancy) == {}
    assert await installed(run, table) == []

    async with chancy.pool.connection() as conn:
        async with conn.transaction(), conn.cursor() as cur:
            trigger_id = await Trigger.register_trigger_ex(
                chancy,
                cur,
                table_name=table,
                operations=["INSERT"],
                job_template=TEMPLATE,
            )
            await Trigger.disable_trigger_ex(chancy, cur, trigger_id)
            # A bad argument is refused before anything is sent: the
            # transaction stays usable.
            with pytest.raises(ConfigurationError):
                await Trigger.register_trigger_ex(
                    chancy,
                    cur,
                    table_name="missing",
                    operations=["INSERT"],
                    job_template=TEMPLATE,
                )
            await Trigger.enable_trigger_ex(chancy, cur, trigger_id)
            # The caller's change and the trigger's job commit together.
            await cur.execute(insert(table))
            assert len(await jobs(run)) == 0  # not committed yet
    assert len(await jobs(run)) == 1
    async with chancy.pool.connection() as conn:
        async with conn.transaction(), conn.cursor() as cur:
            await Trigger.unregister_trigger_ex(chancy, cur, trigger_id)
    assert await installed(run, table) == []


@uses_db
async def test_bad_input_is_refused_and_changes_nothing(
    chancy: Chancy, run: Exec, table: str
) -> None:
    await run("CREATE VIEW a_view AS SELECT 1 AS n")
    try:
        cases: list[tuple[dict[str, Any], type[Exception], str]] = [
            ({"table_name": "missing"}, ConfigurationError, "'missing' does not exist"),
            (
                {"table_name": f"public.{table}"},
                ConfigurationError,
                "pass the schema as schema_name",
            ),
            ({"schema_name": "nowhere"}, ConfigurationError, "schema 'nowhere'"),
            ({"operations": ["INSERT", "MERGE"]}, ConfigurationError, "'MERGE'"),
            ({"operations": []}, ConfigurationError, "at least one"),
            ({"operations": "INSERT"}, TypeError, "list"),
            ({"job_template": "app.tasks.sync"}, TypeError, "expected a Job"),
            (
                {"job_template": Job(func="a.b", kwargs={"d": datetime.now()})},
                TypeError,
                "JSON",
            ),
            ({"table_name": "a_view"}, ConfigurationError, "a view, not a table"),
            ({"table_name": "chancy_jobs"}, ConfigurationError, "jobs table"),
            ({"table_name": "x" * 64}, ConfigurationError, "63 bytes"),
            ({"table_name": ""}, ConfigurationError, "empty"),
            ({"table_name": "a\x00b"}, ConfigurationError, "NUL"),
            ({"enabled": "yes"}, TypeError, "enabled"),
        ]
        for override, error, message in cases:
            arguments: dict[str, Any] = {
                "table_name": table,
                "operations": ["INSERT"],
                "job_template": TEMPLATE,
                **override,
            }
            with pytest.raises(error, match=message):
                await Trigger.register_trigger(chancy, **arguments)
        assert await Trigger.get_triggers(chancy) == {}
        assert await installed(run, table) == []
        assert await installed(run, "chancy_jobs") == []
        await run(insert(table))
        assert await jobs(run) == []
    finally:
        await run("DROP VIEW a_view")


@uses_db
async def test_a_failure_after_the_record_is_written_rolls_everything_back(
    chancy: Chancy, chancy_dsn: str, run: Exec, table: str
) -> None:
    """A role that may write the plugin's table but not create triggers on the
    user's table: the record is inserted, CREATE TRIGGER fails, nothing stays."""
    role = f"chancy_trigger_test_{secrets.token_hex(4)}"
    await run(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    await run(
        sql.SQL(
            "GRANT SELECT, INSERT, UPDATE ON chancy_triggers, chancy_jobs TO {}"
        ).format(sql.Identifier(role))
    )
    limited = Chancy(make_conninfo(chancy_dsn, user=role), no_default_plugins=True)
    arguments: dict[str, Any] = {
        "table_name": table,
        "operations": ["INSERT"],
        "job_template": TEMPLATE,
    }
    try:
        async with limited:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await Trigger.register_trigger(limited, **arguments)
            async with limited.pool.connection() as conn:
                # On an autocommit connection: a transaction of its own.
                await conn.set_autocommit(True)
                async with conn.cursor() as cur:
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        await Trigger.register_trigger_ex(limited, cur, **arguments)
                await conn.set_autocommit(False)
                # In the caller's transaction: a savepoint, and the caller's
                # transaction goes on.
                async with conn.transaction(), conn.cursor() as cur:
                    await limited.push_ex(cur, TEMPLATE)
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        await Trigger.register_trigger_ex(limited, cur, **arguments)
                    await limited.push_ex(cur, TEMPLATE)
        assert await Trigger.get_triggers(chancy) == {}
        assert await installed(run, table) == []
        assert len(await jobs(run)) == 2
    finally:
        await run(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        await run(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.parametrize(
    "chancy", [{"plugins": [], "no_default_plugins": True}], indirect=True
)
async def test_without_the_migration_the_error_says_what_to_do(
    chancy: Chancy, table: str
) -> None:
    with pytest.raises(MigrationsNeededError, match="migrate"):
        await Trigger.register_trigger(
            chancy, table_name=table, operations=["INSERT"], job_template=TEMPLATE
        )
    with pytest.raises(MigrationsNeededError, match="migrate"):
        await Trigger.get_triggers(chancy)
    with pytest.raises(MigrationsNeededError, match="migrate"):
        await Trigger.unregister_trigger(chancy, uuid.uuid4())


HOSTILE_SCHEMA = 'we"ird; DROP TABLE canary; --'
HOSTILE_TABLE = "Or\"ders'); DROP TABLE canary; --"


@uses_db
async def test_hostile_identifiers_are_quoted_never_pasted(
    chancy: Chancy, run: Exec
) -> None:
    schema, name = (
        sql.Identifier(HOSTILE_SCHEMA),
        sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE),
    )
    await run("CREATE TABLE canary (n int)")
    await run(sql.SQL("CREATE SCHEMA {}").format(schema))
    await run(sql.SQL("CREATE TABLE {} (id serial, n int)").format(name))
    try:
        trigger_id = await Trigger.register_trigger(
            chancy,
            table_name=HOSTILE_TABLE,
            schema_name=HOSTILE_SCHEMA,
            operations=["INSERT", "DELETE"],
            job_template=Job(func="app.tasks.x", queue="q'; DROP TABLE canary; --"),
        )
        await run(insert(HOSTILE_TABLE, 2, schema=HOSTILE_SCHEMA))
        await run(sql.SQL("DELETE FROM {}").format(name))
        pushed = await jobs(run)
        assert [j.meta["trigger"]["operation"] for j in pushed] == ["INSERT", "DELETE"]
        assert {
            (j.meta["trigger"]["schema_name"], j.meta["trigger"]["table_name"], j.queue)
            for j in pushed
        } == {(HOSTILE_SCHEMA, HOSTILE_TABLE, "q'; DROP TABLE canary; --")}
        config = (await Trigger.get_triggers(chancy, schema_name=HOSTILE_SCHEMA))[
            trigger_id
        ]
        assert (config.schema_name, config.table_name) == (
            HOSTILE_SCHEMA,
            HOSTILE_TABLE,
        )
        # Names that resemble an existing one are looked up as they are.
        for table_name, schema_name in (
            ('Or"ders', HOSTILE_SCHEMA),
            (HOSTILE_TABLE, "we"),
            (HOSTILE_TABLE.lower(), HOSTILE_SCHEMA),
        ):
            with pytest.raises(ConfigurationError, match="does not exist"):
                await Trigger.register_trigger(
                    chancy,
                    table_name=table_name,
                    schema_name=schema_name,
                    operations=["INSERT"],
                    job_template=TEMPLATE,
                )
        await Trigger.unregister_trigger(chancy, trigger_id)
        assert await installed(run, HOSTILE_TABLE, HOSTILE_SCHEMA) == []
        assert await run("SELECT count(*) AS n FROM canary") == [{"n": 0}]
    finally:
        await run(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))
        await run("DROP TABLE canary")


# -- workers and notifications ----------------------------------------------------------


@uses_db
async def test_a_running_worker_starts_the_job_at_once(
    chancy: Chancy, worker: Worker, run: Exec, table: str
) -> None:
    # Polling once a minute: only the notification can start the job in time.
    await chancy.declare(
        Queue("triggered", executor=Chancy.Executor.Async, polling_interval=60)
    )
    async with asyncio.timeout(10):
        while "triggered" not in worker:
            await asyncio.sleep(0.02)
    await Trigger.register_trigger(
        chancy, table_name=table, operations=["INSERT"], job_template=TEMPLATE
    )
    await run(insert(table))
    [pushed] = await jobs(run)
    done = await chancy.wait_for_job(pushed.id, interval=0.05, timeout=10)
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED
    assert done.meta["trigger"]["operation"] == "INSERT"


async def _notifications(
    dsn: str, channel: str, action: Callable[[], Awaitable[Any]]
) -> list[str]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        await action()
        received: list[str] = []
        async for notify in conn.notifies(timeout=0.5):
            received.append(notify.payload)
        return received


@uses_db
async def test_the_trigger_notifies_the_apps_channel_unless_notifications_are_off(
    chancy: Chancy, chancy_dsn: str, run: Exec, table: str
) -> None:
    import json

    await Trigger.register_trigger(
        chancy, table_name=table, operations=["INSERT"], job_template=TEMPLATE
    )
    got = await _notifications(chancy_dsn, "chancy_events", lambda: run(insert(table)))
    assert [json.loads(p) for p in got] == [{"t": "queue.pushed", "q": "triggered"}]

    quiet = Chancy(chancy_dsn, notifications=False, no_default_plugins=True)
    async with quiet:
        await Trigger.register_trigger(
            quiet, table_name=table, operations=["DELETE"], job_template=TEMPLATE
        )
    got = await _notifications(
        chancy_dsn,
        "chancy_events",
        lambda: run(sql.SQL("DELETE FROM {}").format(sql.Identifier(table))),
    )
    assert got == []
    assert [j.meta["trigger"]["operation"] for j in await jobs(run)] == [
        "INSERT",
        "DELETE",
    ]


# -- migrating down ---------------------------------------------------------------------


@uses_db
async def test_migrating_down_drops_every_trigger_and_function_first(
    chancy: Chancy, run: Exec, table: str
) -> None:
    await run('CREATE SCHEMA "Other"')
    await run('CREATE TABLE "Other".items (n int)')
    try:
        await Trigger.register_trigger(
            chancy, table_name=table, operations=["INSERT"], job_template=TEMPLATE
        )
        await Trigger.register_trigger(
            chancy,
            table_name="items",
            schema_name="Other",
            operations=["UPDATE"],
            job_template=TEMPLATE,
        )
        # A renamed table and a record removed by hand leave no trigger behind.
        await run(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(table), sql.Identifier(f"{table}_x")
            )
        )
        await run(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(f"{table}_x"), sql.Identifier(table)
            )
        )
        await run("DELETE FROM chancy_triggers WHERE schema_name = 'Other'")

        await chancy.plugins["chancy.trigger"].migrate(chancy, to_version=0)

        assert await installed(run, table) == []
        assert await installed(run, "items", "Other") == []
        assert (
            await run(
                "SELECT proname FROM pg_proc WHERE proname IN"
                " ('chancy_trigger_fire', 'chancy_uuid7')"
            )
            == []
        )
        assert await run("SELECT to_regclass('chancy_triggers') AS t") == [{"t": None}]
        await run(insert(table, 10))
        await run('UPDATE "Other".items SET n = 1')
        assert await jobs(run) == []

        # And the full way down: plugins go before core drops the jobs table.
        await chancy.migrate()
        await Trigger.register_trigger(
            chancy, table_name=table, operations=["INSERT"], job_template=TEMPLATE
        )
        await chancy.migrate(to_version=0)
        assert await installed(run, table) == []
        await run(insert(table, 10))
        assert await run(
            sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))
        ) == [{"n": 20}]
        await chancy.migrate()  # for the fixture, which migrates down again
    finally:
        await run('DROP SCHEMA "Other" CASCADE')


@uses_db
async def test_the_functions_ignore_the_sessions_search_path(
    chancy: Chancy, run: Exec, table: str
) -> None:
    await Trigger.register_trigger(
        chancy, table_name=table, operations=["INSERT"], job_template=TEMPLATE
    )
    async with chancy.pool.connection() as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path = pg_catalog")
            await conn.execute(insert(table))
    assert len(await jobs(run)) == 1


async def test_default_apps_migrate_and_use_the_plugin(
    chancy: Chancy, run: Exec, table: str
) -> None:
    assert isinstance(chancy.plugins["chancy.trigger"], Trigger)
    [row] = await run(
        "SELECT version FROM chancy_schema_version WHERE version_of = 'trigger'"
    )
    assert row["version"] == 1
    await Trigger.register_trigger(
        chancy, table_name=table, operations=["INSERT"], job_template=TEMPLATE
    )
    await run(insert(table))
    assert len(await jobs(run)) == 1
