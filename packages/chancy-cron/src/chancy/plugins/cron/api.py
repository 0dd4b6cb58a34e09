"""The original Chancy's spelling of the cron routes: :class:`CronApiPlugin`,
named by :meth:`Cron.api_plugin`.

The routes are declared once, in :mod:`chancy.plugins.cron.web` (contributed
through the ``chancy_web_routes`` hook); this class hands the web plugin the
same declarations, which it recognises and adds once. Imported only by
``chancy-web``.
"""

from __future__ import annotations

from chancy.plugins.api.plugin import ApiPlugin, WebRoute
from chancy.plugins.cron.web import ROUTES

__all__ = ["CronApiPlugin"]


class CronApiPlugin(ApiPlugin):
    """``GET /api/v1/crons``: every schedule."""

    def name(self) -> str:
        return "cron"

    def routes(self) -> list[WebRoute]:
        return list(ROUTES)
