"""The ``job`` group: ``job push`` (also ``queue push``), ``job get`` and
``job cancel``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import attrs
import click

from chancy.app import Chancy
from chancy.cli._params import IsoDateTime, parse_kwargs_option
from chancy.cli._root import BuiltinGroup
from chancy.cli._run import run_with_app
from chancy.job import Job, QueuedJob, Reference
from chancy.utils import import_string

__all__ = ["job_cancel", "job_get", "job_group", "job_push"]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _job_as_dict(job: QueuedJob) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "func": job.func,
        "queue": job.queue,
        "state": job.state.value,
        "kwargs": job.kwargs,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "unique_key": job.unique_key,
        "scheduled_at": _iso(job.scheduled_at),
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "completed_at": _iso(job.completed_at),
        "limits": [limit.serialize() for limit in job.limits],
        "meta": job.meta,
        "errors": job.errors,
    }


def _parse_job_id(value: str) -> Reference:
    try:
        return Reference(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a job id (a UUID)", param_hint="'JOB_ID'"
        ) from None


@click.command("push")
@click.argument("func", metavar="FUNC")
@click.option(
    "--queue", "-q", default=None, help="Queue name.  [default: @job()'s, else default]"
)
@click.option(
    "--priority",
    "-p",
    type=int,
    default=None,
    help="Higher runs first.  [default: @job()'s, else 0]",
)
@click.option(
    "--unique-key",
    "-u",
    default=None,
    help="At most one unfinished job with this key exists.",
)
@click.option(
    "--max-attempts",
    "-m",
    type=click.IntRange(min=1),
    default=None,
    help="Total runs allowed (1 = no retry).  [default: @job()'s, else 1]",
)
@click.option(
    "--kwargs",
    "-k",
    "kwargs",
    callback=parse_kwargs_option,
    metavar="JSON",
    help="Keyword arguments as a JSON object, e.g. '{\"user_id\": 7}'.",
)
@click.option(
    "--scheduled-at",
    type=IsoDateTime(),
    default=None,
    help="Do not run before this time (ISO 8601; UTC if no zone).",
)
@click.pass_context
def job_push(
    ctx: click.Context,
    func: str,
    queue: str | None,
    priority: int | None,
    unique_key: str | None,
    max_attempts: int | None,
    kwargs: dict[str, Any] | None,
    scheduled_at: datetime | None,
) -> None:
    """Push a job running FUNC (an import path like package.module.function).

    When FUNC is decorated with @job(), its settings (queue, priority,
    max_attempts, unique key, limits, meta, kwargs) are the starting point and
    the options given here override them. Prints the job's id.
    """
    if "." not in func or not all(func.split(".")):
        raise click.BadParameter(
            f"{func!r} is not an import path like 'package.module.function'",
            ctx,
            param_hint="'FUNC'",
        )
    if queue is not None and not queue:
        raise click.BadParameter("must not be empty", ctx, param_hint="'--queue'")
    template = _job_template(func)
    overrides: dict[str, Any] = {
        name: value
        for name, value in (
            ("queue", queue),
            ("priority", priority),
            ("max_attempts", max_attempts),
            ("unique_key", unique_key),
            ("kwargs", kwargs),
        )
        if value is not None
    }
    overrides["scheduled_at"] = (
        scheduled_at if scheduled_at is not None else datetime.now(UTC)
    )
    job = attrs.evolve(template, **overrides)

    async def main(app: Chancy) -> Reference:
        try:
            return await app.push(job)
        except (TypeError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None

    click.echo(str(run_with_app(ctx, main)))


def _job_template(func: str) -> Job:
    """The ``@job()`` template of the function at ``func``, or a plain job.

    A function that cannot be imported here (the worker may have code this
    machine lacks) is pushed with the defaults, saying so on stderr.
    """
    try:
        target = import_string(func)
    except Exception as exc:
        click.echo(
            f"note: cannot import {func!r} here ({exc}); pushing it with the default"
            " settings (any @job() settings of the function are not applied)",
            err=True,
        )
        return Job(func=func)
    template = getattr(target, "job", None)
    if isinstance(template, Job):
        return template
    return Job(func=func)


@click.group("job", cls=BuiltinGroup)
def job_group() -> None:
    """Push, inspect and cancel jobs."""


job_group.add_command(job_push)


@job_group.command("get")
@click.argument("job_id", metavar="JOB_ID")
@click.pass_context
def job_get(ctx: click.Context, job_id: str) -> None:
    """Print a job as JSON (state, attempts, errors...); exit 1 if it does not exist."""
    ref = _parse_job_id(job_id)
    found = run_with_app(ctx, lambda app: app.get_job(ref))
    if found is None:
        raise click.ClickException(f"no job with id {job_id}")
    click.echo(
        json.dumps(_job_as_dict(found), indent=2, default=str, ensure_ascii=False)
    )


@job_group.command("cancel")
@click.argument("job_id", metavar="JOB_ID")
@click.pass_context
def job_cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a job: a waiting job never runs, a running one is interrupted."""
    ref = _parse_job_id(job_id)

    async def main(app: Chancy) -> QueuedJob | None:
        found = await app.get_job(ref)
        if found is not None and not found.is_finished:
            await app.cancel_job(ref)
        return found

    found = run_with_app(ctx, main)
    if found is None:
        raise click.ClickException(f"no job with id {job_id}")
    if found.is_finished:
        click.echo(
            f"Job {ref} had already finished ({found.state.value}); nothing to do"
        )
    else:
        click.echo(f"Cancelled job {ref}")
