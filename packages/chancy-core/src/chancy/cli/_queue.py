"""The ``queue`` group: ``list``, ``declare``, ``delete``, ``pause``,
``resume`` and ``push`` (the same command as ``job push``)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import click

from chancy.app import Chancy
from chancy.cli._job import job_push
from chancy.cli._params import _EXECUTOR_SHORT, ExecutorType, IsoDateTime, format_table
from chancy.cli._root import BuiltinGroup
from chancy.cli._run import run_with_app
from chancy.queue import Queue

__all__ = [
    "queue_declare",
    "queue_delete",
    "queue_group",
    "queue_list",
    "queue_pause",
    "queue_resume",
]


@click.group("queue", cls=BuiltinGroup)
def queue_group() -> None:
    """Declare, inspect, pause, resume and delete queues."""


queue_group.add_command(job_push, "push")


def _queue_row(queue: Queue) -> list[str]:
    state = queue.state.value
    if queue.resume_at is not None:
        state += f" until {queue.resume_at.isoformat(timespec='seconds')}"
    rate = (
        f"{queue.rate_limit}/{queue.rate_limit_window}s"
        if queue.rate_limit is not None
        else "-"
    )
    limits = []
    if queue.global_concurrency is not None:
        limits.append(f"global {queue.global_concurrency}")
    if queue.key_concurrency is not None:
        limits.append(f"per key {queue.key_concurrency}")
    if queue.key_rate_limit is not None:
        limits.append(f"per key {queue.key_rate_limit}/{queue.key_rate_limit_window}s")
    return [
        queue.name,
        state,
        str(queue.concurrency) if queue.concurrency is not None else "default",
        _EXECUTOR_SHORT.get(str(queue.executor), str(queue.executor)),
        ",".join(sorted(queue.tags)),
        f"{queue.polling_interval:g}s",
        rate,
        ", ".join(limits) or "-",
    ]


@queue_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def queue_list(ctx: click.Context, as_json: bool) -> None:
    """List every declared queue, whatever its state, and the queues nobody
    declared that have jobs waiting (no worker serves those)."""

    async def main(app: Chancy) -> tuple[list[Queue], dict[str, int]]:
        return await app.get_all_queues(), await app.get_undeclared_queues()

    queues, undeclared = run_with_app(ctx, main)
    queues.sort(key=lambda q: q.name)
    if as_json:
        click.echo(
            json.dumps(
                [
                    *(q.pack() for q in queues),
                    *(
                        {"name": name, "declared": False, "waiting": waiting}
                        for name, waiting in undeclared.items()
                    ),
                ],
                indent=2,
            )
        )
        return
    if undeclared:
        click.echo(
            "Jobs are waiting in queues nobody declared (no worker runs them):\n"
            + "".join(
                f"  {name}: {waiting} job(s); declare it with"
                f" `chancy queue declare {name}`\n"
                for name, waiting in undeclared.items()
            ),
            err=True,
        )
    if not queues:
        click.echo("No queues declared.")
        return
    headers = [
        "NAME",
        "STATE",
        "CONCURRENCY",
        "EXECUTOR",
        "TAGS",
        "POLLING",
        "RATE LIMIT",
        "CLUSTER LIMITS",
    ]
    click.echo(format_table(headers, [_queue_row(q) for q in queues]))


@queue_group.command("declare")
@click.argument("name")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Jobs run at once per worker.",
)
@click.option(
    "--executor",
    "-e",
    type=ExecutorType(),
    default="process",
    show_default=True,
    help="process, threaded, async, sub, or an executor's import path.",
)
@click.option(
    "--rate-limit",
    "-r",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs started per window across all workers (with -w).",
)
@click.option(
    "--rate-limit-window",
    "-w",
    type=click.IntRange(min=1),
    default=None,
    help="Length of the rate-limit window in seconds (with -r).",
)
@click.option(
    "--polling-interval",
    "-p",
    type=click.FloatRange(min=0, min_open=True),
    default=5,
    show_default=True,
    help="Seconds between polls.",
)
@click.option(
    "--tags",
    "-t",
    multiple=True,
    metavar="REGEX",
    help="Serve on workers with a matching tag (repeatable; default .*).",
)
@click.option(
    "--global-concurrency",
    type=int,
    default=None,
    help="Jobs of this queue running at once across all workers.",
)
@click.option(
    "--key-concurrency",
    type=int,
    default=None,
    help="Jobs of one concurrency key running at once across all workers.",
)
@click.option(
    "--key-rate-limit",
    type=int,
    default=None,
    help="Jobs of one concurrency key started per window (with --key-rate-limit-window).",
)
@click.option(
    "--key-rate-limit-window",
    type=int,
    default=None,
    help="Seconds of the per-key rate-limit window (with --key-rate-limit).",
)
@click.option(
    "--upsert", is_flag=True, help="Overwrite the configuration of an existing queue."
)
@click.pass_context
def queue_declare(
    ctx: click.Context,
    name: str,
    concurrency: int,
    executor: str,
    rate_limit: int | None,
    rate_limit_window: int | None,
    polling_interval: float,
    tags: tuple[str, ...],
    upsert: bool,
    global_concurrency: int | None = None,
    key_concurrency: int | None = None,
    key_rate_limit: int | None = None,
    key_rate_limit_window: int | None = None,
) -> None:
    """Declare the queue NAME.

    An existing queue is left unchanged unless --upsert is given.
    """
    if (rate_limit is None) != (rate_limit_window is None):
        raise click.UsageError(
            "--rate-limit and --rate-limit-window must be given together", ctx
        )
    try:
        queue = Queue(
            name,
            concurrency=concurrency,
            executor=executor,
            rate_limit=rate_limit,
            rate_limit_window=rate_limit_window,
            polling_interval=(
                int(polling_interval)
                if float(polling_interval).is_integer()
                else polling_interval
            ),
            tags=set(tags) if tags else {".*"},
            global_concurrency=global_concurrency,
            key_concurrency=key_concurrency,
            key_rate_limit=key_rate_limit,
            key_rate_limit_window=key_rate_limit_window,
        )
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc), ctx) from None

    stored = run_with_app(ctx, lambda app: app.declare(queue, upsert=upsert))
    if not upsert and stored.pack() != queue.pack():
        click.echo(
            f"Queue {name!r} already exists and was left unchanged"
            " (use --upsert to overwrite it):",
            err=True,
        )
    else:
        click.echo(f"Declared queue {name!r}:")
    headers = [
        "NAME",
        "STATE",
        "CONCURRENCY",
        "EXECUTOR",
        "TAGS",
        "POLLING",
        "RATE LIMIT",
        "CLUSTER LIMITS",
    ]
    click.echo(format_table(headers, [_queue_row(stored)]))


def _no_queue(name: str) -> click.ClickException:
    return click.ClickException(f"no queue named {name!r}")


@queue_group.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--keep-jobs", is_flag=True, help="Keep the queue's jobs.")
@click.pass_context
def queue_delete(ctx: click.Context, name: str, yes: bool, keep_jobs: bool) -> None:
    """Delete the queue NAME and (unless --keep-jobs) all of its jobs."""

    async def main(app: Chancy) -> None:
        try:
            await app.get_queue(name)
        except KeyError:
            raise _no_queue(name) from None
        if not yes:
            what = "" if keep_jobs else " and all of its jobs"
            click.confirm(f"Delete the queue {name!r}{what}?", abort=True)
        await app.delete_queue(name, purge_jobs=not keep_jobs)

    run_with_app(ctx, main)
    click.echo(f"Deleted queue {name!r}" + (" (jobs kept)" if keep_jobs else ""))


@queue_group.command("pause")
@click.argument("name")
@click.option(
    "--resume-at",
    type=IsoDateTime(),
    default=None,
    help="Resume automatically at this time (ISO 8601; UTC if no zone).",
)
@click.option(
    "--resume-in",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Resume automatically after this many seconds.",
)
@click.pass_context
def queue_pause(
    ctx: click.Context,
    name: str,
    resume_at: datetime | None,
    resume_in: float | None,
) -> None:
    """Pause the queue NAME: no new jobs start (running jobs finish)."""
    if resume_at is not None and resume_in is not None:
        raise click.UsageError("give --resume-at or --resume-in, not both", ctx)
    when: datetime | timedelta | None = resume_at
    if resume_in is not None:
        when = timedelta(seconds=resume_in)

    async def main(app: Chancy) -> Queue:
        try:
            await app.pause_queue(name, resume_at=when)
            return await app.get_queue(name)
        except KeyError:
            raise _no_queue(name) from None

    queue = run_with_app(ctx, main)
    until = (
        f" until {queue.resume_at.isoformat(timespec='seconds')}"
        if queue.resume_at is not None
        else ""
    )
    click.echo(f"Paused queue {name!r}{until}")


@queue_group.command("resume")
@click.argument("name")
@click.pass_context
def queue_resume(ctx: click.Context, name: str) -> None:
    """Resume the paused queue NAME."""

    async def main(app: Chancy) -> None:
        try:
            await app.resume_queue(name)
        except KeyError:
            raise _no_queue(name) from None

    run_with_app(ctx, main)
    click.echo(f"Resumed queue {name!r}")
