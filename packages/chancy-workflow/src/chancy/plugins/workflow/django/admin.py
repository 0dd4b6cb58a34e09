"""Django admin pages for workflows, with their steps inline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Count
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from chancy.contrib.django._shared import SearchByIdMixin
from chancy.plugins.workflow.django.models import Workflow, WorkflowStep

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest

__all__ = ["WorkflowAdmin", "WorkflowStepInline"]


class WorkflowStepInline(admin.TabularInline):
    """A workflow's steps, read-only (the plugin advances them)."""

    model = WorkflowStep
    extra = 0
    can_delete = False
    fields = ("step_id", "func", "dependencies", "state", "job")
    readonly_fields = fields
    ordering = ("id",)

    @admin.display(description="function")
    def func(self, obj: WorkflowStep) -> str:
        return obj.func

    @admin.display(description="job")
    def job(self, obj: WorkflowStep) -> Any:
        """A link to the step's job in Chancy's admin, when it has one."""
        if obj.job_id is None:
            return "-"
        try:
            url = reverse("admin:chancy_job_change", args=[obj.job_id])
        except NoReverseMatch:  # chancy.contrib.django is not installed
            return str(obj.job_id)
        return format_html('<a href="{}">{}</a>', url, obj.job_id)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Workflow)
class WorkflowAdmin(SearchByIdMixin, admin.ModelAdmin):
    """Workflows are created with ``WorkflowPlugin.push`` and advanced by the
    plugin; here they can be inspected and deleted."""

    list_display = ("name", "id", "state", "step_count", "created_at", "updated_at")
    list_filter = ("state",)
    # A search term that is a UUID also finds the workflow with that id.
    search_fields = ("name",)
    ordering = ("-created_at", "-id")
    fields = ("id", "name", "state", "created_at", "updated_at")
    readonly_fields = fields
    inlines = (WorkflowStepInline,)
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).annotate(_step_count=Count("steps"))

    @admin.display(description="steps", ordering="_step_count")
    def step_count(self, obj: Any) -> int:
        return int(obj._step_count)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
