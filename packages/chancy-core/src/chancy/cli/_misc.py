"""The ``misc`` group (the original's spelling): ``misc migrate``,
``misc check-migrations`` and ``misc shell``, an interactive console."""

from __future__ import annotations

import asyncio
import code
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from chancy import __version__
from chancy.app import Chancy
from chancy.cli._app import get_app
from chancy.cli._migrate import check_migrations_command, migrate_command
from chancy.cli._root import BuiltinGroup
from chancy.cli._run import _user_error
from chancy.job import Job, Limit, QueuedJob, Reference
from chancy.queue import Queue
from chancy.worker import Worker

__all__ = ["misc", "shell"]

T = TypeVar("T")


@click.group("misc", cls=BuiltinGroup)
def misc() -> None:
    """Migrations and an interactive shell (the original's spelling)."""


misc.add_command(migrate_command)
misc.add_command(check_migrations_command)


@misc.command("shell")
@click.pass_context
def shell(ctx: click.Context) -> None:
    """An interactive Python console with the app open.

    Preloaded: chancy (the app), Worker, Job, QueuedJob, Limit, Reference,
    Queue, asyncio, and run(), which runs a coroutine on the console's event
    loop (where the app's async pool is open): run(chancy.get_all_queues()).
    """
    app = get_app(ctx)
    loop = asyncio.new_event_loop()

    def run(awaitable: Awaitable[T]) -> T:
        """Run a coroutine on the shell's event loop and return its result."""
        return loop.run_until_complete(awaitable)

    def checked(func: Callable[[], T]) -> T:
        try:
            return func()
        except Exception as exc:
            error = _user_error(exc)
            if error is None:
                raise
            raise error from exc

    namespace: dict[str, Any] = {
        "chancy": app,
        "Chancy": Chancy,
        "Worker": Worker,
        "Job": Job,
        "QueuedJob": QueuedJob,
        "Limit": Limit,
        "Reference": Reference,
        "Queue": Queue,
        "asyncio": asyncio,
        "run": run,
        "loop": loop,
    }
    banner = (
        f"Chancy {__version__} shell (Python {sys.version.split()[0]})\n"
        "Preloaded: chancy, Worker, Job, QueuedJob, Limit, Reference, Queue,"
        " asyncio.\nRun coroutines with run(...), e.g."
        " run(chancy.get_all_queues()); sync_* methods work directly."
    )
    try:
        asyncio.set_event_loop(loop)
        checked(lambda: run(app.__aenter__()))
        try:
            checked(app.__enter__)
            try:
                code.interact(banner=banner, local=namespace, exitmsg="")
            finally:
                app.__exit__(None, None, None)
        finally:
            run(app.__aexit__(None, None, None))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
