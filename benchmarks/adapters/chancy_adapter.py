"""Adapter for Chancy: ours (the workspace) and the original from PyPI.

Both share the public API, so one adapter serves both; which one runs is
decided by the interpreter (ours: the workspace env; original: its own venv).

Settings (the original's documented recommendations for throughput):
LISTEN/NOTIFY on (the default), ``eager_polling=True`` on the queue,
``push_many`` with its default ``batch_size=1000`` for bulk enqueue (each
batch its own transaction) and ``push_many_ex`` on a pooled connection's
cursor for bulk enqueue in one transaction, default
plugins as ``Chancy(dsn)`` enables them (``--bare`` turns them off for both).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import System, main, ready, stop_event_from_stdin

EXECUTORS = {
    "async": "chancy.executors.asyncex.AsyncExecutor",
    "threads": "chancy.executors.thread.ThreadedExecutor",
    "processes": "chancy.executors.process.ProcessExecutor",
}


def _available(path: str) -> str | None:
    module = path.rsplit(".", 1)[0]
    try:
        return (
            None
            if importlib.util.find_spec(module) is not None
            else f"{module} does not exist"
        )
    except ImportError as exc:
        return f"{module} cannot be imported ({exc})"


def _make_chancy(dsn: str, options: dict[str, Any]) -> Any:
    import logging

    from chancy import Chancy

    log = logging.getLogger("bench.chancy")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s")
        )
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    plugins = []
    if options.get("pruner"):
        # The soak's --prune-* options (benchmarks/soak.py); ours only.
        from chancy.plugins.pruner import Pruner

        given = dict(options["pruner"])
        age = given.pop("age", None)
        if age is not None:
            given["rule"] = Pruner.Rules.Age() > age
        plugins.append(Pruner(**given))
    return Chancy(
        dsn, plugins=plugins, no_default_plugins=bool(options.get("bare")), log=log
    )


class ChancySystem(System):
    name = "chancy"

    def __init__(self, dsn: str, options: dict[str, Any]) -> None:
        super().__init__(dsn, options)
        self.executors = {name: _available(path) for name, path in EXECUTORS.items()}
        self.chancy: Any = None
        import chancy_jobs

        self.jobs = chancy_jobs

    finished_sql = (
        "SELECT count(*) FROM chancy_jobs WHERE queue = 'bench' AND state = 'succeeded'"
    )
    failed_sql = (
        "SELECT count(*) FROM chancy_jobs WHERE queue = 'bench' AND state = 'failed'"
    )
    rows_sql = "SELECT count(*), count(DISTINCT kwargs->>'seq') FROM chancy_jobs WHERE queue = 'bench'"
    vacuum_tables = ("chancy_jobs",)

    async def setup(self, executor: str) -> None:
        from chancy import Queue

        self.chancy = _make_chancy(self.dsn, self.options)
        await self.chancy.__aenter__()
        await self.chancy.migrate()
        await self.chancy.declare(
            Queue(
                "bench",
                concurrency=int(self.options.get("concurrency", 50)),
                executor=EXECUTORS[executor],
                eager_polling=True,
            ),
            upsert=True,
        )

    async def close(self) -> None:
        if self.chancy is not None:
            await self.chancy.__aexit__(None, None, None)

    def make_jobs(self, items: list[tuple[int, float]], executor: str) -> list[Any]:
        template = (
            self.jobs.noop_async if executor == "async" else self.jobs.noop_sync
        ).job
        return [template.with_kwargs(seq=seq, t=t) for seq, t in items]

    async def push_bulk(self, jobs: list[Any]) -> None:
        async for _ in self.chancy.push_many(jobs):
            pass

    async def push_bulk_tx(self, jobs: list[Any]) -> None:
        # The transactional-enqueue primitive on a connection of the app's
        # pool, committed once when the block exits (a dict-row cursor, as
        # the original's own calls use).
        from psycopg.rows import dict_row

        async with (
            self.chancy.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await self.chancy.push_many_ex(cursor, jobs)

    async def push_one(self, job: Any) -> None:
        await self.chancy.push(job)

    async def prefill_finished(self, conn: Any, n: int) -> None:
        cur = await conn.execute(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'chancy_jobs' AND column_name = 'kwargs'"
        )
        (kind,) = await cur.fetchone()
        await conn.execute(
            "INSERT INTO chancy_jobs (id, queue, func, kwargs, state, attempts, max_attempts,"
            " created_at, started_at, completed_at, scheduled_at)"
            f" SELECT gen_random_uuid(), 'prefill', 'chancy_jobs.noop_async',"
            f" json_build_object('seq', g)::text::{kind}, 'succeeded', 1, 1,"
            " now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour',"
            " now() - interval '1 hour'"
            " FROM generate_series(1, %s) AS g",
            (n,),
        )


async def worker_main(cfg: dict[str, Any]) -> None:
    from chancy import Worker

    loop = asyncio.get_running_loop()
    stop = stop_event_from_stdin(loop)
    chancy = _make_chancy(cfg["dsn"], cfg.get("options", {}))
    async with chancy:
        worker = Worker(chancy, register_signal_handlers=False)
        await worker.start()
        ready()
        await stop.wait()
        await worker.stop()


if __name__ == "__main__":
    main(ChancySystem, worker_main)
