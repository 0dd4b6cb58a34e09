"""The cron routes of the web API (``chancy-web``): ``GET /api/v1/crons``.

Imported only by ``chancy-web`` (through :meth:`Cron.api_plugin`), so
``chancy-cron`` itself does not depend on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from chancy.plugins.api.plugin import ApiPlugin, RouteT, job_as_dict, json_response
from chancy.plugins.cron.plugin import Cron

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

__all__ = ["CronApiPlugin"]


class CronApiPlugin(ApiPlugin):
    """``GET /api/v1/crons``: every schedule, soonest first."""

    def name(self) -> str:
        return "cron"

    def routes(self) -> list[RouteT]:
        return [
            {
                "path": "/api/v1/crons",
                "endpoint": self.get_crons,
                "methods": ["GET"],
                "name": "get_crons",
            }
        ]

    async def get_crons(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
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
