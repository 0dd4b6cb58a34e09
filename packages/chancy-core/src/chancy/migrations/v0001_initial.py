"""Core schema: jobs, queues, workers, leader lease and rate-limit windows."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncCursor, sql

from chancy.migrate import Migration, Migrator


class Initial(Migration):
    async def up(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        t = migrator.table
        statements = [
            sql.SQL(
                """
                CREATE TABLE {jobs} (
                    id UUID PRIMARY KEY,
                    queue TEXT NOT NULL,
                    func TEXT NOT NULL,
                    kwargs JSONB NOT NULL DEFAULT '{{}}',
                    limits JSONB NOT NULL DEFAULT '[]',
                    meta JSONB NOT NULL DEFAULT '{{}}',
                    state VARCHAR(25) NOT NULL DEFAULT 'pending',
                    priority INTEGER NOT NULL DEFAULT 0,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    max_attempts INTEGER NOT NULL DEFAULT 1,
                    taken_by TEXT,
                    claim_id UUID,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
                    started_at TIMESTAMPTZ,
                    completed_at TIMESTAMPTZ,
                    scheduled_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
                    unique_key TEXT,
                    errors JSONB NOT NULL DEFAULT '[]'
                )
                """
            ).format(jobs=t("jobs")),
            # De-duplication: one unfinished job per unique key.
            sql.SQL(
                "CREATE UNIQUE INDEX {name} ON {jobs} (unique_key)"
                " WHERE unique_key IS NOT NULL AND state NOT IN ('succeeded', 'failed')"
            ).format(name=t("jobs_unique_key"), jobs=t("jobs")),
            # Fetching: only runnable rows are indexed, so finished jobs cost nothing.
            sql.SQL(
                "CREATE INDEX {name} ON {jobs} (queue, priority DESC, id)"
                " INCLUDE (scheduled_at) WHERE state IN ('pending', 'retrying')"
            ).format(name=t("idx_jobs_fetch"), jobs=t("jobs")),
            # Recovery: running jobs by worker.
            sql.SQL(
                "CREATE INDEX {name} ON {jobs} (taken_by) WHERE state = 'running'"
            ).format(name=t("idx_jobs_running"), jobs=t("jobs")),
            # Pruning and dashboards: finished jobs by completion time.
            sql.SQL(
                "CREATE INDEX {name} ON {jobs} (completed_at)"
                " WHERE state IN ('succeeded', 'failed')"
            ).format(name=t("idx_jobs_finished"), jobs=t("jobs")),
            sql.SQL("CREATE INDEX {name} ON {jobs} (queue, state)").format(
                name=t("idx_jobs_queue_state"), jobs=t("jobs")
            ),
            sql.SQL(
                """
                CREATE TABLE {queues} (
                    name TEXT PRIMARY KEY,
                    state TEXT NOT NULL DEFAULT 'active',
                    concurrency INTEGER,
                    tags TEXT[],
                    executor TEXT NOT NULL
                        DEFAULT 'chancy.executors.process.ProcessExecutor',
                    executor_options JSONB NOT NULL DEFAULT '{{}}',
                    polling_interval DOUBLE PRECISION NOT NULL DEFAULT 5,
                    rate_limit INTEGER,
                    rate_limit_window INTEGER,
                    resume_at TIMESTAMPTZ,
                    eager_polling BOOLEAN NOT NULL DEFAULT FALSE,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
                    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
                )
                """
            ).format(queues=t("queues")),
            sql.SQL(
                """
                CREATE UNLOGGED TABLE {workers} (
                    worker_id TEXT PRIMARY KEY,
                    tags TEXT[],
                    queues TEXT[],
                    last_seen TIMESTAMPTZ NOT NULL DEFAULT NOW(),
                    expires_at TIMESTAMPTZ NOT NULL
                )
                """
            ).format(workers=t("workers")),
            sql.SQL(
                """
                CREATE UNLOGGED TABLE {leader} (
                    id BIGINT PRIMARY KEY,
                    worker_id TEXT NOT NULL,
                    first_seen TIMESTAMPTZ NOT NULL DEFAULT NOW(),
                    expires_at TIMESTAMPTZ NOT NULL,
                    CONSTRAINT {constraint} UNIQUE (worker_id)
                )
                """
            ).format(leader=t("leader"), constraint=t("leader_worker_id_unique")),
            sql.SQL(
                """
                CREATE UNLOGGED TABLE {rate} (
                    queue TEXT PRIMARY KEY,
                    window_start BIGINT NOT NULL,
                    count INTEGER NOT NULL DEFAULT 0
                )
                """
            ).format(rate=t("queue_rate_limits")),
        ]
        for statement in statements:
            await cursor.execute(statement)

    async def down(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        for name in ("queue_rate_limits", "leader", "workers", "queues", "jobs"):
            await cursor.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(migrator.table(name))
            )
