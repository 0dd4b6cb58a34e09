"""Entry point of ``chancy-workflow``: registers :class:`WorkflowPlugin`.

With ``chancy-web``, also contributes the routes and dashboard pages of
:mod:`chancy.plugins.workflow.web`.

Kept import-light: the plugin module is imported only when a hook is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.plugin import Plugin

hookimpl = pluggy.HookimplMarker("chancy")


@hookimpl
def chancy_register_plugins() -> list[type[Plugin]]:
    from chancy.plugins.workflow.plugin import WorkflowPlugin

    return [WorkflowPlugin]


@hookimpl
def chancy_web_routes(chancy: Chancy) -> list[Any]:
    """The workflow routes and the Workflows pages, while the plugin is enabled."""
    from chancy.plugins.workflow.plugin import IDENTIFIER

    if IDENTIFIER not in chancy.plugins:
        return []
    from chancy.plugins.workflow.web import contributions

    return contributions()
