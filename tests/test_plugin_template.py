"""``chancy plugin new`` writes a distribution that works as generated.

chancy-core's wheel is installed (with its ``testing`` extra) into a new
virtualenv, whose own ``chancy plugin new`` writes the plugin from the
template shipped in that wheel. The plugin's wheel is built and installed
next to it, and its generated tests run there, unchanged, in
pytest-asyncio's strict mode, against this session's PostgreSQL server
(passed as ``CHANCY_TEST_DSN``). Wheels are built locally without build
isolation and found with ``--find-links``, as in ``test_packaging.py``.
"""

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
NAME = "template_probe"


def run(
    *args: str | Path, check: bool = True, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], check=False, capture_output=True, text=True, **kwargs
    )  # type: ignore[call-overload]
    if check:
        assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result  # type: ignore[no-any-return]


def build_wheel(project: Path, dist: Path) -> Path:
    before = set(dist.glob("*.whl")) if dist.exists() else set()
    run(
        sys.executable,
        "-m",
        "build",
        "--wheel",
        "--no-isolation",
        "--outdir",
        dist,
        project,
    )
    (wheel,) = set(dist.glob("*.whl")) - before
    return wheel


@pytest.mark.timeout(600)
def test_a_new_plugin_builds_installs_and_passes_its_own_tests(
    tmp_path: Path, chancy_server_dsn: str
) -> None:
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    core_wheel = build_wheel(ROOT / "packages" / "chancy-core", dist)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    chancy = env_dir / "bin" / "chancy"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV"} and not k.startswith("CHANCY_")
    }
    pip = (python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check")
    run(*pip, "--find-links", dist, f"{core_wheel}[testing]", env=env)

    # The venv's chancy writes the plugin from the template in core's wheel.
    project = tmp_path / f"chancy-{NAME}"
    created = run(chancy, "plugin", "new", NAME, env=env, cwd=tmp_path)
    assert f"Wrote the plugin distribution chancy-{NAME}" in created.stdout
    assert (project / "src" / "chancy" / "plugins" / NAME / "plugin.py").is_file()

    plugin_wheel = build_wheel(project, dist)
    with zipfile.ZipFile(plugin_wheel) as archive:
        shipped = {n for n in archive.namelist() if ".dist-info/" not in n}
    package = f"chancy/plugins/{NAME}"
    # Only its own directory: no chancy/__init__.py, no chancy/plugins/__init__.py.
    assert shipped == {
        f"{package}/__init__.py",
        f"{package}/hooks.py",
        f"{package}/plugin.py",
        f"{package}/py.typed",
        f"{package}/migrations/__init__.py",
        f"{package}/migrations/v0001_initial.py",
    }
    run(*pip, "--find-links", dist, f"{plugin_wheel}[test]", env=env)

    # The generated tests, as generated, in the settings of its pyproject.toml.
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
    assert "failed" not in summary and "error" not in summary, tests

    # Installed, it is listed, and its name is taken.
    listing = run(chancy, "plugins", env=env, cwd=tmp_path).stdout
    assert f"chancy-{NAME} 0.1.0 (entry point '{NAME}')" in listing
    assert f"TemplateProbePlugin  chancy.{NAME}\n" in listing  # not a default
    again = run(
        chancy, "plugin", "new", NAME, "-d", "again", check=False, env=env, cwd=tmp_path
    )
    assert again.returncode == 2
    assert f"the installed distribution chancy-{NAME} has the entry point" in (
        again.stderr
    )
    assert not (tmp_path / "again").exists()
