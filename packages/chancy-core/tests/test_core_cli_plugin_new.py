"""``chancy plugin new``: the files it writes and what it refuses.

That the written distribution builds, installs and passes its own tests is
checked in the repository's ``tests/test_plugin_template.py``; that it has
the shape of every first-party plugin in ``tests/test_namespace.py``.
"""

from __future__ import annotations

import ast
import importlib.resources
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from chancy import __version__
from chancy.cli import cli
from chancy.cli._template import FIRST_PARTY_PLUGINS, PluginNames

EXPECTED_FILES = {
    ".gitignore",
    "README.md",
    "pyproject.toml",
    "src/chancy/plugins/audit_log/__init__.py",
    "src/chancy/plugins/audit_log/py.typed",
    "src/chancy/plugins/audit_log/hooks.py",
    "src/chancy/plugins/audit_log/plugin.py",
    "src/chancy/plugins/audit_log/migrations/__init__.py",
    "src/chancy/plugins/audit_log/migrations/v0001_initial.py",
    "tests/test_audit_log.py",
}


def new(*args: str) -> Result:
    return CliRunner().invoke(cli, ["plugin", "new", *args], catch_exceptions=False)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_writes_a_plugin_distribution_into_chancy_name(cwd: Path) -> None:
    result = new("audit_log")
    assert result.exit_code == 0, result.output
    root = cwd / "chancy-audit_log"
    assert files_under(root) == EXPECTED_FILES
    assert "Wrote the plugin distribution chancy-audit_log in chancy-audit_log" in (
        result.stdout
    )
    assert 'pip install -e ".[test]"' in result.stdout
    assert sorted(p.name for p in cwd.iterdir()) == ["chancy-audit_log"]

    for path in EXPECTED_FILES:
        text = (root / path).read_text()
        assert "$" not in text, path  # every placeholder was filled
        if path.endswith(".py"):
            ast.parse(text, path)

    config = tomllib.loads((root / "pyproject.toml").read_text())
    project = config["project"]
    major, minor = __version__.split(".")[:2]
    assert project["name"] == "chancy-audit_log"
    assert project["dependencies"] == [f"chancy-core~={major}.{minor}.0"]
    assert project["optional-dependencies"]["test"] == [
        f"chancy-core[testing]~={major}.{minor}.0"
    ]
    assert project["entry-points"]["chancy"] == {
        "audit_log": "chancy.plugins.audit_log.hooks"
    }
    assert "license" not in project  # left to the author (see the README)
    assert config["build-system"]["build-backend"] == "hatchling.build"
    assert config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "src/chancy"
    ]
    assert config["tool"]["pytest"]["ini_options"]["asyncio_mode"] == "strict"

    plugin = (root / "src/chancy/plugins/audit_log/plugin.py").read_text()
    assert "class AuditLogPlugin(Plugin):" in plugin
    for fact in (
        'identifier = "chancy.audit_log"',
        'migrations_key = "audit_log"',
        'migrations_package = "chancy.plugins.audit_log.migrations"',
        'tables = ("audit_log",)',
        "async def run(self, worker: Worker, chancy: Chancy) -> None:",
    ):
        assert fact in plugin
    hooks = (root / "src/chancy/plugins/audit_log/hooks.py").read_text()
    assert "def chancy_register_plugins() -> type[Plugin]:" in hooks
    readme = (root / "README.md").read_text()
    for section in ("## Install", "## Example", "## Settings", "## Tables"):
        assert section in readme
    assert "`{prefix}audit_log`" in readme
    assert "pip install chancy-audit_log" in readme


def test_directory_option_and_missing_parents(cwd: Path) -> None:
    result = new("audit_log", "--directory", "deep/er/plugin")
    assert result.exit_code == 0, result.output
    assert files_under(cwd / "deep/er/plugin") == EXPECTED_FILES


def test_an_existing_empty_directory_is_used(cwd: Path) -> None:
    (cwd / "chancy-audit_log").mkdir()
    assert new("audit_log").exit_code == 0
    assert files_under(cwd / "chancy-audit_log") == EXPECTED_FILES


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Audit", "is not a valid plugin name"),
        ("audit-log", "is not a valid plugin name"),
        ("2audit", "is not a valid plugin name"),
        ("_audit", "is not a valid plugin name"),
        ("audit.log", "is not a valid plugin name"),
        ("audït", "is not a valid plugin name"),
        ("", "is not a valid plugin name"),
        ("class", "is a Python keyword"),
        ("cron", "is taken by Chancy's own chancy-cron"),
        ("core", "is taken by Chancy's own chancy-core"),
        ("rule", "is taken by Chancy's own chancy-core (chancy.plugins.rule)"),
        ("api", "is taken by Chancy's own chancy-web (chancy.plugins.api)"),
        ("django", "is taken by Chancy's own chancy-django"),
    ],
)
def test_bad_names_are_refused_and_nothing_is_written(
    cwd: Path, name: str, message: str
) -> None:
    result = new(name)
    assert result.exit_code == 2
    assert "Invalid value for 'NAME'" in result.stderr
    assert message in result.stderr
    assert list(cwd.iterdir()) == []


def test_the_name_of_an_installed_plugin_is_refused(
    cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A distribution registering the entry point "audit_log", as pip would
    # install it: its dist-info directory on sys.path.
    site = cwd / "site"
    info = site / "chancy_auditing-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: chancy-auditing\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[chancy]\naudit_log = chancy_auditing.hooks\n"
    )
    monkeypatch.syspath_prepend(str(site))
    result = new("audit_log", "-d", "out")
    assert result.exit_code == 2
    assert (
        "'audit_log' is taken: the installed distribution chancy-auditing has the"
        " entry point 'audit_log'" in result.stderr
    )
    assert not (cwd / "out").exists()


def test_a_non_empty_directory_or_a_file_is_refused(cwd: Path) -> None:
    (cwd / "chancy-audit_log").mkdir()
    (cwd / "chancy-audit_log" / "notes.txt").write_text("mine")
    result = new("audit_log")
    assert result.exit_code == 1
    assert "chancy-audit_log exists and is not empty" in result.stderr
    assert files_under(cwd) == {"chancy-audit_log/notes.txt"}

    (cwd / "a-file").write_text("mine")
    result = new("audit_log", "-d", "a-file")
    assert result.exit_code == 2
    assert "'a-file' is a file" in result.stderr
    assert (cwd / "a-file").read_text() == "mine"


def test_a_failed_write_leaves_nothing_behind(
    cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[Path] = []
    write_text = Path.write_text

    def failing_write_text(self: Path, *args: object, **kwargs: object) -> int:
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        written.append(self)
        return write_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", failing_write_text)
    result = new("audit_log", "-d", "new/parent/chancy-audit_log")
    assert result.exit_code == 1
    assert "No space left on device" in result.stderr
    assert len(written) == 3
    assert list(cwd.iterdir()) == []

    # An empty target directory the user made is still there afterwards.
    written.clear()
    (cwd / "mine").mkdir()
    assert new("audit_log", "-d", "mine").exit_code == 1
    assert [p.name for p in cwd.iterdir()] == ["mine"]
    assert list((cwd / "mine").iterdir()) == []


def test_the_template_files_are_package_data() -> None:
    template = importlib.resources.files("chancy.cli").joinpath("plugin_template")
    assert template.joinpath("plugin.py.tmpl").is_file()
    assert template.joinpath("pyproject.toml.tmpl").is_file()


@pytest.mark.parametrize(
    ("version", "requirement"),
    [("0.1.0", "~=0.1.0"), ("1.12.3", "~=1.12.0"), ("2.0.0.dev1", "~=2.0.0")],
)
def test_the_new_plugin_needs_the_running_core_minor(
    version: str, requirement: str
) -> None:
    assert PluginNames("x", core_version=version).core_requirement == requirement


def test_class_and_identifier_names() -> None:
    names = PluginNames("audit_log")
    assert names.class_name == "AuditLogPlugin"
    assert names.identifier == "chancy.audit_log"
    assert names.distribution == "chancy-audit_log"
    assert PluginNames("plugin").class_name == "PluginPlugin"  # never "Plugin"


def test_first_party_names_include_core_s_own_namespace_modules() -> None:
    assert FIRST_PARTY_PLUGINS["rule"] == FIRST_PARTY_PLUGINS["core"] == "chancy-core"
    assert FIRST_PARTY_PLUGINS["api"] == "chancy-web"
