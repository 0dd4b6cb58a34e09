"""Trigger identity, packaging and argument checks (no database needed)."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chancy import Chancy, Job, Limit, job
from chancy.errors import ConfigurationError
from chancy.plugin import PluginScope
from chancy.plugins.trigger import OPERATIONS, Trigger, hooks
from chancy.plugins.trigger.plugin import _operations, _template

PACKAGE = Path(__file__).resolve().parents[1]
NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"


@job(queue="orders", priority=3, max_attempts=2)
def sync_orders() -> None:
    """A job function with a template."""


def test_identity() -> None:
    plugin = Trigger()
    assert Trigger.get_identifier() == "chancy.trigger"
    assert Trigger.get_dependencies() == []
    assert Trigger.get_scope() is PluginScope.WORKER
    assert Trigger.is_default() is True
    assert Trigger.get_distribution() == "chancy-trigger"
    assert plugin.get_tables() == ["triggers"]
    assert plugin.migrate_key() == "trigger"
    assert plugin.migrate_package() == "chancy.plugins.trigger.migrations"
    assert repr(plugin) == "<Trigger()>"
    migrator = plugin.migrator(Chancy(NOWHERE, no_default_plugins=True))
    assert migrator is not None and migrator.latest_version == 1


def test_the_entry_point_registers_the_plugin() -> None:
    assert hooks.chancy_register_plugins() == [Trigger]
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert project["project"]["name"] == "chancy-trigger"
    assert project["project"]["entry-points"]["chancy"] == {
        "trigger": "chancy.plugins.trigger.hooks"
    }
    assert project["project"]["dependencies"] == ["chancy-core~=0.1.0"]
    src = PACKAGE / "src" / "chancy"
    assert not (src / "__init__.py").exists()
    assert not (src / "plugins" / "__init__.py").exists()
    assert (src / "plugins" / "trigger" / "py.typed").exists()


def test_enabled_by_default_when_installed_and_replaceable() -> None:
    app = Chancy(NOWHERE)
    assert Trigger in app.plugin_manager.discovered
    assert isinstance(app.plugins["chancy.trigger"], Trigger)
    assert "trigger" in [m.key for m in app.migrators()]
    assert "chancy.trigger" not in Chancy(NOWHERE, no_default_plugins=True).plugins
    mine = Trigger()
    assert Chancy(NOWHERE, plugins=[mine]).plugins["chancy.trigger"] is mine


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["INSERT"], ("INSERT",)),
        (["delete", " Update ", "INSERT"], OPERATIONS),
        (("UPDATE", "update"), ("UPDATE",)),
        ({"DELETE"}, ("DELETE",)),
    ],
)
def test_operations_are_normalised(given: Any, expected: tuple[str, ...]) -> None:
    assert _operations(given) == expected


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ([], ConfigurationError, "at least one"),
        (["INSERT", "TRUNCATE"], ConfigurationError, "unknown operation 'TRUNCATE'"),
        (["INSERT OR DELETE"], ConfigurationError, "unknown operation"),
        (["insert; DROP TABLE x"], ConfigurationError, "unknown operation"),
        ("INSERT", TypeError, "must be a list"),
        (None, TypeError, "must be a list"),
        ([1], TypeError, "must be strings"),
    ],
)
def test_bad_operations_are_refused(given: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        _operations(given)


def test_a_template_is_stored_as_given() -> None:
    template = Job(
        func="app.tasks.sync",
        queue="q",
        kwargs={"a": 1},
        priority=-5,
        max_attempts=4,
        limits=[Limit(Limit.Type.TIME, 30)],
        unique_key="sync",
        meta={"source": "db"},
        scheduled_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    job_, packed = _template(template)
    assert job_ is template
    assert Job.unpack(json.loads(packed)) == template
    decorated, _ = _template(sync_orders)
    assert decorated.queue == "orders" and decorated.priority == 3


@pytest.mark.parametrize(
    ("template", "error", "message"),
    [
        ("app.tasks.sync", TypeError, "job_template: expected a Job"),
        (len, TypeError, "job_template: expected a Job"),
        (Job(func="nodots"), ConfigurationError, "import path"),
        (Job(func="app..sync"), ConfigurationError, "import path"),
        (Job(func="app.sync", queue=""), ConfigurationError, "queue"),
        (Job(func="app.sync", kwargs={"when": datetime.now()}), TypeError, "JSON"),
        (Job(func="app.sync", kwargs={1: "x"}), TypeError, "string keys"),  # type: ignore[dict-item]
        (Job(func="app.sync", kwargs={"x": float("nan")}), TypeError, "JSON"),
        (Job(func="app.sync", kwargs={"x": "a\x00b"}), ConfigurationError, "NUL"),
        (Job(func="app.sync", meta={"trigger": 1}), ConfigurationError, "meta"),
        (Job(func="app.sync", priority=2**31), TypeError, "priority"),
        (Job(func="app.sync", priority=True), TypeError, "priority"),
        (Job(func="app.sync", max_attempts=0), ConfigurationError, "max_attempts"),
        (Job(func="app.sync", unique_key=""), TypeError, "unique_key"),
    ],
)
def test_templates_that_cannot_be_stored_are_refused(
    template: Any, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        _template(template)
