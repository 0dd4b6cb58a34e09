"""Routes contributed by other plugins (cron, workflows, metrics, hookimpls)
and the Prometheus endpoint."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from chancy import Chancy, Job, Worker, hookimpl
from chancy.plugin import Plugin
from chancy.plugins.api import Api
from chancy.plugins.api.auth import SimpleAuthBackend
from chancy.plugins.api.plugin import ApiPlugin, RouteT, json_response

CREDENTIALS = {"username": "admin", "password": "secret"}
FUNC = "chancy_testjobs.async_noop"

Factory = Callable[..., Any]


@pytest.fixture
async def make(chancy_dsn: str) -> AsyncIterator[Factory]:
    """``await make(*plugins, **api_options)``: a migrated app and a logged-in
    client; ``anon=True`` skips the login."""
    opened: list[tuple[Chancy, httpx.AsyncClient]] = []

    async def factory(
        *plugins: Any, anon: bool = False, **options: Any
    ) -> tuple[Chancy, httpx.AsyncClient, Api]:
        api = Api(
            port=0,
            authentication_backend=SimpleAuthBackend({"admin": "secret"}),
            **options,
        )
        chancy = Chancy(chancy_dsn, plugins=[api, *plugins], no_default_plugins=True)
        await chancy.ensure_open()
        await chancy.migrate()
        asgi = api.build_starlette_app(
            Worker(chancy, register_signal_handlers=False), chancy
        )
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url="http://test"
        )
        opened.append((chancy, client))
        if not anon:
            login = await client.post("/api/v1/login", json=CREDENTIALS)
            assert login.status_code == 200
        return chancy, client, api

    yield factory
    for chancy, client in reversed(opened):
        await client.aclose()
        await chancy.migrate(to_version=0)
        await chancy.__aexit__(None, None, None)


def leadership() -> Plugin:
    from chancy.plugins.leadership import ImmediateLeadership

    return ImmediateLeadership()


async def test_plugin_routes_are_absent_without_the_plugins(make: Factory) -> None:
    _, client, _ = await make()
    for path in ("/api/v1/crons", "/api/v1/workflows", "/api/v1/metrics"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"error": "Not found"}
    metrics = await client.get("/metrics")
    assert metrics.status_code == 404
    assert "Metrics plugin" in metrics.text
    assert "chancy-metrics" in metrics.text


async def test_cron_routes(make: Factory) -> None:
    cron_module = pytest.importorskip("chancy.plugins.cron")
    Cron = cron_module.Cron
    chancy, client, _ = await make(Cron(), leadership())
    assert "Cron" in (await client.get("/api/v1/configuration")).json()["plugins"]
    assert (await client.get("/api/v1/crons")).json() == []
    job = Job(func=FUNC, queue="reports", unique_key="nightly", priority=3)
    await Cron.schedule(chancy, "0 3 * * *", job)
    [schedule] = (await client.get("/api/v1/crons")).json()
    assert schedule["unique_key"] == "nightly"
    assert schedule["cron"] == "0 3 * * *"
    assert schedule["last_run"] is None
    assert schedule["next_run"][11:16] == "03:00"
    assert schedule["job"]["func"] == FUNC
    assert schedule["job"]["queue"] == "reports"
    assert schedule["job"]["priority"] == 3
    assert schedule["job"]["limits"] == []
    assert schedule["job"]["unique_key"] == "nightly"
    plugins = (await client.get("/api/v1/plugins")).json()
    cron_row = next(p for p in plugins if p["identifier"] == "chancy.cron")
    assert cron_row["api_plugin"] == "chancy.plugins.cron.api.CronApiPlugin"


async def test_workflow_routes(make: Factory) -> None:
    workflow_module = pytest.importorskip("chancy.plugins.workflow")
    Workflow, WorkflowPlugin = workflow_module.Workflow, workflow_module.WorkflowPlugin
    chancy, client, _ = await make(WorkflowPlugin(), leadership())
    job = Job(func=FUNC, queue="wf")
    ids = []
    for i in range(5):
        workflow = (
            Workflow(f"flow-{i}")
            .add("a", job)
            .add("b", job, dependencies=["a"])
            .add("c", job, dependencies=["a"])
        )
        ids.append(await WorkflowPlugin.push(chancy, workflow))
    # The leader's pass (run here by hand) pushes the first step of each.
    await WorkflowPlugin().run_once(chancy)

    listed = (await client.get("/api/v1/workflows")).json()
    assert [w["id"] for w in listed] == ids[::-1]
    first = listed[-1]
    assert first["name"] == "flow-0"
    assert first["state"] == "running"
    assert first["total_steps"] == 3
    assert first["step_counts"] == {"pending": 1, "waiting": 2}

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", "pagination": "true"}
        if cursor:
            params["before"] = cursor
        page = (await client.get("/api/v1/workflows", params=params)).json()
        seen += [w["id"] for w in page["items"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert seen == ids[::-1]

    assert (await client.get("/api/v1/workflows?state=completed")).json() == []
    assert len((await client.get("/api/v1/workflows?state=running")).json()) == 5
    bad = await client.get("/api/v1/workflows?state=sideways")
    assert bad.status_code == 422
    assert "unknown workflow state" in bad.json()["error"]
    assert (await client.get("/api/v1/workflows?limit=x")).status_code == 422

    detail = (await client.get(f"/api/v1/workflows/{ids[0]}")).json()
    assert detail["id"] == ids[0]
    assert detail["name"] == "flow-0"
    assert set(detail["steps"]) == {"a", "b", "c"}
    step_a = detail["steps"]["a"]
    assert step_a["state"] == "pending"
    assert step_a["job_id"]
    assert step_a["job"]["func"] == FUNC
    assert detail["steps"]["b"] == {
        "step_id": "b",
        "job": step_a["job"],
        "dependencies": ["a"],
        "state": None,
        "job_id": None,
    }
    for missing in ("00000000-0000-0000-0000-000000000000", "nope"):
        response = await client.get(f"/api/v1/workflows/{missing}")
        assert response.status_code == 404
        assert response.json() == {"error": "Workflow not found"}


async def test_metrics_routes_and_prometheus(make: Factory) -> None:
    metrics_module = pytest.importorskip("chancy.plugins.metrics")
    metrics = metrics_module.Metrics(sync_interval=3600, collection_interval=3600)
    chancy, client, _ = await make(metrics, leadership(), metrics_token="scrape-me")
    worker = Worker(
        chancy, register_signal_handlers=False, queue_change_poll_interval=60
    )
    await worker.start()
    try:
        await worker.increment_counter("app:emails:sent", 3)
        await worker.record_gauge("app:cache:size", 12)
        await metrics.sync(worker, chancy)

        listing = (await client.get("/api/v1/metrics")).json()
        assert listing["categories"]["app"] == ["cache", "emails"]
        assert listing["count"] >= 2

        detail = (await client.get("/api/v1/metrics/app:emails?resolution=1min")).json()
        assert list(detail) == ["app:emails:sent"]
        assert detail["app:emails:sent"]["type"] == "counter"
        [point] = detail["app:emails:sent"]["data"]
        assert point["value"] == 3
        assert point["timestamp"].endswith("+00:00")
        default = (await client.get("/api/v1/metrics/app:emails")).json()
        assert default["app:emails:sent"]["data"][0]["value"] == 3  # 5min
        live = (
            await client.get(f"/api/v1/metrics/app?worker_id={worker.worker_id}")
        ).json()
        assert set(live) == {"app:emails:sent", "app:cache:size"}
        bad = await client.get("/api/v1/metrics/app?resolution=2min")
        assert bad.status_code == 422
        assert "unknown resolution" in bad.json()["error"]

        text = await client.get("/metrics")
        assert text.status_code == 200
        assert text.headers["content-type"].startswith("text/plain")
        assert "chancy_app_emails_sent_total 3" in text.text

        transport = client._transport
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test"
        ) as anon:
            assert (await anon.get("/metrics")).status_code == 401
            wrong = await anon.get("/metrics", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            scraped = await anon.get(
                "/metrics", headers={"Authorization": "Bearer scrape-me"}
            )
            assert scraped.status_code == 200
            assert "chancy_app_emails_sent_total 3" in scraped.text
            # The metrics token opens /metrics only.
            other = await anon.get(
                "/api/v1/metrics", headers={"Authorization": "Bearer scrape-me"}
            )
            assert other.status_code == 401
    finally:
        await worker.stop()


class HookApiPlugin(ApiPlugin):
    def routes(self) -> list[RouteT]:
        return [
            {
                "path": "/api/v1/hooked/class",
                "endpoint": self.hello,
                "methods": ["GET"],
                "name": "hooked_class",
            }
        ]

    async def hello(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        return json_response({"from": self.name()})


def _hook_module() -> types.ModuleType:
    module = types.ModuleType("chancy_web_test_hooks")

    async def as_dict(request: Request, *, chancy: Chancy, worker: Worker) -> Any:
        return {"prefix": chancy.prefix, "worker": worker.worker_id}

    async def public(request: Request, *, chancy: Chancy, worker: Worker) -> Any:
        return {"public": True}

    async def raw(request: Request) -> Response:
        return PlainTextResponse("raw route")

    def chancy_web_routes(chancy: Chancy) -> list[Any]:
        return [
            {"path": "/api/v1/hooked/dict", "endpoint": as_dict, "methods": ["GET"]},
            {
                "path": "/api/v1/hooked/public",
                "endpoint": public,
                "methods": ["GET"],
                "auth": False,
            },
            HookApiPlugin,
            Route("/hooked/raw", raw),
            42,
        ]

    module.chancy_web_routes = hookimpl(chancy_web_routes)  # type: ignore[attr-defined]
    return module


async def test_chancy_web_routes_hook(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    _chancy, client, _ = await make(_hook_module())
    assert "ignoring 42 from chancy_web_routes" in caplog.text
    hooked = (await client.get("/api/v1/hooked/dict")).json()
    assert hooked["prefix"] == "chancy_"
    assert (await client.get("/api/v1/hooked/class")).json() == {
        "from": "HookApiPlugin"
    }
    assert (await client.get("/hooked/raw")).text == "raw route"
    client.cookies.clear()
    assert (await client.get("/api/v1/hooked/dict")).status_code == 401
    assert (await client.get("/api/v1/hooked/class")).status_code == 401
    assert (await client.get("/api/v1/hooked/public")).json() == {"public": True}


class BrokenPlugin(Plugin):
    @staticmethod
    def get_identifier() -> str:
        return "test.broken_api"

    def api_plugin(self) -> str | None:
        return "no.such.module.ApiPlugin"


async def test_a_broken_api_plugin_is_logged_and_skipped(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    _, client, _ = await make(BrokenPlugin())
    assert "routes of the plugin test.broken_api could not be loaded" in caplog.text
    assert (await client.get("/api/v1/queues")).status_code == 200
