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

import logging as _logging
from typing import TYPE_CHECKING, Any

import pluggy as _pluggy

# ``chancy.job`` is both a module and the decorator: import it eagerly so that
# the decorator, not the module, is what ``from chancy import job`` gives.
from chancy.job import Job, Limit, QueuedJob, Reference, job

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.errors import Snooze as Snooze
    from chancy.queue import Queue
    from chancy.worker import Worker

# A library only adds a NullHandler; applications configure logging (the
# ``chancy`` command line does, with chancy.utils.configure_logging).
_logging.getLogger("chancy").addHandler(_logging.NullHandler())

#: Marks hook implementations: ``@chancy.hookimpl def chancy_job_completed(...)``.
hookimpl = _pluggy.HookimplMarker("chancy")

# The public names are imported on first use, so that ``import chancy.testing``
# (loaded by pytest in every suite of a project that installs chancy-core) and
# plugin ``hooks`` modules stay cheap.
_LAZY = {
    "Chancy": "chancy.app",
    "Queue": "chancy.queue",
    "Worker": "chancy.worker",
    # Not in __all__ (the original's eight names), but public:
    # ``raise chancy.Snooze(30)`` from a job.
    "Snooze": "chancy.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chancy' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = ["Chancy", "Job", "Limit", "Queue", "QueuedJob", "Reference", "Worker", "job"]
__version__ = "0.1.0"
