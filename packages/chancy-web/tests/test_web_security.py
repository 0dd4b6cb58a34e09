"""Hostile requests against the API, made for real: a worker serving uvicorn
on a real port (raw sockets where a client library would refuse to misbehave)
or the ASGI application, against a real database.

One section per hole of the audit: request bodies, tag patterns, cross-site
requests, CORS defaults, numbers, logout, brute force, malformed input, the
websocket, cookies/headers/Host, and defaults.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from chancy import Chancy, Queue, Worker
from chancy.plugins.api import Api
from chancy.plugins.api.auth import SimpleAuthBackend, TokenAuthBackend, hash_password
from chancy.plugins.web import auth as auth_module
from chancy.plugins.web import server

CREDENTIALS = {"username": "admin", "password": "secret"}
#: Hashed with few rounds: no plaintext warning, fast tests.
USERS = {"admin": hash_password("secret", iterations=1000)}


def strict_json(text: str) -> Any:
    """JSON as browsers parse it: ``NaN`` and ``Infinity`` are errors."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------------------
# Fixtures: apps on the test database, served for real or as ASGI apps
# ---------------------------------------------------------------------------


class Site:
    """Opens apps (the first one migrates), builds clients, serves workers."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.apps: list[Chancy] = []
        self.workers: list[Worker] = []

    async def app(self, **options: Any) -> tuple[Api, Chancy]:
        options.setdefault("authentication_backend", SimpleAuthBackend(dict(USERS)))
        options.setdefault("port", 0)
        api = Api(**options)
        app = Chancy(self.dsn, plugins=[api], no_default_plugins=True)
        await app.ensure_open()
        if not self.apps:
            await app.migrate()
        self.apps.append(app)
        return api, app

    def client(
        self, api: Api, app: Chancy, base_url: str = "http://test"
    ) -> httpx.AsyncClient:
        asgi = api.build_starlette_app(Worker(app, register_signal_handlers=False), app)
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url=base_url
        )

    async def serve(self, **options: Any) -> tuple[Api, Chancy, int]:
        """A started worker serving the API on a free port of 127.0.0.1."""
        api, app = await self.app(**options)
        worker = Worker(
            app,
            register_signal_handlers=False,
            shutdown_timeout=5,
            queue_change_poll_interval=60,
        )
        await worker.start()
        self.workers.append(worker)
        await asyncio.wait_for(api.serving.wait(), 10)
        assert api.bound_port
        return api, app, api.bound_port

    async def close(self) -> None:
        for worker in reversed(self.workers):
            await worker.stop()
        if self.apps:
            await self.apps[0].migrate(to_version=0)
        for app in reversed(self.apps):
            await app.__aexit__(None, None, None)


@pytest.fixture
async def site(chancy_dsn: str) -> AsyncIterator[Site]:
    site = Site(chancy_dsn)
    try:
        yield site
    finally:
        await site.close()


async def logged_in(client: httpx.AsyncClient) -> str:
    response = await client.post("/api/v1/login", json=CREDENTIALS)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


# -- raw HTTP ------------------------------------------------------------------------


async def read_response(
    reader: asyncio.StreamReader,
) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def send_until_refused(writer: asyncio.StreamWriter, chunk: bytes) -> int:
    """Keep sending ``chunk``; the bytes sent before the server cut us off
    (fails if it reads 64 MB without doing so)."""
    sent = 0
    with pytest.raises((ConnectionError, OSError)):
        while sent < 64 * 1024 * 1024:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    return sent


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# ---------------------------------------------------------------------------
# 1. Request bodies are capped before they are read
# ---------------------------------------------------------------------------


async def test_a_huge_login_body_is_refused_before_it_is_read(site: Site) -> None:
    """Content-Length: 1 GB on the login (no authentication needed): 413 at
    once, with only a few bytes of the body sent, and the connection closed."""
    _, _, port = await site.serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /api/v1/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n"
            + b'{"username": "'
        )
        await writer.drain()
        status, headers, body = await asyncio.wait_for(read_response(reader), 10)
        assert status == 413
        assert json.loads(body) == {
            "error": "the request body is larger than 4096 bytes"
        }
        assert headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed
    finally:
        writer.close()


async def test_a_chunked_body_is_cut_off_at_the_limit(site: Site) -> None:
    """Without a Content-Length the body is read only up to the limit: the
    413 comes while the client is still sending, and the server stops
    reading (the client soon cannot send any more)."""
    _, _, port = await site.serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /api/v1/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(5):  # 5,000 bytes > 4,096, and no final chunk
            writer.write(chunk(b" " * 1000))
        await writer.drain()
        status, _, body = await asyncio.wait_for(read_response(reader), 10)
        assert status == 413
        assert "4096 bytes" in json.loads(body)["error"]
        sent = await send_until_refused(writer, chunk(b" " * 65536))
        assert sent < 64 * 1024 * 1024
    finally:
        writer.close()


async def test_other_routes_have_their_own_limit(site: Site) -> None:
    api, _, port = await site.serve(max_body_size=20_000)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as client:
        token = await logged_in(client)
        small = await client.post(
            "/api/v1/jobs", json={"action": "retry", "ids": [str(uuid.uuid4())] * 400}
        )
        assert small.status_code == 200  # ~16 KB: under the limit
        big = await client.post(
            "/api/v1/jobs", json={"action": "retry", "ids": [str(uuid.uuid4())] * 600}
        )
        assert big.status_code == 413
        assert big.json() == {"error": "the request body is larger than 20000 bytes"}
    assert api.max_login_body_size == 4096

    # Chunked, authenticated: cut off at 20,000 bytes too.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /api/v1/queues HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(25):
            writer.write(chunk(b" " * 1000))
        await writer.drain()
        status, _, body = await asyncio.wait_for(read_response(reader), 10)
        assert status == 413
        assert "20000 bytes" in json.loads(body)["error"]
    finally:
        writer.close()


# ---------------------------------------------------------------------------
# 2. Tag patterns that backtrack catastrophically are refused
# ---------------------------------------------------------------------------


async def test_catastrophic_tag_patterns_are_refused_by_the_api(site: Site) -> None:
    api, app = await site.app()
    async with site.client(api, app) as client:
        await logged_in(client)
        for pattern in ["worker_id=.{8}([0-9a-f-]+)+!", "(a|ab)*c", ".*.*.*.*!"]:
            started = time.monotonic()
            response = await client.post(
                "/api/v1/queues", json={"name": "q", "tags": [pattern]}
            )
            assert response.status_code == 422, pattern
            assert "Queue tag" in response.json()["error"]
            assert time.monotonic() - started < 5  # refused, not matched
        await client.post("/api/v1/queues", json={"name": "q", "tags": ["gpu"]})
        patched = await client.patch(
            "/api/v1/queues/q", json={"tags": ["(x+)+y", r"hostname=web\d+"]}
        )
        assert patched.status_code == 422
        assert "backtrack catastrophically" in patched.json()["error"]
        ok = await client.patch(
            "/api/v1/queues/q", json={"tags": [".*", r"hostname=web\d+", "(eu|us)"]}
        )
        assert ok.status_code == 200, ok.text
    assert (await app.get_queue("q")).tags == {".*", r"hostname=web\d+", "(eu|us)"}


# ---------------------------------------------------------------------------
# 3. Cross-site requests do not act with the victim's cookie
# ---------------------------------------------------------------------------


async def test_cross_site_requests_with_the_cookie_are_refused(site: Site) -> None:
    api, app = await site.app()
    async with site.client(api, app) as client:
        await logged_in(client)  # the victim's browser holds the cookie
        body = json.dumps({"name": "evil"})
        attacks = [
            # What a page of any site can send without a preflight:
            {"content": body, "headers": {"content-type": "text/plain"}},
            {"data": {"name": "evil"}},  # a form
            {"content": body, "headers": {}},
            # JSON from another origin (same site, other port) and from
            # browsers that only say where the request comes from:
            {"json": {"name": "evil"}, "headers": {"origin": "http://test:8080"}},
            {"json": {"name": "evil"}, "headers": {"origin": "http://evil.example"}},
            {"json": {"name": "evil"}, "headers": {"origin": "null"}},
            {"json": {"name": "evil"}, "headers": {"sec-fetch-site": "same-site"}},
            {"json": {"name": "evil"}, "headers": {"sec-fetch-site": "cross-site"}},
        ]
        for attack in attacks:
            response = await client.post("/api/v1/queues", **attack)
            assert response.status_code in (403, 415), attack
            assert "error" in response.json()
        for method, path in [
            ("DELETE", "/api/v1/queues/default"),
            ("POST", "/api/v1/queues/default/pause"),
            ("POST", "/api/v1/logout"),
        ]:
            response = await client.request(
                method, path, json={}, headers={"origin": "http://evil.example"}
            )
            assert response.status_code == 403, (method, path)
        # A foreign page's GET does not carry the cookie either.
        read = await client.get(
            "/api/v1/queues", headers={"origin": "http://evil.example"}
        )
        assert read.status_code == 401
        # The login form is protected the same way (no login CSRF).
        login = await client.post(
            "/api/v1/login", json=CREDENTIALS, headers={"origin": "http://evil.example"}
        )
        assert login.status_code == 403
        assert "set-cookie" not in login.headers
        # The dashboard itself: same origin, JSON.
        same = await client.post(
            "/api/v1/queues",
            json={"name": "mine"},
            headers={"origin": "http://test", "sec-fetch-site": "same-origin"},
        )
        assert same.status_code == 200, same.text
        assert (await client.get("/api/v1/queues")).status_code == 200
    assert [q.name for q in await app.get_all_queues()] == ["mine"]


async def test_listed_and_wildcard_origins(site: Site) -> None:
    """A listed origin may use the cookie; with '*' any origin may use the API
    with a bearer token, but never the cookie (nor get one)."""
    api, app = await site.app(allow_origins=["https://ui.example", "*"])
    async with site.client(api, app) as client:
        token = await logged_in(client)
        listed = await client.post(
            "/api/v1/queues",
            json={"name": "listed"},
            headers={"origin": "https://ui.example"},
        )
        assert listed.status_code == 200
        other = {"origin": "https://other.example"}
        assert (await client.get("/api/v1/queues", headers=other)).status_code == 401
        with_token = await client.post(
            "/api/v1/queues",
            json={"name": "token"},
            headers={**other, "authorization": f"Bearer {token}"},
        )
        assert with_token.status_code == 200
        login = await client.post("/api/v1/login", json=CREDENTIALS, headers=other)
        assert login.status_code == 200
        assert login.json()["token"]
        assert "set-cookie" not in login.headers


# ---------------------------------------------------------------------------
# 4. No cross-origin access unless configured, '*' never with credentials
# ---------------------------------------------------------------------------


async def test_cors_defaults_and_wildcard(site: Site) -> None:
    preflight_headers = {
        "origin": "http://evil.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    api, app = await site.app()
    assert api.allow_origins is None
    async with site.client(api, app) as client:
        await logged_in(client)
        preflight = await client.options("/api/v1/queues", headers=preflight_headers)
        assert "access-control-allow-origin" not in preflight.headers
        simple = await client.get(
            "/api/v1/queues", headers={"origin": "http://evil.example"}
        )
        assert "access-control-allow-origin" not in simple.headers
        assert "access-control-allow-credentials" not in simple.headers

    api, app = await site.app(allow_origins=["*"])
    async with site.client(api, app) as client:
        await logged_in(client)
        preflight = await client.options("/api/v1/queues", headers=preflight_headers)
        assert "access-control-allow-credentials" not in preflight.headers
        simple = await client.get(
            "/api/v1/queues", headers={"origin": "http://evil.example"}
        )
        assert simple.status_code == 401  # the cookie is not used
        assert "access-control-allow-credentials" not in simple.headers


# ---------------------------------------------------------------------------
# 5. Every number is finite and fits
# ---------------------------------------------------------------------------


async def test_non_finite_and_out_of_range_numbers(site: Site) -> None:
    api, app = await site.app()
    async with site.client(api, app) as client:
        await logged_in(client)
        raw_bodies = [
            (b'{"name": "q", "polling_interval": 1e400}', "too large a number"),
            (b'{"name": "q", "polling_interval": NaN}', "NaN is not a JSON number"),
            (b'{"name": "q", "polling_interval": -Infinity}', "not a JSON number"),
            (b'{"name": "q", "polling_interval": 1e-300}', "from 0.01 to 86400"),
            (b'{"name": "q", "concurrency": 2147483648}', "from 1 to 2147483647"),
            (
                b'{"name": "q", "rate_limit": 1, "rate_limit_window": 1e30}',
                "rate_limit_window must be an integer",
            ),
            (
                b'{"name": "q", "rate_limit": 1, "rate_limit_window": 99999999999}',
                "from 1 to 2147483647",
            ),
        ]
        for raw, message in raw_bodies:
            response = await client.post(
                "/api/v1/queues",
                content=raw,
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 422, raw
            assert message in response.json()["error"], (raw, response.json())
        assert await app.get_all_queues() == []

        # A row stored before (or with SQL) does not break the list: the
        # answer stays valid JSON, the impossible number null.
        await app.declare(Queue("fine", polling_interval=0.5))
        async with app.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO chancy_queues (name, polling_interval)"
                " VALUES ('legacy', 'Infinity'), ('nan', 'NaN')"
            )
        listed = await client.get("/api/v1/queues")
        assert listed.status_code == 200
        queues = {q["name"]: q for q in strict_json(listed.text)}
        assert queues["legacy"]["polling_interval"] is None
        assert queues["nan"]["polling_interval"] is None
        assert queues["fine"]["polling_interval"] == 0.5


# ---------------------------------------------------------------------------
# 6. Logout revokes; expiry is configurable and sliding
# ---------------------------------------------------------------------------


async def test_logout_revokes_the_cookie_and_the_token(site: Site) -> None:
    api, app = await site.app()
    name_client = site.client(api, app)
    async with name_client as client:
        token = await logged_in(client)
        name = await api.get_session_cookie(app)
        stolen_cookie = client.cookies[name]
        bearer = {"authorization": f"Bearer {token}"}
        assert (await client.get("/api/v1/queues", headers=bearer)).status_code == 200
        assert (await client.post("/api/v1/logout", json={})).status_code == 200

    async with site.client(api, app) as attacker:
        attacker.cookies.set(name, stolen_cookie)
        replayed = await attacker.get("/api/v1/queues")
        assert replayed.status_code == 401
        # The answer also tells the browser to drop the dead cookie.
        assert f"{name}=null" in replayed.headers["set-cookie"]
        assert (await attacker.get("/api/v1/queues", headers=bearer)).status_code == 401

    # Logging out with the token alone revokes that login too.
    async with site.client(api, app) as client:
        token = await logged_in(client)
        cookie = client.cookies[name]
    async with site.client(api, app) as other:
        bearer = {"authorization": f"Bearer {token}"}
        assert (
            await other.post("/api/v1/logout", json={}, headers=bearer)
        ).status_code == 200
        assert (await other.get("/api/v1/queues", headers=bearer)).status_code == 401
        other.cookies.set(name, cookie)
        assert (await other.get("/api/v1/queues")).status_code == 401
    async with app.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) FILTER (WHERE revoked_at IS NOT NULL), count(*)"
            " FROM chancy_web_sessions"
        )
        assert await cursor.fetchone() == (2, 2)
        cursor = await conn.execute("SELECT id FROM chancy_web_sessions")
        stored = [row[0] for row in await cursor.fetchall()]
    # Only digests are stored, never a usable session id.
    assert all(re.fullmatch(r"[0-9a-f]{64}", key) for key in stored)


async def test_minted_tokens_are_revoked_by_logout(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = TokenAuthBackend("shared", users=dict(USERS))
    api, app = await site.app(authentication_backend=backend)
    minted = backend.create_token("admin")
    async with site.client(api, app) as client:
        bearer = {"authorization": f"Bearer {minted}"}
        assert (await client.get("/api/v1/queues", headers=bearer)).status_code == 200
        await client.post("/api/v1/logout", json={}, headers=bearer)
        assert (await client.get("/api/v1/queues", headers=bearer)).status_code == 401
        now = auth_module._now()
        monkeypatch.setattr(auth_module, "_now", lambda: now + 2)
        fresh = backend.create_token("admin")
        assert fresh != minted
        assert (
            await client.get(
                "/api/v1/queues", headers={"authorization": f"Bearer {fresh}"}
            )
        ).status_code == 200


async def test_sliding_and_absolute_expiry(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, app = await site.app(session_idle_timeout=600, session_max_age=2000)
    async with site.client(api, app) as client:
        token = await logged_in(client)
        bearer = {"authorization": f"Bearer {token}"}
        start = auth_module._now()

        async def status_at(offset: float, **kwargs: Any) -> int:
            monkeypatch.setattr(auth_module, "_now", lambda: start + offset)
            return (await client.get("/api/v1/queues", **kwargs)).status_code

        # Each use moves the idle deadline: 500 s apart is fine, again and again.
        for offset in (500, 1000, 1500):
            assert await status_at(offset) == 200  # the cookie
            assert await status_at(offset, headers=bearer) == 200
        # But not beyond session_max_age for the cookie...
        assert await status_at(2050) == 401
    async with site.client(api, app) as client:
        monkeypatch.setattr(auth_module, "_now", lambda: start)
        token = await logged_in(client)
        # ...and 601 s without a request ends a login.
        assert await status_at(601) == 401
        assert await status_at(601, headers={"authorization": f"Bearer {token}"}) == 401


# ---------------------------------------------------------------------------
# 7. Brute force is throttled; unknown users cost the same as known ones
# ---------------------------------------------------------------------------


async def test_login_attempts_are_throttled_per_user_and_address(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {
        "login_max_attempts_per_user": 3,
        "login_max_attempts_per_address": 6,
        "login_attempt_window": 60,
        "authentication_backend": SimpleAuthBackend({**USERS, "bob": "pw"}),
    }
    api1, app1 = await site.app(**options)
    api2, app2 = await site.app(**options)  # another worker, same database
    wrong = {"username": "admin", "password": "guess"}
    async with site.client(api1, app1) as one, site.client(api2, app2) as two:
        assert (await one.post("/api/v1/login", json=wrong)).status_code == 401
        assert (await two.post("/api/v1/login", json=wrong)).status_code == 401
        assert (await one.post("/api/v1/login", json=wrong)).status_code == 401
        # The fourth attempt for admin is refused before the password is
        # checked, whichever worker gets it, even with the right password.
        for client in (one, two):
            refused = await client.post("/api/v1/login", json=CREDENTIALS)
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            assert "Too many login attempts" in refused.json()["error"]
        # Another user from the same address still may (per-user limit)...
        assert (
            await one.post("/api/v1/login", json={"username": "bob", "password": "pw"})
        ).status_code == 200
        # ...until the address has made too many attempts (per-address limit).
        refused = await one.post(
            "/api/v1/login", json={"username": "bob", "password": "pw"}
        )
        assert refused.status_code == 429
        # After the window, logins work again; a success resets the user's count.
        now = auth_module._now()
        monkeypatch.setattr(auth_module, "_now", lambda: now + 61)
        assert (await two.post("/api/v1/login", json=CREDENTIALS)).status_code == 200
        for _ in range(3):
            assert (await two.post("/api/v1/login", json=wrong)).status_code == 401
        assert (await two.post("/api/v1/login", json=wrong)).status_code == 429


async def test_unknown_users_cost_the_same_as_known_ones(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every wrong login costs one PBKDF2 of the same strength, whether the
    user exists or not (it used to be 1,000 rounds for unknown users and
    600,000 for known ones: usernames could be told apart by timing)."""
    backend = SimpleAuthBackend(
        {"admin": hash_password("secret", iterations=20_000), "plain": "pw"}
    )
    api, app = await site.app(authentication_backend=backend)
    rounds: list[int] = []
    real = hashlib.pbkdf2_hmac

    def spy(name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
        rounds.append(iterations)
        return real(name, password, salt, iterations)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", spy)
    async with site.client(api, app) as client:
        for username in ("admin", "nobody", "plain", "x" * 200):
            rounds.clear()
            response = await client.post(
                "/api/v1/login", json={"username": username, "password": "wrong"}
            )
            assert response.status_code == 401
            assert rounds == [20_000], username


# ---------------------------------------------------------------------------
# 8. Malformed requests get a 4xx with a clear message, never a 500
# ---------------------------------------------------------------------------

NESTED = "[" * 5000 + "]" * 5000

MALFORMED: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/jobs?func=a%00b", None),
    ("GET", "/api/v1/jobs?queue=%00", None),
    ("GET", "/api/v1/jobs?state=pending%00", None),
    ("GET", "/api/v1/jobs?%00=1", None),
    ("GET", "/api/v1/jobs?before=%00", None),
    ("GET", "/api/v1/jobs?filters=" + '[["func","~","a\\u0000b"]]', None),
    ("GET", "/api/v1/jobs?filters=" + '[["queue","=","\\ud800"]]', None),
    ("GET", "/api/v1/jobs?filters=" + NESTED, None),
    ("GET", "/api/v1/jobs?filters=" + '[["priority","<",1e400]]', None),
    ("GET", "/api/v1/jobs?filters=" + '[["priority","<",99999999999]]', None),
    ("GET", "/api/v1/jobs?filters=" + '[["attempts","=",NaN]]', None),
    (
        "GET",
        "/api/v1/jobs?filters=" + json.dumps([["state", "=", "pending"]] * 51),
        None,
    ),
    ("GET", "/api/v1/jobs?filters={", None),
    ("GET", "/api/v1/jobs?limit=" + "9" * 5000, None),
    ("GET", "/api/v1/jobs?limit=-1", None),
    ("GET", "/api/v1/jobs?before=not-a-uuid", None),
    ("GET", "/api/v1/jobs?state=bogus", None),
    ("GET", "/api/v1/jobs/counts?cap=0", None),
    ("GET", "/api/v1/jobs/counts?queue=%00", None),
    ("GET", "/api/v1/jobs/%00", None),
    ("GET", "/api/v1/queues/a%00b", None),
    ("GET", "/api/v1/metrics/x?worker_id=%00", None),
    ("GET", "/api/v1/workflows?state=%00", None),
    ("POST", "/api/v1/queues", {"name": "a\x00b"}),
    ("POST", "/api/v1/queues", {"name": "\ud800"}),
    ("POST", "/api/v1/queues", {"name": "q" * 300}),
    ("POST", "/api/v1/queues", {"name": "q", "tags": ["a\x00"]}),
    ("POST", "/api/v1/queues", {"name": "q", "executor": "a\x00b"}),
    ("POST", "/api/v1/queues", {"name": "q", "executor_options": {"k": "\x00"}}),
    ("POST", "/api/v1/queues", {"name": "q", "concurrency": 2147483648}),
    ("POST", "/api/v1/queues", {"name": "q", "concurrency": -(2**63)}),
    ("POST", "/api/v1/queues", {"name": "q", "concurrency": "3"}),
    (
        "POST",
        "/api/v1/queues",
        {"name": "q", "rate_limit": 1, "rate_limit_window": 2**40},
    ),
    ("POST", "/api/v1/queues", {"name": "q", "polling_interval": 10**30}),
    ("POST", "/api/v1/queues", {"name": "q", "resume_at": "9999-99-99"}),
    ("POST", "/api/v1/queues", {"name": "q", "tags": [["nested"]]}),
    ("POST", "/api/v1/queues", {"name": "q", "tags": [f"t{i}" for i in range(65)]}),
    (
        "POST",
        "/api/v1/queues",
        {"name": "q", "executor_options": json.loads(NESTED[:200] + NESTED[-200:])},
    ),
    ("POST", "/api/v1/queues", {"name": "q", "eager_polling": "yes"}),
    ("POST", "/api/v1/queues", {"name": "q", "state": None}),
    ("POST", "/api/v1/queues", None),
    ("POST", "/api/v1/queues", "a string"),
    ("PATCH", "/api/v1/queues/default", {"concurrency": 2**31}),
    ("PATCH", "/api/v1/queues/default", {"name": "\x00"}),
    ("POST", "/api/v1/queues/default/pause", {"resume_at": "\x00"}),
    ("POST", "/api/v1/queues/default/pause", {"resume_at": "99999-01-01"}),
    ("POST", "/api/v1/queues/default/pause", [1]),
    ("POST", "/api/v1/jobs", {"action": "retry", "ids": ["\x00"]}),
    ("POST", "/api/v1/jobs", {"action": "retry", "ids": [1e308]}),
    ("POST", "/api/v1/jobs", {"action": "explode", "ids": []}),
    ("POST", "/api/v1/jobs", {"action": "purge", "ids": "x"}),
    ("POST", "/api/v1/jobs", {"action": "cancel", "ids": [str(uuid.uuid4())] * 1001}),
    ("DELETE", "/api/v1/jobs/not-a-uuid", None),
    ("DELETE", "/api/v1/queues/default?purge_jobs=%00", None),
    ("POST", "/api/v1/login", {"username": "a\x00", "password": "b"}),
    ("POST", "/api/v1/login", {"username": ["admin"], "password": {"x": 1}}),
]


async def test_malformed_requests_get_a_clear_4xx(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    api, app = await site.app()
    await app.declare(Queue("default"))
    caplog.set_level(logging.DEBUG, logger="chancy")
    async with site.client(api, app) as client:
        await logged_in(client)
        for method, path, body in MALFORMED:
            if body is None and method in ("GET", "DELETE"):
                response = await client.request(method, path)
            else:
                response = await client.request(
                    method,
                    path,
                    content=json.dumps(body, ensure_ascii=True).encode(),
                    headers={"content-type": "application/json"},
                )
            assert 400 <= response.status_code < 500, (method, path[:80], response.text)
            error = response.json().get("error")
            assert isinstance(error, str) and error, (method, path[:80])
            assert "Internal" not in error
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)
    assert not any("\x00" in r.getMessage() for r in caplog.records)
    assert [q.name for q in await app.get_all_queues()] == ["default"]
    assert (await app.get_queue("default")).state is Queue.State.ACTIVE


# ---------------------------------------------------------------------------
# 9. The websocket checks Origin and takes no token in the URL
# ---------------------------------------------------------------------------


async def test_websocket_origin_and_token_over_a_real_connection(site: Site) -> None:
    websockets_client = pytest.importorskip("websockets.asyncio.client")
    websockets_exceptions = pytest.importorskip("websockets.exceptions")
    api, app, port = await site.serve()
    base = f"127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=f"http://{base}") as client:
        token = await logged_in(client)
        cookie_name = await api.get_session_cookie(app)
        cookie = client.cookies[cookie_name]
    url = f"ws://{base}/api/v1/ws"
    protocols = ["chancy", f"chancy.token.{token}"]

    # A page of another site, even with a valid token: the handshake is refused.
    with pytest.raises(websockets_exceptions.InvalidStatus) as refused:
        async with websockets_client.connect(
            url, subprotocols=protocols, origin="http://evil.example"
        ):
            pass
    assert refused.value.response.status_code == 403
    # ...and with the victim's cookie.
    with pytest.raises(websockets_exceptions.InvalidStatus):
        async with websockets_client.connect(
            url,
            origin="http://evil.example",
            additional_headers={"cookie": f"{cookie_name}={cookie}"},
        ):
            pass

    # The dashboard's own origin with the token in a subprotocol.
    async with websockets_client.connect(
        url, subprotocols=protocols, origin=f"http://{base}"
    ) as ws:
        assert ws.subprotocol == "chancy"
        await site.workers[0].hub.emit("test.hello", {"x": 1})
        async with asyncio.timeout(10):
            while True:
                data = json.loads(await ws.recv())
                if data["event"] == "test.hello":
                    break
    # A token in the URL is not looked at.
    async with websockets_client.connect(f"{url}?token={token}") as ws:
        with pytest.raises(websockets_exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_the_dashboard_sends_no_token_in_urls() -> None:
    api_js = (server.STATIC_DIR / "api.js").read_text()
    gossip = (server.STATIC_DIR / "pages" / "gossip.js").read_text()
    ws_url = api_js.split("export function wsUrl")[1].split("\n}")[0]
    assert "token" not in ws_url
    assert "chancy.token." in api_js
    assert "new WebSocket(url, wsProtocols())" in gossip
    for path in server.STATIC_DIR.rglob("*.js"):
        text = path.read_text()
        assert "?token=" not in text and 'searchParams.set("token"' not in text, path


# ---------------------------------------------------------------------------
# 10. Cookies, response headers and the Host header
# ---------------------------------------------------------------------------


async def test_cookie_secure_over_https_and_unique_per_dashboard(site: Site) -> None:
    api, app = await site.app()
    async with site.client(api, app, base_url="https://test") as client:
        response = await client.post(
            "/api/v1/login", json=CREDENTIALS, headers={"origin": "https://test"}
        )
        assert response.status_code == 200
        cookie = response.headers["set-cookie"].lower()
        assert "; secure" in cookie and "httponly" in cookie
    api_plain, app_plain = await site.app(https_only=False)
    async with site.client(api_plain, app_plain, base_url="https://test") as client:
        response = await client.post(
            "/api/v1/login", json=CREDENTIALS, headers={"origin": "https://test"}
        )
        assert "secure" not in response.headers["set-cookie"].lower()
    api_always, app_always = await site.app(https_only=True)
    async with site.client(api_always, app_always) as client:
        response = await client.post("/api/v1/login", json=CREDENTIALS)
        assert "; secure" in response.headers["set-cookie"].lower()

    # Two clusters (two signing keys) on one host: two cookie names.
    first, first_app = await site.app(secret_key="k1" * 20)
    second, second_app = await site.app(secret_key="k2" * 20)
    name1 = await first.get_session_cookie(first_app)
    name2 = await second.get_session_cookie(second_app)
    assert name1 != name2
    async with site.client(first, first_app) as client:
        await logged_in(client)
        cookie = client.cookies[name1]
    async with site.client(second, second_app) as client:
        await logged_in(client)  # sets its own cookie, the first one stays
        client.cookies.set(name1, cookie)
        assert (await client.get("/api/v1/queues")).status_code == 200
    custom, custom_app = await site.app(session_cookie="ops_chancy")
    assert await custom.get_session_cookie(custom_app) == "ops_chancy"


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        self.handlers += [name for name in names if name.startswith("on")]
        if tag == "script" and "src" not in names:
            self.inline.append(tag)
        if any(name == "style" for name in names):
            self.inline.append(f"style attribute on {tag}")


async def test_security_headers_and_a_csp_the_dashboard_complies_with(
    site: Site,
) -> None:
    api, app = await site.app()
    async with site.client(api, app) as client:
        for path in ["/", "/app.js", "/api/v1/queues", "/health", "/nothing.js"]:
            response = await client.get(path)
            headers = response.headers
            assert headers["x-frame-options"] == "DENY", path
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["referrer-policy"] == "no-referrer", path
            csp = headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert (await client.get("/api/v1/queues")).headers[
            "cache-control"
        ] == "no-store"
    index = server.STATIC_DIR / "index.html"
    parser = _Scripts()
    parser.feed(index.read_text())
    assert parser.inline == [] and parser.handlers == []
    parser = _Scripts()
    parser.feed(server._NO_DASHBOARD)
    assert parser.inline == [] and parser.handlers == []
    api, app = await site.app(content_security_policy=None)
    async with site.client(api, app) as client:
        assert "content-security-policy" not in (await client.get("/")).headers


async def test_host_header_is_checked_against_the_configured_names(
    site: Site,
) -> None:
    """DNS rebinding: a page of evil.example whose name now resolves to
    127.0.0.1 reaches the server with ``Host: evil.example``."""
    _, _, port = await site.serve()  # 127.0.0.1: the loopback names by default
    for host, status in [
        ("evil.example", 400),
        (f"evil.example:{port}", 400),
        (f"127.0.0.2:{port}", 400),
        (f"localhost:{port}", 200),
        (f"LOCALHOST:{port}", 200),
        (f"127.0.0.1:{port}", 200),
        (f"[::1]:{port}", 200),
    ]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            got, _, body = await asyncio.wait_for(read_response(reader), 10)
        finally:
            writer.close()
        assert got == status, host
        if status == 400:
            assert json.loads(body) == {"error": "Invalid Host header"}

    _, _, port = await site.serve(allowed_hosts=[".ops.example"])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/health")).status_code == 400
        for host in ("ops.example", "chancy.ops.example"):
            response = await client.get("/health", headers={"host": host})
            assert response.status_code == 200, host


# ---------------------------------------------------------------------------
# 11. Safer defaults
# ---------------------------------------------------------------------------

EXECUTOR_MODULE = """
from chancy.executors.asyncex import AsyncExecutor


class PluginExecutor(AsyncExecutor):
    pass
"""


async def test_executors_are_limited_to_known_ones(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"chancy_web_exec_{secrets.token_hex(4)}"
    (tmp_path / f"{module}.py").write_text(EXECUTOR_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = f"{module}.PluginExecutor"
    api, app = await site.app()
    async with site.client(api, app) as client:
        await logged_in(client)
        for executor in [path, "chancy.job.Job", "os.system", "subprocess.Popen"]:
            response = await client.post(
                "/api/v1/queues", json={"name": "q", "executor": executor}
            )
            assert response.status_code == 422, executor
            assert "is not allowed" in response.json()["error"]
        for name in ["process", "threaded", "async", "ASYNC"]:
            response = await client.post(
                "/api/v1/queues", json={"name": f"q-{name}", "executor": name}
            )
            assert response.status_code == 200, (name, response.text)
        # Allowed; whether it imports depends on the Python version (3.13+).
        sub = await client.post("/api/v1/queues", json={"name": "s", "executor": "sub"})
        assert "is not allowed" not in sub.text
        built_in = await client.post(
            "/api/v1/queues",
            json={"name": "full", "executor": Chancy.Executor.Threaded.value},
        )
        assert built_in.status_code == 200

        # A queue declared in Python keeps its executor when edited.
        await app.declare(Queue("custom", executor=path))
        edited = await client.patch("/api/v1/queues/custom", json={"concurrency": 2})
        assert edited.status_code == 200, edited.text
        assert (await app.get_queue("custom")).executor == path

    # One the Api lists is accepted...
    listed, listed_app = await site.app(executors=[path])
    async with site.client(listed, listed_app) as client:
        await logged_in(client)
        response = await client.post(
            "/api/v1/queues", json={"name": "listed", "executor": path}
        )
        assert response.status_code == 200, response.text

    # ...as is one registered by a distribution (entry point).
    real_entry_points = importlib.metadata.entry_points

    def entry_points(**kwargs: Any) -> Any:
        if kwargs.get("group") == "chancy.executors":
            return importlib.metadata.EntryPoints(
                [
                    importlib.metadata.EntryPoint(
                        name="plugin", value=f"{module}:PluginExecutor", group="x"
                    )
                ]
            )
        return real_entry_points(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    async with site.client(api, app) as client:
        await logged_in(client)
        for executor in ("plugin", path):
            response = await client.post(
                "/api/v1/queues", json={"name": "p", "executor": executor}
            )
            assert response.status_code == 200, response.text
            assert response.json()["executor"] == path


async def test_risky_authentication_settings_warn_at_start(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chancy")
    api, app = await site.app(authentication_backend=SimpleAuthBackend({}))
    api.build_starlette_app(Worker(app, register_signal_handlers=False), app)
    assert "no users: nobody can log in" in caplog.text
    caplog.clear()
    api, app = await site.app(
        authentication_backend=SimpleAuthBackend(
            {"admin": "secret", "ok": USERS["admin"]}
        )
    )
    api.build_starlette_app(Worker(app, register_signal_handlers=False), app)
    assert "the password of 'admin' is stored in plaintext" in caplog.text
    assert "'ok'" not in caplog.text
    caplog.clear()
    api, app = await site.app()
    api.build_starlette_app(Worker(app, register_signal_handlers=False), app)
    assert caplog.text == ""


async def test_a_wildcard_bind_warns_about_host_names(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chancy")
    await site.serve(host="0.0.0.0")
    assert "any Host header accepted" in caplog.text
