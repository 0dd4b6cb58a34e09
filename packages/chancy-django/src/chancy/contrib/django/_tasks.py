"""Django's Tasks framework: ``django.tasks`` (Django >= 6.0), else the
``django_tasks`` backport (``pip install "chancy-django[tasks]"``).

The backport has the same API under another module name; a few names moved
between the two (``InvalidTask`` is ``InvalidTaskError`` in the backport), so
each is looked up where it lives. Type checkers see the backport's types.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__all__ = [
    "PACKAGE",
    "BaseTaskBackend",
    "InvalidTask",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]


def _package() -> str:
    for name in ("django.tasks", "django_tasks"):
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except ImportError:
            continue
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "chancy.contrib.django.backend needs Django's Tasks framework: Django >= 6.0"
        ' (django.tasks), or the backport: pip install "chancy-django[tasks]"'
    )


def _first(names: tuple[str, ...], *modules: str) -> Any:
    """The first of ``names`` found in ``PACKAGE + module``, for each module in turn."""
    for module in modules:
        try:
            found = importlib.import_module(PACKAGE + module)
        except ImportError:
            continue
        for name in names:
            if hasattr(found, name):
                return getattr(found, name)
    raise ImportError(f"{PACKAGE} has none of {', '.join(names)}")


if TYPE_CHECKING:
    from django_tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import TaskError
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started

    PACKAGE: str
else:
    #: ``"django.tasks"`` or ``"django_tasks"``: the module in use.
    PACKAGE = _package()
    BaseTaskBackend = _first(("BaseTaskBackend",), ".backends.base")
    TaskContext = _first(("TaskContext",), "", ".base")
    TaskError = _first(("TaskError",), "", ".base")
    TaskResult = _first(("TaskResult",), "", ".base")
    TaskResultStatus = _first(("TaskResultStatus",), "", ".base")
    task_backends = _first(("task_backends",), "")
    InvalidTask = _first(("InvalidTask", "InvalidTaskError"), ".exceptions")
    TaskResultDoesNotExist = _first(("TaskResultDoesNotExist",), ".exceptions")
    task_enqueued = _first(("task_enqueued",), ".signals")
    task_started = _first(("task_started",), ".signals")
    task_finished = _first(("task_finished",), ".signals")
