"""Serving: uvicorn on a real port, one server per host with take-over, the
websocket event stream, mounting under a prefix, CORS and ``chancy worker web``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from chancy import Chancy, Worker
from chancy.plugins.api import Api
from chancy.plugins.api.auth import SimpleAuthBackend, hash_password

CREDENTIALS = {"username": "admin", "password": "secret"}
#: Hashed (no plaintext warning), with few rounds (fast tests).
USERS = {"admin": hash_password("secret", iterations=1000)}


def new_api(**options: Any) -> Api:
    options.setdefault("port", 0)
    return Api(authentication_backend=SimpleAuthBackend(dict(USERS)), **options)


@pytest.fixture
async def apps(chancy_dsn: str) -> AsyncIterator[list[Chancy]]:
    """Apps on the test database (migrated by the first one); closed after."""
    opened: list[Chancy] = []
    yield opened
    if opened:
        await opened[0].migrate(to_version=0)
    for app in reversed(opened):
        await app.__aexit__(None, None, None)


async def open_app(apps: list[Chancy], dsn: str, *plugins: Any) -> Chancy:
    app = Chancy(dsn, plugins=list(plugins), no_default_plugins=True)
    await app.ensure_open()
    if not apps:
        await app.migrate()
    apps.append(app)
    return app


def quick_worker(app: Chancy, **options: Any) -> Worker:
    return Worker(
        app,
        register_signal_handlers=False,
        shutdown_timeout=5,
        queue_change_poll_interval=60,
        **options,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def login(base: str) -> str:
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.post("/api/v1/login", json=CREDENTIALS)
        assert response.status_code == 200
        return str(response.json()["token"])


# ---------------------------------------------------------------------------
# A real port
# ---------------------------------------------------------------------------


async def test_worker_serves_the_api_on_a_real_port(
    apps: list[Chancy], chancy_dsn: str
) -> None:
    api = new_api()
    app = await open_app(apps, chancy_dsn, api)
    async with quick_worker(app):
        await asyncio.wait_for(api.serving.wait(), 10)
        assert api.bound_port
        base = f"http://127.0.0.1:{api.bound_port}"
        async with httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/health")).json() == {"status": "healthy"}
            assert (await client.get("/api/v1/queues")).status_code == 401
            await client.post("/api/v1/login", json=CREDENTIALS)
            queues = (await client.get("/api/v1/queues")).json()
            assert [q["name"] for q in queues] == ["default"]
    assert not api.serving.is_set()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=base) as client:
            await client.get("/health")


async def test_one_server_per_port_and_take_over(
    apps: list[Chancy], chancy_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A port in use is logged once at INFO and retried; when the serving
    worker stops, the waiting one takes the port over."""
    port = free_port()
    first, second = new_api(port=port), new_api(port=port, bind_retry_interval=0.05)
    app1 = await open_app(apps, chancy_dsn, first)
    app2 = await open_app(apps, chancy_dsn, second)
    caplog.set_level(logging.INFO, logger="chancy")
    worker1 = quick_worker(app1)
    await worker1.start()
    stopped = False
    try:
        await asyncio.wait_for(first.serving.wait(), 10)
        async with quick_worker(app2):
            await asyncio.wait_for(second.waiting_for_port.wait(), 10)
            await asyncio.sleep(0.3)  # several more attempts
            assert not second.serving.is_set()
            in_use = [r for r in caplog.records if "is in use" in r.getMessage()]
            assert len(in_use) == 1  # logged once, however many attempts
            assert in_use[0].levelno == logging.INFO
            assert f"127.0.0.1:{port} is in use" in in_use[0].getMessage()
            assert not any(r.levelno >= logging.WARNING for r in caplog.records)

            token = await login(f"http://127.0.0.1:{port}")
            await worker1.stop()
            stopped = True
            await asyncio.wait_for(second.serving.wait(), 10)
            assert not second.waiting_for_port.is_set()
            assert second.bound_port == port
            # The same key: a token from the first server works on the second.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                response = await client.get(
                    "/api/v1/configuration",
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert response.status_code == 200
                assert response.json()["worker_id"] != worker1.worker_id
            assert any("took over the port" in r.getMessage() for r in caplog.records)
    finally:
        if not stopped:
            await worker1.stop()


async def test_other_bind_errors_are_raised(
    apps: list[Chancy], chancy_dsn: str
) -> None:
    api = new_api(host="203.0.113.7")  # TEST-NET-3: not an address of this host
    app = await open_app(apps, chancy_dsn, api)
    with pytest.raises(OSError):
        await asyncio.wait_for(api.run(quick_worker(app), app), 10)


# ---------------------------------------------------------------------------
# The event stream
# ---------------------------------------------------------------------------


class WebSocketClient:
    """Drives an ASGI app's websocket endpoint in this event loop."""

    def __init__(
        self,
        app: Any,
        path: str,
        headers: list[tuple[bytes, bytes]],
        subprotocols: list[str] | None = None,
    ) -> None:
        raw_path, _, query = path.partition("?")
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "http_version": "1.1",
            "path": raw_path,
            "raw_path": raw_path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(b"host", b"test"), *headers],
            "client": ("127.0.0.1", 40000),
            "server": ("test", 80),
            "subprotocols": subprotocols or [],
            "state": {},
        }
        self.to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.ensure_future(
            app(scope, self.to_app.get, self.from_app.put)
        )

    async def connect(self) -> dict[str, Any]:
        await self.to_app.put({"type": "websocket.connect"})
        return await self.receive()

    async def receive(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.from_app.get(), 10)

    async def close(self) -> None:
        await self.to_app.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, 10)


async def next_event(ws: WebSocketClient, name: str) -> dict[str, Any]:
    while True:
        message = await ws.receive()
        assert message["type"] == "websocket.send", message
        data = json.loads(message["text"])
        if data["event"] == name:
            return data


async def test_websocket_streams_hub_events(
    apps: list[Chancy], chancy_dsn: str
) -> None:
    api = new_api()
    app = await open_app(apps, chancy_dsn, api)
    worker = quick_worker(app)
    asgi = api.build_starlette_app(worker, app)
    session_id = await api.start_session(app, "admin")
    token = await api.create_token(app, "admin", session_id=session_id)
    # A token without a server-side login (as older versions issued) is refused.
    stateless = await api.create_token(app, "admin")
    old = WebSocketClient(
        asgi, "/api/v1/ws", [], ["chancy", f"chancy.token.{stateless}"]
    )
    await old.connect()
    assert (await old.receive())["code"] == 4401

    anonymous = WebSocketClient(asgi, "/api/v1/ws", [])
    assert (await anonymous.connect())["type"] == "websocket.accept"
    closed = await anonymous.receive()
    assert closed["type"] == "websocket.close"
    assert closed["code"] == 4401
    await asyncio.wait_for(anonymous.task, 10)

    forged = WebSocketClient(asgi, "/api/v1/ws", [], ["chancy", "chancy.token.forged"])
    await forged.connect()
    assert (await forged.receive())["code"] == 4401

    # The token is never taken from the URL (logs and history keep URLs).
    in_url = WebSocketClient(asgi, f"/api/v1/ws?token={token}", [])
    await in_url.connect()
    assert (await in_url.receive())["code"] == 4401

    ws = WebSocketClient(asgi, "/api/v1/ws", [], ["chancy", f"chancy.token.{token}"])
    accepted = await ws.connect()
    assert accepted["type"] == "websocket.accept"
    assert accepted["subprotocol"] == "chancy"  # the token is not echoed
    await worker.hub.emit("test.ping", {"n": 1, "when": worker})
    event = await next_event(ws, "test.ping")
    assert event == {"event": "test.ping", "data": {"n": 1, "when": repr(worker)}}
    assert worker.hub._any  # subscribed while connected
    await ws.close()
    assert not worker.hub._any  # and unsubscribed after

    # A session cookie authenticates the websocket too.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi), base_url="http://test"
    ) as client:
        await client.post("/api/v1/login", json=CREDENTIALS)
        name = await api.get_session_cookie(app)
        cookie = client.cookies[name]
    with_cookie = WebSocketClient(
        asgi, "/api/v1/ws", [(b"cookie", f"{name}={cookie}".encode())]
    )
    assert (await with_cookie.connect())["type"] == "websocket.accept"
    await worker.hub.emit("test.pong", {})
    assert (await next_event(with_cookie, "test.pong"))["data"] == {}
    await with_cookie.close()


async def test_websocket_over_uvicorn_sees_database_notifications(
    apps: list[Chancy], chancy_dsn: str
) -> None:
    """A started worker relays NOTIFY events to its hub, hence to the stream."""
    websockets_client = pytest.importorskip("websockets.asyncio.client")
    api = new_api()
    app = await open_app(apps, chancy_dsn, api)
    async with quick_worker(app):
        await asyncio.wait_for(api.serving.wait(), 10)
        base = f"127.0.0.1:{api.bound_port}"
        token = await login(f"http://{base}")
        async with websockets_client.connect(
            f"ws://{base}/api/v1/ws",
            subprotocols=["chancy", f"chancy.token.{token}"],
        ) as ws:
            assert ws.subprotocol == "chancy"
            async with httpx.AsyncClient(
                base_url=f"http://{base}", headers={"Authorization": f"Bearer {token}"}
            ) as client:
                # Until the subscription is certainly active, keep declaring.
                async def declare() -> None:
                    for i in range(100):
                        await client.post(
                            "/api/v1/queues",
                            json={"name": "live", "polling_interval": 1 + i},
                        )
                        await asyncio.sleep(0.1)

                declaring = asyncio.ensure_future(declare())
                try:
                    async with asyncio.timeout(10):
                        while True:
                            data = json.loads(await ws.recv())
                            if data["event"] == "queue.declared":
                                break
                finally:
                    declaring.cancel()
                assert data["data"] == {"q": "live"}


# ---------------------------------------------------------------------------
# Mounting and CORS
# ---------------------------------------------------------------------------


async def test_mounted_under_a_prefix(apps: list[Chancy], chancy_dsn: str) -> None:
    api = new_api()
    app = await open_app(apps, chancy_dsn, api)
    outer = Starlette(
        routes=[Mount("/chancy", app=api.build_starlette_app(quick_worker(app), app))]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=outer), base_url="http://test"
    ) as client:
        assert (await client.get("/chancy/health")).json() == {"status": "healthy"}
        assert (await client.get("/chancy/api/v1/queues")).status_code == 401
        assert (
            await client.post("/chancy/api/v1/login", json=CREDENTIALS)
        ).status_code == 200
        assert (await client.get("/chancy/api/v1/queues")).status_code == 200
        assert (await client.get("/chancy/api/v1/nothing")).json() == {
            "error": "Not found"
        }
        assert (await client.get("/chancy/")).status_code == 200
        assert (await client.get("/elsewhere")).status_code == 404


async def test_cors(apps: list[Chancy], chancy_dsn: str) -> None:
    api = new_api(allow_origins=["http://ui.example"])
    app = await open_app(apps, chancy_dsn, api)
    asgi = api.build_starlette_app(quick_worker(app), app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi), base_url="http://test"
    ) as client:
        preflight = await client.options(
            "/api/v1/queues",
            headers={
                "Origin": "http://ui.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://ui.example"
        assert preflight.headers["access-control-allow-credentials"] == "true"
        other = await client.get("/health", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


# ---------------------------------------------------------------------------
# chancy worker web
# ---------------------------------------------------------------------------

APP_MODULE = """
import os
from chancy import Chancy
from chancy.plugins.api import Api
from chancy.plugins.api.auth import SimpleAuthBackend

bare = Chancy(os.environ["CHANCY_WEB_TEST_DSN"], no_default_plugins=True)
with_api = Chancy(
    os.environ["CHANCY_WEB_TEST_DSN"],
    plugins=[
        Api(
            port=int(os.environ["CHANCY_WEB_TEST_BUSY_PORT"]),
            authentication_backend=SimpleAuthBackend({"admin": "secret"}),
        )
    ],
    no_default_plugins=True,
)
"""


def run_cli(tmp_path: Path, dsn: str, busy: int, *args: str) -> subprocess.Popen[str]:
    name = f"chancy_web_cli_{secrets.token_hex(4)}"
    (tmp_path / f"{name}.py").write_text(APP_MODULE)
    env = {
        **os.environ,
        "CHANCY_WEB_TEST_DSN": dsn,
        "CHANCY_WEB_TEST_BUSY_PORT": str(busy),
        "PYTHONPATH": os.pathsep.join(
            [str(tmp_path), os.environ.get("PYTHONPATH", "")]
        ),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "chancy", "--app", f"{name}:{args[0]}", *args[1:]],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def read_line(stream: Any, pattern: str) -> re.Match[str]:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(30):
        while True:
            line = await loop.run_in_executor(None, stream.readline)
            assert line, f"the command ended before printing {pattern!r}"
            match = re.search(pattern, line)
            if match:
                return match


async def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.run_in_executor(None, process.wait), 20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.skipif(sys.platform == "win32", reason="uses SIGTERM")
async def test_cli_worker_web(
    apps: list[Chancy], chancy_dsn: str, tmp_path: Path
) -> None:
    await open_app(apps, chancy_dsn, new_api())  # core and web tables
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]

        # No Api in the app: one is made with a random admin password.
        process = run_cli(
            tmp_path,
            chancy_dsn,
            busy_port,
            "bare",
            "worker",
            "web",
            "-p",
            "0",
            "-h",
            "127.0.0.1",
        )
        try:
            password = (await read_line(process.stderr, r"password '([^']+)'"))[1]
            port = int(
                (await read_line(process.stdout, r"http://127\.0\.0\.1:(\d+)/"))[1]
            )
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/health")).status_code == 200
                wrong = await client.post(
                    "/api/v1/login", json={"username": "admin", "password": "x"}
                )
                assert wrong.status_code == 401
                login = await client.post(
                    "/api/v1/login", json={"username": "admin", "password": password}
                )
                assert login.status_code == 200
                assert (await client.get("/api/v1/configuration")).json()[
                    "plugins"
                ] == []
                # No other origin is allowed unless --allow-origin names it.
                preflight = await client.options(
                    "/api/v1/queues",
                    headers={
                        "Origin": "http://x.example",
                        "Access-Control-Request-Method": "GET",
                    },
                )
                assert "access-control-allow-origin" not in preflight.headers
                refused = await client.post(
                    "/api/v1/queues",
                    json={"name": "x"},
                    headers={"Origin": "http://x.example"},
                )
                assert refused.status_code == 403
                # Listening on loopback: only the loopback names (DNS rebinding).
                rebound = await client.get("/health", headers={"host": "evil.example"})
                assert rebound.status_code == 400
        finally:
            assert await stop(process) == 0

        # The app's Api asks for the busy port; the explicit --port wins, and
        # its users apply (the alias `chancy web` is the same command).
        process = run_cli(
            tmp_path,
            chancy_dsn,
            busy_port,
            "with_api",
            "web",
            "--port",
            "0",
            "--allowed-host",
            "ops.example",
        )
        try:
            port = int(
                (await read_line(process.stdout, r"http://127\.0\.0\.1:(\d+)/"))[1]
            )
            assert port != busy_port
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/health")).status_code == 400
                client.headers["host"] = "ops.example"
                login = await client.post("/api/v1/login", json=CREDENTIALS)
                assert login.status_code == 200
        finally:
            assert await stop(process) == 0


@pytest.mark.skipif(sys.platform == "win32", reason="uses SIGTERM")
async def test_cli_worker_web_waits_for_a_busy_port(
    apps: list[Chancy], chancy_dsn: str, tmp_path: Path
) -> None:
    await open_app(apps, chancy_dsn, new_api())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = run_cli(tmp_path, chancy_dsn, port, "with_api", "worker", "web")
        try:
            await read_line(process.stderr, r"is in use; waiting")
        finally:
            assert await stop(process) == 0
