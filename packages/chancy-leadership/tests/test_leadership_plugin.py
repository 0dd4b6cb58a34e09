"""The Leadership plugin's settings, identity and packaging (no database)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from chancy.plugin import PluginScope
from chancy.plugins.leadership import ImmediateLeadership, Leadership, hooks

PACKAGE = Path(__file__).resolve().parents[1]


def test_defaults_and_positional_arguments() -> None:
    plugin = Leadership()
    assert (plugin.poll_interval, plugin.timeout) == (60, 120)
    plugin = Leadership(5, 10)
    assert (plugin.poll_interval, plugin.timeout) == (5, 10)
    assert repr(plugin) == "<Leadership(poll_interval=5, timeout=10)>"


@pytest.mark.parametrize(
    ("poll_interval", "timeout", "message"),
    [(10, 5, "at least poll_interval"), (0, 10, "positive"), (-1, 10, "positive")],
)
def test_invalid_settings_are_refused(
    poll_interval: float, timeout: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Leadership(poll_interval, timeout)


def test_identity() -> None:
    assert Leadership.get_identifier() == "chancy.leadership"
    assert Leadership.is_default() is True
    assert Leadership.get_scope() is PluginScope.WORKER
    assert Leadership.get_distribution() == "chancy-leadership"
    assert Leadership.get_dependencies() == []
    assert Leadership().get_tables() == ["leader"]
    assert ImmediateLeadership.get_identifier() == "chancy.leadership"
    assert ImmediateLeadership.is_default() is False


def test_the_entry_point_registers_both_classes() -> None:
    assert hooks.chancy_register_plugins() == [Leadership, ImmediateLeadership]
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["chancy"] == {
        "leadership": "chancy.plugins.leadership.hooks"
    }
    assert "chancy-core~=0.1.0" in project["project"]["dependencies"]


def test_the_distribution_ships_only_its_namespace_portion() -> None:
    src = PACKAGE / "src" / "chancy"
    assert not (src / "__init__.py").exists()
    assert not (src / "plugins" / "__init__.py").exists()
    assert (src / "plugins" / "leadership" / "py.typed").exists()
