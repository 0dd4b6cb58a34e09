"""``chancy cron``: list, add and remove schedules; preview an expression.

Added to the ``chancy`` command line through the ``chancy_cli_commands``
hook (see :mod:`chancy.plugins.cron.hooks`)::

    chancy --app app:chancy cron list
    chancy --app app:chancy cron add "*/5 * * * *" app.tasks.sync -u sync -q io
    chancy --app app:chancy cron add "30 6 * * 1-5" app.tasks.report -u report \\
        -z Europe/Paris -k '{"kind": "daily"}'
    chancy --app app:chancy cron remove sync report
    chancy cron next "0 2 * * *" -z America/New_York -n 5   # no --app needed

Invalid expressions, unknown time zones and arguments that cannot be stored
are reported in one line with exit status 1, before anything is written.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from chancy.cli import format_table, parse_kwargs_option, run_with_app
from chancy.job import Job
from chancy.plugins.cron.plugin import Cron
from chancy.plugins.cron.schedule import (
    next_runs,
    resolve_timezone,
    validate,
)

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = ["cron_group"]


def _local(value: datetime | None, timezone: str) -> str:
    if value is None:
        return "-"
    try:
        value = value.astimezone(resolve_timezone(timezone))
    except ValueError:
        pass
    return value.isoformat(timespec="seconds")


def _check(expression: str, timezone: str) -> None:
    """Validate before the app is even loaded; exit 1 with one line if invalid."""
    try:
        validate(expression, timezone)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("cron")
def cron_group() -> None:
    """Manage cron schedules (chancy-cron)."""


@cron_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def cron_list(ctx: click.Context, as_json: bool) -> None:
    """List every schedule, soonest first (times in each schedule's time zone)."""
    schedules = run_with_app(ctx, lambda app: Cron.get_schedules(app))
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "unique_key": s["unique_key"],
                        "cron": s["cron"],
                        "timezone": s["timezone"],
                        "job": s["job"].pack(),
                        "last_run": s["last_run"].isoformat()
                        if s["last_run"]
                        else None,
                        "next_run": s["next_run"].isoformat(),
                    }
                    for s in schedules.values()
                ],
                indent=2,
            )
        )
        return
    if not schedules:
        click.echo("No cron schedules.")
        return
    headers = ["KEY", "EXPRESSION", "TIMEZONE", "FUNC", "QUEUE", "NEXT RUN", "LAST RUN"]
    rows = [
        [
            s["unique_key"],
            s["cron"],
            s["timezone"],
            s["job"].func,
            s["job"].queue,
            _local(s["next_run"], s["timezone"]),
            _local(s["last_run"], s["timezone"]),
        ]
        for s in schedules.values()
    ]
    click.echo(format_table(headers, rows))


@cron_group.command("add")
@click.argument("expression")
@click.argument("func")
@click.option(
    "--unique-key", "-u", required=True, help="Names the schedule (required)."
)
@click.option(
    "--queue", "-q", default="default", show_default=True, help="Queue of the jobs."
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
    "--priority",
    "-p",
    type=int,
    default=0,
    show_default=True,
    help="Higher runs first.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Runs allowed per firing (1 = no retry).",
)
@click.option(
    "--timezone",
    "-z",
    default="UTC",
    show_default=True,
    help="IANA time zone whose wall clock EXPRESSION follows.",
)
@click.pass_context
def cron_add(
    ctx: click.Context,
    expression: str,
    func: str,
    unique_key: str,
    queue: str,
    kwargs: dict[str, Any],
    priority: int,
    max_attempts: int,
    timezone: str,
) -> None:
    """Run FUNC (an import path) on the schedule EXPRESSION.

    EXPRESSION has 5 fields (minute hour day-of-month month day-of-week), 6
    (seconds first) or is an alias such as @hourly; quote it. Scheduling an
    existing key replaces that schedule.
    """
    _check(expression, timezone)
    if "." not in func or not all(func.split(".")):
        raise click.ClickException(
            f"{func!r} is not an import path like 'package.module.function'"
        )
    if not unique_key.strip():
        raise click.ClickException("--unique-key must not be empty")
    if not queue:
        raise click.ClickException("--queue must not be empty")
    job = Job(
        func=func,
        queue=queue,
        kwargs=kwargs,
        priority=priority,
        max_attempts=max_attempts,
        unique_key=unique_key,
    )

    async def main(app: Chancy) -> dict[str, Any]:
        try:
            await Cron.schedule(app, expression, job, timezone=timezone)
        except (TypeError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        return (await Cron.get_schedules(app, unique_keys=[unique_key]))[unique_key]

    stored = run_with_app(ctx, main)
    click.echo(
        f"Scheduled {unique_key!r}: {stored['cron']} ({stored['timezone']}),"
        f" next run at {_local(stored['next_run'], stored['timezone'])}"
    )


@cron_group.command("remove")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@click.pass_context
def cron_remove(ctx: click.Context, keys: tuple[str, ...]) -> None:
    """Remove the schedules named KEY (jobs already pushed are kept).

    Exits with status 1 if a KEY does not exist (the others are removed).
    """
    removed = run_with_app(ctx, lambda app: Cron.unschedule(app, *keys))
    for key in removed:
        click.echo(f"Removed schedule {key!r}")
    missing = [key for key in dict.fromkeys(keys) if key not in removed]
    if missing:
        raise click.ClickException(
            "no schedule with the unique key " + ", ".join(repr(k) for k in missing)
        )


@cron_group.command("next")
@click.argument("expression")
@click.option(
    "--timezone", "-z", default="UTC", show_default=True, help="IANA time zone."
)
@click.option(
    "--count", "-n", type=click.IntRange(min=1, max=1000), default=5, show_default=True
)
def cron_next(expression: str, timezone: str, count: int) -> None:
    """Print the next runs of EXPRESSION from now (checks it; no database needed)."""
    _check(expression, timezone)
    zone = resolve_timezone(timezone)
    for run in next_runs(expression, datetime.now(UTC), timezone, count=count):
        click.echo(run.astimezone(zone).isoformat(timespec="seconds"))
