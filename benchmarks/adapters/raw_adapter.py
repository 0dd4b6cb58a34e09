"""The physical-limit yardstick: the same work with nothing but psycopg and SQL.

No queue library runs here. The schema is Chancy's own: ``setup`` creates it
with ours' core migrations (``Chancy(dsn, no_default_plugins=True).migrate()``,
so the ``chancy_jobs`` table and its indexes are exactly the ones ours works
against); everything measured after that is hand-written SQL through psycopg:

- bulk enqueue: one ``COPY chancy_jobs (…) FROM STDIN`` of the same columns
  ours' ``push_many`` writes (id, queue, func, kwargs, limits, meta, priority,
  max_attempts, scheduled_at), text lines formatted with f-strings (ids are a
  random prefix plus a counter), written 1,000 rows per data message, then one
  ``pg_notify``, all in one transaction;
- single push: one autocommit ``INSERT … SELECT … FROM (SELECT pg_notify(…))``
  of the same row (a prepared statement, the id from ``uuid4``);
- the worker: one process, a ``LISTEN`` connection and a work connection; a
  loop that claims up to ``concurrency`` jobs with ``SELECT … FOR UPDATE SKIP
  LOCKED`` inside an ``UPDATE … RETURNING id, kwargs`` (claims committed with
  ``synchronous_commit=off``, as ours does), runs each job inline (the same
  ledger write every system's job does), and marks the batch succeeded with
  one ``UPDATE … WHERE id = ANY(%s)``; when a claim comes back empty it sleeps
  until a notification (or 1 s). No executor, no outcome buffer, no plugins:
  only the "threads"/"processes" burn-downs are n/a.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import System, main, ready, record, stop_event_from_stdin

CHANNEL = "raw_bench"
QUEUE = "bench"
FUNC = "raw.noop"

COPY_SQL = (
    "COPY chancy_jobs (id, queue, func, kwargs, limits, meta, priority,"
    " max_attempts, scheduled_at) FROM STDIN"
)
INSERT_NOTIFY_SQL = (
    "INSERT INTO chancy_jobs (id, queue, func, kwargs, limits, meta, priority,"
    " max_attempts, scheduled_at)"
    " SELECT %s, %s, %s, %s::jsonb, '[]'::jsonb, '{}'::jsonb, 0, 1, now()"
    " FROM (SELECT pg_notify(%s, %s)) AS n"
)
FETCH_SQL = (
    "WITH selected AS (SELECT id FROM chancy_jobs"
    " WHERE queue = %(queue)s AND state IN ('pending', 'retrying')"
    " AND scheduled_at <= now()"
    " ORDER BY priority DESC, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED),"
    " async_commit AS (SELECT set_config('synchronous_commit', 'off', true) AS s)"
    " UPDATE chancy_jobs j SET state = 'running', started_at = now(),"
    " taken_by = %(worker)s FROM selected, async_commit"
    " WHERE j.id = selected.id AND async_commit.s IS NOT NULL"
    " RETURNING j.id, j.kwargs"
)
SAVE_SQL = (
    "UPDATE chancy_jobs SET state = 'succeeded', completed_at = now(),"
    " attempts = attempts + 1 WHERE id = ANY(%s)"
)
COPY_CHUNK = 1000


def kwargs_json(seq: int, t: float) -> str:
    return f'{{"seq": {seq}, "t": {t!r}}}'


class RawSystem(System):
    name = "raw"
    executors = {
        "async": None,
        "threads": "the raw loop runs jobs inline (no executors)",
        "processes": "the raw loop runs jobs inline (no executors)",
    }

    finished_sql = (
        "SELECT count(*) FROM chancy_jobs WHERE queue = 'bench' AND state = 'succeeded'"
    )
    failed_sql = (
        "SELECT count(*) FROM chancy_jobs WHERE queue = 'bench' AND state = 'failed'"
    )
    rows_sql = (
        "SELECT count(*), count(DISTINCT kwargs->>'seq') FROM chancy_jobs"
        " WHERE queue = 'bench'"
    )
    vacuum_tables = ("chancy_jobs",)

    def __init__(self, dsn: str, options: dict[str, Any]) -> None:
        super().__init__(dsn, options)
        self.conn: Any = None

    async def setup(self, executor: str) -> None:
        import psycopg

        from chancy import Chancy

        # Only the schema comes from Chancy (its core migrations).
        async with Chancy(self.dsn, no_default_plugins=True) as chancy:
            await chancy.migrate()
        self.conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    def make_jobs(self, items: list[tuple[int, float]], executor: str) -> list[Any]:
        return list(items)

    async def push_bulk(self, jobs: list[tuple[int, float]]) -> None:
        prefix = uuid.uuid4().hex[:20]
        scheduled = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
        tail = f"\t[]\t{{}}\t0\t1\t{scheduled}\n"
        head = f"\t{QUEUE}\t{FUNC}\t"
        async with self.conn.transaction():
            cur = self.conn.cursor()
            async with cur.copy(COPY_SQL) as copy:
                for lo in range(0, len(jobs), COPY_CHUNK):
                    chunk = jobs[lo : lo + COPY_CHUNK]
                    text = "".join(
                        f'{prefix}{lo + i:012x}{head}{{"seq": {seq}, "t": {t!r}}}{tail}'
                        for i, (seq, t) in enumerate(chunk)
                    )
                    await copy.write(text.encode())
            await self.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, QUEUE))

    async def push_one(self, job: tuple[int, float]) -> None:
        seq, t = job
        await self.conn.execute(
            INSERT_NOTIFY_SQL,
            (uuid.uuid4(), QUEUE, FUNC, kwargs_json(seq, t), CHANNEL, QUEUE),
            prepare=True,
        )

    async def prefill_finished(self, conn: Any, n: int) -> None:
        await conn.execute(
            "INSERT INTO chancy_jobs (id, queue, func, kwargs, state, attempts, max_attempts,"
            " created_at, started_at, completed_at, scheduled_at)"
            " SELECT gen_random_uuid(), 'prefill', 'raw.noop',"
            " json_build_object('seq', g)::jsonb, 'succeeded', 1, 1,"
            " now() - interval '1 hour', now() - interval '1 hour',"
            " now() - interval '1 hour', now() - interval '1 hour'"
            " FROM generate_series(1, %s) AS g",
            (n,),
        )


async def worker_main(cfg: dict[str, Any]) -> None:
    import psycopg

    loop = asyncio.get_running_loop()
    stop = stop_event_from_stdin(loop)
    dsn = cfg["dsn"]
    limit = int(cfg["concurrency"])
    listen = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    work = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await listen.execute(f"LISTEN {CHANNEL}")
    wake = asyncio.Event()

    async def listener() -> None:
        async for _ in listen.notifies():
            wake.set()

    listening = asyncio.create_task(listener())
    params = {"queue": QUEUE, "limit": limit, "worker": f"raw-{os.getpid()}"}
    ready()
    try:
        while not stop.is_set():
            wake.clear()
            cur = await work.execute(FETCH_SQL, params, prepare=True)
            rows = await cur.fetchall()
            if rows:
                for _, kwargs in rows:
                    record(kwargs["seq"])
                await work.execute(SAVE_SQL, ([r[0] for r in rows],), prepare=True)
                continue
            waiters = [
                asyncio.ensure_future(wake.wait()),
                asyncio.ensure_future(stop.wait()),
            ]
            await asyncio.wait(
                waiters, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
            )
            for w in waiters:
                w.cancel()
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await work.close()
        await listen.close()


if __name__ == "__main__":
    main(RawSystem, worker_main)
