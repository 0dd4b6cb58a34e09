"""Guards for the one-namespace, many-distributions layout.

``chancy`` is core's regular package, whose ``__init__`` extends its
``__path__``; ``chancy.plugins`` (plugins) and ``chancy.contrib`` (framework
integrations: chancy-django) are namespaces that no distribution owns.

Every first-party plugin distribution also has the house shape that
``chancy plugin new`` writes (checked on both by :func:`house_shape_problems`).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from chancy.cli._template import FIRST_PARTY_PLUGINS, write_plugin

ROOT = Path(__file__).resolve().parent.parent
CORE_SRC = ROOT / "packages" / "chancy-core" / "src" / "chancy"
DISTRIBUTIONS = sorted(
    p
    for p in [*(ROOT / "packages").iterdir(), ROOT / "tests" / "chancy-testplugin"]
    if (p / "pyproject.toml").exists()
)
#: Distributions that are not plugins: the package each one ships under
#: ``chancy.contrib``.
INTEGRATIONS = {"chancy-django": "django"}
#: The first-party plugin distributions.
PLUGIN_DISTRIBUTIONS = [
    p
    for p in DISTRIBUTIONS
    if p.parent.name == "packages"
    and p.name != "chancy-core"
    and p.name not in INTEGRATIONS
]


def test_only_core_ships_chancy_init_and_nobody_ships_namespace_inits() -> None:
    for dist in DISTRIBUTIONS:
        init = dist / "src" / "chancy" / "__init__.py"
        assert init.exists() == (dist.name == "chancy-core"), dist
        for namespace in ("plugins", "contrib"):
            assert not (dist / "src" / "chancy" / namespace / "__init__.py").exists(), (
                dist
            )


def test_integrations_ship_only_their_contrib_package() -> None:
    for name, package in INTEGRATIONS.items():
        chancy_dir = ROOT / "packages" / name / "src" / "chancy"
        assert sorted(
            p.name for p in chancy_dir.iterdir() if p.name != "__pycache__"
        ) == ["contrib"], name
        contrib = chancy_dir / "contrib"
        assert sorted(p.name for p in contrib.iterdir() if p.name != "__pycache__") == [
            package
        ], name
        assert (contrib / package / "__init__.py").exists(), name
        assert (contrib / package / "py.typed").exists(), name
        # Test set-up stays out of the runtime wheel (it is in chancy.testing).
        assert not list((contrib / package).rglob("*testing*")), name
    assert not (CORE_SRC / "contrib").exists()


def test_core_depends_on_no_integration_but_offers_each_as_an_extra() -> None:
    config = tomllib.loads(
        (ROOT / "packages" / "chancy-core" / "pyproject.toml").read_text()
    )
    project = config["project"]
    for name, extra in INTEGRATIONS.items():
        assert not any(dep.startswith(name) for dep in project["dependencies"])
        assert any(
            dep.startswith(name) for dep in project["optional-dependencies"][extra]
        ), name


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_core_imports_no_plugin_and_no_integration() -> None:
    own = {"chancy.plugins.rule"}  # core's alias of chancy.rule
    for path in sorted(CORE_SRC.rglob("*.py")):
        for module in _imported_modules(path):
            if module in own or module.startswith("chancy.plugins.rule."):
                continue
            assert not module.startswith(("chancy.plugins.", "chancy.contrib")), (
                f"{path.relative_to(ROOT)} imports {module}"
            )


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
        if dist.name in INTEGRATIONS:
            # Not a plugin: found through the framework's own configuration.
            assert "chancy" not in project.get("entry-points", {}), dist
            assert any(
                dep.startswith("chancy-core") for dep in project["dependencies"]
            ), dist
        elif dist.name != "chancy-core":
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


def test_contrib_namespace_spans_the_integration_distributions() -> None:
    import chancy.contrib
    import chancy.contrib.django

    assert chancy.contrib.__file__ is None  # a namespace package
    roots = {Path(p).resolve() for p in chancy.contrib.__path__}
    for name in INTEGRATIONS:
        assert (ROOT / "packages" / name / "src" / "chancy" / "contrib").resolve() in (
            roots
        )
    assert (
        Path(chancy.contrib.django.__file__ or "")
        .resolve()
        .is_relative_to(ROOT / "packages" / "chancy-django" / "src")
    )


def house_shape_problems(dist: Path) -> list[str]:
    """What keeps the plugin distribution ``dist`` from the house shape (the
    shape ``chancy plugin new`` writes); empty when it has it."""
    problems: list[str] = []
    config = tomllib.loads((dist / "pyproject.toml").read_text())
    project = config["project"]
    name = project["name"].removeprefix("chancy-")
    if project.get("entry-points", {}).get("chancy") != {
        name: f"chancy.plugins.{name}.hooks"
    }:
        problems.append(f"entry point {name} = 'chancy.plugins.{name}.hooks'")
    wheel = config.get("tool", {}).get("hatch", {}).get("build", {})
    if wheel.get("targets", {}).get("wheel", {}).get("packages") != ["src/chancy"]:
        problems.append("[tool.hatch.build.targets.wheel] packages = ['src/chancy']")
    if not any(dep.startswith("chancy-core") for dep in project["dependencies"]):
        problems.append("a dependency on chancy-core")
    if project.get("readme") != "README.md" or not (dist / "README.md").is_file():
        problems.append("README.md, as the project's readme")
    if not list((dist / "tests").glob("test_*.py")):
        problems.append("tests/test_*.py")
    package = dist / "src" / "chancy" / "plugins" / name
    for file in ("__init__.py", "py.typed", "hooks.py", "plugin.py"):
        if not (package / file).is_file():
            problems.append(f"src/chancy/plugins/{name}/{file}")
    # A plugin with a migration line names its package (as its
    # migrations_package, or from migrate_package()); the package is
    # migrations/, with an __init__.py and a first migration.
    migrations = package / "migrations"
    declared = any(
        f'"chancy.plugins.{name}.migrations"' in path.read_text()
        for path in package.glob("*.py")
    )
    if declared and not (
        (migrations / "__init__.py").is_file() and list(migrations.glob("v0001_*.py"))
    ):
        problems.append(
            f"src/chancy/plugins/{name}/migrations/ with __init__.py and"
            " v0001_<what>.py (the plugin declares a migration line)"
        )
    if migrations.exists() and not declared:
        problems.append(
            f"a plugin declaring 'chancy.plugins.{name}.migrations', the package"
            " of its migrations/ directory"
        )
    return problems


@pytest.mark.parametrize("dist", PLUGIN_DISTRIBUTIONS, ids=lambda p: p.name)
def test_every_first_party_plugin_has_the_house_shape(dist: Path) -> None:
    assert house_shape_problems(dist) == []


def test_the_plugin_template_writes_the_house_shape(tmp_path: Path) -> None:
    write_plugin("shape_probe", tmp_path / "chancy-shape_probe")
    assert house_shape_problems(tmp_path / "chancy-shape_probe") == []


def test_the_shape_check_finds_what_is_missing(tmp_path: Path) -> None:
    dist = tmp_path / "chancy-shape_probe"
    write_plugin("shape_probe", dist)
    package = dist / "src" / "chancy" / "plugins" / "shape_probe"
    (package / "hooks.py").unlink()
    (package / "migrations" / "v0001_initial.py").unlink()
    for test in (dist / "tests").iterdir():
        test.unlink()
    assert house_shape_problems(dist) == [
        "tests/test_*.py",
        "src/chancy/plugins/shape_probe/hooks.py",
        (
            "src/chancy/plugins/shape_probe/migrations/ with __init__.py and"
            " v0001_<what>.py (the plugin declares a migration line)"
        ),
    ]


def test_no_new_plugin_can_take_a_first_party_name() -> None:
    names = {
        p.name.removeprefix("chancy-")
        for p in DISTRIBUTIONS
        if p.parent.name == "packages"
    }
    for dist in PLUGIN_DISTRIBUTIONS:
        names.update(
            p.name
            for p in (dist / "src" / "chancy" / "plugins").iterdir()
            if p.is_dir() and not p.name.startswith("_")
        )
    names.update(p.stem for p in (CORE_SRC / "plugins").glob("*.py"))
    assert names <= set(FIRST_PARTY_PLUGINS)
