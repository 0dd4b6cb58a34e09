"""Chancy's synchronous API from a Django view: a sync view pushes a job in the
request's database transaction and reads it back, the way Django code does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytest.importorskip("django")

from chancy import Chancy, Job, Queue, QueuedJob, Reference, Worker

ASYNC = Chancy.Executor.Async


async def greet(*, name: str) -> str:
    return f"hello {name}"


def fn(f: Any) -> str:
    return f"{f.__module__}.{f.__qualname__}"


def _view_factory(app: Chancy) -> Any:
    from django.db import connection, transaction
    from django.http import JsonResponse

    def enqueue(request: Any) -> Any:
        body = json.loads(request.body)
        with transaction.atomic():
            # psycopg's own cursor under Django's connection: the job commits
            # or rolls back with the view's transaction.
            connection.ensure_connection()
            with connection.connection.cursor() as cursor:
                ref = app.sync_push_ex(
                    cursor,
                    Job(func=fn(greet), queue="web", kwargs={"name": body["name"]}),
                )
            if body.get("fail"):
                raise RuntimeError("the view failed after pushing")
        job = app.sync_get_job(ref)
        assert job is not None
        return JsonResponse({"id": str(ref), "state": job.state.value})

    return enqueue


async def test_a_sync_django_view_pushes_in_its_transaction_and_reads_back(
    chancy: Chancy, django_orm: None
) -> None:
    from django.test import RequestFactory

    await chancy.declare(
        Queue("web", executor=ASYNC, polling_interval=0.1), upsert=True
    )
    view = _view_factory(chancy)
    factory = RequestFactory()

    def call(payload: dict[str, Any]) -> Any:
        request = factory.post(
            "/enqueue", data=json.dumps(payload), content_type="application/json"
        )
        with chancy:
            return view(request)

    # Django runs sync views in threads of their own: no event loop there.
    response = await asyncio.to_thread(call, {"name": "ada"})
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["state"] == "pending"

    with pytest.raises(RuntimeError, match="after pushing"):
        await asyncio.to_thread(call, {"name": "bob", "fail": True})

    async with Worker(chancy, register_signal_handlers=False):
        done = await chancy.wait_for_job(
            Reference(body["id"]), interval=0.05, timeout=10
        )
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED
    assert done.kwargs == {"name": "ada"}
    # The failed view's job was rolled back with its transaction.
    async with chancy.pool.connection() as conn:
        cursor = await conn.execute(
            f"SELECT count(*) FROM {chancy.sql.jobs} WHERE queue = 'web'"
        )
        assert await cursor.fetchone() == (1,)
