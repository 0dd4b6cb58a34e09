"""The root group ``chancy`` and the groups plugins may extend.

Plugin commands come from every ``chancy_cli_commands`` implementation found
through the ``chancy`` entry points; they are loaded once per invocation, and
only when a name is not built in (or when commands are listed).
"""

from __future__ import annotations

import click

from chancy import __version__
from chancy.app import Chancy
from chancy.cli._app import CliState
from chancy.utils import configure_logging

__all__ = ["BuiltinGroup", "ChancyGroup", "cli"]

_PLUGIN_COMMANDS_KEY = "chancy.plugin_commands"


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
