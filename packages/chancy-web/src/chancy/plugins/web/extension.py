"""Extending the API and the dashboard: route and page declarations, and
request helpers.

A distribution contributes HTTP routes and dashboard pages through one hook,
``chancy_web_routes(chancy)``, implemented in its entry-point module (its
``hooks.py``); the web plugin calls it when it builds its application, so
the distribution itself does not depend on ``chancy-web`` (import the web
module inside the hook)::

    # myplugin/hooks.py (entry point of group "chancy")
    @hookimpl
    def chancy_web_routes(chancy):
        if "myplugin" not in chancy.plugins:  # only while enabled
            return []
        from myplugin.web import contributions

        return contributions()

    # myplugin/web.py (imported by chancy-web only)
    from pathlib import Path

    from chancy.plugins.web import Reply, WebPage, WebRoute


    async def get_things(request, *, chancy, worker):
        # Every thing.
        return {"things": []}


    def contributions():
        return [
            WebRoute(
                "/api/v1/things",
                get_things,
                responses={200: Reply("The things", {"type": "object"})},
            ),
            WebPage(
                plugin="myplugin",
                path="/things",
                module="things.js",
                directory=Path(__file__).parent / "static",
                title="Things",
            ),
        ]

Every :class:`WebRoute` is one declaration: it adds the route and its entry
in the OpenAPI document (``GET /api/v1/openapi.json``), so the two cannot
drift. Endpoints are called as ``endpoint(request, *, chancy, worker)`` (a
:class:`~starlette.websockets.WebSocket` for ``websocket=True`` routes) and
return a Starlette response or a JSON-able value, sent as JSON. Every route
requires authentication unless ``auth=False``. Raise :class:`ApiError` to
answer ``{"error": message}`` with a status code (422 by default).

The original Chancy's spelling still works: a plugin whose
:meth:`~chancy.plugin.Plugin.api_plugin` names an :class:`ApiPlugin`
subclass, whose :meth:`ApiPlugin.routes` returns route dicts ``{path,
endpoint, methods, name, is_websocket?, auth?}``; each dict becomes a
:class:`WebRoute`. The hook may also return such dicts, :class:`ApiPlugin`
subclasses, or Starlette routes (added as they are: they check
authentication themselves and appear in the OpenAPI document without a
description of their shapes).
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import json
import math
import os
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NotRequired, TypedDict

from starlette.requests import Request

from chancy.plugins.web._json import ApiJSONResponse

if TYPE_CHECKING:
    from chancy.job import Job
    from chancy.plugins.web.plugin import Api

__all__ = [
    "ApiError",
    "ApiPlugin",
    "Param",
    "Reply",
    "RouteT",
    "WebPage",
    "WebRoute",
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


#: The HTTP methods a :class:`WebRoute` may answer.
HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: ``{name}`` or ``{name:converter}`` in a Starlette path.
PATH_PARAMETER: Final = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+))?}")
_PARAM_LOCATIONS: Final = ("query", "path", "header")
_PLUGIN_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_PAGE_SEGMENT: Final = re.compile(r":?[A-Za-z0-9_.~-]+")


@dataclasses.dataclass(frozen=True)
class Param:
    """A query, path or header parameter of a :class:`WebRoute`, as the OpenAPI
    document describes it (the endpoint still reads and checks it itself)."""

    #: The parameter's name.
    name: str
    #: Its JSON Schema (``{"type": "integer", "minimum": 1}`` …).
    schema: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"type": "string"}
    )
    #: What it means.
    description: str = ""
    #: Whether it must be given (path parameters always must).
    required: bool = False
    #: ``"query"``, ``"path"`` or ``"header"``.
    location: str = "query"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(
                f"Param name must be a non-empty string, got {self.name!r}"
            )
        if self.location not in _PARAM_LOCATIONS:
            raise ValueError(
                f"Param {self.name!r}: location must be one of"
                f" {', '.join(_PARAM_LOCATIONS)}, got {self.location!r}"
            )
        if not isinstance(self.schema, Mapping):
            raise TypeError(f"Param {self.name!r}: schema must be a JSON Schema dict")
        if self.location == "path" and not self.required:
            object.__setattr__(self, "required", True)


@dataclasses.dataclass(frozen=True)
class Reply:
    """One documented answer of a :class:`WebRoute`."""

    #: What the answer means.
    description: str
    #: JSON Schema of the body (``None``: no body described).
    schema: Mapping[str, Any] | None = None
    #: Its media type.
    media_type: str = "application/json"


def _docstring_summary(endpoint: Any) -> str | None:
    doc = inspect.getdoc(endpoint)
    if not doc:
        return None
    return doc.strip().split("\n\n")[0].replace("\n", " ").strip() or None


def _docstring_rest(endpoint: Any) -> str | None:
    doc = inspect.getdoc(endpoint)
    if not doc:
        return None
    parts = doc.strip().split("\n\n", 1)
    return parts[1].strip() if len(parts) > 1 else None


@dataclasses.dataclass(frozen=True)
class WebRoute:
    """One route of the API: what serves it and how the OpenAPI document
    (``GET /api/v1/openapi.json``) describes it.

    The one declaration of a route: the web plugin builds the Starlette route
    and the OpenAPI operation(s) from it, so they cannot drift. Errors common
    to every route (400, 401, 403, 413, 415, 422, 500 as they apply) are added
    to the document by the web plugin.

    :param path: URL path, e.g. ``/api/v1/crons``; ``{name}`` (or
        ``{name:path}``) for path parameters.
    :param endpoint: ``async endpoint(request, *, chancy, worker)`` returning
        a Starlette response or a JSON-able value.
    :param methods: HTTP methods (``GET`` by default; ignored for websockets).
    :param name: route name (for ``request.url_for``); also the OpenAPI
        ``operationId`` (suffixed with the method when there are several).
    :param auth: whether the route requires a login (cookie or bearer token).
    :param websocket: a websocket route (documented as a ``GET`` that plain
        HTTP requests get ``426 Upgrade Required`` from).
    :param summary: one line for the document; default: the first paragraph
        of the endpoint's docstring.
    :param description: more text; default: the rest of the docstring.
    :param tags: OpenAPI tags (the contributing plugin's name, typically).
    :param params: query and path parameters (path parameters not listed are
        added as strings).
    :param body: JSON Schema of the JSON request body, if it takes one.
    :param body_required: whether the body must be given.
    :param responses: status code → :class:`Reply`.
    :param schemas: named schemas the other schemas refer to as
        ``{"$ref": "#/components/schemas/<name>"}``.
    :param security: OpenAPI security scheme names that grant access (default:
        ``("bearerAuth", "sessionCookie")`` when ``auth``, none otherwise); for
        a route with ``auth=False`` that checks credentials itself.
    """

    path: str
    endpoint: Callable[..., Awaitable[Any]]
    methods: Sequence[str] = ("GET",)
    name: str | None = None
    auth: bool = True
    websocket: bool = False
    summary: str | None = None
    description: str | None = None
    tags: Sequence[str] = ()
    params: Sequence[Param] = ()
    body: Mapping[str, Any] | None = None
    body_required: bool = True
    responses: Mapping[int, Reply] = dataclasses.field(default_factory=dict)
    schemas: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    security: Sequence[str] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ValueError(f"WebRoute path must start with '/', got {self.path!r}")
        if not callable(self.endpoint):
            raise TypeError(f"WebRoute {self.path}: endpoint must be callable")
        methods = [self.methods] if isinstance(self.methods, str) else self.methods
        methods = tuple(str(m).upper() for m in methods or ())
        if self.websocket:
            methods = ()
        elif not methods:
            methods = ("GET",)
        for method in methods:
            if method not in HTTP_METHODS:
                raise ValueError(
                    f"WebRoute {self.path}: unknown method {method!r}"
                    f" (use {', '.join(HTTP_METHODS)})"
                )
        set_(self, "methods", methods)
        set_(
            self,
            "tags",
            tuple([self.tags] if isinstance(self.tags, str) else self.tags),
        )
        params = list(self.params)
        for param in params:
            if not isinstance(param, Param):
                raise TypeError(
                    f"WebRoute {self.path}: params must be Param objects, got {param!r}"
                )
        in_path = [m.group(1) for m in PATH_PARAMETER.finditer(self.path)]
        declared = {p.name for p in params if p.location == "path"}
        for name in declared - set(in_path):
            raise ValueError(
                f"WebRoute {self.path}: path parameter {name!r} is not in the path"
            )
        for name in in_path:
            if name not in declared:
                params.append(Param(name, location="path"))
        set_(self, "params", tuple(params))
        for status, reply in self.responses.items():
            if not isinstance(status, int) or not 100 <= status <= 599:
                raise ValueError(
                    f"WebRoute {self.path}: response status must be an HTTP status"
                    f" code, got {status!r}"
                )
            if not isinstance(reply, Reply):
                raise TypeError(
                    f"WebRoute {self.path}: responses must map status codes to"
                    f" Reply objects, got {reply!r}"
                )
        if self.security is not None:
            set_(self, "security", tuple(self.security))

    @property
    def operation_summary(self) -> str | None:
        return self.summary or _docstring_summary(self.endpoint)

    @property
    def operation_description(self) -> str | None:
        if self.description is not None:
            return self.description
        return None if self.summary else _docstring_rest(self.endpoint)

    @property
    def security_schemes(self) -> tuple[str, ...]:
        if self.security is not None:
            return tuple(self.security)
        return ("bearerAuth", "sessionCookie") if self.auth else ()

    def keys(self) -> list[tuple[str, str]]:
        """``(method, path)`` pairs it answers (``("WEBSOCKET", path)`` for a websocket)."""
        if self.websocket:
            return [("WEBSOCKET", self.path)]
        return [(method, self.path) for method in self.methods]

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> WebRoute:
        """A route from the original's route dict ``{path, endpoint, methods,
        name, is_websocket?, auth?}``; :class:`ValueError` naming what is wrong."""
        if not isinstance(spec, Mapping):
            raise TypeError(f"a route must be a dict, got {spec!r}")
        missing = [key for key in ("path", "endpoint") if key not in spec]
        if missing:
            raise ValueError(f"the route {dict(spec)!r} has no {' or '.join(missing)}")
        known = {"path", "endpoint", "methods", "name", "is_websocket", "auth"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(
                f"the route {spec['path']!r} has unknown key(s) {', '.join(unknown)}"
                f" (allowed: {', '.join(sorted(known))})"
            )
        return cls(
            path=spec["path"],
            endpoint=spec["endpoint"],
            methods=tuple(spec.get("methods") or ("GET",)),
            name=spec.get("name"),
            auth=bool(spec.get("auth", True)),
            websocket=bool(spec.get("is_websocket", False)),
        )


@dataclasses.dataclass(frozen=True)
class WebPage:
    """A page of the dashboard, contributed by a plugin.

    The plugin's files are served at ``<dashboard>/plugins/<plugin>/``, from
    ``directory``; the dashboard imports ``module`` from there when the URL
    hash matches ``path`` and calls its default export as
    ``await mount(view, ctx)`` (see the package README for ``ctx``). A page
    with a ``title`` gets an entry in the navigation.

    :param plugin: the plugin's name in URLs: lower-case letters, digits,
        ``.``, ``_`` and ``-``.
    :param path: the dashboard route, e.g. ``/crons`` or ``/crons/:key``
        (``:name`` segments become ``ctx.params.name``).
    :param module: the page's JavaScript module, relative to ``directory``.
    :param directory: the folder of the plugin's dashboard files.
    :param title: the navigation entry's label; ``None``: not in the navigation.
    :param order: position of the entry among the plugins' entries (lower first).
    """

    plugin: str
    path: str
    module: str
    directory: Path
    title: str | None = None
    order: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.plugin, str) or not _PLUGIN_NAME.fullmatch(self.plugin):
            raise ValueError(
                "WebPage plugin must be a short lower-case name (letters, digits,"
                f" '.', '_', '-'), got {self.plugin!r}"
            )
        if (
            not isinstance(self.path, str)
            or not self.path.startswith("/")
            or not all(_PAGE_SEGMENT.fullmatch(s) for s in self.path.split("/")[1:])
        ):
            raise ValueError(
                "WebPage path must be a dashboard route such as '/things' or"
                f" '/things/:id', got {self.path!r}"
            )
        module = str(self.module)
        parts = module.replace("\\", "/").split("/")
        if (
            not module
            or module.startswith("/")
            or any(part in ("", ".", "..") for part in parts)
            or not module.endswith((".js", ".mjs"))
        ):
            raise ValueError(
                "WebPage module must be a relative path to a .js file inside"
                f" directory, got {self.module!r}"
            )
        object.__setattr__(self, "directory", Path(os.fspath(self.directory)))
        if self.title is not None and (
            not isinstance(self.title, str) or not self.title
        ):
            raise ValueError(
                f"WebPage title must be a non-empty string or None, got {self.title!r}"
            )
        if isinstance(self.order, bool) or not isinstance(self.order, int):
            raise TypeError(f"WebPage order must be an int, got {self.order!r}")

    @property
    def url(self) -> str:
        """The module's URL relative to the dashboard's root."""
        return f"plugins/{self.plugin}/{self.module}"


class ApiPlugin(abc.ABC):
    """The original Chancy's way to contribute routes: a plugin's
    :meth:`~chancy.plugin.Plugin.api_plugin` names a subclass, instantiated
    with the :class:`Api` plugin; each route it returns becomes a
    :class:`WebRoute` (new code returns :class:`WebRoute` objects from the
    ``chancy_web_routes`` hook instead)."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def name(self) -> str:
        """A short name for the extension (default: the class name)."""
        return type(self).__name__

    @abc.abstractmethod
    def routes(self) -> Sequence[RouteT | WebRoute]:
        """The routes to add: route dicts, or :class:`WebRoute` objects."""


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
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not 2 <= utc.year <= 9998:
        # PostgreSQL would store it, but it could not be read back as a
        # Python datetime (years 1 and 9999 are kept clear of the edges).
        raise ApiError(f"{what} must be between the years 2 and 9998, got {value!r}")
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
        "concurrency_key": job.concurrency_key,
        "store_result": job.store_result,
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
