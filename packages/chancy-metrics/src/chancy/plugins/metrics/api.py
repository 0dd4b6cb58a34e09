"""The metrics routes of the web API (``chancy-web``).

``GET /api/v1/metrics`` lists the metric keys by category;
``GET /api/v1/metrics/{prefix}?resolution=5min&worker_id=…`` returns the
points of the keys matching a prefix. Imported only by ``chancy-web``
(through :meth:`Metrics.api_plugin`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from chancy.plugins.api.plugin import ApiError, ApiPlugin, RouteT, json_response
from chancy.plugins.metrics.series import RESOLUTIONS

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.plugins.metrics.plugin import Metrics
    from chancy.worker import Worker

__all__ = ["MetricsApiPlugin"]


def _plugin(chancy: Chancy) -> Metrics:
    from chancy.plugins.metrics.plugin import IDENTIFIER, Metrics

    plugin = chancy.plugins.get(IDENTIFIER)
    if not isinstance(plugin, Metrics):
        raise ApiError("the Metrics plugin is not enabled", 404)
    return plugin


class MetricsApiPlugin(ApiPlugin):
    """The metric keys, and the points of the keys matching a prefix."""

    def name(self) -> str:
        return "metrics"

    def routes(self) -> list[RouteT]:
        return [
            {
                "path": "/api/v1/metrics",
                "endpoint": self.get_metrics,
                "methods": ["GET"],
                "name": "get_metrics",
            },
            {
                "path": "/api/v1/metrics/{prefix:path}",
                "endpoint": self.get_metric,
                "methods": ["GET"],
                "name": "get_metric",
            },
        ]

    async def get_metrics(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """``{"categories": {category: [name, …]}, "count": n}``: keys split on ``:``."""
        metrics = await _plugin(chancy).get_metrics(chancy)
        categories: dict[str, list[str]] = {}
        for key in sorted(metrics):
            category, _, rest = key.partition(":")
            name = rest.split(":", 1)[0]
            names = categories.setdefault(category, [])
            if name and name not in names:
                names.append(name)
        return json_response({"categories": categories, "count": len(metrics)})

    async def get_metric(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """``{key: {"data": [{"timestamp", "value"}, …], "type": …}}``, newest first."""
        resolution = request.query_params.get("resolution") or "5min"
        if resolution not in RESOLUTIONS:
            raise ApiError(
                f"unknown resolution {resolution!r} (use one of {', '.join(RESOLUTIONS)})"
            )
        worker_id = request.query_params.get("worker_id") or None
        metrics = await _plugin(chancy).get_metrics(
            chancy, metric_prefix=request.path_params["prefix"], worker_id=worker_id
        )
        return json_response(
            {
                key: {
                    "data": [
                        {"timestamp": stamp, "value": value}
                        for stamp, value in metric.values.get(resolution, [])
                    ],
                    "type": metric.metric_type,
                }
                for key, metric in sorted(metrics.items())
            }
        )
