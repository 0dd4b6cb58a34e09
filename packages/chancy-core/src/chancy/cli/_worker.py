"""The ``worker`` group: ``worker start`` (plugins add more, such as
chancy-web's ``worker web``)."""

from __future__ import annotations

import click

from chancy.app import Chancy
from chancy.cli._app import _state
from chancy.cli._root import BuiltinGroup
from chancy.cli._run import LOOPS, run_with_app
from chancy.errors import MigrationsNeededError
from chancy.worker import Worker

__all__ = ["worker_group", "worker_start"]


@click.group("worker", cls=BuiltinGroup)
def worker_group() -> None:
    """Run workers."""


@worker_group.command("start")
@click.option("--worker-id", "-w", default=None, help="Unique id (default: random).")
@click.option(
    "--tags",
    "-t",
    multiple=True,
    metavar="TAG",
    help="Extra worker tags for queue matching (repeatable).",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=30,
    show_default=True,
    help="Seconds to let running jobs finish when stopping.",
)
@click.option(
    "--loop",
    type=click.Choice(LOOPS),
    default="auto",
    show_default=True,
    help="Event loop: uvloop (when installed: pip install 'chancy-core[uvloop]',"
    " about 8% less CPU per job) or the standard asyncio loop.",
)
@click.pass_context
def worker_start(
    ctx: click.Context,
    worker_id: str | None,
    tags: tuple[str, ...],
    shutdown_timeout: float,
    loop: str = "auto",
) -> None:
    """Run a worker until SIGINT or SIGTERM (a second signal exits at once).

    Exits with status 1 if the database needs migrating.
    """

    async def main(app: Chancy) -> bool:
        worker = Worker(
            app,
            worker_id=worker_id,
            tags=set(tags),
            shutdown_timeout=shutdown_timeout,
        )
        try:
            await worker.start()
        except MigrationsNeededError:
            return False
        except BaseException:
            await worker.stop()
            raise
        try:
            await worker.wait_for_shutdown()
        finally:
            await worker.stop()
        return True

    if not run_with_app(ctx, main, loop=loop):
        path = _state(ctx).display_path
        click.echo(
            "Error: the database schema is not up to date. Apply the pending"
            f" migrations with:\n\n    chancy --app {path} migrate\n\n"
            f"and check them with:\n\n    chancy --app {path} check-migrations",
            err=True,
        )
        ctx.exit(1)
