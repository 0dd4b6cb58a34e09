"""Chancy behind a real PgBouncer in transaction mode.

``chancy_pgbouncer_dsn`` (from ``chancy.testing``) starts PgBouncer in front of
the test server with a small pool, so client connections share server
connections: a prepared statement, a LISTEN, a session advisory lock or a
session ``SET`` would fail or misbehave at once. The tests skip, with the
reason, when PgBouncer is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy._ops import Execute
from chancy.errors import ConfigurationError

NOOP = "chancy_testjobs.async_noop"
RETURN = "chancy_testjobs.async_return_value"


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what or check.__name__}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def migrated(app: Chancy) -> AsyncIterator[Chancy]:
    """``app`` opened, with its tables created (through the pooler when its
    DSN goes through one) and dropped afterwards."""
    async with app:
        await app.migrate()
        try:
            yield app
        finally:
            await app.migrate(to_version=0)


# ---------------------------------------------------------------------------
# The setting and the detection
# ---------------------------------------------------------------------------


async def _pooled_threshold(app: Chancy) -> Any:
    async with app.pool.connection() as conn:
        return conn.prepare_threshold


async def test_a_pooler_is_detected_and_an_explicit_setting_wins(
    chancy_dsn: str, chancy_pgbouncer_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chancy")
    behind = Chancy(chancy_pgbouncer_dsn, no_default_plugins=True)
    assert behind.transaction_pooling is None  # not known before connecting
    async with behind:
        assert behind.transaction_pooling is True
        assert await _pooled_threshold(behind) is None
    assert "reached through a connection pooler" in caplog.text

    direct = Chancy(chancy_dsn, no_default_plugins=True)
    async with direct:
        assert direct.transaction_pooling is False
        assert await _pooled_threshold(direct) == 5  # psycopg's default

    # Without a pooler the hot statements stay prepared at once.
    one = Chancy(chancy_dsn, max_connection_pool_size=1, no_default_plugins=True)
    async with one:

        def hot() -> Any:
            yield Execute("SELECT %s::int", (1,), prepare=True)
            return (
                yield Execute(
                    "SELECT count(*) FROM pg_prepared_statements",
                    fetch="one",
                    dicts=False,
                )
            )

        assert one._prepare is True
        assert (await one._run(hot(), dicts=False))[0] >= 1

    forced_off = Chancy(
        chancy_pgbouncer_dsn, transaction_pooling=False, no_default_plugins=True
    )
    async with forced_off:
        assert forced_off.transaction_pooling is False
        assert await _pooled_threshold(forced_off) == 5

    forced_on = Chancy(chancy_dsn, transaction_pooling=True, no_default_plugins=True)
    async with forced_on:
        assert forced_on.transaction_pooling is True
        assert await _pooled_threshold(forced_on) is None
    # A pool of the caller's: detected on one of its connections once it is
    # open, and a warning when it would prepare statements.
    caplog.clear()
    async with AsyncConnectionPool(chancy_pgbouncer_dsn, open=False) as pool:
        theirs = Chancy(pool=pool, no_default_plugins=True)
        await theirs.ensure_open()
        assert theirs.transaction_pooling is True
    assert "kwargs={'prepare_threshold': None}" in caplog.text
    caplog.clear()
    async with AsyncConnectionPool(
        chancy_pgbouncer_dsn, open=False, kwargs={"prepare_threshold": None}
    ) as pool:
        theirs = Chancy(pool=pool, no_default_plugins=True)
        await theirs.ensure_open()
        assert theirs.transaction_pooling is True
    assert "prepare_threshold" not in caplog.text
    # Detection also happens on the sync pool and on the sync API's own
    # connections.
    sync_app = Chancy(chancy_pgbouncer_dsn, no_default_plugins=True)
    assert await asyncio.to_thread(sync_app.sync_is_up_to_date) is False
    assert sync_app.transaction_pooling is True


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="transaction_pooling must be"):
        Chancy("postgresql:///x", transaction_pooling="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="invalid listen_dsn"):
        Chancy("postgresql:///x", listen_dsn="not a dsn")
    with pytest.raises(ConfigurationError, match="listen_dsn must be"):
        Chancy("postgresql:///x", listen_dsn=42)  # type: ignore[arg-type]
    app = Chancy(
        "postgresql:///x",
        listen_dsn={"NAME": "direct", "HOST": "db", "PORT": "5432"},
    )
    assert app.listen_dsn == "postgresql://db:5432/direct"
    assert app.listen_target == app.listen_dsn


# ---------------------------------------------------------------------------
# Everything through the pooler
# ---------------------------------------------------------------------------


async def test_everything_runs_through_the_pooler(
    chancy_pgbouncer_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Push (alone, in the caller's transaction, in bulk, from sync code),
    fetch (plain and with cluster-wide limits), save, a workflow, a cron
    schedule, leadership and the web API, all through PgBouncer in
    transaction mode with the default settings."""
    from chancy.plugins.api import Api
    from chancy.plugins.api.auth import SimpleAuthBackend
    from chancy.plugins.cron import Cron
    from chancy.plugins.leadership import Leadership
    from chancy.plugins.workflow import Sequence, WorkflowPlugin

    caplog.set_level(logging.INFO, logger="chancy")
    api = Api(port=0, authentication_backend=SimpleAuthBackend({"admin": "pw"}))
    app = Chancy(
        chancy_pgbouncer_dsn,
        plugins=[
            Leadership(poll_interval=0.2, timeout=1),
            Cron(poll_interval=0.2),
            WorkflowPlugin(polling_interval=0.2),
            api,
        ],
        max_connection_pool_size=12,
    )
    async with migrated(app):
        await app.declare(
            Queue(
                "pgb",
                executor=Chancy.Executor.Async,
                concurrency=10,
                polling_interval=0.05,
            )
        )
        await app.declare(
            Queue(
                "pgb_limited",
                executor=Chancy.Executor.Async,
                concurrency=5,
                polling_interval=0.05,
                global_concurrency=2,
            )
        )
        worker = Worker(app, register_signal_handlers=False, shutdown_timeout=10)
        async with worker:
            assert "chancy:listen" not in worker.manager.tasks
            job = Job(func=NOOP, queue="pgb")
            # Many single pushes at once: the pool's connections share
            # PgBouncer's four server connections.
            refs = list(await asyncio.gather(*(app.push(job) for _ in range(30))))
            refs += [
                ref
                async for batch in app.push_many([job] * 150, batch_size=100)
                for ref in batch
            ]
            refs += await app.push_many_ex(
                None, [Job(func=NOOP, queue="pgb_limited")] * 6
            )
            # Inside the caller's transaction: visible on commit, gone on rollback.
            async with app.pool.connection() as conn:
                async with conn.transaction(), conn.cursor() as cursor:
                    refs.append(await app.push_ex(cursor, job))
                    refs.append(await app.push_ex(cursor, job.with_unique_key("u")))

                class Rollback(Exception):
                    pass

                with pytest.raises(Rollback):
                    async with conn.transaction(), conn.cursor() as cursor:
                        dropped = await app.push_ex(cursor, job)
                        raise Rollback
            assert await app.get_job(dropped) is None
            refs.append(await asyncio.to_thread(app.sync_push, job))

            done = await app.wait_for_jobs(refs, interval=0.05, timeout=30)
            assert len(done) == len(refs)
            assert {j.state for j in done} == {QueuedJob.State.SUCCEEDED}

            sequence = Sequence(
                "pgb-seq",
                [Job(func=RETURN, queue="pgb", kwargs={"value": 3})] * 2,
            )
            workflow = await WorkflowPlugin.wait_for_workflow(
                app, await sequence.push(app), interval=0.05, timeout=15
            )
            assert workflow.state.value == "completed", workflow

            await Cron.schedule(
                app, "* * * * * *", Job(func=NOOP, queue="pgb", unique_key="tick")
            )

            async def cron_fired() -> bool:
                async with app.pool.connection() as conn:
                    cursor = await conn.execute(
                        f"SELECT count(*) FROM {app.prefix}jobs"
                        " WHERE unique_key = 'tick' AND state = 'succeeded'"
                    )
                    row = await cursor.fetchone()
                    return bool(row and row[0])

            await eventually(cron_fired, what="a cron job ran")
            await asyncio.wait_for(worker.is_leader.wait(), 5)

            asgi = api.build_starlette_app(worker, app)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=asgi), base_url="http://test"
            ) as client:
                login = await client.post(
                    "/api/v1/login", json={"username": "admin", "password": "pw"}
                )
                assert login.status_code == 200, login.text
                for path in (
                    "/api/v1/jobs?state=all",
                    "/api/v1/jobs/counts",
                    "/api/v1/queues",
                    "/api/v1/workers",
                    "/api/v1/crons",
                    "/api/v1/workflows",
                    f"/api/v1/jobs/{refs[0].identifier}",
                ):
                    response = await client.get(path)
                    assert response.status_code == 200, (path, response.text)
                jobs = (await client.get("/api/v1/jobs?state=all")).json()
                assert jobs
                system = (await client.get("/api/v1/system")).json()
                assert system["transaction_pooling"] is True
                assert system["listening"] is False  # no listen_dsn given
    notes = [
        r.getMessage()
        for r in caplog.records
        if "Notifications are off" in r.getMessage()
    ]
    assert len(notes) == 1
    assert "listen_dsn" in notes[0] and "detected" in notes[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_listen_dsn_wakes_workers_behind_the_pooler(
    chancy_dsn: str, chancy_pgbouncer_dsn: str
) -> None:
    """With ``listen_dsn`` past the pooler, a push wakes the worker at once
    although the queue polls only every 30 seconds."""
    app = Chancy(chancy_pgbouncer_dsn, listen_dsn=chancy_dsn, no_default_plugins=True)
    async with migrated(app):
        await app.declare(
            Queue("slow_poll", executor=Chancy.Executor.Async, polling_interval=30)
        )
        async with Worker(app, register_signal_handlers=False) as worker:
            assert app.transaction_pooling is True
            assert "chancy:listen" in worker.manager.tasks
            await asyncio.sleep(0.2)  # past the queue's first fetch
            ref = await app.push(Job(func=NOOP, queue="slow_poll"))
            job = await app.wait_for_job(ref, interval=0.05, timeout=5)
            assert job is not None and job.state == QueuedJob.State.SUCCEEDED
