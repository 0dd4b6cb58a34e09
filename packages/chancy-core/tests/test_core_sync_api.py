"""The synchronous client API: every async client method has a sync twin, the
two share one implementation, and the sync one works from a plain thread."""

from __future__ import annotations

import asyncio
import inspect
import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from chancy import Chancy, Job, Queue, QueuedJob, Reference, Worker

ASYNC = Chancy.Executor.Async

#: Async methods that are not client calls (pool lifecycle, the generator
#: forms have their own sync generators, checked separately).
NOT_CLIENT_CALLS = {"ensure_open"}


async def noop() -> None:
    pass


def fn(f: Any) -> str:
    return f"{f.__module__}.{f.__qualname__}"


def test_every_async_client_method_has_a_sync_twin() -> None:
    missing = []
    for name, member in inspect.getmembers(Chancy):
        if name.startswith("_") or name in NOT_CLIENT_CALLS:
            continue
        is_async = inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(
            member
        )
        if is_async and not callable(getattr(Chancy, f"sync_{name}", None)):
            missing.append(name)
    assert missing == []


def _in_thread(call: Any) -> Any:
    """Run ``call`` in a plain thread (no event loop there) and return its result."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.parametrize(
    "chancy_just_app", [{"no_default_plugins": True}], indirect=True
)
async def test_the_whole_client_api_from_a_plain_thread(
    chancy_just_app: Chancy, chancy_dsn: str
) -> None:
    app = Chancy(chancy_dsn, no_default_plugins=True)

    def script() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with app:
            app.sync_migrate()
            out["up_to_date"] = app.sync_is_up_to_date()
            app.sync_declare(Queue("q", executor=ASYNC, polling_interval=0.1))
            out["queue"] = app.sync_get_queue("q")
            out["queues"] = [q.name for q in app.sync_get_all_queues()]
            ref = app.sync_push(Job(func=fn(noop), queue="q"))
            many = [
                r
                for batch in app.sync_push_many(
                    [
                        Job(func=fn(noop), queue="q", kwargs={"i": i})
                        for i in range(150)
                    ],
                    batch_size=100,
                )
                for r in batch
            ]
            out["many"] = len(many)
            out["job"] = app.sync_get_job(ref)
            out["jobs"] = len(app.sync_get_jobs(many))
            app.sync_push(Job(func=fn(noop), queue="nobody"))
            out["undeclared"] = app.sync_get_undeclared_queues()
            app.sync_pause_queue("q", resume_at=timedelta(hours=1))
            out["paused"] = app.sync_get_queue("q").state
            app.sync_resume_queue("q")
            out["resumed"] = app.sync_get_queue("q").state
            app.sync_cancel_job(many[0])
            out["cancelled"] = app.sync_get_job(many[0])
            out["retried"] = app.sync_retry_jobs([many[0]])
            out["purged"] = app.sync_purge_jobs([many[1]])
            out["workers"] = app.sync_get_all_workers()
            with pytest.raises(TimeoutError):
                app.sync_wait_for_job(ref, interval=0.01, timeout=0.05)
        return out

    out = await asyncio.to_thread(script)
    assert out["up_to_date"] is True
    assert out["queue"].executor == ASYNC and out["queues"] == ["q"]
    assert out["many"] == 150 and out["jobs"] == 150
    assert out["job"].state is QueuedJob.State.PENDING
    assert out["undeclared"] == {"nobody": 1}
    assert out["paused"] is Queue.State.PAUSED and out["resumed"] is Queue.State.ACTIVE
    assert out["cancelled"].state is QueuedJob.State.FAILED
    assert out["retried"] == [out["cancelled"].id]
    assert len(out["purged"]) == 1
    assert out["workers"] == []

    # A worker runs them; the sync waits see the outcome.
    async with app, Worker(app, register_signal_handlers=False):
        refs = await asyncio.to_thread(
            lambda: app.sync_push_many_ex(
                None, [Job(func=fn(noop), queue="q") for _ in range(3)]
            )
        )
        done = await asyncio.to_thread(
            lambda: app.sync_wait_for_jobs(refs, interval=0.05, timeout=15)
        )
        assert [j.state for j in done] == [QueuedJob.State.SUCCEEDED] * 3
        one = await asyncio.to_thread(
            lambda: app.sync_wait_for_job(refs[0], interval=0.05, timeout=5)
        )
        assert one is not None and one.state is QueuedJob.State.SUCCEEDED

    def teardown() -> None:
        with app:
            app.sync_delete_queue("q")
            assert [q.name for q in app.sync_get_all_queues()] == ["default"]
            app.sync_migrate(to_version=0)
            assert app.sync_is_up_to_date() is False

    await asyncio.to_thread(teardown)


def test_the_ex_forms_run_in_the_callers_transaction(
    chancy: Chancy, chancy_dsn: str
) -> None:
    app = Chancy(chancy_dsn, no_default_plugins=True)

    def script() -> tuple[list[Reference], int]:
        with (
            psycopg.connect(chancy_dsn) as conn,
            conn.cursor(row_factory=dict_row) as cur,
        ):
            app.sync_declare_ex(cur, Queue("tx"))
            refs = app.sync_push_many_ex(cur, [Job(func="m.f", queue="tx")] * 80)
            app.sync_pause_queue_ex(cur, "tx")
            app.sync_cancel_job_ex(cur, refs[0])
            app.sync_retry_jobs_ex(cur, [refs[0]])
            app.sync_purge_jobs_ex(cur, [refs[1]])
            app.sync_notify_many(cur, [("queue.pushed", {"q": "tx"})])
            conn.rollback()  # nothing of it stays
            with app:
                return refs, len(app.sync_get_jobs(refs))

    refs, found = _in_thread(script)
    assert len(refs) == 80 and found == 0


async def test_a_new_sync_method_refuses_to_block_a_running_event_loop(
    chancy: Chancy,
) -> None:
    with pytest.raises(
        RuntimeError, match=r"inside a running event loop.*await chancy"
    ):
        chancy.sync_get_all_queues()
    # The original's own sync methods keep working there, for code written
    # for it (they block the loop while they run).
    with chancy:
        ref = chancy.sync_push(Job(func="m.f"))
        assert chancy.sync_get_job(ref) is not None
