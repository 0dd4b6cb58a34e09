"""Entry point of ``chancy-metrics``: registers :class:`Metrics`.

With ``chancy-web``, also contributes the routes and dashboard pages of
:mod:`chancy.plugins.metrics.web`.

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
    from chancy.plugins.metrics.plugin import Metrics

    return [Metrics]


@hookimpl
def chancy_web_routes(chancy: Chancy) -> list[Any]:
    """The metrics routes and the Metrics pages, while the plugin is enabled."""
    from chancy.plugins.metrics.plugin import IDENTIFIER

    if IDENTIFIER not in chancy.plugins:
        return []
    from chancy.plugins.metrics.web import contributions

    return contributions()
