"""Adapter for pgqueuer (its own virtualenv).

Settings, as documented: ``AsyncpgDriver`` over an asyncpg connection,
``PgQueuer.run(batch_size=10, max_concurrent_tasks=50)`` (batch size is its
default; LISTEN/NOTIFY is always on), bulk enqueue with ``Queries.enqueue``
given lists (one statement). Entrypoints are async; the "threads" burn-down
wraps a sync function in ``asyncio.to_thread`` as pgqueuer's docs say. There
is no process executor. Finished jobs leave the queue table and are recorded
in ``pgqueuer_log``; that log is what "finished and saved" is read from.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import System, main, ready, stop_event_from_stdin

ENTRYPOINTS = {"async": "noop_async", "threads": "noop_threads"}


class PgqueuerSystem(System):
    name = "pgqueuer"
    executors = {
        "async": None,
        "threads": None,
        "processes": "pgqueuer has no process executor",
    }

    finished_sql = (
        "SELECT count(DISTINCT job_id) FROM pgqueuer_log"
        " WHERE entrypoint <> 'prefill' AND status = 'successful'"
    )
    failed_sql = (
        "SELECT count(*) FROM pgqueuer_log"
        " WHERE entrypoint <> 'prefill' AND status IN ('exception', 'failed')"
    )
    rows_sql = "SELECT count(*), count(DISTINCT split_part(convert_from(payload, 'UTF8'), ' ', 1)) FROM pgqueuer"
    vacuum_tables = ("pgqueuer", "pgqueuer_log")

    def __init__(self, dsn: str, options: dict[str, Any]) -> None:
        super().__init__(dsn, options)
        self.conn: Any = None
        self.queries: Any = None

    async def setup(self, executor: str) -> None:
        import asyncpg
        from pgqueuer import AsyncpgDriver, Queries

        self.conn = await asyncpg.connect(self.dsn)
        self.queries = Queries(AsyncpgDriver(self.conn))
        await self.queries.install()

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    def make_jobs(self, items: list[tuple[int, float]], executor: str) -> list[Any]:
        ep = ENTRYPOINTS[executor]
        return [(ep, b"%d %.6f" % (seq, t)) for seq, t in items]

    async def push_bulk(self, jobs: list[Any]) -> None:
        await self.queries.enqueue(
            [ep for ep, _ in jobs], [p for _, p in jobs], [0] * len(jobs)
        )

    async def push_one(self, job: Any) -> None:
        ep, payload = job
        await self.queries.enqueue(ep, payload)

    async def prefill_finished(self, conn: Any, n: int) -> None:
        await conn.execute(
            "INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, aggregated)"
            " SELECT g, 'successful', 0, 'prefill', true FROM generate_series(1, %s) AS g",
            (n,),
        )


async def worker_main(cfg: dict[str, Any]) -> None:
    import asyncpg
    import pgqueuer_jobs
    from pgqueuer import AsyncpgDriver, PgQueuer

    loop = asyncio.get_running_loop()
    stop = stop_event_from_stdin(loop)
    conn = await asyncpg.connect(cfg["dsn"])
    pgq = PgQueuer(AsyncpgDriver(conn))
    pgq.entrypoint("noop_async")(pgqueuer_jobs.noop_async)
    pgq.entrypoint("noop_threads")(pgqueuer_jobs.noop_threads)
    task = asyncio.create_task(
        pgq.run(batch_size=10, max_concurrent_tasks=int(cfg["concurrency"]))
    )
    await asyncio.sleep(0.5)  # listening
    ready()
    await stop.wait()
    pgq.shutdown.set()
    await task
    await conn.close()


if __name__ == "__main__":
    main(PgqueuerSystem, worker_main)
