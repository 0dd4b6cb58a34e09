"""The JSON API against a real database, through httpx's ASGI transport.

The app under test is built with ``Api.build_starlette_app`` around a worker
that is not started, so no port is opened; ``test_web_server.py`` covers the
real server.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.plugins.api import Api
from chancy.plugins.api.auth import SimpleAuthBackend
from chancy.plugins.web import server

USERS = {"admin": "secret"}
FUNC = "chancy_testjobs.async_noop"


@pytest.fixture
async def app(chancy_dsn: str) -> AsyncIterator[Chancy]:
    api = Api(port=0, authentication_backend=SimpleAuthBackend(dict(USERS)))
    chancy = Chancy(chancy_dsn, plugins=[api], no_default_plugins=True)
    async with chancy:
        await chancy.migrate()
        try:
            yield chancy
        finally:
            await chancy.migrate(to_version=0)


@pytest.fixture
async def anon(app: Chancy) -> AsyncIterator[httpx.AsyncClient]:
    """A client that has not logged in."""
    api = app.plugins["chancy.api"]
    assert isinstance(api, Api)
    asgi = api.build_starlette_app(Worker(app, register_signal_handlers=False), app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi), base_url="http://test"
    ) as client:
        yield client


@pytest.fixture
async def client(anon: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client logged in with the session cookie."""
    response = await anon.post(
        "/api/v1/login", json={"username": "admin", "password": "secret"}
    )
    assert response.status_code == 200, response.text
    return anon


async def push(
    chancy: Chancy, count: int, *, queue: str = "web", **kw: Any
) -> list[str]:
    jobs = [Job(func=FUNC, queue=queue, kwargs={"i": i}, **kw) for i in range(count)]
    refs = [ref async for batch in chancy.push_many(jobs) for ref in batch]
    return [str(ref) for ref in refs]


# ---------------------------------------------------------------------------
# Service routes
# ---------------------------------------------------------------------------


async def test_health_needs_no_login(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/configuration"),
        ("GET", "/api/v1/system"),
        ("GET", "/api/v1/plugins"),
        ("GET", "/api/v1/queues"),
        ("POST", "/api/v1/queues"),
        ("PATCH", "/api/v1/queues/x"),
        ("DELETE", "/api/v1/queues/x"),
        ("POST", "/api/v1/queues/x/pause"),
        ("POST", "/api/v1/queues/x/resume"),
        ("GET", "/api/v1/workers"),
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/functions"),
        ("GET", "/api/v1/jobs/counts"),
        ("GET", f"/api/v1/jobs/{uuid.uuid4()}"),
        ("DELETE", f"/api/v1/jobs/{uuid.uuid4()}"),
        ("POST", f"/api/v1/jobs/{uuid.uuid4()}/retry"),
        ("POST", f"/api/v1/jobs/{uuid.uuid4()}/cancel"),
        ("GET", "/metrics"),
    ],
)
async def test_protected_routes_answer_401(
    anon: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await anon.request(method, path, json={})
    assert response.status_code == 401
    assert response.json() == {"error": "Not authenticated"}
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_configuration_system_and_plugins(
    client: httpx.AsyncClient, app: Chancy
) -> None:
    config = (await client.get("/api/v1/configuration")).json()
    assert config["plugins"] == ["Api"]
    assert config["identifiers"] == ["chancy.api"]
    assert config["prefix"] == "chancy_"
    assert config["user"] == "admin"

    system = (await client.get("/api/v1/system")).json()
    assert system["prefix"] == "chancy_"
    assert system["chancy_version"]
    assert system["database_version_num"] >= 140000
    assert system["database_version"]
    # Straight to PostgreSQL: prepared statements, and workers LISTEN.
    assert system["transaction_pooling"] is False
    assert system["listening"] is True

    plugins = (await client.get("/api/v1/plugins")).json()
    assert plugins == [
        {
            "identifier": "chancy.api",
            "name": "Api",
            "module": "chancy.plugins.web.plugin",
            "distribution": "chancy-web",
            "version": "0.1.0",
            "scope": "worker",
            "default": False,
            "dependencies": [],
            "tables": ["web_secrets", "web_sessions", "web_login_attempts"],
            "migrate_key": "web",
            "migrate_package": "chancy.plugins.web.migrations",
            "api_plugin": None,
        }
    ]


async def test_unknown_api_paths_are_json_404_and_wrong_methods_405(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found"}
    response = await client.put("/api/v1/queues", json={})
    assert response.status_code == 405
    assert (await client.get("/api/v1/login")).status_code == 405


# ---------------------------------------------------------------------------
# Queues
# ---------------------------------------------------------------------------


async def test_queue_create_update_pause_resume_delete(
    client: httpx.AsyncClient, app: Chancy
) -> None:
    created = await client.post(
        "/api/v1/queues",
        json={"name": "emails", "concurrency": 3, "executor": "async"},
    )
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["name"] == "emails"
    assert body["concurrency"] == 3
    assert body["executor"] == Chancy.Executor.Async.value
    assert body["tags"] == [".*"]  # omitted tags: every worker
    assert body["state"] == "active"

    nobody = await client.post("/api/v1/queues", json={"name": "nobody", "tags": []})
    assert nobody.json()["tags"] == []
    assert (await app.get_queue("nobody")).tags == set()

    listed = (await client.get("/api/v1/queues")).json()
    assert [q["name"] for q in listed] == ["emails", "nobody"]
    assert (await client.get("/api/v1/queues/emails")).json() == body

    patched = await client.patch(
        "/api/v1/queues/emails",
        json={"polling_interval": 0.5, "rate_limit": 10, "rate_limit_window": 60},
    )
    assert patched.status_code == 200, patched.text
    stored = await app.get_queue("emails")
    assert stored.polling_interval == 0.5
    assert stored.rate_limit == 10
    assert stored.concurrency == 3  # kept
    assert stored.executor == Chancy.Executor.Async.value

    paused = await client.post(
        "/api/v1/queues/emails/pause", json={"resume_at": "2099-01-01T00:00:00Z"}
    )
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused"
    assert paused.json()["resume_at"].startswith("2099-01-01T00:00:00")
    stored = await app.get_queue("emails")
    assert stored.state is Queue.State.PAUSED
    assert stored.resume_at is not None and stored.resume_at.year == 2099

    assert (
        await client.post("/api/v1/queues/emails/pause", json={})
    ).status_code == 200
    resumed = await client.post("/api/v1/queues/emails/resume", json={})
    assert resumed.json()["state"] == "active"
    assert (await app.get_queue("emails")).state is Queue.State.ACTIVE

    [kept] = await push(app, 1, queue="emails")
    deleted = await client.delete("/api/v1/queues/emails?purge_jobs=false")
    assert deleted.status_code == 200
    assert deleted.json()["purge_jobs"] is False
    assert await app.get_job(kept) is not None

    # Jobs are kept unless purging is asked for.
    [kept_too] = await push(app, 1, queue="nobody")
    await client.post("/api/v1/queues", json={"name": "nobody"})
    deleted = await client.delete("/api/v1/queues/nobody")
    assert deleted.status_code == 200
    assert deleted.json()["purge_jobs"] is False
    assert await app.get_job(kept_too) is not None

    [purged] = await push(app, 1, queue="nobody")
    await client.post("/api/v1/queues", json={"name": "nobody"})
    deleted = await client.delete("/api/v1/queues/nobody?purge_jobs=true")
    assert deleted.status_code == 200
    assert deleted.json()["purge_jobs"] is True
    assert await app.get_job(purged) is None
    assert await app.get_all_queues() == []


async def test_posting_an_existing_queue_changes_only_the_given_fields(
    client: httpx.AsyncClient, app: Chancy
) -> None:
    """POST on an existing queue is an upsert that never resets what the body
    omits (it used to overwrite every omitted field with its default)."""
    await app.declare(
        Queue(
            "gpu",
            concurrency=4,
            tags={"has=gpu"},
            executor=Chancy.Executor.Process,
            rate_limit=10,
            rate_limit_window=60,
            executor_options={"idle_timeout": 5},
        )
    )
    response = await client.post(
        "/api/v1/queues", json={"name": "gpu", "polling_interval": 2}
    )
    assert response.status_code == 200, response.text
    assert await app.get_queue("gpu") == Queue(
        "gpu",
        concurrency=4,
        tags={"has=gpu"},
        executor=Chancy.Executor.Process,
        rate_limit=10,
        rate_limit_window=60,
        executor_options={"idle_timeout": 5},
        polling_interval=2,
    )
    # A field given explicitly does change, null included.
    response = await client.post(
        "/api/v1/queues", json={"name": "gpu", "tags": None, "concurrency": None}
    )
    stored = await app.get_queue("gpu")
    assert (stored.tags, stored.concurrency, stored.rate_limit) == ({".*"}, None, 10)


async def test_queue_errors(client: httpx.AsyncClient, app: Chancy) -> None:
    for method, path in [
        ("GET", "/api/v1/queues/missing"),
        ("PATCH", "/api/v1/queues/missing"),
        ("DELETE", "/api/v1/queues/missing"),
        ("POST", "/api/v1/queues/missing/pause"),
        ("POST", "/api/v1/queues/missing/resume"),
    ]:
        response = await client.request(method, path, json={})
        assert response.status_code == 404, (method, path)
        assert response.json() == {"error": "Queue not found"}

    bad: list[tuple[Any, str]] = [
        ({}, "name must be a non-empty string"),
        ({"name": "q", "concurrency": 0}, "concurrency must be an integer from 1"),
        ({"name": "q", "concurrency": 2**31}, "concurrency must be an integer from 1"),
        ({"name": "q", "concurrency": 1.5}, "concurrency must be an integer"),
        ({"name": "q", "colour": "red"}, "unknown queue field(s): colour"),
        ({"name": "q", "tags": "x"}, "tags must be a list of strings"),
        ({"name": "q", "tags": ["("]}, "is not a valid regular expression"),
        ({"name": "q", "tags": ["(a+)+"]}, "could backtrack catastrophically"),
        ({"name": "q", "state": "sleeping"}, "state must be 'active' or 'paused'"),
        ({"name": "q", "polling_interval": -1}, "polling_interval must be a number"),
        ({"name": "q", "polling_interval": 1e-300}, "from 0.01 to 86400"),
        ({"name": "q", "rate_limit": 5}, "rate_limit and rate_limit_window"),
        ({"name": "q", "executor": "no.such.Executor"}, "is not allowed"),
        ({"name": "q", "resume_at": "tomorrow"}, "resume_at must be an ISO 8601"),
        (["q"], "must be a JSON object"),
    ]
    for payload, message in bad:
        response = await client.post("/api/v1/queues", json=payload)
        assert response.status_code == 422, payload
        assert message in response.json()["error"], (payload, response.json())
    response = await client.post(
        "/api/v1/queues",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["error"]

    await client.post("/api/v1/queues", json={"name": "q"})
    renamed = await client.patch("/api/v1/queues/q", json={"name": "other"})
    assert renamed.status_code == 422
    assert renamed.json() == {"error": "a queue cannot be renamed"}
    purge = await client.delete("/api/v1/queues/q?purge_jobs=maybe")
    assert purge.status_code == 422
    assert "purge_jobs" in purge.json()["error"]
    pause = await client.post("/api/v1/queues/q/pause", json={"resume_at": 5})
    assert pause.status_code == 422
    assert [q.name for q in await app.get_all_queues()] == ["q"]


# ---------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------


async def test_workers(client: httpx.AsyncClient, app: Chancy) -> None:
    assert (await client.get("/api/v1/workers")).json() == []
    worker = Worker(app, worker_id="w-web", register_signal_handlers=False)
    await worker.announce()
    [row] = (await client.get("/api/v1/workers")).json()
    assert row["worker_id"] == "w-web"
    assert set(row) == {
        "worker_id",
        "tags",
        "queues",
        "last_seen",
        "expires_at",
        "is_leader",
    }
    assert row["is_leader"] is False
    assert "worker_id=w-web" in row["tags"]
    assert row["last_seen"].endswith("+00:00")


# ---------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------


async def test_job_list_defaults_filters_and_detail(
    client: httpx.AsyncClient, app: Chancy
) -> None:
    ids = await push(app, 3, queue="web", priority=5)
    other = await push(app, 2, queue="other")
    await app.cancel_job(app_ref(other[0]))  # -> failed

    pending = (await client.get("/api/v1/jobs")).json()
    assert [j["id"] for j in pending] == sorted(ids + other[1:], reverse=True)
    job = pending[0]
    assert job["state"] == "pending"
    assert job["func"] == FUNC
    assert "taken_by" in job and "created_at" in job

    failed = (await client.get("/api/v1/jobs?state=failed")).json()
    assert [j["id"] for j in failed] == [other[0]]
    assert failed[0]["errors"][0]["cancelled"] is True

    assert len((await client.get("/api/v1/jobs?state=all")).json()) == 5
    by_queue = (await client.get("/api/v1/jobs", params={"queue": "other"})).json()
    assert [j["id"] for j in by_queue] == [other[1]]
    by_func = (await client.get("/api/v1/jobs", params={"func": "ASYNC_no"})).json()
    assert len(by_func) == 4
    assert (await client.get("/api/v1/jobs", params={"func": "%"})).json() == []

    filters = json.dumps([["priority", ">=", 5], ["queue", "=", "web"]])
    filtered = (await client.get("/api/v1/jobs", params={"filters": filters})).json()
    assert sorted(j["id"] for j in filtered) == sorted(ids)
    filters = json.dumps([["state", "=", "failed"], ["func", "~", "noop"]])
    filtered = (await client.get("/api/v1/jobs", params={"filters": filters})).json()
    assert [j["id"] for j in filtered] == [other[0]]  # no default pending state

    detail = await client.get(f"/api/v1/jobs/{ids[0]}")
    assert detail.status_code == 200
    assert detail.json()["id"] == ids[0]
    assert detail.json()["kwargs"] == {"i": 0}
    missing = await client.get(f"/api/v1/jobs/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json() == {}

    functions = await client.get("/api/v1/jobs/functions")
    assert functions.json() == [FUNC]


def app_ref(job_id: str) -> Any:
    from chancy import Reference

    return Reference(job_id)


async def test_job_counts_per_state_are_capped_and_filter_by_queue(
    client: httpx.AsyncClient, app: Chancy
) -> None:
    await push(app, 5)
    other = await app.push(Job(func=FUNC, queue="elsewhere"))
    async with app.pool.connection() as conn:
        await conn.execute(
            f"UPDATE {app.sql.jobs} SET state = 'failed' WHERE id = %s",
            (other.identifier,),
        )
    everything = (await client.get("/api/v1/jobs/counts")).json()
    assert everything["cap"] == 10_000 and everything["capped"] == []
    assert everything["counts"] == {
        "pending": 5,
        "running": 0,
        "retrying": 0,
        "succeeded": 0,
        "failed": 1,
    }
    capped = (await client.get("/api/v1/jobs/counts", params={"cap": 3})).json()
    assert capped["counts"]["pending"] == 3 and capped["capped"] == ["pending"]
    one_queue = await client.get("/api/v1/jobs/counts", params={"queue": "elsewhere"})
    assert one_queue.json()["counts"] == {
        "pending": 0,
        "running": 0,
        "retrying": 0,
        "succeeded": 0,
        "failed": 1,
    }
    bad = await client.get("/api/v1/jobs/counts", params={"cap": "0"})
    assert bad.status_code == 422 and "cap" in bad.json()["error"]


async def test_job_list_pagination_has_no_overlap(
    client: httpx.AsyncClient, app: Chancy
) -> None:
    ids = await push(app, 23)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "10", "pagination": "true"}
        if cursor:
            params["before"] = cursor
        page = (await client.get("/api/v1/jobs", params=params)).json()
        pages += 1
        seen += [j["id"] for j in page["items"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
        assert cursor == page["items"][-1]["id"]
    assert pages == 3
    assert seen == sorted(ids, reverse=True)

    capped = (await client.get("/api/v1/jobs", params={"limit": "1000"})).json()
    assert len(capped) == 23  # the limit is capped at 100, not refused
    plain = (await client.get("/api/v1/jobs", params={"limit": "5"})).json()
    assert isinstance(plain, list) and len(plain) == 5


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"state": "sleeping"}, "unknown state 'sleeping'"),
        ({"limit": "ten"}, "'limit' must be an integer"),
        ({"limit": "0"}, "'limit' must be at least 1"),
        ({"before": "nope"}, "before must be a UUID"),
        ({"pagination": "perhaps"}, "'pagination' must be true or false"),
        ({"filters": "[["}, "filters is not valid JSON"),
        ({"filters": '{"a": 1}'}, "filters must be a JSON list"),
        ({"filters": '[["state", "="]]'}, "filters[0] must be a list"),
        ({"filters": '[["colour", "=", "red"]]'}, "filters[0]: unknown field 'colour'"),
        ({"filters": '[["func", ">", "x"]]'}, "operator '>' is not allowed for 'func'"),
        ({"filters": '[["priority", ">", "high"]]'}, "compared with an integer"),
        ({"filters": '[["state", "=", "gone"]]'}, "unknown state 'gone'"),
        ({"filters": '[["queue", "=", 3]]'}, "compared with a string"),
        ({"omit": "result,colour"}, "omit: unknown field(s) 'colour'"),
        (
            {"filters": '[["concurrency_key", "!=", "k"]]'},
            "operator '!=' is not allowed for 'concurrency_key'",
        ),
        ({"filters": '[["concurrency_key", "=", 4]]'}, "compared with a string"),
        ({"omit": "id"}, "omit: unknown field(s) 'id'"),
    ],
)
async def test_job_list_rejects_bad_input(
    client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    response = await client.get("/api/v1/jobs", params=params)
    assert response.status_code == 422
    assert message in response.json()["error"]


async def test_bulk_actions(client: httpx.AsyncClient, app: Chancy) -> None:
    ids = await push(app, 3)
    missing = str(uuid.uuid4())

    cancelled = await client.post(
        "/api/v1/jobs", json={"action": "cancel", "ids": [ids[0], ids[1], missing]}
    )
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert body["ok"] is False
    assert [(r["id"], r["status"]) for r in body["results"]] == [
        (ids[0], "completed"),
        (ids[1], "completed"),
        (missing, "failed"),
    ]
    assert body["results"][2]["message"] == "job not found"
    job = await app.get_job(ids[0])
    assert job is not None and job.state is QueuedJob.State.FAILED

    again = (
        await client.post("/api/v1/jobs", json={"action": "cancel", "ids": [ids[0]]})
    ).json()
    assert again["ok"] is True
    assert again["results"][0]["status"] == "skipped"
    assert "already finished (failed)" in again["results"][0]["message"]

    # A running job is skipped by retry.
    async with app.pool.connection() as conn:
        await conn.execute(
            f"UPDATE {app.sql.jobs} SET state = 'running' WHERE id = %s", (ids[2],)
        )
    retried = (
        await client.post(
            "/api/v1/jobs", json={"action": "retry", "ids": [ids[0], ids[2]]}
        )
    ).json()
    assert [(r["id"], r["status"]) for r in retried["results"]] == [
        (ids[0], "completed"),
        (ids[2], "skipped"),
    ]
    job = await app.get_job(ids[0])
    assert job is not None and job.state is QueuedJob.State.RETRYING
    assert job.attempts == 0

    purged = (
        await client.post(
            "/api/v1/jobs", json={"action": "purge", "ids": [ids[0], ids[1], ids[1]]}
        )
    ).json()
    assert purged == {
        "ok": True,
        "results": [
            {"id": ids[0], "status": "completed", "message": "job deleted"},
            {"id": ids[1], "status": "completed", "message": "job deleted"},
        ],
    }
    assert await app.get_job(ids[0]) is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"action": "explode", "ids": []}, "action must be one of"),
        ({"action": "retry"}, "ids must be a non-empty list"),
        ({"action": "retry", "ids": []}, "ids must be a non-empty list"),
        ({"action": "retry", "ids": ["x"]}, "ids[0] must be a UUID"),
        ({"action": "retry", "ids": [str(uuid.uuid4())] * 1001}, "at most 1000"),
        ("retry", "must be a JSON object"),
    ],
)
async def test_bulk_actions_reject_bad_input(
    client: httpx.AsyncClient, payload: Any, message: str
) -> None:
    response = await client.post("/api/v1/jobs", json=payload)
    assert response.status_code == 422
    assert message in response.json()["error"]


async def test_single_job_actions(client: httpx.AsyncClient, app: Chancy) -> None:
    a, b = await push(app, 2)
    cancelled = await client.post(f"/api/v1/jobs/{a}/cancel", json={})
    assert cancelled.status_code == 200
    assert cancelled.json() == {
        "ok": True,
        "id": a,
        "status": "completed",
        "message": "job cancelled",
    }
    again = await client.post(f"/api/v1/jobs/{a}/cancel", json={})
    assert again.status_code == 409
    assert again.json()["status"] == "skipped"

    retried = await client.post(f"/api/v1/jobs/{a}/retry", json={})
    assert retried.status_code == 200
    job = await app.get_job(a)
    assert job is not None and job.state is QueuedJob.State.RETRYING

    deleted = await client.delete(f"/api/v1/jobs/{b}")
    assert deleted.status_code == 200
    assert deleted.json() == {"ok": True, "id": b}
    assert await app.get_job(b) is None
    gone = await client.delete(f"/api/v1/jobs/{b}")
    assert gone.status_code == 404
    assert gone.json() == {}
    for action in ("retry", "cancel"):
        response = await client.post(f"/api/v1/jobs/{b}/{action}", json={})
        assert response.status_code == 404
        assert response.json() == {"error": "Job not found"}
    bad = await client.get("/api/v1/jobs/not-a-uuid")
    assert bad.status_code == 422
    assert "the job id must be a UUID" in bad.json()["error"]


async def test_functions_are_cached(client: httpx.AsyncClient, app: Chancy) -> None:
    assert (await client.get("/api/v1/jobs/functions")).json() == []
    await push(app, 1)
    assert (await client.get("/api/v1/jobs/functions")).json() == []  # cached
    from chancy.plugins.web import core

    assert core.FUNCTIONS_TTL == 60.0


# ---------------------------------------------------------------------------
# The dashboard
# ---------------------------------------------------------------------------


async def test_dashboard_files_and_fallback(
    anon: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "index.html").write_text("<html>dashboard</html>")
    (tmp_path / "app.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("no")
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<html>dashboard</html>")
    (static / "app.js").write_text("console.log(1)")
    monkeypatch.setattr(server, "STATIC_DIR", static)

    root = await anon.get("/")
    assert root.status_code == 200
    assert root.text == "<html>dashboard</html>"
    assert root.headers["content-type"].startswith("text/html")
    script = await anon.get("/app.js")
    assert script.status_code == 200
    assert script.text == "console.log(1)"
    assert script.headers["content-type"].startswith("text/javascript")
    # The dashboard routes with the URL hash: a deeper path goes back to the
    # root (where the page's relative script URLs resolve).
    deep = await anon.get("/jobs/pending")
    assert deep.status_code == 307
    assert deep.headers["location"] == "/"
    assert (await anon.get("/missing.js")).status_code == 404
    escaped = await anon.get("/%2e%2e/secret.txt")  # no way out of the directory
    assert escaped.status_code == 404


async def test_dashboard_missing_page(
    anon: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "STATIC_DIR", tmp_path)
    response = await anon.get("/")
    assert response.status_code == 200
    assert "no dashboard files" in response.text
    assert "api/v1/" in response.text


async def test_packaged_dashboard_is_served_when_present(
    anon: httpx.AsyncClient,
) -> None:
    response = await anon.get("/")
    assert response.status_code == 200
    if (server.STATIC_DIR / "index.html").is_file():
        assert response.text == (server.STATIC_DIR / "index.html").read_text()
    else:
        assert "no dashboard files" in response.text


async def test_executor_options_the_executor_does_not_take_are_refused(
    client: httpx.AsyncClient, app: Chancy
) -> None:
    """The worker could not start such a queue: the API says so at once."""
    response = await client.post(
        "/api/v1/queues",
        json={"name": "q", "executor": "async", "executor_options": {"bogus": 1}},
    )
    assert response.status_code == 422
    assert response.json() == {
        "error": "executor_options: AsyncExecutor takes no option 'bogus'"
        " (it takes: none)"
    }
    assert await app.get_all_queues() == []
    ok = await client.post(
        "/api/v1/queues",
        json={"name": "q", "executor_options": {"maximum_jobs_per_worker": 5}},
    )
    assert ok.status_code == 200, ok.text
    bad = await client.patch(
        "/api/v1/queues/q", json={"executor_options": {"max_jobs": 5}}
    )
    assert bad.status_code == 422
    assert "ProcessExecutor takes no option 'max_jobs'" in bad.json()["error"]
    assert "maximum_jobs_per_worker" in bad.json()["error"]
    stored = await app.get_queue("q")
    assert stored.executor_options == {"maximum_jobs_per_worker": 5}


@pytest.mark.parametrize(
    "resume_at", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:00"]
)
async def test_a_date_that_could_not_be_read_back_is_refused(
    client: httpx.AsyncClient, app: Chancy, resume_at: str
) -> None:
    """PostgreSQL would store it, but every later read of the queue list
    would fail (Python's datetime stops at the years 1 and 9999)."""
    await app.declare(Queue("q"))
    response = await client.post(
        "/api/v1/queues/q/pause", json={"resume_at": resume_at}
    )
    assert response.status_code == 422
    assert "resume_at must be between the years 2 and 9998" in response.json()["error"]
    assert (await client.get("/api/v1/queues")).status_code == 200
    assert (await app.get_queue("q")).state == Queue.State.ACTIVE


# ---------------------------------------------------------------------------
# Stored results, live progress, concurrency keys and queue limits
# ---------------------------------------------------------------------------

PROGRESS = "chancy_testjobs.async_report_progress"
RETURN = "chancy_testjobs.async_return_value"
LIMITS = ("global_concurrency", "key_concurrency", "key_rate_limit")


async def test_jobs_show_their_result_progress_and_concurrency_key(
    client: httpx.AsyncClient, app: Chancy
) -> None:
    await app.declare(
        Queue("work", executor=Chancy.Executor.Async, polling_interval=0.1)
    )
    value = {"rows": [1, 2.5, None], "html": "<b>&</b>", "ok": True}
    returned = await app.push(
        Job(func=RETURN, queue="work", kwargs={"value": value}).with_concurrency_key(
            "customer:42"
        )
    )
    reported = await app.push(
        Job(func=PROGRESS, queue="work", kwargs={"steps": 3, "message": "row"})
    )
    kept = await app.push(
        Job(func=RETURN, queue="work", kwargs={"value": "secret"}, store_result=False)
    )
    # Reports once, then waits: the progress of a job that is still running.
    running = await app.push(
        Job(func=PROGRESS, queue="work", kwargs={"steps": 2, "delay": 60})
    )
    worker = Worker(app, register_signal_handlers=False, queue_change_poll_interval=60)
    await worker.start()
    try:
        await app.wait_for_jobs([returned, reported, kept], interval=0.05, timeout=30)
        live: dict[str, Any] = {}
        for _ in range(300):
            live = (await client.get(f"/api/v1/jobs/{running}")).json()
            if live["progress"] is not None:
                break
            await asyncio.sleep(0.05)
        assert live["state"] == "running"
        assert live["progress"]["done"] == 1 and live["progress"]["total"] == 2
        assert live["progress"]["message"] == "step 1"
        assert live["result"] is None
        await app.cancel_job(app_ref(str(running)))
    finally:
        await worker.stop()

    job = (await client.get(f"/api/v1/jobs/{returned}")).json()
    assert job["state"] == "succeeded"
    assert job["result"] == value
    assert job["concurrency_key"] == "customer:42"
    assert job["store_result"] is True
    assert job["progress"] is None

    job = (await client.get(f"/api/v1/jobs/{reported}")).json()
    assert job["result"] == 3
    assert job["concurrency_key"] is None
    # A finished job keeps its last progress.
    assert {k: job["progress"][k] for k in ("done", "total", "message")} == {
        "done": 3,
        "total": 3,
        "message": "row 3",
    }
    assert job["progress"]["at"].endswith("+00:00")

    job = (await client.get(f"/api/v1/jobs/{kept}")).json()
    assert (job["state"], job["store_result"], job["result"]) == (
        "succeeded",
        False,
        None,
    )
    # The list has the same fields.
    listed = (await client.get("/api/v1/jobs?state=succeeded")).json()
    by_id = {j["id"]: j for j in listed}
    assert by_id[str(returned)]["result"] == value
    assert by_id[str(returned)]["concurrency_key"] == "customer:42"
    assert by_id[str(reported)]["progress"]["done"] == 3
    # Jobs of one key.
    keyed = await client.get(
        "/api/v1/jobs",
        params={
            "state": "all",
            "filters": json.dumps([["concurrency_key", "=", "customer:42"]]),
        },
    )
    assert [j["id"] for j in keyed.json()] == [str(returned)]
    # ... unless it is asked to leave the large ones out (as the dashboard does).
    slim = await client.get(
        "/api/v1/jobs", params={"state": "succeeded", "omit": "result, kwargs,meta"}
    )
    assert slim.status_code == 200, slim.text
    for row in slim.json():
        assert not {"result", "kwargs", "meta"} & set(row), row
        assert {"id", "state", "errors", "progress", "concurrency_key"} <= set(row)


async def test_queue_limits_round_trip_through_the_api(
    client: httpx.AsyncClient, app: Chancy
) -> None:
    created = await client.post(
        "/api/v1/queues",
        json={
            "name": "limited",
            "global_concurrency": 3,
            "key_concurrency": 1,
            "key_rate_limit": 10,
            "key_rate_limit_window": 60,
        },
    )
    assert created.status_code == 200, created.text
    body = created.json()
    assert [body[k] for k in (*LIMITS, "key_rate_limit_window")] == [3, 1, 10, 60]
    stored = await app.get_queue("limited")
    assert (
        stored.global_concurrency,
        stored.key_concurrency,
        stored.key_rate_limit,
        stored.key_rate_limit_window,
    ) == (3, 1, 10, 60)
    assert (await client.get("/api/v1/queues/limited")).json() == body
    assert (await client.get("/api/v1/queues")).json() == [body]

    # PATCH changes the given limits and keeps the others; null removes one.
    patched = await client.patch(
        "/api/v1/queues/limited",
        json={"global_concurrency": None, "key_concurrency": 2},
    )
    assert patched.status_code == 200, patched.text
    stored = await app.get_queue("limited")
    assert (stored.global_concurrency, stored.key_concurrency) == (None, 2)
    assert (stored.key_rate_limit, stored.key_rate_limit_window) == (10, 60)
    # POST on an existing queue keeps the limits it does not name.
    again = await client.post(
        "/api/v1/queues", json={"name": "limited", "polling_interval": 2}
    )
    assert again.json()["key_concurrency"] == 2
    assert again.json()["key_rate_limit"] == 10
    removed = await client.patch(
        "/api/v1/queues/limited",
        json={"key_rate_limit": None, "key_rate_limit_window": None},
    )
    assert removed.status_code == 200, removed.text
    assert (await app.get_queue("limited")).has_limits  # key_concurrency is left

    # A queue without limits answers them as null (always present).
    plain = (await client.post("/api/v1/queues", json={"name": "plain"})).json()
    assert {k: plain[k] for k in (*LIMITS, "key_rate_limit_window")} == dict.fromkeys(
        (*LIMITS, "key_rate_limit_window")
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"global_concurrency": 0}, "global_concurrency must be an integer from 1"),
        ({"global_concurrency": -3}, "global_concurrency must be an integer from 1"),
        ({"global_concurrency": 2**31}, "global_concurrency must be an integer from 1"),
        ({"global_concurrency": 1.5}, "global_concurrency must be an integer"),
        ({"global_concurrency": "3"}, "global_concurrency must be an integer"),
        ({"global_concurrency": True}, "global_concurrency must be an integer"),
        ({"key_concurrency": 0}, "key_concurrency must be an integer from 1"),
        ({"key_concurrency": [1]}, "key_concurrency must be an integer"),
        ({"key_rate_limit": 5}, "key_rate_limit and key_rate_limit_window must be"),
        (
            {"key_rate_limit_window": 60},
            "key_rate_limit and key_rate_limit_window must be",
        ),
        (
            {"key_rate_limit": 0, "key_rate_limit_window": 60},
            "key_rate_limit must be an integer from 1",
        ),
        (
            {"key_rate_limit": 5, "key_rate_limit_window": -1},
            "key_rate_limit_window must be an integer from 1",
        ),
        (
            {"key_rate_limit": 5, "key_rate_limit_window": 0.5},
            "key_rate_limit_window must be an integer",
        ),
    ],
)
async def test_bad_queue_limits_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient, app: Chancy, payload: dict[str, Any], message: str
) -> None:
    created = await client.post("/api/v1/queues", json={"name": "new", **payload})
    assert created.status_code == 422, created.text
    assert message in created.json()["error"]
    assert await app.get_all_queues() == []

    await app.declare(Queue("q", key_concurrency=4))
    before = await app.get_queue("q")
    for method, path, body in [
        ("PATCH", "/api/v1/queues/q", payload),
        ("POST", "/api/v1/queues", {"name": "q", **payload}),
    ]:
        response = await client.request(method, path, json=body)
        assert response.status_code == 422, (method, response.text)
        assert message in response.json()["error"], (method, response.json())
    assert await app.get_queue("q") == before
    assert [q.name for q in await app.get_all_queues()] == ["q"]
