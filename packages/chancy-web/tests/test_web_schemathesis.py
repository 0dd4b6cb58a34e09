"""The API against its own OpenAPI document: schemathesis generates requests
for every operation (the core's and the cron, workflow and metrics plugins')
from ``GET /api/v1/openapi.json`` and sends them to a live server (a real
worker on PostgreSQL, logged in with a bearer token).

Every answer must be a documented status code, of the documented content
type, matching the documented schema, and never a server error. The run is
bounded (about 300 requests) and derandomized, so it takes seconds and gives
the same verdict every time.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi import checks

from chancy import Chancy, Job, Queue
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.web.testing import LiveServer

try:  # the plugins' routes are checked too where they are installed
    from chancy.plugins.cron import Cron
except ImportError:  # pragma: no cover - the isolated chancy-web env
    Cron = None  # type: ignore[assignment,misc]
try:
    from chancy.plugins.workflow import Workflow, WorkflowPlugin
except ImportError:  # pragma: no cover
    WorkflowPlugin = None  # type: ignore[assignment,misc]
try:
    from chancy.plugins.metrics import Metrics
except ImportError:  # pragma: no cover
    Metrics = None  # type: ignore[assignment,misc]

#: Examples generated per operation (about 30 operations).
EXAMPLES = 10
#: Operations left out: the logout would revoke the token the run uses.
SKIPPED = {"POST /api/v1/logout"}
NOOP = "chancy_testjobs.async_noop"
FAIL = "chancy_testjobs.async_fail"
PROGRESS = "chancy_testjobs.async_report_progress"


async def _seed(chancy: Chancy) -> dict[str, Any]:
    """Something to show: queues, finished and failed jobs, a job waiting in
    an undeclared queue, a cron schedule and a workflow. Returns the ids and
    names the requests use as examples."""
    for name in ("web", "doomed"):
        await chancy.declare(Queue(name, executor=Chancy.Executor.Async, concurrency=4))
    refs = []
    for i in range(4):
        refs.append(await chancy.push(Job(func=NOOP, queue="web", kwargs={"i": i})))
    refs.append(
        await chancy.push(Job(func=FAIL, queue="web", max_attempts=2, priority=5))
    )
    # Stored results, progress, a concurrency key and a queue with limits.
    await chancy.declare(
        Queue(
            "limited",
            executor=Chancy.Executor.Async,
            global_concurrency=2,
            key_concurrency=1,
            key_rate_limit=5,
            key_rate_limit_window=60,
        )
    )
    refs.append(
        await chancy.push(
            Job(
                func=PROGRESS, queue="limited", kwargs={"steps": 3}
            ).with_concurrency_key("customer:1")
        )
    )
    waiting = await chancy.push(Job(func=NOOP, queue="nobody-declared-this"))
    await chancy.wait_for_jobs(refs, interval=0.05, timeout=30)
    if Cron is not None:
        await Cron.schedule(
            chancy, "*/5 * * * *", Job(func=NOOP, queue="web", unique_key="every-5")
        )
    workflow_id = None
    if WorkflowPlugin is not None:
        workflow = Workflow("seeded").add("a", Job(func=NOOP, queue="web"))
        workflow_id = await WorkflowPlugin.push(chancy, workflow)
    ids = [str(ref.identifier) for ref in refs]
    return {
        "jobs": [*ids[:2], ids[4], ids[5]],
        "retry": ids[2],
        "cancel": str(waiting.identifier),
        "delete": ids[3],
        "workflow": str(workflow_id),
    }


def _seeded_cases(seeds: dict[str, Any]) -> dict[tuple[str, str], list[Any]]:
    """Path parameters that exist, so that every operation is also tried on
    real rows (destructive ones on rows of their own), after the generated
    requests."""
    return {
        ("GET", "/api/v1/jobs/{id}"): [{"id": i} for i in seeds["jobs"]],
        ("DELETE", "/api/v1/jobs/{id}"): [{"id": seeds["delete"]}],
        ("POST", "/api/v1/jobs/{id}/retry"): [{"id": seeds["retry"]}],
        ("POST", "/api/v1/jobs/{id}/cancel"): [{"id": seeds["cancel"]}],
        ("GET", "/api/v1/queues/{name}"): [
            {"name": "web"},
            {"name": "default"},
            {"name": "limited"},
        ],
        ("PATCH", "/api/v1/queues/{name}"): [{"name": "web"}],
        ("DELETE", "/api/v1/queues/{name}"): [{"name": "doomed"}],
        ("POST", "/api/v1/queues/{name}/pause"): [{"name": "web"}],
        ("POST", "/api/v1/queues/{name}/resume"): [{"name": "web"}],
        ("GET", "/api/v1/workflows/{id}"): [{"id": seeds["workflow"]}],
        ("GET", "/api/v1/metrics/{prefix}"): [
            {"prefix": "queue"},
            {"prefix": "global:status"},
        ],
    }


@pytest.fixture(scope="module")
def server(chancy_dsn: str) -> Any:
    plugins: list[Any] = [ImmediateLeadership()]
    if Cron is not None:
        plugins.append(Cron())
    if WorkflowPlugin is not None:
        plugins.append(WorkflowPlugin())
    if Metrics is not None:
        plugins.append(Metrics(sync_interval=3600, collection_interval=3600))
    live = LiveServer(
        chancy_dsn,
        plugins=plugins,
        worker_options={"queue_change_poll_interval": 60},
    )
    with live:
        live.seeds = live.call(_seed)  # type: ignore[attr-defined]
        yield live


RESPONSE_CHECKS = [
    not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def _runner(
    operation: Any,
    label: str,
    base_url: str,
    session: requests.Session,
    headers: dict[str, str],
    statuses: list[tuple[str, Any, int]],
) -> Any:
    """A bounded, derandomized Hypothesis test of one operation."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        response = case.call(
            base_url=base_url, session=session, headers=headers, timeout=30
        )
        statuses.append((label, case.path_parameters, response.status_code))
        case.validate_response(response, checks=RESPONSE_CHECKS)

    return run


def test_every_operation_answers_as_documented(server: LiveServer) -> None:
    token = server.login()
    headers = {"Authorization": f"Bearer {token}"}
    document = httpx.get(
        server.url + "/api/v1/openapi.json", headers=headers, timeout=30
    ).json()
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    failures: list[str] = []
    tested = []
    statuses: list[tuple[str, Any, int]] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label in SKIPPED:
            continue
        tested.append(label)
        run = _runner(operation, label, server.url, session, headers, statuses)
        seeded = _seeded_cases(server.seeds)  # type: ignore[attr-defined]
        try:
            run()
            for path_parameters in seeded.get((label.split()[0], operation.path), []):
                case = operation.Case(
                    path_parameters=path_parameters,
                    body={}
                    if operation.method.upper() in ("POST", "PATCH")
                    else NOT_SET,
                    media_type="application/json",
                )
                response = case.call(
                    base_url=server.url, session=session, headers=headers, timeout=30
                )
                statuses.append((label, path_parameters, response.status_code))
                case.validate_response(response, checks=RESPONSE_CHECKS)
        except Unsatisfiable:
            failures.append(f"{label}: no example could be generated")
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
            failures.append(f"{label}:\n{exc}")
    assert not failures, "\n\n".join(failures)
    assert len(tested) >= 25, tested
    # Every operation was tried, and succeeded at least once (on real rows),
    # except the login (no password is known), the websocket (426) and,
    # without chancy-metrics, the Prometheus endpoint.
    succeeded = {label for label, _, status in statuses if status < 300}
    expected_to_fail = {"POST /api/v1/login", "GET /api/v1/ws"}
    if Metrics is None:
        expected_to_fail.add("GET /metrics")  # 404: no metrics plugin installed
    never = sorted(set(tested) - succeeded - expected_to_fail)
    assert not never, [s for s in statuses if s[0] in never]
