"""A worker with the Cron plugin in a process of its own, for the cron tests.

Usage: python _cron_worker.py DSN WORKER_ID POLL_INTERVAL [--leadership]

It builds ``Chancy(dsn, plugins=[Cron(poll_interval=...)],
no_default_plugins=True)`` (plus ``Leadership(poll_interval=1, timeout=5)``
with ``--leadership``), runs a ``Worker`` that stops gracefully on SIGTERM,
prints ``STARTED`` once it runs and, after it stopped,
``FIRED <schedules fired> PASSES <passes> LEADS <times it became leader>``
(lines flushed at once).

It never outlives the test: it also stops when its parent process goes away
and, at the latest, after ``MAX_LIFETIME`` seconds.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from chancy import Chancy, Worker
from chancy.plugins.cron import Cron

MAX_LIFETIME = 120.0


async def guard(worker: Worker, parent: int) -> None:
    """Stop the worker when the parent dies or the lifetime is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAX_LIFETIME
    while os.getppid() == parent and loop.time() < deadline:
        await asyncio.sleep(0.2)
    print("GUARD: stopping", flush=True)
    await worker.stop()


async def count_leads(worker: Worker, leads: list[int]) -> None:
    """Count how often the worker became leader."""
    while True:
        await worker.is_leader.wait()
        leads[0] += 1
        while worker.is_leader.is_set():
            await asyncio.sleep(0.05)


async def main(
    dsn: str, worker_id: str, poll_interval: float, leadership: bool
) -> None:
    cron = Cron(poll_interval=poll_interval)
    plugins: list[Any] = [cron]
    if leadership:
        from chancy.plugins.leadership import Leadership

        plugins.append(Leadership(poll_interval=1, timeout=5))
    parent = os.getppid()
    async with Chancy(dsn, plugins=plugins, no_default_plugins=True) as chancy:
        worker = Worker(
            chancy,
            worker_id=worker_id,
            register_signal_handlers=True,
            shutdown_timeout=5,
        )
        await worker.start()
        leads = [0]
        helpers = [
            asyncio.create_task(guard(worker, parent)),
            asyncio.create_task(count_leads(worker, leads)),
        ]
        print("STARTED", flush=True)
        try:
            await worker.wait_for_shutdown()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        print(
            f"FIRED {cron.fired_count} PASSES {cron.passes} LEADS {leads[0]}",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(
        main(sys.argv[1], sys.argv[2], float(sys.argv[3]), "--leadership" in sys.argv)
    )
