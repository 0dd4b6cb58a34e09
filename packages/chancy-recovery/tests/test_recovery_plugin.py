"""The Recovery plugin's settings, identity, packaging and dependency (no database)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from chancy import Chancy, Worker
from chancy.errors import PluginDependencyError
from chancy.plugin import PluginScope
from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import Recovery, hooks

PACKAGE = Path(__file__).resolve().parents[1]
NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"


def test_settings() -> None:
    plugin = Recovery()
    assert (plugin.poll_interval, plugin.heartbeat_timeout) == (60, None)
    plugin = Recovery(poll_interval=5, heartbeat_timeout=30)
    assert (plugin.poll_interval, plugin.heartbeat_timeout) == (5, 30)
    with pytest.raises(TypeError):
        Recovery(5)  # type: ignore[misc]
    with pytest.raises(ValueError, match="poll_interval"):
        Recovery(poll_interval=0)
    with pytest.raises(ValueError, match="heartbeat_timeout"):
        Recovery(heartbeat_timeout=0)


def test_identity() -> None:
    assert Recovery.get_identifier() == "chancy.recovery"
    assert Recovery.get_dependencies() == ["chancy.leadership"]
    assert Recovery.get_scope() is PluginScope.LEADER
    assert Recovery.is_default() is True
    assert Recovery.get_distribution() == "chancy-recovery"


def test_the_entry_point_registers_the_plugin() -> None:
    assert hooks.chancy_register_plugins() == [Recovery]
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["chancy"] == {
        "recovery": "chancy.plugins.recovery.hooks"
    }
    assert set(project["project"]["dependencies"]) == {
        "chancy-core~=0.1.0",
        "chancy-leadership~=0.1.0",
    }


def test_the_distribution_ships_only_its_namespace_portion() -> None:
    src = PACKAGE / "src" / "chancy"
    assert not (src / "__init__.py").exists()
    assert not (src / "plugins" / "__init__.py").exists()
    assert (src / "plugins" / "recovery" / "py.typed").exists()


async def test_a_worker_without_leadership_refuses_to_start() -> None:
    chancy = Chancy(NOWHERE, plugins=[Recovery()], no_default_plugins=True)
    worker = Worker(chancy, register_signal_handlers=False)
    with pytest.raises(PluginDependencyError) as info:
        await worker.start()
    message = str(info.value)
    assert "'chancy.leadership'" in message
    assert "chancy-leadership" in message
    assert "pip install chancy-leadership" in message
    # With the leadership plugin the dependency is satisfied.
    Chancy(
        NOWHERE, plugins=[Leadership(), Recovery()], no_default_plugins=True
    ).check_plugin_dependencies()
