"""The admin pages of ``chancy.contrib.django``, rendered against real rows."""

from __future__ import annotations

import pytest

pytest.importorskip("django")

from asgiref.sync import sync_to_async

from chancy import Chancy, Job, Worker


def test_models_are_registered_and_their_admins_check_clean(
    django_settings: str,
) -> None:
    from django.contrib import admin

    from chancy.contrib.django.admin import JobAdmin, QueueAdmin, WorkerAdmin
    from chancy.contrib.django.models import Job as JobModel
    from chancy.contrib.django.models import Queue
    from chancy.contrib.django.models import Worker as W

    for model, admin_class in (
        (JobModel, JobAdmin),
        (Queue, QueueAdmin),
        (W, WorkerAdmin),
    ):
        assert admin.site.is_registered(model)
        model_admin = admin.site._registry[model]
        assert type(model_admin) is admin_class
        assert model_admin.check() == []


def test_worker_admin_is_read_only(django_settings: str) -> None:
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    from chancy.contrib.django.models import Worker as W

    request = RequestFactory().get("/admin/chancy/worker/")
    request.user = get_user_model()(is_superuser=True, is_staff=True, is_active=True)
    worker_admin = admin.site._registry[W]
    assert worker_admin.has_view_permission(request)
    assert not worker_admin.has_add_permission(request)
    assert not worker_admin.has_change_permission(request)
    assert not worker_admin.has_delete_permission(request)


async def test_admin_pages_list_search_and_filter(
    chancy: Chancy, worker: Worker, django_superuser: str, django_orm: None
) -> None:
    from chancy import Queue as ChancyQueue

    # Queues no worker serves: the jobs stay pending.
    for name in ("other", "reports"):
        await chancy.declare(ChancyQueue(name, concurrency=3, tags={"nobody"}))
    mail = await chancy.push(Job(func="app.tasks.send_mail", queue="other"))
    report = await chancy.push(Job(func="app.tasks.build_report", queue="reports"))
    await worker.announce()

    def browse() -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        client = Client()
        client.force_login(get_user_model().objects.get(username=django_superuser))

        index = client.get("/admin/")
        assert index.status_code == 200
        for path in (
            "/admin/chancy/job/",
            "/admin/chancy/queue/",
            "/admin/chancy/worker/",
        ):
            assert path.encode() in index.content

        jobs = client.get("/admin/chancy/job/")
        assert jobs.status_code == 200
        assert b"app.tasks.send_mail" in jobs.content
        assert b"app.tasks.build_report" in jobs.content

        # The queue filter lists the declared queues and filters on them.
        filtered = client.get("/admin/chancy/job/", {"queue": "other"})
        assert filtered.status_code == 200
        assert b"app.tasks.send_mail" in filtered.content
        assert b"app.tasks.build_report" not in filtered.content

        # Search by function name, and by job id.
        by_name = client.get("/admin/chancy/job/", {"q": "build_report"})
        assert b"app.tasks.build_report" in by_name.content
        assert b"app.tasks.send_mail" not in by_name.content
        by_id = client.get("/admin/chancy/job/", {"q": str(mail.identifier)})
        assert b"app.tasks.send_mail" in by_id.content
        assert b"app.tasks.build_report" not in by_id.content

        detail = client.get(f"/admin/chancy/job/{report.identifier}/change/")
        assert detail.status_code == 200
        assert b"app.tasks.build_report" in detail.content

        queues = client.get("/admin/chancy/queue/")
        assert queues.status_code == 200
        assert b"other" in queues.content and b"default" in queues.content
        assert client.get("/admin/chancy/queue/other/change/").status_code == 200

        workers = client.get("/admin/chancy/worker/")
        assert workers.status_code == 200
        assert worker.worker_id.encode() in workers.content
        view = client.get(f"/admin/chancy/worker/{worker.worker_id}/change/")
        assert view.status_code == 200
        assert b'name="_save"' not in view.content  # read-only
        assert client.get("/admin/chancy/worker/add/").status_code == 403

        paused = client.post(
            "/admin/chancy/queue/",
            {"action": "pause_queues", "_selected_action": ["other"]},
        )
        assert paused.status_code == 302

    await sync_to_async(browse)()
    queue = await chancy.get_queue("other")
    assert queue.state is ChancyQueue.State.PAUSED
    assert (await chancy.get_queue("default")).state is ChancyQueue.State.ACTIVE
