"""The Reprioritize plugin's settings, identity, packaging and dependency (no database)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from chancy import Chancy, Worker
from chancy.errors import PluginDependencyError
from chancy.plugin import PluginScope
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.reprioritize import Reprioritize, hooks
from chancy.rule import JobRules

PACKAGE = Path(__file__).resolve().parents[1]
NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"


def test_defaults_and_rules() -> None:
    rule = Reprioritize.Rules.Age() > 600
    plugin = Reprioritize(rule)
    assert Reprioritize.Rules is JobRules
    assert plugin.rule is rule
    assert (plugin.check_interval, plugin.priority_increase, plugin.batch_size) == (
        300,
        1,
        1000,
    )


def test_rule_is_required_and_settings_keyword_only() -> None:
    with pytest.raises(TypeError):
        Reprioritize()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Reprioritize(JobRules.Age() > 1, 60)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"rule": JobRules.Age()}, TypeError),  # a column, not a condition
        ({"rule": "age > 1"}, TypeError),
        ({"check_interval": 0}, ValueError),
        ({"check_interval": "60"}, ValueError),
        ({"priority_increase": 0}, ValueError),
        ({"priority_increase": 1.5}, ValueError),
        ({"batch_size": 0}, ValueError),
        ({"batch_size": True}, ValueError),
    ],
)
def test_bad_settings_fail_at_once(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    kwargs = {"rule": JobRules.Age() > 1, **kwargs}
    with pytest.raises(error):
        Reprioritize(**kwargs)  # type: ignore[arg-type]


def test_identity() -> None:
    assert Reprioritize.get_identifier() == "chancy.reprioritize"
    assert Reprioritize.get_dependencies() == ["chancy.leadership"]
    assert Reprioritize.get_scope() is PluginScope.LEADER
    assert Reprioritize.is_default() is False
    assert Reprioritize.get_distribution() == "chancy-reprioritize"


def test_the_entry_point_registers_the_plugin() -> None:
    assert hooks.chancy_register_plugins() == [Reprioritize]
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["chancy"] == {
        "reprioritize": "chancy.plugins.reprioritize.hooks"
    }
    assert set(project["project"]["dependencies"]) == {
        "chancy-core~=0.1.0",
        "chancy-leadership~=0.1.0",
    }
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"] == {
        "packages": ["src/chancy"]
    }


def test_the_distribution_ships_only_its_namespace_portion() -> None:
    src = PACKAGE / "src" / "chancy"
    assert not (src / "__init__.py").exists()
    assert not (src / "plugins" / "__init__.py").exists()
    assert (src / "plugins" / "reprioritize" / "py.typed").exists()


async def test_a_worker_without_leadership_refuses_to_start() -> None:
    worker = Worker(
        Chancy(
            NOWHERE,
            plugins=[Reprioritize(JobRules.Age() > 0)],
            no_default_plugins=True,
        ),
        register_signal_handlers=False,
    )
    with pytest.raises(PluginDependencyError, match=r"pip install chancy-leadership"):
        await worker.start()
    Chancy(
        NOWHERE,
        plugins=[ImmediateLeadership(), Reprioritize(JobRules.Age() > 0)],
        no_default_plugins=True,
    ).check_plugin_dependencies()
