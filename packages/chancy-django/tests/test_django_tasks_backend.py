"""ChancyBackend: Django's Tasks framework on Chancy, run by real workers.

Python 3.11 cannot run Django 6, so these tests use the framework's backport
(``django_tasks``, the same API); Django 6's built-in ``django.tasks`` is not
exercised here.
"""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("django")
pytest.importorskip("django_tasks")

from asgiref.sync import sync_to_async

from chancy import Chancy, Job, Queue, QueuedJob, Reference, Worker

BACKEND = "chancy.contrib.django.backend.ChancyBackend"

TASKS_MODULE = """
import asyncio
import os

from django_tasks import task


class PaymentError(Exception):
    pass


@task()
def add(a, b, *, scale=1):
    return (a + b) * scale


@task()
def fail(message):
    raise PaymentError(message)


@task(takes_context=True)
def attempt(context, label):
    return {
        "label": label,
        "attempt": context.attempt,
        "id": context.task_result.id,
        "status": str(context.task_result.status),
        "worker_ids": context.task_result.worker_ids,
    }


@task()
async def async_add(a, b):
    await asyncio.sleep(0)
    return a + b


@task()
def unserialisable():
    return {1, 2}


@task()
def pid():
    return os.getpid()
"""


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory on ``sys.path`` with a module of tasks (workers import it)."""
    directory = tmp_path_factory.mktemp("django_tasks")
    sys.path.insert(0, str(directory))
    try:
        yield directory
    finally:
        sys.path.remove(str(directory))


def configure(**options: Any) -> Any:
    """``override_settings`` with one ChancyBackend as the default backend."""
    from django.test import override_settings

    queues = options.pop("QUEUES", [])
    return override_settings(
        TASKS={"default": {"BACKEND": BACKEND, "QUEUES": queues, "OPTIONS": options}}
    )


@pytest.fixture
def tasks(tasks_dir: Path, django_settings: str) -> Iterator[ModuleType]:
    """The tasks module, with ChancyBackend (any queue, Django's ``default``
    database) as the default backend."""
    name = f"chancy_test_tasks_{uuid.uuid4().hex}"
    (tasks_dir / f"{name}.py").write_text(TASKS_MODULE)
    importlib.invalidate_caches()
    with configure():
        module = importlib.import_module(name)
        try:
            yield module
        finally:
            sys.modules.pop(name, None)


def ref(result: Any) -> Reference:
    return Reference(uuid.UUID(result.id))


async def count_jobs(chancy: Chancy) -> int:
    async with chancy.pool.connection() as conn:
        cursor = await conn.execute(f"SELECT count(*) FROM {chancy.prefix}jobs")
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_enqueue_maps_priority_queue_run_after_and_arguments(
    chancy: Chancy, tasks: ModuleType, django_orm: None
) -> None:
    from django_tasks import TaskResultStatus

    from chancy.contrib.django.backend import ASYNC_RUNNER, RUNNER

    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    deferred = tasks.add.using(priority=42, queue_name="reports", run_after=when)
    result = await deferred.aenqueue(2, 3, scale=10)
    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs) == ([2, 3], {"scale": 10})
    assert result.backend == "default"
    assert result.task is deferred

    job = await chancy.get_job(ref(result))
    assert job is not None
    assert job.func == RUNNER
    assert (job.queue, job.priority, job.max_attempts) == ("reports", 42, 1)
    assert job.scheduled_at == when
    assert job.state is QueuedJob.State.PENDING
    assert job.kwargs == {
        "task": f"{tasks.__name__}.add",
        "args": [2, 3],
        "kwargs": {"scale": 10},
        "backend": "default",
    }

    got = await tasks.add.aget_result(result.id)
    assert got.id == result.id
    assert got.status == TaskResultStatus.READY
    assert (got.task.priority, got.task.queue_name) == (42, "reports")
    assert got.task.run_after == when
    assert got.task.func is tasks.add.func
    assert (got.args, got.kwargs) == ([2, 3], {"scale": 10})
    assert got.enqueued_at is not None
    assert got.started_at is got.finished_at is None
    assert got.errors == [] and got.worker_ids == [] and got.attempts == 0
    with pytest.raises(ValueError, match="not finished"):
        got.return_value  # noqa: B018

    # Defaults: priority 0, the "default" queue, due now; async def: async runner.
    before = datetime.now(UTC)
    plain = await tasks.async_add.aenqueue(1, 2)
    job = await chancy.get_job(ref(plain))
    assert job is not None
    assert job.func == ASYNC_RUNNER
    assert (job.queue, job.priority) == ("default", 0)
    assert before - timedelta(seconds=5) <= job.scheduled_at <= datetime.now(UTC)
    assert (await tasks.async_add.aget_result(plain.id)).task.run_after is None

    # The synchronous API is the same backend.
    sync_result = await sync_to_async(tasks.add.using(priority=-100).enqueue)(1, 1)
    job = await chancy.get_job(ref(sync_result))
    assert job is not None and job.priority == -100


async def test_invalid_tasks_and_arguments_are_refused_before_anything_is_written(
    chancy: Chancy, tasks: ModuleType, django_orm: None
) -> None:
    from django_tasks.exceptions import InvalidTaskError

    with pytest.raises(InvalidTaskError, match="priority"):
        tasks.add.using(priority=101)
    with pytest.raises(InvalidTaskError, match="aware"):
        tasks.add.using(run_after=datetime(2030, 1, 1))
    with pytest.raises(TypeError, match=r"arguments of the task .*add.* JSON"):
        await tasks.add.aenqueue({1, 2}, 3)
    with pytest.raises(TypeError, match="JSON"):
        await tasks.add.aenqueue(1, 2, scale=float("nan"))
    with configure(QUEUES=["default", "reports"]):
        assert tasks.add.using(queue_name="reports")
        with pytest.raises(InvalidTaskError, match="other"):
            tasks.add.using(queue_name="other")
    assert await count_jobs(chancy) == 0


def test_options_are_validated(tasks_dir: Path, django_settings: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from chancy.contrib.django.backend import ChancyBackend

    def backend(**options: Any) -> ChancyBackend:
        return ChancyBackend("tasks", {"OPTIONS": options})

    with pytest.raises(ImproperlyConfigured, match="'BOGUS'"):
        backend(BOGUS=1)
    with pytest.raises(ImproperlyConfigured, match="not both"):
        backend(CHANCY="app.chancy", PREFIX="x_")
    with pytest.raises(ImproperlyConfigured, match="needs CHANCY"):
        backend(DATABASE=None)
    with pytest.raises(ImproperlyConfigured, match="DATABASE"):
        backend(DATABASE=3)

    for options, message in (
        ({"CHANCY": "no_such_module_here.app"}, "cannot import"),
        ({"CHANCY": "os.path"}, "not a chancy.Chancy app"),
        ({"DATABASE": "missing"}, "no database 'missing'"),
        ({"PREFIX": "bad-prefix"}, "prefix"),
    ):
        broken = backend(**options)
        with pytest.raises(ImproperlyConfigured, match=message):
            broken.chancy  # noqa: B018
        errors = list(broken.check())
        assert [error.id for error in errors] == ["chancy.E001"], options
        assert message in errors[0].msg

    (tasks_dir / "chancy_other_db_app.py").write_text(
        "from chancy import Chancy\n"
        "app = Chancy('postgresql:///some_other_database', no_default_plugins=True)\n"
    )
    with pytest.raises(ImproperlyConfigured, match="some_other_database"):
        backend(CHANCY="chancy_other_db_app.app").chancy  # noqa: B018
    assert list(backend().check()) == []


async def test_get_result_of_something_that_is_not_a_task(
    chancy: Chancy, tasks: ModuleType, django_orm: None
) -> None:
    from django_tasks import default_task_backend
    from django_tasks.exceptions import TaskResultDoesNotExist

    plain = await chancy.push(Job(func="app.jobs.not_a_task"))
    for result_id in (str(uuid.uuid4()), "not-a-uuid", str(plain.identifier)):
        with pytest.raises(TaskResultDoesNotExist):
            await default_task_backend.aget_result(result_id)


async def test_a_worker_runs_the_tasks(
    chancy: Chancy, worker: Worker, tasks: ModuleType, django_orm: None
) -> None:
    from django_tasks import TaskResultStatus
    from django_tasks.signals import task_enqueued, task_finished

    seen: list[tuple[str, str]] = []

    def enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append(("enqueued", task_result.id))

    def finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append((str(task_result.status), task_result.id))

    task_enqueued.connect(enqueued)
    task_finished.connect(finished)
    try:
        for name, executor in (
            ("django_threads", Chancy.Executor.Threaded),
            ("django_async", Chancy.Executor.Async),
        ):
            await chancy.declare(Queue(name, executor=executor, polling_interval=0.1))
        on = {"queue_name": "django_threads"}
        added = await tasks.add.using(**on).aenqueue(2, 3, scale=10)
        failed = await tasks.fail.using(**on).aenqueue("card declined")
        context = await tasks.attempt.using(**on).aenqueue("x")
        bad = await tasks.unserialisable.using(**on).aenqueue()
        threaded_async = await tasks.async_add.using(**on).aenqueue(1, 2)
        looped_async = await tasks.async_add.using(queue_name="django_async").aenqueue(
            20, 22
        )
        results = [added, failed, context, bad, threaded_async, looped_async]
        jobs = await chancy.wait_for_jobs(
            [ref(r) for r in results], interval=0.05, timeout=60
        )
        assert len(jobs) == len(results)
    finally:
        task_enqueued.disconnect(enqueued)
        task_finished.disconnect(finished)

    got = await tasks.add.aget_result(added.id)
    assert got.status == TaskResultStatus.SUCCESSFUL
    assert got.return_value == 50
    assert got.worker_ids == [worker.worker_id] and got.attempts == 1
    assert got.errors == []
    assert got.started_at is not None and got.finished_at is not None
    assert got.enqueued_at is not None
    assert got.enqueued_at <= got.started_at <= got.finished_at
    assert got.last_attempted_at == got.started_at
    await added.arefresh()  # the result returned by enqueue, read again
    assert added.status == TaskResultStatus.SUCCESSFUL and added.return_value == 50

    got = await tasks.fail.aget_result(failed.id)
    assert got.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in got.errors] == [
        f"{tasks.__name__}.PaymentError"
    ]
    assert got.errors[0].exception_class is tasks.PaymentError
    assert "card declined" in got.errors[0].traceback
    with pytest.raises(ValueError, match="failed"):
        got.return_value  # noqa: B018

    got = await tasks.attempt.aget_result(context.id)
    assert got.status == TaskResultStatus.SUCCESSFUL, got.errors
    assert got.return_value == {
        "label": "x",
        "attempt": 1,
        "id": context.id,
        "status": "RUNNING",
        "worker_ids": [worker.worker_id],
    }

    got = await tasks.unserialisable.aget_result(bad.id)
    assert got.status == TaskResultStatus.FAILED
    assert got.errors[0].exception_class is TypeError
    assert "return value" in got.errors[0].traceback

    assert (await tasks.async_add.aget_result(threaded_async.id)).return_value == 3
    assert (await tasks.async_add.aget_result(looped_async.id)).return_value == 42

    for result in results:
        assert ("enqueued", result.id) in seen
    assert ("SUCCESSFUL", added.id) in seen
    assert ("FAILED", failed.id) in seen


async def test_enqueue_is_part_of_the_callers_transaction(
    chancy: Chancy, tasks: ModuleType, django_orm: None
) -> None:
    from django.db import transaction
    from django_tasks import TaskResultStatus

    class Rollback(Exception):
        pass

    def enqueue_in_transactions() -> tuple[str, str]:
        with transaction.atomic():
            kept = tasks.add.enqueue(1, 2)
            # Inside the transaction: visible to it, not to other connections.
            assert tasks.add.get_result(kept.id).status == TaskResultStatus.READY
            with chancy:
                assert chancy.sync_get_job(kept.id) is None
        with pytest.raises(Rollback):
            with transaction.atomic():
                dropped = tasks.add.enqueue(3, 4)
                raise Rollback
        return kept.id, dropped.id

    kept, dropped = await sync_to_async(enqueue_in_transactions)()
    assert await chancy.get_job(kept) is not None
    assert await chancy.get_job(dropped) is None


@pytest.fixture
async def app_module(tasks_dir: Path, chancy: Chancy) -> AsyncIterator[ModuleType]:
    """A module whose ``app`` is the test's Chancy app (for ``CHANCY``)."""
    name = f"chancy_test_app_{uuid.uuid4().hex}"
    (tasks_dir / f"{name}.py").write_text("app = None\n")
    importlib.invalidate_caches()
    module = importlib.import_module(name)
    module.app = chancy
    try:
        yield module
    finally:
        sys.modules.pop(name, None)
        await sync_to_async(chancy.__exit__)(None, None, None)  # its sync pool


async def test_the_chancy_option(
    chancy: Chancy, tasks: ModuleType, app_module: ModuleType, django_orm: None
) -> None:
    from django.db import transaction
    from django_tasks import TaskResultStatus

    path = f"{app_module.__name__}.app"

    # On Django's connection (the app is on the same database).
    with configure(CHANCY=path):
        result = await tasks.add.aenqueue(1, 2)
        assert (await tasks.add.aget_result(result.id)).args == [1, 2]

    # Through the app's own pool: committed at once, whatever Django does.
    class Rollback(Exception):
        pass

    def enqueue_and_roll_back() -> str:
        with pytest.raises(Rollback):
            with transaction.atomic():
                result = tasks.add.enqueue(5, 6)
                raise Rollback
        return result.id

    with configure(CHANCY=path, DATABASE=None):
        result_id = await sync_to_async(enqueue_and_roll_back)()
        got = await tasks.add.aget_result(result_id)
        assert got.status == TaskResultStatus.READY and got.args == [5, 6]
    assert await chancy.get_job(result_id) is not None


SETTINGS_MODULE = """
SECRET_KEY = "test"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_tasks",
]
DATABASES = {{"default": {database!r}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TASKS = {{
    "default": {{
        "BACKEND": "chancy.contrib.django.backend.ChancyBackend",
        "QUEUES": [],
    }}
}}
"""


async def test_a_task_runs_in_a_process_executor_child(
    chancy: Chancy,
    worker: Worker,
    tasks: ModuleType,
    tasks_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    django_orm: None,
) -> None:
    from django.conf import settings
    from django_tasks import TaskResultStatus

    settings_module = f"chancy_test_settings_{uuid.uuid4().hex}"
    (tasks_dir / f"{settings_module}.py").write_text(
        textwrap.dedent(SETTINGS_MODULE).format(database=settings.DATABASES["default"])
    )
    # Spawned children inherit the environment.
    monkeypatch.setenv("PYTHONPATH", str(tasks_dir))
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", settings_module)

    await chancy.declare(
        Queue(
            "django_processes",
            executor=Chancy.Executor.Process,
            concurrency=1,
            polling_interval=0.1,
        )
    )
    on = {"queue_name": "django_processes"}
    child = await tasks.pid.using(**on).aenqueue()
    added = await tasks.add.using(**on).aenqueue(20, 1, scale=2)
    await chancy.wait_for_jobs([ref(child), ref(added)], interval=0.05, timeout=90)

    got = await tasks.pid.aget_result(child.id)
    assert got.status == TaskResultStatus.SUCCESSFUL, got.errors
    assert got.return_value != os.getpid()  # it ran in a child
    assert (await tasks.add.aget_result(added.id)).return_value == 42
