"""SentryPlugin identity, settings and reports, calling its hooks directly."""

from __future__ import annotations

import logging
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from chancy import Chancy, QueuedJob
from chancy.errors import ConfigurationError, JobCancelledError
from chancy.executors.process import RemoteJobError, rebuild_exception
from chancy.plugin import PluginScope
from chancy.plugins.sentry import SentryPlugin, hooks

PACKAGE = Path(__file__).resolve().parents[1]
NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"
WORKER: Any = SimpleNamespace(
    worker_id="worker-1", log=logging.getLogger("tests.sentry")
)


class JobError(Exception):
    pass


class SubJobError(JobError):
    pass


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
    """Sentry initialised with a transport that collects events in this list."""
    transport = Collector()
    sentry_sdk.init(transport=transport, default_integrations=False)
    try:
        yield transport.events
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


def a_run(
    *,
    state: str = "failed",
    attempts: int = 1,
    max_attempts: int = 1,
    func: str = "myapp.tasks.send_mail",
    errors: list[dict[str, Any]] | None = None,
) -> QueuedJob:
    """A job as the core hands it to plugins after a run."""
    return QueuedJob(
        id=uuid.uuid4(),
        func=func,
        queue="mail",
        state=state,
        attempts=attempts,
        max_attempts=max_attempts,
        errors=errors or [],
    )


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as a job would have raised it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


async def complete(
    plugin: SentryPlugin, job: QueuedJob, exc: BaseException | None
) -> QueuedJob:
    return await plugin.on_job_completed(worker=WORKER, job=job, exc=exc)


# -- identity and packaging ----------------------------------------------------------


def test_identity() -> None:
    assert SentryPlugin.get_identifier() == "chancy.sentry_plugin"
    assert SentryPlugin.get_dependencies() == []
    assert SentryPlugin.get_scope() is PluginScope.WORKER
    assert SentryPlugin.is_default() is False
    assert SentryPlugin.get_distribution() == "chancy-sentry"
    assert SentryPlugin().get_tables() == []
    assert SentryPlugin().migrate_key() is None


def test_the_entry_point_registers_the_plugin() -> None:
    assert hooks.chancy_register_plugins() == [SentryPlugin]
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert project["project"]["name"] == "chancy-sentry"
    assert project["project"]["entry-points"]["chancy"] == {
        "sentry": "chancy.plugins.sentry.hooks"
    }
    assert project["project"]["dependencies"] == [
        "chancy-core~=0.1.0",
        "sentry-sdk>=2",
    ]
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"] == {
        "packages": ["src/chancy"]
    }


def test_the_distribution_ships_only_its_namespace_portion() -> None:
    src = PACKAGE / "src" / "chancy"
    assert not (src / "__init__.py").exists()
    assert not (src / "plugins" / "__init__.py").exists()
    assert (src / "plugins" / "sentry" / "py.typed").exists()


def test_installed_but_not_enabled_by_default() -> None:
    app = Chancy(NOWHERE)
    assert SentryPlugin in app.plugin_manager.discovered
    assert "chancy.sentry_plugin" not in app.plugins
    assert not any(isinstance(p, SentryPlugin) for p in app.plugins.values())


def test_enabled_when_given_and_needs_nothing_else() -> None:
    app = Chancy(NOWHERE, plugins=[SentryPlugin()], no_default_plugins=True)
    app.check_plugin_dependencies()
    assert isinstance(app.plugins["chancy.sentry_plugin"], SentryPlugin)
    assert app.plugin_manager.has_job_completed


# -- settings ------------------------------------------------------------------------


def test_defaults() -> None:
    plugin = SentryPlugin()
    assert plugin.tags == {}
    assert plugin.ignore == ()
    assert plugin.capture_retries is True
    assert (plugin.captured, plugin.capture_failures) == (0, 0)
    assert repr(plugin) == "<SentryPlugin(tags={}, ignore=[], capture_retries=True)>"


def test_settings() -> None:
    plugin = SentryPlugin(
        tags={"service": "billing", "region:zone": "eu-1"},
        ignore=JobCancelledError,
        capture_retries=False,
    )
    assert plugin.tags == {"service": "billing", "region:zone": "eu-1"}
    assert plugin.ignore == (JobCancelledError,)
    assert plugin.capture_retries is False
    assert "chancy.errors.JobCancelledError" in repr(plugin)
    with pytest.raises(TypeError):
        SentryPlugin({"service": "billing"})  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tags": [("service", "billing")]}, "must be a mapping"),
        ({"tags": {"": "x"}}, "not a valid Sentry tag key"),
        ({"tags": {"with space": "x"}}, "not a valid Sentry tag key"),
        ({"tags": {"k" * 33: "x"}}, "not a valid Sentry tag key"),
        ({"tags": {1: "x"}}, "not a valid Sentry tag key"),
        ({"tags": {"chancy.queue": "x"}}, "set by the plugin itself"),
        ({"tags": {"service": 1}}, "must be a string"),
        ({"tags": {"service": "a\nb"}}, "without a newline"),
        ({"tags": {"service": "x" * 201}}, "at most 200 characters"),
        ({"ignore": ["ValueError"]}, "takes exception classes"),
        ({"ignore": [int]}, "takes exception classes"),
        ({"ignore": "ValueError"}, "got 'ValueError'"),
        ({"ignore": 3}, "got 3"),
    ],
)
def test_wrong_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SentryPlugin(**kwargs)


# -- reports -------------------------------------------------------------------------


async def test_a_failed_run_is_reported_in_its_own_scope(
    sentry_events: list[dict[str, Any]],
) -> None:
    plugin = SentryPlugin(tags={"service": "billing"})
    job = a_run()
    exc = raised(JobError("no route to the mail server"))
    assert await complete(plugin, job, exc) is job
    (event,) = sentry_events
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "JobError"
    assert exception["value"] == "no route to the mail server"
    assert exception["stacktrace"]["frames"][-1]["function"] == "raised"
    assert event["tags"] == {
        "chancy.func": "myapp.tasks.send_mail",
        "chancy.worker": "worker-1",
        "chancy.queue": "mail",
        "service": "billing",
    }
    assert event["extra"] == {"chancy.job_id": str(job.id)}
    assert event["contexts"]["chancy"] == {
        "job_id": str(job.id),
        "func": "myapp.tasks.send_mail",
        "queue": "mail",
        "state": "failed",
        "attempts": 1,
        "max_attempts": 1,
        "worker_id": "worker-1",
    }
    assert event["transaction"] == "myapp.tasks.send_mail"
    assert event["level"] == "error"
    assert plugin.captured == 1

    # Nothing leaked into the scopes around the report.
    sentry_sdk.capture_exception(raised(KeyError("later")))
    later = sentry_events[-1]
    assert not any(key.startswith("chancy.") for key in later.get("tags", {}))
    assert "chancy" not in later.get("contexts", {})
    assert "chancy.job_id" not in later.get("extra", {})


async def test_a_successful_run_sends_nothing(
    sentry_events: list[dict[str, Any]],
) -> None:
    plugin = SentryPlugin()
    job = a_run(state="succeeded")
    assert await plugin.on_job_completed(worker=WORKER, job=job, result=42) is job
    assert sentry_events == []
    assert plugin.captured == 0


async def test_a_run_from_a_child_process_sends_the_recorded_traceback(
    sentry_events: list[dict[str, Any]],
) -> None:
    tb = 'Traceback (most recent call last):\n  File "tasks.py"\nValueError: bad\n'
    job = a_run(
        attempts=2,
        max_attempts=2,
        errors=[
            {"attempt": 0, "traceback": "an older one"},
            {"attempt": 1, "traceback": tb},
        ],
    )
    await complete(SentryPlugin(), job, rebuild_exception("builtins.ValueError", "bad"))
    remote = rebuild_exception("myapp.errors.Gone", "gone")
    assert isinstance(remote, RemoteJobError)
    await complete(SentryPlugin(), a_run(), remote)
    first, second = sentry_events
    assert first["exception"]["values"][0]["type"] == "ValueError"
    assert first["extra"]["chancy.traceback"] == tb
    assert second["exception"]["values"][0]["type"] == "RemoteJobError"
    assert second["exception"]["values"][0]["value"] == "myapp.errors.Gone: gone"
    assert "chancy.traceback" not in second["extra"]  # none recorded for it


async def test_long_tag_values_are_cut_to_sentrys_limit(
    sentry_events: list[dict[str, Any]],
) -> None:
    func = "myapp." + "x" * 300
    await complete(SentryPlugin(), a_run(func=func), raised(JobError()))
    (event,) = sentry_events
    assert len(event["tags"]["chancy.func"]) == 200
    assert event["tags"]["chancy.func"].endswith("...")
    assert event["contexts"]["chancy"]["func"] == func


async def test_ignored_exceptions_are_not_reported(
    sentry_events: list[dict[str, Any]],
) -> None:
    plugin = SentryPlugin(ignore=[JobError, JobCancelledError])
    await complete(plugin, a_run(), raised(SubJobError()))
    await complete(plugin, a_run(), JobCancelledError("cancelled"))
    path = f"{JobError.__module__}.{JobError.__qualname__}"
    await complete(plugin, a_run(), rebuild_exception(path, "in a child"))
    assert sentry_events == []
    await complete(plugin, a_run(), raised(ValueError("reported")))
    await complete(plugin, a_run(), rebuild_exception("myapp.Other", "reported"))
    assert len(sentry_events) == 2


async def test_retries_are_reported_unless_turned_off(
    sentry_events: list[dict[str, Any]],
) -> None:
    retrying = a_run(state="retrying", attempts=1, max_attempts=3)
    last = a_run(state="failed", attempts=3, max_attempts=3)
    quiet = SentryPlugin(capture_retries=False)
    await complete(quiet, retrying, raised(JobError()))
    assert sentry_events == []
    await complete(quiet, last, raised(JobError()))
    await complete(SentryPlugin(), retrying, raised(JobError()))
    states = [e["contexts"]["chancy"]["state"] for e in sentry_events]
    assert states == ["failed", "retrying"]


async def test_a_failing_report_is_logged_and_the_job_kept(
    sentry_events: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Sentry is down")

    monkeypatch.setattr(sentry_sdk, "capture_exception", broken)
    plugin = SentryPlugin()
    job = a_run()
    assert await complete(plugin, job, raised(JobError())) is job
    assert (plugin.captured, plugin.capture_failures) == (0, 1)
    (record,) = [r for r in caplog.records if r.name == "tests.sentry"]
    assert record.levelno == logging.WARNING
    assert str(job.id) in record.getMessage()
    assert record.exc_info is not None
    assert "Sentry is down" in str(record.exc_info[1])
    assert sentry_events == []


async def test_a_failing_filter_is_logged_and_the_job_kept(
    sentry_events: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    class Picky(SentryPlugin):
        def should_capture(self, job: QueuedJob, exc: BaseException) -> bool:
            raise LookupError("no idea")

    plugin = Picky()
    job = a_run()
    assert await complete(plugin, job, raised(JobError())) is job
    assert plugin.capture_failures == 1
    assert "could not be reported" in caplog.text
    assert sentry_events == []


async def test_without_sentry_init_nothing_is_sent_and_the_worker_is_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugin = SentryPlugin()
    job = a_run()
    assert await complete(plugin, job, raised(JobError())) is job
    assert (plugin.captured, plugin.capture_failures) == (0, 0)
    await plugin.on_worker_started(worker=WORKER)
    assert "sentry_sdk.init() has not been called" in caplog.text


async def test_no_warning_when_sentry_is_initialised(
    sentry_events: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    await SentryPlugin().on_worker_started(worker=WORKER)
    assert [r for r in caplog.records if r.name == "tests.sentry"] == []
