"""Unmanaged Django models over the workflow plugin's tables."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from chancy.contrib.django._shared import JobState
from chancy.contrib.django.conf import db_table
from chancy.job import Job
from chancy.plugins.workflow.models import Workflow as _Workflow
from chancy.utils import uuid7

__all__ = ["Workflow", "WorkflowStep"]


class Workflow(models.Model):
    """A row of ``{prefix}workflows``; its steps are ``workflow.steps``."""

    class State(models.TextChoices):
        PENDING = _Workflow.State.PENDING.value, "Pending"
        RUNNING = _Workflow.State.RUNNING.value, "Running"
        COMPLETED = _Workflow.State.COMPLETED.value, "Completed"
        FAILED = _Workflow.State.FAILED.value, "Failed"
        CANCELLED = _Workflow.State.CANCELLED.value, "Cancelled"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.TextField()
    state = models.TextField(choices=State.choices, default=State.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        managed = False
        db_table = db_table("workflows")
        verbose_name = "workflow"
        verbose_name_plural = "workflows"

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class WorkflowStep(models.Model):
    """A row of ``{prefix}workflow_steps``: one step of a workflow."""

    State = JobState

    id = models.BigAutoField(primary_key=True)
    workflow = models.ForeignKey(
        Workflow,
        on_delete=models.CASCADE,
        related_name="steps",
        db_column="workflow_id",
    )
    step_id = models.TextField()
    #: The step's job, as stored by ``Job.pack()``.
    job_data = models.JSONField()
    #: Ids of the steps this one waits for.
    dependencies = models.JSONField(default=list)
    #: The id of the step's job once it was pushed (no foreign key: jobs may
    #: be pruned while the workflow is kept).
    job_id = models.UUIDField(null=True, blank=True)
    #: The state of the step's job; ``NULL`` while it has none.
    state = models.TextField(choices=State.choices, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        managed = False
        db_table = db_table("workflow_steps")
        ordering = ["id"]
        unique_together = [("workflow", "step_id")]
        verbose_name = "workflow step"
        verbose_name_plural = "workflow steps"

    def __str__(self) -> str:
        return str(self.step_id)

    @property
    def func(self) -> str:
        """Import path of the step's job function."""
        data = self.job_data
        return str(data.get("f", "")) if isinstance(data, dict) else ""

    def get_job(self) -> Job:
        """The step's job as a :class:`chancy.Job`."""
        return Job.unpack(self.job_data)
