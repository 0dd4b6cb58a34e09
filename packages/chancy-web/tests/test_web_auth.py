"""Authentication: sessions, bearer tokens, hashed passwords and the shared key."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.authentication import AuthCredentials, AuthenticationError, SimpleUser
from starlette.requests import HTTPConnection, Request

from chancy import Chancy, Worker
from chancy.plugins.api import Api
from chancy.plugins.api.auth import (
    AuthBackend,
    SimpleAuthBackend,
    TokenAuthBackend,
    hash_password,
    is_password_hash,
    verify_password,
)
from chancy.plugins.web import auth as auth_module

CREDENTIALS = {"username": "admin", "password": "secret"}


def client_for(api: Api, chancy: Chancy) -> httpx.AsyncClient:
    asgi = api.build_starlette_app(
        Worker(chancy, register_signal_handlers=False), chancy
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi), base_url="http://test"
    )


@pytest.fixture
async def migrated(chancy_dsn: str) -> AsyncIterator[str]:
    """The DSN of a database with the core and ``web`` tables."""
    app = Chancy(
        chancy_dsn,
        plugins=[Api(authentication_backend=SimpleAuthBackend({}))],
        no_default_plugins=True,
    )
    async with app:
        await app.migrate()
        try:
            yield chancy_dsn
        finally:
            await app.migrate(to_version=0)


async def make_app(dsn: str, api: Api) -> Chancy:
    chancy = Chancy(dsn, plugins=[api], no_default_plugins=True)
    await chancy.ensure_open()
    return chancy


@pytest.fixture
async def apps(migrated: str) -> AsyncIterator[list[Chancy]]:
    """Apps to close after the test."""
    opened: list[Chancy] = []
    yield opened
    for app in opened:
        await app.__aexit__(None, None, None)


async def setup(
    apps: list[Chancy], dsn: str, backend: Any = None, **options: Any
) -> tuple[Api, Chancy, httpx.AsyncClient]:
    api = Api(
        authentication_backend=backend or SimpleAuthBackend({"admin": "secret"}),
        **options,
    )
    chancy = await make_app(dsn, api)
    apps.append(chancy)
    return api, chancy, client_for(api, chancy)


# ---------------------------------------------------------------------------
# Password hashes
# ---------------------------------------------------------------------------


def test_hash_password_round_trip() -> None:
    hashed = hash_password("s3cret", iterations=1000)
    assert hashed.startswith("pbkdf2_sha256$1000$")
    assert is_password_hash(hashed)
    assert not is_password_hash("s3cret")
    assert verify_password("s3cret", hashed)
    assert not verify_password("S3cret", hashed)
    assert hash_password("s3cret", iterations=1000) != hashed  # salted
    assert verify_password("plain", "plain")
    assert not verify_password("plain", "plainer")
    assert not verify_password("x", "pbkdf2_sha256$10$!!$!!")
    with pytest.raises(ValueError, match="iterations"):
        hash_password("x", iterations=0)
    with pytest.raises(TypeError):
        SimpleAuthBackend({"admin": 3})  # type: ignore[dict-item]


def test_api_validates_its_settings() -> None:
    backend = SimpleAuthBackend({})
    with pytest.raises(ValueError, match="port"):
        Api(port=70000, authentication_backend=backend)
    with pytest.raises(TypeError, match="allow_origins"):
        Api(allow_origins="*", authentication_backend=backend)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AuthBackend"):
        Api(authentication_backend=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Api()  # type: ignore[call-arg]
    api = Api(authentication_backend=backend)
    assert (api.port, api.host, api.debug, api.allow_origins, api.secret_key) == (
        8000,
        "127.0.0.1",
        False,
        None,
        None,
    )
    assert Api.get_identifier() == "chancy.api"
    assert not Api.is_default()


# ---------------------------------------------------------------------------
# Logging in
# ---------------------------------------------------------------------------


async def test_session_cookie_and_logout(apps: list[Chancy], migrated: str) -> None:
    api, chancy, client = await setup(apps, migrated)
    name = await api.get_session_cookie(chancy)
    assert re.fullmatch(r"chancy_session_[0-9a-f]{12}", name)
    async with client:
        assert (await client.get("/api/v1/configuration")).status_code == 401
        login = await client.post("/api/v1/login", json=CREDENTIALS)
        assert login.status_code == 200
        assert login.json()["success"] == "Authenticated"
        assert login.json()["token"]
        cookie = login.headers["set-cookie"].lower()
        assert cookie.startswith(f"{name}=")
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert "secure" not in cookie  # plain http
        assert (await client.get("/api/v1/configuration")).status_code == 200

        logout = await client.post("/api/v1/logout", json={})
        assert logout.status_code == 200
        assert logout.json() == {"success": "Logged out"}
        assert (await client.get("/api/v1/configuration")).status_code == 401
        # Logging out without a session is fine too.
        assert (await client.post("/api/v1/logout", json={})).status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        {"username": "admin", "password": "wrong"},
        {"username": "nobody", "password": "secret"},
        {"username": "admin"},
        {"password": "secret"},
        {},
        {"username": 1, "password": 2},
    ],
)
async def test_bad_credentials_are_401(
    apps: list[Chancy], migrated: str, payload: dict[str, Any]
) -> None:
    _, _, client = await setup(apps, migrated)
    async with client:
        response = await client.post("/api/v1/login", json=payload)
        assert response.status_code == 401
        assert response.json() == {"error": "Invalid username or password"}
        assert "set-cookie" not in response.headers
        assert (await client.get("/api/v1/configuration")).status_code == 401


async def test_login_body_errors_and_form(apps: list[Chancy], migrated: str) -> None:
    _, _, client = await setup(apps, migrated)
    async with client:
        response = await client.post(
            "/api/v1/login",
            content=b"{",
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422
        assert (await client.post("/api/v1/login", json=["admin"])).status_code == 422
        empty = await client.post(
            "/api/v1/login", headers={"content-type": "application/json"}
        )
        assert empty.status_code == 401
        # Forms and text/plain are what another site's page can send without
        # asking: never parsed.
        form = await client.post("/api/v1/login", data=CREDENTIALS)
        assert form.status_code == 415
        assert form.json() == {
            "error": "POST requests must have Content-Type: application/json"
            " (got application/x-www-form-urlencoded)"
        }
        text = await client.post(
            "/api/v1/login",
            content=json.dumps(CREDENTIALS),
            headers={"content-type": "text/plain"},
        )
        assert text.status_code == 415
        assert "set-cookie" not in text.headers


async def test_bearer_token(
    apps: list[Chancy], migrated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, chancy, client = await setup(apps, migrated)
    async with client:
        token = (await client.post("/api/v1/login", json=CREDENTIALS)).json()["token"]
    async with client_for(api, chancy) as fresh:  # no cookie
        headers = {"Authorization": f"Bearer {token}"}
        assert (await fresh.get("/api/v1/queues", headers=headers)).status_code == 200
        tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        response = await fresh.get(
            "/api/v1/queues", headers={"Authorization": f"Bearer {tampered}"}
        )
        assert response.status_code == 401
        assert response.json() == {"error": "Not authenticated"}
        wrong_scheme = {"Authorization": f"Basic {token}"}
        assert (
            await fresh.get("/api/v1/queues", headers=wrong_scheme)
        ).status_code == 401
        # Tokens are not taken from the query string of plain requests.
        assert (await fresh.get(f"/api/v1/queues?token={token}")).status_code == 401

        # Used every day, the token lasts token_max_age; not a second longer.
        now = auth_module._now()
        day = 24 * 3600
        for used in range(day - 100, api.token_max_age - 5, day - 100):
            monkeypatch.setattr(auth_module, "_now", lambda used=used: now + used)
            response = await fresh.get("/api/v1/queues", headers=headers)
            assert response.status_code == 200, used
        monkeypatch.setattr(auth_module, "_now", lambda: now + api.token_max_age + 5)
        assert (await fresh.get("/api/v1/queues", headers=headers)).status_code == 401


async def test_hashed_passwords_and_removed_users(
    apps: list[Chancy], migrated: str
) -> None:
    backend = SimpleAuthBackend({"admin": hash_password("secret", iterations=1000)})
    _api, _chancy, client = await setup(apps, migrated, backend)
    async with client:
        wrong = await client.post(
            "/api/v1/login", json={"username": "admin", "password": "Secret"}
        )
        assert wrong.status_code == 401
        login = await client.post("/api/v1/login", json=CREDENTIALS)
        assert login.status_code == 200
        token = login.json()["token"]
        assert (await client.get("/api/v1/queues")).status_code == 200

        del backend.users["admin"]
        assert (await client.get("/api/v1/queues")).status_code == 401
        headers = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/api/v1/queues", headers=headers)).status_code == 401


async def test_token_auth_backend(
    apps: list[Chancy], migrated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = TokenAuthBackend("shared-secret", max_age=60, users={"admin": "secret"})
    api, chancy, client = await setup(apps, migrated, backend)
    async with client:
        token = (await client.post("/api/v1/login", json=CREDENTIALS)).json()["token"]
        assert backend.verify_token(token) == "admin"
    # Another service sharing the secret mints tokens the API accepts.
    minted = TokenAuthBackend("shared-secret").create_token("ci")
    assert minted != token
    foreign = TokenAuthBackend("other-secret").create_token("ci")
    async with client_for(api, chancy) as fresh:
        ok = await fresh.get(
            "/api/v1/queues", headers={"Authorization": f"Bearer {token}"}
        )
        assert ok.status_code == 200
        # users= limits who may use a token, as it limits who may log in.
        minted_response = await fresh.get(
            "/api/v1/queues", headers={"Authorization": f"Bearer {minted}"}
        )
        assert minted_response.status_code == 401
        bad = await fresh.get(
            "/api/v1/queues", headers={"Authorization": f"Bearer {foreign}"}
        )
        assert bad.status_code == 401
        now = auth_module._now()
        monkeypatch.setattr(auth_module, "_now", lambda: now + 61)
        late = await fresh.get(
            "/api/v1/queues", headers={"Authorization": f"Bearer {token}"}
        )
        assert late.status_code == 401

    open_backend = TokenAuthBackend("shared-secret")
    _api2, _chancy2, client2 = await setup(apps, migrated, open_backend)
    monkeypatch.setattr(auth_module, "_now", lambda: now)
    async with client2:
        # Without users nobody can log in, but minted tokens work.
        assert (
            await client2.post("/api/v1/login", json=CREDENTIALS)
        ).status_code == 401
        ok = await client2.get(
            "/api/v1/queues", headers={"Authorization": f"Bearer {minted}"}
        )
        assert ok.status_code == 200


class HeaderBackend(AuthBackend):
    """A custom backend in the original's style: no get_user, errors raised."""

    async def login(self, request: Request, username: str, password: str) -> bool:
        return False

    async def logout(self, request: Request) -> None:
        return None

    async def authenticate(
        self, conn: HTTPConnection
    ) -> tuple[AuthCredentials, SimpleUser] | None:
        value = conn.headers.get("x-user")
        if value == "blocked":
            raise AuthenticationError("This user is blocked")
        if value:
            return AuthCredentials(["authenticated"]), SimpleUser(value)
        return None


async def test_custom_backend(apps: list[Chancy], migrated: str) -> None:
    _, _, client = await setup(apps, migrated, HeaderBackend())
    async with client:
        assert (
            await client.get("/api/v1/queues", headers={"x-user": "x"})
        ).status_code == 200
        blocked = await client.get("/api/v1/queues", headers={"x-user": "blocked"})
        assert blocked.status_code == 401
        assert blocked.json() == {"error": "This user is blocked"}
        assert (await client.get("/api/v1/queues")).status_code == 401


# ---------------------------------------------------------------------------
# The signing key
# ---------------------------------------------------------------------------


async def test_generated_key_is_shared_by_every_worker(
    apps: list[Chancy], migrated: str
) -> None:
    """Two workers (two Api instances) sign with the same stored key, so a
    session or a token from one works on the other (and after a restart)."""
    api1, chancy1, client1 = await setup(apps, migrated)
    api2, chancy2, client2 = await setup(apps, migrated)
    async with client1, client2:
        login = await client1.post("/api/v1/login", json=CREDENTIALS)
        token = login.json()["token"]
        name = await api1.get_session_cookie(chancy1)
        assert name == await api2.get_session_cookie(chancy2)
        cookie = client1.cookies[name]
        headers = {"Authorization": f"Bearer {token}"}
        assert (await client2.get("/api/v1/queues", headers=headers)).status_code == 200
        client2.cookies.set(name, cookie)
        assert (await client2.get("/api/v1/queues")).status_code == 200
        # Logging out on one worker ends the login on the other.
        assert (
            await client2.post("/api/v1/logout", json={}, headers=headers)
        ).status_code == 200
        client2.cookies.set(name, cookie)
        assert (await client1.get("/api/v1/queues")).status_code == 401
        assert (await client2.get("/api/v1/queues")).status_code == 401
        assert (await client1.get("/api/v1/queues", headers=headers)).status_code == 401

    key1 = await api1.get_secret_key(chancy1)
    assert key1 == await api2.get_secret_key(chancy2)
    assert len(key1) >= 40
    async with chancy1.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT name, value FROM chancy_web_secrets ORDER BY name"
        )
        assert await cursor.fetchall() == [("secret_key", key1)]


async def test_explicit_secret_key(apps: list[Chancy], migrated: str) -> None:
    api, chancy, client = await setup(apps, migrated, secret_key="k" * 32)
    async with client:
        assert (await client.post("/api/v1/login", json=CREDENTIALS)).status_code == 200
        assert (await client.get("/api/v1/queues")).status_code == 200
    assert await api.get_secret_key(chancy) == "k" * 32
    async with chancy.pool.connection() as conn:
        cursor = await conn.execute("SELECT count(*) FROM chancy_web_secrets")
        assert await cursor.fetchone() == (0,)


async def test_missing_table_falls_back_to_a_process_key(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    """An Api whose migrations were not applied still works, with a warning."""
    api = Api(authentication_backend=SimpleAuthBackend({"admin": "secret"}))
    with caplog.at_level(logging.WARNING, logger="chancy"):
        async with client_for(api, chancy) as client:
            assert (
                await client.post("/api/v1/login", json=CREDENTIALS)
            ).status_code == 200
            assert (await client.get("/api/v1/queues")).status_code == 200
    assert "chancy_web_secrets does not exist" in caplog.text
