"""The ``chancy`` command line.

::

    chancy --app myproject.tasks:chancy migrate
    chancy --app myproject.tasks:chancy queue declare emails -c 4 -e async
    chancy --app myproject.tasks:chancy job push myproject.tasks.send -k '{"to": 1}'
    chancy --app myproject.tasks:chancy worker start -t web

``--app`` (or the ``CHANCY_APP`` environment variable) names the application
as ``module:attribute`` or ``module.attribute``; the attribute may be a
:class:`~chancy.Chancy` instance or a callable returning one (a factory). The
current directory is importable, as with other command-line tools. Only the
commands that talk to the database need ``--app``: ``chancy --help`` and
``chancy plugins`` work without it.

Commands
========

``migrate`` (also ``misc migrate``), ``check-migrations`` (also
``misc check-migrations``), ``misc shell``, ``queue list|declare|delete|pause|
resume|push``, ``job push|get|cancel``, ``worker start`` and ``plugins``; run
``chancy COMMAND --help`` for their options. User errors (an unknown queue or
job, a database that is not migrated, a bad option) are reported in one line
on standard error with exit status 1 (2 for a bad command line), never with a
traceback.

Commands from plugins
=====================

Plugins add commands or groups through the ``chancy_cli_commands`` hook; they
are found through the ``chancy`` entry points, so they are listed even without
``--app``. A plugin command gets the app from the click context with
:func:`get_app` and runs coroutines with :func:`run_async` (or
:func:`run_with_app`, which also opens the app's pool around the call)::

    # chancy/plugins/cron/cli.py
    import click
    from chancy.cli import get_app, run_async

    @click.group()
    def cron() -> None:
        "Manage cron schedules."

    @cron.command("list")
    @click.pass_context
    def list_schedules(ctx: click.Context) -> None:
        app = get_app(ctx)

        async def main() -> list[str]:
            async with app:
                return await fetch_schedules(app)

        for line in run_async(main()):
            click.echo(line)

    # chancy/plugins/cron/hooks.py
    @hookimpl
    def chancy_cli_commands():
        from chancy.plugins.cron.cli import cron
        return cron

A plugin group named like a built-in group extends it: ``chancy-web``
returns a ``worker`` group holding ``web``, which becomes ``chancy worker
web`` next to the built-in ``chancy worker start``. Any other plugin command
whose name is taken by a built-in command (or an earlier plugin's), and a
subcommand clashing with a built-in one, is skipped with a warning.
"""

from __future__ import annotations

import asyncio
import code
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import click

from chancy import __version__
from chancy.app import CORE_MIGRATION_KEY, Chancy
from chancy.errors import ChancyError, MigrationsNeededError
from chancy.job import Job, Limit, QueuedJob, Reference
from chancy.migrate import Migrator
from chancy.plugin import Plugin
from chancy.queue import Queue
from chancy.utils import configure_logging, import_string, redact_dsn
from chancy.worker import Worker

__all__ = [
    "BuiltinGroup",
    "CliState",
    "cli",
    "format_table",
    "get_app",
    "load_app",
    "main",
    "parse_kwargs_option",
    "run_async",
    "run_with_app",
]

T = TypeVar("T")

#: Short executor names accepted by ``queue declare --executor``.
EXECUTOR_ALIASES: dict[str, str] = {
    "process": Chancy.Executor.Process.value,
    "threaded": Chancy.Executor.Threaded.value,
    "thread": Chancy.Executor.Threaded.value,
    "async": Chancy.Executor.Async.value,
    "sub": Chancy.Executor.SubInterpreter.value,
    "subinterpreter": Chancy.Executor.SubInterpreter.value,
}
_EXECUTOR_SHORT = {
    Chancy.Executor.Process.value: "process",
    Chancy.Executor.Threaded.value: "threaded",
    Chancy.Executor.Async.value: "async",
    Chancy.Executor.SubInterpreter.value: "sub",
}

_PLUGIN_COMMANDS_KEY = "chancy.plugin_commands"


# ---------------------------------------------------------------------------
# Loading the app
# ---------------------------------------------------------------------------


def _ensure_cwd_importable() -> None:
    """Put the current directory on ``sys.path``, as ``python -m`` would."""
    try:
        cwd = os.getcwd()
    except OSError:  # the directory was removed
        return
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def _app_error(path: str, message: str) -> click.UsageError:
    return click.UsageError(
        f"--app {path!r}: {message}", click.get_current_context(silent=True)
    )


def _resolve_attribute(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _import_module(path: str, name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (
            name == exc.name or name.startswith(exc.name + ".")
        ):
            raise _app_error(
                path,
                f"no module named {exc.name!r} (is the current directory, or the"
                " package, importable?)",
            ) from None
        raise _app_error(path, f"importing {name!r} failed: {exc}") from None
    except Exception as exc:
        raise _app_error(
            path, f"importing {name!r} failed: {type(exc).__name__}: {exc}"
        ) from None


def _import_object(path: str) -> Any:
    """The object named by ``module:attr`` or ``module.attr`` (attr may be dotted)."""
    if ":" in path:
        module_name, _, attribute = path.partition(":")
        if not module_name or not attribute:
            raise _app_error(path, "expected 'module:attribute'")
        module = _import_module(path, module_name)
        try:
            return _resolve_attribute(module, attribute)
        except AttributeError:
            raise _app_error(
                path, f"module {module_name!r} has no attribute {attribute!r}"
            ) from None

    parts = path.split(".")
    if len(parts) < 2 or not all(parts):
        raise _app_error(path, "expected 'module:attribute' or 'module.attribute'")
    missing: ModuleNotFoundError | None = None
    # The longest importable prefix is the module; the rest is the attribute.
    for i in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (
                module_name == exc.name or module_name.startswith(exc.name + ".")
            ):
                missing = missing or exc
                continue
            raise _app_error(path, f"importing {module_name!r} failed: {exc}") from None
        except Exception as exc:
            raise _app_error(
                path, f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        attribute = ".".join(parts[i:])
        try:
            return _resolve_attribute(module, attribute)
        except AttributeError:
            if missing is not None:
                raise _app_error(path, f"no module named {missing.name!r}") from None
            raise _app_error(
                path, f"module {module_name!r} has no attribute {attribute!r}"
            ) from None
    assert missing is not None
    raise _app_error(
        path,
        f"no module named {missing.name!r} (is the current directory, or the"
        " package, importable?)",
    )


def load_app(path: str) -> Chancy:
    """Import the app named by ``path`` (``module:attr`` or ``module.attr``).

    The object is used if it is a :class:`~chancy.Chancy`; otherwise it is
    called without arguments and must return one.

    :raises click.UsageError: the module or attribute is missing, or the
        object is not (and does not return) a Chancy app.
    """
    _ensure_cwd_importable()
    obj = _import_object(path)
    if isinstance(obj, Chancy):
        return obj
    if not callable(obj):
        raise _app_error(
            path,
            f"is a {type(obj).__name__}, not a Chancy app or a factory returning one",
        )
    try:
        app = obj()
    except Exception as exc:
        raise _app_error(
            path, f"calling the factory failed: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(app, Chancy):
        raise _app_error(
            path, f"the factory returned a {type(app).__name__}, not a Chancy app"
        )
    return app


class CliState:
    """What the root command stores in ``ctx.obj``: the ``--app`` path and,
    once loaded, the app itself (loaded on first use)."""

    __slots__ = ("_app", "app_path")

    def __init__(self, app_path: str | None, app: Chancy | None = None) -> None:
        self.app_path = app_path or None
        self._app = app

    @property
    def has_app(self) -> bool:
        """Whether an app was given (it may not be loaded yet)."""
        return self._app is not None or self.app_path is not None

    def get_app(self) -> Chancy:
        if self._app is None:
            if self.app_path is None:
                raise click.UsageError(
                    "this command needs the application: pass --app/-a"
                    " MODULE:ATTRIBUTE or set CHANCY_APP",
                    click.get_current_context(silent=True),
                )
            self._app = load_app(self.app_path)
        return self._app

    @property
    def display_path(self) -> str:
        return self.app_path or "IMPORT_PATH"


def _state(ctx: click.Context | None = None) -> CliState:
    ctx = ctx or click.get_current_context()
    state = ctx.find_object(CliState)
    if state is None:
        app = ctx.find_object(Chancy)
        state = CliState(None, app)
    return state


def get_app(ctx: click.Context | None = None) -> Chancy:
    """The app given with ``--app`` (imported on first use).

    For commands, including those added by plugins::

        @click.command()
        @click.pass_context
        def stats(ctx):
            app = get_app(ctx)

    :param ctx: the click context (default: the current one).
    :raises click.UsageError: no ``--app`` was given or it cannot be loaded.
    """
    return _state(ctx).get_app()


# ---------------------------------------------------------------------------
# Running coroutines
# ---------------------------------------------------------------------------


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


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` with :func:`asyncio.run` and return its result.

    Errors a user can fix (a :class:`~chancy.errors.ChancyError`, no database
    connection, tables not migrated) become a :class:`click.ClickException`:
    a one-line message and exit status 1 instead of a traceback.
    """
    try:
        return asyncio.run(main)
    except click.ClickException:
        raise
    except Exception as exc:
        error = _user_error(exc)
        if error is None:
            raise
        raise error from exc


def run_with_app(
    ctx: click.Context | None, func: Callable[[Chancy], Awaitable[T]]
) -> T:
    """Run ``await func(app)`` inside ``async with app:`` (see :func:`run_async`)."""
    app = get_app(ctx)

    async def main() -> T:
        async with app:
            return await func(app)

    return run_async(main())


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


if TYPE_CHECKING:
    # click >= 8.2 makes ParamType generic; older versions cannot subscript it.
    _DateTimeParam = click.ParamType[datetime]
    _StrParam = click.ParamType[str]
else:
    _DateTimeParam = _StrParam = click.ParamType


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class IsoDateTime(_DateTimeParam):
    """An ISO 8601 date and time; without a time zone it is taken as UTC."""

    name = "ISO-DATETIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            result = value
        else:
            try:
                result = datetime.fromisoformat(str(value).strip())
            except ValueError:
                self.fail(
                    f"{value!r} is not an ISO 8601 date and time"
                    " (e.g. 2030-01-31T12:00:00+00:00)",
                    param,
                    ctx,
                )
        if result.tzinfo is None:
            result = result.replace(tzinfo=UTC)
        return result


class ExecutorType(_StrParam):
    """A short executor name (process, threaded, async, sub) or an import path."""

    name = "EXECUTOR"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value).strip()
        alias = EXECUTOR_ALIASES.get(text.lower())
        if alias is not None:
            return alias
        if "." in text and all(text.split(".")):
            return text
        self.fail(
            f"{value!r} is neither one of {', '.join(sorted(EXECUTOR_ALIASES))}"
            " nor an import path like 'package.module.ExecutorClass'",
            param,
            ctx,
        )


def parse_kwargs_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> dict[str, Any]:
    """click callback: a ``--kwargs`` JSON object option (for plugin commands too)."""
    if value is None:
        return {}
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", ctx, param) from None
    if not isinstance(data, dict):
        raise click.BadParameter(
            f"must be a JSON object of keyword arguments, got {type(data).__name__}",
            ctx,
            param,
        )
    return data


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table with a dashed rule under the headers (for plugin commands too)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) for c, w in zip(cells, widths, strict=True)
        ).rstrip()

    return "\n".join(
        [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]
    )


def _job_as_dict(job: QueuedJob) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "func": job.func,
        "queue": job.queue,
        "state": job.state.value,
        "kwargs": job.kwargs,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "unique_key": job.unique_key,
        "scheduled_at": _iso(job.scheduled_at),
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "completed_at": _iso(job.completed_at),
        "limits": [limit.serialize() for limit in job.limits],
        "meta": job.meta,
        "errors": job.errors,
    }


def _parse_job_id(value: str) -> Reference:
    try:
        return Reference(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a job id (a UUID)", param_hint="'JOB_ID'"
        ) from None


# ---------------------------------------------------------------------------
# The root group (built-in commands plus the plugins')
# ---------------------------------------------------------------------------


class _PluginCommands:
    """What the plugins add: top-level commands, and subcommands of built-in groups."""

    __slots__ = ("extensions", "top_level")

    def __init__(self) -> None:
        self.top_level: dict[str, click.Command] = {}
        self.extensions: dict[str, dict[str, click.Command]] = {}


def _load_plugin_commands(builtins: dict[str, click.Command]) -> _PluginCommands:
    """Commands returned by every ``chancy_cli_commands`` implementation.

    A group named like a built-in group (``worker``) extends it with those of
    its subcommands whose names are free; any other clash is skipped with a
    warning.
    """
    from chancy import _plugins

    loaded = _PluginCommands()
    try:
        manager = _plugins.PluginManager()
        manager.discover()
        found = manager.cli_commands()
    except Exception as exc:
        click.echo(
            f"Warning: the plugins' commands could not be loaded:"
            f" {type(exc).__name__}: {exc}",
            err=True,
        )
        return loaded
    for command in found:
        if not isinstance(command, click.Command) or not command.name:
            click.echo(
                f"Warning: a plugin returned {command!r} from chancy_cli_commands,"
                " which is not a named click command; ignored",
                err=True,
            )
            continue
        builtin = builtins.get(command.name)
        if isinstance(builtin, click.Group) and isinstance(command, click.Group):
            added = loaded.extensions.setdefault(command.name, {})
            for name, sub in command.commands.items():
                if name in builtin.commands or name in added:
                    click.echo(
                        f"Warning: a plugin's command '{command.name} {name}' clashes"
                        " with an existing command; ignored",
                        err=True,
                    )
                    continue
                added[name] = sub
            continue
        if builtin is not None or command.name in loaded.top_level:
            click.echo(
                f"Warning: a plugin's command {command.name!r} clashes with an"
                " existing command; ignored",
                err=True,
            )
            continue
        loaded.top_level[command.name] = command
    return loaded


def _plugin_commands(ctx: click.Context) -> _PluginCommands:
    """The plugins' commands, loaded once per invocation (on first need)."""
    root = ctx.find_root()
    loaded = root.meta.get(_PLUGIN_COMMANDS_KEY)
    if loaded is None:
        group = root.command
        builtins = dict(group.commands) if isinstance(group, click.Group) else {}
        loaded = _load_plugin_commands(builtins)
        root.meta[_PLUGIN_COMMANDS_KEY] = loaded
    return loaded


class ChancyGroup(click.Group):
    """The root group: built-in commands, then those added by plugins.

    Plugin commands are looked up only when a name is not built in (or when
    commands are listed), once per invocation.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_plugin_commands(ctx).top_level})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return _plugin_commands(ctx).top_level.get(cmd_name)


class BuiltinGroup(click.Group):
    """A built-in group (``worker``, ``queue``…) that plugins may extend: a plugin
    group of the same name adds its subcommands (``chancy worker web``).

    As for the root, plugins are consulted only for names that are not built in.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        extra = _plugin_commands(ctx).extensions.get(self.name or "", {})
        return sorted({*super().list_commands(ctx), *extra})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return _plugin_commands(ctx).extensions.get(self.name or "", {}).get(cmd_name)


@click.group(cls=ChancyGroup)
@click.option(
    "--app",
    "-a",
    "app_path",
    envvar="CHANCY_APP",
    metavar="IMPORT_PATH",
    help=(
        "The Chancy app as module:attribute or module.attribute: an instance,"
        " or a callable returning one. Also read from CHANCY_APP."
    ),
)
@click.version_option(__version__, prog_name="chancy")
@click.pass_context
def cli(ctx: click.Context, app_path: str | None) -> None:
    """Chancy: a job queue that needs nothing but PostgreSQL.

    Commands that use the database need --app (or CHANCY_APP).
    """
    configure_logging()
    if isinstance(ctx.obj, CliState):
        if app_path:
            ctx.obj.app_path = app_path
    elif isinstance(ctx.obj, Chancy):
        ctx.obj = CliState(app_path, ctx.obj)
    else:
        ctx.obj = CliState(app_path)


# ---------------------------------------------------------------------------
# Migrations
# ---------------------------------------------------------------------------


class _Line:
    """One migration line (core or a plugin's) and the names that select it."""

    __slots__ = ("migrator", "names", "title")

    def __init__(self, title: str, migrator: Migrator, names: set[str]) -> None:
        self.title = title
        self.migrator = migrator
        self.names = names


def _migration_lines(app: Chancy) -> list[_Line]:
    owners: dict[str, tuple[str, Any]] = {}
    for identifier, plugin in app.plugins.items():
        if isinstance(plugin, Plugin):
            key = plugin.migrate_key()
            if key:
                owners[key] = (identifier, plugin)
    lines = []
    for migrator in app.migrators():
        if migrator.key == CORE_MIGRATION_KEY:
            lines.append(_Line("Chancy Core", migrator, {"core", CORE_MIGRATION_KEY}))
        elif migrator.key in owners:
            identifier, plugin = owners[migrator.key]
            name = type(plugin).__name__
            lines.append(
                _Line(
                    f"{name} ({identifier})",
                    migrator,
                    {name.lower(), identifier.lower(), migrator.key.lower()},
                )
            )
        else:
            lines.append(_Line(migrator.key, migrator, {migrator.key.lower()}))
    return lines


async def _recorded_versions(app: Chancy) -> dict[str, int]:
    """The version of each line recorded in the database (no table is created)."""
    from psycopg import sql

    async with app.pool.connection() as conn, conn.cursor() as cursor:
        table = sql.Identifier(f"{app.prefix}schema_version")
        await cursor.execute("SELECT to_regclass(%s)", (table.as_string(conn),))
        row = await cursor.fetchone()
        if row is None or row[0] is None:
            return {}
        await cursor.execute(
            sql.SQL("SELECT version_of, version FROM {}").format(table)
        )
        return {key: int(version) for key, version in await cursor.fetchall()}


def _select_line(app: Chancy, name: str) -> _Line | None:
    """The line ``--plugin name`` designates; ``None`` for a plugin without one."""
    wanted = name.lower()
    lines = _migration_lines(app)
    matches = [line for line in lines if wanted in line.names]
    if len(matches) > 1:
        raise click.UsageError(
            f"--plugin {name!r} matches several plugins: "
            + ", ".join(line.title for line in matches)
            + "; use the plugin's identifier",
            click.get_current_context(silent=True),
        )
    if matches:
        return matches[0]
    without = [
        f"{type(plugin).__name__} ({identifier})"
        for identifier, plugin in app.plugins.items()
        if wanted in {type(plugin).__name__.lower(), identifier.lower()}
    ]
    if without:
        return None
    choices = sorted({line.title for line in lines})
    raise click.UsageError(
        f"--plugin {name!r} matches no enabled plugin with migrations;"
        f" choose one of: {', '.join(choices)}",
        click.get_current_context(silent=True),
    )


@click.command("migrate")
@click.option(
    "--to-version",
    "-t",
    type=click.IntRange(min=0),
    default=None,
    help=(
        "Migrate up or down to this version (default: the latest). Without"
        " --plugin it applies to core, and to each plugin capped at its latest;"
        " 0 removes every table."
    ),
)
@click.option(
    "--plugin",
    "-p",
    "plugin_name",
    metavar="NAME",
    help=(
        "Migrate only this plugin, chosen by class name (any case), identifier"
        " or migration key; 'core' selects Chancy's own tables."
    ),
)
@click.pass_context
def migrate_command(
    ctx: click.Context, to_version: int | None, plugin_name: str | None
) -> None:
    """Apply (or roll back) database migrations."""
    app = get_app(ctx)
    lines = _migration_lines(app)
    if plugin_name is not None:
        line = _select_line(app, plugin_name)
        if line is None:
            click.echo(f"{plugin_name}: the plugin has no migrations; nothing to do")
            return
        lines = [line]

    async def main(app: Chancy) -> tuple[dict[str, int], dict[str, int]]:
        before = await _recorded_versions(app)
        if plugin_name is None:
            await app.migrate(to_version=to_version)
        else:
            async with app.pool.connection() as conn:
                await lines[0].migrator.migrate(conn, to_version=to_version)
        return before, await _recorded_versions(app)

    before, after = run_with_app(ctx, main)
    for line in lines:
        old, new = before.get(line.migrator.key, 0), after.get(line.migrator.key, 0)
        latest = line.migrator.latest_version
        if old == new:
            click.echo(f"{line.title}: already at version {new} (latest {latest})")
        else:
            click.echo(
                f"{line.title}: migrated from version {old} to {new} (latest {latest})"
            )


@click.command("check-migrations")
@click.pass_context
def check_migrations_command(ctx: click.Context) -> None:
    """Show which migrations are applied; exit 1 if any is pending."""
    app = get_app(ctx)
    versions = run_with_app(ctx, _recorded_versions)
    pending = 0
    ahead = False
    for line in _migration_lines(app):
        migrations = line.migrator.discover_all_migrations()
        if not migrations and line.migrator.key != CORE_MIGRATION_KEY:
            continue
        current = versions.get(line.migrator.key, 0)
        click.echo(line.title)
        for version, migration in enumerate(migrations, start=1):
            applied = version <= current
            pending += not applied
            mark = "✓" if applied else "✗"
            click.echo(f"  {mark} v{version} {type(migration).__name__}")
        if current > len(migrations):
            ahead = True
            click.echo(
                f"  ! the database is at version {current}, newer than this code"
                f" knows ({len(migrations)}): upgrade the package"
            )
    if pending:
        click.echo(
            f"{pending} migration(s) pending: run"
            f" `chancy --app {_state(ctx).display_path} migrate`",
            err=True,
        )
    if pending or ahead:
        ctx.exit(1)


@click.group("misc", cls=BuiltinGroup)
def misc() -> None:
    """Migrations and an interactive shell (the original's spelling)."""


misc.add_command(migrate_command)
misc.add_command(check_migrations_command)
cli.add_command(migrate_command)
cli.add_command(check_migrations_command)


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


cli.add_command(misc)


# ---------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------


@click.command("push")
@click.argument("func", metavar="FUNC")
@click.option(
    "--queue", "-q", default=None, help="Queue name.  [default: @job()'s, else default]"
)
@click.option(
    "--priority",
    "-p",
    type=int,
    default=None,
    help="Higher runs first.  [default: @job()'s, else 0]",
)
@click.option(
    "--unique-key",
    "-u",
    default=None,
    help="At most one unfinished job with this key exists.",
)
@click.option(
    "--max-attempts",
    "-m",
    type=click.IntRange(min=1),
    default=None,
    help="Total runs allowed (1 = no retry).  [default: @job()'s, else 1]",
)
@click.option(
    "--kwargs",
    "-k",
    "kwargs",
    callback=parse_kwargs_option,
    metavar="JSON",
    help="Keyword arguments as a JSON object, e.g. '{\"user_id\": 7}'.",
)
@click.option(
    "--scheduled-at",
    type=IsoDateTime(),
    default=None,
    help="Do not run before this time (ISO 8601; UTC if no zone).",
)
@click.pass_context
def job_push(
    ctx: click.Context,
    func: str,
    queue: str | None,
    priority: int | None,
    unique_key: str | None,
    max_attempts: int | None,
    kwargs: dict[str, Any] | None,
    scheduled_at: datetime | None,
) -> None:
    """Push a job running FUNC (an import path like package.module.function).

    When FUNC is decorated with @job(), its settings (queue, priority,
    max_attempts, unique key, limits, meta, kwargs) are the starting point and
    the options given here override them. Prints the job's id.
    """
    if "." not in func or not all(func.split(".")):
        raise click.BadParameter(
            f"{func!r} is not an import path like 'package.module.function'",
            ctx,
            param_hint="'FUNC'",
        )
    if queue is not None and not queue:
        raise click.BadParameter("must not be empty", ctx, param_hint="'--queue'")
    template = _job_template(func)
    overrides: dict[str, Any] = {
        name: value
        for name, value in (
            ("queue", queue),
            ("priority", priority),
            ("max_attempts", max_attempts),
            ("unique_key", unique_key),
            ("kwargs", kwargs),
        )
        if value is not None
    }
    overrides["scheduled_at"] = (
        scheduled_at if scheduled_at is not None else datetime.now(UTC)
    )
    job = attrs.evolve(template, **overrides)

    async def main(app: Chancy) -> Reference:
        try:
            return await app.push(job)
        except (TypeError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None

    click.echo(str(run_with_app(ctx, main)))


def _job_template(func: str) -> Job:
    """The ``@job()`` template of the function at ``func``, or a plain job.

    A function that cannot be imported here (the worker may have code this
    machine lacks) is pushed with the defaults, saying so on stderr.
    """
    try:
        target = import_string(func)
    except Exception as exc:
        click.echo(
            f"note: cannot import {func!r} here ({exc}); pushing it with the default"
            " settings (any @job() settings of the function are not applied)",
            err=True,
        )
        return Job(func=func)
    template = getattr(target, "job", None)
    if isinstance(template, Job):
        return template
    return Job(func=func)


@click.group("job", cls=BuiltinGroup)
def job_group() -> None:
    """Push, inspect and cancel jobs."""


job_group.add_command(job_push)


@job_group.command("get")
@click.argument("job_id", metavar="JOB_ID")
@click.pass_context
def job_get(ctx: click.Context, job_id: str) -> None:
    """Print a job as JSON (state, attempts, errors...); exit 1 if it does not exist."""
    ref = _parse_job_id(job_id)
    found = run_with_app(ctx, lambda app: app.get_job(ref))
    if found is None:
        raise click.ClickException(f"no job with id {job_id}")
    click.echo(
        json.dumps(_job_as_dict(found), indent=2, default=str, ensure_ascii=False)
    )


@job_group.command("cancel")
@click.argument("job_id", metavar="JOB_ID")
@click.pass_context
def job_cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a job: a waiting job never runs, a running one is interrupted."""
    ref = _parse_job_id(job_id)

    async def main(app: Chancy) -> QueuedJob | None:
        found = await app.get_job(ref)
        if found is not None and not found.is_finished:
            await app.cancel_job(ref)
        return found

    found = run_with_app(ctx, main)
    if found is None:
        raise click.ClickException(f"no job with id {job_id}")
    if found.is_finished:
        click.echo(
            f"Job {ref} had already finished ({found.state.value}); nothing to do"
        )
    else:
        click.echo(f"Cancelled job {ref}")


cli.add_command(job_group)


# ---------------------------------------------------------------------------
# Queues
# ---------------------------------------------------------------------------


@click.group("queue", cls=BuiltinGroup)
def queue_group() -> None:
    """Declare, inspect, pause, resume and delete queues."""


queue_group.add_command(job_push, "push")


def _queue_row(queue: Queue) -> list[str]:
    state = queue.state.value
    if queue.resume_at is not None:
        state += f" until {queue.resume_at.isoformat(timespec='seconds')}"
    rate = (
        f"{queue.rate_limit}/{queue.rate_limit_window}s"
        if queue.rate_limit is not None
        else "-"
    )
    return [
        queue.name,
        state,
        str(queue.concurrency) if queue.concurrency is not None else "default",
        _EXECUTOR_SHORT.get(str(queue.executor), str(queue.executor)),
        ",".join(sorted(queue.tags)),
        f"{queue.polling_interval:g}s",
        rate,
    ]


@queue_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def queue_list(ctx: click.Context, as_json: bool) -> None:
    """List every declared queue, whatever its state, and the queues nobody
    declared that have jobs waiting (no worker serves those)."""

    async def main(app: Chancy) -> tuple[list[Queue], dict[str, int]]:
        return await app.get_all_queues(), await app.get_undeclared_queues()

    queues, undeclared = run_with_app(ctx, main)
    queues.sort(key=lambda q: q.name)
    if as_json:
        click.echo(
            json.dumps(
                [
                    *(q.pack() for q in queues),
                    *(
                        {"name": name, "declared": False, "waiting": waiting}
                        for name, waiting in undeclared.items()
                    ),
                ],
                indent=2,
            )
        )
        return
    if undeclared:
        click.echo(
            "Jobs are waiting in queues nobody declared (no worker runs them):\n"
            + "".join(
                f"  {name}: {waiting} job(s); declare it with"
                f" `chancy queue declare {name}`\n"
                for name, waiting in undeclared.items()
            ),
            err=True,
        )
    if not queues:
        click.echo("No queues declared.")
        return
    headers = [
        "NAME",
        "STATE",
        "CONCURRENCY",
        "EXECUTOR",
        "TAGS",
        "POLLING",
        "RATE LIMIT",
    ]
    click.echo(format_table(headers, [_queue_row(q) for q in queues]))


@queue_group.command("declare")
@click.argument("name")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Jobs run at once per worker.",
)
@click.option(
    "--executor",
    "-e",
    type=ExecutorType(),
    default="process",
    show_default=True,
    help="process, threaded, async, sub, or an executor's import path.",
)
@click.option(
    "--rate-limit",
    "-r",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs started per window across all workers (with -w).",
)
@click.option(
    "--rate-limit-window",
    "-w",
    type=click.IntRange(min=1),
    default=None,
    help="Length of the rate-limit window in seconds (with -r).",
)
@click.option(
    "--polling-interval",
    "-p",
    type=click.FloatRange(min=0, min_open=True),
    default=5,
    show_default=True,
    help="Seconds between polls.",
)
@click.option(
    "--tags",
    "-t",
    multiple=True,
    metavar="REGEX",
    help="Serve on workers with a matching tag (repeatable; default .*).",
)
@click.option(
    "--upsert", is_flag=True, help="Overwrite the configuration of an existing queue."
)
@click.pass_context
def queue_declare(
    ctx: click.Context,
    name: str,
    concurrency: int,
    executor: str,
    rate_limit: int | None,
    rate_limit_window: int | None,
    polling_interval: float,
    tags: tuple[str, ...],
    upsert: bool,
) -> None:
    """Declare the queue NAME.

    An existing queue is left unchanged unless --upsert is given.
    """
    if (rate_limit is None) != (rate_limit_window is None):
        raise click.UsageError(
            "--rate-limit and --rate-limit-window must be given together", ctx
        )
    try:
        queue = Queue(
            name,
            concurrency=concurrency,
            executor=executor,
            rate_limit=rate_limit,
            rate_limit_window=rate_limit_window,
            polling_interval=(
                int(polling_interval)
                if float(polling_interval).is_integer()
                else polling_interval
            ),
            tags=set(tags) if tags else {".*"},
        )
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx) from None

    stored = run_with_app(ctx, lambda app: app.declare(queue, upsert=upsert))
    if not upsert and stored.pack() != queue.pack():
        click.echo(
            f"Queue {name!r} already exists and was left unchanged"
            " (use --upsert to overwrite it):",
            err=True,
        )
    else:
        click.echo(f"Declared queue {name!r}:")
    headers = [
        "NAME",
        "STATE",
        "CONCURRENCY",
        "EXECUTOR",
        "TAGS",
        "POLLING",
        "RATE LIMIT",
    ]
    click.echo(format_table(headers, [_queue_row(stored)]))


def _no_queue(name: str) -> click.ClickException:
    return click.ClickException(f"no queue named {name!r}")


@queue_group.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--keep-jobs", is_flag=True, help="Keep the queue's jobs.")
@click.pass_context
def queue_delete(ctx: click.Context, name: str, yes: bool, keep_jobs: bool) -> None:
    """Delete the queue NAME and (unless --keep-jobs) all of its jobs."""

    async def main(app: Chancy) -> None:
        try:
            await app.get_queue(name)
        except KeyError:
            raise _no_queue(name) from None
        if not yes:
            what = "" if keep_jobs else " and all of its jobs"
            click.confirm(f"Delete the queue {name!r}{what}?", abort=True)
        await app.delete_queue(name, purge_jobs=not keep_jobs)

    run_with_app(ctx, main)
    click.echo(f"Deleted queue {name!r}" + (" (jobs kept)" if keep_jobs else ""))


@queue_group.command("pause")
@click.argument("name")
@click.option(
    "--resume-at",
    type=IsoDateTime(),
    default=None,
    help="Resume automatically at this time (ISO 8601; UTC if no zone).",
)
@click.option(
    "--resume-in",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Resume automatically after this many seconds.",
)
@click.pass_context
def queue_pause(
    ctx: click.Context,
    name: str,
    resume_at: datetime | None,
    resume_in: float | None,
) -> None:
    """Pause the queue NAME: no new jobs start (running jobs finish)."""
    if resume_at is not None and resume_in is not None:
        raise click.UsageError("give --resume-at or --resume-in, not both", ctx)
    when: datetime | timedelta | None = resume_at
    if resume_in is not None:
        when = timedelta(seconds=resume_in)

    async def main(app: Chancy) -> Queue:
        try:
            await app.pause_queue(name, resume_at=when)
            return await app.get_queue(name)
        except KeyError:
            raise _no_queue(name) from None

    queue = run_with_app(ctx, main)
    until = (
        f" until {queue.resume_at.isoformat(timespec='seconds')}"
        if queue.resume_at is not None
        else ""
    )
    click.echo(f"Paused queue {name!r}{until}")


@queue_group.command("resume")
@click.argument("name")
@click.pass_context
def queue_resume(ctx: click.Context, name: str) -> None:
    """Resume the paused queue NAME."""

    async def main(app: Chancy) -> None:
        try:
            await app.resume_queue(name)
        except KeyError:
            raise _no_queue(name) from None

    run_with_app(ctx, main)
    click.echo(f"Resumed queue {name!r}")


cli.add_command(queue_group)


# ---------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------


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
@click.pass_context
def worker_start(
    ctx: click.Context,
    worker_id: str | None,
    tags: tuple[str, ...],
    shutdown_timeout: float,
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

    if not run_with_app(ctx, main):
        path = _state(ctx).display_path
        click.echo(
            "Error: the database schema is not up to date. Apply the pending"
            f" migrations with:\n\n    chancy --app {path} migrate\n\n"
            f"and check them with:\n\n    chancy --app {path} check-migrations",
            err=True,
        )
        ctx.exit(1)


cli.add_command(worker_group)


# ---------------------------------------------------------------------------
# Plugins
# ---------------------------------------------------------------------------


@cli.command("plugins")
@click.pass_context
def plugins_command(ctx: click.Context) -> None:
    """List installed plugin distributions and, with --app, the app's plugins."""
    from chancy import _plugins

    try:
        installed = _plugins.installed_plugins()
    except Exception as exc:
        raise click.ClickException(
            f"loading the plugin entry points failed: {type(exc).__name__}: {exc}"
        ) from None
    blocked = {
        name.strip()
        for name in os.environ.get("CHANCY_DISABLE_PLUGINS", "").split(",")
        if name.strip()
    }
    if not installed:
        click.echo("No plugin distributions installed.")
    else:
        click.echo("Installed plugin distributions:")
        for row in installed:
            note = (
                " [disabled by CHANCY_DISABLE_PLUGINS]"
                if row["name"] in blocked
                else ""
            )
            click.echo(
                f"  {row['distribution']} {row['version']}"
                f" (entry point {row['name']!r}){note}"
            )
            classes = row["plugins"]
            if not classes:
                click.echo("    (hooks only, no plugin classes)")
            for cls in classes:
                default = " [enabled by default]" if cls.is_default() else ""
                click.echo(f"    {cls.__name__}  {cls.get_identifier()}{default}")
    if os.environ.get("CHANCY_DISABLE_PLUGIN_AUTOLOAD"):
        click.echo("CHANCY_DISABLE_PLUGIN_AUTOLOAD is set: apps load none of them.")

    state = _state(ctx)
    if not state.has_app:
        return
    app = state.get_app()
    click.echo(f"Plugins enabled by the app {state.display_path}:")
    if not app.plugins:
        click.echo("  (none)")
    for identifier, plugin in app.plugins.items():
        name = type(plugin).__name__ if isinstance(plugin, Plugin) else repr(plugin)
        dist = _plugins.plugin_distribution(
            identifier, type(plugin) if isinstance(plugin, Plugin) else None
        )
        click.echo(f"  {identifier}  {name}" + (f"  ({dist})" if dist else ""))


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """The ``chancy`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="chancy")


if __name__ == "__main__":  # pragma: no cover
    main()
