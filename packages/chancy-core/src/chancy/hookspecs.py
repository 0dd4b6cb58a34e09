"""The contract between Chancy's core and its plugins: every pluggy hookspec.

This module is the whole contract; :class:`chancy.plugin.Plugin` is sugar
over it (each of its members names the hook it stands for).

**Implementing.** Mark functions with ``@chancy.hookimpl`` in a module (or on
an object) and either register it through the ``chancy`` entry-point group
(a distribution's ``hooks`` module; ``chancy_register_plugins`` there returns
its :class:`~chancy.plugin.Plugin` classes) or pass it in
``Chancy(plugins=[...])``. An implementation may take only the arguments it
needs, and may be marked ``tryfirst``, ``trylast`` or ``wrapper=True``, as
pluggy allows: the core calls every hook through ``pm.hook.<name>(...)``.

**Asynchronous work.** Hooks are synchronous functions. An implementation with
asynchronous work returns an awaitable (for instance by being ``async def``)
and the core awaits each result in turn. Do not combine ``async def`` with
``wrapper=True`` (a wrapper receives coroutine objects, not results).

**Results.** Hooks that collect (``chancy_worker_tasks``,
``chancy_migrators``, ``chancy_cli_commands``, ``chancy_web_routes``) take
every result. The per-job hooks that may replace the job
(``chancy_job_starting``, ``chancy_job_completed``) take each result that is
not ``None``, in call order: the last one is the job used. Every
:class:`~chancy.plugin.Plugin` instance's method runs inside one shared
implementation, in ``Chancy.plugins`` order, each seeing the job the previous
one returned (the original Chancy's chaining); plain implementations are
called after it unless marked ``tryfirst``.

**Cost.** Per-job hooks are called only when something implements them: the
core checks a flag, recomputed whenever a plugin is registered or
unregistered, so an unimplemented hook costs nothing on the hot path.

**Events.** Besides hooks, a plugin may listen to the worker's in-process hub
(``worker.hub.on(name, handler)``); every event and its payload is listed in
:mod:`chancy.events`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from psycopg import AsyncCursor

    from chancy.app import Chancy
    from chancy.job import Job, QueuedJob, Reference
    from chancy.migrate import Migrator
    from chancy.plugin import Plugin, WorkerTask
    from chancy.worker import Worker

hookspec = pluggy.HookspecMarker("chancy")

# ---------------------------------------------------------------------------
# Plugin discovery
# ---------------------------------------------------------------------------


@hookspec
def chancy_register_plugins() -> type[Plugin] | Sequence[type[Plugin]] | None:
    """Return the :class:`~chancy.plugin.Plugin` class(es) a distribution provides.

    Called once per :class:`~chancy.Chancy` app when it is created, for every
    module registered through the ``chancy`` entry-point group. Classes whose
    :meth:`~chancy.plugin.Plugin.is_default` is true are instantiated with
    their default settings unless the app was given ``no_default_plugins=True``
    or an instance with the same identifier. Every returned class is listed by
    ``chancy plugins``.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# Worker run loop
# ---------------------------------------------------------------------------


@hookspec
def chancy_worker_tasks(worker: Worker, chancy: Chancy) -> Sequence[WorkerTask] | None:
    """Return the long-running coroutines the worker must supervise.

    :param worker: the starting worker.
    :param chancy: its app.

    Called once by :meth:`Worker.start() <chancy.Worker.start>`, after dependencies are checked. Each
    :class:`~chancy.plugin.WorkerTask` becomes a named asyncio task; a task that
    raises is logged (a transient database error of
    :data:`chancy.errors.TRANSIENT_ERRORS` in one line, anything else with its
    traceback) and restarted with exponential back-off,
    a task with ``scope=PluginScope.LEADER`` runs only while the worker leads and
    is cancelled when it loses the lease. All tasks are cancelled on shutdown.

    .. versionadded:: 0.1
    """


@hookspec
def chancy_worker_started(worker: Worker) -> Awaitable[None] | None:
    """The worker is up: migrations were checked, queues and plugin tasks start now.

    :param worker: the worker.

    Called once per worker, at the end of :meth:`Worker.start() <chancy.Worker.start>`.

    .. versionadded:: 0.1
    """


@hookspec
def chancy_worker_stopped(worker: Worker) -> Awaitable[None] | None:
    """The worker stopped: jobs drained and every pending update flushed.

    :param worker: the worker.

    Called once per worker, at the end of :meth:`Worker.stop() <chancy.Worker.stop>`.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# Migrations
# ---------------------------------------------------------------------------


@hookspec
def chancy_migrators(chancy: Chancy) -> Migrator | Sequence[Migrator] | None:
    """Return the migrator(s) for the tables a plugin owns.

    :param chancy: the app being migrated (use ``chancy.prefix`` for names).

    Called by :meth:`Chancy.migrate() <chancy.Chancy.migrate>` and :meth:`Chancy.is_up_to_date() <chancy.Chancy.is_up_to_date>`. Each
    migrator has its own key (its version line) in the schema-version table;
    core's line is applied first going up and last going down.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# Pushing jobs
# ---------------------------------------------------------------------------


@hookspec
def chancy_jobs_pushing(chancy: Chancy, jobs: Sequence[Job]) -> Sequence[Job] | None:
    """Jobs are about to be pushed; return replacements, or ``None`` to keep them.

    :param chancy: the app pushing them.
    :param jobs: the jobs, in the order given (templates of ``@job``
        functions already resolved to :class:`~chancy.job.Job`).

    Called once per push call (``push``, ``push_ex``, each batch of
    ``push_many``, ``push_many_ex`` and their ``sync_`` forms), in the
    caller's thread, before the jobs are validated: a replacement list (the
    same length, in the same order; e.g. with tracing context added to
    ``meta``) is what is stored. Every result that is not ``None`` replaces
    the list, in call order. Must be synchronous (sync pushes call it too);
    it is skipped entirely when nothing implements it.

    .. versionadded:: 0.1
    """


@hookspec
def chancy_jobs_pushed(
    chancy: Chancy,
    jobs: Sequence[Job],
    references: Sequence[Reference] | None,
    error: BaseException | None,
) -> None:
    """A push call wrote its jobs, or failed.

    :param chancy: the app.
    :param jobs: the jobs as stored (after ``chancy_jobs_pushing``).
    :param references: their references in the same order (for a unique
        job whose key was held, the existing job's), or ``None`` on error.
    :param error: the exception the push raised, or ``None``.

    Called once for every ``chancy_jobs_pushing`` call, right after the
    push's statements ran (for the ``_ex`` forms the caller's transaction is
    not committed yet), or with the error when it failed: also when the jobs
    were refused before anything was written, and for a ``push_many`` batch
    prepared ahead but never sent (the caller stopped iterating, or an
    earlier batch failed). Synchronous; skipped when nothing implements it.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# Job execution
# ---------------------------------------------------------------------------


@hookspec
def chancy_job_starting(
    worker: Worker, job: QueuedJob
) -> QueuedJob | Awaitable[QueuedJob | None] | None:
    """A job is about to run; return a replacement job or ``None`` to keep it.

    :param worker: the worker running it.
    :param job: the job, already marked running in the database.

    Called for every job, in the worker's event loop, before it is handed to
    its executor. Every result that is not ``None`` replaces the job, in call
    order; :class:`~chancy.plugin.Plugin` methods are chained (each sees the
    job the previous one returned). An exception fails the run.

    .. versionadded:: 0.1
    """


@hookspec
def chancy_job_completed(
    worker: Worker,
    job: QueuedJob,
    exc: BaseException | None,
    result: Any,
) -> QueuedJob | Awaitable[QueuedJob | None] | None:
    """A run finished; return a replacement for what will be saved, or ``None``.

    :param worker: the worker that ran it.
    :param job: the job with its new state, attempts and errors already set.
    :param exc: the exception the run raised, or ``None``.
    :param result: the function's return value (``None`` on failure).

    Called for every finished run, before the update is queued for saving.
    Every result that is not ``None`` replaces the job, in call order;
    :class:`~chancy.plugin.Plugin` methods are chained in plugin order (each
    sees the job the previous one returned). An exception is logged and the
    job is saved as it was. The retry plugin uses this hook to reschedule
    failed runs.

    .. versionadded:: 0.1
    """


@hookspec
def chancy_jobs_updated_in_transaction(
    worker: Worker, jobs: Sequence[QueuedJob], cursor: AsyncCursor[Any]
) -> Awaitable[None] | None:
    """A batch of job updates was written; the transaction is still open.

    :param worker: the worker saving them.
    :param jobs: the jobs whose update was applied (fenced-off updates excluded).
    :param cursor: the cursor of the open transaction.

    Called once per flushed batch. Raising rolls the whole batch back and it is
    retried. Work done on ``cursor`` commits atomically with the updates.

    .. versionadded:: 0.1
    """


@hookspec
def chancy_job_updated(worker: Worker, job: QueuedJob) -> Awaitable[None] | None:
    """A job's update was committed.

    :param worker: the worker that saved it.
    :param job: the job as saved.

    Called for every saved update, after commit; it cannot change the job.
    An implementation that raises is logged; the others still run.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# Maintenance
# ---------------------------------------------------------------------------


@hookspec
def chancy_cleanup(chancy: Chancy) -> Awaitable[int | None] | int | None:
    """Trim the tables the plugin owns; return the number of rows removed.

    :param chancy: the app.

    Called by the pruner on the leader after each prune pass.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# Extension points
# ---------------------------------------------------------------------------


@hookspec
def chancy_cli_commands() -> click.Command | Sequence[click.Command] | None:
    """Return click commands or groups to add to the ``chancy`` command line.

    Called once when the CLI starts; ``chancy-cron`` adds ``chancy cron`` this way.

    .. versionadded:: 0.1
    """


@hookspec
def chancy_web_routes(chancy: Chancy) -> Sequence[Any] | None:
    """Return the HTTP routes and dashboard pages a distribution adds to the web API.

    :param chancy: the app the web server serves.

    The one way to extend ``chancy-web``: its built-in routes, and the routes
    and pages of ``chancy-cron``, ``chancy-workflow`` and ``chancy-metrics``,
    come through this hook like any third party's. Called each time the web
    plugin builds its application (once per ``Api.run`` or
    ``Api.build_starlette_app``), for every registered implementation
    **whether or not its plugin is enabled in** ``chancy``: return nothing
    (``None`` or ``[]``) unless it is (check ``chancy.plugins``, e.g.
    ``"chancy.cron" in chancy.plugins``). Implement it in the distribution's
    entry-point module and import the web module inside the function, so that
    the distribution does not depend on ``chancy-web``.

    Return a list (or one item) of:

    * ``chancy.plugins.web.WebRoute(path, endpoint, methods=("GET",), ...)``:
      one route and, from the same declaration, its operation in the OpenAPI
      document (``GET /api/v1/openapi.json``): parameters, request body and
      response shapes as JSON Schema, whether it needs a login. The endpoint
      is called as ``endpoint(request, *, chancy, worker)`` (with a websocket
      for ``websocket=True``) and returns a Starlette response or a JSON-able
      value; it requires a login (session cookie or bearer token) unless
      ``auth=False``; raising ``ApiError(message, status)`` answers
      ``{"error": message}``. Every request passes the web plugin's security
      checks first (Host, Origin, JSON-only bodies, body size).
    * ``chancy.plugins.web.WebPage(plugin, path, module, directory,
      title=None, order=100)``: a dashboard page. The files of ``directory``
      are served at ``<dashboard>/plugins/<plugin>/``; when the dashboard's
      URL hash matches ``path`` (``/things`` or ``/things/:id``), it imports
      ``module`` from there and calls its default export as ``await
      mount(view, ctx)``. A page with a ``title`` gets a navigation entry
      (ordered by ``order``); the dashboard lists only the pages this hook
      returned, so an entry appears exactly when its plugin is enabled.
    * the original Chancy's spellings, converted to ``WebRoute`` objects: a
      route dict ``{"path", "endpoint", "methods", "name", "is_websocket"?,
      "auth"?}`` or an ``ApiPlugin`` subclass (instantiated with the web
      plugin). A ``Plugin`` whose ``api_plugin()`` names an ``ApiPlugin``
      needs no implementation of this hook: the web plugin reads it from
      every enabled plugin.
    * a Starlette route, added as it is (it checks authentication itself and
      appears in the OpenAPI document without shapes).

    A route whose method and path another one already declares is ignored
    with a warning (the same declaration returned twice is added once); an
    implementation that raises, or an item that is none of the above, is
    logged and left out, and the others are served.

    .. versionadded:: 0.1
    """
