"""Entry point of ``chancy-web``: registers :class:`~chancy.plugins.web.Api`
and the ``chancy worker web`` (alias ``chancy web``) command.

Kept import-light: Starlette, uvicorn and click are imported only when a hook
is called.
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
    from chancy.plugins.web.plugin import Api

    return Api


@hookimpl
def chancy_cli_commands() -> list[click.Command]:
    from chancy.plugins.web.cli import web_command, worker_group

    return [worker_group, web_command]
