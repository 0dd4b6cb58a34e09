"""SentryPlugin in a real worker: jobs run by the executors against PostgreSQL.

Sentry is initialised with a transport that keeps the events it would send,
so the tests look at the events themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.plugin import Plugin
from chancy.plugins.sentry import SentryPlugin

QUEUE = "sentry"
WORKER_ID = "sentry-worker-1"
ASYNC = "chancy.executors.asyncex.AsyncExecutor"
THREADED = "chancy.executors.thread.ThreadedExecutor"
PROCESS = "chancy.executors.process.ProcessExecutor"
# Job functions shipped in chancy-core for test suites: importable by name
# from a child process too.
FAIL = "chancy_testjobs.fail"
ASYNC_FAIL = "chancy_testjobs.async_fail"
ASYNC_NOOP = "chancy_testjobs.async_noop"


class Collector(Transport):
    """Keeps the events Sentry would send."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(dict(event))


@pytest.fixture
def sentry_events() -> Iterator[list[dict[str, Any]]]:
    """Sentry initialised with a transport that collects events in this list.

    Ask for it before ``worker``, so that Sentry is set up when it starts.
    """
    transport = Collector()
    sentry_sdk.init(transport=transport, default_integrations=False)
    try:
        yield transport.events
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


def app(*plugins: Plugin) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        "chancy",
        [{"plugins": list(plugins), "no_default_plugins": True}],
        indirect=True,
    )


named_worker = pytest.mark.parametrize(
    "worker", [{"worker_id": WORKER_ID}], indirect=True
)


def plugin_of(chancy: Chancy) -> SentryPlugin:
    plugin = chancy.plugins["chancy.sentry_plugin"]
    assert isinstance(plugin, SentryPlugin)
    return plugin


async def serve(chancy: Chancy, worker: Worker, executor: str = ASYNC) -> None:
    """Declare the test queue and wait until the worker serves it."""
    await chancy.declare(
        Queue(
            QUEUE,
            executor=executor,
            concurrency=2,
            polling_interval=0.1,
            eager_polling=True,
        ),
        upsert=True,
    )
    async with asyncio.timeout(10):
        while QUEUE not in worker.executors:
            await asyncio.sleep(0.02)


async def run(chancy: Chancy, func: str, **fields: Any) -> QueuedJob:
    ref = await chancy.push(Job(func=func, queue=QUEUE, **fields))
    done = await chancy.wait_for_job(ref, interval=0.05, timeout=30)
    assert done is not None
    return done


@app(SentryPlugin(tags={"service": "billing"}))
@named_worker
@pytest.mark.parametrize(
    ("executor", "func"),
    [
        pytest.param(ASYNC, ASYNC_FAIL, id="async"),
        pytest.param(THREADED, FAIL, id="threaded"),
        pytest.param(PROCESS, FAIL, id="process"),
    ],
)
async def test_a_failing_job_is_reported_with_its_tags(
    sentry_events: list[dict[str, Any]],
    chancy: Chancy,
    worker: Worker,
    executor: str,
    func: str,
) -> None:
    await serve(chancy, worker, executor)
    job = await run(chancy, func, kwargs={"message": "card declined"})
    assert job.state is QueuedJob.State.FAILED
    assert "ValueError: card declined" in job.errors[0]["traceback"]

    (event,) = sentry_events
    exception = event["exception"]["values"][-1]
    assert (exception["type"], exception["value"]) == ("ValueError", "card declined")
    assert event["tags"] == {
        "chancy.func": func,
        "chancy.worker": WORKER_ID,
        "chancy.queue": QUEUE,
        "service": "billing",
    }
    assert event["extra"]["chancy.job_id"] == str(job.id)
    context = event["contexts"]["chancy"]
    assert (context["job_id"], context["state"], context["attempts"]) == (
        str(job.id),
        "failed",
        1,
    )
    if executor == PROCESS:
        # Raised in a child process: the worker has no frames, only the
        # child's traceback, which goes with the event.
        assert "ValueError: card declined" in event["extra"]["chancy.traceback"]
    else:
        frames = exception["stacktrace"]["frames"]
        assert frames[-1]["function"] == func.rpartition(".")[2]
        assert "chancy.traceback" not in event["extra"]


@app(SentryPlugin())
async def test_a_successful_job_sends_nothing(
    sentry_events: list[dict[str, Any]], chancy: Chancy, worker: Worker
) -> None:
    await serve(chancy, worker)
    ok = await run(chancy, ASYNC_NOOP)
    assert ok.state is QueuedJob.State.SUCCEEDED
    assert sentry_events == []
    # The same set-up does report a failure.
    failed = await run(chancy, ASYNC_FAIL)
    (event,) = sentry_events
    assert event["extra"]["chancy.job_id"] == str(failed.id)
    assert plugin_of(chancy).captured == 1


@app(SentryPlugin())
async def test_a_failing_report_does_not_stop_the_worker(
    sentry_events: list[dict[str, Any]],
    chancy: Chancy,
    worker: Worker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Sentry is down")

    plugin = plugin_of(chancy)
    await serve(chancy, worker)
    with monkeypatch.context() as patch:
        patch.setattr(sentry_sdk, "capture_exception", broken)
        job = await run(chancy, ASYNC_FAIL, kwargs={"message": "first"})
        assert job.state is QueuedJob.State.FAILED
        assert job.attempts == 1
        (error,) = job.errors
        assert "ValueError: first" in error["traceback"]
        assert plugin.capture_failures == 1
        assert "could not be reported to Sentry" in caplog.text
        assert "Sentry is down" in caplog.text
        # The worker carries on.
        ok = await run(chancy, ASYNC_NOOP)
        assert ok.state is QueuedJob.State.SUCCEEDED
    assert sentry_events == []
    again = await run(chancy, ASYNC_FAIL, kwargs={"message": "second"})
    assert again.state is QueuedJob.State.FAILED
    (event,) = sentry_events
    assert event["exception"]["values"][-1]["value"] == "second"
    assert (plugin.captured, plugin.capture_failures) == (1, 1)


@pytest.mark.parametrize(
    ("chancy", "states"),
    [
        pytest.param(
            {"plugins": [SentryPlugin()], "no_default_plugins": True},
            ["retrying", "failed"],
            id="default",
        ),
        pytest.param(
            {
                "plugins": [SentryPlugin(capture_retries=False)],
                "no_default_plugins": True,
            },
            ["failed"],
            id="capture_retries=False",
        ),
    ],
    indirect=["chancy"],
)
async def test_every_failed_attempt_is_reported_by_default(
    sentry_events: list[dict[str, Any]],
    chancy: Chancy,
    worker: Worker,
    states: list[str],
) -> None:
    await serve(chancy, worker)
    job = await run(chancy, ASYNC_FAIL, max_attempts=2)
    assert job.state is QueuedJob.State.FAILED
    assert job.attempts == 2
    assert [e["contexts"]["chancy"]["state"] for e in sentry_events] == states
    assert {e["extra"]["chancy.job_id"] for e in sentry_events} == {str(job.id)}


async def test_installing_the_plugin_does_not_enable_it(
    sentry_events: list[dict[str, Any]], chancy: Chancy, worker: Worker
) -> None:
    # The default app: every installed default plugin, no plugins=[...].
    assert SentryPlugin in chancy.plugin_manager.discovered
    assert "chancy.sentry_plugin" not in chancy.plugins
    await serve(chancy, worker)
    job = await run(chancy, ASYNC_FAIL)
    assert job.state is QueuedJob.State.FAILED
    assert sentry_events == []
