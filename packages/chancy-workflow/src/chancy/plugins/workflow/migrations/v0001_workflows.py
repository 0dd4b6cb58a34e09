"""The workflow tables: one row per workflow, one row per step."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncCursor, sql

from chancy.migrate import Migration, Migrator


class CreateWorkflowTables(Migration):
    async def up(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        t = migrator.table
        statements = [
            sql.SQL(
                """
                CREATE TABLE {workflows} (
                    id UUID PRIMARY KEY,
                    name TEXT NOT NULL,
                    state TEXT NOT NULL DEFAULT 'pending',
                    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
                    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
                )
                """
            ).format(workflows=t("workflows")),
            sql.SQL("CREATE INDEX {name} ON {workflows} (state)").format(
                name=t("workflows_state_idx"), workflows=t("workflows")
            ),
            # The leader's scan: unfinished workflows, oldest first. Finished
            # workflows (the vast majority over time) are not in this index.
            sql.SQL(
                "CREATE INDEX {name} ON {workflows} (created_at, id)"
                " WHERE state IN ('pending', 'running')"
            ).format(name=t("workflows_active_idx"), workflows=t("workflows")),
            sql.SQL(
                """
                CREATE TABLE {steps} (
                    id BIGSERIAL PRIMARY KEY,
                    workflow_id UUID NOT NULL
                        REFERENCES {workflows} (id) ON DELETE CASCADE,
                    step_id TEXT NOT NULL,
                    job_data JSONB NOT NULL,
                    dependencies JSONB NOT NULL,
                    job_id UUID,
                    state TEXT,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
                    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
                )
                """
            ).format(steps=t("workflow_steps"), workflows=t("workflows")),
            sql.SQL("CREATE INDEX {name} ON {steps} (workflow_id)").format(
                name=t("workflow_steps_workflow_id_idx"), steps=t("workflow_steps")
            ),
            sql.SQL(
                "CREATE UNIQUE INDEX {name} ON {steps} (workflow_id, step_id)"
            ).format(name=t("workflows_steps_unique_idx"), steps=t("workflow_steps")),
            # From a job back to its step (dashboards, clean-up of stray jobs).
            sql.SQL(
                "CREATE INDEX {name} ON {steps} (job_id) WHERE job_id IS NOT NULL"
            ).format(name=t("workflow_steps_job_id_idx"), steps=t("workflow_steps")),
        ]
        for statement in statements:
            await cursor.execute(statement)

    async def down(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        for name in ("workflow_steps", "workflows"):
            await cursor.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(migrator.table(name))
            )
