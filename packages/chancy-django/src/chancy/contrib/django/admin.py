"""Django admin pages for Chancy's jobs, queues and workers.

Registered on the default admin site when ``chancy.contrib.django`` is in
``INSTALLED_APPS`` (with ``django.contrib.admin``). Workers are read-only:
their rows are heartbeats that the workers themselves write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.utils import timezone

from chancy.contrib.django._shared import SearchByIdMixin
from chancy.contrib.django.models import Job, Queue, Worker

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest

__all__ = ["JobAdmin", "QueueAdmin", "QueueListFilter", "WorkerAdmin"]


class QueueListFilter(admin.SimpleListFilter):
    """Filter jobs by queue, listing the declared queues.

    The choices come from the (small) queues table rather than from a
    ``SELECT DISTINCT`` over every job.
    """

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = Queue.objects.order_by("name").values_list("name", flat=True)
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(queue=value) if value else queryset


@admin.register(Job)
class JobAdmin(SearchByIdMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "func",
        "queue",
        "state",
        "priority",
        "attempts",
        "max_attempts",
        "scheduled_at",
        "completed_at",
        "taken_by",
    )
    list_filter = ("state", QueueListFilter)
    # A search term that is a UUID also finds the job with that id.
    search_fields = ("func", "unique_key", "taken_by")
    ordering = ("-id",)  # ids are time-ordered
    readonly_fields = (
        "id",
        "attempts",
        "taken_by",
        "claim_id",
        "created_at",
        "started_at",
        "completed_at",
        "errors",
        "result",
        "progress",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "func",
                    "queue",
                    "kwargs",
                    "meta",
                    "unique_key",
                    "concurrency_key",
                    "store_result",
                )
            },
        ),
        (
            "Scheduling",
            {"fields": ("state", "priority", "scheduled_at", "max_attempts", "limits")},
        ),
        (
            "Runs",
            {
                "fields": (
                    "attempts",
                    "taken_by",
                    "claim_id",
                    "created_at",
                    "started_at",
                    "completed_at",
                    "errors",
                    "progress",
                    "result",
                )
            },
        ),
    )
    # Counting millions of rows on every page view is slow.
    show_full_result_count = False
    list_per_page = 50


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "state",
        "concurrency",
        "executor",
        "polling_interval",
        "rate_limit",
        "rate_limit_window",
        "resume_at",
        "tags",
    )
    list_filter = ("state", "executor")
    search_fields = ("name",)
    readonly_fields = ("created_at", "updated_at")
    actions = ("pause_queues", "resume_queues")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        # Renaming the primary key would create a second queue.
        return ("name", *fields) if obj is not None else fields

    @admin.action(description="Pause the selected queues")
    def pause_queues(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        count = queryset.update(
            state=Queue.State.PAUSED, resume_at=None, updated_at=timezone.now()
        )
        self.message_user(request, f"Paused {count} queue(s).")

    @admin.action(description="Resume the selected queues")
    def resume_queues(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        count = queryset.update(
            state=Queue.State.ACTIVE, resume_at=None, updated_at=timezone.now()
        )
        self.message_user(request, f"Resumed {count} queue(s).")


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("worker_id", "queues", "tags", "last_seen", "expires_at")
    search_fields = ("worker_id",)
    ordering = ("worker_id",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
