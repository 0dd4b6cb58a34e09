"""The ``{prefix}metrics`` table: one row per metric key, resolution and worker.

Each row holds that worker's retained points for the key at one resolution,
newest first: ``timestamps`` (bucket starts) and ``values`` (a JSON number,
or ``{"count", "sum", "avg", "min", "max"}`` for histograms). ``metadata``
keeps the worker's cumulative totals (``{"total"}`` for counters,
``{"count", "sum"}`` for histograms), used for Prometheus counters.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncCursor, sql

from chancy.migrate import Migration, Migrator


class CreateMetrics(Migration):
    async def up(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        await cursor.execute(
            sql.SQL(
                """
                CREATE TABLE {metrics} (
                    metric_key VARCHAR(255) NOT NULL,
                    resolution VARCHAR(10) NOT NULL,
                    worker_id VARCHAR(255) NOT NULL,
                    timestamps TIMESTAMPTZ[] NOT NULL,
                    "values" JSONB[] NOT NULL,
                    metric_type VARCHAR(20) NOT NULL,
                    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
                    metadata JSONB NOT NULL DEFAULT '{{}}',
                    PRIMARY KEY (metric_key, resolution, worker_id)
                )
                """
            ).format(metrics=migrator.table("metrics"))
        )
        await cursor.execute(
            sql.SQL("CREATE INDEX {index} ON {metrics} (updated_at)").format(
                index=migrator.table("metrics_updated_idx"),
                metrics=migrator.table("metrics"),
            )
        )

    async def down(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        await cursor.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(migrator.table("metrics"))
        )
