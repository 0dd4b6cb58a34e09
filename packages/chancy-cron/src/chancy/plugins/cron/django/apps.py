"""The Django application of the cron plugin (label ``chancy_cron``)."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["ChancyCronConfig"]


class ChancyCronConfig(AppConfig):
    """Read and manage Chancy's cron schedules from Django (unmanaged models)."""

    name = "chancy.plugins.cron.django"
    label = "chancy_cron"
    verbose_name = "Chancy cron"
    default_auto_field = "django.db.models.BigAutoField"
