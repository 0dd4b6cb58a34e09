"""DjangoAuthBackend: Django superusers log in to the chancy-web dashboard and API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("django")
pytest.importorskip("chancy.plugins.web")

import httpx
from asgiref.sync import sync_to_async
from starlette.requests import Request

from chancy import Chancy, Worker
from chancy.contrib.django.auth import DjangoAuthBackend, DjangoUser
from chancy.plugins.web import Api
from chancy.plugins.web.auth import AuthBackend

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def users(django_tables: None) -> dict[str, Any]:
    """A superuser, a normal user, a staff member and an inactive superuser."""
    from django.contrib.auth import get_user_model
    from django.db import connections

    model = get_user_model()
    created = {
        "admin": model.objects.create_superuser("admin", "a@example.com", PASSWORD),
        "normal": model.objects.create_user("normal", "n@example.com", PASSWORD),
        "staff": model.objects.create_user(
            "staff", "s@example.com", PASSWORD, is_staff=True
        ),
        "inactive": model.objects.create_superuser(
            "inactive", "i@example.com", PASSWORD, is_active=False
        ),
    }
    connections.close_all()
    return created


def make_request(session: dict[str, Any] | None = None) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/login",
        "headers": [],
        "query_string": b"",
    }
    if session is not None:
        scope["session"] = session
    return Request(scope)


def test_it_is_an_auth_backend() -> None:
    backend = DjangoAuthBackend()
    assert isinstance(backend, AuthBackend)
    Api(authentication_backend=backend)  # accepted by the web plugin


async def test_only_superusers_log_in(users: dict[str, Any], django_orm: None) -> None:
    backend = DjangoAuthBackend()

    request = make_request({})
    assert await backend.login(request, "admin", PASSWORD) is True
    assert request.session == {"username": "admin"}

    for username, password in (
        ("admin", "wrong password"),
        ("normal", PASSWORD),
        ("staff", PASSWORD),
        ("inactive", PASSWORD),
        ("nobody", PASSWORD),
    ):
        request = make_request({})
        assert await backend.login(request, username, password) is False, username
        assert request.session == {}, username


async def test_session_authentication_and_logout(
    users: dict[str, Any], django_orm: None
) -> None:
    backend = DjangoAuthBackend()
    request = make_request({})
    assert await backend.login(request, "admin", PASSWORD)

    result = await backend.authenticate(request)
    assert result is not None
    credentials, user = result
    assert credentials.scopes == ["authenticated"]
    assert isinstance(user, DjangoUser)
    assert user.is_authenticated
    assert user.username == user.display_name == "admin"
    assert user.identity == str(users["admin"].pk)

    await backend.logout(request)
    assert request.session == {}
    assert await backend.authenticate(request) is None
    await backend.logout(make_request())  # no session at all: nothing to do

    # A session naming an account that may not log in is not authenticated.
    for username in ("normal", "inactive", "nobody"):
        assert await backend.authenticate(make_request({"username": username})) is None
    assert await backend.authenticate(make_request()) is None


@pytest.fixture
async def web_app(
    chancy_dsn: str, users: dict[str, Any], django_orm: None
) -> AsyncIterator[tuple[Api, Chancy]]:
    api = Api(authentication_backend=DjangoAuthBackend())
    chancy = Chancy(chancy_dsn, plugins=[api], no_default_plugins=True)
    async with chancy:
        await chancy.migrate()
        try:
            yield api, chancy
        finally:
            await chancy.migrate(to_version=0)


def client_for(api: Api, chancy: Chancy) -> httpx.AsyncClient:
    app = api.build_starlette_app(
        Worker(chancy, register_signal_handlers=False), chancy
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    )


async def test_dashboard_login_with_sessions_and_bearer_tokens(
    web_app: tuple[Api, Chancy], users: dict[str, Any]
) -> None:
    api, chancy = web_app
    credentials = {"username": "admin", "password": PASSWORD}
    async with client_for(api, chancy) as client:
        assert (await client.get("/api/v1/queues")).status_code == 401
        for bad in (
            {"username": "normal", "password": PASSWORD},
            {"username": "admin", "password": "wrong"},
        ):
            response = await client.post("/api/v1/login", json=bad)
            assert response.status_code == 401
            assert (await client.get("/api/v1/queues")).status_code == 401

        login = await client.post("/api/v1/login", json=credentials)
        assert login.status_code == 200
        token = login.json()["token"]
        assert (await client.get("/api/v1/queues")).status_code == 200  # cookie

        async with client_for(api, chancy) as fresh:  # no cookie: the token
            bearer = {"Authorization": f"Bearer {token}"}
            assert (
                await fresh.get("/api/v1/queues", headers=bearer)
            ).status_code == 200

            # Demoting the account revokes its session and its token at once.
            admin = users["admin"]
            admin.is_superuser = False
            await sync_to_async(admin.save)(update_fields=["is_superuser"])
            try:
                assert (await client.get("/api/v1/queues")).status_code == 401
                response = await fresh.get("/api/v1/queues", headers=bearer)
                assert response.status_code == 401
            finally:
                admin.is_superuser = True
                await sync_to_async(admin.save)(update_fields=["is_superuser"])
            assert (
                await fresh.get("/api/v1/queues", headers=bearer)
            ).status_code == 200

        assert (await client.post("/api/v1/logout", json={})).status_code == 200
        assert (await client.get("/api/v1/queues")).status_code == 401
        # The logout revoked the login's token too.
        async with client_for(api, chancy) as fresh:
            response = await fresh.get("/api/v1/queues", headers=bearer)
            assert response.status_code == 401
