"""The built-in routes: health, login, configuration, queues, workers, jobs,
the event stream and the Prometheus endpoint.

Every change to jobs and queues goes through the public
:class:`~chancy.app.Chancy` methods (``declare``, ``pause_queue``,
``retry_jobs``, ``purge_jobs``, ``cancel_job`` …), so the API behaves exactly
like the library and the CLI, notifications included.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib.metadata
import math
import platform
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import attrs
from psycopg import sql
from psycopg.rows import dict_row
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from chancy.errors import ChancyError
from chancy.job import QueuedJob, Reference
from chancy.plugin import Plugin
from chancy.plugins.web._json import dumps
from chancy.plugins.web.auth import bearer_token
from chancy.plugins.web.extension import (
    ApiError,
    ApiPlugin,
    Param,
    Reply,
    WebRoute,
    error_response,
    json_response,
    page_response,
    parse_datetime,
    parse_json,
    parse_uuid,
    query_bool,
    query_int,
    read_json,
)
from chancy.plugins.web.schemas import DATETIME, UUID, array, nullable, obj, ref
from chancy.queue import Queue
from chancy.rule import ColumnRule, JobRules, SQLAble, compile_rule

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.hub import Event
    from chancy.worker import Worker

__all__ = ["CoreApiPlugin"]

#: Most jobs one ``GET /api/v1/jobs`` returns (also the default).
MAX_JOBS_PAGE: Final = 100
#: Most ids one bulk action accepts.
MAX_BULK_IDS: Final = 1000
#: ``GET /api/v1/jobs/counts``: default and largest count per state.
COUNT_CAP: Final = 10_000
MAX_COUNT_CAP: Final = 100_000
#: Seconds ``GET /api/v1/jobs/functions`` is cached.
FUNCTIONS_TTL: Final = 60.0
#: Most events a slow websocket client may have waiting; older ones are dropped.
WS_BACKLOG: Final = 1000

_STATES: Final = [s.value for s in QueuedJob.State]
_QUEUE_FIELDS: Final = {f.name for f in attrs.fields(Queue)}

_CLOSED: Final = object()

#: The body of a POST that takes no input: ``{}`` (POST bodies are JSON).
_EMPTY_BODY: Final = {
    "type": "object",
    "description": "Nothing is read from it; send {} (POST requests are JSON).",
}


def _queue_fields(queue: Queue) -> dict[str, Any]:
    return {f.name: getattr(queue, f.name) for f in attrs.fields(Queue) if f.init}


#: The cluster-wide and per-key limits of a queue (core migration v3).
QUEUE_LIMITS: Final = (
    "global_concurrency",
    "key_concurrency",
    "key_rate_limit",
    "key_rate_limit_window",
)
#: Queue settings that are a count: null, or an integer from 1 to 2**31 - 1.
_QUEUE_COUNTS: Final = frozenset(
    {"concurrency", "rate_limit", "rate_limit_window", *QUEUE_LIMITS}
)


def queue_as_dict(queue: Queue) -> dict[str, Any]:
    """A queue as the API answers it: :meth:`Queue.pack` with the limits
    always present (``null`` when not set), so clients need not guess."""
    return {**dict.fromkeys(QUEUE_LIMITS), **queue.pack()}


def _not_found(what: str) -> Response:
    return error_response(f"{what} not found", 404)


def _chancy_version() -> str:
    try:
        from chancy import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"


def _distribution_version(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------
# Validating queues
# ---------------------------------------------------------------------------


#: Most ``[field, operator, value]`` conditions one ``filters`` may hold.
MAX_FILTERS: Final = 50
#: Job fields a list may leave out (``?omit=result,kwargs``): the large ones.
OMITTABLE: Final = ("result", "kwargs", "meta", "errors")


def _parse_omit(raw: str | None) -> list[str]:
    """The job fields ``?omit=`` names (comma-separated)."""
    if raw is None or not raw.strip():
        return []
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in OMITTABLE]
    if unknown:
        raise ApiError(
            f"omit: unknown field(s) {', '.join(map(repr, unknown))}"
            f" (use some of {', '.join(OMITTABLE)})"
        )
    return names


def _executor_path(value: Any, allowed: dict[str, str]) -> str:
    """The import path of an executor the API accepts (see
    :meth:`Api.allowed_executors`): a name (``process``, ``async`` …) or the
    path of one of them. Any other import path is refused: importing it is
    running its code."""
    if not isinstance(value, str) or not value.strip():
        raise ApiError("executor must be a non-empty string")
    text = value.strip()
    path = allowed.get(text.lower())
    if path is not None:
        return path
    if text in allowed.values():
        return text
    names = ", ".join(sorted({k for k, v in allowed.items() if k != v}))
    raise ApiError(
        f"executor {text!r} is not allowed: use one of {names}, or an executor"
        " registered by an installed distribution (entry-point group"
        " chancy.executors) or listed in Api(executors=[...])"
    )


def _check_executor_options(executor: str, options: Any) -> None:
    """Refuse option names the executor's constructor does not take (the
    worker would fail to start the queue). ``executor`` is an allowed one, so
    importing it runs no code an API client chose."""
    if not options:
        return
    from chancy.utils import import_string

    try:
        cls = import_string(executor)
    except Exception as exc:
        raise ApiError(f"executor {executor!r} cannot be imported: {exc}") from None
    check = getattr(cls, "check_options", None)
    if check is None:
        return
    try:
        check(options)
    except ValueError as exc:
        raise ApiError(str(exc)) from None


def _queue_changes(
    data: Any, *, creating: bool, executors: dict[str, str]
) -> dict[str, Any]:
    """``Queue`` keyword arguments from a (partial) JSON queue object; numbers
    and tag patterns are validated by :class:`~chancy.queue.Queue` itself."""
    if not isinstance(data, dict):
        raise ApiError("the request body must be a JSON object describing a queue")
    unknown = sorted(set(data) - _QUEUE_FIELDS)
    if unknown:
        raise ApiError(
            f"unknown queue field(s): {', '.join(unknown)}"
            f" (allowed: {', '.join(sorted(_QUEUE_FIELDS))})"
        )
    out: dict[str, Any] = {}
    if creating or "name" in data:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError("name must be a non-empty string")
        out["name"] = name
    for key, value in data.items():
        if key == "name":
            continue
        if key in _QUEUE_COUNTS:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int)
            ):
                raise ApiError(
                    f"{key} must be an integer from 1 to {2**31 - 1} or null,"
                    f" got {value!r}"
                )
        elif key == "polling_interval":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ApiError("polling_interval must be a number of seconds")
        elif key == "tags":
            if value is not None:
                if not isinstance(value, list) or not all(
                    isinstance(t, str) for t in value
                ):
                    raise ApiError("tags must be a list of strings (or null for all)")
                value = set(value)
        elif key == "state":
            if value not in ("active", "paused"):
                raise ApiError("state must be 'active' or 'paused'")
        elif key == "executor":
            value = _executor_path(value, executors)
        elif key == "executor_options":
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ApiError("executor_options must be a JSON object")
        elif key == "resume_at":
            if value is not None:
                value = parse_datetime(value, "resume_at")
        elif key == "eager_polling" and not isinstance(value, bool):
            raise ApiError("eager_polling must be true or false")
        out[key] = value
    return out


# ---------------------------------------------------------------------------
# Filters of the jobs list
# ---------------------------------------------------------------------------

_COMPARISONS: Final = ("=", "!=", "<", "<=", ">", ">=")


class _ConcurrencyKey(ColumnRule):
    """The job's ``concurrency_key`` (NULL for jobs without one)."""

    __slots__ = ()
    column = "concurrency_key"


_FILTER_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "state": ("=", "!="),
    "queue": ("=", "!="),
    "func": ("=", "~"),
    "priority": _COMPARISONS,
    "attempts": _COMPARISONS,
    # Only "=": "!=" would also drop the jobs without a key (SQL NULL).
    "concurrency_key": ("=",),
}
_RULES: Final[dict[str, Callable[[], Any]]] = {
    "state": JobRules.State,
    "queue": JobRules.Queue,
    "func": JobRules.Job,
    "priority": JobRules.Priority,
    "attempts": JobRules.Attempts,
    "concurrency_key": _ConcurrencyKey,
}


def _condition(field: str, op: str, value: Any) -> SQLAble:
    rule = _RULES[field]()
    if op == "~":
        return rule.contains(value)  # type: ignore[no-any-return]
    ops: dict[str, Callable[[Any, Any], SQLAble]] = {
        "=": lambda r, v: r == v,
        "!=": lambda r, v: r != v,
        "<": lambda r, v: r < v,
        "<=": lambda r, v: r <= v,
        ">": lambda r, v: r > v,
        ">=": lambda r, v: r >= v,
    }
    return ops[op](rule, value)


def _parse_filters(raw: str | None) -> list[tuple[str, str, Any]]:
    if raw is None or not raw.strip():
        return []
    data = parse_json(raw, "filters")
    if not isinstance(data, list):
        raise ApiError("filters must be a JSON list of [field, operator, value]")
    if len(data) > MAX_FILTERS:
        raise ApiError(f"filters may hold at most {MAX_FILTERS} conditions")
    out = []
    for i, item in enumerate(data):
        where = f"filters[{i}]"
        if not isinstance(item, list) or len(item) != 3:
            raise ApiError(f"{where} must be a list [field, operator, value]")
        field, op, value = item
        if field not in _FILTER_FIELDS:
            raise ApiError(
                f"{where}: unknown field {field!r}"
                f" (use one of {', '.join(_FILTER_FIELDS)})"
            )
        if op not in _FILTER_FIELDS[field]:
            raise ApiError(
                f"{where}: operator {op!r} is not allowed for {field!r}"
                f" (use one of {', '.join(_FILTER_FIELDS[field])})"
            )
        if field in ("priority", "attempts"):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not -(2**31) <= value < 2**31
            ):
                raise ApiError(
                    f"{where}: {field} must be compared with an integer from"
                    f" {-(2**31)} to {2**31 - 1}"
                )
        elif not isinstance(value, str) or (field != "func" and not value):
            raise ApiError(f"{where}: {field} must be compared with a string")
        if field == "state" and value not in _STATES:
            raise ApiError(
                f"{where}: unknown state {value!r} (use one of {', '.join(_STATES)})"
            )
        out.append((field, op, value))
    return out


# ---------------------------------------------------------------------------
# The plugin
# ---------------------------------------------------------------------------


class CoreApiPlugin(ApiPlugin):
    """The API's built-in routes (see the package README for the table)."""

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self._functions: tuple[float, list[str]] | None = None
        self._functions_lock = asyncio.Lock()
        self._openapi: dict[str, dict[str, Any]] = {}

    def name(self) -> str:
        return "core"

    def routes(self) -> list[WebRoute]:
        v1 = "/api/v1"
        job_id = Param("id", UUID, "The job's id.", location="path")
        queue_name = Param(
            "name", {"type": "string"}, "The queue's name.", location="path"
        )
        queue_reply = {200: Reply("The queue as stored.", ref("Queue"))}
        queue_missing = {404: Reply("No queue has this name.", ref("Error"))}
        job_missing = {404: Reply("No job has this id.", {"type": "object"})}
        paginated = Param(
            "pagination",
            {"type": "boolean"},
            "Answer {items, has_more, next_cursor} instead of a list.",
        )

        def jobs_reply(description: str) -> Reply:
            return Reply(
                description,
                {"anyOf": [array(ref("Job")), ref("JobPage")]},
            )

        return [
            WebRoute(
                "/health",
                self.health,
                name="health",
                auth=False,
                tags=["service"],
                responses={
                    200: Reply(
                        "The web server is up.",
                        obj({"status": {"type": "string", "const": "healthy"}}),
                    )
                },
            ),
            WebRoute(
                "/metrics",
                self.prometheus,
                name="prometheus",
                auth=False,
                security=("bearerAuth", "sessionCookie"),
                tags=["service"],
                description="Needs a login (cookie or token) or the static"
                " `Api(metrics_token=...)` as a bearer token.",
                responses={
                    200: Reply(
                        "Every metric in the Prometheus text format.",
                        {"type": "string"},
                        media_type="text/plain",
                    ),
                    401: Reply("Not logged in and no metrics token.", ref("Error")),
                    404: Reply(
                        "The Metrics plugin is not enabled.",
                        {"type": "string"},
                        media_type="text/plain",
                    ),
                },
            ),
            WebRoute(
                f"{v1}/openapi.json",
                self.openapi,
                name="openapi",
                tags=["service"],
                responses={
                    200: Reply(
                        "The OpenAPI 3.1 document of this API, plugins' routes"
                        " included.",
                        obj(
                            {
                                "openapi": {"type": "string"},
                                "info": {"type": "object"},
                                "paths": {"type": "object"},
                            },
                        ),
                    )
                },
            ),
            WebRoute(
                f"{v1}/login",
                self.login,
                ["POST"],
                name="login",
                auth=False,
                tags=["sessions"],
                body=ref("Login"),
                responses={
                    200: Reply(
                        "Logged in; the session cookie is set.", ref("LoggedIn")
                    ),
                    401: Reply("Invalid username or password.", ref("Error")),
                    429: Reply(
                        "Too many login attempts for this username or address"
                        " (see Retry-After).",
                        ref("Error"),
                    ),
                },
            ),
            WebRoute(
                f"{v1}/logout",
                self.logout,
                ["POST"],
                name="logout",
                auth=False,
                tags=["sessions"],
                body={"type": "object"},
                responses={
                    200: Reply(
                        "The login of the token and of the cookie is revoked.",
                        obj({"success": {"type": "string"}}),
                    )
                },
            ),
            WebRoute(
                f"{v1}/configuration",
                self.configuration,
                name="configuration",
                tags=["installation"],
                responses={200: Reply("The installation.", ref("Configuration"))},
            ),
            WebRoute(
                f"{v1}/system",
                self.system,
                name="system",
                tags=["installation"],
                responses={200: Reply("Versions and settings.", ref("System"))},
            ),
            WebRoute(
                f"{v1}/plugins",
                self.plugins,
                name="plugins",
                tags=["installation"],
                responses={200: Reply("Enabled plugins.", array(ref("PluginInfo")))},
            ),
            WebRoute(
                f"{v1}/queues",
                self.get_queues,
                name="get_queues",
                tags=["queues"],
                responses={200: Reply("Every queue, by name.", array(ref("Queue")))},
            ),
            WebRoute(
                f"{v1}/queues",
                self.create_queue,
                ["POST"],
                name="create_queue",
                tags=["queues"],
                body={"allOf": [ref("QueueChanges"), {"required": ["name"]}]},
                responses=queue_reply,
            ),
            WebRoute(
                f"{v1}/undeclared-queues",
                self.undeclared_queues,
                name="undeclared_queues",
                tags=["queues"],
                responses={
                    200: Reply(
                        "Queues with waiting jobs that nobody declared.",
                        ref("UndeclaredQueues"),
                    )
                },
            ),
            WebRoute(
                f"{v1}/queues/{{name}}",
                self.get_queue,
                name="get_queue",
                tags=["queues"],
                params=[queue_name],
                responses={**queue_reply, **queue_missing},
            ),
            WebRoute(
                f"{v1}/queues/{{name}}",
                self.update_queue,
                ["PATCH"],
                name="update_queue",
                tags=["queues"],
                params=[queue_name],
                body=ref("QueueChanges"),
                responses={**queue_reply, **queue_missing},
            ),
            WebRoute(
                f"{v1}/queues/{{name}}",
                self.delete_queue,
                ["DELETE"],
                name="delete_queue",
                tags=["queues"],
                params=[
                    queue_name,
                    Param(
                        "purge_jobs",
                        {"type": "boolean"},
                        "Also delete the queue's jobs (kept by default).",
                    ),
                ],
                responses={
                    200: Reply("Deleted.", ref("QueueDeleted")),
                    **queue_missing,
                },
            ),
            WebRoute(
                f"{v1}/queues/{{name}}/pause",
                self.pause_queue,
                ["POST"],
                name="pause",
                tags=["queues"],
                params=[queue_name],
                body=obj(
                    {"resume_at": nullable(DATETIME)}, required=[], additional=False
                ),
                responses={**queue_reply, **queue_missing},
            ),
            WebRoute(
                f"{v1}/queues/{{name}}/resume",
                self.resume_queue,
                ["POST"],
                name="resume",
                tags=["queues"],
                params=[queue_name],
                body=_EMPTY_BODY,
                responses={**queue_reply, **queue_missing},
            ),
            WebRoute(
                f"{v1}/workers",
                self.get_workers,
                name="get_workers",
                tags=["workers"],
                responses={200: Reply("Workers seen recently.", array(ref("Worker")))},
            ),
            WebRoute(
                f"{v1}/jobs",
                self.get_jobs,
                name="get_jobs",
                tags=["jobs"],
                params=[
                    Param(
                        "state",
                        {"type": "string", "enum": [*_STATES, "all"]},
                        "One state, or all (default: pending, unless `filters`"
                        " has a state).",
                    ),
                    Param("queue", {"type": "string"}, "Exact queue name."),
                    Param(
                        "func",
                        {"type": "string"},
                        "Case-insensitive substring of the function name.",
                    ),
                    Param(
                        "limit",
                        {"type": "integer", "minimum": 1},
                        f"Most jobs answered (at most {MAX_JOBS_PAGE}).",
                    ),
                    Param("before", UUID, "Only jobs with a lower id (a cursor)."),
                    paginated,
                    Param(
                        "omit",
                        {"type": "string"},
                        "Comma-separated job fields to leave out of each job"
                        f" (some of {', '.join(OMITTABLE)}): a list without"
                        " results and arguments stays small.",
                    ),
                    Param(
                        "filters",
                        {"type": "string"},
                        "JSON [[field, operator, value], …]: state/queue with ="
                        " or !=; func with = or ~; concurrency_key with =;"
                        " priority/attempts with = != < <= > >= and an integer.",
                    ),
                ],
                responses={200: jobs_reply("Jobs, newest id first.")},
            ),
            WebRoute(
                f"{v1}/jobs",
                self.bulk_jobs,
                ["POST"],
                name="bulk_jobs",
                tags=["jobs"],
                body=ref("BulkAction"),
                responses={200: Reply("One result per id.", ref("BulkResult"))},
            ),
            WebRoute(
                f"{v1}/jobs/functions",
                self.get_functions,
                name="functions",
                tags=["jobs"],
                responses={
                    200: Reply("Distinct function names.", array({"type": "string"}))
                },
            ),
            WebRoute(
                f"{v1}/jobs/counts",
                self.get_counts,
                name="job_counts",
                tags=["jobs"],
                params=[
                    Param(
                        "cap",
                        {"type": "integer", "minimum": 1, "maximum": MAX_COUNT_CAP},
                        f"Count each state up to this many (default {COUNT_CAP}).",
                    ),
                    Param("queue", {"type": "string"}, "Only this queue."),
                ],
                responses={200: Reply("Jobs per state.", ref("JobCounts"))},
            ),
            WebRoute(
                f"{v1}/jobs/{{id}}",
                self.get_job,
                name="get_job",
                tags=["jobs"],
                params=[job_id],
                responses={200: Reply("The job.", ref("Job")), **job_missing},
            ),
            WebRoute(
                f"{v1}/jobs/{{id}}",
                self.delete_job,
                ["DELETE"],
                name="delete_job",
                tags=["jobs"],
                params=[job_id],
                responses={
                    200: Reply(
                        "Deleted.",
                        obj({"ok": {"type": "boolean"}, "id": UUID}),
                    ),
                    **job_missing,
                },
            ),
            WebRoute(
                f"{v1}/jobs/{{id}}/retry",
                self.retry_job,
                ["POST"],
                name="retry_job",
                tags=["jobs"],
                params=[job_id],
                body=_EMPTY_BODY,
                responses={
                    200: Reply("It will run again.", ref("JobActionResult")),
                    404: Reply("No job has this id.", ref("Error")),
                    409: Reply("It is running.", ref("JobActionResult")),
                },
            ),
            WebRoute(
                f"{v1}/jobs/{{id}}/cancel",
                self.cancel_job,
                ["POST"],
                name="cancel_job",
                tags=["jobs"],
                params=[job_id],
                body=_EMPTY_BODY,
                responses={
                    200: Reply("Cancelled.", ref("JobActionResult")),
                    404: Reply("No job has this id.", ref("Error")),
                    409: Reply("It already finished.", ref("JobActionResult")),
                },
            ),
            WebRoute(
                f"{v1}/ws",
                self.events,
                name="events",
                websocket=True,
                tags=["events"],
            ),
        ]

    # -- service -------------------------------------------------------------------

    async def health(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Liveness of the web server (no database round trip, no authentication)."""
        return json_response({"status": "healthy"})

    async def prometheus(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """The Metrics plugin's cluster view in the Prometheus text format."""
        token = self.api.metrics_token
        presented = bearer_token(request)
        allowed = request.user.is_authenticated or (
            token is not None
            and presented is not None
            and hmac.compare_digest(presented.encode(), token.encode())
        )
        if not allowed:
            return self.api.unauthorized()
        metrics = chancy.plugins.get("chancy.metrics")
        if metrics is None or not hasattr(metrics, "get_metrics"):
            return PlainTextResponse(
                "Metrics are not available: the Metrics plugin (chancy.metrics,"
                " distribution chancy-metrics) is not enabled in this app.\n",
                status_code=404,
            )
        from chancy.plugins.metrics import CONTENT_TYPE, prometheus_text

        view = await metrics.get_metrics(chancy)
        return Response(prometheus_text(view), media_type=CONTENT_TYPE)

    # -- sessions ------------------------------------------------------------------

    async def login(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Check ``{"username", "password"}`` (JSON); answer a token and set the
        session cookie, both naming a new server-side login.

        Attempts are throttled per username and per client address (429 with
        ``Retry-After``), before the password is looked at.
        """
        api = self.api
        data = await read_json(request, required=False)
        if data is not None and not isinstance(data, dict):
            raise ApiError("the request body must be a JSON object")
        data = data or {}
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str):
            username = None
        wait = await api.throttle_login(chancy, request, username)
        if wait is not None:
            seconds = math.ceil(wait)
            response = error_response(
                f"Too many login attempts; try again in {seconds} seconds", 429
            )
            response.headers["Retry-After"] = str(seconds)
            return response
        if (
            not username
            or not isinstance(password, str)
            or not await api.authentication_backend.login(request, username, password)
        ):
            return error_response("Invalid username or password", 401)
        await api.login_succeeded(chancy, username)
        token = await api.log_in(chancy, request, username)
        return json_response({"success": "Authenticated", "token": token})

    async def logout(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Revoke the login of the request's bearer token and of its session
        cookie, server-side: neither works afterwards, on any worker."""
        await self.api.end_session(chancy, request)
        await self.api.authentication_backend.logout(request)
        if "session" in request.scope:
            request.session.clear()
        return json_response({"success": "Logged out"})

    # -- the installation ----------------------------------------------------------

    async def configuration(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """The installation: enabled plugins, the dashboard pages they add and
        every API route (the dashboard builds its navigation from this)."""
        contributions = request.app.state.chancy_contributions
        pages = sorted(
            contributions.pages, key=lambda p: (p.order, p.title or "", p.path)
        )
        return json_response(
            {
                "plugins": [type(p).__name__ for p in chancy.plugins.values()],
                "identifiers": list(chancy.plugins),
                "prefix": chancy.prefix,
                "version": _chancy_version(),
                "worker_id": worker.worker_id,
                "user": getattr(request.user, "display_name", None),
                "pages": [
                    {
                        "plugin": page.plugin,
                        "path": page.path,
                        "module": page.url,
                        "title": page.title,
                        "nav": page.title is not None,
                        "order": page.order,
                    }
                    for page in pages
                ],
                "routes": contributions.route_keys(),
            }
        )

    async def openapi(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """The OpenAPI 3.1 document of this API.

        Generated from the route declarations (the built-in routes and every
        plugin's), with their parameters, bodies, answers and errors.
        """
        root_path = str(request.scope.get("root_path", ""))
        document = self._openapi.get(root_path)
        if document is None:
            from chancy.plugins.web.openapi import build_document

            document = build_document(
                request.app.state.chancy_contributions.routes,
                cookie_name=await self.api.get_session_cookie(chancy),
                root_path=root_path,
                warn=lambda message: chancy.log.warning("API: OpenAPI: %s", message),
            )
            self._openapi[root_path] = document
        return json_response(document)

    async def system(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT current_setting('server_version'),"
                " current_setting('server_version_num')::int, version(),"
                " current_database()"
            )
            row = await cursor.fetchone()
        assert row is not None
        return json_response(
            {
                "chancy_version": _chancy_version(),
                "web_version": _distribution_version("chancy-web"),
                "database_version": row[0],
                "database_version_num": row[1],
                "database_full_version": row[2],
                "database_name": row[3],
                "prefix": chancy.prefix,
                "notifications": chancy.notifications,
                # Behind a transaction pooler (PgBouncer): no prepared
                # statements, and LISTEN only through listen_dsn.
                "transaction_pooling": bool(chancy.transaction_pooling),
                "listening": chancy.can_listen(),
                "python_version": platform.python_version(),
                "platform": sys.platform,
                "hostname": socket.gethostname(),
                "worker_id": worker.worker_id,
            }
        )

    async def plugins(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        from chancy import _plugins

        out: list[dict[str, Any]] = []
        for identifier, plugin in chancy.plugins.items():
            if not isinstance(plugin, Plugin):
                out.append({"identifier": identifier, "name": repr(plugin)})
                continue
            cls = type(plugin)
            dist = _plugins.plugin_distribution(identifier, cls)
            scope = plugin.get_scope()
            out.append(
                {
                    "identifier": identifier,
                    "name": cls.__name__,
                    "module": cls.__module__,
                    "distribution": dist,
                    "version": _distribution_version(dist),
                    "scope": getattr(scope, "value", str(scope)),
                    "default": cls.is_default(),
                    "dependencies": plugin.get_dependencies(),
                    "tables": plugin.get_tables(),
                    "migrate_key": plugin.migrate_key(),
                    "migrate_package": plugin.migrate_package(),
                    "api_plugin": plugin.api_plugin(),
                }
            )
        return json_response(out)

    # -- queues --------------------------------------------------------------------

    async def get_queues(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        queues = await chancy.get_all_queues()
        return json_response(
            [queue_as_dict(q) for q in sorted(queues, key=lambda q: q.name)]
        )

    async def undeclared_queues(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Queues that have jobs waiting but were never declared.

        No worker serves them, so their jobs wait until the queue is declared
        (``chancy.declare(Queue(name))``, ``chancy queue declare NAME`` or
        ``POST /api/v1/queues``). ``{name: jobs waiting}``.
        """
        return json_response(await chancy.get_undeclared_queues())

    async def get_queue(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """One queue."""
        try:
            queue = await chancy.get_queue(request.path_params["name"])
        except KeyError:
            return _not_found("Queue")
        return json_response(queue_as_dict(queue))

    async def _declare(self, chancy: Chancy, **fields: Any) -> Queue:
        try:
            queue = Queue(**fields)
            return await chancy.declare(queue, upsert=True)
        except (ValueError, TypeError, ChancyError) as exc:
            raise ApiError(str(exc)) from None

    async def create_queue(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Create a queue from a partial queue object.

        Omitted fields take their defaults; omitted ``tags`` match every worker,
        an explicit ``[]`` none. If the queue exists, only the given fields
        change (as with PATCH): an omitted field is never reset.
        """
        data = await read_json(request)
        fields = _queue_changes(
            data, creating=True, executors=self.api.allowed_executors()
        )
        try:
            existing: Queue | None = await chancy.get_queue(fields["name"])
        except KeyError:
            existing = None
        given = set(fields)
        if existing is not None:
            fields = {**_queue_fields(existing), **fields}
        if given & {"executor", "executor_options"}:
            _check_executor_options(
                str(fields.get("executor") or attrs.fields(Queue).executor.default),
                fields.get("executor_options"),
            )
        stored = await self._declare(chancy, **fields)
        return json_response(queue_as_dict(stored))

    async def update_queue(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Change some settings of an existing queue; the others are kept."""
        name = request.path_params["name"]
        data = await read_json(request)
        try:
            existing = await chancy.get_queue(name)
        except KeyError:
            return _not_found("Queue")
        executors = self.api.allowed_executors()
        # The queue's own executor stays acceptable, however it was declared.
        executors.setdefault(existing.executor, existing.executor)
        changes = _queue_changes(data, creating=False, executors=executors)
        if changes.pop("name", name) != name:
            raise ApiError("a queue cannot be renamed")
        fields = {**_queue_fields(existing), **changes}
        if "executor" in changes or "executor_options" in changes:
            _check_executor_options(fields["executor"], fields["executor_options"])
        stored = await self._declare(chancy, **fields)
        return json_response(queue_as_dict(stored))

    async def delete_queue(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Delete a queue; its jobs are kept unless ``?purge_jobs=true``."""
        name = request.path_params["name"]
        purge = query_bool(request, "purge_jobs", False)
        try:
            await chancy.get_queue(name)
        except KeyError:
            return _not_found("Queue")
        await chancy.delete_queue(name, purge_jobs=purge)
        return json_response({"success": "Deleted", "name": name, "purge_jobs": purge})

    async def pause_queue(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Pause a queue, until ``{"resume_at": <ISO 8601>}`` if given."""
        name = request.path_params["name"]
        data = await read_json(request, required=False)
        if data is not None and not isinstance(data, dict):
            raise ApiError("the request body must be a JSON object")
        resume_at = (data or {}).get("resume_at")
        when = None if resume_at is None else parse_datetime(resume_at, "resume_at")
        try:
            await chancy.pause_queue(name, resume_at=when)
            queue = await chancy.get_queue(name)
        except KeyError:
            return _not_found("Queue")
        return json_response(queue_as_dict(queue))

    async def resume_queue(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        name = request.path_params["name"]
        try:
            await chancy.resume_queue(name)
            queue = await chancy.get_queue(name)
        except KeyError:
            return _not_found("Queue")
        return json_response(queue_as_dict(queue))

    # -- workers -------------------------------------------------------------------

    async def get_workers(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        return json_response(await chancy.get_all_workers())

    # -- jobs ----------------------------------------------------------------------

    async def get_jobs(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Jobs, newest id first, ``limit`` at a time (see the README for the filters)."""
        params = request.query_params
        limit = query_int(request, "limit", MAX_JOBS_PAGE, minimum=1)
        assert limit is not None
        limit = min(limit, MAX_JOBS_PAGE)
        filters = _parse_filters(params.get("filters"))
        omit = _parse_omit(params.get("omit"))
        state = params.get("state")
        if state is None and not any(f[0] == "state" for f in filters):
            state = QueuedJob.State.PENDING.value
        conditions: list[SQLAble] = []
        if state is not None and state not in ("", "all"):
            if state not in _STATES:
                raise ApiError(
                    f"unknown state {state!r} (use one of {', '.join(_STATES)}, or all)"
                )
            conditions.append(JobRules.State() == state)
        if params.get("queue"):
            conditions.append(JobRules.Queue() == params["queue"])
        if params.get("func"):
            conditions.append(JobRules.Job().contains(params["func"]))
        if params.get("before"):
            before = parse_uuid(params["before"], "before")
            conditions.append(JobRules.ID() < before)
        conditions.extend(_condition(*f) for f in filters)

        where: sql.Composable = sql.SQL("TRUE")
        args: list[Any] = []
        if conditions:
            combined = conditions[0]
            for condition in conditions[1:]:
                combined = combined & condition  # type: ignore[operator]
            where, args = compile_rule(combined)
        query = sql.SQL(
            "SELECT * FROM {jobs} WHERE {where} ORDER BY id DESC LIMIT %s"
        ).format(jobs=sql.Identifier(f"{chancy.prefix}jobs"), where=where)
        await chancy.ensure_open()
        async with (
            chancy.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(query, [*args, limit + 1])
            rows = await cursor.fetchall()
        for row in rows:
            for name in omit:
                row.pop(name, None)
        return page_response(request, rows[:limit], has_more=len(rows) > limit)

    async def get_counts(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Jobs per state, each counted up to ``cap`` (``?queue=`` for one queue).

        ``{"cap": 10000, "counts": {"pending": 12, ...}, "capped": ["succeeded"]}``:
        a state in ``capped`` has more than ``cap`` jobs. Counting stops at the
        cap, so the cost is bounded however large the table grows.
        """
        cap = query_int(request, "cap", COUNT_CAP, minimum=1, maximum=MAX_COUNT_CAP)
        assert cap is not None
        queue = request.query_params.get("queue") or None
        query = sql.SQL(
            "SELECT s.state, (SELECT count(*) FROM (SELECT 1 FROM {jobs} j"
            " WHERE j.state = s.state AND (%(queue)s::text IS NULL OR j.queue = %(queue)s)"
            " LIMIT %(limit)s) AS capped) FROM unnest(%(states)s::text[]) AS s(state)"
        ).format(jobs=sql.Identifier(f"{chancy.prefix}jobs"))
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            cursor = await conn.execute(
                query, {"queue": queue, "limit": cap + 1, "states": _STATES}
            )
            rows = await cursor.fetchall()
        counts = {state: min(int(n), cap) for state, n in rows}
        capped = [state for state, n in rows if n > cap]
        return json_response({"cap": cap, "counts": counts, "capped": capped})

    async def get_functions(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Distinct function names of the stored jobs (cached for a minute)."""
        async with self._functions_lock:
            cached = self._functions
            if cached is None or time.monotonic() - cached[0] > FUNCTIONS_TTL:
                await chancy.ensure_open()
                async with chancy.pool.connection() as conn:
                    cursor = await conn.execute(
                        sql.SQL(
                            "SELECT DISTINCT func FROM {jobs} ORDER BY func LIMIT 10000"
                        ).format(jobs=sql.Identifier(f"{chancy.prefix}jobs"))
                    )
                    names = [row[0] for row in await cursor.fetchall()]
                cached = self._functions = (time.monotonic(), names)
        return json_response(cached[1])

    async def _job_row(self, chancy: Chancy, job_id: Any) -> dict[str, Any] | None:
        await chancy.ensure_open()
        async with (
            chancy.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(
                sql.SQL("SELECT * FROM {jobs} WHERE id = %s").format(
                    jobs=sql.Identifier(f"{chancy.prefix}jobs")
                ),
                (job_id,),
            )
            row: dict[str, Any] | None = await cursor.fetchone()
            return row

    async def get_job(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        job_id = parse_uuid(request.path_params["id"], "the job id")
        row = await self._job_row(chancy, job_id)
        if row is None:
            return json_response({}, 404)
        return json_response(row)

    async def delete_job(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Delete a job outright (``Chancy.purge_jobs``)."""
        job_id = parse_uuid(request.path_params["id"], "the job id")
        purged = await chancy.purge_jobs([Reference(job_id)])
        if not purged:
            return json_response({}, 404)
        return json_response({"ok": True, "id": str(job_id)})

    async def _act(
        self, chancy: Chancy, action: str, ids: list[Any]
    ) -> list[dict[str, Any]]:
        """Apply ``action`` to every job; one ``{id, status, message}`` per id."""
        refs = [Reference(i) for i in ids]
        found = {job.id: job for job in await chancy.get_jobs(refs)}
        results: dict[Any, tuple[str, str]] = {}
        for job_id in ids:
            if job_id not in found:
                results[job_id] = ("failed", "job not found")
        if action == "retry":
            present = [Reference(i) for i in ids if i in found]
            done = {r.identifier for r in await chancy.retry_jobs(present)}
            for job_id in ids:
                if job_id in results:
                    continue
                if job_id in done:
                    results[job_id] = ("completed", "job will run again")
                else:
                    results[job_id] = ("skipped", "the job is running")
        elif action == "purge":
            present = [Reference(i) for i in ids if i in found]
            done = {r.identifier for r in await chancy.purge_jobs(present)}
            for job_id in ids:
                if job_id in results:
                    continue
                if job_id in done:
                    results[job_id] = ("completed", "job deleted")
                else:
                    results[job_id] = ("failed", "job not found")
        else:
            for job_id in ids:
                if job_id in results:
                    continue
                job = found[job_id]
                if job.is_finished:
                    results[job_id] = (
                        "skipped",
                        f"the job already finished ({job.state.value})",
                    )
                    continue
                try:
                    await chancy.cancel_job(Reference(job_id))
                except Exception as exc:
                    results[job_id] = ("failed", f"{type(exc).__name__}: {exc}")
                else:
                    results[job_id] = ("completed", "job cancelled")
        return [
            {
                "id": str(job_id),
                "status": results[job_id][0],
                "message": results[job_id][1],
            }
            for job_id in ids
        ]

    async def bulk_jobs(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """``{"action": "retry"|"purge"|"cancel", "ids": [...]}`` on many jobs at once."""
        data = await read_json(request)
        if not isinstance(data, dict):
            raise ApiError("the request body must be a JSON object")
        action = data.get("action")
        if action not in ("retry", "purge", "cancel"):
            raise ApiError("action must be one of 'retry', 'purge' or 'cancel'")
        raw_ids = data.get("ids")
        if not isinstance(raw_ids, list) or not raw_ids:
            raise ApiError("ids must be a non-empty list of job ids")
        if len(raw_ids) > MAX_BULK_IDS:
            raise ApiError(f"at most {MAX_BULK_IDS} ids may be given at once")
        ids = list(
            dict.fromkeys(
                parse_uuid(value, f"ids[{i}]") for i, value in enumerate(raw_ids)
            )
        )
        results = await self._act(chancy, action, ids)
        return json_response(
            {
                "ok": all(r["status"] != "failed" for r in results),
                "results": results,
            }
        )

    async def _act_one(self, request: Request, chancy: Chancy, action: str) -> Response:
        job_id = parse_uuid(request.path_params["id"], "the job id")
        [result] = await self._act(chancy, action, [job_id])
        if result["message"] == "job not found":
            return _not_found("Job")
        ok = result["status"] == "completed"
        return json_response({"ok": ok, **result}, 200 if ok else 409)

    async def retry_job(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Run a job again from scratch (409 while it is running)."""
        return await self._act_one(request, chancy, "retry")

    async def cancel_job(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        """Cancel a waiting or running job (409 if it already finished)."""
        return await self._act_one(request, chancy, "cancel")

    # -- events --------------------------------------------------------------------

    async def events(
        self, websocket: WebSocket, *, chancy: Chancy, worker: Worker
    ) -> None:
        """Stream every event of the worker's hub as ``{"event", "data"}`` text frames.

        A client that does not keep up loses the oldest events beyond
        :data:`WS_BACKLOG`.
        """
        pending: asyncio.Queue[Any] = asyncio.Queue()

        def on_event(event: Event) -> None:
            if pending.qsize() >= WS_BACKLOG:
                with contextlib.suppress(asyncio.QueueEmpty):
                    pending.get_nowait()
            pending.put_nowait(event)

        async def receive() -> None:
            try:
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        return
            except (WebSocketDisconnect, RuntimeError):
                return
            finally:
                pending.put_nowait(_CLOSED)

        # Subscribed before the handshake completes: a client that sees the
        # connection open misses nothing emitted afterwards.
        worker.hub.on_any(on_event)
        receiver: asyncio.Task[None] | None = None
        try:
            await websocket.accept()
            receiver = asyncio.create_task(receive())
            while True:
                item = await pending.get()
                if item is _CLOSED:
                    break
                try:
                    await websocket.send_text(
                        dumps({"event": item.name, "data": item.body})
                    )
                except (WebSocketDisconnect, RuntimeError, OSError):
                    break
        finally:
            worker.hub.remove_on_any(on_event)
            if receiver is not None:
                receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiver
