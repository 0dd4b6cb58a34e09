"""A backend for Django's Tasks framework that runs tasks as Chancy jobs.

Django >= 6.0 has the framework built in (``django.tasks``); older Django
versions use its backport (``pip install "chancy-django[tasks]"``, module
``django_tasks``), which this backend falls back to. Configure it in
``TASKS``::

    TASKS = {
        "default": {
            "BACKEND": "chancy.contrib.django.backend.ChancyBackend",
            "QUEUES": [],  # any Chancy queue; or list the ones tasks may use
            "OPTIONS": {"DATABASE": "default"},
        }
    }

Each enqueued task becomes one Chancy job: ``priority`` is the job's priority
(Django's -100..100, higher runs first, as in Chancy), ``queue_name`` the
Chancy queue, ``run_after`` the job's ``scheduled_at``. Chancy jobs take
keyword arguments only, so the job calls :func:`run_task` (or
:func:`arun_task` for ``async def`` tasks) with the task's import path, its
``args`` and its ``kwargs``, and that runner calls the task. Jobs get one
attempt, as Django's tasks have no retries. A Chancy worker serving the queue
runs the task; it needs the project's settings (``DJANGO_SETTINGS_MODULE``).

``OPTIONS``:

``DATABASE`` (default ``"default"``)
    Alias of the Django database that holds Chancy's tables. Jobs are
    inserted and read on that Django connection, so a task enqueued inside
    ``transaction.atomic()`` exists exactly when the transaction commits (and
    not at all if it rolls back). ``None`` pushes through the ``CHANCY`` app's
    own connection pool instead: committed at once, whatever Django's
    transaction does (for Chancy tables in a database Django does not know).
``CHANCY`` (default ``None``)
    Dotted path to the project's :class:`chancy.Chancy` app, e.g.
    ``"myproject.worker.chancy"``; its table prefix is used. With
    ``DATABASE`` set, the app must be on that database (same database name).
    Without it, the backend makes an app on ``DATABASE`` with ``PREFIX``.
``PREFIX`` (default: the ``CHANCY_PREFIX`` setting, else ``"chancy_"``)
    Chancy's table prefix when ``CHANCY`` is not given.

``get_result(id)`` reads the job: ``pending`` and ``retrying`` are
``READY``, ``running`` is ``RUNNING``, ``succeeded`` is ``SUCCESSFUL`` and
``failed`` (cancelled included) is ``FAILED``. Each recorded error becomes a
``TaskError`` with the traceback Chancy stored. Chancy itself stores no
return values: the runner keeps a successful task's (JSON) return value in
the job's ``meta["django_task"]["return_value"]``, where ``get_result`` finds
it. Chancy records only the last worker that took a job, so ``worker_ids``
repeats it once per attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from inspect import iscoroutinefunction
from typing import TYPE_CHECKING, Any, Final

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from chancy.app import Chancy
from chancy.contrib.django._shared import ensure_django_setup
from chancy.contrib.django._tasks import (
    BaseTaskBackend,
    InvalidTask,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from chancy.job import Job, QueuedJob
from chancy.utils import import_string

if TYPE_CHECKING:
    import psycopg
    from django.core.checks import CheckMessage
    from django_tasks.base import Task

__all__ = ["ChancyBackend", "arun_task", "run_task"]

#: The job functions that run tasks.
RUNNER: Final = f"{__name__}.run_task"
ASYNC_RUNNER: Final = f"{__name__}.arun_task"

#: Key of the task's bookkeeping in the job's ``meta``.
META_KEY: Final = "django_task"

#: Added to the exception of a failed task, so that ``get_result`` can name
#: its class from the stored traceback.
_NOTE_PREFIX: Final = "Django task exception: "

_OPTIONS: Final = frozenset({"CHANCY", "DATABASE", "PREFIX"})

# Looked up by value: Django ships no types, so the members themselves would
# type-check as their (value, label) tuples.
_READY: Final = TaskResultStatus("READY")
_RUNNING: Final = TaskResultStatus("RUNNING")
_SUCCESSFUL: Final = TaskResultStatus("SUCCESSFUL")
_FAILED: Final = TaskResultStatus("FAILED")

_STATUSES: Final = {
    QueuedJob.State.PENDING.value: _READY,
    QueuedJob.State.RETRYING.value: _READY,
    QueuedJob.State.RUNNING.value: _RUNNING,
    QueuedJob.State.SUCCEEDED.value: _SUCCESSFUL,
    QueuedJob.State.FAILED.value: _FAILED,
}

# The last line of a formatted exception: ``module.Class: message`` (no module
# for built-in exceptions).
_EXCEPTION_LINE: Final = re.compile(r"^([A-Za-z_][\w.]*)(?::\s|:?$)")

# Apps the backend makes from a database alias, shared by the backend
# instances of every thread (Django makes one per thread).
_apps: dict[tuple[str, str], Chancy] = {}
_apps_lock = threading.Lock()


def _to_json(value: Any, what: str) -> Any:
    """``value`` as it reads back from JSON (tuples become lists).

    :raises TypeError: naming ``what`` when ``value`` is not JSON-serialisable.
    """
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serialisable: {exc}") from None


def _exception_path(text: str) -> str:
    """The import path of the exception class named in a stored traceback."""
    lines = text.strip().splitlines()
    for line in reversed(lines):
        if line.startswith(_NOTE_PREFIX):
            return line.removeprefix(_NOTE_PREFIX).strip()
    for line in reversed(lines):
        match = _EXCEPTION_LINE.match(line)
        if match is not None:
            name = match.group(1)
            return name if "." in name else f"builtins.{name}"
    return "builtins.Exception"


def _class_path(kind: type[BaseException]) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


class ChancyBackend(BaseTaskBackend):
    """Runs Django tasks as Chancy jobs (see the module documentation)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = params.get("OPTIONS") or {}
        where = f"TASKS[{alias!r}]['OPTIONS']"
        if not isinstance(options, dict):
            raise ImproperlyConfigured(f"{where} must be a dict, got {options!r}")
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ImproperlyConfigured(
                f"{where}: unknown option(s) {', '.join(map(repr, unknown))};"
                " ChancyBackend takes CHANCY, DATABASE and PREFIX"
            )
        for name in _OPTIONS:
            value = options.get(name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ImproperlyConfigured(
                    f"{where}[{name!r}] must be a non-empty string or None,"
                    f" got {value!r}"
                )
        self.chancy_path: str | None = options.get("CHANCY")
        self.database: str | None = options.get("DATABASE", "default")
        self.prefix: str | None = options.get("PREFIX")
        if self.chancy_path is not None and self.prefix is not None:
            raise ImproperlyConfigured(
                f"{where}: give CHANCY or PREFIX, not both (the app has its prefix)"
            )
        if self.chancy_path is None and self.database is None:
            raise ImproperlyConfigured(
                f"{where}: DATABASE=None pushes through the app's own pool, which"
                " needs CHANCY (the dotted path to the Chancy app)"
            )
        self._app: Chancy | None = None
        self._app_lock = threading.Lock()

    # ------------------------------------------------------------------
    # The Chancy app and the database
    # ------------------------------------------------------------------

    @property
    def chancy(self) -> Chancy:
        """The Chancy app (resolved on first use).

        :raises ImproperlyConfigured: ``CHANCY`` or ``DATABASE`` is wrong.
        """
        if self._app is None:
            with self._app_lock:
                if self._app is None:
                    self._app = self._load_app()
        return self._app

    def _where(self, option: str) -> str:
        return f"TASKS[{self.alias!r}]['OPTIONS'][{option!r}]"

    def _database_settings(self) -> dict[str, Any]:
        from django.conf import settings

        assert self.database is not None
        database = settings.DATABASES.get(self.database)
        if database is None:
            raise ImproperlyConfigured(
                f"{self._where('DATABASE')}: there is no database {self.database!r}"
                " in DATABASES"
            )
        return dict(database)

    def _load_app(self) -> Chancy:
        if self.chancy_path is not None:
            try:
                app = import_string(self.chancy_path)
            except ImportError as exc:
                raise ImproperlyConfigured(
                    f"{self._where('CHANCY')}: cannot import {self.chancy_path!r}: {exc}"
                ) from None
            if not isinstance(app, Chancy):
                raise ImproperlyConfigured(
                    f"{self._where('CHANCY')}: {self.chancy_path!r} is a"
                    f" {type(app).__name__}, not a chancy.Chancy app"
                )
            if self.database is not None:
                self._check_same_database(app)
            return app
        from chancy.contrib.django.conf import get_prefix

        prefix = self.prefix if self.prefix is not None else get_prefix()
        database = self._database_settings()
        key = (str(self.database), prefix)
        with _apps_lock:
            app = _apps.get(key)
            if app is None:
                try:
                    app = Chancy(database, prefix=prefix, no_default_plugins=True)
                except ValueError as exc:
                    raise ImproperlyConfigured(
                        f"TASKS[{self.alias!r}]: cannot make a Chancy app on the"
                        f" database {self.database!r}: {exc}"
                    ) from None
                _apps[key] = app
        return app

    def _check_same_database(self, app: Chancy) -> None:
        from psycopg.conninfo import conninfo_to_dict

        name = self._database_settings().get("NAME")
        app_name = conninfo_to_dict(app.dsn).get("dbname")
        if name and app_name and name != app_name:
            raise ImproperlyConfigured(
                f"TASKS[{self.alias!r}]: the Chancy app {self.chancy_path!r} uses the"
                f" database {app_name!r} but DATABASE={self.database!r} is"
                f" {name!r}; set DATABASE to the alias of the app's database, or to"
                " None to push through the app's own connections"
            )

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor on the Django connection ``DATABASE``, in its transaction.

        It binds parameters on the server like Chancy's own connections
        (Django's cursors bind them on the client), and database errors
        surface as Django's and mark an enclosing ``atomic`` block for
        rollback, as the ORM's do.
        """
        import psycopg
        from django.db import connections, transaction

        assert self.database is not None
        connection = connections[self.database]
        if connection.vendor != "postgresql":
            raise ImproperlyConfigured(
                f"{self._where('DATABASE')}: {self.database!r} is a"
                f" {connection.vendor} database; Chancy needs PostgreSQL"
            )
        with (
            transaction.mark_for_rollback_on_error(using=self.database),
            connection.wrap_database_errors,
        ):
            connection.ensure_connection()
            connection.validate_no_broken_transaction()
            raw = connection.connection
            if not isinstance(raw, psycopg.Connection):
                raise ImproperlyConfigured(
                    f"{self._where('DATABASE')}: Django must use psycopg 3 for"
                    f" {self.database!r}, not {type(raw).__module__}"
                )
            with psycopg.Cursor(raw) as cursor:
                yield cursor

    # ------------------------------------------------------------------
    # Enqueueing
    # ------------------------------------------------------------------

    def _job(self, task: Task[Any, Any], args: Any, kwargs: Any) -> Job:
        """The job that runs ``task(*args, **kwargs)``."""
        run_after = task.run_after
        if isinstance(run_after, timedelta):  # Django >= 6 may keep a delay
            run_after = timezone.now() + run_after
        if run_after is not None and timezone.is_naive(run_after):
            # Only with USE_TZ = False: a time in the current time zone.
            run_after = timezone.make_aware(run_after)
        payload = _to_json(
            {
                "task": task.module_path,
                "args": list(args),
                "kwargs": dict(kwargs),
                "backend": self.alias,
            },
            f"the arguments of the task {task.module_path!r}",
        )
        meta = {
            META_KEY: {
                "priority": task.priority,
                "run_after": run_after.isoformat() if run_after else None,
            }
        }
        fields: dict[str, Any] = {}
        if run_after is not None:
            fields["scheduled_at"] = run_after
        return Job(
            func=ASYNC_RUNNER if iscoroutinefunction(task.func) else RUNNER,
            queue=task.queue_name,
            kwargs=payload,
            priority=task.priority,
            meta=meta,
            **fields,
        )

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        """Push ``task(*args, **kwargs)`` as a Chancy job.

        On the ``DATABASE`` connection, inside the caller's transaction if
        there is one.

        :raises InvalidTask: the backend cannot run ``task`` as configured.
        :raises TypeError: the arguments are not JSON-serialisable.
        """
        self.validate_task(task)
        job = self._job(task, args, kwargs)
        app = self.chancy
        if self.database is None:
            ref = app.sync_push(job)
        else:
            with self._cursor() as cursor:
                ref = app.sync_push_many_ex(cursor, [job])[0]
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=str(ref.identifier),
            status=_READY,
            enqueued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=job.kwargs["args"],
            kwargs=job.kwargs["kwargs"],
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    # ------------------------------------------------------------------
    # Results
    # ------------------------------------------------------------------

    def _fetch(self, job_id: uuid.UUID) -> dict[str, Any] | None:
        from psycopg.rows import dict_row
        from psycopg.types.json import JsonbLoader

        app = self.chancy
        if self.database is None:
            app.sync_ensure_open()
            with (
                app.sync_pool.connection() as conn,
                conn.cursor(row_factory=dict_row) as pooled,
            ):
                pooled.execute(app.sql.get_job, (job_id,))
                row: dict[str, Any] | None = pooled.fetchone()
                return row
        with self._cursor() as cursor:
            # Django's connections load jsonb as text.
            cursor.adapters.register_loader("jsonb", JsonbLoader)
            cursor.row_factory = dict_row
            cursor.execute(app.sql.get_job, (job_id,))
            row = cursor.fetchone()
            return row

    def load_task(self, path: str) -> Task[Any, Any]:
        """The task at ``path`` (``module.function``).

        :raises ImportError: it cannot be imported.
        :raises TypeError: it is not a Django task.
        """
        task = import_string(path)
        if not isinstance(task, self.task_class):
            raise TypeError(
                f"{path!r} is a {type(task).__name__}, not a Django task"
                " (decorate the function with @task)"
            )
        return task

    def get_result(self, result_id: str) -> TaskResult[Any]:
        """The result of the task whose job has the id ``result_id``.

        :raises TaskResultDoesNotExist: there is no such job (never pushed,
            or pruned), or the job is not a Django task.
        """
        try:
            job_id = uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        row = self._fetch(job_id)
        payload = row["kwargs"] if row is not None else None
        if (
            row is None
            or row["func"] not in (RUNNER, ASYNC_RUNNER)
            or not isinstance(payload, dict)
            or not isinstance(payload.get("task"), str)
        ):
            raise TaskResultDoesNotExist(result_id)
        return self._result(row, payload)

    def _result(self, row: dict[str, Any], payload: dict[str, Any]) -> TaskResult[Any]:
        task = self.load_task(payload["task"])
        info = (row.get("meta") or {}).get(META_KEY) or {}
        priority = info.get("priority", row["priority"])
        try:
            task = task.using(
                priority=max(-100, min(100, int(priority))),
                queue_name=row["queue"],
                backend=self.alias,
                run_after=_parse_time(info.get("run_after")),
            )
        except InvalidTask:
            pass  # QUEUES changed since: the task as it is defined now
        state = row["state"]
        runs = row["attempts"] + (state == QueuedJob.State.RUNNING.value)
        taken_by = row.get("taken_by")
        started = row.get("started_at")
        status = _STATUSES[state]
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=str(row["id"]),
            status=status,
            enqueued_at=row.get("created_at"),
            started_at=started,
            finished_at=row.get("completed_at"),
            last_attempted_at=started,
            args=payload.get("args") or [],
            kwargs=payload.get("kwargs") or {},
            backend=self.alias,
            errors=[
                TaskError(
                    exception_class_path=_exception_path(str(error.get("traceback"))),
                    traceback=str(error.get("traceback") or ""),
                )
                for error in row.get("errors") or []
            ],
            worker_ids=[str(taken_by)] * runs if taken_by else [],
        )
        if status == _SUCCESSFUL:
            object.__setattr__(result, "_return_value", info.get("return_value"))
        return result

    def check(self, **kwargs: Any) -> Iterator[CheckMessage]:
        from django.core import checks

        yield from super().check(**kwargs)
        try:
            self.chancy  # noqa: B018 - resolving it is the check
        except ImproperlyConfigured as exc:
            yield checks.Error(str(exc), obj=self, id="chancy.E001")


# ----------------------------------------------------------------------
# Running tasks in a Chancy worker
# ----------------------------------------------------------------------


class _TaskRun:
    """One run of a task inside a Chancy job: loads it, sends Django's task
    signals and records the outcome on the job."""

    def __init__(self, path: str, alias: str, job: QueuedJob) -> None:
        backend = task_backends[alias]
        if not isinstance(backend, ChancyBackend):
            raise ImproperlyConfigured(
                f"the task {path!r} was enqueued with TASKS[{alias!r}], which is now"
                f" a {type(backend).__name__}, not a ChancyBackend"
            )
        self.backend = backend
        self.path = path
        self.job = job
        self.task = backend.load_task(path)
        self.result: TaskResult[Any] | None = None

    def start(self) -> None:
        """Read the running task's result when the task or a signal needs it."""
        if not (
            self.task.takes_context
            or task_started.has_listeners()
            or task_finished.has_listeners()
        ):
            return
        self.result = self.backend.get_result(str(self.job.id))
        task_started.send(type(self.backend), task_result=self.result)

    def arguments(self, args: list[Any]) -> list[Any]:
        """The task's positional arguments, after its context if it takes one."""
        if self.task.takes_context:
            assert self.result is not None  # read by start()
            return [TaskContext(task_result=self.result), *args]
        return args

    def succeeded(self, value: Any) -> None:
        stored = _to_json(value, f"the return value of the task {self.path!r}")
        info = dict(self.job.meta.get(META_KEY) or {})
        info["return_value"] = stored
        self.job.meta[META_KEY] = info
        self._finish(_SUCCESSFUL, stored)

    def failed(self, exc: BaseException) -> None:
        exc.add_note(f"{_NOTE_PREFIX}{_class_path(type(exc))}")
        if self.result is not None:
            error = TaskError(
                exception_class_path=_class_path(type(exc)),
                traceback="".join(traceback.format_exception(exc)),
            )
            self.result.errors.append(error)
        self._finish(_FAILED, None)

    def _finish(self, status: TaskResultStatus, value: Any) -> None:
        if self.result is None:
            return
        finished = dataclasses.replace(
            self.result, status=status, finished_at=timezone.now()
        )
        if status == _SUCCESSFUL:
            object.__setattr__(finished, "_return_value", value)
        task_finished.send(type(self.backend), task_result=finished)


def run_task(
    *,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    backend: str,
    context: QueuedJob,
) -> None:
    """The Chancy job of a Django task: call ``task(*args, **kwargs)``.

    Django's database connections are closed before and after, as after a
    request (``CONN_MAX_AGE`` applies).
    """
    from django.db import close_old_connections

    ensure_django_setup("Running a Django task")
    close_old_connections()
    try:
        run = _TaskRun(task, backend, context)
        run.start()
        try:
            value = run.task.call(*run.arguments(args), **kwargs)
            run.succeeded(value)
        except BaseException as exc:
            run.failed(exc)
            raise
    finally:
        close_old_connections()


async def arun_task(
    *,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    backend: str,
    context: QueuedJob,
) -> None:
    """The Chancy job of an ``async def`` Django task (any executor runs it)."""
    from django.db import close_old_connections

    ensure_django_setup("Running a Django task")
    await sync_to_async(close_old_connections)()
    try:
        run = await sync_to_async(_TaskRun)(task, backend, context)
        await sync_to_async(run.start)()
        try:
            value = await run.task.acall(*run.arguments(args), **kwargs)
            await sync_to_async(run.succeeded)(value)
        except asyncio.CancelledError:
            raise  # cancelled (chancy.cancel_job): nothing more to run
        except BaseException as exc:
            await sync_to_async(run.failed)(exc)
            raise
    finally:
        await sync_to_async(close_old_connections)()
