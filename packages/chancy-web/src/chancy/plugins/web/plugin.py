"""The :class:`Api` plugin: the JSON API and the dashboard, served by a worker."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import importlib.metadata
import math
import re
import secrets
from typing import TYPE_CHECKING, Any, Final

from starlette.authentication import BaseUser, SimpleUser
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from chancy.plugin import Plugin
from chancy.plugins.web import auth as _auth
from chancy.plugins.web.auth import (
    DEFAULT_TOKEN_MAX_AGE,
    TokenAuthBackend,
    TokenSigner,
    bearer_token,
)
from chancy.plugins.web.extension import error_response
from chancy.plugins.web.security import DEFAULT_CSP, default_allowed_hosts
from chancy.plugins.web.sessions import FallbackStore, digest, utc

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from chancy.app import Chancy
    from chancy.plugins.web.auth import AuthBackend
    from chancy.plugins.web.server import Contributions
    from chancy.worker import Worker

__all__ = ["Api", "Web"]

IDENTIFIER: Final = "chancy.api"
DISTRIBUTION: Final = "chancy-web"
#: Row of ``{prefix}web_secrets`` holding the generated signing key.
SECRET_NAME: Final = "secret_key"
#: Session key holding the id of the server-side login.
SESSION_ID_KEY: Final = "chancy_sid"
#: Default ``session_idle_timeout``: a day without a request ends a login.
DEFAULT_IDLE_TIMEOUT: Final = 24 * 3600.0
#: Default ``max_body_size`` (1 MiB) and ``max_login_body_size`` (4 KiB).
DEFAULT_MAX_BODY_SIZE: Final = 1024 * 1024
DEFAULT_MAX_LOGIN_BODY_SIZE: Final = 4096
#: Entry-point group through which distributions register executors.
EXECUTOR_ENTRY_POINTS: Final = "chancy.executors"

_COOKIE_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: What :meth:`Api.authenticate_token` returns for a token it did not sign.
NOT_OURS: Final = object()


def registered_executors() -> dict[str, str]:
    """Executors registered by installed distributions: ``{name: import path}``
    from the entry-point group ``chancy.executors``."""
    found = {}
    for entry in importlib.metadata.entry_points(group=EXECUTOR_ENTRY_POINTS):
        found[entry.name.lower()] = entry.value.replace(":", ".").strip()
    return found


class Api(Plugin):
    """Serves the HTTP JSON API and the dashboard from a worker.

    ::

        from chancy.plugins.api import Api
        from chancy.plugins.api.auth import SimpleAuthBackend, hash_password

        chancy = Chancy(dsn, plugins=[
            Api(authentication_backend=SimpleAuthBackend({"admin": hash_password("…")})),
        ])

    Every worker with the plugin tries to listen on ``host:port``; one worker
    per host gets the port and the others retry every ``bind_retry_interval``
    seconds, so another one takes over when the serving worker stops.

    :param port: TCP port (``0``: any free port, see :attr:`bound_port`).
    :param host: address to listen on.
    :param debug: Starlette debug mode (tracebacks in error responses).
    :param allow_origins: origins whose pages may use the API with the
        session cookie (e.g. a dashboard served from elsewhere); none by
        default. ``"*"`` lets any origin in, but only with a bearer token:
        never together with credentials.
    :param secret_key: key signing session cookies and bearer tokens. By
        default one is generated once and stored in the ``{prefix}web_secrets``
        table, so that every worker and every restart share it.
    :param authentication_backend: who may log in (required); see
        ``chancy.plugins.api.auth``.
    :param metrics_token: a static bearer token that may read ``/metrics``
        (for Prometheus scrapers) without logging in.
    :param session_cookie: name of the session cookie; by default
        ``chancy_session_<12 hex digits>`` derived from the signing key, so
        two dashboards of different clusters on one host keep their own.
    :param session_max_age: most seconds a login by cookie lasts, however
        much it is used.
    :param token_max_age: most seconds a bearer token returned by the login
        lasts (a :class:`~chancy.plugins.web.TokenAuthBackend` uses its
        own ``max_age``).
    :param session_idle_timeout: a login (its cookie and its token) ends after
        this many seconds without a request; every request moves the deadline
        (sliding expiry).
    :param https_only: mark the session cookie ``Secure``; ``None`` (the
        default) does so for requests that arrived over HTTPS.
    :param allowed_hosts: host names the ``Host`` header may carry (DNS
        rebinding protection): names or addresses, ``".example.com"`` for a
        domain and its subdomains, ``"*"`` for any. By default, when the
        plugin serves on a loopback address only the loopback names, on
        another address that address and the loopback names, on ``0.0.0.0``
        any name (with a warning); when mounted with
        :meth:`build_starlette_app`, any name.
    :param max_body_size: most bytes of a request body (413 beyond).
    :param max_login_body_size: most bytes of a login request body.
    :param login_max_attempts_per_user: login attempts one username may get
        per ``login_attempt_window`` (429 beyond; a success resets it).
    :param login_max_attempts_per_address: login attempts one client address
        may make per ``login_attempt_window``.
    :param login_attempt_window: seconds of the login throttling window.
    :param content_security_policy: the ``Content-Security-Policy`` header of
        every response (``None``: none).
    :param executors: executor import paths the API accepts for queues,
        besides the built-in ones and those installed distributions register
        (entry-point group ``chancy.executors``).
    :param bind_retry_interval: seconds between two attempts to take the port
        while another process holds it.
    :param shutdown_timeout: seconds open connections get to finish when the
        worker stops.
    """

    def __init__(
        self,
        *,
        port: int = 8000,
        host: str = "127.0.0.1",
        debug: bool = False,
        allow_origins: list[str] | None = None,
        secret_key: str | None = None,
        authentication_backend: AuthBackend,
        metrics_token: str | None = None,
        session_cookie: str | None = None,
        session_max_age: int = 14 * 24 * 3600,
        token_max_age: int = DEFAULT_TOKEN_MAX_AGE,
        session_idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        https_only: bool | None = None,
        allowed_hosts: list[str] | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_login_body_size: int = DEFAULT_MAX_LOGIN_BODY_SIZE,
        login_max_attempts_per_user: int = 10,
        login_max_attempts_per_address: int = 50,
        login_attempt_window: float = 300.0,
        content_security_policy: str | None = DEFAULT_CSP,
        executors: list[str] | None = None,
        bind_retry_interval: float = 10.0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        if (
            isinstance(port, bool)
            or not isinstance(port, int)
            or not 0 <= port <= 65535
        ):
            raise ValueError(f"Api port must be an int from 0 to 65535, got {port!r}")
        if not isinstance(host, str) or not host:
            raise ValueError(f"Api host must be a non-empty string, got {host!r}")
        for name, values in (
            ("allow_origins", allow_origins),
            ("allowed_hosts", allowed_hosts),
            ("executors", executors),
        ):
            if isinstance(values, str):
                raise TypeError(f"Api {name} must be a list of strings, not a string")
            if values is not None and not all(isinstance(v, str) and v for v in values):
                raise TypeError(f"Api {name} must be a list of non-empty strings")
        if secret_key is not None and (
            not isinstance(secret_key, str) or not secret_key
        ):
            raise ValueError("Api secret_key must be a non-empty string or None")
        if metrics_token is not None and (
            not isinstance(metrics_token, str) or not metrics_token
        ):
            raise ValueError("Api metrics_token must be a non-empty string or None")
        if session_cookie is not None and not _COOKIE_NAME.fullmatch(
            str(session_cookie)
        ):
            raise ValueError(
                f"Api session_cookie must be a cookie name (letters, digits, ._-),"
                f" got {session_cookie!r}"
            )
        if https_only not in (None, True, False):
            raise TypeError(
                f"Api https_only must be True, False or None, got {https_only!r}"
            )
        for name in ("authenticate", "login", "logout"):
            if not callable(getattr(authentication_backend, name, None)):
                raise TypeError(
                    "Api authentication_backend must be an AuthBackend (with"
                    f" authenticate, login and logout), got {authentication_backend!r}"
                )
        for name, value in (
            ("session_max_age", session_max_age),
            ("token_max_age", token_max_age),
            ("session_idle_timeout", session_idle_timeout),
            ("bind_retry_interval", bind_retry_interval),
            ("max_body_size", max_body_size),
            ("max_login_body_size", max_login_body_size),
            ("login_max_attempts_per_user", login_max_attempts_per_user),
            ("login_max_attempts_per_address", login_max_attempts_per_address),
            ("login_attempt_window", login_attempt_window),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"Api {name} must be a positive number, got {value!r}")
        self.port = port
        self.host = host
        self.debug = debug
        self.allow_origins = list(allow_origins) if allow_origins is not None else None
        self.secret_key = secret_key
        self.authentication_backend = authentication_backend
        self.metrics_token = metrics_token
        self.session_cookie = session_cookie
        self.session_max_age = session_max_age
        self.token_max_age = token_max_age
        self.session_idle_timeout = session_idle_timeout
        self.https_only = https_only
        self.allowed_hosts = list(allowed_hosts) if allowed_hosts is not None else None
        self.max_body_size = int(max_body_size)
        self.max_login_body_size = int(max_login_body_size)
        self.login_max_attempts_per_user = int(login_max_attempts_per_user)
        self.login_max_attempts_per_address = int(login_max_attempts_per_address)
        self.login_attempt_window = float(login_attempt_window)
        self.content_security_policy = content_security_policy
        self.executors = list(executors or [])
        self.bind_retry_interval = bind_retry_interval
        self.shutdown_timeout = shutdown_timeout

        #: Test signal: set while the server listens.
        self.serving = asyncio.Event()
        #: Test signal: set while waiting for a port another process holds.
        self.waiting_for_port = asyncio.Event()
        #: The port actually listened on (useful with ``port=0``).
        self.bound_port: int | None = None
        self._secret: str | None = None
        self._secret_lock: asyncio.Lock | None = None
        self._signer: TokenSigner | None = None
        self._stores: dict[int, FallbackStore] = {}
        self._last_cleanup = 0.0

    def __repr__(self) -> str:
        return f"<Api(host={self.host!r}, port={self.port!r})>"

    # -- identity ---------------------------------------------------------------

    @staticmethod
    def get_identifier() -> str:
        return IDENTIFIER

    @classmethod
    def get_distribution(cls) -> str | None:
        return DISTRIBUTION

    def get_tables(self) -> list[str]:
        return ["web_secrets", "web_sessions", "web_login_attempts"]

    def migrate_key(self) -> str | None:
        return "web"

    def migrate_package(self) -> str | None:
        return "chancy.plugins.web.migrations"

    # -- configuration ----------------------------------------------------------------

    def check_configuration(self, chancy: Chancy, *, served: bool) -> None:
        """Log a warning for each risky setting (called when the app is built)."""
        log = chancy.log
        backend = self.authentication_backend
        users = getattr(backend, "users", None)
        if isinstance(users, dict) and not users:
            log.warning(
                "Api: the authentication backend has no users: nobody can log in"
            )
        plaintext = getattr(backend, "plaintext_users", None)
        names = plaintext() if callable(plaintext) else []
        if names:
            log.warning(
                "Api: the password of %s is stored in plaintext; store"
                ' hash_password() hashes instead (python -c "from'
                " chancy.plugins.api.auth import hash_password as h;"
                " print(h('...'))\")",
                ", ".join(repr(n) for n in names),
            )
        if (
            served
            and self.allowed_hosts is None
            and default_allowed_hosts(self.host) is None
        ):
            log.warning(
                "Api: listening on %s with any Host header accepted; set"
                " allowed_hosts to the names the dashboard is reached by"
                " (protects against DNS rebinding)",
                self.host,
            )
        if self.allow_origins and "*" in self.allow_origins:
            log.info(
                "Api: allow_origins has '*': any origin may call the API with a"
                " bearer token, none with the session cookie"
            )

    def allowed_executors(self) -> dict[str, str]:
        """The executors a queue may be given through the API: ``{name: import
        path}`` for the built-in ones (``process``, ``threaded``, ``async``,
        ``sub``), those registered through the ``chancy.executors`` entry
        points, and ``executors`` (named by their path)."""
        from chancy.cli import EXECUTOR_ALIASES

        allowed = dict(EXECUTOR_ALIASES)
        allowed.update(registered_executors())
        allowed.update({path: path for path in self.executors})
        return allowed

    # -- secrets and tokens -------------------------------------------------------

    async def get_secret_key(self, chancy: Chancy) -> str:
        """The key signing sessions and tokens: ``secret_key``, else the one
        stored in ``{prefix}web_secrets`` (generated by the first worker that
        needs it)."""
        if self.secret_key is not None:
            return self.secret_key
        if self._secret is not None:
            return self._secret
        if self._secret_lock is None:
            self._secret_lock = asyncio.Lock()
        async with self._secret_lock:
            if self._secret is None:
                self._secret = await self._load_secret(chancy)
        return self._secret

    async def _load_secret(self, chancy: Chancy) -> str:
        import psycopg.errors
        from psycopg import sql

        table = sql.Identifier(f"{chancy.prefix}web_secrets")
        statement = sql.SQL(
            "INSERT INTO {table} (name, value) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING value"
        ).format(table=table)
        await chancy.ensure_open()
        try:
            async with chancy.pool.connection() as conn:
                cursor = await conn.execute(
                    statement, (SECRET_NAME, secrets.token_urlsafe(48))
                )
                row = await cursor.fetchone()
        except psycopg.errors.UndefinedTable:
            chancy.log.warning(
                "Api: the table %s does not exist (apply the `web` migrations with"
                " `chancy --app … migrate`); using a random key for this process,"
                " so sessions and tokens will not survive a restart",
                f"{chancy.prefix}web_secrets",
            )
            return secrets.token_urlsafe(48)
        assert row is not None
        return str(row[0])

    async def _token_signer(self, chancy: Chancy) -> TokenSigner:
        backend = self.authentication_backend
        if isinstance(backend, TokenSigner):
            return backend
        if self._signer is None:
            self._signer = TokenSigner(
                await self.get_secret_key(chancy), max_age=self.token_max_age
            )
        return self._signer

    async def create_token(
        self, chancy: Chancy, username: str, *, session_id: str | None = None
    ) -> str:
        """A bearer token for ``username``; pass the ``session_id`` of
        :meth:`start_session` (as the login does) to make it revocable."""
        return (await self._token_signer(chancy)).create_token(
            username, session_id=session_id
        )

    async def verify_token(self, chancy: Chancy, token: str) -> str | None:
        """The user named by a valid, unrevoked token the API issued, else ``None``."""
        user = await self.authenticate_token(chancy, token)
        if user is NOT_OURS or user is None:
            return None
        return getattr(user, "display_name", None) or getattr(user, "username", None)

    async def get_session_cookie(self, chancy: Chancy) -> str:
        """The name of the session cookie: ``session_cookie``, else
        ``chancy_session_`` and 12 hex digits derived from the signing key."""
        if self.session_cookie:
            return self.session_cookie
        key = await self.get_secret_key(chancy)
        tag = hmac.new(key.encode(), b"chancy.api.cookie", hashlib.sha256).hexdigest()
        return f"chancy_session_{tag[:12]}"

    # -- logins (server side) -------------------------------------------------------

    def _store(self, chancy: Chancy) -> FallbackStore:
        """Where this app's logins and login attempts are kept."""
        store = self._stores.get(id(chancy))
        if store is None or store.chancy is not chancy:
            store = self._stores[id(chancy)] = FallbackStore(chancy)
        return store

    async def start_session(self, chancy: Chancy, username: str) -> str:
        """Record a login of ``username``; the new session id (the cookie and
        the token of the login name it)."""
        session_id = secrets.token_urlsafe(32)
        signer = await self._token_signer(chancy)
        now = _auth._now()
        lifetime = max(self.session_max_age, signer.max_age)
        await self._store(chancy).create(
            digest(session_id), username, now=utc(now), expires_at=utc(now + lifetime)
        )
        return session_id

    async def log_in(
        self, chancy: Chancy, request: HTTPConnection, username: str
    ) -> str:
        """Open a login for ``username`` after its credentials were checked:
        record it server-side, name it in the request's session cookie, and
        return its bearer token. ``POST /api/v1/login`` does this after the
        backend's ``login``; a route of your own that logs users in (single
        sign-on …) must do the same, or its session is not accepted."""
        session_id = await self.start_session(chancy, username)
        if "session" in request.scope:
            request.session[SESSION_ID_KEY] = session_id
        return await self.create_token(chancy, username, session_id=session_id)

    async def check_session(
        self,
        chancy: Chancy,
        session_id: Any,
        *,
        max_age: float,
        username: str | None = None,
    ) -> bool:
        """Whether the login ``session_id`` is valid: stored, not revoked, not
        older than ``max_age``, used within ``session_idle_timeout`` (and for
        ``username``). A valid use moves the idle deadline."""
        if not isinstance(session_id, str) or not 0 < len(session_id) <= 128:
            return False
        store = self._store(chancy)
        key = digest(session_id)
        row = await store.get(key)
        if row is None or row.revoked_at is not None:
            return False
        if username is not None and row.username != username:
            return False
        now = _auth._now()
        if now - row.created_at.timestamp() > max_age:
            return False
        idle = now - row.last_used_at.timestamp()
        if idle > self.session_idle_timeout:
            return False
        if idle > min(60.0, self.session_idle_timeout / 4):
            await store.touch(key, now=utc(now))
        return True

    async def revoke_session(self, chancy: Chancy, session_id: Any) -> None:
        """Revoke the login ``session_id`` (its cookie and its token)."""
        if not isinstance(session_id, str) or not 0 < len(session_id) <= 128:
            return
        store = self._store(chancy)
        key = digest(session_id)
        row = await store.get(key)
        if row is not None:
            await store.revoke(
                key, row.username, now=utc(_auth._now()), expires_at=row.expires_at
            )

    async def _user(self, username: str) -> BaseUser | None:
        get_user = getattr(self.authentication_backend, "get_user", None)
        if get_user is None:
            return SimpleUser(username)
        user: BaseUser | None = await get_user(username)
        return user

    async def authenticate_token(self, chancy: Chancy, token: str) -> Any:
        """The user of a bearer token: ``NOT_OURS`` if the API's key did not
        sign it, ``None`` if it is expired or revoked (or its user is gone)."""
        signer = await self._token_signer(chancy)
        claims = signer.verify_claims(token)
        if claims is None:
            return NOT_OURS
        username = str(claims["u"])
        session_id = claims.get("s")
        if session_id is not None:
            if not await self.check_session(
                chancy, session_id, max_age=signer.max_age, username=username
            ):
                return None
        elif isinstance(self.authentication_backend, TokenAuthBackend):
            # Minted elsewhere: stateless, unless logged out with it.
            row = await self._store(chancy).get(digest(token))
            if row is not None and row.revoked_at is not None:
                return None
        else:
            return None  # not issued by a login of this version
        return await self._user(username)

    async def end_session(self, chancy: Chancy, request: HTTPConnection) -> None:
        """Revoke what authenticates ``request``: the login of its bearer token
        and of its session cookie (a minted token is refused until it expires)."""
        token = bearer_token(request)
        if token is not None:
            signer = await self._token_signer(chancy)
            claims = signer.verify_claims(token)
            if claims is not None:
                if claims.get("s") is not None:
                    await self.revoke_session(chancy, claims["s"])
                elif isinstance(self.authentication_backend, TokenAuthBackend):
                    now = _auth._now()
                    await self._store(chancy).revoke(
                        digest(token),
                        str(claims["u"]),
                        now=utc(now),
                        expires_at=utc(claims["t"] + signer.max_age + 60),
                    )
        if "session" in request.scope:
            await self.revoke_session(chancy, request.session.get(SESSION_ID_KEY))

    # -- login throttling -------------------------------------------------------------

    @staticmethod
    def _user_key(username: str) -> str:
        return "user:" + hashlib.sha256(username.encode("utf-8")).hexdigest()

    async def throttle_login(
        self, chancy: Chancy, request: Request, username: str | None
    ) -> float | None:
        """Count a login attempt of ``username`` from the request's client
        address; the seconds to wait if either is over its limit, else ``None``."""
        address = request.client.host if request.client else "unknown"
        limits = {f"addr:{address}": self.login_max_attempts_per_address}
        if username is not None:
            limits[self._user_key(username)] = self.login_max_attempts_per_user
        now = _auth._now()
        counts = await self._store(chancy).hit(
            list(limits), now=utc(now), window=self.login_attempt_window
        )
        wait: float | None = None
        for key, limit in limits.items():
            attempts, start = counts[key]
            if attempts > limit:
                left = start.timestamp() + self.login_attempt_window - now
                wait = max(wait or 0.0, left, 1.0)
        if now - self._last_cleanup > 3600:
            self._last_cleanup = now
            try:
                await self.cleanup(chancy)
            except Exception:
                chancy.log.exception("Api: removing expired logins failed")
        return wait

    async def login_succeeded(self, chancy: Chancy, username: str) -> None:
        """Reset the attempts of ``username`` after a successful login."""
        await self._store(chancy).forget(self._user_key(username))

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Delete expired logins and finished throttling windows (the pruner
        calls this; logins also do, at most once an hour)."""
        return await self._store(chancy).cleanup(
            now=utc(_auth._now()), window=self.login_attempt_window
        )

    @staticmethod
    def unauthorized() -> Response:
        """The 401 answer to a request without valid credentials."""
        response = error_response("Not authenticated", 401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="chancy"'
        return response

    # -- the application ------------------------------------------------------------

    def web_contributions(self, chancy: Chancy) -> Contributions:
        """The routes and dashboard pages the application serves: the
        built-in routes, those of every ``chancy_web_routes`` implementation,
        and those of the enabled plugins whose ``api_plugin()`` names an
        :class:`ApiPlugin` (the original Chancy's spelling)."""
        from chancy.plugins.web.server import collect_contributions

        return collect_contributions(self, chancy)

    def build_starlette_app(self, worker: Worker, chancy: Chancy) -> Starlette:
        """The Starlette application serving the API and the dashboard.

        Mount it in your own Starlette or FastAPI application to serve it
        under a prefix (``Mount("/chancy", app=api.build_starlette_app(...))``);
        the worker may be one that is not started.
        """
        from chancy.plugins.web.server import build_app

        return build_app(self, worker, chancy, served=False)

    # -- serving --------------------------------------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """Listen on ``host:port`` and serve until cancelled.

        If the port is taken (by another worker on this host), log it once at
        INFO level and try again every ``bind_retry_interval`` seconds.
        """
        from chancy.plugins.web.server import (
            ApiServer,
            bind_socket,
            build_app,
            is_address_in_use,
        )

        app = build_app(self, worker, chancy, served=True)
        log = chancy.log
        waited = False
        try:
            while True:
                try:
                    sock = bind_socket(self.host, self.port)
                    break
                except OSError as exc:
                    if not is_address_in_use(exc):
                        raise
                    if not waited:
                        log.info(
                            "Api: %s:%s is in use (another worker on this host"
                            " probably serves the API); trying again every %ss",
                            self.host,
                            self.port,
                            self.bind_retry_interval,
                        )
                        waited = True
                    self.waiting_for_port.set()
                    await asyncio.sleep(self.bind_retry_interval)
        finally:
            self.waiting_for_port.clear()
        self.bound_port = sock.getsockname()[1]
        log.info(
            "Api: %sserving on http://%s:%s",
            "took over the port; " if waited else "",
            self.host,
            self.bound_port,
        )
        server = ApiServer.for_app(
            app,
            host=self.host,
            port=self.bound_port,
            started=self.serving,
            timeout_graceful_shutdown=self.shutdown_timeout,
        )
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            await asyncio.shield(task)
        except SystemExit:
            raise RuntimeError("the web server failed to start") from None
        finally:
            self.serving.clear()
            await self._stop_server(server, task)
            sock.close()

    async def _stop_server(self, server: Any, task: asyncio.Future[Any]) -> None:
        if task.done():
            return
        server.should_exit = True
        try:
            await asyncio.wait({task}, timeout=self.shutdown_timeout + 1)
        finally:
            if not task.done():
                server.force_exit = True
                task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait({task}, timeout=1)


#: The name of the plugin in ``chancy-web`` (the same class).
Web = Api
