"""The OpenAPI 3.1 document of the API, generated from the route declarations.

Every :class:`~chancy.plugins.web.WebRoute` (the built-in ones, the plugins'
and those converted from the original's route dicts) is one declaration that
both serves the route and describes it here, so the document cannot drift
from what is served. The errors every route may answer (a refused ``Host``,
a missing login, a cross-origin change, a body too large or not JSON, bad
input, an internal error) are added here, once, as the middleware answers
them. ``GET /api/v1/openapi.json`` serves the document.
"""

from __future__ import annotations

import copy
import importlib.metadata
from collections.abc import Iterable, Sequence
from typing import Any, Final

from starlette.routing import BaseRoute, Route, WebSocketRoute

from chancy.plugins.web.extension import PATH_PARAMETER, WebRoute
from chancy.plugins.web.schemas import CORE_SCHEMAS, ref

__all__ = ["OPENAPI_VERSION", "build_document", "openapi_path"]

#: The OpenAPI version of the document.
OPENAPI_VERSION: Final = "3.1.0"

_ERROR: Final = {"application/json": {"schema": ref("Error")}}
_WITH_BODY: Final = ("POST", "PUT", "PATCH", "DELETE")

_DESCRIPTION: Final = """\
The HTTP API of Chancy, a job queue on PostgreSQL: jobs, queues, workers and
whatever the installed plugins add (cron schedules, workflows, metrics …).

Authenticate with the bearer token that `POST /api/v1/login` returns
(`Authorization: Bearer <token>`), or with the session cookie it sets.
Request bodies are JSON (`Content-Type: application/json`). Errors are
`{"error": "<what is wrong>"}`.
"""


def openapi_path(path: str) -> str:
    """A Starlette path with ``{name:converter}`` written as OpenAPI's ``{name}``."""
    return PATH_PARAMETER.sub(lambda m: "{" + m.group(1) + "}", path)


def _version() -> str:
    try:
        return importlib.metadata.version("chancy-web")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "0"


def _common_errors(method: str, *, secured: bool, takes_input: bool) -> dict[str, Any]:
    """The answers of the middleware and of the route wrapper."""
    out: dict[str, Any] = {
        "400": {
            "description": "The Host header is not an allowed name, or the URL"
            " holds a NUL character.",
            "content": _ERROR,
        },
    }
    if secured:
        out["401"] = {
            "description": "Not logged in: no valid bearer token or session"
            " cookie (expired, revoked or of a removed user).",
            "headers": {
                "WWW-Authenticate": {"schema": {"type": "string"}},
            },
            "content": _ERROR,
        }
    if method != "GET":
        out["403"] = {
            "description": "Cross-origin request refused: a page of another"
            " origin may not change anything (Api allow_origins).",
            "content": _ERROR,
        }
        out["413"] = {
            "description": "The request body is too large (Api max_body_size).",
            "content": _ERROR,
        }
    if method in _WITH_BODY:
        out["415"] = {
            "description": "The request body is not application/json.",
            "content": _ERROR,
        }
    if takes_input:
        out["422"] = {
            "description": "Invalid input: the error names the parameter or"
            " field and what is wrong with it.",
            "content": _ERROR,
        }
    out["500"] = {"description": "Internal server error.", "content": _ERROR}
    return out


def _responses(route: WebRoute, method: str) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, reply in sorted(route.responses.items()):
        item: dict[str, Any] = {"description": reply.description}
        if reply.schema is not None:
            item["content"] = {
                reply.media_type: {"schema": copy.deepcopy(reply.schema)}
            }
        responses[str(status)] = item
    if not any(200 <= status < 300 for status in route.responses):
        responses["200"] = {
            "description": "Success (the shape is not described by the route).",
            "content": {"application/json": {"schema": {}}},
        }
    takes_input = bool(route.params) or route.body is not None
    for code, error in _common_errors(
        method, secured=bool(route.security_schemes), takes_input=takes_input
    ).items():
        responses.setdefault(code, error)
    return dict(sorted(responses.items()))


def _parameters(route: WebRoute) -> list[dict[str, Any]]:
    out = []
    for param in route.params:
        item: dict[str, Any] = {
            "name": param.name,
            "in": param.location,
            "required": param.required,
            "schema": copy.deepcopy(dict(param.schema)),
        }
        if param.description:
            item["description"] = param.description
        out.append(item)
    return out


def _operation(route: WebRoute, method: str, operation_id: str) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id}
    if route.operation_summary:
        operation["summary"] = route.operation_summary
    if route.operation_description:
        operation["description"] = route.operation_description
    if route.tags:
        operation["tags"] = list(route.tags)
    parameters = _parameters(route)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None and method in _WITH_BODY:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": copy.deepcopy(route.body)}},
        }
    if route.websocket:
        operation["x-websocket"] = True
        responses: dict[str, Any] = {
            "101": {
                "description": "Switching Protocols: the websocket is open (a"
                " websocket client; authenticate with the subprotocols"
                " `chancy` and `chancy.token.<token>`, or the session cookie)."
            },
            "426": {
                "description": "Upgrade Required: a plain HTTP request.",
                "content": _ERROR,
            },
        }
        for status, item in _common_errors(
            "GET", secured=False, takes_input=bool(route.params)
        ).items():
            responses.setdefault(status, item)
        operation["responses"] = dict(sorted(responses.items()))
    else:
        operation["responses"] = _responses(route, method)
    operation["security"] = [{name: []} for name in route.security_schemes]
    return operation


def _raw_operation(route: BaseRoute, operation_id: str) -> dict[str, Any]:
    endpoint = getattr(route, "endpoint", None)
    doc = (getattr(endpoint, "__doc__", None) or "").strip()
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": doc.split("\n\n")[0].replace("\n", " ")
        if doc
        else "A route without a declaration",
        "description": "A Starlette route added as it is by a plugin: it checks"
        " authentication itself and its shapes are not described.",
        "x-chancy-undeclared": True,
        "responses": {"default": {"description": "Not described by its plugin."}},
    }
    names = [m.group(1) for m in PATH_PARAMETER.finditer(getattr(route, "path", ""))]
    if names:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names
        ]
    return operation


def _unique(operation_id: str, used: set[str]) -> str:
    candidate, n = operation_id, 2
    while candidate in used:
        candidate = f"{operation_id}_{n}"
        n += 1
    used.add(candidate)
    return candidate


def build_document(
    routes: Iterable[WebRoute | BaseRoute],
    *,
    cookie_name: str,
    root_path: str = "",
    warn: Any = None,
) -> dict[str, Any]:
    """The OpenAPI document describing ``routes``.

    :param cookie_name: the session cookie's name (a security scheme).
    :param root_path: where the application is mounted (the server URL).
    :param warn: called with a message for each named schema that two
        routes define differently (the first one is kept).
    """
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = copy.deepcopy(CORE_SCHEMAS)
    defined_by: dict[str, str] = {}
    used: set[str] = set()
    tags: list[str] = []
    for route in routes:
        if isinstance(route, WebRoute):
            for name, schema in route.schemas.items():
                if name in schemas and schemas[name] != schema:
                    if warn is not None:
                        warn(
                            f"the schema {name!r} of {route.path} differs from the"
                            f" one of {defined_by.get(name, 'the core')}; the first"
                            " is kept"
                        )
                    continue
                schemas[name] = copy.deepcopy(dict(schema))
                defined_by.setdefault(name, route.path)
            for tag in route.tags:
                if tag not in tags:
                    tags.append(tag)
            item = paths.setdefault(openapi_path(route.path), {})
            methods: Sequence[str] = ("GET",) if route.websocket else route.methods
            base = str(route.name or getattr(route.endpoint, "__name__", "operation"))
            for method in methods:
                operation_id = base if len(methods) == 1 else f"{base}_{method.lower()}"
                item[method.lower()] = _operation(
                    route, method, _unique(operation_id, used)
                )
        elif isinstance(route, Route | WebSocketRoute):
            item = paths.setdefault(openapi_path(route.path), {})
            if isinstance(route, WebSocketRoute):
                methods = ["GET"]
            else:
                methods = sorted((route.methods or {"GET"}) - {"HEAD"})
            for method in methods:
                operation_id = _unique(route.name or "route", used)
                operation = _raw_operation(route, operation_id)
                if isinstance(route, WebSocketRoute):
                    operation["x-websocket"] = True
                item[method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "Chancy API",
            "version": _version(),
            "description": _DESCRIPTION,
        },
        "servers": [{"url": root_path or "/"}],
        "tags": [{"name": tag} for tag in tags],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token `POST /api/v1/login` returns.",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": cookie_name,
                    "description": "The session cookie `POST /api/v1/login` sets.",
                },
            },
        },
    }
