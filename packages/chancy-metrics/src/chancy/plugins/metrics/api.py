"""The original Chancy's spelling of the metrics routes:
:class:`MetricsApiPlugin`, named by :meth:`Metrics.api_plugin`.

The routes are declared once, in :mod:`chancy.plugins.metrics.web`
(contributed through the ``chancy_web_routes`` hook); this class hands the
web plugin the same declarations, which it recognises and adds once. Imported
only by ``chancy-web``.
"""

from __future__ import annotations

from chancy.plugins.api.plugin import ApiPlugin, WebRoute
from chancy.plugins.metrics.web import ROUTES

__all__ = ["MetricsApiPlugin"]


class MetricsApiPlugin(ApiPlugin):
    """The metric keys, and the points of the keys matching a prefix."""

    def name(self) -> str:
        return "metrics"

    def routes(self) -> list[WebRoute]:
        return list(ROUTES)
