"""The :class:`WorkflowPlugin`: stores workflows and advances them as steps finish."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Final, TextIO

from psycopg import AsyncConnection, AsyncCursor, sql
from psycopg.rows import dict_row

from chancy.events import EventSpec
from chancy.job import Job, QueuedJob, Reference
from chancy.maintenance import Alias, MaintenanceService
from chancy.plugin import PluginScope
from chancy.plugins.workflow.models import (
    InvalidStepError,
    Workflow,
    WorkflowStep,
    _prepare,
)
from chancy.plugins.workflow.rules import WorkflowRules
from chancy.rule import SQLAble, compile_rule

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.hub import Event
    from chancy.worker import Worker

__all__ = ["WORKFLOW_CREATED", "WORKFLOW_UPDATED", "WorkflowPlugin"]

IDENTIFIER: Final = "chancy.workflow_plugin"
DISTRIBUTION: Final = "chancy-workflow"
LEADERSHIP: Final = "chancy.leadership"

_WORKFLOW: Final = {"id": "the workflow's id (string)", "name": "its name"}

WORKFLOW_CREATED: Final = EventSpec(
    name="workflow.created",
    payload=_WORKFLOW,
    delivery="notified",
    sent_by="WorkflowPlugin.push() / push_ex() of a new workflow, on commit;"
    " the leader advances it at once",
)
WORKFLOW_UPDATED: Final = EventSpec(
    name="workflow.updated",
    payload=_WORKFLOW,
    delivery="notified",
    sent_by="push() / push_ex() of an existing workflow and"
    " WorkflowPlugin.cancel_workflow(), on commit; the leader advances it at once",
)

_ACTIVE: Final = ("pending", "running")
_TERMINAL_WORKFLOW: Final = frozenset({"completed", "failed", "cancelled"})
#: Job states after which a job never runs again (``cancelled`` for a core
#: that records cancellations as a state of their own).
_JOB_FAILED: Final = frozenset({"failed", "cancelled"})
_JOB_FINISHED: Final = frozenset({"succeeded", *_JOB_FAILED})
_JOB_UNFINISHED: Final = ("pending", "running", "retrying")

#: How long the catch-up after a contended step completion waits for the
#: workflow's row lock before leaving the workflow to the leader's loop.
_CATCH_UP_LOCK_TIMEOUT: Final = "5s"

_DOT_COLOURS: Final = {
    "pending": "lightblue",
    "running": "yellow",
    "succeeded": "lightgreen",
    "failed": "lightpink",
}
_MERMAID_CLASSES: Final = {
    "pending": "fill:#add8e6,stroke:#4a7a8c,color:#000",
    "running": "fill:#ffff66,stroke:#8c8c00,color:#000",
    "succeeded": "fill:#90ee90,stroke:#3c8c3c,color:#000",
    "failed": "fill:#ffb6c1,stroke:#a0404f,color:#000",
    "other": "fill:#d3d3d3,stroke:#6e6e6e,color:#000",
}


# ---------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------


class _Statements:
    """The plugin's statements for one table prefix (values are bind parameters)."""

    def __init__(self, prefix: str, jobs: str) -> None:
        # ``prefix`` was validated by the core (letters, digits, underscores)
        # and ``jobs`` is core's quoted table name.
        w = f'"{prefix}workflows"'
        s = f'"{prefix}workflow_steps"'
        self.workflows, self.steps = w, s
        wf_cols = "id, name, state, created_at, updated_at"

        # How long the catch-up waits for a workflow's row lock.
        self.lock_timeout = "SELECT set_config('lock_timeout', %s, true)"

        self.upsert_workflow = (
            f"INSERT INTO {w} AS w (id, name, state) VALUES (%s, %s, %s)"
            f" ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, updated_at = NOW()"
            f" RETURNING state, created_at, updated_at, (xmax = 0) AS inserted"
        )
        # Steps keep their order (ids are assigned in ``ord`` order). A step
        # that already has a job is never changed by a later push.
        self.upsert_steps = (
            f"INSERT INTO {s} AS s (workflow_id, step_id, job_data, dependencies, job_id)"
            f" SELECT %s, u.step_id, u.job_data, u.dependencies, u.job_id"
            f" FROM unnest(%s::text[], %s::jsonb[], %s::jsonb[], %s::uuid[])"
            f" WITH ORDINALITY AS u(step_id, job_data, dependencies, job_id, ord)"
            f" ORDER BY u.ord"
            f" ON CONFLICT (workflow_id, step_id) DO UPDATE SET"
            f" job_data = EXCLUDED.job_data, dependencies = EXCLUDED.dependencies,"
            f" updated_at = NOW()"
            f" WHERE s.job_id IS NULL"
        )
        self.lock_skip = (
            f"SELECT {wf_cols} FROM {w} WHERE id = ANY(%s::uuid[])"
            f" ORDER BY id FOR UPDATE SKIP LOCKED"
        )
        self.lock_wait = (
            f"SELECT {wf_cols} FROM {w} WHERE id = ANY(%s::uuid[])"
            f" ORDER BY id FOR UPDATE"
        )
        active = f"state IN ('{_ACTIVE[0]}', '{_ACTIVE[1]}')"
        self.scan_first = (
            f"SELECT {wf_cols} FROM {w} WHERE {active}"
            f" ORDER BY created_at, id LIMIT %s FOR UPDATE SKIP LOCKED"
        )
        self.scan_after = (
            f"SELECT {wf_cols} FROM {w} WHERE {active} AND (created_at, id) > (%s, %s)"
            f" ORDER BY created_at, id LIMIT %s FOR UPDATE SKIP LOCKED"
        )
        # Steps with the state of their job (NULL: no job, or the job is gone).
        self.load_steps = (
            f"SELECT s.workflow_id, s.step_id, s.dependencies, s.job_id,"
            f" s.state AS recorded, j.state AS job_state"
            f" FROM {s} s LEFT JOIN {jobs} j ON j.id = s.job_id"
            f" WHERE s.workflow_id = ANY(%s::uuid[])"
            f" ORDER BY s.workflow_id, s.id"
        )
        self.load_steps_full = (
            f"SELECT s.workflow_id, s.step_id, s.job_data, s.dependencies, s.job_id,"
            f" s.state AS recorded, j.state AS job_state"
            f" FROM {s} s LEFT JOIN {jobs} j ON j.id = s.job_id"
            f" WHERE s.workflow_id = ANY(%s::uuid[])"
            f" ORDER BY s.workflow_id, s.id"
        )
        self.job_data = (
            f"SELECT s.workflow_id, s.step_id, s.job_data FROM {s} s"
            f" JOIN unnest(%s::uuid[], %s::text[]) AS u(workflow_id, step_id)"
            f" ON s.workflow_id = u.workflow_id AND s.step_id = u.step_id"
        )
        # Fenced: only steps without a job get one, so a caller that did not
        # hold the workflow's lock cannot record a second job for a step.
        self.set_job_ids = (
            f"UPDATE {s} s SET job_id = u.job_id, state = 'pending', updated_at = NOW()"
            f" FROM unnest(%s::uuid[], %s::text[], %s::uuid[])"
            f" AS u(workflow_id, step_id, job_id)"
            f" WHERE s.workflow_id = u.workflow_id AND s.step_id = u.step_id"
            f" AND s.job_id IS NULL"
            f" RETURNING s.step_id"
        )
        # The prompt path: the outcome of a step's job, recorded only on the
        # step that job belongs to.
        self.record_finished = (
            f"UPDATE {s} s SET state = u.state, updated_at = NOW()"
            f" FROM unnest(%s::text[], %s::uuid[], %s::text[]) AS u(step_id, job_id, state)"
            f" WHERE s.workflow_id = %s AND s.step_id = u.step_id AND s.job_id = u.job_id"
            f" RETURNING s.step_id"
        )
        # Steps without a job that depend on one of the given steps.
        self.dependants = (
            f"SELECT step_id, job_data, dependencies FROM {s}"
            f" WHERE workflow_id = %s AND job_id IS NULL AND dependencies ?| %s::text[]"
            f" ORDER BY id"
        )
        # Some steps of one workflow with the state of their job.
        self.some_steps = (
            f"SELECT s.step_id, s.dependencies, s.job_id, s.state AS recorded,"
            f" j.state AS job_state"
            f" FROM {s} s LEFT JOIN {jobs} j ON j.id = s.job_id"
            f" WHERE s.workflow_id = %s AND s.step_id = ANY(%s::text[])"
        )
        self.unfinished_exists = (
            f"SELECT EXISTS (SELECT 1 FROM {s} s LEFT JOIN {jobs} j ON j.id = s.job_id"
            f" WHERE s.workflow_id = %s AND (s.job_id IS NULL"
            f" OR COALESCE(j.state, s.state) IS DISTINCT FROM 'succeeded'))"
        )
        self.record_states = (
            f"UPDATE {s} s SET state = u.state, updated_at = NOW()"
            f" FROM unnest(%s::uuid[], %s::text[], %s::text[])"
            f" AS u(workflow_id, step_id, state)"
            f" WHERE s.workflow_id = u.workflow_id AND s.step_id = u.step_id"
        )
        self.set_states = (
            f"UPDATE {w} w SET state = u.state, updated_at = NOW()"
            f" FROM unnest(%s::uuid[], %s::text[]) AS u(id, state)"
            f" WHERE w.id = u.id RETURNING w.id, w.updated_at"
        )
        self.fetch = (
            f"SELECT {wf_cols} FROM {w}"
            f" WHERE (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[]))"
            f" AND (%(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[]))"
            f" ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
        )

    def cleanup(self, rule: sql.Composable) -> sql.Composed:
        """Delete the finished workflows matching ``rule`` (their steps go
        with them); parameters: the rule's values."""
        return sql.SQL(
            "DELETE FROM {workflows} WHERE state NOT IN ('pending', 'running')"
            " AND ({rule})"
        ).format(workflows=sql.SQL(self.workflows), rule=rule)


@cache
def _statements(prefix: str, jobs: str) -> _Statements:
    return _Statements(prefix, jobs)


def _sql(chancy: Chancy) -> _Statements:
    return _statements(chancy.prefix, chancy.sql.jobs)


# ---------------------------------------------------------------------------
# The scheduler's view of a stored workflow
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Step:
    step_id: str
    dependencies: list[str]
    job_id: uuid.UUID | None
    #: The state last recorded on the step row.
    recorded: str | None
    #: The state of the step's job row (``None``: no job, or it was deleted).
    job_state: str | None

    @property
    def state(self) -> str | None:
        """The step's state: its job's, else the last one recorded.

        A job deleted before it was seen finishing (purged, its queue deleted)
        counts as failed: it will never run, and pushing it again could run
        the step twice.
        """
        if self.job_id is None:
            return None
        if self.job_state is not None:
            return self.job_state
        if self.recorded in _JOB_FINISHED:
            return self.recorded
        return "failed"


@dataclass(slots=True)
class _Flow:
    id: uuid.UUID
    name: str
    state: str
    created_at: datetime
    updated_at: datetime
    steps: list[_Step] = field(default_factory=list)


def _flows(rows: Iterable[dict[str, Any]]) -> list[_Flow]:
    return [
        _Flow(r["id"], r["name"], r["state"], r["created_at"], r["updated_at"])
        for r in rows
    ]


def _row_step(row: dict[str, Any]) -> _Step:
    return _Step(
        row["step_id"],
        row["dependencies"],
        row["job_id"],
        row["recorded"],
        row["job_state"],
    )


async def _load_steps(
    cur: AsyncCursor[Any], chancy: Chancy, flows: list[_Flow]
) -> None:
    if not flows:
        return
    by_id = {flow.id: flow for flow in flows}
    await cur.execute(_sql(chancy).load_steps, (list(by_id),))
    for row in await cur.fetchall():
        by_id[row["workflow_id"]].steps.append(_row_step(row))


def _step_state(value: str | None) -> QueuedJob.State | None:
    if value is None:
        return None
    try:
        return QueuedJob.State(value)
    except ValueError:
        return QueuedJob.State.FAILED if value in _JOB_FAILED else None


class _ConcurrentAdvance(RuntimeError):
    """Steps got a job elsewhere while we pushed: roll back (nothing is kept)."""


async def _push_steps(
    cur: AsyncCursor[Any],
    chancy: Chancy,
    steps: list[tuple[uuid.UUID, str, dict[str, Any]]],
) -> list[uuid.UUID]:
    """Push the jobs of ``(workflow id, step id, packed job)`` and record each
    job's id on its step, in the caller's transaction; returns the job ids.

    The step update is fenced (``job_id IS NULL``): if a step already has a
    job, :class:`_ConcurrentAdvance` is raised so that the caller's
    transaction, and the job it just inserted, roll back.
    """
    jobs: list[Job] = []
    for workflow_id, step_id, data in steps:
        job = Job.unpack(data)
        meta = {
            **job.meta,
            "workflow_id": str(workflow_id),
            "workflow_step_id": step_id,
        }
        jobs.append(job.with_meta(meta))
    refs = await chancy.push_many_ex(cur, jobs)
    job_ids = [ref.identifier for ref in refs]
    await cur.execute(
        _sql(chancy).set_job_ids,
        ([w for w, _, _ in steps], [s for _, s, _ in steps], job_ids),
    )
    if len(await cur.fetchall()) != len(steps):
        raise _ConcurrentAdvance(
            "steps of the workflow got jobs concurrently; the workflow row must be"
            " locked (FOR UPDATE) while it is processed"
        )
    return job_ids


#: A finished step job: (step id, job id, state).
_Outcome = tuple[str | None, uuid.UUID, str]


async def _advance_after(
    cur: AsyncCursor[Any], chancy: Chancy, flow: _Flow, outcomes: list[_Outcome]
) -> None:
    """Advance a locked workflow after some of its step jobs finished.

    The cheap path used for every finished job: records the outcomes on their
    steps, then looks only at the steps that depend on them (in SQL), so the
    cost does not grow with the size of the workflow. Falls back to a full
    pass (:func:`_advance`) when an outcome does not match a step's recorded
    job (a job with a hand-made ``workflow_id``, or from an older version).
    """
    if flow.state in _TERMINAL_WORKFLOW:
        return
    statements = _sql(chancy)
    if not all(isinstance(step_id, str) for step_id, _, _ in outcomes):
        await _load_steps(cur, chancy, [flow])
        await _advance(cur, chancy, [flow])
        return
    latest = {
        step_id: (job_id, state)
        for step_id, job_id, state in outcomes
        if step_id is not None
    }
    step_ids = list(latest)
    await cur.execute(
        statements.record_finished,
        (
            step_ids,
            [latest[s][0] for s in step_ids],
            [latest[s][1] for s in step_ids],
            flow.id,
        ),
    )
    if len(await cur.fetchall()) != len(step_ids):
        await _load_steps(cur, chancy, [flow])
        await _advance(cur, chancy, [flow])
        return
    if any(state in _JOB_FAILED for _, state in latest.values()):
        new = "failed"
    else:
        await cur.execute(statements.dependants, (flow.id, step_ids))
        candidates = await cur.fetchall()
        ready = []
        if candidates:
            needed = sorted({dep for row in candidates for dep in row["dependencies"]})
            await cur.execute(statements.some_steps, (flow.id, needed))
            states = {
                row["step_id"]: _row_step(row).state for row in await cur.fetchall()
            }
            ready = [
                (flow.id, row["step_id"], row["job_data"])
                for row in candidates
                if all(states.get(dep) == "succeeded" for dep in row["dependencies"])
            ]
        if ready:
            await _push_steps(cur, chancy, ready)
            new = "running"
        else:
            await cur.execute(statements.unfinished_exists, (flow.id,))
            row = await cur.fetchone()
            new = "running" if row and row["exists"] else "completed"
    await cur.execute(statements.set_states, ([flow.id], [new]))
    await cur.fetchall()
    flow.state = new


async def _advance(
    cur: AsyncCursor[Any], chancy: Chancy, flows: list[_Flow]
) -> set[uuid.UUID]:
    """One scheduling pass over workflows whose rows the caller has locked.

    Pushes the job of every step whose dependencies all succeeded, records
    each job id on its step in the same statement batch, records the states
    observed, and moves each workflow to its new state. Returns the ids of
    the workflows that changed. The objects are updated only once every write
    succeeded.
    """
    statements = _sql(chancy)
    to_push: list[tuple[_Flow, _Step]] = []
    records: list[tuple[_Flow, _Step, str]] = []
    new_states: dict[uuid.UUID, str] = {}
    changed: set[uuid.UUID] = set()

    for flow in flows:
        if flow.state in _TERMINAL_WORKFLOW:
            continue
        states = {step.step_id: step.state for step in flow.steps}
        for step in flow.steps:
            state = states[step.step_id]
            if state is not None and state != step.recorded:
                records.append((flow, step, state))
        if not flow.steps:
            new = "failed"  # nothing can ever complete it
        elif any(state in _JOB_FAILED for state in states.values()):
            new = "failed"
        elif all(state == "succeeded" for state in states.values()):
            new = "completed"
        else:
            ready = [
                step
                for step in flow.steps
                if step.job_id is None
                and all(states.get(dep) == "succeeded" for dep in step.dependencies)
            ]
            to_push.extend((flow, step) for step in ready)
            started = ready or any(step.job_id is not None for step in flow.steps)
            new = "running" if started else "pending"
        if new != flow.state:
            new_states[flow.id] = new
    changed.update(flow.id for flow, _ in to_push)
    changed.update(flow.id for flow, _, _ in records)
    changed.update(new_states)
    if not changed:
        return changed

    job_ids: list[uuid.UUID] = []
    if to_push:
        await cur.execute(
            statements.job_data,
            ([flow.id for flow, _ in to_push], [step.step_id for _, step in to_push]),
        )
        data = {
            (r["workflow_id"], r["step_id"]): r["job_data"]
            for r in await cur.fetchall()
        }
        job_ids = await _push_steps(
            cur,
            chancy,
            [
                (flow.id, step.step_id, data[flow.id, step.step_id])
                for flow, step in to_push
            ],
        )
    if records:
        await cur.execute(
            statements.record_states,
            (
                [flow.id for flow, _, _ in records],
                [step.step_id for _, step, _ in records],
                [state for _, _, state in records],
            ),
        )
    by_id = {flow.id: flow for flow in flows}
    await cur.execute(
        statements.set_states,
        (list(changed), [new_states.get(i, by_id[i].state) for i in changed]),
    )
    updated = {row["id"]: row["updated_at"] for row in await cur.fetchall()}

    # Every write went through: update the objects.
    for (_flow, step), job_id in zip(to_push, job_ids, strict=True):
        step.job_id = job_id
        step.recorded = step.job_state = "pending"
    for _flow, step, state in records:
        step.recorded = state
    for flow in flows:
        if flow.id in changed:
            flow.state = new_states.get(flow.id, flow.state)
            flow.updated_at = updated.get(flow.id, flow.updated_at)
    return changed


def _outcomes(jobs: Iterable[QueuedJob]) -> dict[uuid.UUID, list[_Outcome]]:
    """Finished jobs that belong to a workflow, by workflow id."""
    out: dict[uuid.UUID, list[_Outcome]] = {}
    for job in jobs:
        state = job.state.value
        if state not in _JOB_FINISHED:
            continue
        workflow_id = job.meta.get("workflow_id")
        if workflow_id is None:
            continue
        try:
            key = uuid.UUID(str(workflow_id))
        except ValueError:
            continue
        step_id = job.meta.get("workflow_step_id")
        out.setdefault(key, []).append(
            (step_id if isinstance(step_id, str) else None, job.id, state)
        )
    return out


def _is_broken(conn: AsyncConnection[Any]) -> bool:
    return bool(conn.closed or getattr(conn, "broken", False))


def _uuids(values: Iterable[Any]) -> list[uuid.UUID]:
    out = []
    for value in values:
        try:
            out.append(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
        except ValueError:
            continue
    return out


class _Leading:
    """What the leader's loop on one worker has to do."""

    __slots__ = ("next_sweep", "pushed")

    def __init__(self) -> None:
        #: Workflows pushed since the last pass.
        self.pushed: set[uuid.UUID] = set()
        #: Loop time of the next sweep; ``None``: at the next pass.
        self.next_sweep: float | None = None


# ---------------------------------------------------------------------------
# The plugin
# ---------------------------------------------------------------------------


class WorkflowPlugin(MaintenanceService):
    """Runs workflows: pushes each step's job once every step it depends on
    has succeeded.

    Advancing happens in two places:

    * **Promptly, on any worker**: when a worker saves a finished job that
      belongs to a workflow, the workflow is advanced in the same transaction
      that records the job's outcome (its row locked with ``SKIP LOCKED``).
      If another transaction holds the workflow at that moment, the worker
      tries again right after its commit.
    * **On the leader**, in passes: a pushed workflow
      (``WORKFLOW_CREATED``, ``WORKFLOW_UPDATED``) wakes the leader,
      whose next pass processes it at once, on its own; and every
      ``polling_interval`` seconds a pass sweeps every unfinished workflow,
      oldest first, in transactions of at most ``max_workflows_per_run``
      workflows. This starts new workflows and catches anything the prompt
      path did not see (a job cancelled with ``Chancy.cancel_job``, a worker
      that crashed between its commit and the catch-up).

    A step's job is pushed in the same transaction that records its id on the
    step, under the workflow's row lock, so each step gets exactly one job,
    with any number of workers and across leader changes.

    :param polling_interval: seconds between the leader's passes.
    :param max_workflows_per_run: workflows locked and processed per
        transaction of a pass.
    :param pruning_rule: finished workflows matching it are deleted (with their
        steps) by :meth:`cleanup`, which the pruner calls; default: older than
        a day (``WorkflowPlugin.Rules.Age() > 86400``).

    A :class:`~chancy.maintenance.MaintenanceService`: ``wake_up()`` runs a
    pass now, ``wait_for_passes(n, timeout=...)`` (or its older name
    ``wait_for_pass(passes=n)``) waits for ``n`` more.
    """

    identifier = IDENTIFIER
    distribution = DISTRIBUTION
    scope = PluginScope.LEADER
    dependencies = (LEADERSHIP,)
    dependency_distributions = {LEADERSHIP: "chancy-leadership"}
    default_enabled = True
    tables = ("workflows", "workflow_steps")
    migrations_key = "workflow"
    migrations_package = "chancy.plugins.workflow.migrations"
    #: Position among the default plugins (spec: leadership, pruner,
    #: recovery, metrics, workflow, then the others).
    default_order = 50

    Rules = WorkflowRules

    def __init__(
        self,
        *,
        polling_interval: float = 30,
        max_workflows_per_run: int = 1000,
        pruning_rule: SQLAble | None = None,
    ) -> None:
        if isinstance(polling_interval, bool) or not isinstance(
            polling_interval, int | float
        ):
            raise TypeError(
                f"polling_interval must be a number, got {polling_interval!r}"
            )
        if polling_interval <= 0:
            raise ValueError(
                f"polling_interval must be positive, got {polling_interval!r}"
            )
        if (
            isinstance(max_workflows_per_run, bool)
            or not isinstance(max_workflows_per_run, int)
            or max_workflows_per_run < 1
        ):
            raise ValueError(
                f"max_workflows_per_run must be an int >= 1, got {max_workflows_per_run!r}"
            )
        if pruning_rule is None:
            pruning_rule = WorkflowRules.Age() > 86400
        compile_rule(pruning_rule)  # a bare Rule or a non-rule fails here, not later
        super().__init__(interval=polling_interval)
        #: Workflows processed per transaction of a pass.
        self.max_workflows_per_run = max_workflows_per_run
        #: Finished workflows matching this rule are removed by :meth:`cleanup`.
        self.pruning_rule = pruning_rule
        # worker id -> what the leader's loop on that worker has to do.
        self._leading: dict[str, _Leading] = {}
        # worker id -> workflow ids whose advance was skipped (row locked
        # elsewhere) in a transaction not yet committed.
        self._catch_up: dict[str, dict[uuid.UUID, list[_Outcome]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    #: Seconds between the leader's sweeps (the service's ``interval``).
    polling_interval = Alias[float]("interval")

    def __repr__(self) -> str:
        return (
            f"<WorkflowPlugin(polling_interval={self.polling_interval!r},"
            f" max_workflows_per_run={self.max_workflows_per_run!r})>"
        )

    def api_plugin(self) -> str | None:
        """``GET /api/v1/workflows[/{id}]`` in the web API (``chancy-web``)."""
        return "chancy.plugins.workflow.api.WorkflowApiPlugin"

    # -- writing -----------------------------------------------------------------------

    @classmethod
    async def push(cls, chancy: Chancy, workflow: Workflow) -> str:
        """Store ``workflow`` in its own transaction; returns its id.

        The workflow is validated first; nothing is written if it is invalid.
        See :meth:`push_ex`.
        """
        _prepare(workflow)
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
                return await cls.push_ex(cursor, chancy, workflow)

    @classmethod
    async def push_ex(
        cls, cursor: AsyncCursor[Any], chancy: Chancy, workflow: Workflow
    ) -> str:
        """Store ``workflow`` on the caller's cursor (visible when it commits).

        Validates first (:class:`~chancy.plugins.workflow.WorkflowValidationError`
        and its subclasses; nothing is written). Inserts the workflow and its
        steps, or, for an id that exists, updates its name and its steps that
        have no job yet and adds new steps (steps are never removed, a step
        that has a job keeps it, and the stored state is kept). Refreshes
        ``state``, ``created_at`` and ``updated_at`` on the object and sends
        ``workflow.created`` (or ``workflow.updated``) with ``{"id", "name"}``.
        The leader starts the workflow as soon as it is notified.
        """
        workflow_id, rows = _prepare(workflow)
        for step_id, step in workflow.steps.items():
            # As the step's job will be pushed: refused now, not when it is due.
            try:
                chancy.check_job(step.job)
            except (TypeError, ValueError) as exc:
                raise InvalidStepError(
                    f"the job of step {step_id!r} cannot be stored: {exc}"
                ) from None
        statements = _sql(chancy)
        async with cursor.connection.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                statements.upsert_workflow,
                (workflow_id, workflow.name, workflow.state.value),
            )
            row = await cur.fetchone()
            assert row is not None
            await cur.execute(
                statements.upsert_steps,
                (
                    workflow_id,
                    [r[0] for r in rows],
                    [r[1] for r in rows],
                    [r[2] for r in rows],
                    [None if r[3] is None else uuid.UUID(r[3]) for r in rows],
                ),
            )
            event = WORKFLOW_CREATED.name if row["inserted"] else WORKFLOW_UPDATED.name
            await chancy.notify(
                cur, event, {"id": str(workflow_id), "name": workflow.name}
            )
        workflow.id = str(workflow_id)
        workflow.state = Workflow.State(row["state"])
        workflow.created_at = row["created_at"]
        workflow.updated_at = row["updated_at"]
        return workflow.id

    # -- reading -----------------------------------------------------------------------

    @classmethod
    async def fetch_workflow(
        cls, chancy: Chancy, id_: str | uuid.UUID
    ) -> Workflow | None:
        """The stored workflow with its steps, or ``None`` if there is none.

        A step's ``state`` is the state of its job; ``None`` while the step has
        no job. A step whose job was pruned keeps the last state the plugin
        recorded for it.
        """
        await chancy.ensure_open()
        async with (
            chancy.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            return await cls.fetch_workflow_ex(cursor, chancy, id_)

    @classmethod
    async def fetch_workflow_ex(
        cls, cursor: AsyncCursor[Any], chancy: Chancy, id_: str | uuid.UUID
    ) -> Workflow | None:
        ids = _uuids([id_])
        if not ids:
            return None
        found = await cls.fetch_workflows_ex(cursor, chancy, ids=ids, limit=1)
        return found[0] if found else None

    @classmethod
    async def fetch_workflows(
        cls,
        chancy: Chancy,
        *,
        states: Iterable[str | Workflow.State] | None = None,
        ids: Iterable[str | uuid.UUID] | None = None,
        limit: int = 100,
    ) -> list[Workflow]:
        """Stored workflows, newest first, optionally filtered by state and id."""
        await chancy.ensure_open()
        async with (
            chancy.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            return await cls.fetch_workflows_ex(
                cursor, chancy, states=states, ids=ids, limit=limit
            )

    @classmethod
    async def fetch_workflows_ex(
        cls,
        cursor: AsyncCursor[Any],
        chancy: Chancy,
        *,
        states: Iterable[str | Workflow.State] | None = None,
        ids: Iterable[str | uuid.UUID] | None = None,
        limit: int = 100,
    ) -> list[Workflow]:
        statements = _sql(chancy)
        params = {
            "states": None
            if states is None
            else [Workflow.State(s).value for s in states],
            "ids": None if ids is None else _uuids(ids),
            "limit": limit,
        }
        async with cursor.connection.cursor(row_factory=dict_row) as cur:
            await cur.execute(statements.fetch, params)
            workflows = [
                Workflow(
                    name=row["name"],
                    state=Workflow.State(row["state"]),
                    id=str(row["id"]),
                    created_at=row["created_at"],
                    updated_at=row["updated_at"],
                )
                for row in await cur.fetchall()
            ]
            if not workflows:
                return []
            by_id = {uuid.UUID(w.id): w for w in workflows}
            await cur.execute(statements.load_steps_full, (list(by_id),))
            for row in await cur.fetchall():
                step = _row_step(row)
                by_id[row["workflow_id"]].steps[step.step_id] = WorkflowStep(
                    job=Job.unpack(row["job_data"]),
                    step_id=step.step_id,
                    dependencies=list(step.dependencies),
                    state=_step_state(step.state),
                    job_id=None if step.job_id is None else str(step.job_id),
                )
        return workflows

    @classmethod
    async def wait_for_workflow(
        cls,
        chancy: Chancy,
        workflow_id: str | uuid.UUID,
        *,
        interval: float = 1,
        timeout: float | None = None,
    ) -> Workflow:
        """Poll until the workflow has finished (completed, failed or cancelled).

        :raises KeyError: no such workflow (or it was deleted while waiting).
        :raises TimeoutError: ``timeout`` seconds passed first.
        """

        async def poll() -> Workflow:
            while True:
                workflow = await cls.fetch_workflow(chancy, workflow_id)
                if workflow is None:
                    raise KeyError(f"no workflow with the id {str(workflow_id)!r}")
                if workflow.is_complete:
                    return workflow
                await asyncio.sleep(interval)

        async with asyncio.timeout(timeout):
            return await poll()

    # -- advancing ------------------------------------------------------------------

    @classmethod
    async def process_workflow(
        cls, cursor: AsyncCursor[Any], chancy: Chancy, workflow: Workflow
    ) -> bool:
        """One scheduling pass over ``workflow``, on the caller's cursor.

        Locks the workflow's row (``FOR UPDATE``, waiting for it), reads the
        stored steps and the states of their jobs, then: a workflow that
        finished is left alone; if a step failed the workflow fails and no
        further job is pushed; if every step succeeded it completes; otherwise
        the job of every step whose dependencies all succeeded is pushed, with
        ``meta["workflow_id"]`` and ``meta["workflow_step_id"]``, and its id is
        recorded on the step, and the workflow is ``running``. ``workflow``
        is updated from what was stored. Returns whether anything changed.
        """
        statements = _sql(chancy)
        workflow_id = uuid.UUID(str(workflow.id))
        async with cursor.connection.cursor(row_factory=dict_row) as cur:
            await cur.execute(statements.lock_wait, ([workflow_id],))
            flows = _flows(await cur.fetchall())
            if not flows:
                raise KeyError(f"no workflow with the id {workflow.id!r} is stored")
            await _load_steps(cur, chancy, flows)
            changed = await _advance(cur, chancy, flows)
        flow = flows[0]
        workflow.state = Workflow.State(flow.state)
        workflow.updated_at = flow.updated_at
        for step in flow.steps:
            if step.step_id in workflow.steps:
                target = workflow.steps[step.step_id]
                target.job_id = None if step.job_id is None else str(step.job_id)
                target.state = _step_state(step.state)
        return bool(changed)

    async def _advance_isolated(
        self, cur: AsyncCursor[Any], chancy: Chancy, flows: list[_Flow], log: Any
    ) -> None:
        """:func:`_advance` in a savepoint; if it fails, each workflow on its own,
        so that one broken workflow cannot hold the others up."""
        conn = cur.connection
        try:
            async with conn.transaction():
                await _advance(cur, chancy, flows)
            return
        except Exception:
            if _is_broken(conn):
                raise
        for flow in flows:
            try:
                async with conn.transaction():
                    fresh = _Flow(
                        flow.id, flow.name, flow.state, flow.created_at, flow.updated_at
                    )
                    await _load_steps(cur, chancy, [fresh])
                    await _advance(cur, chancy, [fresh])
            except Exception:
                if _is_broken(conn):
                    raise
                log.exception(
                    "Workflow %s (%r) could not be advanced", flow.id, flow.name
                )

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """The leader's loop (see :meth:`run_pass`); a pushed workflow wakes it."""
        leading = self._leading[worker.worker_id] = _Leading()

        def on_pushed(event: Event) -> None:
            ids = _uuids([event.body.get("id")])
            if ids:
                leading.pushed.update(ids)
                self.wake_up()

        worker.hub.on(WORKFLOW_CREATED.name, on_pushed)
        worker.hub.on(WORKFLOW_UPDATED.name, on_pushed)
        try:
            await super().run(worker, chancy)
        finally:
            worker.hub.remove(WORKFLOW_CREATED.name, on_pushed)
            worker.hub.remove(WORKFLOW_UPDATED.name, on_pushed)
            if self._leading.get(worker.worker_id) is leading:
                del self._leading[worker.worker_id]

    async def run_pass(self, worker: Worker, chancy: Chancy) -> float:
        """One pass on the leader: the workflows pushed since the last pass,
        on their own, then, when ``polling_interval`` seconds have passed
        since the last sweep (or the loop has just started), a sweep of every
        unfinished workflow. Returns the time left until the next sweep."""
        loop = asyncio.get_running_loop()
        leading = self._leading.get(worker.worker_id)
        if leading is None:  # a pass outside run(): nothing was pushed to it
            leading = self._leading[worker.worker_id] = _Leading()
        ids = sorted(leading.pushed)
        leading.pushed.clear()
        if ids:
            try:
                await self.process_ids(chancy, ids, log=worker.log)
            except BaseException:
                leading.pushed.update(ids)  # the loop's restart sweeps anyway
                raise
        if leading.next_sweep is None or loop.time() >= leading.next_sweep:
            await self.sweep(chancy, log=worker.log)
            leading.next_sweep = loop.time() + self.polling_interval
        return max(0.0, leading.next_sweep - loop.time())

    async def wait_for_pass(
        self, *, passes: int = 1, timeout: float | None = None
    ) -> None:
        """:meth:`~chancy.maintenance.MaintenanceService.wait_for_passes`
        under its older name: until the leader has completed ``passes`` more
        passes."""
        await self.wait_for_passes(passes, timeout=timeout)

    async def sweep(self, chancy: Chancy, *, log: Any = None) -> None:
        """Visit every unfinished workflow once, oldest first (see :meth:`run_once`)."""
        position = await self.run_once(chancy, log=log)
        while position is not None:
            position = await self.run_once(chancy, position=position, log=log)

    async def process_ids(
        self, chancy: Chancy, ids: list[uuid.UUID], *, log: Any = None
    ) -> None:
        """Process the given workflows in one transaction (rows locked elsewhere
        are skipped: whoever holds them is advancing them)."""
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(_sql(chancy).lock_skip, (ids,))
                flows = [
                    flow
                    for flow in _flows(await cur.fetchall())
                    if flow.state not in _TERMINAL_WORKFLOW
                ]
                if flows:
                    await _load_steps(cur, chancy, flows)
                    await self._advance_isolated(cur, chancy, flows, log or chancy.log)

    async def run_once(
        self,
        chancy: Chancy,
        *,
        position: tuple[datetime, uuid.UUID] | None = None,
        log: Any = None,
    ) -> tuple[datetime, uuid.UUID] | None:
        """Process up to ``max_workflows_per_run`` unfinished workflows, oldest
        first, after ``position`` (a ``(created_at, id)`` pair), in one
        transaction; rows locked by someone else are skipped.

        Returns the position to continue from, or ``None`` when the end was
        reached (the next pass starts again with the oldest workflow).
        """
        statements = _sql(chancy)
        limit = self.max_workflows_per_run
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                if position is None:
                    await cur.execute(statements.scan_first, (limit,))
                else:
                    await cur.execute(statements.scan_after, (*position, limit))
                flows = _flows(await cur.fetchall())
                if flows:
                    await _load_steps(cur, chancy, flows)
                    await self._advance_isolated(cur, chancy, flows, log or chancy.log)
        if len(flows) < limit:
            return None
        return flows[-1].created_at, flows[-1].id

    # -- prompt advancing, inside the workers' update transactions ---------------------

    async def on_jobs_updated_in_transaction(
        self, *, worker: Worker, jobs: list[QueuedJob], cursor: AsyncCursor[Any]
    ) -> None:
        """Advance the workflows of finished step jobs in the transaction that
        saves them: the next steps' jobs exist as soon as the outcome does.

        Each workflow's row is locked with ``SKIP LOCKED``; one held by another
        transaction (which cannot see this outcome yet) is advanced again
        right after this transaction commits (see :meth:`on_job_updated`).
        """
        outcomes = _outcomes(jobs)
        if not outcomes:
            return
        ids = sorted(outcomes)
        conn = cursor.connection
        chancy = worker.chancy
        locked: set[uuid.UUID] = set()
        try:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(_sql(chancy).lock_skip, (ids,))
                flows = _flows(await cur.fetchall())
                locked = {flow.id for flow in flows}
                for flow in flows:
                    await _advance_after(cur, chancy, flow, outcomes[flow.id])
        except Exception:
            if _is_broken(conn):
                raise
            worker.log.exception(
                "Workflows %s could not be advanced with their jobs' update;"
                " trying again after it",
                ", ".join(map(str, ids)),
            )
            locked = set()
        skipped = set(ids) - locked
        if skipped:
            pending = self._catch_up.setdefault(worker.worker_id, {})
            for workflow_id in skipped:
                pending.setdefault(workflow_id, []).extend(outcomes[workflow_id])

    async def on_job_updated(self, *, worker: Worker, job: QueuedJob) -> None:
        """Start the catch-up of workflows skipped in the transaction that has
        just committed (see :meth:`on_jobs_updated_in_transaction`)."""
        pending = self._catch_up.get(worker.worker_id)
        if not pending:
            return
        outcomes = dict(pending)
        pending.clear()
        task = asyncio.create_task(
            self._catch_up_on(worker, outcomes), name=f"{IDENTIFIER}:catch-up"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up_on(
        self, worker: Worker, outcomes: dict[uuid.UUID, list[_Outcome]]
    ) -> None:
        """Advance workflows whose row was locked when their step's outcome was
        saved, now that the outcome is committed (waiting for the lock, at most
        a few seconds; then the leader's next pass does it)."""
        chancy = worker.chancy
        try:
            async with chancy.pool.connection() as conn:
                async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(
                        _sql(chancy).lock_timeout, (_CATCH_UP_LOCK_TIMEOUT,)
                    )
                    await cur.execute(_sql(chancy).lock_wait, (sorted(outcomes),))
                    for flow in _flows(await cur.fetchall()):
                        try:
                            async with conn.transaction():
                                await _advance_after(
                                    cur, chancy, flow, outcomes[flow.id]
                                )
                        except Exception:
                            if _is_broken(conn):
                                raise
                            worker.log.exception(
                                "Workflow %s (%r) could not be advanced",
                                flow.id,
                                flow.name,
                            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            worker.log.info(
                "Workflows %s: catching up failed (%s); the leader's next pass will",
                ", ".join(map(str, outcomes)),
                exc,
            )

    async def on_worker_stopped(self, *, worker: Worker) -> None:
        self._catch_up.pop(worker.worker_id, None)
        tasks = [task for task in self._tasks if not task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()

    # -- cancelling -------------------------------------------------------------------

    @classmethod
    async def cancel_workflow(
        cls, chancy: Chancy, workflow_id: str | uuid.UUID
    ) -> None:
        """Cancel a workflow: steps without a job never get one, and the jobs of
        its unfinished steps (pending, retrying or running) are cancelled, in one
        transaction. The workflow ends ``cancelled``.

        A workflow that completed or was cancelled is left alone. For a
        workflow that failed, the jobs still unfinished are cancelled and it
        stays ``failed``.

        :raises KeyError: no such workflow.
        """
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
                await cls.cancel_workflow_ex(cursor, chancy, workflow_id)

    @classmethod
    async def cancel_workflow_ex(
        cls, cursor: AsyncCursor[Any], chancy: Chancy, workflow_id: str | uuid.UUID
    ) -> None:
        """:meth:`cancel_workflow` on the caller's cursor."""
        statements = _sql(chancy)
        ids = _uuids([workflow_id])
        async with cursor.connection.cursor(row_factory=dict_row) as cur:
            flows: list[_Flow] = []
            if ids:
                await cur.execute(statements.lock_wait, (ids,))
                flows = _flows(await cur.fetchall())
            if not flows:
                raise KeyError(f"no workflow with the id {str(workflow_id)!r}")
            flow = flows[0]
            if flow.state in ("completed", "cancelled"):
                return
            await _load_steps(cur, chancy, flows)
            cancelled = [
                step
                for step in flow.steps
                if step.job_id is not None and step.job_state in _JOB_UNFINISHED
            ]
            for step in cancelled:
                await chancy.cancel_job_ex(cur, Reference(step.job_id))  # type: ignore[arg-type]
            if cancelled:
                await cur.execute(
                    statements.record_states,
                    (
                        [flow.id] * len(cancelled),
                        [step.step_id for step in cancelled],
                        ["failed"] * len(cancelled),
                    ),
                )
            if flow.state != "failed":
                await cur.execute(statements.set_states, ([flow.id], ["cancelled"]))
            await chancy.notify(
                cur, WORKFLOW_UPDATED.name, {"id": str(flow.id), "name": flow.name}
            )

    # -- maintenance -----------------------------------------------------------------

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Delete finished workflows matching :attr:`pruning_rule` (their steps
        go with them); returns how many were deleted. Called by the pruner."""
        query, params = compile_rule(self.pruning_rule)
        statement = _sql(chancy).cleanup(query)
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn, conn.cursor() as cursor:
            await cursor.execute(statement, params)
            return int(cursor.rowcount)

    # -- pictures ----------------------------------------------------------------------

    @staticmethod
    def generate_dot(workflow: Workflow, output: TextIO) -> None:
        """Write ``workflow`` as a Graphviz digraph to ``output``.

        Top to bottom, one rounded, filled box per step labelled with its id
        and state (pending light blue, running yellow, succeeded light green,
        failed light pink, anything else light grey), one edge per dependency,
        and the workflow's name and state as the title. Render it with
        ``dot -Tsvg workflow.dot -o workflow.svg``.
        """

        def quote(text: str) -> str:
            return (
                '"'
                + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                + '"'
            )

        state = workflow.state.value
        output.write(f"digraph {quote(workflow.name)} {{\n")
        output.write("    rankdir=TB;\n")
        output.write(f"    label={quote(f'{workflow.name} ({state})')};\n")
        output.write('    labelloc="t";\n')
        output.write('    fontname="Helvetica";\n')
        output.write(
            '    node [shape=box, style="rounded,filled", fontname="Helvetica"];\n'
        )
        for step_id, step in workflow:
            step_state = step.state.value if step.state is not None else "not started"
            colour = _DOT_COLOURS.get(step_state, "lightgrey")
            label = quote(f"{step_id}\n{step_state}")
            output.write(f"    {quote(step_id)} [label={label}, fillcolor={colour}];\n")
        for step_id, step in workflow:
            output.writelines(
                f"    {quote(dependency)} -> {quote(step_id)};\n"
                for dependency in step.dependencies
            )
        output.write("}\n")

    @staticmethod
    def generate_mermaid(workflow: Workflow) -> str:
        """``workflow`` as a Mermaid flowchart (top-down), one class per state.

        Paste it into Markdown that renders Mermaid (GitHub, GitLab, mkdocs)
        inside a fenced code block whose language is ``mermaid``.
        """

        def label(text: str) -> str:
            return (
                text.replace("&", "#amp;")
                .replace('"', "#quot;")
                .replace("<", "#lt;")
                .replace(">", "#gt;")
            )

        node_ids = {
            step_id: f"s{index}" for index, step_id in enumerate(workflow.steps)
        }
        title = f"{workflow.name} ({workflow.state.value})"
        lines = ["---", f"title: {json.dumps(title)}", "---", "flowchart TD"]
        for step_id, step in workflow:
            step_state = step.state.value if step.state is not None else "not started"
            css = step_state if step_state in _MERMAID_CLASSES else "other"
            lines.append(
                f'    {node_ids[step_id]}["{label(step_id)}<br/>{label(step_state)}"]:::{css}'
            )
        for step_id, step in workflow:
            for dependency in step.dependencies:
                source = node_ids.get(dependency)
                if source is None:
                    source = f'missing{len(node_ids)}["{label(dependency)}"]'
                lines.append(f"    {source} --> {node_ids[step_id]}")
        for css, style in _MERMAID_CLASSES.items():
            lines.append(f"    classDef {css} {style}")
        return "\n".join(lines) + "\n"
