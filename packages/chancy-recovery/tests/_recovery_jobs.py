"""Job functions for the recovery tests, importable by name in both the test
process and the worker process it starts (the tests put this directory on
``sys.path``)."""

from __future__ import annotations

import asyncio
import os
import time

from chancy import QueuedJob


async def sleep_and_record(
    *, path: str, first_seconds: float, then_seconds: float, context: QueuedJob
) -> None:
    """Append ``start <job id> <pid> <time>`` to ``path``, sleep, then ``end ...``.

    The first run sleeps ``first_seconds`` (long: it is killed meanwhile),
    runs after a lost one ``then_seconds``.
    """
    seconds = then_seconds if context.meta.get("lost_runs") else first_seconds
    with open(path, "a") as f:  # noqa: ASYNC230 - a tiny append, on purpose
        f.write(f"start {context.id} {os.getpid()} {time.time()}\n")
    await asyncio.sleep(seconds)
    with open(path, "a") as f:  # noqa: ASYNC230 - a tiny append, on purpose
        f.write(f"end {context.id} {os.getpid()} {time.time()}\n")
