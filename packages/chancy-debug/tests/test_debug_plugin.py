"""DebugPlugin: identity, settings, rendering, and a real worker's events."""

from __future__ import annotations

import asyncio
import logging
import tomllib
from pathlib import Path
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.errors import ConfigurationError
from chancy.hub import Hub
from chancy.plugin import PluginScope
from chancy.plugins.debug import DebugPlugin, hooks, render_body

PACKAGE = Path(__file__).resolve().parents[1]
NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"
LOGGER = "tests.chancy_debug"


def test_identity() -> None:
    assert DebugPlugin.get_identifier() == "chancy.debug_plugin"
    assert DebugPlugin.get_dependencies() == []
    assert DebugPlugin.get_scope() is PluginScope.WORKER
    assert DebugPlugin.is_default() is False
    assert DebugPlugin.get_distribution() == "chancy-debug"
    assert DebugPlugin().get_tables() == []
    assert DebugPlugin().migrate_key() is None
    assert repr(DebugPlugin(level="debug")) == (
        "<DebugPlugin(level='DEBUG', max_body_length=300)>"
    )


def test_the_entry_point_registers_the_plugin_but_no_app_enables_it() -> None:
    assert hooks.chancy_register_plugins() == [DebugPlugin]
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert project["project"]["name"] == "chancy-debug"
    assert project["project"]["entry-points"]["chancy"] == {
        "debug": "chancy.plugins.debug.hooks"
    }
    assert project["project"]["dependencies"] == ["chancy-core~=0.1.0"]
    app = Chancy(NOWHERE)
    assert DebugPlugin in app.plugin_manager.discovered
    assert "chancy.debug_plugin" not in app.plugins
    mine = DebugPlugin()
    assert Chancy(NOWHERE, plugins=[mine]).plugins["chancy.debug_plugin"] is mine


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"level": "LOUD"}, "invalid log level 'LOUD'"),
        ({"level": True}, "invalid log level"),
        ({"level": 1.5}, "invalid log level"),
        ({"logger": "chancy"}, "logging.Logger"),
        ({"max_body_length": 5}, "at least 20"),
        ({"max_body_length": "300"}, "at least 20"),
    ],
)
def test_wrong_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        DebugPlugin(**options)


def test_levels_by_name_or_number() -> None:
    assert DebugPlugin(level="warning").level == logging.WARNING
    assert DebugPlugin(level=5).level == 5
    assert DebugPlugin().level == logging.INFO


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class Multiline:
    def __repr__(self) -> str:
        return "line one\nline two\r\x1b[31m"


def test_render_body_is_short_one_line_and_never_raises() -> None:
    assert render_body({"q": "default"}) == "{'q': 'default'}"
    assert render_body({}) == "{}"
    rendered = render_body({"thing": Unprintable()})
    assert "Unprintable" in rendered and "no repr" not in rendered
    assert render_body(Unprintable()).startswith("<Unprintable")
    rendered = render_body({"m": Multiline(), "s": "a\nb"})
    assert "\n" not in rendered and "\r" not in rendered and "\x1b" not in rendered
    assert "line one\\nline two" in rendered
    huge = {"blob": "x" * 100_000, "items": list(range(10_000))}
    assert len(render_body(huge)) <= 300
    assert len(render_body(huge, 50)) == 50 and render_body(huge, 50).endswith("...")
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(1000):
        node["n"] = {}
        node = node["n"]
    assert len(render_body(deep)) < 300


async def test_attached_hubs_count_and_log_every_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger(LOGGER)
    plugin = DebugPlugin(level="WARNING", logger=logger, max_body_length=40)
    worker: Any = type("FakeWorker", (), {"hub": Hub(), "log": logger})()
    plugin.attach(worker)
    plugin.attach(worker)  # once is enough
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await worker.hub.emit("custom.thing", {"x": "y" * 500, "bad": Unprintable()})
        await worker.hub.emit("custom.thing")
        await worker.hub.emit("other", {"a": 1})
    assert plugin.event_counts == {"custom.thing": 2, "other": 1}
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 3
    assert messages[0].startswith("Hub event custom.thing: ")
    assert len(messages[0]) == len("Hub event custom.thing: ") + 40
    assert messages[2] == "Hub event other: {'a': 1}"
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == LOGGER)
    # Below the logger's level nothing is logged, but everything is counted.
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        await worker.hub.emit("other")
    assert not [r for r in caplog.records if r.name == LOGGER]
    assert plugin.event_counts["other"] == 2


DEBUG = DebugPlugin(level=logging.INFO, logger=logging.getLogger(LOGGER))


@pytest.mark.parametrize(
    "chancy", [{"plugins": [DEBUG], "no_default_plugins": True}], indirect=True
)
async def test_a_real_worker_reports_its_events(
    chancy: Chancy, worker_no_start: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    DEBUG.event_counts.clear()
    worker = worker_no_start
    with caplog.at_level(logging.INFO, logger=LOGGER):
        await worker.start()
        await chancy.declare(
            Queue("dbg", executor=Chancy.Executor.Async, polling_interval=0.2)
        )
        ref = await chancy.push(Job(func="chancy_testjobs.async_noop", queue="dbg"))
        done = await chancy.wait_for_job(ref, interval=0.05, timeout=10)
        assert done is not None and done.state is QueuedJob.State.SUCCEEDED
        async with asyncio.timeout(10):
            while DEBUG.event_counts["queue.pushed"] < 1:
                await asyncio.sleep(0.02)
        assert await worker.stop()
    counts = DEBUG.event_counts
    # The worker's own events, from the first to the last.
    assert counts["worker.started"] == 1
    assert counts["worker.stopped"] == 1
    assert counts["worker.queue.started"] >= 2  # "default" and "dbg"
    # Notifications relayed by LISTEN, including the worker's own declare.
    assert counts["queue.declared"] >= 2
    assert counts["queue.pushed"] >= 1
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == counts.total()
    assert "Hub event queue.pushed: {'q': 'dbg'}" in messages
    started = next(m for m in messages if m.startswith("Hub event worker.started: "))
    assert worker.worker_id in started
    assert all("\n" not in m and len(m) < 400 for m in messages)
