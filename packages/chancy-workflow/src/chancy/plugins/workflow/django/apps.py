"""The Django application of the workflow plugin (label ``chancy_workflow``)."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["ChancyWorkflowConfig"]


class ChancyWorkflowConfig(AppConfig):
    """Read Chancy's workflows and their steps from Django (unmanaged models)."""

    name = "chancy.plugins.workflow.django"
    label = "chancy_workflow"
    verbose_name = "Chancy workflows"
    default_auto_field = "django.db.models.BigAutoField"
