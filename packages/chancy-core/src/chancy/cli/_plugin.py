"""``chancy plugins`` (what is installed and enabled) and the ``plugin``
group: ``chancy plugin new NAME`` writes a new plugin distribution."""

from __future__ import annotations

import os
from pathlib import Path

import click

from chancy.cli._app import _state
from chancy.cli._root import BuiltinGroup
from chancy.cli._template import write_plugin
from chancy.plugin import Plugin

__all__ = ["plugin_group", "plugin_new", "plugins_command"]


@click.command("plugins")
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


@click.group("plugin", cls=BuiltinGroup)
def plugin_group() -> None:
    """Write plugins (`chancy plugins` lists the installed ones)."""


@plugin_group.command("new")
@click.argument("name")
@click.option(
    "--directory",
    "-d",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write it (must not exist, or be empty).  [default: ./chancy-NAME]",
)
def plugin_new(name: str, directory: Path | None) -> None:
    """Write a new plugin distribution, chancy-NAME, from Chancy's template.

    NAME (lower case: letters, digits, underscores) names the entry point,
    the package chancy.plugins.NAME, the migration line and the table. The
    result builds with hatchling and passes its own tests as written: a
    Plugin subclass with a run() loop, a migration, a README and tests on
    the fixtures of chancy.testing. No licence is chosen for you.
    """
    target = directory if directory is not None else Path(f"chancy-{name}")
    try:
        written = write_plugin(name, target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'NAME'") from None
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote the plugin distribution chancy-{name} in {target}:")
    for path in sorted(written, key=lambda p: (len(p.parts), str(p))):
        click.echo(f"  {path}")
    click.echo(
        "\nNext:\n"
        f"  cd {target}\n"
        "  python -m venv .venv && . .venv/bin/activate\n"
        '  pip install -e ".[test]"\n'
        "  pytest\n"
        "Then make it yours: src/chancy/plugins/"
        f"{name}/plugin.py, its migration, README.md and the tests."
    )
