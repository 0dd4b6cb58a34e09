"""Entry point of ``chancy-cron``: registers :class:`Cron` and ``chancy cron``.

Kept import-light: nothing heavier than pluggy is imported until a hook is
called (click and croniter only when the CLI asks for the commands).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

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
