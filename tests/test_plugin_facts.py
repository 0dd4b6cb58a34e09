"""Every first-party plugin declares its facts once, as class attributes.

The getters of the original Chancy (``get_identifier()``, ``get_scope()``,
...) read the attributes; a first-party plugin never overrides them. Add a
plugin to ``PLUGINS`` when it follows the rule.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from chancy.plugin import Plugin

ROOT = Path(__file__).resolve().parent.parent

#: Getters that only read a fact; overriding one hides the attribute.
GETTERS = frozenset(
    {
        "get_identifier",
        "get_scope",
        "get_dependencies",
        "is_default",
        "get_distribution",
        "get_tables",
        "migrate_key",
        "migrate_package",
    }
)

#: (distribution directory, plugin module, plugin classes)
PLUGINS = [
    ("packages/chancy-leadership", "leadership", ("Leadership", "ImmediateLeadership")),
    ("packages/chancy-pruner", "pruner", ("Pruner",)),
    ("packages/chancy-recovery", "recovery", ("Recovery",)),
    ("packages/chancy-cron", "cron", ("Cron",)),
    ("packages/chancy-workflow", "workflow", ("WorkflowPlugin",)),
    ("packages/chancy-retry", "retry", ("RetryPlugin",)),
    ("packages/chancy-metrics", "metrics", ("Metrics",)),
    ("packages/chancy-reprioritize", "reprioritize", ("Reprioritize",)),
    ("packages/chancy-sentry", "sentry", ("SentryPlugin",)),
    ("packages/chancy-otel", "otel", ("OpenTelemetryPlugin",)),
    ("packages/chancy-trigger", "trigger", ("Trigger",)),
    ("packages/chancy-debug", "debug", ("DebugPlugin",)),
    ("tests/chancy-testplugin", "testplugin", ("TestPlugin",)),
]


def _source(directory: str, name: str) -> Path:
    return ROOT / directory / "src" / "chancy" / "plugins" / name / "plugin.py"


@pytest.mark.parametrize(("directory", "name", "classes"), PLUGINS)
def test_no_plugin_class_overrides_a_fact_getter(
    directory: str, name: str, classes: tuple[str, ...]
) -> None:
    tree = ast.parse(_source(directory, name).read_text())
    found = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    for class_name in classes:
        node = found[class_name]
        methods = {
            item.name
            for item in node.body
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        assert not methods & GETTERS, (
            f"{class_name} overrides {sorted(methods & GETTERS)}: declare the"
            " facts as class attributes instead"
        )
        attributes = {
            target.id
            for item in node.body
            if isinstance(item, ast.Assign | ast.AnnAssign)
            for target in (
                item.targets if isinstance(item, ast.Assign) else [item.target]
            )
            if isinstance(target, ast.Name)
        }
        assert {"identifier", "distribution"} <= attributes, class_name


@pytest.mark.parametrize(
    ("directory", "name", "classes"),
    [row for row in PLUGINS if row[0].startswith("packages/")],
)
def test_the_getters_answer_from_the_attributes(
    directory: str, name: str, classes: tuple[str, ...]
) -> None:
    module = importlib.import_module(f"chancy.plugins.{name}.plugin")
    for class_name in classes:
        cls = getattr(module, class_name)
        assert issubclass(cls, Plugin)
        assert cls.get_identifier() == cls.identifier == module.IDENTIFIER
        assert cls.get_distribution() == cls.distribution == module.DISTRIBUTION
        assert cls.distribution == Path(directory).name
        assert cls.get_scope() is cls.scope
        assert cls.get_dependencies() == list(cls.dependencies)
        # A missing dependency is named with the distribution to install.
        assert set(cls.dependencies) <= set(cls.dependency_distributions)
        assert cls.is_default() is cls.default_enabled
        if (cls.migrations_key is None) != (cls.migrations_package is None):
            pytest.fail(f"{class_name}: migrations_key and _package go together")
        if cls.migrations_package is not None:
            importlib.import_module(cls.migrations_package)
