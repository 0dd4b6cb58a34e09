"""The Django app of the cron plugin: the model reads what ``Cron.schedule``
writes, and the admin reschedules in a way the plugin understands."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

pytest.importorskip("django")

from asgiref.sync import sync_to_async

from chancy import Chancy, Job
from chancy.plugins.cron import Cron
from chancy.plugins.cron.schedule import next_run
from chancy.plugins.leadership import ImmediateLeadership

uses_cron = pytest.mark.parametrize(
    "chancy",
    [{"plugins": [Cron(), ImmediateLeadership()], "no_default_plugins": True}],
    indirect=True,
)


def a_job(key: str = "poll") -> Job:
    return Job(
        func="app.tasks.poll", queue="cron_unserved", kwargs={"n": 1}, unique_key=key
    )


@uses_cron
async def test_orm_reads_a_schedule(chancy: Chancy, django_orm: None) -> None:
    from django.db import connection

    from chancy.plugins.cron.django.models import Cron as CronModel

    await Cron.schedule(chancy, "*/5 * * * *", a_job(), timezone="Europe/Paris")
    stored = (await Cron.get_schedules(chancy))["poll"]

    row = await CronModel.objects.aget(unique_key="poll")
    assert row.cron == "*/5 * * * *"
    assert row.timezone == "Europe/Paris"
    assert row.next_run == stored["next_run"]
    assert row.last_run is None
    assert (row.func, row.queue) == ("app.tasks.poll", "cron_unserved")
    assert row.get_job() == stored["job"]
    assert row.job["k"] == {"n": 1}
    assert str(row) == "poll (*/5 * * * *)"

    assert CronModel._meta.db_table == f"{chancy.prefix}cron"
    assert CronModel._meta.managed is False

    def table_columns() -> set[str]:
        with connection.cursor() as cursor:
            description = connection.introspection.get_table_description(
                cursor, CronModel._meta.db_table
            )
        return {column.name for column in description}

    fields = {field.column for field in CronModel._meta.concrete_fields}
    assert fields == await sync_to_async(table_columns)()

    await Cron.unschedule(chancy, "poll")
    assert not await CronModel.objects.aexists()


def test_clean_validates_the_expression_and_the_time_zone(
    django_settings: str,
) -> None:
    from django.core.exceptions import ValidationError

    from chancy.plugins.cron.django.models import Cron as CronModel

    CronModel(unique_key="k", cron="@hourly", timezone="Asia/Tokyo").clean()
    with pytest.raises(ValidationError) as bad:
        CronModel(unique_key="k", cron="61 * * * *", timezone="Mars/Olympus").clean()
    assert set(bad.value.message_dict) == {"cron", "timezone"}
    with pytest.raises(ValidationError) as never:
        CronModel(unique_key="k", cron="0 0 30 2 *").clean()
    assert set(never.value.message_dict) == {"cron"}


def test_app_and_admin_registration(django_settings: str) -> None:
    from django.apps import apps
    from django.contrib import admin

    from chancy.plugins.cron.django.admin import CronAdmin
    from chancy.plugins.cron.django.models import Cron as CronModel

    config = apps.get_app_config("chancy_cron")
    assert config.name == "chancy.plugins.cron.django"
    assert list(config.get_models()) == [CronModel]
    assert admin.site.is_registered(CronModel)
    model_admin = admin.site._registry[CronModel]
    assert type(model_admin) is CronAdmin
    assert model_admin.check() == []


@uses_cron
async def test_admin_lists_and_reschedules(
    chancy: Chancy, django_superuser: str, django_orm: None
) -> None:
    await Cron.schedule(chancy, "*/5 * * * *", a_job("poll"), a_job("other"))

    def browse() -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        client = Client()
        client.force_login(get_user_model().objects.get(username=django_superuser))

        listing = client.get("/admin/chancy_cron/cron/")
        assert listing.status_code == 200
        assert b"poll" in listing.content and b"app.tasks.poll" in listing.content
        searched = client.get("/admin/chancy_cron/cron/", {"q": "other"})
        assert b"/admin/chancy_cron/cron/other/change/" in searched.content
        assert b"/admin/chancy_cron/cron/poll/change/" not in searched.content
        assert client.get("/admin/chancy_cron/cron/add/").status_code == 403

        url = "/admin/chancy_cron/cron/poll/change/"
        assert client.get(url).status_code == 200
        invalid = client.post(url, {"cron": "not cron", "timezone": "UTC"})
        assert invalid.status_code == 200  # the form again, with the error
        assert b"invalid cron expression" in invalid.content
        saved = client.post(url, {"cron": "0 * * * *", "timezone": "Asia/Tokyo"})
        assert saved.status_code == 302

    before = datetime.now(UTC)
    await sync_to_async(browse)()
    after = datetime.now(UTC)
    schedules = await Cron.get_schedules(chancy)
    assert schedules["other"]["cron"] == "*/5 * * * *"
    poll = schedules["poll"]
    assert (poll["cron"], poll["timezone"]) == ("0 * * * *", "Asia/Tokyo")
    job = poll["job"]
    assert (job.func, job.queue, job.kwargs) == (
        "app.tasks.poll",
        "cron_unserved",
        {"n": 1},
    )
    # Computed again from the time of the change: the next full hour.
    assert (
        next_run("0 * * * *", before, "Asia/Tokyo")
        <= poll["next_run"]
        <= next_run("0 * * * *", after, "Asia/Tokyo")
    )
