"""A new plugin distribution, written from the template behind ``chancy plugin new``.

The template's files are package data in ``chancy/cli/plugin_template/``
(read with :mod:`importlib.resources`, so they work from a wheel and from an
editable install); each is a :class:`string.Template` whose placeholders are
the :class:`PluginNames` below. The result has the shape of every
first-party plugin distribution::

    chancy-NAME/
    ├── pyproject.toml       # hatchling; entry point NAME = "chancy.plugins.NAME.hooks"
    ├── README.md            # install, example, settings, tables, licence
    ├── .gitignore
    ├── src/chancy/plugins/NAME/
    │   ├── __init__.py      # usage docstring; exports the plugin class
    │   ├── py.typed
    │   ├── hooks.py         # chancy_register_plugins
    │   ├── plugin.py        # the Plugin subclass: facts as class attributes, run()
    │   └── migrations/
    │       ├── __init__.py
    │       └── v0001_initial.py
    └── tests/test_NAME.py   # on the fixtures of chancy.testing

No licence is chosen for the author: the README says how to add one.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import keyword
import re
import secrets
import shutil
import string
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

import attrs

from chancy import __version__

__all__ = [
    "FIRST_PARTY_PLUGINS",
    "PluginNames",
    "check_plugin_name",
    "render_plugin",
    "write_plugin",
]

#: Names a new plugin may not take, and the first-party distribution that
#: has each: the plugin distributions (``chancy-NAME``), core and the Django
#: integration, and the other packages they put in ``chancy.plugins``.
FIRST_PARTY_PLUGINS: Final[Mapping[str, str]] = MappingProxyType(
    {
        **{
            name: f"chancy-{name}"
            for name in (
                "core",
                "cron",
                "debug",
                "django",
                "leadership",
                "metrics",
                "otel",
                "pruner",
                "recovery",
                "reprioritize",
                "retry",
                "sentry",
                "trigger",
                "web",
                "workflow",
            )
        },
        "api": "chancy-web",
        "rule": "chancy-core",
    }
)

_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_]*")

#: Template file (in ``plugin_template/``) -> its path in the new distribution.
_FILES: Final = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "gitignore.tmpl": ".gitignore",
    "init.py.tmpl": "src/chancy/plugins/$name/__init__.py",
    "py.typed.tmpl": "src/chancy/plugins/$name/py.typed",
    "hooks.py.tmpl": "src/chancy/plugins/$name/hooks.py",
    "plugin.py.tmpl": "src/chancy/plugins/$name/plugin.py",
    "migrations_init.py.tmpl": "src/chancy/plugins/$name/migrations/__init__.py",
    "v0001_initial.py.tmpl": "src/chancy/plugins/$name/migrations/v0001_initial.py",
    "test_plugin.py.tmpl": "tests/test_$name.py",
}


@attrs.frozen
class PluginNames:
    """The names a new plugin distribution is written with (the template's
    placeholders)."""

    #: The plugin's name: entry point, migration line, table and the package
    #: ``chancy.plugins.<name>``.
    name: str
    #: chancy-core's version; the new distribution needs its minor release.
    core_version: str = __version__

    @property
    def distribution(self) -> str:
        return f"chancy-{self.name}"

    @property
    def class_name(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_")) + "Plugin"

    @property
    def identifier(self) -> str:
        return f"chancy.{self.name}"

    @property
    def core_requirement(self) -> str:
        """``~=X.Y.0`` of the running chancy-core: any release of its minor."""
        match = re.match(r"(\d+)\.(\d+)", self.core_version)
        if match is None:
            raise ValueError(f"cannot read chancy-core's version {self.core_version!r}")
        return f"~={match[1]}.{match[2]}.0"

    def substitutions(self) -> dict[str, str]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "class_name": self.class_name,
            "identifier": self.identifier,
            "migration_class": f"Create{self.class_name.removesuffix('Plugin')}Table",
            "core_requirement": f"chancy-core{self.core_requirement}",
            "testing_requirement": f"chancy-core[testing]{self.core_requirement}",
        }


def _installed_as(name: str) -> str | None:
    """How a plugin called ``name`` is already installed, or ``None``."""
    for entry_point in importlib.metadata.entry_points(group="chancy"):
        if entry_point.name == name:
            owner = entry_point.dist.name if entry_point.dist is not None else "?"
            return f"the installed distribution {owner} has the entry point {name!r}"
    try:
        dist = importlib.metadata.distribution(f"chancy-{name}")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        return f"the distribution {dist.name} is installed"
    try:
        spec = importlib.util.find_spec(f"chancy.plugins.{name}")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        where = spec.origin or ", ".join(spec.submodule_search_locations or [])
        return f"the package chancy.plugins.{name} is installed ({where})"
    return None


def check_plugin_name(name: str) -> None:
    """Refuse a name a new plugin cannot take.

    :raises ValueError: ``name`` is not a lower-case ASCII Python identifier
        starting with a letter, is a keyword, is a first-party plugin's name,
        or a plugin of that name is installed; the message says which.
    """
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a valid plugin name: use lower-case letters a-z,"
            " digits and underscores, starting with a letter (it becomes the"
            " Python package chancy.plugins.NAME), e.g. audit_log"
        )
    if keyword.iskeyword(name):
        raise ValueError(
            f"{name!r} is a Python keyword, which cannot name the package"
            f" chancy.plugins.{name}"
        )
    owner = FIRST_PARTY_PLUGINS.get(name)
    if owner is not None:
        what = (
            owner if owner == f"chancy-{name}" else f"{owner} (chancy.plugins.{name})"
        )
        raise ValueError(
            f"{name!r} is taken by Chancy's own {what}; choose another name"
        )
    installed = _installed_as(name)
    if installed is not None:
        raise ValueError(f"{name!r} is taken: {installed}; choose another name")


def _check_directory(directory: Path) -> None:
    if directory.is_dir():
        if any(directory.iterdir()):
            raise FileExistsError(
                f"{directory} exists and is not empty; remove it or choose"
                " another directory"
            )
    elif directory.exists() or directory.is_symlink():
        raise FileExistsError(f"{directory} exists and is not a directory")


def render_plugin(names: PluginNames) -> dict[str, str]:
    """``{relative path: content}`` of every file of the new distribution."""
    values = names.substitutions()
    template_dir = importlib.resources.files("chancy.cli").joinpath("plugin_template")
    rendered: dict[str, str] = {}
    for source, target in _FILES.items():
        text = template_dir.joinpath(source).read_text(encoding="utf-8")
        path = string.Template(target).substitute(values)
        rendered[path] = string.Template(text).substitute(values)
    return rendered


def write_plugin(name: str, directory: Path) -> list[Path]:
    """Write the distribution of a new plugin ``name`` into ``directory``.

    ``directory`` must not exist or be empty. Every file is rendered before
    anything is written, and written into a temporary directory beside
    ``directory`` that is then renamed, so a failure leaves nothing behind.

    :returns: the paths written, relative to ``directory``.
    :raises ValueError: the name is refused (see :func:`check_plugin_name`).
    :raises FileExistsError: ``directory`` exists and is not an empty directory.
    """
    check_plugin_name(name)
    directory = Path(directory).absolute()
    _check_directory(directory)
    files = render_plugin(PluginNames(name))

    parent = directory.parent
    created_parent: Path | None = None  # the first missing ancestor
    if not parent.exists():
        created_parent = parent
        while not created_parent.parent.exists():
            created_parent = created_parent.parent
    staging = parent / f".{directory.name}-{secrets.token_hex(4)}"
    done = removed_empty = False
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        for path, content in files.items():
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        if directory.is_dir():  # empty, checked above
            directory.rmdir()
            removed_empty = True
        staging.rename(directory)
        done = True
    finally:
        if not done:
            shutil.rmtree(staging, ignore_errors=True)
            if removed_empty:
                directory.mkdir(exist_ok=True)
            if created_parent is not None:
                shutil.rmtree(created_parent, ignore_errors=True)
    return [Path(path) for path in files]
