"""The built wheel ships the dashboard's files next to the code that serves them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent
STATIC = PACKAGE / "src" / "chancy" / "plugins" / "web" / "static"


@pytest.mark.timeout(300)
def test_wheel_contains_every_dashboard_file(tmp_path: Path) -> None:
    pytest.importorskip("build")
    command = [sys.executable, "-m", "build", "--wheel", "--no-isolation"]
    subprocess.run(
        [*command, "--outdir", str(tmp_path), str(PACKAGE)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("chancy_web-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "chancy/plugins/web/static/" + path.relative_to(STATIC).as_posix()
        for path in STATIC.rglob("*")
        if path.is_file()
    }
    assert "chancy/plugins/web/static/index.html" in expected
    assert expected <= names
    assert "chancy/plugins/api/__init__.py" in names  # the original's import path
    assert not any(name.startswith("chancy/__init__") for name in names)  # core owns it


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["cron", "workflow", "metrics"])
def test_plugin_wheels_ship_their_dashboard_pages(name: str, tmp_path: Path) -> None:
    """The pages a plugin contributes (WebPage) are package data of its own
    distribution, served by chancy-web from where the wheel installs them."""
    pytest.importorskip("build")
    project = PACKAGE.parent / f"chancy-{name}"
    static = project / "src" / "chancy" / "plugins" / name / "static"
    command = [sys.executable, "-m", "build", "--wheel", "--no-isolation"]
    subprocess.run(
        [*command, "--outdir", str(tmp_path), str(project)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob(f"chancy_{name}-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"chancy/plugins/{name}/static/{path.name}" for path in static.glob("*.js")
    }
    assert len(expected) >= 2
    assert expected <= names
    assert f"chancy/plugins/{name}/web.py" in names
