"""The web part of ``chancy-cron``: ``GET /api/v1/crons`` and the Cron pages
of the dashboard (``#/crons``, ``#/crons/<key>``).

Imported only by ``chancy-web``, through the ``chancy_web_routes`` hook in
:mod:`chancy.plugins.cron.hooks`, so ``chancy-cron`` itself does not depend
on it. The pages' JavaScript lives in ``static/`` beside this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import Response

from chancy.plugins.web import Reply, WebPage, WebRoute
from chancy.plugins.web.extension import job_as_dict, json_response
from chancy.plugins.web.schemas import DATETIME, array, nullable, obj, ref

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

__all__ = ["PAGES", "ROUTES", "contributions", "get_crons"]

#: The dashboard files of the Cron pages.
STATIC: Final = Path(__file__).resolve().parent / "static"


async def get_crons(request: Request, *, chancy: Chancy, worker: Worker) -> Response:
    """Every cron schedule, soonest first."""
    from chancy.plugins.cron.plugin import Cron

    schedules = await Cron.get_schedules(chancy)
    return json_response(
        [
            {
                "unique_key": key,
                "job": job_as_dict(row["job"]),
                "cron": row["cron"],
                "timezone": row.get("timezone"),
                "last_run": row["last_run"],
                "next_run": row["next_run"],
            }
            for key, row in schedules.items()
        ]
    )


_CRON_SCHEDULE: Final = obj(
    {
        "unique_key": {"type": "string"},
        "job": ref("JobTemplate"),
        "cron": {"type": "string", "description": "The cron expression."},
        "timezone": nullable({"type": "string"}),
        "last_run": nullable(DATETIME),
        "next_run": nullable(DATETIME),
    },
    description="A cron schedule.",
)

#: The routes of the plugin.
ROUTES: Final = [
    WebRoute(
        "/api/v1/crons",
        get_crons,
        name="get_crons",
        tags=["cron"],
        schemas={"CronSchedule": _CRON_SCHEDULE},
        responses={200: Reply("Every schedule.", array(ref("CronSchedule")))},
    )
]

#: The dashboard pages of the plugin.
PAGES: Final = [
    WebPage(
        plugin="cron",
        path="/crons",
        module="crons.js",
        directory=STATIC,
        title="Cron",
        order=10,
    ),
    WebPage(plugin="cron", path="/crons/:key", module="cron.js", directory=STATIC),
]


def contributions() -> list[Any]:
    """What the ``chancy_web_routes`` hook returns while Cron is enabled."""
    return [*ROUTES, *PAGES]
