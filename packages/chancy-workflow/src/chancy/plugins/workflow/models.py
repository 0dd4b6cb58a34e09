"""The workflow data types: :class:`Workflow`, :class:`WorkflowStep`,
:class:`Sequence`, and the validation errors raised before anything is written."""

from __future__ import annotations

import enum
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chancy.job import IsAJob, Job, QueuedJob, as_job
from chancy.utils import uuid7

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = [
    "CycleError",
    "DuplicateStepError",
    "EmptyWorkflowError",
    "InvalidStepError",
    "Sequence",
    "UnknownDependencyError",
    "Workflow",
    "WorkflowStep",
    "WorkflowValidationError",
]


# ---------------------------------------------------------------------------
# Validation errors
# ---------------------------------------------------------------------------


class WorkflowValidationError(ValueError):
    """A workflow cannot be pushed as it is; nothing was written."""


class EmptyWorkflowError(WorkflowValidationError):
    """The workflow has no steps."""


class DuplicateStepError(WorkflowValidationError):
    """A step id is used twice.

    :ivar step_ids: the ids given more than once.
    """

    def __init__(self, message: str, step_ids: list[str]) -> None:
        super().__init__(message)
        self.step_ids = step_ids


class UnknownDependencyError(WorkflowValidationError):
    """A step depends on a step id the workflow does not have.

    :ivar missing: step id → the unknown ids it depends on.
    """

    def __init__(self, message: str, missing: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.missing = missing


class CycleError(WorkflowValidationError):
    """The dependencies form a cycle, so some steps could never run.

    :ivar cycle: the steps of one cycle, first step repeated at the end
        (``["a", "b", "a"]``: ``a`` depends on ``b``, which depends on ``a``).
    """

    def __init__(self, message: str, cycle: list[str]) -> None:
        super().__init__(message)
        self.cycle = cycle


class InvalidStepError(WorkflowValidationError, TypeError):
    """A step, or the job of a step, cannot be stored (bad step id, arguments
    that are not JSON-serialisable, invalid job settings…).

    Also a :class:`TypeError`, like the error ``Chancy.push`` raises for a job
    it cannot store.
    """


# ---------------------------------------------------------------------------
# Steps and workflows
# ---------------------------------------------------------------------------


@dataclass
class WorkflowStep:
    """One step of a workflow: a job and the steps it waits for.

    ``job`` may be a :class:`~chancy.Job` or a function decorated with
    :func:`chancy.job` (converted to its job). ``state`` is the state of the
    step's job (``None`` while no job exists for a stored step) and ``job_id``
    the id of that job, set once the plugin has pushed it.
    """

    job: Job
    step_id: str
    dependencies: list[str] = field(default_factory=list)
    state: QueuedJob.State | None = QueuedJob.State.PENDING
    job_id: str | None = None

    def __post_init__(self) -> None:
        self.job = as_job(self.job)
        self.dependencies = list(self.dependencies or [])
        if self.state is not None and not isinstance(self.state, QueuedJob.State):
            self.state = QueuedJob.State(self.state)
        if self.job_id is not None:
            self.job_id = str(self.job_id)


def _new_id() -> str:
    return str(uuid7())


@dataclass
class Workflow:
    """A directed acyclic graph of jobs: each step runs once every step it
    depends on has succeeded.

    ::

        workflow = (
            Workflow("report")
            .add("fetch", fetch_data)
            .add_group([("left", analyse.job.with_kwargs(side="l")),
                        ("right", analyse.job.with_kwargs(side="r"))],
                       dependencies=["fetch"])
            .add("publish", publish, dependencies=["left", "right"])
        )
        workflow_id = await WorkflowPlugin.push(chancy, workflow)

    Iterating gives ``(step_id, step)`` pairs; ``workflow[step_id]`` is a step
    and ``del workflow[step_id]`` removes one; ``workflow += WorkflowStep(...)``
    adds one.
    """

    class State(str, enum.Enum):
        #: Stored; no step has a job yet.
        PENDING = "pending"
        #: At least one step has a job and the workflow has not finished.
        RUNNING = "running"
        #: Every step succeeded.
        COMPLETED = "completed"
        #: A step failed; steps depending on it never run.
        FAILED = "failed"
        #: Cancelled with :meth:`WorkflowPlugin.cancel_workflow`.
        CANCELLED = "cancelled"

    name: str
    steps: dict[str, WorkflowStep] = field(default_factory=dict)
    state: Workflow.State = State.PENDING
    id: str = field(default_factory=_new_id)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.state, Workflow.State):
            self.state = Workflow.State(self.state)
        self.id = str(self.id)

    # -- building -------------------------------------------------------------

    def _check_new(self, step_ids: list[str]) -> None:
        seen: set[str] = set()
        duplicates: list[str] = []
        for step_id in step_ids:
            if (step_id in self.steps or step_id in seen) and step_id not in duplicates:
                duplicates.append(step_id)
            seen.add(step_id)
        if duplicates:
            raise DuplicateStepError(
                f"workflow {self.name!r} already has a step with the id(s) "
                f"{', '.join(map(repr, duplicates))}; step ids must be unique",
                duplicates,
            )

    def add(
        self,
        step_id: str,
        job: Job | IsAJob,
        dependencies: list[str] | None = None,
    ) -> Workflow:
        """Add a step running ``job`` after every step in ``dependencies``.

        Returns the workflow, so calls can be chained.

        :raises DuplicateStepError: the workflow already has a step ``step_id``.
        """
        self._check_new([step_id])
        self.steps[step_id] = WorkflowStep(
            job=as_job(job), step_id=step_id, dependencies=list(dependencies or [])
        )
        return self

    def add_group(
        self,
        steps: list[tuple[str, Job | IsAJob]],
        dependencies: list[str] | None = None,
    ) -> Workflow:
        """Add several steps with the same dependencies (a fan-out).

        Either every step is added or, if one id is already used (or given
        twice), none is.

        :raises DuplicateStepError: a step id is used twice.
        """
        self._check_new([step_id for step_id, _ in steps])
        new = {
            step_id: WorkflowStep(
                job=as_job(job), step_id=step_id, dependencies=list(dependencies or [])
            )
            for step_id, job in steps
        }
        self.steps.update(new)
        return self

    def __iadd__(self, step: WorkflowStep) -> Workflow:
        if not isinstance(step, WorkflowStep):
            return NotImplemented
        self._check_new([step.step_id])
        self.steps[step.step_id] = step
        return self

    # -- container protocol -----------------------------------------------------

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[str, WorkflowStep]]:
        return iter(list(self.steps.items()))

    def __getitem__(self, step_id: str) -> WorkflowStep:
        return self.steps[step_id]

    def __delitem__(self, step_id: str) -> None:
        del self.steps[step_id]

    def __contains__(self, step_id: object) -> bool:
        return step_id in self.steps

    # -- state ---------------------------------------------------------------------

    @property
    def is_complete(self) -> bool:
        """Whether the workflow has finished: completed, failed or cancelled."""
        return self.state in _FINISHED

    @property
    def is_running(self) -> bool:
        return self.state is Workflow.State.RUNNING

    @property
    def steps_by_state(self) -> dict[QueuedJob.State | None, list[WorkflowStep]]:
        """Steps grouped by the state of their job (``None``: no job yet)."""
        grouped: dict[QueuedJob.State | None, list[WorkflowStep]] = defaultdict(list)
        for step in self.steps.values():
            grouped[step.state].append(step)
        return dict(grouped)

    # -- validation -------------------------------------------------------------------

    def validate(self) -> None:
        """Check that the workflow can be pushed; called by every push.

        :raises EmptyWorkflowError: no steps.
        :raises InvalidStepError: a bad step id, or a job that cannot be stored.
        :raises DuplicateStepError: two steps share an id.
        :raises UnknownDependencyError: a dependency names no step.
        :raises CycleError: the dependencies form a cycle.
        """
        _prepare(self)


_FINISHED = frozenset(
    {Workflow.State.COMPLETED, Workflow.State.FAILED, Workflow.State.CANCELLED}
)


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def _check_job(step_id: str, job: Job) -> str:
    """The packed job as JSON; :class:`InvalidStepError` if it cannot be stored."""

    def bad(reason: str) -> InvalidStepError:
        return InvalidStepError(
            f"the job of step {step_id!r} cannot be stored: {reason}"
        )

    func = job.func
    if not isinstance(func, str) or "." not in func:
        raise bad(f"func must be an import path like 'module.function', got {func!r}")
    if not isinstance(job.queue, str) or not job.queue:
        raise bad(f"queue must be a non-empty string, got {job.queue!r}")
    if not isinstance(job.kwargs, dict) or not all(
        isinstance(k, str) for k in job.kwargs
    ):
        raise bad("kwargs must be a dict with string keys")
    if not isinstance(job.priority, int) or isinstance(job.priority, bool):
        raise bad(f"priority must be an int, got {job.priority!r}")
    if (
        not isinstance(job.max_attempts, int)
        or isinstance(job.max_attempts, bool)
        or job.max_attempts < 1
    ):
        raise bad(f"max_attempts must be an int >= 1, got {job.max_attempts!r}")
    if job.unique_key is not None and not isinstance(job.unique_key, str):
        raise bad("unique_key must be a string or None")
    if not isinstance(job.meta, dict):
        raise bad("meta must be a dict")
    if not isinstance(job.scheduled_at, datetime):
        raise bad("scheduled_at must be a datetime")
    for what, value in (("kwargs", job.kwargs), ("meta", job.meta)):
        try:
            _json(value)
        except (TypeError, ValueError) as exc:
            raise bad(f"its {what} are not JSON-serialisable ({exc})") from None
    try:
        return _json(job.pack())
    except (TypeError, ValueError, AttributeError) as exc:
        raise bad(str(exc)) from None


def _find_cycle(steps: dict[str, WorkflowStep]) -> list[str] | None:
    """One cycle of the dependency graph (first node repeated last), or ``None``."""
    # Kahn's algorithm: peel off steps whose dependencies are all peeled.
    waiting = {sid: len(set(step.dependencies)) for sid, step in steps.items()}
    dependants: dict[str, list[str]] = defaultdict(list)
    for sid, step in steps.items():
        for dep in set(step.dependencies):
            dependants[dep].append(sid)
    ready = [sid for sid, n in waiting.items() if n == 0]
    while ready:
        sid = ready.pop()
        del waiting[sid]
        for child in dependants[sid]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    if not waiting:
        return None
    # Every remaining step depends on another remaining step: walk until a repeat.
    start = min(waiting)
    path: list[str] = []
    index: dict[str, int] = {}
    node = start
    while node not in index:
        index[node] = len(path)
        path.append(node)
        node = next(d for d in steps[node].dependencies if d in waiting)
    cycle = path[index[node] :]
    return [*cycle, node]


def _prepare(
    workflow: Workflow,
) -> tuple[uuid.UUID, list[tuple[str, str, str, str | None]]]:
    """Validate ``workflow`` and serialise its steps.

    Returns the workflow's UUID and ``(step_id, job JSON, dependencies JSON,
    job_id)`` for each step, in order.
    """
    name = workflow.name
    if not isinstance(name, str) or not name:
        raise InvalidStepError(f"a workflow needs a non-empty name, got {name!r}")
    if "\x00" in name:
        raise InvalidStepError(
            f"a workflow name must not contain NUL characters (\\x00), got {name!r}"
        )
    try:
        workflow_uuid = uuid.UUID(str(workflow.id))
    except ValueError:
        raise InvalidStepError(
            f"workflow {name!r}: its id must be a UUID, got {workflow.id!r}"
        ) from None
    if not workflow.steps:
        raise EmptyWorkflowError(f"workflow {name!r} has no steps")
    rows: list[tuple[str, str, str, str | None]] = []
    seen: set[str] = set()
    for key, step in workflow.steps.items():
        if not isinstance(step, WorkflowStep):
            raise InvalidStepError(
                f"workflow {name!r}: step {key!r} is a {type(step).__name__}, "
                "not a WorkflowStep"
            )
        step_id = step.step_id
        if not isinstance(step_id, str) or not step_id or "\x00" in step_id:
            raise InvalidStepError(
                f"workflow {name!r}: step ids must be non-empty strings without NUL"
                f" characters, got {step_id!r}"
            )
        if step_id != key:
            raise DuplicateStepError(
                f"workflow {name!r}: the step stored under {key!r} has the id "
                f"{step_id!r}; add steps with add(), add_group() or +=",
                [step_id],
            )
        if step_id in seen:  # pragma: no cover - dict keys are unique
            raise DuplicateStepError(f"duplicate step id {step_id!r}", [step_id])
        seen.add(step_id)
        if not isinstance(step.dependencies, list) or not all(
            isinstance(d, str) for d in step.dependencies
        ):
            raise InvalidStepError(
                f"workflow {name!r}: the dependencies of step {step_id!r} must be "
                "a list of step ids"
            )
        job = step.job if isinstance(step.job, Job) else None
        if job is None:
            raise InvalidStepError(
                f"workflow {name!r}: step {step_id!r} has no job ({step.job!r})"
            )
        rows.append(
            (
                step_id,
                _check_job(step_id, job),
                _json(step.dependencies),
                None if step.job_id is None else str(uuid.UUID(str(step.job_id))),
            )
        )
    missing = {
        sid: [d for d in step.dependencies if d not in workflow.steps]
        for sid, step in workflow.steps.items()
    }
    missing = {sid: deps for sid, deps in missing.items() if deps}
    if missing:
        detail = "; ".join(
            f"{sid!r} depends on {', '.join(map(repr, deps))}"
            for sid, deps in missing.items()
        )
        raise UnknownDependencyError(
            f"workflow {name!r} has dependencies on unknown steps: {detail}", missing
        )
    cycle = _find_cycle(workflow.steps)
    if cycle is not None:
        raise CycleError(
            f"workflow {name!r} has a dependency cycle: {' -> '.join(cycle)} "
            "(each step waits for the next)",
            cycle,
        )
    return workflow_uuid, rows


# ---------------------------------------------------------------------------
# Sequence
# ---------------------------------------------------------------------------


class Sequence:
    """Jobs that run one after the other: a workflow whose steps ``step_0``,
    ``step_1``, … each depend on the previous one.

    ::

        workflow_id = await Sequence("import", [download, parse, load]).push(chancy)
    """

    def __init__(self, name: str, jobs: list[Job | IsAJob] | None = None) -> None:
        self.name = name
        self.jobs: list[Job] = [as_job(job) for job in jobs or []]

    def __repr__(self) -> str:
        return f"<Sequence {self.name!r} ({len(self.jobs)} jobs)>"

    def __len__(self) -> int:
        return len(self.jobs)

    def add(self, job: Job | IsAJob) -> Sequence:
        """Append a job; returns the sequence, so calls can be chained."""
        self.jobs.append(as_job(job))
        return self

    def to_workflow(self) -> Workflow:
        """The equivalent :class:`Workflow`."""
        workflow = Workflow(self.name)
        for index, job in enumerate(self.jobs):
            workflow.add(f"step_{index}", job, [f"step_{index - 1}"] if index else None)
        return workflow

    async def push(self, chancy: Chancy) -> str:
        """Push the sequence as a workflow; returns the workflow's id.

        :raises EmptyWorkflowError: the sequence has no jobs.
        """
        from chancy.plugins.workflow.plugin import WorkflowPlugin

        return await WorkflowPlugin.push(chancy, self.to_workflow())
