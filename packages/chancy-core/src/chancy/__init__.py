"""Chancy: a distributed job queue and scheduler that needs nothing but PostgreSQL.

::

    from chancy import Chancy, Worker, Queue, job

    @job(queue="default")
    async def hello(*, name: str) -> None:
        print(f"hello, {name}")

    async with Chancy("postgresql://localhost/app") as chancy:
        await chancy.migrate()
        await chancy.declare(Queue("default", executor=Chancy.Executor.Async))
        await chancy.push(hello.job.with_kwargs(name="world"))
        async with Worker(chancy) as worker:
            await worker.wait_for_shutdown()
"""

from __future__ import annotations

# chancy.plugins is a namespace spanning every plugin distribution; extend
# the package path so editable installs (one src/ per package) find them.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

import pluggy as _pluggy

from chancy.app import Chancy
from chancy.job import Job, Limit, QueuedJob, Reference, job
from chancy.queue import Queue
from chancy.worker import Worker

#: Marks hook implementations: ``@chancy.hookimpl def chancy_job_completed(...)``.
hookimpl = _pluggy.HookimplMarker("chancy")

__all__ = ["Chancy", "Job", "Limit", "QueuedJob", "Queue", "Reference", "Worker", "job"]
__version__ = "0.1.0"
