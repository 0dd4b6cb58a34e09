"""The Cron plugin's identity, settings and packaging (no database)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import click
import pytest

from chancy import Chancy
from chancy.plugin import PluginScope
from chancy.plugins.cron import Cron, CronExpressionError, UnknownTimeZoneError, hooks
from chancy.plugins.leadership import ImmediateLeadership

PACKAGE = Path(__file__).resolve().parents[1]
DSN = "postgresql://localhost/never_connected"


def test_identity() -> None:
    plugin = Cron()
    assert Cron.get_identifier() == "chancy.cron"
    # Runs in every worker; it waits to lead when the app has Leadership.
    assert Cron.get_scope() is PluginScope.WORKER
    assert Cron.get_dependencies() == []
    assert Cron.is_default() is True
    assert Cron.get_distribution() == "chancy-cron"
    assert plugin.get_tables() == ["cron"]
    assert plugin.migrate_key() == "cron"
    assert plugin.migrate_package() == "chancy.plugins.cron.migrations"
    assert plugin.poll_interval == 60
    assert repr(Cron(poll_interval=5)) == "<Cron(poll_interval=5)>"


@pytest.mark.parametrize("value", [0, -1])
def test_invalid_poll_interval(value: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Cron(poll_interval=value)


def test_poll_interval_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Cron(5)  # type: ignore[misc]


def test_errors_are_value_errors() -> None:
    assert issubclass(CronExpressionError, ValueError)
    assert issubclass(UnknownTimeZoneError, ValueError)


def test_migrations_are_found() -> None:
    app = Chancy(DSN, plugins=[Cron(), ImmediateLeadership()], no_default_plugins=True)
    migrator = app.plugins["chancy.cron"].migrator(app)
    assert migrator is not None
    assert migrator.key == "cron"
    assert migrator.latest_version == 1
    assert "cron" in [m.key for m in app.migrators()]


def test_cron_does_not_need_a_leadership_plugin() -> None:
    app = Chancy(DSN, plugins=[Cron()], no_default_plugins=True)
    assert list(app.plugins) == ["chancy.cron"]
    app.check_plugin_dependencies()  # no PluginDependencyError


def test_hooks() -> None:
    assert hooks.chancy_register_plugins() is Cron
    command = hooks.chancy_cli_commands()
    assert isinstance(command, click.Group)
    assert command.name == "cron"
    assert set(command.commands) == {"list", "add", "remove", "next"}


def test_pyproject() -> None:
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert project["project"]["name"] == "chancy-cron"
    assert project["project"]["version"] == "0.1.0"
    assert project["project"]["entry-points"]["chancy"] == {
        "cron": "chancy.plugins.cron.hooks"
    }
    dependencies = project["project"]["dependencies"]
    for requirement in ("chancy-core~=0.1.0", "croniter>=6.0"):
        assert requirement in dependencies
    # Leadership is used when present, not required.
    assert not any(d.startswith("chancy-leadership") for d in dependencies)
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "src/chancy"
    ]


def test_the_distribution_ships_only_its_namespace_portion() -> None:
    src = PACKAGE / "src" / "chancy"
    assert not (src / "__init__.py").exists()
    assert not (src / "plugins" / "__init__.py").exists()
    assert (src / "plugins" / "cron" / "py.typed").exists()
    assert (PACKAGE / "LICENSE").exists()
    assert not (PACKAGE / "tests" / "__init__.py").exists()
