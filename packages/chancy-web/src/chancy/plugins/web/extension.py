"""Extending the API: :class:`ApiPlugin`, route dictionaries and request helpers.

A plugin contributes HTTP routes by naming an :class:`ApiPlugin` subclass in
its :meth:`~chancy.plugin.Plugin.api_plugin`; the web plugin imports it only
when it builds its application, so the plugin itself does not depend on
``chancy-web``::

    # myplugin/plugin.py
    class MyPlugin(Plugin):
        def api_plugin(self) -> str | None:
            return "myplugin.api.MyApiPlugin"

    # myplugin/api.py (imported by chancy-web only)
    from chancy.plugins.api.plugin import ApiPlugin, json_response

    class MyApiPlugin(ApiPlugin):
        def name(self) -> str:
            return "myplugin"

        def routes(self):
            return [
                {
                    "path": "/api/v1/myplugin/things",
                    "endpoint": self.get_things,
                    "methods": ["GET"],
                    "name": "myplugin_things",
                }
            ]

        async def get_things(self, request, *, chancy, worker):
            return json_response({"things": []})

Endpoints are called as ``endpoint(request, *, chancy, worker)`` (a
:class:`~starlette.websockets.WebSocket` for ``"is_websocket": True`` routes)
and return a Starlette response (or a JSON-able value, sent as JSON). Every
route requires authentication unless its dict says ``"auth": False``. Raise
:class:`ApiError` to answer with ``{"error": message}`` and a status code
(422 by default). Plain hookimpl modules can return the same route dicts (or
Starlette route objects, which then check authentication themselves) from the
``chancy_web_routes`` hook.
"""

from __future__ import annotations

import abc
import json
import math
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from starlette.requests import Request

from chancy.plugins.web._json import ApiJSONResponse

if TYPE_CHECKING:
    from chancy.job import Job
    from chancy.plugins.web.plugin import Api

__all__ = [
    "ApiError",
    "ApiPlugin",
    "RouteT",
    "check_json",
    "error_response",
    "job_as_dict",
    "json_response",
    "page_response",
    "parse_datetime",
    "parse_json",
    "parse_uuid",
    "query_bool",
    "query_int",
    "read_json",
]


class RouteT(TypedDict):
    """One route contributed by an :class:`ApiPlugin`."""

    #: URL path, e.g. ``/api/v1/crons``; may contain ``{parameters}``.
    path: str
    #: ``async endpoint(request, *, chancy, worker)``.
    endpoint: Callable[..., Awaitable[Any]]
    #: HTTP methods (ignored for websockets).
    methods: NotRequired[list[str]]
    #: Route name (for ``request.url_for``).
    name: NotRequired[str]
    #: A websocket route.
    is_websocket: NotRequired[bool]
    #: Require authentication (default ``True``).
    auth: NotRequired[bool]


class ApiPlugin(abc.ABC):
    """Contributes routes to the API; instantiated with the :class:`Api` plugin."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def name(self) -> str:
        """A short name for the extension (default: the class name)."""
        return type(self).__name__

    @abc.abstractmethod
    def routes(self) -> list[RouteT]:
        """The routes to add."""


class ApiError(Exception):
    """Raised by an endpoint: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def json_response(content: Any, status: int = 200) -> ApiJSONResponse:
    """``content`` as JSON (datetimes ISO 8601, UUIDs strings, enums values)."""
    return ApiJSONResponse(content, status_code=status)


def error_response(message: str, status: int = 422) -> ApiJSONResponse:
    return ApiJSONResponse({"error": message}, status_code=status)


def query_int(
    request: Request,
    name: str,
    default: int | None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    clamp: bool = False,
) -> int | None:
    """An integer query parameter; :class:`ApiError` (422) if it is not one or
    is out of range (values above ``maximum`` are lowered to it with ``clamp``)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            f"query parameter {name!r} must be an integer, got {raw!r}"
        ) from None
    if minimum is not None and value < minimum:
        raise ApiError(f"query parameter {name!r} must be at least {minimum}")
    if maximum is not None and value > maximum:
        if clamp:
            return maximum
        raise ApiError(f"query parameter {name!r} must be at most {maximum}")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def query_bool(request: Request, name: str, default: bool) -> bool:
    """A boolean query parameter (``true``/``false``, ``1``/``0``, ``yes``/``no``)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ApiError(f"query parameter {name!r} must be true or false, got {raw!r}")


def parse_uuid(value: Any, what: str = "id") -> uuid.UUID:
    """``value`` as a UUID; :class:`ApiError` (422) naming ``what`` otherwise."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise ApiError(f"{what} must be a UUID, got {value!r}") from None


def parse_datetime(value: Any, what: str) -> datetime:
    """An ISO 8601 date and time (UTC when it has no zone); :class:`ApiError` otherwise."""
    if not isinstance(value, str):
        raise ApiError(f"{what} must be an ISO 8601 date and time string")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ApiError(
            f"{what} must be an ISO 8601 date and time, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


#: Deepest nesting of arrays and objects a JSON document may have.
MAX_JSON_DEPTH = 64


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large a number")
    return value


def parse_json(text: str | bytes, what: str = "the request body") -> Any:
    """Strict JSON: no ``NaN``/``Infinity`` and no number too large for a
    float, at most :data:`MAX_JSON_DEPTH` levels, and strings that
    PostgreSQL can store (no NUL character, no lone surrogate).

    :raises ApiError: (422) naming ``what`` and the problem.
    """
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ApiError(f"{what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(f"{what} is not valid JSON: {exc}") from None
    check_json(value, what)
    return value


def check_json(value: Any, what: str) -> None:
    """Raise :class:`ApiError` (422) if ``value`` (parsed JSON) nests deeper than
    :data:`MAX_JSON_DEPTH` or holds a string PostgreSQL cannot store."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_string(item, what)
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise ApiError(
                    f"{what} is nested more than {MAX_JSON_DEPTH} levels deep"
                )
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_string(key, what)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _check_string(text: str, what: str) -> None:
    if "\x00" in text:
        raise ApiError(
            f"{what} contains a NUL character (\\u0000), which is not allowed"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            f"{what} contains a lone surrogate (\\ud800-\\udfff), which is not allowed"
        ) from None


async def read_json(request: Request, *, required: bool = True) -> Any:
    """The request's JSON body (see :func:`parse_json`); :class:`ApiError`
    (422) if it is not valid.

    An empty body is ``None`` when not ``required``.
    """
    body = await request.body()
    if not body.strip():
        if required:
            raise ApiError("the request body must be a JSON document")
        return None
    return parse_json(body)


def job_as_dict(job: Job) -> dict[str, Any]:
    """A job template (a cron schedule's, a workflow step's) as the API shows it."""
    return {
        "func": job.func,
        "queue": job.queue,
        "kwargs": job.kwargs,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "scheduled_at": job.scheduled_at,
        "limits": [
            {"type_": lim.type_.value, "value": lim.value} for lim in job.limits
        ],
        "unique_key": job.unique_key,
        "meta": job.meta,
    }


def page_response(
    request: Request, rows: list[dict[str, Any]], *, has_more: bool
) -> ApiJSONResponse:
    """One page of an id-ordered list: the rows, or with ``?pagination=true``
    ``{items, has_more, next_cursor}`` (the last id, to pass as ``before``)."""
    if query_bool(request, "pagination", False):
        return json_response(
            {
                "items": rows,
                "has_more": has_more,
                "next_cursor": str(rows[-1]["id"]) if has_more else None,
            }
        )
    return json_response(rows)
