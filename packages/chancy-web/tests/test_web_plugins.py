"""Routes contributed by other plugins (cron, workflows, metrics, hookimpls)
and the Prometheus endpoint."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
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


# ---------------------------------------------------------------------------
# A third-party plugin: an API route and a dashboard page, the way
# chancy-cron, chancy-workflow and chancy-metrics add theirs
# ---------------------------------------------------------------------------


class Things(Plugin):
    """A plugin of another distribution (its entry-point module is below)."""

    @staticmethod
    def get_identifier() -> str:
        return "thirdparty.things"


async def get_things(request: Request, *, chancy: Chancy, worker: Worker) -> Any:
    """Every thing, optionally of one colour."""
    colour = request.query_params.get("colour")
    things = [{"name": "kettle", "colour": "red"}, {"name": "mug", "colour": "blue"}]
    return {"items": [t for t in things if colour in (None, t["colour"])]}


def things_module(static: Path) -> types.ModuleType:
    """The plugin's hooks module, as its entry point would register it."""
    from chancy.plugins.web import Param, Reply, WebPage, WebRoute

    module = types.ModuleType("thirdparty_things_hooks")

    def chancy_web_routes(chancy: Chancy) -> list[Any]:
        if Things.get_identifier() not in chancy.plugins:
            return []
        thing = {
            "type": "object",
            "properties": {"name": {"type": "string"}, "colour": {"type": "string"}},
            "required": ["name", "colour"],
        }
        return [
            WebRoute(
                "/api/v1/things",
                get_things,
                name="get_things",
                tags=["things"],
                params=[Param("colour", {"type": "string"}, "Only this colour.")],
                schemas={"Thing": thing},
                responses={
                    200: Reply(
                        "The things.",
                        {
                            "type": "object",
                            "properties": {
                                "items": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Thing"},
                                }
                            },
                        },
                    )
                },
            ),
            WebPage(
                plugin="things",
                path="/things",
                module="things.js",
                directory=static,
                title="Things",
                order=5,
            ),
            WebPage(
                plugin="things",
                path="/things/:name",
                module="thing.js",
                directory=static,
            ),
        ]

    module.chancy_web_routes = hookimpl(chancy_web_routes)  # type: ignore[attr-defined]
    return module


def things_static(tmp_path: Path) -> Path:
    static = tmp_path / "things-static"
    static.mkdir()
    (static / "things.js").write_text(
        'import { api, h, pageHeader } from "../../kit.js";\n'
        "export default async function mount(view, ctx) {\n"
        '  const data = await api.get("/api/v1/things", null, { signal: ctx.signal });\n'
        '  view.append(pageHeader("Things"), h("ul", { id: "things" },'
        ' data.items.map((t) => h("li", {}, t.name))));\n'
        "}\n"
    )
    (static / "thing.js").write_text(
        "export default function mount(view, ctx) {\n"
        '  view.append(document.createTextNode("thing " + ctx.params.name));\n'
        "}\n"
    )
    return static


async def test_a_third_party_plugin_adds_a_route_and_a_page(
    make: Factory, tmp_path: Path
) -> None:
    static = things_static(tmp_path)
    _, client, _ = await make(Things(), things_module(static))
    things = await client.get("/api/v1/things", params={"colour": "red"})
    assert things.json() == {"items": [{"name": "kettle", "colour": "red"}]}

    config = (await client.get("/api/v1/configuration")).json()
    assert config["pages"] == [
        {
            "plugin": "things",
            "path": "/things",
            "module": "plugins/things/things.js",
            "title": "Things",
            "nav": True,
            "order": 5,
        },
        {
            "plugin": "things",
            "path": "/things/:name",
            "module": "plugins/things/thing.js",
            "title": None,
            "nav": False,
            "order": 100,
        },
    ]
    assert "GET /api/v1/things" in config["routes"]

    module = await client.get("/plugins/things/things.js")
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    assert module.text == (static / "things.js").read_text()
    for missing in (
        "/plugins/things/nope.js",
        "/plugins/things/../things-static/x",
        "/plugins/other/things.js",
    ):
        assert (await client.get(missing)).status_code == 404, missing

    document = (await client.get("/api/v1/openapi.json")).json()
    operation = document["paths"]["/api/v1/things"]["get"]
    assert operation["summary"] == "Every thing, optionally of one colour."
    assert operation["tags"] == ["things"]
    assert operation["parameters"] == [
        {
            "name": "colour",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "Only this colour.",
        }
    ]
    assert operation["security"] == [{"bearerAuth": []}, {"sessionCookie": []}]
    assert {"200", "401", "500"} <= set(operation["responses"])
    assert document["components"]["schemas"]["Thing"]["required"] == [
        "name",
        "colour",
    ]

    # Without a login: neither the route nor the document.
    client.cookies.clear()
    assert (await client.get("/api/v1/things")).status_code == 401
    assert (await client.get("/api/v1/openapi.json")).status_code == 401


async def test_a_disabled_plugin_adds_no_route_and_no_page(
    make: Factory, tmp_path: Path
) -> None:
    _, client, _ = await make(things_module(things_static(tmp_path)))
    assert (await client.get("/api/v1/things")).status_code == 404
    config = (await client.get("/api/v1/configuration")).json()
    assert config["pages"] == []
    assert (await client.get("/plugins/things/things.js")).status_code == 404


async def test_bad_pages_and_clashing_routes_are_left_out_with_a_log(
    make: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from chancy.plugins.web import WebPage, WebRoute

    async def other(request: Request, *, chancy: Chancy, worker: Worker) -> Any:
        return {"other": True}

    module = types.ModuleType("clashing_hooks")

    def chancy_web_routes(chancy: Chancy) -> list[Any]:
        return [
            WebRoute("/api/v1/queues", other),  # the core's
            WebPage(plugin="x", path="/x", module="missing.js", directory=tmp_path),
        ]

    module.chancy_web_routes = hookimpl(chancy_web_routes)  # type: ignore[attr-defined]
    _, client, _ = await make(module)
    assert "GET /api/v1/queues from clashing_hooks is ignored" in caplog.text
    assert "the dashboard page /x from clashing_hooks is left out" in caplog.text
    assert isinstance((await client.get("/api/v1/queues")).json(), list)
    assert (await client.get("/api/v1/configuration")).json()["pages"] == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "things"}, "path must start with '/'"),
        ({"methods": ["FETCH"]}, "unknown method 'FETCH'"),
        ({"responses": {200: {"description": "x"}}}, "Reply objects"),
        ({"path": "/a/{id}", "params": []}, None),
    ],
)
def test_web_route_declarations_are_checked(
    kwargs: dict[str, Any], message: str | None
) -> None:
    from chancy.plugins.web import WebRoute

    async def endpoint(request: Request, *, chancy: Chancy, worker: Worker) -> Any:
        return {}

    options: dict[str, Any] = {"path": "/a", **kwargs}
    if message is None:
        route = WebRoute(endpoint=endpoint, **options)
        assert [(p.name, p.location, p.required) for p in route.params] == [
            ("id", "path", True)
        ]
        return
    with pytest.raises((TypeError, ValueError), match=message.replace("(", r"\(")):
        WebRoute(endpoint=endpoint, **options)


# ---------------------------------------------------------------------------
# The original's spelling: api_plugin() naming an ApiPlugin with route dicts
# ---------------------------------------------------------------------------


class LegacyApiPlugin(ApiPlugin):
    """Written for the original Chancy."""

    def routes(self) -> list[RouteT]:
        return [
            {
                "path": "/api/v1/legacy/{thing}",
                "endpoint": self.legacy,
                "methods": ["GET", "POST"],
                "name": "legacy",
            }
        ]

    async def legacy(
        self, request: Request, *, chancy: Chancy, worker: Worker
    ) -> Response:
        return json_response({"thing": request.path_params["thing"]})


class LegacyPlugin(Plugin):
    @staticmethod
    def get_identifier() -> str:
        return "thirdparty.legacy"

    def api_plugin(self) -> str | None:
        return f"{__name__}.LegacyApiPlugin"


async def test_the_originals_api_plugin_still_adds_routes(make: Factory) -> None:
    _, client, _ = await make(LegacyPlugin())
    assert (await client.get("/api/v1/legacy/kettle")).json() == {"thing": "kettle"}
    assert (await client.post("/api/v1/legacy/mug", json={})).json() == {"thing": "mug"}
    document = (await client.get("/api/v1/openapi.json")).json()
    item = document["paths"]["/api/v1/legacy/{thing}"]
    assert set(item) == {"get", "post"}
    assert item["get"]["parameters"][0]["name"] == "thing"
    assert item["post"]["security"] == [{"bearerAuth": []}, {"sessionCookie": []}]


# ---------------------------------------------------------------------------
# The OpenAPI document covers every route
# ---------------------------------------------------------------------------

#: The routes that serve the dashboard's files, not the API.
DASHBOARD_ROUTES = {
    "/api",
    "/api/{rest:path}",
    "/plugins/{plugin}/{path:path}",
    "/",
    "/{path:path}",
}


async def test_every_registered_route_is_in_the_openapi_document(
    make: Factory, tmp_path: Path
) -> None:
    from starlette.routing import Route as StarletteRoute
    from starlette.routing import WebSocketRoute

    from chancy.plugins.web.openapi import openapi_path

    extra: list[Any] = [Things(), things_module(things_static(tmp_path))]
    extra.append(LegacyPlugin())
    extra.append(_hook_module())
    for name in ("cron", "workflow", "metrics"):
        module = pytest.importorskip(f"chancy.plugins.{name}")
        extra.append(
            {
                "cron": lambda m: m.Cron(),
                "workflow": lambda m: m.WorkflowPlugin(),
                "metrics": lambda m: m.Metrics(),
            }[name](module)
        )
    _, client, _ = await make(*extra, leadership())
    document = (await client.get("/api/v1/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    asgi = client._transport.app  # type: ignore[attr-defined]
    missing = []
    undocumented = set()
    for route in asgi.routes:
        if route.path in DASHBOARD_ROUTES:
            undocumented.add(route.path)
            continue
        if isinstance(route, WebSocketRoute):
            methods = {"get"}
        else:
            assert isinstance(route, StarletteRoute)
            methods = {m.lower() for m in route.methods or ()} - {"head"}
        item = document["paths"].get(openapi_path(route.path), {})
        missing += [f"{m.upper()} {route.path}" for m in methods if m not in item]
    assert missing == []
    assert undocumented == DASHBOARD_ROUTES
    paths = document["paths"]
    for path in (
        "/api/v1/crons",
        "/api/v1/workflows/{id}",
        "/api/v1/metrics/{prefix}",
        "/api/v1/things",
        "/api/v1/legacy/{thing}",
        "/hooked/raw",
        "/api/v1/ws",
        "/api/v1/undeclared-queues",
    ):
        assert path in paths, path
    # Operation ids are unique; every operation documents its errors.
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for item in paths.values():
        for operation in item.values():
            if operation.get("x-chancy-undeclared"):
                continue
            assert "500" in operation["responses"], operation["operationId"]
    schemathesis = pytest.importorskip("schemathesis")
    loaded = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) == len(ids)
