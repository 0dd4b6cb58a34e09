"""The web part of ``chancy-workflow``: the workflow routes of the API and the
Workflows pages of the dashboard (``#/workflows``, ``#/workflows/<id>``).

* ``GET /api/v1/workflows``: workflows, newest first, at most ``limit``
  (default and maximum 100) at a time, optionally of one ``state``, before the
  workflow ``before`` (a cursor); each with the number of its steps in each
  state (``waiting`` for steps whose job was not pushed yet).
  ``pagination=true`` wraps them as ``{items, has_more, next_cursor}``.
* ``GET /api/v1/workflows/{id}``: one workflow with its steps; 404
  ``{"error": "Workflow not found"}``.

Imported only by ``chancy-web``, through the ``chancy_web_routes`` hook in
:mod:`chancy.plugins.workflow.hooks`. The pages' JavaScript lives in
``static/`` beside this module.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from psycopg.rows import dict_row
from starlette.requests import Request
from starlette.responses import Response

from chancy.plugins.web import Param, Reply, WebPage, WebRoute
from chancy.plugins.web.extension import (
    ApiError,
    error_response,
    job_as_dict,
    json_response,
    page_response,
    parse_uuid,
    query_int,
)
from chancy.plugins.web.schemas import DATETIME, UUID, array, nullable, obj, ref
from chancy.plugins.workflow.models import Workflow
from chancy.plugins.workflow.plugin import WorkflowPlugin, _sql

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

__all__ = ["PAGES", "ROUTES", "contributions", "get_workflow", "get_workflows"]

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


async def get_workflows(
    request: Request, *, chancy: Chancy, worker: Worker
) -> Response:
    """Workflows, newest first, with the number of their steps in each state."""
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


async def get_workflow(request: Request, *, chancy: Chancy, worker: Worker) -> Response:
    """One workflow with its steps."""
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


#: The dashboard files of the Workflows pages.
STATIC: Final = Path(__file__).resolve().parent / "static"

_STATES: Final = [s.value for s in Workflow.State]
_SUMMARY: Final = obj(
    {
        "id": UUID,
        "name": {"type": "string"},
        "state": {"type": "string", "enum": _STATES},
        "created_at": DATETIME,
        "updated_at": DATETIME,
        "total_steps": {"type": "integer"},
        "step_counts": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": f"Steps per job state ({WAITING!r}: no job yet).",
        },
    },
    description="A workflow and how far its steps got.",
)
_STEP: Final = obj(
    {
        "step_id": {"type": "string"},
        "job": ref("JobTemplate"),
        "dependencies": array({"type": "string"}),
        "state": nullable({"type": "string"}),
        "job_id": nullable(UUID),
    }
)
_DETAIL: Final = obj(
    {
        "id": UUID,
        "name": {"type": "string"},
        "state": {"type": "string", "enum": _STATES},
        "created_at": DATETIME,
        "updated_at": DATETIME,
        "steps": {"type": "object", "additionalProperties": ref("WorkflowStep")},
    },
    description="A workflow with its steps.",
)
_NOT_FOUND: Final = Reply("No workflow has this id.", ref("Error"))

#: The routes of the plugin.
ROUTES: Final = [
    WebRoute(
        "/api/v1/workflows",
        get_workflows,
        name="get_workflows",
        tags=["workflow"],
        params=[
            Param("state", {"type": "string", "enum": _STATES}, "Only this state."),
            Param(
                "limit",
                {"type": "integer", "minimum": 1},
                f"Most workflows answered (at most {MAX_PAGE}).",
            ),
            Param("before", UUID, "Only workflows older than this one (a cursor)."),
            Param(
                "pagination",
                {"type": "boolean"},
                "Answer {items, has_more, next_cursor} instead of a list.",
            ),
        ],
        schemas={"WorkflowSummary": _SUMMARY},
        responses={
            200: Reply(
                "Workflows, newest first.",
                {
                    "anyOf": [
                        array(ref("WorkflowSummary")),
                        obj(
                            {
                                "items": array(ref("WorkflowSummary")),
                                "has_more": {"type": "boolean"},
                                "next_cursor": nullable({"type": "string"}),
                            }
                        ),
                    ]
                },
            )
        },
    ),
    WebRoute(
        "/api/v1/workflows/{id}",
        get_workflow,
        name="get_workflow",
        tags=["workflow"],
        params=[Param("id", UUID, "The workflow's id.", location="path")],
        schemas={"WorkflowStep": _STEP, "Workflow": _DETAIL},
        responses={200: Reply("The workflow.", ref("Workflow")), 404: _NOT_FOUND},
    ),
]

#: The dashboard pages of the plugin.
PAGES: Final = [
    WebPage(
        plugin="workflow",
        path="/workflows",
        module="workflows.js",
        directory=STATIC,
        title="Workflows",
        order=20,
    ),
    WebPage(
        plugin="workflow", path="/workflows/:id", module="workflow.js", directory=STATIC
    ),
]


def contributions() -> list[Any]:
    """What the ``chancy_web_routes`` hook returns while the plugin is enabled."""
    return [*ROUTES, *PAGES]
