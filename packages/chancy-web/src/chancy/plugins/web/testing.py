"""A live API server for tests: a real worker serving the :class:`Api` plugin
on a free port, in a thread of its own.

For tests that talk to the server as an outside client would (a browser, an
OpenAPI fuzzer, ``requests``), whose blocking calls would stall a server
running in the test's own event loop::

    from chancy.plugins.web.testing import LiveServer

    def test_my_page(chancy_dsn):
        with LiveServer(chancy_dsn, plugins=[MyPlugin()]) as server:
            token = server.login()
            server.call(lambda chancy: chancy.declare(Queue("emails")))
            response = httpx.get(server.url + "/api/v1/things",
                                 headers={"Authorization": f"Bearer {token}"})

The app gets an :class:`Api` (user ``admin``, password :attr:`LiveServer.password`)
plus the given plugins, no default plugins; it is migrated when the server
starts and migrated back down (its tables dropped) when it stops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.plugins.web.plugin import Api
    from chancy.worker import Worker

__all__ = ["LiveServer"]

T = TypeVar("T")


class LiveServer:
    """Serve the API from a real worker in a background thread.

    :param dsn: the database (e.g. the ``chancy_dsn`` fixture).
    :param plugins: plugins besides the :class:`Api` (which is added).
    :param api_options: keyword arguments of the :class:`Api`.
    :param worker_options: keyword arguments of the :class:`Worker`.
    :param migrate_down: drop the tables when the server stops.
    """

    def __init__(
        self,
        dsn: str,
        *,
        plugins: list[Any] | None = None,
        api_options: dict[str, Any] | None = None,
        worker_options: dict[str, Any] | None = None,
        migrate_down: bool = True,
    ) -> None:
        self.dsn = dsn
        self.plugins = list(plugins or [])
        self.api_options = dict(api_options or {})
        self.worker_options = dict(worker_options or {})
        self.migrate_down = migrate_down
        #: The password of the user ``admin``.
        self.password = secrets.token_urlsafe(12)
        #: ``http://127.0.0.1:<port>`` once started.
        self.url = ""
        self.chancy: Chancy | None = None
        self.worker: Worker | None = None
        self.api: Api | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> LiveServer:
        """Start the thread; return once the server listens.

        :raises RuntimeError: it failed to start (with the cause) or took
            longer than ``timeout`` seconds.
        """
        self._thread = threading.Thread(
            target=self._main, name="chancy-live-server", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the live server did not start within {timeout}s")
        if self._error is not None:
            self._thread.join(timeout)
            raise RuntimeError(
                f"the live server failed to start: {self._error!r}"
            ) from self._error
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the worker, drop the tables (``migrate_down``), end the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"the live server did not stop within {timeout}s")
            self._thread = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- helpers --------------------------------------------------------------------

    def call(
        self, function: Callable[[Chancy], Awaitable[T]], timeout: float = 60.0
    ) -> T:
        """Run ``await function(chancy)`` in the server's event loop; its result."""
        if self._loop is None or self.chancy is None:
            raise RuntimeError("the live server is not running")
        chancy = self.chancy

        async def run() -> T:
            return await function(chancy)

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
            run(), self._loop
        )
        return future.result(timeout)

    def login(self) -> str:
        """Log in as ``admin``; the bearer token."""
        import json
        import urllib.request

        request = urllib.request.Request(
            self.url + "/api/v1/login",
            data=json.dumps({"username": "admin", "password": self.password}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(json.loads(response.read())["token"])

    # -- the thread -----------------------------------------------------------------

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc
        finally:
            self._ready.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _serve(self) -> None:
        from chancy.app import Chancy
        from chancy.plugins.web.auth import SimpleAuthBackend, hash_password
        from chancy.plugins.web.plugin import Api
        from chancy.worker import Worker

        self._stop = asyncio.Event()
        options = {"port": 0, **self.api_options}
        options.setdefault(
            "authentication_backend",
            SimpleAuthBackend({"admin": hash_password(self.password, iterations=1000)}),
        )
        api = Api(**options)
        chancy = Chancy(self.dsn, plugins=[api, *self.plugins], no_default_plugins=True)
        worker_options: dict[str, Any] = {
            "register_signal_handlers": False,
            "shutdown_timeout": 5,
            **self.worker_options,
        }
        async with chancy:
            await chancy.migrate()
            try:
                worker = Worker(chancy, **worker_options)
                async with worker:
                    await asyncio.wait_for(api.serving.wait(), 30)
                    self.api, self.chancy, self.worker = api, chancy, worker
                    self.url = f"http://127.0.0.1:{api.bound_port}"
                    self._ready.set()
                    await self._stop.wait()
            finally:
                if self.migrate_down:
                    await chancy.migrate(to_version=0)
