"""The original Chancy's spelling of the workflow routes:
:class:`WorkflowApiPlugin`, named by :meth:`WorkflowPlugin.api_plugin`.

The routes are declared once, in :mod:`chancy.plugins.workflow.web`
(contributed through the ``chancy_web_routes`` hook); this class hands the web
plugin the same declarations, which it recognises and adds once. Imported only
by ``chancy-web``.
"""

from __future__ import annotations

from chancy.plugins.api.plugin import ApiPlugin, WebRoute
from chancy.plugins.workflow.web import ROUTES

__all__ = ["WorkflowApiPlugin"]


class WorkflowApiPlugin(ApiPlugin):
    """The workflow list (bounded, with step counts) and workflow details."""

    def name(self) -> str:
        return "workflow"

    def routes(self) -> list[WebRoute]:
        return list(ROUTES)
