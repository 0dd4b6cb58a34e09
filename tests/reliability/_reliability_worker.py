"""One worker of the reliability suite, in a process of its own.

Usage: ``python _reliability_worker.py CONFIG_JSON``

``CONFIG_JSON`` holds the DSN, the worker's id and settings, and which
plugins to enable with which settings (see :func:`_reliability.worker_config`).
The process builds ``Chancy(dsn, plugins=[...], no_default_plugins=True)``,
starts a :class:`~chancy.Worker` that stops gracefully on SIGTERM, prints
``STARTED <pid>`` once it serves (flushed at once) and ``STOPPED <clean>``
after a graceful stop.

It never outlives the test that started it: on Linux the kernel kills it
when its parent dies (``PR_SET_PDEATHSIG``), it also stops when its parent
changes (other systems), and at the latest after ``max_lifetime`` seconds.
Its process executors' children die with it (chancy-core does that).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import sys
from typing import Any

from chancy import Chancy, Worker
from chancy.plugin import Plugin

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _plugins(config: dict[str, Any]) -> list[Plugin]:
    plugins: list[Plugin] = []
    if config.get("leadership") is not None:
        from chancy.plugins.leadership import Leadership

        plugins.append(Leadership(**config["leadership"]))
    if config.get("recovery") is not None:
        from chancy.plugins.recovery import Recovery

        plugins.append(Recovery(**config["recovery"]))
    if config.get("cron") is not None:
        from chancy.plugins.cron import Cron

        plugins.append(Cron(**config["cron"]))
    if config.get("workflow") is not None:
        from chancy.plugins.workflow import WorkflowPlugin

        plugins.append(WorkflowPlugin(**config["workflow"]))
    return plugins


async def _guard(worker: Worker, parent: int, lifetime: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lifetime
    while os.getppid() == parent and loop.time() < deadline:
        await asyncio.sleep(0.2)
    print("GUARD stopping the worker", flush=True)
    await worker.stop()


async def main(config: dict[str, Any]) -> None:
    parent = os.getppid()
    # The "chancy" logger (executors log below it) to stderr, with the
    # worker's id on every line; Chancy adds no handler of its own then.
    log = logging.getLogger("chancy")
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s {config['worker_id']} %(levelname)s %(name)s: %(message)s"
        )
    )
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    app = Chancy(
        config["dsn"],
        plugins=_plugins(config),
        no_default_plugins=True,
        max_connection_pool_size=config.get("pool_size", 6),
    )
    async with app:
        worker = Worker(
            app,
            worker_id=config["worker_id"],
            register_signal_handlers=True,
            **config.get("worker", {}),
        )
        await worker.start()
        guard = asyncio.create_task(
            _guard(worker, parent, float(config.get("max_lifetime", 300)))
        )
        print(f"STARTED {os.getpid()}", flush=True)
        try:
            await worker.wait_for_shutdown()
        finally:
            guard.cancel()
        clean = await worker.stop()  # idempotent: the result of the stop
        print(f"STOPPED {clean}", flush=True)


if __name__ == "__main__":
    _die_with_parent()
    asyncio.run(main(json.loads(sys.argv[1])))
