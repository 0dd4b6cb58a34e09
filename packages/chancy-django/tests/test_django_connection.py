"""Chancy on a Django project's database, and Django inside process-executor jobs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("django")

from psycopg.conninfo import conninfo_to_dict

from chancy import Chancy, Job, Queue, QueuedJob, Worker


async def test_django_databases_dict_is_accepted(django_settings: str) -> None:
    from django.conf import settings

    app = Chancy(settings.DATABASES["default"], no_default_plugins=True)
    assert isinstance(app.dsn, str)
    given = conninfo_to_dict(django_settings)
    used = conninfo_to_dict(app.dsn)
    for key in ("dbname", "user", "host", "port"):
        assert used.get(key) == given.get(key), key

    async with app:
        assert not await app.is_up_to_date()
        await app.migrate()
        try:
            assert await app.is_up_to_date()
            ref = await app.push(Job(func="app.tasks.f"))
            assert await app.get_job(ref) is not None
        finally:
            await app.migrate(to_version=0)
        assert not await app.is_up_to_date()


PROBE = """
from chancy.job import QueuedJob


def probe(*, context: QueuedJob) -> None:
    from django.apps import apps
    from django.db import connections

    from chancy.contrib.django.models import Job

    try:
        row = Job.objects.get(pk=context.id)
        context.meta["apps_ready"] = apps.ready
        context.meta["orm_state"] = row.state
        context.meta["orm_func"] = row.func
    finally:
        connections.close_all()
"""


async def test_process_executor_sets_django_up_in_its_children(
    chancy: Chancy,
    worker: Worker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    django_settings: str,
) -> None:
    from django.conf import settings

    settings_module = f"chancy_probe_settings_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{settings_module}.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "test"
            USE_TZ = True
            INSTALLED_APPS = [
                "django.contrib.contenttypes",
                "django.contrib.auth",
                "chancy.contrib.django",
            ]
            DATABASES = {{"default": {settings.DATABASES["default"]!r}}}
            DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
            CHANCY_PREFIX = {chancy.prefix!r}
            """
        )
    )
    probe_module = f"chancy_probe_jobs_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{probe_module}.py").write_text(PROBE)
    # Spawned children inherit the environment and the parent's sys.path.
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", settings_module)

    await chancy.declare(
        Queue(
            "django_process",
            executor=Chancy.Executor.Process,
            concurrency=1,
            polling_interval=0.1,
        )
    )
    ref = await chancy.push(Job(func=f"{probe_module}.probe", queue="django_process"))
    job = await chancy.wait_for_job(ref, interval=0.05, timeout=60)
    assert job is not None
    assert job.state is QueuedJob.State.SUCCEEDED, job.errors
    assert job.meta == {
        "apps_ready": True,
        "orm_state": "running",
        "orm_func": f"{probe_module}.probe",
    }
    assert probe_module not in sys.modules  # it ran in a child, not here
