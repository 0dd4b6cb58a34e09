"""A worker with Leadership and Recovery in a process of its own, for the
recovery tests (which kill it).

Usage: python _recovery_worker.py DSN WORKER_ID

It heartbeats every 0.2 s, serves every queue, and prints ``STARTED`` once it
runs and ``LEADER`` once it leads (lines flushed at once).
"""

from __future__ import annotations

import asyncio
import sys

from chancy import Chancy, Worker
from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import Recovery


async def main(dsn: str, worker_id: str) -> None:
    plugins = [Leadership(0.2, 0.6), Recovery(poll_interval=0.2, heartbeat_timeout=1)]
    async with Chancy(dsn, plugins=plugins, no_default_plugins=True) as chancy:
        worker = Worker(
            chancy,
            worker_id=worker_id,
            heartbeat_poll_interval=0.2,
            heartbeat_timeout=1,
            register_signal_handlers=True,
        )
        await worker.start()
        print("STARTED", flush=True)
        await worker.is_leader.wait()
        print("LEADER", flush=True)
        await worker.wait_for_shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
