"""The Django app of the workflow plugin: the models read what
``WorkflowPlugin.push`` and the plugin's passes write; the admin shows a
workflow with its steps inline."""

from __future__ import annotations

import uuid

import pytest

pytest.importorskip("django")

from asgiref.sync import sync_to_async

from chancy import Chancy, Job
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.workflow import Workflow, WorkflowPlugin

uses_workflows = pytest.mark.parametrize(
    "chancy",
    [
        {
            "plugins": [ImmediateLeadership(), WorkflowPlugin(polling_interval=60)],
            "no_default_plugins": True,
        }
    ],
    indirect=True,
)


def step(name: str) -> Job:
    return Job(func=f"app.tasks.{name}", queue="wf_unserved")


async def push_and_start(chancy: Chancy) -> str:
    """A two-step workflow whose first step's job has been pushed."""
    workflow = (
        Workflow("nightly")
        .add("fetch", step("fetch"))
        .add("publish", step("publish"), dependencies=["fetch"])
    )
    workflow_id = await WorkflowPlugin.push(chancy, workflow)
    plugin = next(p for p in chancy.plugins.values() if isinstance(p, WorkflowPlugin))
    await plugin.run_once(chancy)
    return workflow_id


@uses_workflows
async def test_orm_reads_workflows_and_steps(chancy: Chancy, django_orm: None) -> None:
    from chancy.plugins.workflow.django.models import Workflow as WorkflowModel

    pending = await WorkflowPlugin.push(chancy, Workflow("later").add("a", step("a")))
    row = await WorkflowModel.objects.aget(id=pending)
    assert row.id == uuid.UUID(pending)
    assert (row.name, row.state) == ("later", WorkflowModel.State.PENDING)
    [only] = [s async for s in row.steps.all()]
    assert (only.step_id, only.dependencies, only.func) == ("a", [], "app.tasks.a")
    assert only.job_id is None and only.state is None
    assert only.get_job().func == "app.tasks.a"

    workflow_id = await push_and_start(chancy)
    row = await WorkflowModel.objects.aget(id=workflow_id)
    assert row.state == WorkflowModel.State.RUNNING == "running"
    steps = {s.step_id: s async for s in row.steps.all()}
    assert set(steps) == {"fetch", "publish"}
    assert steps["publish"].dependencies == ["fetch"]
    assert steps["publish"].job_id is None
    fetch = steps["fetch"]
    assert fetch.state == "pending"
    assert fetch.job_data["f"] == "app.tasks.fetch"
    assert fetch.workflow_id == row.id

    stored = await WorkflowPlugin.fetch_workflow(chancy, workflow_id)
    assert stored is not None
    assert fetch.job_id == uuid.UUID(str(stored.steps["fetch"].job_id))
    assert row.created_at == stored.created_at

    # The step's job, through the core app's model.
    from chancy.contrib.django.models import Job as JobModel

    job = await JobModel.objects.aget(id=fetch.job_id)
    assert job.func == "app.tasks.fetch"
    assert job.meta["workflow_id"] == workflow_id


@uses_workflows
async def test_models_map_every_column_of_the_tables(
    chancy: Chancy, django_orm: None
) -> None:
    from django.db import connection

    from chancy.plugins.workflow.django.models import Workflow as W
    from chancy.plugins.workflow.django.models import WorkflowStep

    def table_columns(table: str) -> set[str]:
        with connection.cursor() as cursor:
            description = connection.introspection.get_table_description(cursor, table)
        return {column.name for column in description}

    for model, table in ((W, "workflows"), (WorkflowStep, "workflow_steps")):
        assert model._meta.db_table == f"{chancy.prefix}{table}"
        assert model._meta.managed is False
        fields = {field.column for field in model._meta.concrete_fields}
        assert fields == await sync_to_async(table_columns)(model._meta.db_table)


def test_app_and_admin_registration(django_settings: str) -> None:
    from django.apps import apps
    from django.contrib import admin

    from chancy.plugins.workflow.django.admin import WorkflowAdmin, WorkflowStepInline
    from chancy.plugins.workflow.django.models import Workflow as W
    from chancy.plugins.workflow.django.models import WorkflowStep

    config = apps.get_app_config("chancy_workflow")
    assert config.name == "chancy.plugins.workflow.django"
    assert set(config.get_models()) == {W, WorkflowStep}
    assert admin.site.is_registered(W)
    model_admin = admin.site._registry[W]
    assert type(model_admin) is WorkflowAdmin
    assert WorkflowStepInline in model_admin.inlines
    assert model_admin.check() == []


@uses_workflows
async def test_admin_shows_a_workflow_with_its_steps(
    chancy: Chancy, django_superuser: str, django_orm: None
) -> None:
    workflow_id = await push_and_start(chancy)
    await WorkflowPlugin.push(chancy, Workflow("other").add("x", step("x")))
    stored = await WorkflowPlugin.fetch_workflow(chancy, workflow_id)
    assert stored is not None
    job_id = stored.steps["fetch"].job_id

    def browse() -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        client = Client()
        client.force_login(get_user_model().objects.get(username=django_superuser))

        listing = client.get("/admin/chancy_workflow/workflow/")
        assert listing.status_code == 200
        assert b"nightly" in listing.content and b"other" in listing.content
        by_id = client.get("/admin/chancy_workflow/workflow/", {"q": workflow_id})
        assert b"nightly" in by_id.content
        assert b">other<" not in by_id.content
        by_state = client.get(
            "/admin/chancy_workflow/workflow/", {"state__exact": "running"}
        )
        assert b"nightly" in by_state.content
        assert b">other<" not in by_state.content
        assert client.get("/admin/chancy_workflow/workflow/add/").status_code == 403

        page = client.get(f"/admin/chancy_workflow/workflow/{workflow_id}/change/")
        assert page.status_code == 200
        for text in ("fetch", "publish", "app.tasks.fetch", "app.tasks.publish"):
            assert text.encode() in page.content, text
        # The step's job links to its page in the core app's admin.
        assert f"/admin/chancy/job/{job_id}/change/".encode() in page.content

    await sync_to_async(browse)()
