"""Cron schedules for Chancy: run jobs periodically, exactly once per due time.

Installed, the plugin is enabled by default; it needs no other plugin.
Schedules live in the ``{prefix}cron`` table and are managed from any
process, with or without a worker::

    from chancy import Chancy, Job, job
    from chancy.plugins.cron import Cron

    @job(queue="reports", unique_key="daily-report")
    def daily_report() -> None: ...

    async with Chancy("postgresql://localhost/app") as chancy:
        await Cron.schedule(chancy, "30 6 * * 1-5", daily_report, timezone="Europe/Paris")
        await Cron.schedule(
            chancy,
            "*/10 * * * * *",  # 6 fields: seconds first
            Job(func="app.tasks.poll", unique_key="poll"),
        )
        print(await Cron.get_schedules(chancy))
        await Cron.unschedule(chancy, "poll")

Every job needs a ``unique_key``: it names the schedule (scheduling the key
again replaces it) and keeps a slow run from being stacked up, since a push
whose key is held by a pending or running job is a no-op.

Each due schedule is fired exactly once: a pass locks the due rows
(``FOR UPDATE SKIP LOCKED``), pushes their jobs and advances their
``next_run`` in one transaction. Without a leadership plugin every worker runs
passes (the row locks hand each due run to one of them); with one
(``chancy-leadership``) only the leader does. Runs missed while no worker was
up collapse into one. Expressions follow the wall clock of
their time zone with Vixie/Debian cron daylight-saving semantics (see
:mod:`chancy.plugins.cron.schedule`). To change the polling interval, pass an
instance::

    Chancy(dsn, plugins=[Cron(poll_interval=10)])

The command line gains ``chancy cron list|add|remove|next``.
"""

from __future__ import annotations

from chancy.plugins.cron.plugin import Cron
from chancy.plugins.cron.schedule import CronExpressionError, UnknownTimeZoneError

__all__ = ["Cron", "CronExpressionError", "UnknownTimeZoneError"]
