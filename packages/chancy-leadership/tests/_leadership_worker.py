"""A worker with Leadership in a process of its own, for the leadership tests.

Usage: python _leadership_worker.py DSN WORKER_ID POLL_INTERVAL TIMEOUT

Prints ``STARTED`` once the worker runs, then ``LEADER`` each time it becomes
the leader and ``FOLLOWER`` each time it stops being it (one line each,
flushed at once), so the test can follow it and kill it at the right time.
"""

from __future__ import annotations

import asyncio
import sys

from chancy import Chancy, Worker
from chancy.plugins.leadership import Leadership


async def main(dsn: str, worker_id: str, poll_interval: float, timeout: float) -> None:
    plugin = Leadership(poll_interval=poll_interval, timeout=timeout)
    async with Chancy(dsn, plugins=[plugin], no_default_plugins=True) as chancy:
        worker = Worker(chancy, worker_id=worker_id, register_signal_handlers=True)
        await worker.start()
        print("STARTED", flush=True)
        while not worker.shutdown_event.is_set():
            await worker.is_leader.wait()
            print("LEADER", flush=True)
            while worker.is_leader.is_set():
                await asyncio.sleep(0.005)
            print("FOLLOWER", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
