"""Guards for the one-namespace, many-distributions layout.

``chancy`` is core's regular package, whose ``__init__`` extends its
``__path__``; ``chancy.plugins`` (plugins) and ``chancy.contrib`` (framework
integrations: chancy-django) are namespaces that no distribution owns.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

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
