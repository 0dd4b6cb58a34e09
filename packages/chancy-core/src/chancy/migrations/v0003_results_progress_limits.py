"""Stored results, live progress, cluster-wide and per-key limits.

Jobs get ``result`` (the return value as JSON), ``progress`` (the latest
``{"done", "total", "message", "at"}`` a running job reported),
``concurrency_key`` and ``store_result``; queues get ``global_concurrency``, ``key_concurrency``,
``key_rate_limit`` and ``key_rate_limit_window``. Every new column is
nullable, so existing rows stay valid and nothing is rewritten.

Two indexes serve the per-key limits: running jobs by key (counting what
runs) and runnable jobs by key (finding the head of each key's backlog, so a
hot key never hides the others). A table holds the per-key rate-limit
windows.

The function ``{prefix}fetch_limited`` is the fetch of a queue with any of
those limits. Workers fetching one queue at the same moment must not both
see the same free capacity, so it first takes a transaction-level advisory
lock per queue, then counts and claims in a statement of its own: in a
``VOLATILE`` PL/pgSQL function each statement takes a fresh snapshot, so the
count sees every claim committed before the lock was granted. The worker
calls it as one statement (one round trip), as it does the plain fetch.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncCursor, sql

from chancy.migrate import Migration, Migrator


class ResultsProgressLimits(Migration):
    async def up(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        t = migrator.table
        for statement in (
            sql.SQL(
                "ALTER TABLE {jobs} ADD COLUMN result JSONB,"
                " ADD COLUMN progress JSONB, ADD COLUMN concurrency_key TEXT,"
                " ADD COLUMN store_result BOOLEAN NOT NULL DEFAULT TRUE"
            ).format(jobs=t("jobs")),
            sql.SQL(
                "ALTER TABLE {queues} ADD COLUMN global_concurrency INTEGER,"
                " ADD COLUMN key_concurrency INTEGER, ADD COLUMN key_rate_limit INTEGER,"
                " ADD COLUMN key_rate_limit_window INTEGER"
            ).format(queues=t("queues")),
            sql.SQL(
                "CREATE INDEX {name} ON {jobs} (queue, concurrency_key)"
                " WHERE state = 'running' AND concurrency_key IS NOT NULL"
            ).format(name=t("idx_jobs_running_key"), jobs=t("jobs")),
            sql.SQL(
                "CREATE INDEX {name} ON {jobs} (queue, concurrency_key, priority DESC, id)"
                " INCLUDE (scheduled_at)"
                " WHERE state IN ('pending', 'retrying') AND concurrency_key IS NOT NULL"
            ).format(name=t("idx_jobs_fetch_key"), jobs=t("jobs")),
            sql.SQL(
                """
                CREATE TABLE {rate} (
                    queue TEXT NOT NULL,
                    concurrency_key TEXT NOT NULL,
                    window_start BIGINT NOT NULL,
                    count INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (queue, concurrency_key)
                )
                """
            ).format(rate=t("key_rate_limits")),
            fetch_limited(migrator, cursor),
        ):
            await cursor.execute(statement)

    async def down(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        t = migrator.table
        for statement in (
            sql.SQL("DROP FUNCTION IF EXISTS {}").format(t("fetch_limited")),
            sql.SQL("DROP TABLE IF EXISTS {}").format(t("key_rate_limits")),
            sql.SQL("DROP INDEX IF EXISTS {}").format(t("idx_jobs_fetch_key")),
            sql.SQL("DROP INDEX IF EXISTS {}").format(t("idx_jobs_running_key")),
            sql.SQL(
                "ALTER TABLE {queues} DROP COLUMN global_concurrency,"
                " DROP COLUMN key_concurrency, DROP COLUMN key_rate_limit,"
                " DROP COLUMN key_rate_limit_window"
            ).format(queues=t("queues")),
            sql.SQL(
                "ALTER TABLE {jobs} DROP COLUMN result, DROP COLUMN progress,"
                " DROP COLUMN concurrency_key, DROP COLUMN store_result"
            ).format(jobs=t("jobs")),
        ):
            await cursor.execute(statement)


#: A job that may run now.
_RUNNABLE = (
    "j.state IN ('pending', 'retrying') AND j.attempts < j.max_attempts"
    " AND j.scheduled_at <= now()"
)


def fetch_limited(migrator: Migrator, cursor: AsyncCursor[Any]) -> sql.Composed:
    """``{prefix}fetch_limited(queue, up_to, worker_id, global_concurrency,
    key_concurrency, key_rate_limit, key_rate_limit_window) RETURNS SETOF jobs``."""
    t = migrator.table
    body = sql.SQL(
        """
DECLARE
    v_available integer := p_limit;
    v_running integer;
    v_window bigint;
BEGIN
    -- One fetcher of this queue at a time, until its transaction commits:
    -- the statements below take their snapshot after the lock is granted.
    PERFORM pg_advisory_xact_lock(hashtextextended({lock_prefix} || p_queue, 0));
    PERFORM set_config('synchronous_commit', 'off', true);
    IF EXISTS (SELECT 1 FROM {queues} q WHERE q.name = p_queue AND q.state = 'paused')
    THEN
        RETURN;
    END IF;
    IF p_global IS NOT NULL THEN
        SELECT count(*) INTO v_running FROM {jobs} j
        WHERE j.queue = p_queue AND j.state = 'running';
        v_available := LEAST(v_available, p_global - v_running);
    END IF;
    IF v_available <= 0 THEN
        RETURN;
    END IF;
    IF p_key_concurrency IS NULL AND p_key_rate IS NULL THEN
        RETURN QUERY
        WITH selected AS (
            SELECT j.id FROM {jobs} j
            WHERE j.queue = p_queue AND {runnable}
            ORDER BY j.priority DESC, j.id LIMIT v_available
            FOR UPDATE SKIP LOCKED
        )
        UPDATE {jobs} j SET state = 'running', started_at = now(),
            taken_by = p_worker, claim_id = gen_random_uuid()
        FROM selected WHERE j.id = selected.id
        RETURNING j.*;
        RETURN;
    END IF;
    IF p_key_rate IS NOT NULL THEN
        v_window := (floor(extract(epoch FROM now()) / p_key_window) * p_key_window)::bigint;
    END IF;
    RETURN QUERY
    WITH RECURSIVE keys(k) AS (
        -- Each key with waiting jobs, found by skipping through the index
        -- (one probe per key): a key with a long backlog hides no other.
        (SELECT j.concurrency_key FROM {jobs} j
         WHERE j.queue = p_queue AND j.state IN ('pending', 'retrying')
           AND j.concurrency_key IS NOT NULL
         ORDER BY j.concurrency_key LIMIT 1)
        UNION ALL
        SELECT (SELECT j.concurrency_key FROM {jobs} j
                WHERE j.queue = p_queue AND j.state IN ('pending', 'retrying')
                  AND j.concurrency_key > keys.k
                ORDER BY j.concurrency_key LIMIT 1)
        FROM keys WHERE keys.k IS NOT NULL
    ),
    allowed AS (
        SELECT keys.k, LEAST(
            v_available,
            COALESCE(p_key_concurrency - (
                SELECT count(*) FROM {jobs} r
                WHERE r.queue = p_queue AND r.state = 'running'
                  AND r.concurrency_key = keys.k), v_available),
            COALESCE(p_key_rate - COALESCE((
                SELECT w.count FROM {key_rate_limits} w
                WHERE w.queue = p_queue AND w.concurrency_key = keys.k
                  AND w.window_start = v_window), 0), v_available)
        )::integer AS n
        FROM keys WHERE keys.k IS NOT NULL
    ),
    candidates AS (
        SELECT c.id FROM allowed a CROSS JOIN LATERAL (
            SELECT j.id FROM {jobs} j
            WHERE j.queue = p_queue AND j.concurrency_key = a.k AND {runnable}
            ORDER BY j.priority DESC, j.id LIMIT GREATEST(a.n, 0)
        ) c
        UNION ALL
        (SELECT j.id FROM {jobs} j
         WHERE j.queue = p_queue AND j.concurrency_key IS NULL AND {runnable}
         ORDER BY j.priority DESC, j.id LIMIT v_available)
    ),
    selected AS (
        SELECT j.id FROM {jobs} j WHERE j.id IN (SELECT id FROM candidates)
        ORDER BY j.priority DESC, j.id LIMIT v_available
        FOR UPDATE SKIP LOCKED
    ),
    claimed AS (
        UPDATE {jobs} j SET state = 'running', started_at = now(),
            taken_by = p_worker, claim_id = gen_random_uuid()
        FROM selected WHERE j.id = selected.id
        RETURNING j.*
    ),
    counted AS (
        INSERT INTO {key_rate_limits} AS w (queue, concurrency_key, window_start, count)
        SELECT p_queue, c.concurrency_key, v_window, count(*) FROM claimed c
        WHERE p_key_rate IS NOT NULL AND c.concurrency_key IS NOT NULL
        GROUP BY c.concurrency_key
        ON CONFLICT (queue, concurrency_key) DO UPDATE SET
            count = CASE WHEN w.window_start = EXCLUDED.window_start
                THEN w.count + EXCLUDED.count ELSE EXCLUDED.count END,
            window_start = EXCLUDED.window_start
    )
    SELECT * FROM claimed;
END
"""
    ).format(
        lock_prefix=sql.Literal(f"{migrator.prefix}fetch:"),
        queues=t("queues"),
        jobs=t("jobs"),
        key_rate_limits=t("key_rate_limits"),
        runnable=sql.SQL(_RUNNABLE),
    )
    return sql.SQL(
        "CREATE FUNCTION {name}(p_queue text, p_limit integer, p_worker text,"
        " p_global integer, p_key_concurrency integer, p_key_rate integer,"
        " p_key_window integer) RETURNS SETOF {jobs} LANGUAGE plpgsql VOLATILE"
        " AS {body}"
    ).format(
        name=t("fetch_limited"),
        jobs=t("jobs"),
        body=sql.Literal(body.as_string(cursor)),
    )
