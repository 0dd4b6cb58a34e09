"""The Django application of Chancy (label ``chancy``)."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["ChancyConfig"]


class ChancyConfig(AppConfig):
    """Read and manage Chancy's jobs, queues and workers from Django.

    The models are unmanaged: Chancy's own migrations (``chancy migrate`` or
    ``await chancy.migrate()``) create and change the tables, never Django's.
    """

    name = "chancy.contrib.django"
    label = "chancy"
    verbose_name = "Chancy"
    default_auto_field = "django.db.models.BigAutoField"
