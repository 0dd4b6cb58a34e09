"""The request checks every route gets, before any of them runs.

:class:`SecurityMiddleware` is the outermost layer of the API's application:

1. **Host** (DNS rebinding): the ``Host`` header must name one of the allowed
   hosts (``Api(allowed_hosts=...)``; by default, when the plugin serves on a
   loopback address, the loopback names). 400 otherwise.
2. **NUL characters** in the URL path or the query string: 400, naming the
   parameter; they never reach a handler, the database or a log.
3. **Origin**: a request whose ``Origin`` is neither this server's own origin
   nor listed in ``Api(allow_origins=...)`` is *cross-origin*. It never uses
   the session cookie (the ``Cookie`` header is removed, and a ``Set-Cookie``
   never answers it), and if it could change something (any method but GET,
   HEAD and OPTIONS; any websocket) it is refused with 403, unless
   ``allow_origins`` holds ``"*"``, which lets every origin in with a bearer
   token but never with the cookie. Without an ``Origin`` header,
   ``Sec-Fetch-Site: cross-site`` / ``same-site`` counts as a foreign origin;
   clients that send neither (curl, scripts) are not browsers and carry no
   ambient credentials.
4. **Content type**: POST, PUT and PATCH (and any request with a body but
   GET/HEAD) must be ``application/json``: 415 otherwise. Forms and
   ``text/plain``, which a page of another site can send without asking, are
   never parsed.
5. **Body size**: at most ``Api(max_login_body_size=...)`` bytes for the
   login and ``Api(max_body_size=...)`` for any other route; a larger
   ``Content-Length`` is answered 413 before a byte of the body is read, and
   a body without one (chunked) is read only up to the limit, then answered
   413 and the connection closed.
6. **Response headers**: ``Content-Security-Policy``, ``X-Frame-Options:
   DENY``, ``X-Content-Type-Options: nosniff``, ``Referrer-Policy:
   no-referrer``, and ``Cache-Control: no-store`` on the API's answers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chancy.plugins.web._json import dumps

__all__ = [
    "DEFAULT_CSP",
    "LOOPBACK_HOSTS",
    "SecurityMiddleware",
    "default_allowed_hosts",
    "host_allowed",
    "normalize_origin",
]

#: The dashboard loads only its own scripts, styles and images; it may call
#: an API elsewhere (the login form's "API server"), hence ``connect-src``.
DEFAULT_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " font-src 'self'; connect-src 'self' http: https: ws: wss:; object-src 'none';"
    " base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

#: The names of this machine a loopback-bound server accepts by default.
LOOPBACK_HOSTS: Final = ("localhost", "127.0.0.1", "::1")

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_JSON: Final = "application/json"
_LOGIN_PATH: Final = "/api/v1/login"


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a default port or a slash."""
    text = origin.strip().rstrip("/").lower()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text
    if not parts.scheme or not parts.hostname:
        return text
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if port is None or port == default:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a ``Host`` header value, ``None`` if malformed."""
    value = value.strip().lower()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
        rest = ":" + port_text
    else:
        host, rest = value, ""
    port: int | None = None
    if rest:
        if not rest.startswith(":") or not rest[1:].isdigit():
            return None
        port = int(rest[1:])
    return host.rstrip("."), port


def host_allowed(value: str | None, allowed: Iterable[str]) -> bool:
    """Whether a ``Host`` header names one of ``allowed``: exact names or
    addresses (case-insensitive, any port), ``"*"`` for any, or ``".example.com"``
    for the domain and its subdomains."""
    if value is None:
        return False
    parsed = _split_host(value)
    if parsed is None:
        return False
    host = parsed[0]
    for pattern in allowed:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern.startswith("[") and pattern.endswith("]"):
            pattern = pattern[1:-1]
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith(".") and (host == pattern[1:] or host.endswith(pattern)):
            return True
    return False


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(bind_host: str) -> list[str] | None:
    """What a server listening on ``bind_host`` accepts in ``Host`` when
    ``allowed_hosts`` is not given: the loopback names for a loopback address,
    the address and the loopback names for another specific address, and any
    name (``None``) for a wildcard address (``0.0.0.0``, ``::``)."""
    host = bind_host.strip().strip("[]")
    if _is_loopback(host):
        return list(LOOPBACK_HOSTS)
    try:
        if ipaddress.ip_address(host).is_unspecified:
            return None
    except ValueError:
        pass
    return [host, *LOOPBACK_HOSTS]


def _route_path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


async def _send_error(send: Send, status: int, message: str) -> None:
    """A JSON error; the connection is closed after it, since the request's
    body (if any) was not read."""
    body = dumps({"error": message}).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityMiddleware:
    """See the module documentation.

    :param allowed_hosts: accepted ``Host`` names (``None``: any).
    :param allow_origins: origins allowed to use the API from their pages
        (with credentials); ``"*"`` lets any origin in without the cookie.
    :param max_body_size: most bytes of a request body.
    :param max_login_body_size: most bytes of a login request body.
    :param content_security_policy: the ``Content-Security-Policy`` header
        (``None``: none).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: list[str] | None,
        allow_origins: list[str],
        max_body_size: int,
        max_login_body_size: int,
        content_security_policy: str | None,
    ) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.any_origin = "*" in allow_origins
        self.origins = {normalize_origin(o) for o in allow_origins if o != "*"}
        self.max_body_size = max_body_size
        self.max_login_body_size = max_login_body_size
        extra: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
        ]
        if content_security_policy:
            extra.append(
                (b"content-security-policy", content_security_policy.encode("latin-1"))
            )
        self.extra_headers = extra

    # -- the checks ------------------------------------------------------------------

    def _own_origin(self, scope: Scope, headers: Headers, origin: str) -> bool:
        """Whether ``origin`` is this server's own (``Host`` and scheme)."""
        try:
            parts = urlsplit(origin.strip().lower())
            origin_port = parts.port
        except ValueError:
            return False
        host = _split_host(headers.get("host", ""))
        if host is None or not parts.hostname:
            return False
        scheme = parts.scheme
        default = {"http": 80, "https": 443}.get(scheme)
        if default is None:
            return False
        request_secure = scope.get("scheme") in ("https", "wss")
        if request_secure and scheme != "https":
            return False  # an http page may not act on an https server
        # Behind a TLS proxy the Host may carry no port while the request is
        # plain http: the port is compared with the origin's scheme default.
        host_port = host[1] if host[1] is not None else default
        return parts.hostname == host[0] and (origin_port or default) == host_port

    def _cross_origin(self, scope: Scope, headers: Headers) -> tuple[bool, str]:
        """``(cross-origin, the origin)``; listed origins are not cross-origin."""
        origin = headers.get("origin")
        if origin is None:
            site = headers.get("sec-fetch-site", "").lower()
            if site in ("cross-site", "same-site"):
                return True, f"a {site} page"
            return False, ""
        if self._own_origin(scope, headers, origin):
            return False, origin
        if normalize_origin(origin) in self.origins:
            return False, origin
        return True, origin

    def _nul_error(self, scope: Scope) -> str | None:
        if "\x00" in scope.get("path", ""):
            return "the URL path contains a NUL character"
        query = scope.get("query_string", b"")
        if b"%00" in query.lower() or b"\x00" in query:
            for key, value in parse_qsl(
                query.decode("latin-1"), keep_blank_values=True, encoding="utf-8"
            ):
                if "\x00" in key:
                    return "a query parameter name contains a NUL character"
                if "\x00" in value:
                    return f"the query parameter {key!r} contains a NUL character"
            return "the query string contains a NUL character"
        return None

    # -- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)

        if self.allowed_hosts is not None and not host_allowed(
            headers.get("host"), self.allowed_hosts
        ):
            await self._refuse(kind, send, 400, "Invalid Host header")
            return
        problem = self._nul_error(scope)
        if problem is not None:
            await self._refuse(kind, send, 400, problem)
            return

        method = scope.get("method", "GET")
        unsafe = kind == "websocket" or method not in SAFE_METHODS
        cross, origin = self._cross_origin(scope, headers)
        if cross:
            if unsafe and not self.any_origin:
                await self._refuse(
                    kind,
                    send,
                    403,
                    f"Cross-origin request refused: {origin} is not an allowed"
                    " origin (Api allow_origins)",
                )
                return
            # Never the session cookie for a foreign page: bearer tokens only.
            scope = dict(scope)
            scope["headers"] = [
                (name, value)
                for name, value in scope["headers"]
                if name.lower() != b"cookie"
            ]
            scope["chancy.cross_origin"] = True

        if kind == "websocket":
            await self.app(scope, receive, send)
            return

        has_body = (
            "transfer-encoding" in headers or headers.get("content-length", "0") != "0"
        )
        if method in ("POST", "PUT", "PATCH") or (
            has_body and method not in ("GET", "HEAD")
        ):
            media_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type != _JSON:
                await _send_error(
                    send,
                    415,
                    f"{method} requests must have Content-Type: {_JSON}"
                    f" (got {media_type or 'none'})",
                )
                return

        path = _route_path(scope)
        limit = self.max_login_body_size if path == _LOGIN_PATH else self.max_body_size
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_error(
                send, 413, f"the request body is larger than {limit} bytes"
            )
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > limit:
                await _send_error(
                    send, 413, f"the request body is larger than {limit} bytes"
                )
                return
            if not message.get("more_body", False):
                break

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        is_api = path == "/api" or path.startswith("/api/")
        strip_cookies = bool(scope.get("chancy.cross_origin"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                if strip_cookies:
                    del response_headers["set-cookie"]
                for name, value in self.extra_headers:
                    key = name.decode("latin-1")
                    if key not in response_headers:
                        response_headers[key] = value.decode("latin-1")
                if is_api and "cache-control" not in response_headers:
                    response_headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, replay, send_with_headers)

    async def _refuse(self, kind: str, send: Send, status: int, message: str) -> None:
        if kind == "websocket":
            # Closing before the handshake is accepted: the server answers 403.
            await send({"type": "websocket.close", "code": 1008, "reason": message})
            return
        await _send_error(send, status, message)
