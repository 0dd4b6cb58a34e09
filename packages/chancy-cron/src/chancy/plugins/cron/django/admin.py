"""Django admin page for the cron schedules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin

from chancy.plugins.cron.django.models import Cron

if TYPE_CHECKING:
    from django.http import HttpRequest

__all__ = ["CronAdmin"]


@admin.register(Cron)
class CronAdmin(admin.ModelAdmin):
    """Schedules are created with ``Cron.schedule``; here they can be listed,
    rescheduled (expression and time zone) and deleted."""

    list_display = (
        "unique_key",
        "cron",
        "timezone",
        "func",
        "queue",
        "last_run",
        "next_run",
    )
    list_filter = ("timezone",)
    search_fields = ("unique_key", "cron")
    ordering = ("next_run", "unique_key")
    fields = ("unique_key", "cron", "timezone", "job", "last_run", "next_run")
    readonly_fields = ("unique_key", "job", "last_run", "next_run")

    @admin.display(description="function")
    def func(self, obj: Cron) -> str:
        return obj.func

    @admin.display(description="queue")
    def queue(self, obj: Cron) -> str:
        return obj.queue

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: Any, form: Any, change: bool
    ) -> None:
        if {"cron", "timezone"} & set(form.changed_data):
            # Cron.schedule computes the next run from now; so does the admin.
            obj.next_run = obj.compute_next_run()
        super().save_model(request, obj, form, change)
