"""Pieces shared by Chancy's Django apps (core, cron, workflow) and the
tasks backend.

Importing it needs no app registry and no ``django.contrib.admin``, so each
app's models and admin can use it whether or not ``chancy.contrib.django``
itself is in ``INSTALLED_APPS``.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import Q

from chancy.job import QueuedJob

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest

__all__ = ["JobState", "SearchByIdMixin", "ensure_django_setup"]


def ensure_django_setup(user: str) -> None:
    """Set Django up if the process has not done so yet (``DJANGO_SETTINGS_MODULE``).

    :param user: what needs Django, for the error message.
    :raises django.core.exceptions.ImproperlyConfigured: Django is neither
        configured nor given a settings module.
    """
    from django.apps import apps

    if apps.ready:
        return
    from django.conf import settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"{user} needs a configured Django project: set"
            " DJANGO_SETTINGS_MODULE or call django.setup() first"
        )
    import django

    django.setup()


class JobState(models.TextChoices):
    """A job's state (:class:`chancy.QueuedJob.State`), in lifecycle order."""

    PENDING = QueuedJob.State.PENDING.value, "Pending"
    RUNNING = QueuedJob.State.RUNNING.value, "Running"
    RETRYING = QueuedJob.State.RETRYING.value, "Retrying"
    SUCCEEDED = QueuedJob.State.SUCCEEDED.value, "Succeeded"
    FAILED = QueuedJob.State.FAILED.value, "Failed"


class SearchByIdMixin:
    """For a ``ModelAdmin`` whose primary key is a UUID: a search term that is
    a UUID also finds the row with that id."""

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        results, may_have_duplicates = super().get_search_results(  # type: ignore[misc]
            request, queryset, search_term
        )
        try:
            row_id = uuid.UUID(search_term.strip())
        except ValueError:
            return results, may_have_duplicates
        matches = Q(pk=row_id) | Q(pk__in=results.values("pk"))
        return queryset.filter(matches), may_have_duplicates
