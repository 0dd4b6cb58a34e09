"""Wheels install into a fresh virtualenv and the namespaces still work there:
``chancy.plugins`` (a plugin distribution) and ``chancy.contrib`` (chancy-django,
installed through chancy-core's ``django`` extra)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
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
        ROOT / "packages" / "chancy-django",
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
    wheels = {w.name.split("-")[0]: w for w in dist.glob("*.whl")}
    assert set(wheels) == {"chancy_core", "chancy_django", "chancy_testplugin"}

    def files(wheel: str) -> set[str]:
        with zipfile.ZipFile(wheels[wheel]) as archive:
            return {name for name in archive.namelist() if ".dist-info/" not in name}

    # Core ships no chancy/contrib/ (which would hide chancy-django's), and
    # chancy-django ships its package and nothing else, test set-up included.
    assert not any(name.startswith("chancy/contrib/") for name in files("chancy_core"))
    django_files = files("chancy_django")
    assert all(name.startswith("chancy/contrib/django/") for name in django_files)
    assert "chancy/contrib/django/backend.py" in django_files
    assert "chancy/contrib/django/py.typed" in django_files
    assert not any("testing" in name for name in django_files)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {
        k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }
    # chancy-django comes in through the extra, found next to the other wheels.
    run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--find-links",
        dist,
        f"{wheels['chancy_core']}[django]",
        wheels["chancy_testplugin"],
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

    # The Django app loads from the wheels (Django set up without a database
    # connection: models and admin are imported, nothing is queried).
    django_probe = (
        "import django; from django.conf import settings;"
        "settings.configure(INSTALLED_APPS=['django.contrib.contenttypes',"
        " 'django.contrib.auth', 'django.contrib.admin',"
        " 'django.contrib.messages', 'django.contrib.sessions',"
        " 'chancy.contrib.django'],"
        " DATABASES={'default': {'ENGINE': 'django.db.backends.postgresql',"
        " 'NAME': 'unused'}});"
        "django.setup();"
        "import chancy.contrib, chancy.contrib.django.admin;"
        "from django.apps import apps;"
        "from chancy.contrib.django.models import Job;"
        "print(apps.get_app_config('chancy').name, Job._meta.db_table,"
        " list(chancy.contrib.__path__))"
    )
    out = run(python, "-c", django_probe, env=env, cwd=tmp_path).stdout
    assert "chancy.contrib.django chancy_jobs" in out
    assert str(env_dir) in out

    # Without django.tasks (Django < 6) or its backport, the tasks backend
    # says what to install.
    tasks_probe = (
        "import django; from django.conf import settings; settings.configure();"
        "django.setup()\n"
        "try:\n import chancy.contrib.django.backend\n"
        "except Exception as exc:\n print(type(exc).__name__, exc)"
    )
    out = run(python, "-c", tasks_probe, env=env, cwd=tmp_path).stdout
    assert out.startswith("ImproperlyConfigured")
    assert 'pip install "chancy-django[tasks]"' in out
    shutil.rmtree(env_dir)


MINIMAL_CORE_PROBE = """
import importlib, pkgutil, sys
import chancy
names = [m.name for m in pkgutil.walk_packages(chancy.__path__, "chancy.")]
skipped = []
for name in names:
    if name == "chancy.executors.sub":
        continue  # needs sub-interpreters (Python 3.14, or 3.13 + backport)
    importlib.import_module(name)
importlib.import_module("chancy.plugins.rule")  # in a namespace: not walked
loaded = sorted(n for n in sys.modules if n.startswith(("chancy.plugins.", "chancy.contrib")))
print("modules", len(names))
print("loaded", loaded)
print("opentelemetry", sorted(n for n in sys.modules if n.startswith("opentelemetry")))
"""


@pytest.mark.timeout(600)
def test_core_alone_imports_every_module_and_no_plugin(tmp_path: Path) -> None:
    # A minimal core: with only chancy-core installed, every one of its
    # modules imports, and none of them imports a plugin or an integration.
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    run(
        sys.executable, "-m", "build", "--wheel", "--no-isolation",
        "--outdir", dist, ROOT / "packages" / "chancy-core",
    )  # fmt: skip
    (wheel,) = dist.glob("chancy_core-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    # No test-only module in the runtime wheel.
    assert not [n for n in names if "testing_jobs" in n or n.endswith("/_testing.py")]
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {
        k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }
    run(
        python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        f"{wheel}[testing]", env=env,
    )  # fmt: skip
    out = run(python, "-c", MINIMAL_CORE_PROBE, env=env, cwd=tmp_path).stdout
    # chancy.plugins.rule is core's own alias of chancy.rule.
    assert "loaded ['chancy.plugins.rule']" in out, out
    # Tracing is chancy-otel's: core never imports OpenTelemetry.
    assert "opentelemetry []" in out, out
    count = int(out.split("modules ")[1].split()[0])
    assert count > 20
    shutil.rmtree(env_dir)
