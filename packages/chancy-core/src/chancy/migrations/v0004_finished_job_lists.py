"""Lists of finished jobs, newest first, stay fast behind a big backlog.

The dashboard and the API list jobs of one state newest id first (``WHERE
state = 'succeeded' ORDER BY id DESC LIMIT n``, paged with ``id < before``).
With only the primary key to walk, PostgreSQL scans it backwards and filters
by state: behind a million newer pending jobs, the first page of succeeded
jobs read a million rows (270 ms at 10 M finished + 1 M pending rows, in
``hatch run bench:run --workloads scale_table``).

One partial index per finished state, on ``id``, makes those lists a range
scan. A row enters one of them once, when its job finishes (the same
update that already enters ``idx_jobs_finished``); pushes, claims and
retries never touch them. Lists of unfinished states need no index: those
rows are the newest, at the top of the primary key.

Building them takes a lock that blocks writes to the jobs table while the
index is built (seconds per million finished rows).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncCursor, sql

from chancy.migrate import Migration, Migrator

_STATES = ("succeeded", "failed")


class FinishedJobLists(Migration):
    async def up(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        t = migrator.table
        for state in _STATES:
            await cursor.execute(
                sql.SQL(
                    "CREATE INDEX {name} ON {jobs} (id) WHERE state = {state}"
                ).format(
                    name=t(f"idx_jobs_{state}"),
                    jobs=t("jobs"),
                    state=sql.Literal(state),
                )
            )

    async def down(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        t = migrator.table
        for state in _STATES:
            await cursor.execute(
                sql.SQL("DROP INDEX IF EXISTS {}").format(t(f"idx_jobs_{state}"))
            )
