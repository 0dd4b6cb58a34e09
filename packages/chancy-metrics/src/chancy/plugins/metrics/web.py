"""The web part of ``chancy-metrics``: the metrics routes of the API and the
Metrics pages of the dashboard (``#/metrics``, ``#/metrics/<prefix>``).

``GET /api/v1/metrics`` lists the metric keys by category;
``GET /api/v1/metrics/{prefix}?resolution=5min&worker_id=…`` returns the
points of the keys matching a prefix. Imported only by ``chancy-web``,
through the ``chancy_web_routes`` hook in :mod:`chancy.plugins.metrics.hooks`.
The pages' JavaScript lives in ``static/`` beside this module. The built-in
pages of the dashboard (queues, workers, overview) chart these metrics too
when ``GET /api/v1/metrics/{prefix}`` is served.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import Response

from chancy.plugins.metrics.series import RESOLUTIONS
from chancy.plugins.web import Param, Reply, WebPage, WebRoute
from chancy.plugins.web.extension import ApiError, json_response
from chancy.plugins.web.schemas import DATETIME, array, obj, ref

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.plugins.metrics.plugin import Metrics
    from chancy.worker import Worker

__all__ = ["PAGES", "ROUTES", "contributions", "get_metric", "get_metrics"]

#: The dashboard files of the Metrics pages.
STATIC: Final = Path(__file__).resolve().parent / "static"


def _plugin(chancy: Chancy) -> Metrics:
    from chancy.plugins.metrics.plugin import IDENTIFIER, Metrics

    plugin = chancy.plugins.get(IDENTIFIER)
    if not isinstance(plugin, Metrics):
        raise ApiError("the Metrics plugin is not enabled", 404)
    return plugin


async def get_metrics(request: Request, *, chancy: Chancy, worker: Worker) -> Response:
    """The metric keys by category.

    ``{"categories": {category: [name, …]}, "count": n}``: keys split on ``:``.
    """
    metrics = await _plugin(chancy).get_metrics(chancy)
    categories: dict[str, list[str]] = {}
    for key in sorted(metrics):
        category, _, rest = key.partition(":")
        name = rest.split(":", 1)[0]
        names = categories.setdefault(category, [])
        if name and name not in names:
            names.append(name)
    return json_response({"categories": categories, "count": len(metrics)})


async def get_metric(request: Request, *, chancy: Chancy, worker: Worker) -> Response:
    """The points of every key matching a prefix (whole ``:`` segments).

    ``{key: {"data": [{"timestamp", "value"}, …], "type": …}}``, newest first.
    """
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


_SERIES: Final = obj(
    {
        "type": {"type": "string", "enum": ["counter", "gauge", "histogram"]},
        "data": array(
            obj(
                {
                    "timestamp": DATETIME,
                    "value": {
                        "anyOf": [
                            {"type": "number"},
                            {"type": "object"},
                            {"type": "null"},
                        ],
                        "description": "A number; for a histogram an object"
                        " (count, sum, min, max …).",
                    },
                }
            ),
            description="Points, newest first.",
        ),
    },
    description="The points of one metric key.",
)

#: The routes of the plugin.
ROUTES: Final = [
    WebRoute(
        "/api/v1/metrics",
        get_metrics,
        name="get_metrics",
        tags=["metrics"],
        responses={
            200: Reply(
                "The metric keys.",
                obj(
                    {
                        "categories": {
                            "type": "object",
                            "additionalProperties": array({"type": "string"}),
                        },
                        "count": {"type": "integer"},
                    }
                ),
            )
        },
    ),
    WebRoute(
        "/api/v1/metrics/{prefix:path}",
        get_metric,
        name="get_metric",
        tags=["metrics"],
        params=[
            Param(
                "prefix",
                {"type": "string", "minLength": 1},
                "Keys starting with these ':'-separated segments.",
                location="path",
            ),
            Param(
                "resolution",
                {"type": "string", "enum": list(RESOLUTIONS)},
                "Bucket size (default 5min).",
            ),
            Param(
                "worker_id",
                {"type": "string"},
                "Only what this worker recorded (default: the whole cluster).",
            ),
        ],
        schemas={"MetricSeries": _SERIES},
        responses={
            200: Reply(
                "Key → its points.",
                {"type": "object", "additionalProperties": ref("MetricSeries")},
            )
        },
    ),
]

#: The dashboard pages of the plugin.
PAGES: Final = [
    WebPage(
        plugin="metrics",
        path="/metrics",
        module="metrics.js",
        directory=STATIC,
        title="Metrics",
        order=30,
    ),
    WebPage(
        plugin="metrics", path="/metrics/:prefix", module="metric.js", directory=STATIC
    ),
]


def contributions() -> list[Any]:
    """What the ``chancy_web_routes`` hook returns while the plugin is enabled."""
    return [*ROUTES, *PAGES]
