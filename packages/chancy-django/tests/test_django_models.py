"""The Django models read what Chancy writes, column for column."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytest.importorskip("django")

from asgiref.sync import sync_to_async

from chancy import Chancy, Job, Worker


def columns_of(table: str) -> set[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        return {
            column.name
            for column in connection.introspection.get_table_description(cursor, table)
        }


async def test_orm_reads_a_pushed_job(chancy: Chancy, django_orm: None) -> None:
    from chancy.contrib.django.models import Job as JobModel

    ref = await chancy.push(
        Job(
            func="app.tasks.send_mail",
            kwargs={"to": "a@example.com", "n": 2},
            meta={"origin": "test"},
            priority=3,
            max_attempts=2,
            unique_key="mail-1",
        )
    )
    row = await JobModel.objects.aget(id=ref.identifier)

    assert row.id == ref.identifier
    assert ref == row.id
    assert row.queue == "default"
    assert row.func == "app.tasks.send_mail"
    assert row.kwargs == {"to": "a@example.com", "n": 2}
    assert row.meta == {"origin": "test"}
    assert row.state == JobModel.State.PENDING == "pending"
    assert (row.priority, row.attempts, row.max_attempts) == (3, 0, 2)
    assert row.unique_key == "mail-1"
    assert row.limits == [] and row.errors == []
    assert row.taken_by is None and row.started_at is None
    assert row.created_at.tzinfo is not None
    assert str(row) == f"app.tasks.send_mail ({ref.identifier})"

    stored = await chancy.get_job(ref)
    assert stored is not None
    assert row.scheduled_at == stored.scheduled_at
    assert await JobModel.objects.filter(queue="default").acount() == 1


async def test_orm_reads_the_worker_and_the_default_queue(
    chancy: Chancy, worker: Worker, django_orm: None
) -> None:
    from chancy.contrib.django.models import Queue
    from chancy.contrib.django.models import Worker as WorkerModel

    await worker.announce()  # the heartbeat loop may not have written it yet
    row = await WorkerModel.objects.aget(worker_id=worker.worker_id)
    assert "*" in row.tags
    assert set(row.tags) == worker.worker_tags()
    assert "default" in row.queues
    assert row.expires_at > row.last_seen
    assert str(row) == worker.worker_id

    default = await Queue.objects.aget(name="default")  # declared by the worker
    assert default.state == Queue.State.ACTIVE == "active"
    assert default.concurrency is None
    assert default.tags == [".*"]
    assert default.executor == Chancy.Executor.Process.value
    assert default.to_chancy() == await chancy.get_queue("default")


async def test_queue_changes_made_through_the_orm_reach_chancy(
    chancy: Chancy, django_orm: None
) -> None:
    from chancy import Queue as ChancyQueue
    from chancy.contrib.django.models import Queue

    await chancy.declare(ChancyQueue("reports", concurrency=2, tags={"reports"}))
    row = await Queue.objects.aget(name="reports")
    assert (row.concurrency, row.tags) == (2, ["reports"])

    row.state = Queue.State.PAUSED
    row.concurrency = 4
    await sync_to_async(row.save)()
    queue = await chancy.get_queue("reports")
    assert queue.state is ChancyQueue.State.PAUSED
    assert queue.concurrency == 4
    assert queue == row.to_chancy()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"polling_interval": 0}, "polling_interval"),
        ({"rate_limit": 5}, "rate_limit_window"),
    ],
)
def test_queue_clean_validates_like_chancy(
    django_settings: str, changes: dict[str, Any], message: str
) -> None:
    from django.core.exceptions import ValidationError

    from chancy.contrib.django.models import Queue

    Queue(name="ok").clean()
    with pytest.raises(ValidationError, match=message):
        Queue(name="bad", **changes).clean()


async def test_models_map_every_column_of_the_tables(
    chancy: Chancy, django_orm: None
) -> None:
    from chancy.contrib.django.models import Job as JobModel
    from chancy.contrib.django.models import Queue
    from chancy.contrib.django.models import Worker as W

    for model, table in ((JobModel, "jobs"), (Queue, "queues"), (W, "workers")):
        assert model._meta.db_table == f"{chancy.prefix}{table}"
        assert model._meta.managed is False
        fields = {field.column for field in model._meta.concrete_fields}
        assert fields == await sync_to_async(columns_of)(model._meta.db_table)


def test_prefix_setting(django_settings: str) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from chancy.contrib.django.conf import db_table, get_prefix

    assert get_prefix() == "chancy_"
    assert db_table("jobs") == "chancy_jobs"
    with override_settings(CHANCY_PREFIX="other_"):
        assert db_table("jobs") == "other_jobs"
    for bad in ("bad-prefix", "", 3, "1abc"):
        with override_settings(CHANCY_PREFIX=bad):
            with pytest.raises(ImproperlyConfigured, match="CHANCY_PREFIX"):
                get_prefix()


def test_the_app(django_settings: str) -> None:
    from django.apps import apps

    config = apps.get_app_config("chancy")
    assert config.name == "chancy.contrib.django"
    assert {model.__name__ for model in config.get_models()} == {
        "Job",
        "Queue",
        "Worker",
    }
    assert apps.get_model("chancy", "Job")._meta.pk.get_internal_type() == "UUIDField"
    uuid.UUID(str(apps.get_model("chancy", "Job")().id))  # a default id
