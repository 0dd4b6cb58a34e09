"""Running coroutines from commands, and turning the errors a user can fix
into one-line messages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import click

from chancy.app import Chancy
from chancy.cli._app import CliState, get_app
from chancy.errors import ChancyError
from chancy.utils import redact_dsn

__all__ = ["LOOPS", "loop_factory", "run_async", "run_with_app"]

#: The event loops ``chancy worker start --loop`` accepts.
LOOPS = ("auto", "asyncio", "uvloop")

T = TypeVar("T")


def _user_error(exc: BaseException) -> click.ClickException | None:
    """A clean CLI error for the failures a user causes or can fix, else ``None``."""
    import psycopg
    import psycopg.errors

    if isinstance(exc, psycopg.errors.UndefinedTable):
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return click.ClickException(
            f"{first}: the database is not migrated; run"
            f" `chancy --app {_current_app_path()} migrate` first"
        )
    if isinstance(exc, ChancyError):
        return click.ClickException(redact_dsn(str(exc)))
    if isinstance(exc, ConnectionError):
        message = str(exc)
        if not message.startswith("cannot connect"):
            message = f"cannot connect to PostgreSQL: {message}"
        return click.ClickException(redact_dsn(message))
    if isinstance(exc, psycopg.OperationalError):
        return click.ClickException(redact_dsn(f"database error: {exc}"))
    return None


def _current_app_path() -> str:
    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(CliState) if ctx is not None else None
    return state.display_path if state is not None else "IMPORT_PATH"


def loop_factory(loop: str = "asyncio") -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop constructor for ``loop``: ``"asyncio"`` (the standard
    loop), ``"uvloop"`` (needs ``pip install "chancy-core[uvloop]"``) or
    ``"auto"`` (uvloop when it is installed, else asyncio).

    :raises click.UsageError: ``"uvloop"`` without uvloop installed, or an
        unknown name.
    """
    if loop not in LOOPS:
        raise click.UsageError(f"unknown event loop {loop!r}; choose one of {LOOPS}")
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise click.UsageError(
                    "--loop uvloop needs uvloop: pip install 'chancy-core[uvloop]'"
                ) from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_async(main: Coroutine[Any, Any, T], *, loop: str = "asyncio") -> T:
    """Run ``main`` on a new event loop (see :func:`loop_factory`) and return
    its result.

    Errors a user can fix (a :class:`~chancy.errors.ChancyError`, no database
    connection, tables not migrated) become a :class:`click.ClickException`:
    a one-line message and exit status 1 instead of a traceback.
    """
    try:
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            return runner.run(main)
    except click.ClickException:
        raise
    except Exception as exc:
        error = _user_error(exc)
        if error is None:
            raise
        raise error from exc


def run_with_app(
    ctx: click.Context | None,
    func: Callable[[Chancy], Awaitable[T]],
    *,
    loop: str = "asyncio",
) -> T:
    """Run ``await func(app)`` inside ``async with app:`` (see :func:`run_async`)."""
    app = get_app(ctx)

    async def main() -> T:
        async with app:
            return await func(app)

    return run_async(main(), loop=loop)
