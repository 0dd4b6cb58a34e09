"""Entry point of ``chancy-cron``: registers :class:`Cron`, ``chancy cron``,
and (with ``chancy-web``) the cron routes and dashboard pages.

Kept import-light: nothing heavier than pluggy is imported until a hook is
called (click and croniter only when the CLI asks for the commands, Starlette
only when the web plugin asks for the routes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from chancy.app import Chancy
    from chancy.plugin import Plugin

hookimpl = pluggy.HookimplMarker("chancy")


@hookimpl
def chancy_register_plugins() -> type[Plugin]:
    from chancy.plugins.cron.plugin import Cron

    return Cron


@hookimpl
def chancy_cli_commands() -> click.Command:
    from chancy.plugins.cron.cli import cron_group

    return cron_group


@hookimpl
def chancy_web_routes(chancy: Chancy) -> list[Any]:
    """``GET /api/v1/crons`` and the Cron pages, while Cron is enabled."""
    from chancy.plugins.cron.plugin import IDENTIFIER

    if IDENTIFIER not in chancy.plugins:
        return []
    from chancy.plugins.cron.web import contributions

    return contributions()
