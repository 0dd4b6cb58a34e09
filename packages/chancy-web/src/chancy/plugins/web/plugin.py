"""The :class:`Api` plugin: the JSON API and the dashboard, served by a worker."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import TYPE_CHECKING, Any, Final

from starlette.responses import Response

from chancy.plugin import Plugin
from chancy.plugins.web.auth import DEFAULT_TOKEN_MAX_AGE, TokenSigner
from chancy.plugins.web.extension import ApiPlugin, error_response
from chancy.utils import import_string

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from chancy.app import Chancy
    from chancy.plugins.web.auth import AuthBackend
    from chancy.worker import Worker

__all__ = ["Api", "Web"]

IDENTIFIER: Final = "chancy.api"
DISTRIBUTION: Final = "chancy-web"
#: Row of ``{prefix}web_secrets`` holding the generated signing key.
SECRET_NAME: Final = "secret_key"


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
    :param allow_origins: origins allowed by CORS (e.g. a dashboard served
        from elsewhere); none by default.
    :param secret_key: key signing session cookies and bearer tokens. By
        default one is generated once and stored in the ``{prefix}web_secrets``
        table, so that every worker and every restart share it.
    :param authentication_backend: who may log in (required); see
        ``chancy.plugins.api.auth``.
    :param metrics_token: a static bearer token that may read ``/metrics``
        (for Prometheus scrapers) without logging in.
    :param session_cookie: name of the session cookie.
    :param session_max_age: lifetime of a session, in seconds.
    :param token_max_age: lifetime of the bearer tokens returned by the login
        (a :class:`~chancy.plugins.web.TokenAuthBackend` uses its own).
    :param https_only: mark the session cookie ``Secure``.
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
        session_cookie: str = "session",
        session_max_age: int = 14 * 24 * 3600,
        token_max_age: int = DEFAULT_TOKEN_MAX_AGE,
        https_only: bool = False,
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
        if isinstance(allow_origins, str):
            raise TypeError("Api allow_origins must be a list of origins, not a string")
        if secret_key is not None and (
            not isinstance(secret_key, str) or not secret_key
        ):
            raise ValueError("Api secret_key must be a non-empty string or None")
        if metrics_token is not None and (
            not isinstance(metrics_token, str) or not metrics_token
        ):
            raise ValueError("Api metrics_token must be a non-empty string or None")
        for name in ("authenticate", "login", "logout"):
            if not callable(getattr(authentication_backend, name, None)):
                raise TypeError(
                    "Api authentication_backend must be an AuthBackend (with"
                    f" authenticate, login and logout), got {authentication_backend!r}"
                )
        for name, value in (
            ("session_max_age", session_max_age),
            ("token_max_age", token_max_age),
            ("bind_retry_interval", bind_retry_interval),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or value <= 0
            ):
                raise ValueError(f"Api {name} must be positive, got {value!r}")
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
        self.https_only = https_only
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
        return ["web_secrets"]

    def migrate_key(self) -> str | None:
        return "web"

    def migrate_package(self) -> str | None:
        return "chancy.plugins.web.migrations"

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

    async def create_token(self, chancy: Chancy, username: str) -> str:
        """A bearer token for ``username`` (what the login returns)."""
        return (await self._token_signer(chancy)).create_token(username)

    async def verify_token(self, chancy: Chancy, token: str) -> str | None:
        """The user named by a valid token the API issued, else ``None``."""
        return (await self._token_signer(chancy)).verify_token(token)

    @staticmethod
    def unauthorized() -> Response:
        """The 401 answer to a request without valid credentials."""
        response = error_response("Not authenticated", 401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="chancy"'
        return response

    # -- the application ------------------------------------------------------------

    def get_api_plugins(self, chancy: Chancy) -> list[ApiPlugin]:
        """The built-in routes plus those of every plugin naming an :class:`ApiPlugin`."""
        from chancy.plugins.web.core import CoreApiPlugin

        found: list[ApiPlugin] = [CoreApiPlugin(self)]
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
                found.append(cls(self))
            except Exception:
                chancy.log.exception(
                    "Api: the routes of the plugin %s could not be loaded", identifier
                )
        return found

    def build_starlette_app(self, worker: Worker, chancy: Chancy) -> Starlette:
        """The Starlette application serving the API and the dashboard.

        Mount it in your own Starlette or FastAPI application to serve it
        under a prefix (``Mount("/chancy", app=api.build_starlette_app(...))``);
        the worker may be one that is not started.
        """
        from chancy.plugins.web.server import build_app

        return build_app(self, worker, chancy)

    # -- serving --------------------------------------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """Listen on ``host:port`` and serve until cancelled.

        If the port is taken (by another worker on this host), log it once at
        INFO level and try again every ``bind_retry_interval`` seconds.
        """
        from chancy.plugins.web.server import ApiServer, bind_socket, is_address_in_use

        app = self.build_starlette_app(worker, chancy)
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
