"""The Pruner plugin's settings, identity, packaging and dependency (no database)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from chancy import Chancy, Worker
from chancy.errors import PluginDependencyError
from chancy.plugin import PluginScope
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.pruner import Pruner, hooks
from chancy.rule import JobRules

PACKAGE = Path(__file__).resolve().parents[1]
NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"


def test_the_seed_imports_work() -> None:
    from chancy.plugins.pruner import Pruner as SeedPruner
    from chancy.plugins.rule import Age

    assert SeedPruner is Pruner
    assert isinstance(Age(), JobRules.Age)


def test_defaults() -> None:
    pruner = Pruner()
    assert Pruner.Rules is JobRules
    assert (pruner.maximum_to_prune, pruner.poll_interval, pruner.batch_size) == (
        10000,
        60,
        1000,
    )
    query, params = pruner.rule.compile()  # type: ignore[attr-defined]
    assert "EXTRACT(EPOCH FROM (NOW() - created_at))" in query.as_string()
    assert params == [86400]  # one day


def test_positional_rule_and_keyword_only_settings() -> None:
    rule = Pruner.Rules.Age() > 60
    assert Pruner(rule, maximum_to_prune=5, poll_interval=1).rule is rule
    with pytest.raises(TypeError):
        Pruner(rule, 5)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"rule": JobRules.Age()}, TypeError),  # a column, not a condition
        ({"rule": "age > 1"}, TypeError),
        ({"maximum_to_prune": 0}, ValueError),
        ({"poll_interval": 0}, ValueError),
        ({"batch_size": 0}, ValueError),
    ],
)
def test_bad_settings_fail_at_once(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        Pruner(**kwargs)  # type: ignore[arg-type]


def test_identity() -> None:
    assert Pruner.get_identifier() == "chancy.pruner"
    assert Pruner.get_dependencies() == ["chancy.leadership"]
    assert Pruner.get_scope() is PluginScope.LEADER
    assert Pruner.is_default() is True
    assert Pruner.get_distribution() == "chancy-pruner"


def test_the_entry_point_registers_the_plugin() -> None:
    assert hooks.chancy_register_plugins() == [Pruner]
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["chancy"] == {
        "pruner": "chancy.plugins.pruner.hooks"
    }
    assert set(project["project"]["dependencies"]) == {
        "chancy-core~=0.1.0",
        "chancy-leadership~=0.1.0",
    }


def test_the_distribution_ships_only_its_namespace_portion() -> None:
    src = PACKAGE / "src" / "chancy"
    assert not (src / "__init__.py").exists()
    assert not (src / "plugins" / "__init__.py").exists()
    assert (src / "plugins" / "pruner" / "py.typed").exists()


def test_the_readme_states_the_default_retention() -> None:
    readme = (PACKAGE / "README.md").read_text()
    assert "one day" in readme
    assert "created_at" in readme


async def test_a_worker_without_leadership_refuses_to_start() -> None:
    worker = Worker(
        Chancy(NOWHERE, plugins=[Pruner()], no_default_plugins=True),
        register_signal_handlers=False,
    )
    with pytest.raises(PluginDependencyError, match=r"pip install chancy-leadership"):
        await worker.start()
    Chancy(
        NOWHERE, plugins=[ImmediateLeadership(), Pruner()], no_default_plugins=True
    ).check_plugin_dependencies()
