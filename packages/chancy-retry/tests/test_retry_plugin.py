"""RetryPlugin settings, decisions, identity and packaging (no database)."""

from __future__ import annotations

import json
import logging
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from chancy import Chancy, Job, QueuedJob
from chancy.errors import ConfigurationError, JobCancelledError, WorkerLostError
from chancy.executors.process import rebuild_exception
from chancy.plugin import PluginScope
from chancy.plugins.retry import (
    InvalidRetrySettings,
    RetryPlugin,
    RetrySettings,
    hooks,
    retry_settings,
)

PACKAGE = Path(__file__).resolve().parents[1]
NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"
WORKER: Any = SimpleNamespace(log=logging.getLogger("tests.retry"))
FAST = {"backoff": 0.1, "backoff_jitter": [0, 0]}


class TransientError(Exception):
    pass


class FlakyNetwork(TransientError):
    pass


def failed_run(
    *,
    attempts: int = 1,
    max_attempts: int = 3,
    meta: dict[str, Any] | None = None,
    state: str | None = None,
) -> QueuedJob:
    """A job as the core hands it to plugins after a run raised."""
    return QueuedJob(
        id=uuid.uuid4(),
        func="somewhere.something",
        max_attempts=max_attempts,
        attempts=attempts,
        meta=meta or {},
        state=state or ("retrying" if attempts < max_attempts else "failed"),
        errors=[
            {"attempt": n, "traceback": f"ValueError: boom {n}\n"}
            for n in range(attempts)
        ],
        completed_at=None if attempts < max_attempts else datetime.now(UTC),
    )


async def complete(
    plugin: RetryPlugin, job: QueuedJob, exc: BaseException | None = None
) -> QueuedJob:
    return await plugin.on_job_completed(
        worker=WORKER, job=job, exc=ValueError("boom") if exc is None else exc
    )


# -- identity and packaging ----------------------------------------------------------


def test_identity() -> None:
    assert RetryPlugin.get_identifier() == "chancy.retry_plugin"
    assert RetryPlugin.get_dependencies() == []
    assert RetryPlugin.get_scope() is PluginScope.WORKER
    assert RetryPlugin.is_default() is False
    assert RetryPlugin.get_distribution() == "chancy-retry"


def test_the_entry_point_registers_the_plugin() -> None:
    assert hooks.chancy_register_plugins() == [RetryPlugin]
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["chancy"] == {
        "retry": "chancy.plugins.retry.hooks"
    }
    assert project["project"]["dependencies"] == ["chancy-core~=0.1.0"]
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"] == {
        "packages": ["src/chancy"]
    }


def test_the_distribution_ships_only_its_namespace_portion() -> None:
    src = PACKAGE / "src" / "chancy"
    assert not (src / "__init__.py").exists()
    assert not (src / "plugins" / "__init__.py").exists()
    assert (src / "plugins" / "retry" / "py.typed").exists()


def test_the_plugin_needs_nothing_else() -> None:
    app = Chancy(NOWHERE, plugins=[RetryPlugin()], no_default_plugins=True)
    app.check_plugin_dependencies()
    assert isinstance(app.plugins["chancy.retry_plugin"], RetryPlugin)


# -- settings ------------------------------------------------------------------------


def test_defaults_are_the_originals() -> None:
    settings = RetryPlugin().defaults
    assert settings == RetrySettings()
    assert (
        settings.backoff,
        settings.backoff_factor,
        settings.backoff_limit,
        settings.backoff_jitter,
        settings.retry_on,
        settings.fail_on,
    ) == (1, 2.0, 300, (1, 5), None, ())


def test_delay_is_exponential_capped_and_jittered() -> None:
    settings = RetrySettings(backoff_jitter=(0, 0))
    assert [settings.delay(n) for n in range(1, 11)] == [
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        300,
    ]
    assert settings.delay(10**9) == 300  # no OverflowError
    assert RetrySettings(backoff=0, backoff_jitter=(0, 0)).delay(10**9) == 0
    jittered = RetrySettings(backoff=2, backoff_factor=3, backoff_jitter=(1, 5))
    for _ in range(50):
        assert 6 + 1 <= jittered.delay(2) <= 6 + 5


def test_retry_settings_builds_json_meta() -> None:
    meta = retry_settings(
        backoff=timedelta(seconds=2),
        backoff_factor=3,
        backoff_limit=60,
        backoff_jitter=(0, 1),
        retry_on=[TransientError, "ConnectionError"],
        fail_on=PermissionError,
    )
    assert meta == {
        "backoff": 2.0,
        "backoff_factor": 3,
        "backoff_limit": 60,
        "backoff_jitter": [0, 1],
        "retry_on": [f"{__name__}.TransientError", "ConnectionError"],
        "fail_on": ["builtins.PermissionError"],
    }
    assert json.loads(json.dumps(meta)) == meta
    assert retry_settings() == {}
    assert retry_settings(backoff=5) == {"backoff": 5}
    job = Job(func="a.b").with_meta({"retry_settings": retry_settings(backoff=5)})
    assert job.meta == {"retry_settings": {"backoff": 5}}


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"backoff": "soon"}, "backoff"),
        ({"backoff": -1}, "backoff"),
        ({"backoff": True}, "backoff"),
        ({"backoff": float("nan")}, "backoff"),
        ({"backoff_factor": timedelta(seconds=1)}, "backoff_factor"),
        ({"backoff_limit": float("inf")}, "backoff_limit"),
        ({"backoff_jitter": 3}, "backoff_jitter"),
        ({"backoff_jitter": [5, 1]}, "backoff_jitter"),
        ({"backoff_jitter": [0, 1, 2]}, "backoff_jitter"),
        ({"retry_on": [42]}, "retry_on"),
        ({"retry_on": ["not a name"]}, "retry_on"),
        ({"retry_on": {"ValueError": True}}, "retry_on"),
        ({"fail_on": [int]}, "fail_on"),
    ],
)
def test_bad_settings_name_the_setting(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(InvalidRetrySettings, match=repr(key)) as caught:
        retry_settings(**kwargs)
    assert caught.value.key == key
    assert isinstance(caught.value, ConfigurationError | ValueError)
    with pytest.raises(InvalidRetrySettings, match=repr(key)):
        RetryPlugin(default_settings=kwargs)


def test_plugin_settings() -> None:
    plugin = RetryPlugin(
        retry_on=[TransientError],
        fail_on="PermissionError",
        default_settings={"backoff": 5, "backoff_jitter": [0, 0]},
    )
    assert plugin.defaults.retry_on == (f"{__name__}.TransientError",)
    assert plugin.defaults.fail_on == ("PermissionError",)
    assert plugin.defaults.backoff == 5
    with pytest.raises(InvalidRetrySettings, match="unknown setting 'backof'"):
        RetryPlugin(default_settings={"backof": 5})
    with pytest.raises(InvalidRetrySettings, match="both"):
        RetryPlugin(retry_on=["A"], default_settings={"retry_on": ["B"]})
    with pytest.raises(TypeError):
        RetryPlugin([ValueError])  # type: ignore[misc]


@pytest.mark.parametrize(
    ("names", "exc", "matches"),
    [
        (["ValueError"], ValueError(), True),
        (["builtins.ValueError"], ValueError(), True),
        (["LookupError"], KeyError(), True),  # a base class
        (["OSError"], ConnectionResetError(), True),
        (["TransientError"], FlakyNetwork(), True),
        ([f"{__name__}.TransientError"], FlakyNetwork(), True),
        (["FlakyNetwork"], TransientError(), False),  # not a subclass
        (["Error"], ValueError(), False),  # whole name parts only
        (["KeyError"], ValueError(), False),
        # From a child process: built-ins come back as themselves, other
        # exceptions by name only.
        (["ValueError"], rebuild_exception("builtins.ValueError", "x"), True),
        (["errors.Transient"], rebuild_exception("app.errors.Transient", "x"), True),
        (["Transient"], rebuild_exception("app.errors.Other", "x"), False),
    ],
)
def test_exception_matching(
    names: list[str], exc: BaseException, matches: bool
) -> None:
    assert (RetrySettings(fail_on=tuple(names)).reason_to_fail(exc) is not None) is (
        matches
    )
    assert (RetrySettings(retry_on=tuple(names)).reason_to_fail(exc) is None) is (
        matches
    )


# -- decisions -----------------------------------------------------------------------


async def test_a_failed_run_is_rescheduled_after_the_back_off() -> None:
    before = datetime.now(UTC)
    job = await complete(RetryPlugin(), failed_run(attempts=2))
    after = datetime.now(UTC)
    assert job.state is QueuedJob.State.RETRYING
    assert job.completed_at is None
    assert job.attempts == 2
    # Defaults: min(1 * 2 ** 1, 300) + uniform(1, 5)
    assert before + timedelta(seconds=3) <= job.scheduled_at
    assert job.scheduled_at <= after + timedelta(seconds=7)
    assert [e["attempt"] for e in job.errors] == [0, 1]


async def test_job_settings_override_the_plugins_key_by_key() -> None:
    plugin = RetryPlugin(default_settings={"backoff": 100, "backoff_jitter": [0, 0]})
    before = datetime.now(UTC)
    job = await complete(
        plugin, failed_run(attempts=3, max_attempts=5, meta={"retry_settings": FAST})
    )
    delay = (job.scheduled_at - before).total_seconds()
    assert 0.4 <= delay < 0.5  # 0.1 * 2 ** 2, no jitter
    job = await complete(plugin, failed_run(attempts=1))
    assert (job.scheduled_at - before).total_seconds() >= 100


async def test_out_of_attempts_stays_failed() -> None:
    run = failed_run(attempts=3, max_attempts=3)
    assert run.state is QueuedJob.State.FAILED
    assert await complete(RetryPlugin(), run) is run


async def test_success_and_cancellation_are_left_alone() -> None:
    plugin = RetryPlugin()
    done = QueuedJob(id=uuid.uuid4(), func="a.b", state="succeeded", attempts=1)
    assert await plugin.on_job_completed(worker=WORKER, job=done) is done
    run = failed_run()
    assert await complete(plugin, run, JobCancelledError("cancelled")) is run
    # A lost run (the process running the job died) has its own cap in core.
    assert await complete(plugin, run, WorkerLostError("process died")) is run


async def test_fail_on_fails_at_once_with_the_reason() -> None:
    before = datetime.now(UTC)
    job = await complete(
        RetryPlugin(fail_on=[ValueError]), failed_run(attempts=1, max_attempts=5)
    )
    assert job.state is QueuedJob.State.FAILED
    assert job.completed_at is not None and job.completed_at >= before
    assert job.attempts == 1
    (error,) = job.errors
    assert error["attempt"] == 0
    assert error["traceback"].startswith("ValueError: boom 0\n")
    assert "not retried: builtins.ValueError matches fail_on" in error["traceback"]


async def test_retry_on_only_retries_what_it_lists() -> None:
    plugin = RetryPlugin(retry_on=["TransientError"], default_settings=FAST)
    assert (await complete(plugin, failed_run(), FlakyNetwork())).state == "retrying"
    job = await complete(plugin, failed_run(), KeyError("k"))
    assert job.state is QueuedJob.State.FAILED
    assert "does not match retry_on ('TransientError')" in job.errors[-1]["traceback"]
    # fail_on wins over retry_on.
    both = {"retry_settings": {"retry_on": ["Exception"], "fail_on": ["KeyError"]}}
    job = await complete(plugin, failed_run(meta=both), KeyError("k"))
    assert job.state is QueuedJob.State.FAILED


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"backoff": "soon"}, "'backoff' must be a number of seconds"),
        ({"backoff_jitter": [1]}, "'backoff_jitter' must be [minimum, maximum]"),
        ({"retry_on": "not a name"}, "'retry_on' must list exception classes"),
        ({"backof": 2}, "unknown setting 'backof'"),
        ([1, 2], "must be a mapping"),
    ],
)
async def test_invalid_job_settings_fail_the_job_not_the_worker(
    meta: object, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    job = await complete(RetryPlugin(), failed_run(meta={"retry_settings": meta}))
    assert job.state is QueuedJob.State.FAILED
    assert job.completed_at is not None
    traceback = job.errors[-1]["traceback"]
    assert "RetryPlugin: not retried: job meta 'retry_settings'" in traceback
    assert message in traceback
    assert message in caplog.text


async def test_calculate_next_run_takes_raw_settings_like_the_original() -> None:
    before = datetime.now(UTC)
    at = RetryPlugin.calculate_next_run(
        failed_run(attempts=2),
        {"backoff": 2, "backoff_factor": 3, "backoff_jitter": [0, 0]},
    )
    assert 6 <= (at - before).total_seconds() < 7
    with pytest.raises(InvalidRetrySettings):
        RetryPlugin.calculate_next_run(failed_run(), {"backoff": None})


async def test_huge_settings_do_not_overflow() -> None:
    huge = {"backoff": 1e300, "backoff_limit": 1e300, "backoff_jitter": [0, 1e300]}
    job = await complete(RetryPlugin(), failed_run(meta={"retry_settings": huge}))
    assert job.state is QueuedJob.State.RETRYING
    assert job.scheduled_at > datetime.now(UTC) + timedelta(days=365 * 99)
