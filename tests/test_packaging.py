"""Wheels install into a fresh virtualenv and the plugin namespace still works there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], check=True, capture_output=True, text=True, **kwargs
    )  # type: ignore[call-overload]


@pytest.mark.timeout(600)
def test_wheels_install_and_discover_plugins_in_a_fresh_venv(tmp_path: Path) -> None:
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    for project in (
        ROOT / "packages" / "chancy-core",
        ROOT / "tests" / "chancy-testplugin",
    ):
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
    wheels = sorted(dist.glob("*.whl"))
    assert {w.name.split("-")[0] for w in wheels} == {
        "chancy_core",
        "chancy_testplugin",
    }

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {
        k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }
    run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        *wheels,
        env=env,
    )

    probe = (
        "import chancy, chancy.plugins.testplugin as t, chancy.plugins.rule as r;"
        "from chancy._plugins import installed_plugins;"
        "print(t.TestPlugin.get_identifier(), [p['distribution'] for p in installed_plugins()],"
        " chancy.__file__)"
    )
    out = run(python, "-c", probe, env=env, cwd=tmp_path).stdout
    assert "chancy.testplugin" in out
    assert "chancy-testplugin" in out or "chancy_testplugin" in out
    assert str(env_dir) in out  # imported from the venv, not the workspace

    listing = run(env_dir / "bin" / "chancy", "plugins", env=env, cwd=tmp_path).stdout
    assert "testplugin" in listing
    shutil.rmtree(env_dir)
