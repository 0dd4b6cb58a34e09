"""Adapter for procrastinate (its own virtualenv).

Settings, as documented: ``PsycopgConnector`` (psycopg 3 pool), worker with
``listen_notify=True`` (the default) and ``concurrency=50``; bulk enqueue with
``Task.batch_defer_async`` (one statement), single with ``defer_async``.
Synchronous tasks run in threads (procrastinate's own mechanism), so the
"threads" burn-down uses a sync task; there is no process executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import System, main, ready, stop_event_from_stdin


def _jobs_module(dsn: str) -> Any:
    os.environ["BENCH_DSN"] = dsn
    import procrastinate_jobs

    return procrastinate_jobs


class ProcrastinateSystem(System):
    name = "procrastinate"
    executors = {
        "async": None,
        "threads": None,
        "processes": "procrastinate has no process executor (sync tasks run in threads)",
    }

    finished_sql = "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'bench' AND status = 'succeeded'"
    failed_sql = "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'bench' AND status = 'failed'"
    rows_sql = "SELECT count(*), count(DISTINCT args->>'seq') FROM procrastinate_jobs WHERE queue_name = 'bench'"
    vacuum_tables = ("procrastinate_jobs", "procrastinate_events")

    def __init__(self, dsn: str, options: dict[str, Any]) -> None:
        super().__init__(dsn, options)
        self.mod = _jobs_module(dsn)
        self._opened: Any = None

    async def setup(self, executor: str) -> None:
        self._opened = self.mod.app.open_async()
        await self._opened.__aenter__()
        await self.mod.app.schema_manager.apply_schema_async()

    async def close(self) -> None:
        if self._opened is not None:
            await self._opened.__aexit__(None, None, None)

    def make_jobs(self, items: list[tuple[int, float]], executor: str) -> list[Any]:
        task = self.mod.noop_async if executor == "async" else self.mod.noop_sync
        return [(task, {"seq": seq, "t": t}) for seq, t in items]

    async def push_bulk(self, jobs: list[Any]) -> None:
        await jobs[0][0].batch_defer_async(*[kwargs for _, kwargs in jobs])

    async def push_one(self, job: Any) -> None:
        task, kwargs = job
        await task.defer_async(**kwargs)

    async def prefill_finished(self, conn: Any, n: int) -> None:
        await conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts)"
            " SELECT 'prefill', 'noop_async', jsonb_build_object('seq', g), 'succeeded', 1"
            " FROM generate_series(1, %s) AS g",
            (n,),
        )


async def worker_main(cfg: dict[str, Any]) -> None:
    mod = _jobs_module(cfg["dsn"])
    loop = asyncio.get_running_loop()
    stop = stop_event_from_stdin(loop)
    async with mod.app.open_async():
        task = asyncio.create_task(
            mod.app.run_worker_async(
                queues=["bench"],
                concurrency=int(cfg["concurrency"]),
                listen_notify=True,
                install_signal_handlers=False,
            )
        )
        await asyncio.sleep(0.5)  # registered and listening
        ready()
        await stop.wait()
        task.cancel()  # procrastinate: cancelling run_worker_async stops gracefully
        with contextlib.suppress(asyncio.CancelledError):
            await task


if __name__ == "__main__":
    main(ProcrastinateSystem, worker_main)
