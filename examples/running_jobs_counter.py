"""A custom plugin that runs on the leader: count the running jobs.

Every ``poll_interval`` seconds the worker that currently leads the cluster
counts the jobs in the ``running`` state, logs the number, keeps it in
``plugin.count`` and reports it as the gauge ``examples.running_jobs`` (for
whichever metrics plugin listens). Other workers wait in
``wait_for_leader`` and do nothing.

It is written the way the original Chancy's plugins were, as a ``WORKER``
plugin that waits for leadership inside its loop; declaring
``get_scope() -> PluginScope.LEADER`` instead would let the worker start and
stop the loop as leadership comes and goes.

Run it against your database (the tables are created if needed)::

    python examples/running_jobs_counter.py postgresql://localhost/app
"""

from __future__ import annotations

import asyncio
import sys

from psycopg import sql

from chancy import Chancy, Worker
from chancy.plugin import Plugin
from chancy.plugins.leadership import Leadership


class RunningJobsCounter(Plugin):
    """Counts running jobs on the leader every ``poll_interval`` seconds."""

    def __init__(self, poll_interval: float = 60) -> None:
        super().__init__()
        self.poll_interval = poll_interval
        #: The last count (``None`` before the first one).
        self.count: int | None = None
        #: Set after every count (handy in tests).
        self.counted = asyncio.Event()

    @staticmethod
    def get_identifier() -> str:
        return "examples.running_jobs_counter"

    @staticmethod
    def get_dependencies() -> list[str]:
        return ["chancy.leadership"]

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        while await self.sleep(self.poll_interval):
            await self.wait_for_leader(worker)
            query = sql.SQL(
                "SELECT count(*) FROM {jobs} WHERE state = 'running'"
            ).format(jobs=sql.Identifier(f"{chancy.prefix}jobs"))
            async with chancy.pool.connection() as conn:
                cursor = await conn.execute(query)
                row = await cursor.fetchone()
            self.count = int(row[0]) if row else 0
            worker.log.info("%d job(s) running", self.count)
            await worker.record_gauge("examples.running_jobs", self.count)
            self.counted.set()


async def main(dsn: str) -> None:
    chancy = Chancy(dsn, plugins=[Leadership(), RunningJobsCounter(poll_interval=5)])
    async with chancy:
        await chancy.migrate()
        async with Worker(chancy) as worker:
            await worker.wait_for_shutdown()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DSN")
    asyncio.run(main(sys.argv[1]))
