"""``chancy migrate`` and ``chancy check-migrations`` (also under ``misc``).

The versions come from :meth:`chancy.migrate.Migrator.current_version`, so
this module holds no SQL.
"""

from __future__ import annotations

from typing import Any

import click

from chancy.app import CORE_MIGRATION_KEY, Chancy
from chancy.cli._app import _state, get_app
from chancy.cli._run import run_with_app
from chancy.migrate import Migrator
from chancy.plugin import Plugin

__all__ = ["check_migrations_command", "migrate_command"]


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


async def _recorded_versions(app: Chancy, lines: list[_Line]) -> dict[str, int]:
    """The version of each line recorded in the database (nothing is created)."""
    async with app.pool.connection() as conn:
        return {
            line.migrator.key: await line.migrator.current_version(conn)
            for line in lines
        }


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
        before = await _recorded_versions(app, lines)
        if plugin_name is None:
            await app.migrate(to_version=to_version)
        else:
            async with app.pool.connection() as conn:
                await lines[0].migrator.migrate(conn, to_version=to_version)
        return before, await _recorded_versions(app, lines)

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
    lines = _migration_lines(app)
    versions = run_with_app(ctx, lambda app: _recorded_versions(app, lines))
    pending = 0
    ahead = False
    for line in lines:
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
