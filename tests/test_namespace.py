"""Guards for the one-namespace, many-distributions layout."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = sorted(
    p
    for p in [*(ROOT / "packages").iterdir(), ROOT / "tests" / "chancy-testplugin"]
    if (p / "pyproject.toml").exists()
)


def test_only_core_ships_chancy_init_and_nobody_ships_plugins_init() -> None:
    for dist in DISTRIBUTIONS:
        init = dist / "src" / "chancy" / "__init__.py"
        assert init.exists() == (dist.name == "chancy-core"), dist
        assert not (dist / "src" / "chancy" / "plugins" / "__init__.py").exists(), dist


def test_core_init_extends_its_path_before_importing_anything() -> None:
    text = (
        ROOT / "packages" / "chancy-core" / "src" / "chancy" / "__init__.py"
    ).read_text()
    after_future = text.split("from __future__ import annotations", 1)[1]
    first_statement = next(
        line
        for line in after_future.splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert (
        first_statement
        == '__path__ = __import__("pkgutil").extend_path(__path__, __name__)'
    )


def test_every_distribution_builds_src_chancy_and_registers_an_entry_point() -> None:
    for dist in DISTRIBUTIONS:
        config = tomllib.loads((dist / "pyproject.toml").read_text())
        assert config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
            "src/chancy"
        ], dist
        project = config["project"]
        assert project["name"].startswith("chancy-"), dist
        if dist.name != "chancy-core":
            name = project["name"].removeprefix("chancy-")
            assert project["entry-points"]["chancy"] == {
                name: f"chancy.plugins.{name}.hooks"
            }, dist
            assert any(
                dep.startswith("chancy-core") for dep in project["dependencies"]
            ), dist
            assert (dist / "src" / "chancy" / "plugins" / name / "py.typed").exists(), (
                dist
            )
        assert (dist / "README.md").exists(), dist


def test_plugin_namespace_spans_every_installed_distribution() -> None:
    import chancy
    import chancy.plugins

    roots = {Path(p).resolve() for p in chancy.__path__}
    assert (ROOT / "packages" / "chancy-core" / "src" / "chancy").resolve() in roots
    from chancy.plugins.testplugin import (
        TestPlugin,  # provided by a separate distribution
    )

    from chancy.plugins.rule import Age  # provided by core inside the namespace

    assert Age and TestPlugin
