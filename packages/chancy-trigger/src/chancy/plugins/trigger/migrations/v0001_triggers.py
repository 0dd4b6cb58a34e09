"""The ``{prefix}triggers`` table and the two functions the database triggers call.

* ``{prefix}uuid7()`` makes an RFC 9562 UUIDv7 in SQL (PostgreSQL 18 has
  ``uuidv7()``, 14 to 17 do not), so jobs pushed by a trigger sort among the
  jobs pushed by clients (``chancy.utils.uuid7_many``) in creation order.
* ``{prefix}trigger_fire()`` is the trigger function every registered trigger
  executes, with the trigger's id as its only argument.

Both functions, and the table, are created in the schema of the jobs table,
and the function bodies name every object with that schema and run with
``search_path = pg_catalog, pg_temp``: they behave the same whatever the
``search_path`` of the session that modifies a user's table.

Migrating down first drops every database trigger that executes
``{prefix}trigger_fire()``, wherever it is, so that the users' tables keep
working without the plugin.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncCursor, sql

from chancy.errors import MigrationError
from chancy.migrate import Migration, Migrator

#: UUIDv7 from the server's clock: 48 bits of Unix milliseconds, the version
#: nibble, 12 bits of the sub-millisecond fraction (RFC 9562 §6.2 method 3,
#: as PostgreSQL 18's ``uuidv7()``), then the variant and 62 random bits taken
#: from ``gen_random_uuid()`` (whose variant bits are already ``10``).
UUID7_BODY = """
SELECT encode(
    substring(int8send(t.us / 1000) FROM 3)
    || int2send((28672 + (t.us % 1000) * 4096 / 1000)::int2)
    || substring(uuid_send(gen_random_uuid()) FROM 9),
    'hex'
)::uuid
FROM (
    SELECT floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us
) AS t
"""

#: The trigger function. ``{triggers}``, ``{jobs}`` and ``{uuid7}`` are
#: replaced by schema-qualified, quoted identifiers.
#:
#: A job whose template has a ``unique_key`` held by an unfinished job is not
#: inserted: ``ON CONFLICT DO NOTHING`` without a conflict target uses the
#: jobs table's partial unique index on ``unique_key`` exactly as ``push``
#: does, and keeps working if a later core migration changes that index's
#: predicate.
FIRE_BODY = """
DECLARE
    cfg record;
    tpl jsonb;
BEGIN
    SELECT t.id, t.job_template, t.enabled, t.notify_channel INTO cfg
    FROM {triggers} AS t
    WHERE t.id = TG_ARGV[0]::uuid;
    IF NOT FOUND OR NOT cfg.enabled THEN
        RETURN NULL;
    END IF;
    tpl := cfg.job_template;
    INSERT INTO {jobs} (
        id, queue, func, kwargs, limits, meta, priority, max_attempts,
        scheduled_at, unique_key
    )
    VALUES (
        {uuid7}(),
        tpl->>'q',
        tpl->>'f',
        coalesce(tpl->'k', '{{}}'::jsonb),
        coalesce(tpl->'l', '[]'::jsonb),
        coalesce(tpl->'m', '{{}}'::jsonb) || jsonb_build_object(
            'trigger', jsonb_build_object(
                'operation', TG_OP,
                'timestamp', to_char(
                    statement_timestamp() AT TIME ZONE 'UTC',
                    'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'
                ),
                'table_name', TG_TABLE_NAME,
                'schema_name', TG_TABLE_SCHEMA,
                'trigger_name', TG_NAME,
                'trigger_id', cfg.id
            )
        ),
        coalesce((tpl->>'p')::int, 0),
        coalesce((tpl->>'a')::int, 1),
        now(),
        tpl->>'u'
    )
    ON CONFLICT DO NOTHING;
    IF FOUND AND cfg.notify_channel IS NOT NULL THEN
        PERFORM pg_notify(
            cfg.notify_channel,
            jsonb_build_object('t', 'queue.pushed', 'q', tpl->>'q')::text
        );
    END IF;
    RETURN NULL;
END
"""


async def _schema_of(cursor: AsyncCursor[Any], table: sql.Identifier) -> str | None:
    """The schema holding ``table`` as the session resolves it, or ``None``."""
    await cursor.execute(
        "SELECT n.nspname FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = pg_catalog.to_regclass(%s)",
        (table.as_string(cursor),),
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    return str(row["nspname"] if isinstance(row, dict) else row[0])


async def drop_installed_triggers(
    migrator: Migrator, cursor: AsyncCursor[Any], schema: str
) -> int:
    """Drop every database trigger executing this prefix's trigger function.

    Found through the catalog (``pg_trigger.tgfoid``), not through the
    ``{prefix}triggers`` rows, so a renamed table or a row removed by hand
    does not leave a trigger behind. Returns how many were dropped.
    """
    await cursor.execute(
        "SELECT tg.tgname, n.nspname, c.relname"
        " FROM pg_catalog.pg_trigger tg"
        " JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_catalog.pg_proc p ON p.oid = tg.tgfoid"
        " JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace"
        " WHERE p.proname = %s AND pn.nspname = %s AND NOT tg.tgisinternal"
        " ORDER BY n.nspname, c.relname, tg.tgname",
        (migrator.name("trigger_fire"), schema),
    )
    rows = await cursor.fetchall()
    for row in rows:
        name, nsp, rel = (
            (row["tgname"], row["nspname"], row["relname"])
            if isinstance(row, dict)
            else row
        )
        await cursor.execute(
            sql.SQL("DROP TRIGGER {} ON {}").format(
                sql.Identifier(name), sql.Identifier(nsp, rel)
            )
        )
    return len(rows)


class CreateTriggers(Migration):
    async def up(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        schema = await _schema_of(cursor, migrator.table("jobs"))
        if schema is None:
            raise MigrationError(
                f"the trigger plugin needs the {migrator.name('jobs')!r} table:"
                " migrate Chancy's core first"
            )
        triggers = sql.Identifier(schema, migrator.name("triggers"))
        jobs = sql.Identifier(schema, migrator.name("jobs"))
        uuid7 = sql.Identifier(schema, migrator.name("uuid7"))
        fire = sql.Identifier(schema, migrator.name("trigger_fire"))
        await cursor.execute(
            sql.SQL(
                """
                CREATE TABLE {triggers} (
                    id UUID PRIMARY KEY,
                    trigger_name TEXT NOT NULL UNIQUE,
                    schema_name TEXT NOT NULL,
                    table_name TEXT NOT NULL,
                    operations TEXT[] NOT NULL,
                    job_template JSONB NOT NULL,
                    enabled BOOLEAN NOT NULL DEFAULT TRUE,
                    notify_channel TEXT,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
                    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
                )
                """
            ).format(triggers=triggers)
        )
        await cursor.execute(
            sql.SQL(
                "CREATE INDEX {index} ON {triggers} (schema_name, table_name)"
            ).format(index=migrator.table("triggers_table_idx"), triggers=triggers)
        )
        await cursor.execute(
            sql.SQL(
                "CREATE FUNCTION {uuid7}() RETURNS uuid LANGUAGE sql VOLATILE"
                " PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS {body}"
            ).format(uuid7=uuid7, body=sql.Literal(UUID7_BODY))
        )
        body = FIRE_BODY.format(
            triggers=triggers.as_string(cursor),
            jobs=jobs.as_string(cursor),
            uuid7=uuid7.as_string(cursor),
        )
        await cursor.execute(
            sql.SQL(
                "CREATE FUNCTION {fire}() RETURNS trigger LANGUAGE plpgsql"
                " SET search_path = pg_catalog, pg_temp AS {body}"
            ).format(fire=fire, body=sql.Literal(body))
        )

    async def down(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        schema = await _schema_of(cursor, migrator.table("triggers"))
        if schema is None:
            # No table (removed by hand): look for the functions where
            # unqualified names would have put them.
            await cursor.execute("SELECT current_schema() AS s")
            row = await cursor.fetchone()
            current = row and (row["s"] if isinstance(row, dict) else row[0])
            if not current:
                return
            schema = str(current)
        await drop_installed_triggers(migrator, cursor, schema)
        for function in ("trigger_fire", "uuid7"):
            await cursor.execute(
                sql.SQL("DROP FUNCTION IF EXISTS {}()").format(
                    sql.Identifier(schema, migrator.name(function))
                )
            )
        await cursor.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(
                sql.Identifier(schema, migrator.name("triggers"))
            )
        )
