"""``chancy plugins``: what is installed and what the app enables."""

from __future__ import annotations

import os

import click

from chancy.cli._app import _state
from chancy.plugin import Plugin

__all__ = ["plugins_command"]


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
