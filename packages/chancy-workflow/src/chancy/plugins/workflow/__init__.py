"""Workflows: jobs that run when the jobs they depend on have succeeded.

A :class:`Workflow` is a directed acyclic graph of steps; each step is a job
plus the ids of the steps it waits for. :class:`WorkflowPlugin` (enabled by
default when ``chancy-workflow`` is installed; it needs ``chancy-leadership``)
pushes each step's job exactly once, as soon as all its dependencies have
succeeded::

    from chancy import Chancy, Queue, Worker, job
    from chancy.plugins.workflow import Sequence, Workflow, WorkflowPlugin

    @job(queue="default")
    def fetch(): ...

    @job(queue="default")
    def analyse(*, part: int): ...

    @job(queue="default")
    def publish(): ...

    workflow = (
        Workflow("nightly-report")
        .add("fetch", fetch)
        .add_group(
            [(f"analyse_{i}", analyse.job.with_kwargs(part=i)) for i in range(4)],
            dependencies=["fetch"],
        )  # fan-out
        .add("publish", publish, dependencies=[f"analyse_{i}" for i in range(4)])  # fan-in
    )
    workflow_id = await WorkflowPlugin.push(chancy, workflow)
    done = await WorkflowPlugin.wait_for_workflow(chancy, workflow_id, timeout=600)
    assert done.state is Workflow.State.COMPLETED

    # Jobs one after the other:
    await Sequence("import", [download, parse, load]).push(chancy)

Workflows are validated before anything is written: an empty workflow, a
dependency on an unknown step, a cycle, a duplicated step id or a job that
cannot be stored raise a :class:`WorkflowValidationError` subclass.

A workflow is ``pending`` until its first job exists, then ``running``, then
``completed`` (every step succeeded), ``failed`` (a step's job failed after its
retries; steps depending on it never get a job) or ``cancelled``
(:meth:`WorkflowPlugin.cancel_workflow`).
"""

from __future__ import annotations

from chancy.plugins.workflow.models import (
    CycleError,
    DuplicateStepError,
    EmptyWorkflowError,
    InvalidStepError,
    Sequence,
    UnknownDependencyError,
    Workflow,
    WorkflowStep,
    WorkflowValidationError,
)
from chancy.plugins.workflow.plugin import WorkflowPlugin
from chancy.plugins.workflow.rules import WorkflowRules

__all__ = [
    "CycleError",
    "DuplicateStepError",
    "EmptyWorkflowError",
    "InvalidStepError",
    "Sequence",
    "UnknownDependencyError",
    "Workflow",
    "WorkflowPlugin",
    "WorkflowRules",
    "WorkflowStep",
    "WorkflowValidationError",
]
