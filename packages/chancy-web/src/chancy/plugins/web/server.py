"""Building the Starlette application and serving it with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import socket
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from chancy.plugins.web.auth import AUTHENTICATED, WS_PROTOCOL, bearer_token
from chancy.plugins.web.extension import (
    ApiError,
    ApiPlugin,
    WebPage,
    WebRoute,
    error_response,
    json_response,
)
from chancy.plugins.web.security import SecurityMiddleware, default_allowed_hosts
from chancy.utils import import_string

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.plugins.web.plugin import Api
    from chancy.worker import Worker

__all__ = [
    "STATIC_DIR",
    "ApiServer",
    "Contributions",
    "bind_socket",
    "build_app",
    "collect_contributions",
    "is_address_in_use",
]

#: Largest websocket message a client may send, in bytes.
WS_MAX_MESSAGE: Final = 64 * 1024

#: The dashboard (package data, written as plain static files).
STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

_ALL_METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

#: Content types of the dashboard's files, not left to the platform's
#: ``mimetypes`` table (which may say ``text/plain`` for JavaScript modules).
_MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}

_NO_DASHBOARD: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chancy</title></head>
<body>
<h1>Chancy</h1>
<p>The Chancy API is running, but this installation of <code>chancy-web</code>
has no dashboard files (<code>chancy/plugins/web/static/index.html</code> is
missing). Reinstall <code>chancy-web</code> to get the dashboard.</p>
<p>The JSON API answers under <code>api/v1/</code> (log in with
<code>POST api/v1/login</code>); <code>health</code> needs no login.</p>
</body></html>
"""


# ---------------------------------------------------------------------------
# Middleware
# ---------------------------------------------------------------------------


class _LazySessionMiddleware:
    """Starlette's signed-cookie sessions (``HttpOnly``, ``SameSite=Strict``),
    with the secret key and the cookie name resolved from the database on the
    first request (the app is built synchronously). With ``https_only=None``
    the cookie is ``Secure`` for requests that arrived over HTTPS."""

    def __init__(self, app: ASGIApp, api: Api, chancy: Chancy) -> None:
        self.app = app
        self.api = api
        self.chancy = chancy
        self._plain: ASGIApp | None = None
        self._secure: ASGIApp | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self._plain is None or self._secure is None:
            async with self._lock:
                if self._plain is None or self._secure is None:
                    key = await self.api.get_secret_key(self.chancy)
                    name = await self.api.get_session_cookie(self.chancy)
                    options: dict[str, Any] = {
                        "secret_key": key,
                        "session_cookie": name,
                        "max_age": int(self.api.session_max_age),
                        "same_site": "strict",
                    }
                    https_only = self.api.https_only
                    self._plain = SessionMiddleware(
                        self.app, https_only=bool(https_only), **options
                    )
                    self._secure = SessionMiddleware(
                        self.app, https_only=https_only is not False, **options
                    )
        secure = scope.get("scheme") in ("https", "wss")
        await (self._secure if secure else self._plain)(scope, receive, send)


class _Authentication(AuthenticationBackend):
    """Bearer tokens the API issued (checked against their server-side
    login), then the backend, which sees the session only while its login is
    valid."""

    def __init__(self, api: Api, chancy: Chancy) -> None:
        self.api = api
        self.chancy = chancy

    async def authenticate(
        self, conn: HTTPConnection
    ) -> tuple[AuthCredentials, BaseUser] | None:
        from chancy.plugins.web.plugin import NOT_OURS, SESSION_ID_KEY

        api = self.api
        token = bearer_token(conn)
        if token is not None:
            user = await api.authenticate_token(self.chancy, token)
            if user is None:
                return None  # ours, but expired, revoked or of a removed user
            if user is not NOT_OURS:
                return AuthCredentials([AUTHENTICATED]), user
        if (
            "session" in conn.scope
            and conn.session
            and not await api.check_session(
                self.chancy,
                conn.session.get(SESSION_ID_KEY),
                max_age=api.session_max_age,
            )
        ):
            # Logged out, expired, or from before logins were recorded:
            # forget it (the answer clears the cookie).
            conn.session.clear()
        result = await api.authentication_backend.authenticate(conn)
        return result


def _on_auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    return error_response(str(exc) or "Not authenticated", 401)


# ---------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------


def _route(api: Api, spec: WebRoute, chancy: Chancy, worker: Worker) -> list[BaseRoute]:
    """The Starlette route(s) serving ``spec``: for a websocket, also a plain
    HTTP ``GET`` answered ``426 Upgrade Required``."""
    endpoint = spec.endpoint
    needs_auth = spec.auth
    path = spec.path
    name = spec.name

    if spec.websocket:

        async def websocket_endpoint(websocket: WebSocket) -> None:
            websocket = _WebSocket(websocket.scope, websocket.receive, websocket.send)
            if needs_auth and not websocket.user.is_authenticated:
                await websocket.accept()
                await websocket.close(code=4401, reason="Not authenticated")
                return
            await endpoint(websocket, chancy=chancy, worker=worker)

        async def upgrade_required(request: Request) -> Response:
            response = error_response(
                f"{request.url.path} is a websocket: connect with a websocket"
                " client (subprotocols chancy and chancy.token.<token>)",
                426,
            )
            response.headers["Upgrade"] = "websocket"
            response.headers["Connection"] = "Upgrade"
            return response

        return [
            WebSocketRoute(path, websocket_endpoint, name=name),
            Route(path, upgrade_required, methods=["GET"]),
        ]

    async def http_endpoint(request: Request) -> Response:
        if needs_auth and not request.user.is_authenticated:
            return api.unauthorized()
        try:
            result = await endpoint(request, chancy=chancy, worker=worker)
        except ApiError as exc:
            return error_response(exc.message, exc.status)
        except psycopg.DataError as exc:
            # A value PostgreSQL cannot store or compare: the client's input.
            message = exc.diag.message_primary or type(exc).__name__
            chancy.log.warning(
                "API: %s %r: the database refused a value: %r",
                request.method,
                request.url.path,
                message,
            )
            return error_response(f"the database refused a value: {message}", 422)
        except Exception:
            if api.debug:
                raise
            chancy.log.exception("API: %s %r failed", request.method, request.url.path)
            return error_response("Internal server error", 500)
        if isinstance(result, Response):
            return result
        return json_response(result)

    return [Route(path, http_endpoint, methods=list(spec.methods), name=name)]


@dataclasses.dataclass
class Contributions:
    """What the web application serves besides its own files: the routes
    (declared, or raw Starlette routes) and the plugins' dashboard pages."""

    routes: list[WebRoute | BaseRoute] = dataclasses.field(default_factory=list)
    pages: list[WebPage] = dataclasses.field(default_factory=list)

    @property
    def static_dirs(self) -> dict[str, Path]:
        """Plugin name → folder of its dashboard files."""
        return {page.plugin: page.directory for page in self.pages}

    def route_keys(self) -> list[str]:
        """``METHOD /path`` of every route, as in the OpenAPI document."""
        from chancy.plugins.web.openapi import openapi_path

        keys: list[str] = []
        for route in self.routes:
            if isinstance(route, WebRoute):
                methods = ["GET"] if route.websocket else list(route.methods)
                path = route.path
            elif isinstance(route, Route):
                methods = sorted((route.methods or {"GET"}) - {"HEAD"})
                path = route.path
            elif isinstance(route, WebSocketRoute):
                methods, path = ["GET"], route.path
            else:
                continue
            keys.extend(f"{m} {openapi_path(path)}" for m in methods)
        return keys


class _Collector:
    """Gathers routes and pages, refusing a second route for a taken
    ``(method, path)`` (with a warning, unless it is the same declaration)
    and a page that cannot be served (with an error)."""

    def __init__(self, chancy: Chancy) -> None:
        self.log = chancy.log
        self.out = Contributions()
        self._taken: dict[tuple[str, str], tuple[WebRoute, str]] = {}
        self._pages: dict[str, tuple[WebPage, str]] = {}
        self._dirs: dict[str, tuple[Path, str]] = {}

    def route(self, route: WebRoute, source: str) -> None:
        keys = route.keys()
        for key in keys:
            taken = self._taken.get(key)
            if taken is None:
                continue
            if taken[0] == route:
                return  # the same declaration, reached twice (hook and api_plugin)
            self.log.warning(
                "API: %s %s from %s is ignored: %s already declares it",
                key[0],
                key[1],
                source,
                taken[1],
            )
            return
        for key in keys:
            self._taken[key] = (route, source)
        self.out.routes.append(route)

    def raw(self, route: BaseRoute) -> None:
        self.out.routes.append(route)

    def page(self, page: WebPage, source: str) -> None:
        directory = page.directory.resolve()
        module = (directory / page.module).resolve()
        if not module.is_relative_to(directory) or not module.is_file():
            self.log.error(
                "API: the dashboard page %s from %s is left out: its module %s"
                " does not exist",
                page.path,
                source,
                module,
            )
            return
        served = self._dirs.get(page.plugin)
        if served is not None and served[0] != directory:
            self.log.error(
                "API: the dashboard page %s from %s is left out: %s already serves"
                " the files of the plugin name %r from %s",
                page.path,
                source,
                served[1],
                page.plugin,
                served[0],
            )
            return
        taken = self._pages.get(page.path)
        if taken is not None:
            if taken[0] != page:
                self.log.warning(
                    "API: the dashboard page %s from %s is ignored: %s already"
                    " declares it",
                    page.path,
                    source,
                    taken[1],
                )
            return
        self._dirs[page.plugin] = (directory, source)
        self._pages[page.path] = (page, source)
        self.out.pages.append(page)

    def item(self, item: Any, api: Api, source: str) -> None:
        """One item a ``chancy_web_routes`` implementation returned."""
        try:
            if isinstance(item, WebRoute):
                self.route(item, source)
            elif isinstance(item, WebPage):
                self.page(item, source)
            elif isinstance(item, BaseRoute):
                self.raw(item)
            elif isinstance(item, dict):
                self.route(WebRoute.from_dict(item), source)
            elif isinstance(item, type) and issubclass(item, ApiPlugin):
                self.api_plugin(item(api), source)
            elif isinstance(item, ApiPlugin):
                self.api_plugin(item, source)
            else:
                self.log.warning(
                    "API: ignoring %r from chancy_web_routes of %s (expected a"
                    " WebRoute, a WebPage, a route dict, an ApiPlugin subclass or"
                    " a Starlette route)",
                    item,
                    source,
                )
        except (TypeError, ValueError) as exc:
            self.log.error("API: ignoring a route of %s: %s", source, exc)

    def api_plugin(self, extension: ApiPlugin, source: str) -> None:
        for spec in extension.routes():
            try:
                route = spec if isinstance(spec, WebRoute) else WebRoute.from_dict(spec)
            except (TypeError, ValueError) as exc:
                self.log.error("API: ignoring a route of %s: %s", source, exc)
                continue
            self.route(route, source)


def collect_contributions(api: Api, chancy: Chancy) -> Contributions:
    """The routes and pages of the application, in this order: the built-in
    routes, what every ``chancy_web_routes`` implementation returns, and the
    routes of the enabled plugins that name an ``ApiPlugin`` in their
    ``api_plugin()`` (the original Chancy's spelling)."""
    from chancy.plugin import Plugin
    from chancy.plugins.web.core import CoreApiPlugin

    collector = _Collector(chancy)
    collector.api_plugin(CoreApiPlugin(api), "chancy-web")
    pm = chancy.plugin_manager.pm
    for impl in reversed(pm.hook.chancy_web_routes.get_hookimpls()):
        source = impl.plugin_name
        try:
            result = impl.function(chancy=chancy)
        except Exception:
            chancy.log.exception(
                "API: the chancy_web_routes hook of %s failed; its routes and"
                " pages are left out",
                source,
            )
            continue
        items = [] if result is None else result
        if not isinstance(items, list | tuple):
            items = [items]
        for item in items:
            collector.item(item, api, source)
    for identifier, plugin in chancy.plugins.items():
        if not isinstance(plugin, Plugin):
            continue
        try:
            path = plugin.api_plugin()
            if not path:
                continue
            cls = import_string(path)
            if not (isinstance(cls, type) and issubclass(cls, ApiPlugin)):
                raise TypeError(f"{path} is not an ApiPlugin subclass")
            extension = cls(api)
        except Exception:
            chancy.log.exception(
                "Api: the routes of the plugin %s could not be loaded", identifier
            )
            continue
        collector.api_plugin(extension, f"the plugin {identifier} (api_plugin)")
    return collector.out


async def _plugin_files(request: Request) -> Response:
    """A file of a plugin's dashboard pages (``/plugins/<plugin>/<path>``)."""
    if request.method not in ("GET", "HEAD"):
        return PlainTextResponse("Method Not Allowed", status_code=405)
    dirs: dict[str, Path] = request.app.state.chancy_static_dirs
    root = dirs.get(request.path_params["plugin"])
    if root is None:
        return PlainTextResponse("Not Found", status_code=404)
    root = root.resolve()
    candidate = (root / request.path_params["path"]).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return PlainTextResponse("Not Found", status_code=404)
    return FileResponse(
        candidate,
        media_type=_MEDIA_TYPES.get(candidate.suffix.lower()),
        headers={"Cache-Control": "no-cache"},
    )


def _api_fallback(routes: list[BaseRoute]) -> Any:
    """Unknown API paths: 405 when another method would match, else 404 (JSON)."""

    async def api_not_found(request: Request) -> Response:
        scope = dict(request.scope)
        for route in routes:
            match, _ = route.matches(scope)
            if match is Match.PARTIAL:
                return error_response("Method not allowed", 405)
        return error_response("Not found", 404)

    return api_not_found


async def _dashboard(request: Request) -> Response:
    """The dashboard's files. The dashboard routes with the URL hash, so an
    unknown path (without a file extension) is redirected to the dashboard's
    root, where its relative script URLs resolve (the browser keeps the hash)."""
    if request.method not in ("GET", "HEAD"):
        return PlainTextResponse("Method Not Allowed", status_code=405)
    path = request.path_params.get("path", "")
    root = STATIC_DIR
    if path:
        candidate = (root / path).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            return FileResponse(
                candidate, media_type=_MEDIA_TYPES.get(candidate.suffix.lower())
            )
        if "." in path.rsplit("/", 1)[-1]:
            return PlainTextResponse("Not Found", status_code=404)
        return RedirectResponse(request.scope.get("root_path", "") + "/", 307)
    index = root / "index.html"
    if index.is_file():
        return FileResponse(
            index,
            media_type=_MEDIA_TYPES[".html"],
            headers={"Cache-Control": "no-cache"},
        )
    return HTMLResponse(_NO_DASHBOARD)


def build_app(
    api: Api, worker: Worker, chancy: Chancy, *, served: bool = False
) -> Starlette:
    """The Starlette application of ``api`` (see :meth:`Api.build_starlette_app`).

    :param served: the plugin's own server runs it (then the ``Host`` header
        is checked against the bind address's names by default).
    """
    api.check_configuration(chancy, served=served)
    contributions = collect_contributions(api, chancy)
    routes: list[BaseRoute] = []
    for item in contributions.routes:
        if isinstance(item, WebRoute):
            routes.extend(_route(api, item, chancy, worker))
        else:
            routes.append(item)
    api_not_found = _api_fallback(list(routes))
    routes += [
        Route("/api", api_not_found, methods=_ALL_METHODS),
        Route("/api/{rest:path}", api_not_found, methods=_ALL_METHODS),
        Route("/plugins/{plugin}/{path:path}", _plugin_files, methods=_ALL_METHODS),
        Route("/", _dashboard, methods=_ALL_METHODS),
        Route("/{path:path}", _dashboard, methods=_ALL_METHODS),
    ]
    origins = list(api.allow_origins or [])
    allowed_hosts = api.allowed_hosts
    if allowed_hosts is None and served:
        allowed_hosts = default_allowed_hosts(api.host)
    middleware = [
        Middleware(
            SecurityMiddleware,
            allowed_hosts=allowed_hosts,
            allow_origins=origins,
            max_body_size=api.max_body_size,
            max_login_body_size=api.max_login_body_size,
            content_security_policy=api.content_security_policy,
        ),
    ]
    if origins:  # no cross-origin access unless configured
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
                allow_headers=["authorization", "content-type"],
                # Never "*" together with credentials: listed origins only.
                allow_credentials="*" not in origins,
            )
        )
    middleware += [
        Middleware(_LazySessionMiddleware, api=api, chancy=chancy),
        Middleware(
            AuthenticationMiddleware,
            backend=_Authentication(api, chancy),
            on_error=_on_auth_error,
        ),
    ]
    app = Starlette(debug=api.debug, routes=routes, middleware=middleware)
    app.state.chancy_contributions = contributions
    app.state.chancy_static_dirs = contributions.static_dirs
    return app


# ---------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------


def is_address_in_use(exc: OSError) -> bool:
    return exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1))


def bind_socket(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    :raises OSError: ``EADDRINUSE`` when something else listens there.
    """
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    # "localhost" may resolve to ::1 first; clients mostly try 127.0.0.1.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if sys.platform != "win32":
            # Rebinding over TIME_WAIT after a restart; an active listener
            # still makes bind() (or listen()) fail with EADDRINUSE.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _WebSocket(WebSocket):
    """A websocket that answers the ``chancy`` subprotocol when the client
    asked for it (browsers refuse a connection whose requested subprotocols
    the server ignores; the token travels in a second, never echoed one)."""

    async def accept(
        self,
        subprotocol: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] | None = None,
    ) -> None:
        if subprotocol is None and WS_PROTOCOL in (
            self.scope.get("subprotocols") or ()
        ):
            subprotocol = WS_PROTOCOL
        await super().accept(subprotocol, headers)


def _ws_protocol() -> str:
    from uvicorn.config import WS_PROTOCOLS

    return "websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "auto"


class ApiServer(uvicorn.Server):
    """uvicorn's server, running inside an existing event loop: it installs no
    signal handlers (the worker owns them) and reports when it is listening."""

    def __init__(self, config: uvicorn.Config, started: asyncio.Event) -> None:
        super().__init__(config)
        self._started_event = started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        return

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._started_event.set()

    @classmethod
    def for_app(
        cls, app: Any, *, host: str, port: int, started: asyncio.Event, **options: Any
    ) -> ApiServer:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="error",
            log_config=None,
            access_log=False,
            lifespan="off",
            ws=_ws_protocol(),
            # The event stream only sends; a client has nothing large to say.
            ws_max_size=WS_MAX_MESSAGE,
            **options,
        )
        return cls(config, started)
