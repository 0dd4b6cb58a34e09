"""The dashboard in a real browser: headless Chromium driven by selenium,
against a live server (a real worker on PostgreSQL).

Needs Chromium and its driver from the distribution (Debian: ``apt-get
install chromium chromium-driver``, giving ``/usr/bin/chromium`` and
``/usr/bin/chromedriver``); without them these tests skip and say so. On a
failure, a screenshot and the page's HTML are written to the directory the
failure message names.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from chancy import Chancy, Job, Queue, hookimpl
from chancy.plugin import Plugin
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.web import Param, Reply, WebPage, WebRoute
from chancy.plugins.web.testing import LiveServer

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

try:
    from chancy.plugins.cron import Cron
    from chancy.plugins.metrics import Metrics
    from chancy.plugins.workflow import Workflow, WorkflowPlugin
except ImportError:  # pragma: no cover - the isolated chancy-web env
    Cron = Metrics = Workflow = WorkflowPlugin = None  # type: ignore[assignment,misc]

INSTALL = (
    "install Chromium and its driver from the distribution's packages"
    " (Debian/Ubuntu: apt-get install -y chromium chromium-driver)"
)
NOOP = "chancy_testjobs.async_noop"
FAIL = "chancy_testjobs.async_fail"
#: Markup that must show as text wherever server data is displayed.
HOSTILE = (
    '"><img src=x id=pwned onerror="window.__xss=1"><script>window.__xss=2</script>'
)
HOSTILE_QUEUE = "<img src=x onerror=window.__xss=3>"
HOSTILE_FUNC = "evil.<script>window.__xss=4</script>"
WAIT = 15.0


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _binary("chromium", "chromium-browser")
CHROMEDRIVER = _binary("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason=f"no Chromium or chromedriver on PATH: {INSTALL}",
)


# ---------------------------------------------------------------------------
# A third-party plugin with a page
# ---------------------------------------------------------------------------


class Gadgets(Plugin):
    @staticmethod
    def get_identifier() -> str:
        return "thirdparty.gadgets"


async def get_gadgets(request: Any, *, chancy: Chancy, worker: Any) -> Any:
    """Every gadget."""
    return {"items": [{"name": "sprocket"}, {"name": HOSTILE}]}


def gadgets_hooks(static: Path) -> types.ModuleType:
    module = types.ModuleType("gadgets_hooks")

    def chancy_web_routes(chancy: Chancy) -> list[Any]:
        if Gadgets.get_identifier() not in chancy.plugins:
            return []
        return [
            WebRoute(
                "/api/v1/gadgets",
                get_gadgets,
                params=[Param("q", {"type": "string"})],
                responses={200: Reply("Gadgets", {"type": "object"})},
            ),
            WebPage(
                plugin="gadgets",
                path="/gadgets",
                module="gadgets.js",
                directory=static,
                title="Gadgets",
            ),
        ]

    module.chancy_web_routes = hookimpl(chancy_web_routes)  # type: ignore[attr-defined]
    return module


GADGETS_JS = """\
import { api, h, pageHeader, table } from "../../kit.js";

export default async function mount(view, ctx) {
  ctx.setTitle("Gadgets");
  const data = await api.get("/api/v1/gadgets", null, { signal: ctx.signal });
  view.append(
    pageHeader("Gadgets", { subtitle: "From a third-party plugin." }),
    table([{ label: "Name", render: (g) => h("span", { class: "gadget" }, g.name) }],
      data.items, { caption: "Gadgets" }),
  );
}
"""


# ---------------------------------------------------------------------------
# The server and the browser
# ---------------------------------------------------------------------------


async def _seed(chancy: Chancy) -> dict[str, Any]:
    await chancy.declare(Queue("web", executor=Chancy.Executor.Async, concurrency=4))
    await chancy.declare(Queue(HOSTILE_QUEUE, executor=Chancy.Executor.Async))
    # A paused queue keeps its jobs pending for the bulk actions.
    await chancy.declare(Queue("held", executor=Chancy.Executor.Async))
    await chancy.pause_queue("held")
    done = [
        await chancy.push(Job(func=NOOP, queue="web", kwargs={"note": HOSTILE})),
        await chancy.push(Job(func=FAIL, queue="web", kwargs={"message": HOSTILE})),
        await chancy.push(Job(func=NOOP, queue=HOSTILE_QUEUE, kwargs={"i": 1})),
    ]
    await chancy.wait_for_jobs(done, interval=0.05, timeout=30)
    held = [
        await chancy.push(Job(func=NOOP, queue="held", kwargs={"i": i}))
        for i in range(3)
    ]
    hostile_func = await chancy.push(Job(func=HOSTILE_FUNC, queue="held"))
    undeclared = await chancy.push(Job(func=NOOP, queue="nobody-declared-this"))
    await chancy.push(Job(func=NOOP, queue="declare-me"))
    seeds: dict[str, Any] = {
        "succeeded": str(done[0].identifier),
        "failed": str(done[1].identifier),
        "held": [str(r.identifier) for r in held],
        "hostile_func": str(hostile_func.identifier),
        "undeclared": str(undeclared.identifier),
    }
    if Cron is not None:
        await Cron.schedule(
            chancy, "*/5 * * * *", Job(func=NOOP, queue="web", unique_key="every-5")
        )
    if WorkflowPlugin is not None:
        workflow = (
            Workflow("seeded")
            .add("a", Job(func=NOOP, queue="web"))
            .add("b", Job(func=NOOP, queue="web"), dependencies=["a"])
        )
        seeds["workflow"] = str(await WorkflowPlugin.push(chancy, workflow))
    return seeds


@pytest.fixture(scope="module")
def server(
    chancy_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    static = tmp_path_factory.mktemp("gadgets")
    (static / "gadgets.js").write_text(GADGETS_JS)
    plugins: list[Any] = [ImmediateLeadership(), Gadgets(), gadgets_hooks(static)]
    if Cron is not None:
        plugins += [
            Cron(),
            WorkflowPlugin(),
            Metrics(sync_interval=1, collection_interval=3600),
        ]
    live = LiveServer(
        chancy_dsn,
        plugins=plugins,
        worker_options={"queue_change_poll_interval": 60},
    )
    with live:
        live.seeds = live.call(_seed)  # type: ignore[attr-defined]
        yield live


class Page:
    """A Chromium tab on the dashboard, with the checks every test uses."""

    def __init__(self, driver: Any, server: LiveServer, artifacts: Path) -> None:
        self.driver = driver
        self.server = server
        self.artifacts = artifacts

    # -- navigation -------------------------------------------------------------

    def open(self, route: str = "/") -> None:
        self.driver.get(f"{self.server.url}/#{route}")

    def go(self, route: str) -> None:
        """Change the route inside the running dashboard (no reload)."""
        self.driver.execute_script("location.hash = arguments[0]", "#" + route)

    def wait(self, condition: Callable[[Any], Any], what: str) -> Any:
        try:
            return WebDriverWait(self.driver, WAIT, poll_frequency=0.05).until(
                condition
            )
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {what}") from None

    def find(self, css: str) -> Any:
        return self.wait(
            lambda d: (
                d.find_element(By.CSS_SELECTOR, css)
                if d.find_elements(By.CSS_SELECTOR, css)
                else None
            ),
            css,
        )

    def rendered(self, route: str, heading: str | None = None) -> str:
        """Go to ``route`` and wait until its page has rendered; its text."""
        self.go(route)
        self.wait(
            lambda d: d.execute_script(
                "const m = document.querySelector('main.view');"
                " return m && location.hash === arguments[0]"
                " && m.querySelector('h1') && !m.querySelector('.loading');",
                "#" + route,
            ),
            f"the page {route}",
        )
        text = self.find("main.view").text
        if heading is not None:
            assert heading in self.find("main.view h1").text, (route, text[:500])
        errors = self.driver.find_elements(By.CSS_SELECTOR, "main.view .callout.error")
        assert not errors, f"{route}: {errors[0].text}"
        return str(text)

    def login(self) -> None:
        self.open("/login")
        self.find("#login-user").send_keys("admin")
        self.find("#login-pass").send_keys(self.server.password)
        self.find("form button[type=submit]").click()
        self.find("nav.sidebar")

    # -- checks -----------------------------------------------------------------

    def console_errors(self) -> list[str]:
        return [
            entry["message"]
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE"
        ]

    def assert_no_xss(self) -> None:
        flag = self.driver.execute_script("return window.__xss")
        assert flag is None, f"injected markup ran (window.__xss = {flag})"
        assert not self.driver.find_elements(By.CSS_SELECTOR, "#pwned, img[src='x']")

    def api(self) -> httpx.Client:
        token = self.driver.execute_script(
            "return sessionStorage.getItem('chancy.token')"
        )
        return httpx.Client(
            base_url=self.server.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    @contextlib.contextmanager
    def evidence(self) -> Iterator[None]:
        """On failure: a screenshot and the HTML, named in the message."""
        try:
            yield
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            self.artifacts.mkdir(parents=True, exist_ok=True)
            shot = self.artifacts / "failure.png"
            with contextlib.suppress(Exception):
                self.driver.save_screenshot(str(shot))
                (self.artifacts / "page.html").write_text(self.driver.page_source)
                (self.artifacts / "console.json").write_text(
                    json.dumps(self.driver.get_log("browser"), indent=2)
                )
            raise AssertionError(
                f"{exc}\n(screenshot, HTML and console log in {self.artifacts})"
            ) from exc


@pytest.fixture
def page(server: LiveServer, tmp_path: Path) -> Iterator[Page]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER, log_output=os.devnull)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield Page(driver, server, tmp_path / "artifacts")
    finally:
        driver.quit()


# ---------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------


def test_log_in_and_every_page_renders_without_console_errors(
    page: Page, server: LiveServer
) -> None:
    seeds = server.seeds  # type: ignore[attr-defined]
    with page.evidence():
        page.open("/")
        page.find("#login-user")  # not logged in: the login form
        page.login()
        # Before the login, the API refused the dashboard (as it should).
        assert all("401" in m for m in page.console_errors())
        routes = [
            ("/", "Overview"),
            ("/jobs", "All jobs"),
            *[(f"/jobs/{s}", None) for s in ("pending", "running", "succeeded")],
            ("/jobs/failed", "Failed jobs"),
            ("/jobs/retrying", None),
            (f"/job/{seeds['succeeded']}", None),
            (f"/job/{seeds['failed']}", None),
            ("/queues", "Queues"),
            ("/queues/web", "web"),
            ("/workers", "Workers"),
            ("/gossip", "Gossip"),
            ("/system", "System"),
            ("/gadgets", "Gadgets"),
        ]
        if Cron is not None:
            routes += [
                ("/crons", "Cron"),
                ("/crons/every-5", "every-5"),
                ("/workflows", "Workflows"),
                (f"/workflows/{seeds['workflow']}", "seeded"),
                ("/metrics", "Metrics"),
                ("/metrics/queue", None),
            ]
        for route, heading in routes:
            page.rendered(route, heading)
            assert page.console_errors() == [], route
        page.rendered("/workers", "Workers")
        worker_id = page.find("main.view table a.mono").text
        page.rendered(f"/workers/{worker_id}")
        assert page.console_errors() == []
        # The failed job: attempts counted from 1, never "Attempt 0".
        text = page.rendered(f"/job/{seeds['failed']}")
        assert "Attempt 1 of 1 failed" in text
        assert "Attempt 0" not in text
        assert "1 of 1 used" in text


def test_the_navigation_counts_jobs_and_finds_a_job_by_id(
    page: Page, server: LiveServer
) -> None:
    seeds = server.seeds  # type: ignore[attr-defined]
    with page.evidence():
        page.login()
        page.wait(
            lambda d: d.find_element(By.CSS_SELECTOR, '[data-count="failed"]').text,
            "the failed count",
        )
        with page.api() as client:
            counts = client.get("/api/v1/jobs/counts").json()["counts"]
        assert page.find('[data-count="failed"]').text == str(counts["failed"])
        assert page.find('[data-count="undeclared"]').text == "!"
        nav = page.find("nav.sidebar").text
        assert "Gadgets" in nav
        if Cron is not None:
            assert {"Cron", "Workflows", "Metrics"} <= set(nav.split("\n"))
        box = page.find("#job-search")
        box.send_keys(seeds["failed"].upper() + "\n")
        page.wait(
            lambda d: (
                d.execute_script("return location.hash") == f"#/job/{seeds['failed']}"
            ),
            "the job page",
        )
        assert seeds["failed"] in page.rendered(f"/job/{seeds['failed']}")


def test_hostile_payloads_show_as_text(page: Page, server: LiveServer) -> None:
    seeds = server.seeds  # type: ignore[attr-defined]
    with page.evidence():
        page.login()
        text = page.rendered(f"/job/{seeds['succeeded']}")
        assert "onerror" in text and "<script>" in text  # kwargs, as text
        text = page.rendered(f"/job/{seeds['failed']}")
        assert HOSTILE in text  # the traceback's message
        text = page.rendered(f"/job/{seeds['hostile_func']}")
        assert HOSTILE_FUNC in text
        text = page.rendered("/jobs")
        assert HOSTILE_FUNC in text and HOSTILE_QUEUE in text
        text = page.rendered("/queues")
        assert HOSTILE_QUEUE in text
        assert "nobody-declared-this" in text  # the undeclared queue's hint
        page.rendered(f"/queues/{quote(HOSTILE_QUEUE, safe='')}", HOSTILE_QUEUE)
        text = page.rendered("/gadgets")
        assert HOSTILE in text
        page.rendered("/")
        page.assert_no_xss()
        assert page.console_errors() == []


def test_bulk_actions_and_queue_edits(page: Page, server: LiveServer) -> None:
    seeds = server.seeds  # type: ignore[attr-defined]
    with page.evidence():
        page.login()
        page.rendered("/jobs/pending?queue=held", "Pending jobs")
        rows = page.driver.find_elements(By.CSS_SELECTOR, "table.jobs-table tbody tr")
        assert len(rows) == 4  # three held jobs and the hostile one
        for checkbox in page.driver.find_elements(
            By.CSS_SELECTOR, "table.jobs-table tbody input[type=checkbox]"
        )[:2]:
            checkbox.click()
        assert page.find(".sel-count").text == "2 selected"
        page.find('button[data-action="cancel"]').click()
        page.find("dialog[open] button[type=submit]").click()
        page.wait(
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, "table.jobs-table tbody tr")) == 2
            ),
            "the cancelled jobs to leave the pending list",
        )
        with page.api() as client:
            states = [
                client.get(f"/api/v1/jobs/{i}").json()["state"] for i in seeds["held"]
            ]
        assert sorted(states) == ["failed", "pending", "pending"]
        with page.api() as client:
            newest = client.get(f"/api/v1/jobs/{seeds['hostile_func']}").json()
        assert newest["state"] == "failed"
        assert newest["errors"][-1]["cancelled"] is True

        page.rendered("/queues/web", "web")
        page.wait(
            lambda d: [
                b
                for b in d.find_elements(By.CSS_SELECTOR, "main.view button")
                if b.text == "Edit"
            ],
            "the Edit button",
        )[0].click()
        concurrency = page.find("form.queue-form input[name=concurrency]")
        concurrency.clear()
        concurrency.send_keys("7")
        page.find("form.queue-form button[type=submit]").click()
        page.wait(
            lambda d: server.call(lambda c: c.get_queue("web")).concurrency == 7,
            "the queue to be saved",
        )
        assert page.console_errors() == []


def test_undeclared_queue_can_be_declared_from_the_queues_page(
    page: Page, server: LiveServer
) -> None:
    with page.evidence():
        page.login()
        page.rendered("/queues", "Queues")
        page.find('button[data-declare="declare-me"]').click()
        name = page.find("#new-queue form.queue-form input[name=name]")
        assert name.get_attribute("value") == "declare-me"
        page.find("#new-queue form.queue-form button[type=submit]").click()
        page.wait(
            lambda d: d.execute_script("return location.hash") == "#/queues/declare-me",
            "the new queue's page",
        )
        queue = server.call(lambda c: c.get_queue("declare-me"))
        assert queue.name == "declare-me"
        assert page.console_errors() == []


def test_logout_ends_the_session(page: Page, server: LiveServer) -> None:
    with page.evidence():
        page.login()
        page.rendered("/", "Overview")
        cookies = {c["name"]: c["value"] for c in page.driver.get_cookies()}
        [name] = [n for n in cookies if n.startswith("chancy_session_")]
        token = page.driver.execute_script(
            "return sessionStorage.getItem('chancy.token')"
        )
        with httpx.Client(base_url=server.url, timeout=30) as client:
            client.cookies.set(name, cookies[name])
            assert client.get("/api/v1/queues").status_code == 200
        [logout] = [
            b
            for b in page.driver.find_elements(By.CSS_SELECTOR, "header.topbar button")
            if b.text == "Log out"
        ]
        logout.click()
        page.find("#login-user")
        # The old cookie and the old token no longer work.
        with httpx.Client(base_url=server.url, timeout=30) as client:
            client.cookies.set(name, cookies[name])
            assert client.get("/api/v1/queues").status_code == 401
        bearer = {"Authorization": f"Bearer {token}"}
        refused = httpx.get(server.url + "/api/v1/queues", headers=bearer, timeout=30)
        assert refused.status_code == 401
        # Going back into the dashboard asks for a login again.
        page.open("/queues")
        page.find("#login-user")
        assert page.console_errors() == [] or all(
            "401" in message for message in page.console_errors()
        )


def test_a_missing_job_says_so(page: Page) -> None:
    with page.evidence():
        page.login()
        page.go(f"/job/{uuid.uuid4()}")
        page.wait(
            lambda d: (
                "This job does not exist"
                in d.find_element(By.CSS_SELECTOR, "main.view").text
            ),
            "the not-found message",
        )


HOSTILE_KEY = "<img src=x onerror=window.__xss=5>"
PROGRESS = "chancy_testjobs.async_report_progress"
RETURN = "chancy_testjobs.async_return_value"


def _api_job(page: Page, job_id: str) -> dict[str, Any]:
    with page.api() as client:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
    return job


def test_job_page_shows_progress_result_and_concurrency_key(
    page: Page, server: LiveServer
) -> None:
    async def push(chancy: Chancy) -> tuple[str, str]:
        done = await chancy.push(
            Job(
                func=RETURN,
                queue="web",
                kwargs={"value": {"html": HOSTILE, "rows": [1, 2]}},
            ).with_concurrency_key(HOSTILE_KEY)
        )
        await chancy.wait_for_job(done, interval=0.05, timeout=30)
        # Reports "1 of 2", then waits (cancelled below).
        running = await chancy.push(
            Job(
                func=PROGRESS,
                queue="web",
                kwargs={"steps": 2, "delay": 120, "message": HOSTILE},
            )
        )
        return str(done.identifier), str(running.identifier)

    done, running = server.call(push)
    try:
        with page.evidence():
            page.login()
            page.wait(
                lambda d: _api_job(page, running)["progress"] is not None,
                "the running job's first progress report",
            )
            text = page.rendered(f"/job/{running}")
            bar = page.find("main.view .job-progress progress")
            assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("1", "2")
            assert "Progress" in page.find("main.view .job-progress h2").text
            assert "1 of 2 (50%)" in text
            assert f"{HOSTILE} 1" in page.find("main.view .progress-message").text
            assert "Not finished yet." in page.find("main.view .job-result").text
            # The running list shows the bar too.
            page.rendered("/jobs/running")
            page.find("table.jobs-table .progress-view.compact progress")

            text = page.rendered(f"/job/{done}")
            result = page.find("main.view .job-result pre.json").text
            assert '"html"' in result and "onerror" in result and '"rows"' in result
            assert page.find("main.view code.concurrency-key").text == HOSTILE_KEY
            assert not page.driver.find_elements(By.CSS_SELECTOR, ".job-progress")
            # The key links to the jobs that carry it.
            page.find("main.view a.key-jobs").click()
            page.wait(
                lambda d: (
                    [
                        a.get_attribute("href").rsplit("/", 1)[-1]
                        for a in d.find_elements(
                            By.CSS_SELECTOR, "table.jobs-table td.func a"
                        )
                    ]
                    == [done]
                ),
                "the jobs with this key",
            )

            # Cancelled, the job keeps its last progress.
            with page.api() as client:
                cancelled = client.post(f"/api/v1/jobs/{running}/cancel", json={})
            assert cancelled.status_code == 200, cancelled.text
            page.rendered(f"/job/{running}")
            page.wait(
                lambda d: (
                    "Last progress"
                    in d.find_element(By.CSS_SELECTOR, "main.view .job-progress").text
                ),
                "the last progress of the cancelled job",
            )
            page.assert_no_xss()
            assert page.console_errors() == []
    finally:
        with page.api() as client:
            client.post(f"/api/v1/jobs/{running}/cancel", json={})


def test_queue_limits_show_and_can_be_edited(page: Page, server: LiveServer) -> None:
    server.call(
        lambda chancy: chancy.declare(
            Queue(
                "limited",
                executor=Chancy.Executor.Async,
                global_concurrency=3,
                key_concurrency=1,
                key_rate_limit=10,
                key_rate_limit_window=60,
            ),
            upsert=True,
        )
    )
    with page.evidence():
        page.login()
        page.rendered("/queues", "Queues")
        [row] = [
            r
            for r in page.driver.find_elements(By.CSS_SELECTOR, "main.view tbody tr")
            if r.text.startswith("limited")
        ]
        assert "3 at once" in row.text and "1 per key" in row.text
        assert "10/60 s per key" in row.text

        text = page.rendered("/queues/limited", "limited")
        assert "3 at once, across all workers" in text
        assert "1 at once per concurrency key" in text
        assert "10 per 60 seconds per key" in text

        page.wait(
            lambda d: [
                b
                for b in d.find_elements(By.CSS_SELECTOR, "main.view button")
                if b.text == "Edit"
            ],
            "the Edit button",
        )[0].click()
        form = "form.queue-form"
        assert page.find(f"{form} input[name=key_concurrency]").get_attribute(
            "value"
        ) == ("1")

        def fill(name: str, value: str) -> None:
            field = page.find(f"{form} input[name={name}]")
            field.clear()
            if value:
                field.send_keys(value)

        # A rate without its window: refused by the form.
        fill("key_rate_limit_window", "")
        page.find(f"{form} button[type=submit]").click()
        page.wait(
            lambda d: (
                "per-key rate limit and its window"
                in d.find_element(By.CSS_SELECTOR, f"{form} .form-error").text
            ),
            "the form's error",
        )
        # Beyond what PostgreSQL can store: refused by the API, named.
        fill("key_rate_limit_window", "60")
        fill("global_concurrency", str(2**31))
        page.find(f"{form} button[type=submit]").click()
        page.wait(
            lambda d: (
                "global_concurrency must be an integer from 1"
                in d.find_element(By.CSS_SELECTOR, f"{form} .form-error").text
            ),
            "the API's error in the form",
        )
        stored = server.call(lambda c: c.get_queue("limited"))
        assert (stored.global_concurrency, stored.key_concurrency) == (3, 1)

        fill("global_concurrency", "")
        fill("key_concurrency", "2")
        page.find(f"{form} button[type=submit]").click()
        page.wait(
            lambda d: (
                server.call(lambda c: c.get_queue("limited")).key_concurrency == 2
            ),
            "the queue to be saved",
        )
        stored = server.call(lambda c: c.get_queue("limited"))
        assert stored.global_concurrency is None
        assert (stored.key_rate_limit, stored.key_rate_limit_window) == (10, 60)
        text = page.rendered("/queues/limited", "limited")
        assert "Cluster-wide concurrency\nno limit" in text
        assert "2 at once per concurrency key" in text
        # The browser logs the refused PATCH; nothing else went wrong.
        assert all(
            "/api/v1/queues/limited" in m and "422" in m for m in page.console_errors()
        ), page.console_errors()
