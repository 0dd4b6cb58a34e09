"""The ``chancy`` command line.

::

    chancy --app myproject.tasks:chancy migrate
    chancy --app myproject.tasks:chancy queue declare emails -c 4 -e async
    chancy --app myproject.tasks:chancy job push myproject.tasks.send -k '{"to": 1}'
    chancy --app myproject.tasks:chancy worker start -t web

``--app`` (or the ``CHANCY_APP`` environment variable) names the application
as ``module:attribute`` or ``module.attribute``; the attribute may be a
:class:`~chancy.Chancy` instance or a callable returning one (a factory). The
current directory is importable, as with other command-line tools. Only the
commands that talk to the database need ``--app``: ``chancy --help``,
``chancy plugins`` and ``chancy plugin new`` work without it.

Commands
========

``migrate`` (also ``misc migrate``), ``check-migrations`` (also
``misc check-migrations``), ``misc shell``, ``queue list|declare|delete|pause|
resume|push``, ``job push|get|cancel``, ``worker start``, ``plugins`` and
``plugin new``; run ``chancy COMMAND --help`` for their options. User errors
(an unknown queue or job, a database that is not migrated, a bad option) are
reported in one line on standard error with exit status 1 (2 for a bad
command line), never with a traceback.

``chancy plugin new NAME`` writes a new plugin distribution, ``chancy-NAME``,
from the template in ``plugin_template/`` (package data): the shape of every
first-party plugin, building and passing its own tests as written.

Commands from plugins
=====================

Plugins add commands or groups through the ``chancy_cli_commands`` hook; they
are found through the ``chancy`` entry points, so they are listed even without
``--app``. A plugin command gets the app from the click context with
:func:`get_app` and runs coroutines with :func:`run_async` (or
:func:`run_with_app`, which also opens the app's pool around the call)::

    # chancy/plugins/cron/cli.py
    import click
    from chancy.cli import get_app, run_async

    @click.group()
    def cron() -> None:
        "Manage cron schedules."

    @cron.command("list")
    @click.pass_context
    def list_schedules(ctx: click.Context) -> None:
        app = get_app(ctx)

        async def main() -> list[str]:
            async with app:
                return await fetch_schedules(app)

        for line in run_async(main()):
            click.echo(line)

    # chancy/plugins/cron/hooks.py
    @hookimpl
    def chancy_cli_commands():
        from chancy.plugins.cron.cli import cron
        return cron

A plugin group named like a built-in group extends it: ``chancy-web``
returns a ``worker`` group holding ``web``, which becomes ``chancy worker
web`` next to the built-in ``chancy worker start``. Any other plugin command
whose name is taken by a built-in command (or an earlier plugin's), and a
subcommand clashing with a built-in one, is skipped with a warning.
Layout
======

One module per command group, all private; import from ``chancy.cli``:
``_root`` (the root group, :class:`BuiltinGroup` and the discovery of plugin
commands), ``_app`` (``--app`` loading, :func:`get_app`), ``_run``
(:func:`run_async`, :func:`run_with_app` and the conversion of user errors),
``_params`` (:class:`IsoDateTime`, :func:`parse_kwargs_option`,
:func:`format_table`), then ``_migrate``, ``_misc``, ``_job``, ``_queue``,
``_worker`` and ``_plugin`` (with ``_template`` and the package data in
``plugin_template/`` behind ``chancy plugin new``). None of them holds SQL:
the commands go through :class:`~chancy.Chancy` and
:class:`~chancy.migrate.Migrator`.
"""

from __future__ import annotations

from collections.abc import Sequence

# The names re-exported "as" themselves were importable from chancy.cli when
# it was one module, and still are, though they are not in __all__.
from chancy.cli._app import CliState, get_app, load_app
from chancy.cli._job import job_cancel as job_cancel
from chancy.cli._job import job_get as job_get
from chancy.cli._job import job_group
from chancy.cli._job import job_push as job_push
from chancy.cli._migrate import check_migrations_command, migrate_command
from chancy.cli._misc import misc
from chancy.cli._misc import shell as shell
from chancy.cli._params import (
    EXECUTOR_ALIASES,
    IsoDateTime,
    format_table,
    parse_kwargs_option,
)
from chancy.cli._params import ExecutorType as ExecutorType
from chancy.cli._plugin import plugin_group, plugins_command
from chancy.cli._plugin import plugin_new as plugin_new
from chancy.cli._queue import queue_declare as queue_declare
from chancy.cli._queue import queue_delete as queue_delete
from chancy.cli._queue import queue_group
from chancy.cli._queue import queue_list as queue_list
from chancy.cli._queue import queue_pause as queue_pause
from chancy.cli._queue import queue_resume as queue_resume
from chancy.cli._root import BuiltinGroup, cli
from chancy.cli._root import ChancyGroup as ChancyGroup
from chancy.cli._root import _PluginCommands as _PluginCommands
from chancy.cli._run import run_async, run_with_app
from chancy.cli._worker import worker_group
from chancy.cli._worker import worker_start as worker_start

__all__ = [
    "EXECUTOR_ALIASES",
    "BuiltinGroup",
    "CliState",
    "IsoDateTime",
    "cli",
    "format_table",
    "get_app",
    "load_app",
    "main",
    "parse_kwargs_option",
    "run_async",
    "run_with_app",
]

for _command in (
    migrate_command,
    check_migrations_command,
    misc,
    job_group,
    queue_group,
    worker_group,
    plugins_command,
    plugin_group,
):
    cli.add_command(_command)
del _command


def main(argv: Sequence[str] | None = None) -> None:
    """The ``chancy`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="chancy")
