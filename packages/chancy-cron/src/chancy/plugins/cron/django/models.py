"""An unmanaged Django model over the cron plugin's ``{prefix}cron`` table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone as django_timezone

from chancy.contrib.django.conf import db_table
from chancy.job import Job
from chancy.plugins.cron.schedule import (
    CronExpressionError,
    UnknownTimeZoneError,
    next_run,
    parse,
    resolve_timezone,
)

__all__ = ["Cron"]


class Cron(models.Model):
    """One schedule: a job pushed each time the expression ``cron`` matches."""

    #: The job's unique key, which names the schedule.
    unique_key = models.TextField(primary_key=True)
    #: The job to push, as stored by ``Job.pack()`` (``{"f": func, "q": queue, ...}``).
    job = models.JSONField()
    #: The cron expression, as given.
    cron = models.TextField()
    #: IANA name of the time zone whose wall clock the expression follows.
    timezone = models.TextField(default="UTC")
    last_run = models.DateTimeField(null=True, blank=True)
    next_run = models.DateTimeField()

    class Meta:
        managed = False
        db_table = db_table("cron")
        ordering = ["next_run", "unique_key"]
        verbose_name = "cron schedule"
        verbose_name_plural = "cron schedules"

    def __str__(self) -> str:
        return f"{self.unique_key} ({self.cron})"

    @property
    def func(self) -> str:
        """Import path of the scheduled job's function."""
        return str(self._job_field("f"))

    @property
    def queue(self) -> str:
        """Queue the scheduled job is pushed to."""
        return str(self._job_field("q"))

    def _job_field(self, key: str) -> Any:
        return self.job.get(key, "") if isinstance(self.job, dict) else ""

    def get_job(self) -> Job:
        """The scheduled job as a :class:`chancy.Job`."""
        return Job.unpack(self.job)

    def compute_next_run(self, after: datetime | None = None) -> datetime:
        """The first run strictly after ``after`` (default: now)."""
        return next_run(self.cron, after or django_timezone.now(), self.timezone)

    def clean(self) -> None:
        """Check the expression and the time zone as ``Cron.schedule`` does."""
        super().clean()
        errors: dict[str, str] = {}
        try:
            parse(self.cron)
        except CronExpressionError as exc:
            errors["cron"] = str(exc)
        try:
            resolve_timezone(self.timezone)
        except UnknownTimeZoneError as exc:
            errors["timezone"] = str(exc)
        if not errors:
            try:
                self.compute_next_run()
            except CronExpressionError as exc:
                errors["cron"] = str(exc)
        if errors:
            raise ValidationError(errors)
