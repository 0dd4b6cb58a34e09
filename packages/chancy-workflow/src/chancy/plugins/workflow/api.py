"""The workflow routes of the web API (``chancy-web``).

* ``GET /api/v1/workflows``: workflows, newest first, at most ``limit``
  (default and maximum 100) at a time, optionally of one ``state``, before the
  workflow ``before`` (a cursor); each with the number of its steps in each
  state (``waiting`` for steps whose job was not pushed yet).
  ``pagination=true`` wraps them as ``{items, has_more, next_cursor}``.
* ``GET /api/v1/workflows/{id}``: one workflow with its steps; 404
  ``{"error": "Workflow not found"}``.

Imported only by ``chancy-web`` (through :meth:`WorkflowPlugin.api_plugin`).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final

from psycopg.rows import dict_row
from starlette.requests import Request
from starlette.responses import Response

from chancy.plugins.api.plugin import (
    ApiError,
    ApiPlugin,
    RouteT,
    error_response,
    job_as_dict,
    json_response,
    page_response,
    parse_uuid,
    query_int,
)
from chancy.plugins.workflow.models import Workflow
from chancy.plugins.workflow.plugin import WorkflowPlugin, _sql

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

__all__ = ["WorkflowApiPlugin"]

#: Most workflows one list request returns (also the default).
MAX_PAGE: Final = 100
#: The count key of steps that have no job yet.
WAITING: Final = "waiting"


def _statements(chancy: Chancy) -> tuple[str, str]:
    statements = _sql(chancy)
    workflows, steps = statements.workflows, statements.steps
    page = (
        f"SELECT id, name, state, created_at, updated_at FROM {workflows}"
        f" WHERE (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[]))"
        f" AND (%(before)s::uuid IS NULL OR (created_at, id) <"
        f" (SELECT created_at, id FROM {workflows} WHERE id = %(before)s::uuid))"
        f" ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
    )
    # A step's state: its job's, else the last one recorded (a vanished job
    # that was not seen finishing counts as failed, as in the scheduler).
    counts = (
        f"SELECT s.workflow_id, CASE"
        f" WHEN s.job_id IS NULL THEN '{WAITING}'"
        f" WHEN j.state IS NOT NULL THEN j.state"
        f" WHEN s.state IN ('succeeded', 'failed', 'cancelled') THEN s.state"
        f" ELSE 'failed' END AS step_state, count(*) AS n"
        f" FROM {steps} s LEFT JOIN {chancy.sql.jobs} j ON j.id = s.job_id"
        f" WHERE s.workflow_id = ANY(%s::uuid[]) GROUP BY 1, 2"
    )
    return page, counts


class WorkflowApiPlugin(ApiPlugin):
    """The workflow list (bounded, with step counts) and workflow details."""

    def name(self) -> str:
        return "workflow"

    def routes(self) -> list[RouteT]:
        return [
            {
                "path": "/api/v1/workflows",
                "endpoint": self.get_workflows,
                "methods": ["GET"],
                "name": "get_workflows",
            },
            {
                "path": "/api/v1/workflows/{id}",
                "endpoint": self.get_workflow,
                "methods": ["GET"],
                "name": "get_workflow",
            },
        ]

    async def get_workflows(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        limit = query_int(request, "limit", MAX_PAGE, minimum=1)
        assert limit is not None
        limit = min(limit, MAX_PAGE)
        states = None
        state = request.query_params.get("state")
        if state:
            allowed = [s.value for s in Workflow.State]
            if state not in allowed:
                raise ApiError(
                    f"unknown workflow state {state!r} (use one of {', '.join(allowed)})"
                )
            states = [state]
        before = request.query_params.get("before")
        before_id = parse_uuid(before, "before") if before else None

        page, counts = _statements(chancy)
        await chancy.ensure_open()
        async with (
            chancy.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(
                page, {"states": states, "before": before_id, "limit": limit + 1}
            )
            rows = await cursor.fetchall()
            has_more = len(rows) > limit
            rows = rows[:limit]
            by_id: dict[uuid.UUID, dict[str, Any]] = {}
            for row in rows:
                row["step_counts"] = {}
                row["total_steps"] = 0
                by_id[row["id"]] = row
            if by_id:
                await cursor.execute(counts, (list(by_id),))
                for count in await cursor.fetchall():
                    item = by_id[count["workflow_id"]]
                    item["step_counts"][count["step_state"]] = count["n"]
                    item["total_steps"] += count["n"]
        return page_response(request, rows, has_more=has_more)

    async def get_workflow(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        try:
            workflow_id = parse_uuid(request.path_params["id"])
        except ApiError:
            return error_response("Workflow not found", 404)
        workflow = await WorkflowPlugin.fetch_workflow(chancy, workflow_id)
        if workflow is None:
            return error_response("Workflow not found", 404)
        return json_response(
            {
                "id": workflow.id,
                "name": workflow.name,
                "state": workflow.state,
                "created_at": workflow.created_at,
                "updated_at": workflow.updated_at,
                "steps": {
                    step_id: {
                        "step_id": step.step_id,
                        "job": job_as_dict(step.job),
                        "dependencies": step.dependencies,
                        "state": step.state,
                        "job_id": step.job_id,
                    }
                    for step_id, step in workflow.steps.items()
                },
            }
        )
