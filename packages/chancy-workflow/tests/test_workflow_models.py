"""Workflow data types, validation, pictures and the plugin's identity (no database)."""

from __future__ import annotations

import io
import tomllib
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from chancy import Chancy, Job, QueuedJob, job
from chancy.errors import PluginDependencyError
from chancy.plugin import PluginScope
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.workflow import (
    CycleError,
    DuplicateStepError,
    EmptyWorkflowError,
    InvalidStepError,
    Sequence,
    UnknownDependencyError,
    Workflow,
    WorkflowPlugin,
    WorkflowRules,
    WorkflowStep,
    WorkflowValidationError,
    hooks,
)
from chancy.rule import compile_rule

PACKAGE = Path(__file__).resolve().parents[1]


@job(queue="decorated", priority=3)
def decorated() -> None:
    """A job template made with the decorator."""


def j(name: str = "f", **kwargs: object) -> Job:
    return Job(func=f"tests.jobs.{name}", kwargs=kwargs)


# -- building -----------------------------------------------------------------


def test_defaults_match_the_spec() -> None:
    wf = Workflow("w")
    assert wf.steps == {} and wf.state is Workflow.State.PENDING
    assert uuid.UUID(wf.id).version == 7
    assert wf.created_at is None and wf.updated_at is None
    assert Workflow("w").id != wf.id
    assert {s.value for s in Workflow.State} == {
        "pending", "running", "completed", "failed", "cancelled",
    }  # fmt: skip
    step = WorkflowStep(j(), "a")
    assert step.dependencies == [] and step.state is QueuedJob.State.PENDING
    assert step.job_id is None


def test_add_is_chainable_and_converts_decorated_functions() -> None:
    wf = Workflow("w").add("a", decorated).add("b", j(), ["a"])
    assert isinstance(wf, Workflow)
    assert wf["a"].job == decorated.job
    assert wf["a"].job.queue == "decorated"
    assert wf["b"].dependencies == ["a"]
    assert WorkflowStep(decorated, "x").job == decorated.job  # type: ignore[arg-type]


def test_container_protocol() -> None:
    wf = Workflow("w").add("a", j()).add("b", j(), ["a"])
    assert len(wf) == 2
    assert [step_id for step_id, _ in wf] == ["a", "b"]
    assert all(isinstance(step, WorkflowStep) for _, step in wf)
    assert "a" in wf and "zzz" not in wf
    wf += WorkflowStep(j(), "c", ["b"])
    assert wf["c"].dependencies == ["b"]
    del wf["c"]
    assert len(wf) == 2
    with pytest.raises(KeyError):
        wf["c"]
    with pytest.raises(KeyError):
        del wf["c"]


def test_add_group_gives_each_step_the_same_dependencies() -> None:
    wf = Workflow("w").add("root", j())
    wf.add_group([("x", j()), ("y", j()), ("z", j())], dependencies=["root"])
    assert [wf[s].dependencies for s in "xyz"] == [["root"]] * 3
    wf["x"].dependencies.append("y")
    assert wf["z"].dependencies == ["root"]  # not one shared list


def test_duplicate_step_ids_are_refused_at_once() -> None:
    wf = Workflow("w").add("a", j())
    with pytest.raises(DuplicateStepError, match="'a'") as info:
        wf.add("a", j("other"))
    assert info.value.step_ids == ["a"]
    assert wf["a"].job.func == "tests.jobs.f"  # unchanged
    with pytest.raises(DuplicateStepError):
        wf += WorkflowStep(j(), "a")
    with pytest.raises(DuplicateStepError, match="'b'"):
        wf.add_group([("b", j()), ("c", j()), ("b", j())])
    assert list(wf.steps) == ["a"]  # all or nothing
    with pytest.raises(DuplicateStepError):
        wf.add_group([("d", j()), ("a", j())])
    assert list(wf.steps) == ["a"]
    assert issubclass(DuplicateStepError, WorkflowValidationError)
    assert issubclass(WorkflowValidationError, ValueError)


def test_state_helpers() -> None:
    wf = Workflow("w").add("a", j()).add("b", j()).add("c", j())
    wf["b"].state = QueuedJob.State.SUCCEEDED
    wf["c"].state = None
    assert {k: [s.step_id for s in v] for k, v in wf.steps_by_state.items()} == {
        QueuedJob.State.PENDING: ["a"],
        QueuedJob.State.SUCCEEDED: ["b"],
        None: ["c"],
    }
    assert not wf.is_complete and not wf.is_running
    wf.state = Workflow.State.RUNNING
    assert wf.is_running and not wf.is_complete
    for state in ("completed", "failed", "cancelled"):
        wf.state = Workflow.State(state)
        assert wf.is_complete and not wf.is_running


# -- validation -----------------------------------------------------------------


def test_an_empty_workflow_is_invalid() -> None:
    with pytest.raises(EmptyWorkflowError, match="no steps"):
        Workflow("empty").validate()


def test_unknown_dependencies_are_reported_by_step() -> None:
    wf = Workflow("w").add("a", j(), ["nope"]).add("b", j(), ["a", "missing", "gone"])
    with pytest.raises(UnknownDependencyError) as info:
        wf.validate()
    assert info.value.missing == {"a": ["nope"], "b": ["missing", "gone"]}
    assert "'missing'" in str(info.value)


def test_a_deleted_step_leaves_a_dangling_dependency() -> None:
    wf = Workflow("w").add("a", j()).add("b", j(), ["a"])
    del wf["a"]
    with pytest.raises(UnknownDependencyError):
        wf.validate()


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ({"a": ["a"]}, ["a", "a"]),
        ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
        (
            {"r": [], "a": ["r", "c"], "b": ["a"], "c": ["b"], "z": ["c"]},
            ["a", "c", "b", "a"],
        ),
    ],
)
def test_cycles_are_reported_with_their_steps(
    edges: dict[str, list[str]], cycle: list[str]
) -> None:
    wf = Workflow("w")
    for step_id, deps in edges.items():
        wf.add(step_id, j(), deps)
    with pytest.raises(CycleError) as info:
        wf.validate()
    assert info.value.cycle == cycle
    assert " -> ".join(cycle) in str(info.value)


def test_validation_scales_to_deep_graphs_without_recursion() -> None:
    wf = Workflow("deep")
    for i in range(5000):
        wf.add(f"s{i}", j(), [f"s{i - 1}"] if i else None)
    wf.validate()
    wf["s0"].dependencies.append("s4999")
    with pytest.raises(CycleError) as info:
        wf.validate()
    assert len(info.value.cycle) == 5001


@pytest.mark.parametrize(
    ("step_job", "message"),
    [
        (j(when=object()), "kwargs are not JSON-serialisable"),
        (j(x=float("nan")), "kwargs are not JSON-serialisable"),
        (j().with_meta({"k": {1, 2}}), "meta are not JSON-serialisable"),
        (Job(func="nodots"), "import path"),
        (j().with_queue(""), "queue"),
        (j().with_max_attempts(0), "max_attempts"),
        (j().with_priority("high"), "priority"),  # type: ignore[arg-type]
    ],
)
def test_jobs_that_cannot_be_stored_are_refused(step_job: Job, message: str) -> None:
    wf = Workflow("w").add("ok", j()).add("bad", step_job, ["ok"])
    with pytest.raises(InvalidStepError, match=message) as info:
        wf.validate()
    assert "'bad'" in str(info.value)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_steps_must_be_stored_under_their_own_id() -> None:
    wf = Workflow("w").add("a", j())
    wf.steps["b"] = WorkflowStep(j(), "a")
    with pytest.raises(DuplicateStepError, match="stored under 'b'"):
        wf.validate()


def test_workflow_ids_must_be_uuids() -> None:
    wf = Workflow("w", id="not-a-uuid").add("a", j())
    with pytest.raises(InvalidStepError, match="UUID"):
        wf.validate()


def test_not_a_job_is_refused_when_the_step_is_made() -> None:
    with pytest.raises(TypeError):
        Workflow("w").add("a", "tests.jobs.f")  # type: ignore[arg-type]


# -- sequence -------------------------------------------------------------------------


def test_a_sequence_is_a_chain_of_steps() -> None:
    seq = Sequence("s", [j("a"), decorated]).add(j("c"))
    assert len(seq) == 3
    wf = seq.to_workflow()
    assert wf.name == "s"
    assert [(sid, step.dependencies) for sid, step in wf] == [
        ("step_0", []),
        ("step_1", ["step_0"]),
        ("step_2", ["step_1"]),
    ]
    assert wf["step_1"].job == decorated.job
    with pytest.raises(EmptyWorkflowError):
        Sequence("empty").to_workflow().validate()


# -- pictures --------------------------------------------------------------------------


def _pictured() -> Workflow:
    wf = (
        Workflow('report "Q3"', state=Workflow.State.RUNNING)
        .add("fetch", j())
        .add_group([("left", j()), ("right", j())], ["fetch"])
        .add("publish", j(), ["left", "right"])
        .add("extra", j())
    )
    wf["fetch"].state = QueuedJob.State.SUCCEEDED
    wf["left"].state = QueuedJob.State.RUNNING
    wf["right"].state = QueuedJob.State.FAILED
    wf["publish"].state = None
    wf["extra"].state = QueuedJob.State.RETRYING
    return wf


def test_dot_output() -> None:
    out = io.StringIO()
    WorkflowPlugin.generate_dot(_pictured(), out)
    dot = out.getvalue()
    assert dot.startswith('digraph "report \\"Q3\\"" {\n') and dot.endswith("}\n")
    assert "rankdir=TB;" in dot
    assert 'label="report \\"Q3\\" (running)";' in dot and 'labelloc="t";' in dot
    assert 'node [shape=box, style="rounded,filled"' in dot
    assert '"fetch" [label="fetch\\nsucceeded", fillcolor=lightgreen];' in dot
    assert '"left" [label="left\\nrunning", fillcolor=yellow];' in dot
    assert '"right" [label="right\\nfailed", fillcolor=lightpink];' in dot
    assert '"publish" [label="publish\\nnot started", fillcolor=lightgrey];' in dot
    assert '"extra" [label="extra\\nretrying", fillcolor=lightgrey];' in dot
    assert dot.count(" -> ") == 4
    for edge in ('"fetch" -> "left"', '"fetch" -> "right"', '"left" -> "publish"',
                 '"right" -> "publish"'):  # fmt: skip
        assert edge in dot
    pending = io.StringIO()
    WorkflowPlugin.generate_dot(Workflow("p").add("a", j()), pending)
    assert '"a" [label="a\\npending", fillcolor=lightblue];' in pending.getvalue()


def test_mermaid_output() -> None:
    text = WorkflowPlugin.generate_mermaid(_pictured())
    lines = text.splitlines()
    assert lines[:4] == [
        "---",
        'title: "report \\"Q3\\" (running)"',
        "---",
        "flowchart TD",
    ]
    assert '    s0["fetch<br/>succeeded"]:::succeeded' in lines
    assert '    s1["left<br/>running"]:::running' in lines
    assert '    s2["right<br/>failed"]:::failed' in lines
    assert '    s3["publish<br/>not started"]:::other' in lines
    assert '    s4["extra<br/>retrying"]:::other' in lines
    assert [line for line in lines if "-->" in line] == [
        "    s0 --> s1", "    s0 --> s2", "    s1 --> s3", "    s2 --> s3",
    ]  # fmt: skip
    for css in ("pending", "running", "succeeded", "failed", "other"):
        assert any(line.startswith(f"    classDef {css} fill:") for line in lines)
    odd = Workflow("w").add('say "<hi>"', j())
    assert 's0["say #quot;#lt;hi#gt;#quot;<br/>pending"]:::pending' in (
        WorkflowPlugin.generate_mermaid(odd)
    )


# -- the plugin -------------------------------------------------------------------------


def test_plugin_identity() -> None:
    plugin = WorkflowPlugin()
    assert WorkflowPlugin.get_identifier() == "chancy.workflow_plugin"
    assert WorkflowPlugin.is_default() is True
    assert WorkflowPlugin.get_scope() is PluginScope.LEADER
    assert WorkflowPlugin.get_dependencies() == ["chancy.leadership"]
    assert WorkflowPlugin.get_distribution() == "chancy-workflow"
    assert plugin.get_tables() == ["workflows", "workflow_steps"]
    assert plugin.migrate_key() == "workflow"
    assert plugin.migrate_package() == "chancy.plugins.workflow.migrations"
    assert (plugin.polling_interval, plugin.max_workflows_per_run) == (30, 1000)
    query, params = compile_rule(plugin.pruning_rule)
    assert params == [86400]
    assert "created_at" in query.as_string()
    assert WorkflowPlugin.Rules is WorkflowRules


def test_plugin_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="polling_interval"):
        WorkflowPlugin(polling_interval=0)
    with pytest.raises(ValueError, match="max_workflows_per_run"):
        WorkflowPlugin(max_workflows_per_run=0)
    with pytest.raises(TypeError):
        WorkflowPlugin(pruning_rule=WorkflowRules.Age())  # a column, not a condition
    rule = (WorkflowRules.Age() > timedelta(hours=1)) & (
        WorkflowRules.State() == Workflow.State.COMPLETED
    )
    _, params = compile_rule(WorkflowPlugin(pruning_rule=rule).pruning_rule)
    assert params == [3600.0, "completed"]


def test_a_missing_leadership_plugin_is_named_at_start_up() -> None:
    app = Chancy(
        "postgresql:///unused", plugins=[WorkflowPlugin()], no_default_plugins=True
    )
    with pytest.raises(PluginDependencyError, match="chancy-leadership"):
        app.check_plugin_dependencies()
    app = Chancy(
        "postgresql:///unused",
        plugins=[ImmediateLeadership(), WorkflowPlugin()],
        no_default_plugins=True,
    )
    app.check_plugin_dependencies()


def test_the_entry_point_registers_the_plugin() -> None:
    assert hooks.chancy_register_plugins() == [WorkflowPlugin]
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert project["project"]["name"] == "chancy-workflow"
    assert project["project"]["entry-points"]["chancy"] == {
        "workflow": "chancy.plugins.workflow.hooks"
    }
    assert project["project"]["dependencies"] == [
        "chancy-core~=0.1.0",
        "chancy-leadership~=0.1.0",
    ]
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "src/chancy"
    ]


def test_the_distribution_ships_only_its_namespace_portion() -> None:
    src = PACKAGE / "src" / "chancy"
    assert not (src / "__init__.py").exists()
    assert not (src / "plugins" / "__init__.py").exists()
    assert (src / "plugins" / "workflow" / "py.typed").exists()
    assert (src / "plugins" / "workflow" / "migrations" / "v0001_workflows.py").exists()
