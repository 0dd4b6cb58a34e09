"""The Chancy app's client API against a real database."""

from __future__ import annotations

import asyncio
import functools
import operator
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from chancy import Chancy, Job, Limit, Queue, QueuedJob, Reference, _ops, _pool, job
from chancy._dsn import dsn_from_django as _dsn_from_django
from chancy.errors import ConfigurationError
from chancy.utils import uuid7, uuid7_many


@job(queue="emails", priority=3, max_attempts=2)
def send_email(*, to: str) -> None:  # pragma: no cover - never run here
    pass


async def _terminate(dsn: str, *pids: int) -> None:
    """Kill server connections, as a database restart would."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid",
            (list(pids),),
        )


async def count_rows(chancy: Chancy, table: str) -> int:
    async with chancy.pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(f'SELECT count(*) FROM "{chancy.prefix}{table}"')
        row = await cur.fetchone()
        return int(row[0])


async def test_push_and_get_job_round_trip(chancy: Chancy) -> None:
    when = datetime.now(UTC) + timedelta(hours=1)
    ref = await chancy.push(
        Job(
            func="mod.fn",
            queue="q",
            kwargs={"a": 1, "b": [1, "x"]},
            priority=5,
            max_attempts=4,
            scheduled_at=when,
            limits=[Limit(Limit.Type.TIME, 10)],
            meta={"m": True},
        )
    )
    assert isinstance(ref, Reference)
    stored = await chancy.get_job(ref)
    assert stored is not None
    assert stored.id == ref.identifier
    assert stored.func == "mod.fn"
    assert stored.queue == "q"
    assert stored.kwargs == {"a": 1, "b": [1, "x"]}
    assert stored.priority == 5
    assert stored.max_attempts == 4
    assert stored.scheduled_at == when
    assert stored.limits == [Limit(Limit.Type.TIME, 10)]
    assert stored.meta == {"m": True}
    assert stored.state is QueuedJob.State.PENDING
    assert stored.attempts == 0
    assert stored.errors == []
    assert stored.created_at is not None


async def test_push_decorated_function_uses_its_template(chancy: Chancy) -> None:
    ref = await chancy.push(send_email)
    stored = await chancy.get_job(ref)
    assert stored is not None
    assert stored.func.endswith("send_email")
    assert (stored.queue, stored.priority, stored.max_attempts) == ("emails", 3, 2)
    # The decorated function is still callable as a plain function.
    assert send_email(to="x") is None


def test_sync_push_and_get_inside_sync_context(chancy_dsn: str, chancy: Chancy) -> None:
    app = Chancy(chancy_dsn, no_default_plugins=True)
    with app:
        ref = app.sync_push(send_email)
        stored = app.sync_get_job(ref)
        declared = app.sync_declare(Queue("sync-q"))
    assert stored is not None and stored.queue == "emails"
    assert declared == Queue("sync-q")


async def test_ids_are_time_ordered_uuid7(chancy: Chancy) -> None:
    refs = [await chancy.push(Job(func="m.f")) for _ in range(20)]
    ids = [r.identifier for r in refs]
    assert ids == sorted(ids)
    assert all(i.version == 7 for i in ids)


async def test_unique_key_returns_existing_job_while_unfinished(chancy: Chancy) -> None:
    first = await chancy.push(Job(func="m.f", unique_key="k1", kwargs={"v": 1}))
    second = await chancy.push(
        Job(func="m.f", unique_key="k1", kwargs={"v": 2}, priority=9)
    )
    assert first == second
    stored = await chancy.get_job(first)
    assert stored is not None and stored.kwargs == {"v": 1} and stored.priority == 0
    assert await count_rows(chancy, "jobs") == 1
    # Once finished, the key is free again.
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"UPDATE {chancy.sql.jobs} SET state = 'succeeded' WHERE id = %s",
            (first.identifier,),
        )
    third = await chancy.push(Job(func="m.f", unique_key="k1"))
    assert third != first


async def test_push_many_batches_and_duplicate_keys_in_one_batch(
    chancy: Chancy,
) -> None:
    jobs = [Job(func="m.f", kwargs={"i": i}) for i in range(25)]
    jobs.insert(3, Job(func="m.f", unique_key="dup"))
    jobs.insert(10, Job(func="m.f", unique_key="dup"))
    batches = [batch async for batch in chancy.push_many(jobs, batch_size=10)]
    assert [len(b) for b in batches] == [10, 10, 7]
    refs = [r for b in batches for r in b]
    assert refs[3] == refs[10]
    assert await count_rows(chancy, "jobs") == 26
    fetched = await chancy.get_jobs(refs)
    assert {j.id for j in fetched} == {r.identifier for r in refs}


async def test_push_many_is_lazy(chancy: Chancy) -> None:
    gen = chancy.push_many([Job(func="m.f")])
    assert await count_rows(chancy, "jobs") == 0
    async for _ in gen:
        pass
    assert await count_rows(chancy, "jobs") == 1


async def test_transactional_push_is_visible_only_after_commit(chancy: Chancy) -> None:
    async with chancy.pool.connection() as conn:
        async with conn.transaction() as tx, conn.cursor(row_factory=dict_row) as cur:
            refs = await chancy.push_many_ex(cur, [Job(func="m.f"), Job(func="m.g")])
            assert (
                await chancy.get_jobs(refs) == []
            )  # other connections cannot see them
            raise_rollback = tx
        assert len(await chancy.get_jobs(refs)) == 2
    async with chancy.pool.connection() as conn:
        async with (
            conn.transaction(force_rollback=True),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            rolled = await chancy.push_ex(cur, Job(func="m.f"))
    assert await chancy.get_job(rolled) is None
    del raise_rollback


async def test_push_notifies_the_queue_channel_on_commit(
    chancy: Chancy, chancy_dsn: str
) -> None:
    listener = await psycopg.AsyncConnection.connect(chancy_dsn, autocommit=True)
    try:
        await listener.execute(f'LISTEN "{chancy.prefix}events"')
        await chancy.push(Job(func="m.f", queue="alpha"))
        gen = listener.notifies(timeout=5, stop_after=1)
        notes = [n async for n in gen]
    finally:
        await listener.close()
    assert len(notes) == 1
    assert notes[0].payload == '{"t":"queue.pushed","q":"alpha"}'


@pytest.mark.parametrize(
    "bad, message",
    [
        (Job(func="m.f", kwargs={"when": datetime.now()}), "kwargs"),
        (Job(func="m.f", meta={"x": object()}), "meta"),
        (Job(func="m.f", kwargs={"nan": float("nan")}), "kwargs"),
        (Job(func="nodots"), "import path"),
        (Job(func="m.f", max_attempts=0), "max_attempts"),
        (Job(func="m.f", queue=""), "queue"),
    ],
)
async def test_bad_jobs_raise_and_nothing_is_written(
    chancy: Chancy, bad: Job, message: str
) -> None:
    good = Job(func="m.f")
    with pytest.raises((TypeError, ValueError), match=message):
        async for _ in chancy.push_many([good, bad]):
            pass
    assert await count_rows(chancy, "jobs") == 0


async def test_push_rejects_non_jobs(chancy: Chancy) -> None:
    with pytest.raises(TypeError, match="decorated with @job"):
        await chancy.push(lambda: None)  # type: ignore[arg-type]


async def test_declare_get_and_list_queues(chancy: Chancy) -> None:
    q1 = Queue(
        "a",
        concurrency=3,
        tags={"x=.*"},
        executor=Chancy.Executor.Async,
        polling_interval=2,
    )
    q2 = Queue("b", rate_limit=5, rate_limit_window=10, eager_polling=True)
    assert await chancy.declare(q1) == q1
    assert await chancy.declare(q2) == q2
    assert await chancy.get_queue("a") == q1
    assert await chancy.get_all_queues() == [q1, q2]
    assert isinstance((await chancy.get_queue("a")).state, Queue.State)
    with pytest.raises(KeyError):
        await chancy.get_queue("missing")


async def test_declare_without_upsert_keeps_existing(chancy: Chancy) -> None:
    await chancy.declare(Queue("a", concurrency=1))
    stored = await chancy.declare(Queue("a", concurrency=7))
    assert stored.concurrency == 1
    stored = await chancy.declare(Queue("a", concurrency=7), upsert=True)
    assert stored.concurrency == 7
    assert (await chancy.get_queue("a")).concurrency == 7


@pytest.mark.parametrize(
    "queue, message",
    [
        (Queue("x", executor="no.such.Executor"), "cannot be imported"),
        (Queue("x", executor="chancy.job.Job"), "not an Executor"),
        (Queue("x", executor_options={"a": {1}}), "JSON"),
    ],
)
async def test_declare_rejects_bad_queues(
    chancy: Chancy, queue: Queue, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        await chancy.declare(queue)
    assert await count_rows(chancy, "queues") == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"concurrency": -1}, "concurrency"),
        ({"concurrency": 0}, "concurrency"),
        ({"rate_limit": 5}, "rate_limit_window"),
        ({"polling_interval": 0}, "polling_interval"),
    ],
)
def test_queue_validates_its_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Queue("x", **kwargs)


async def test_pause_resume_and_delete_queue(chancy: Chancy) -> None:
    await chancy.declare(Queue("p"))
    await chancy.pause_queue("p", resume_at=timedelta(minutes=5))
    paused = await chancy.get_queue("p")
    assert paused.state is Queue.State.PAUSED
    assert paused.resume_at is not None
    assert paused.resume_at > datetime.now(UTC) + timedelta(minutes=4)
    await chancy.resume_queue("p")
    resumed = await chancy.get_queue("p")
    assert resumed.state is Queue.State.ACTIVE and resumed.resume_at is None
    with pytest.raises(KeyError):
        await chancy.pause_queue("nope")

    await chancy.push(Job(func="m.f", queue="p"))
    await chancy.push(Job(func="m.f", queue="other"))
    await chancy.delete_queue("p")
    assert await count_rows(chancy, "jobs") == 1
    with pytest.raises(KeyError):
        await chancy.get_queue("p")
    await chancy.declare(Queue("k"))
    await chancy.push(Job(func="m.f", queue="k"))
    await chancy.delete_queue("k", purge_jobs=False)
    assert await count_rows(chancy, "jobs") == 2


async def test_cancel_pending_job_marks_it_failed_and_distinguishable(
    chancy: Chancy,
) -> None:
    ref = await chancy.push(Job(func="m.f"))
    await chancy.cancel_job(ref)
    stored = await chancy.get_job(ref)
    assert stored is not None
    assert stored.state is QueuedJob.State.FAILED
    assert stored.completed_at is not None
    assert stored.errors[-1]["cancelled"] is True
    assert "JobCancelledError" in stored.errors[-1]["traceback"]


async def test_wait_for_job_timeout_and_states(chancy: Chancy) -> None:
    ref = await chancy.push(Job(func="m.f"))
    with pytest.raises(TimeoutError):
        await chancy.wait_for_job(ref, interval=0.01, timeout=0.1)
    got = await chancy.wait_for_job(
        ref, interval=0.01, timeout=1, states={QueuedJob.State.PENDING}
    )
    assert got is not None and got.state is QueuedJob.State.PENDING
    assert await chancy.wait_for_job(Reference(uuid.uuid4()), interval=0.01) is None


async def test_wait_for_jobs_does_not_hang_on_deleted_jobs(chancy: Chancy) -> None:
    done = await chancy.push(Job(func="m.f"))
    gone = await chancy.push(Job(func="m.f"))
    await chancy.cancel_job(done)
    await chancy.purge_jobs([gone])
    result = await chancy.wait_for_jobs([done, gone], interval=0.01, timeout=2)
    assert [j.id for j in result] == [done.identifier]


async def test_retry_jobs_resets_attempts_and_keeps_errors(chancy: Chancy) -> None:
    ref = await chancy.push(Job(func="m.f"))
    await chancy.cancel_job(ref)
    assert await chancy.retry_jobs([ref]) == [ref]
    stored = await chancy.get_job(ref)
    assert stored is not None
    assert stored.state is QueuedJob.State.RETRYING
    assert stored.attempts == 0 and stored.completed_at is None
    assert len(stored.errors) == 1


async def test_retry_jobs_resets_the_lost_runs_count(chancy: Chancy) -> None:
    ref = await chancy.push(Job(func="m.f", meta={"lost_runs": 3, "mine": 1}))
    await chancy.cancel_job(ref)
    await chancy.retry_jobs([ref])
    stored = await chancy.get_job(ref)
    assert stored is not None and stored.meta == {"mine": 1}


async def test_explicit_pool_usage_without_context_manager(
    chancy_dsn: str, chancy: Chancy
) -> None:
    app = Chancy(chancy_dsn, no_default_plugins=True)
    try:
        await app.declare(Queue("lazy"))
        ref = await app.push(Job(func="m.f", queue="lazy"))
        stored = await app.get_job(ref)
        assert stored is not None and stored.state is QueuedJob.State.PENDING
    finally:
        await app.pool.close()


def test_django_settings_dict_becomes_a_dsn() -> None:
    dsn = _dsn_from_django(
        {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "USER": "me@x",
            "PASSWORD": "p w",
            "HOST": "db",
            "PORT": 6432,
            "OPTIONS": {"sslmode": "require"},
        }
    )
    assert dsn == "postgresql://me%40x:p%20w@db:6432/app?sslmode=require"
    # What libpq reads back: the password with its space ("p+w" would be
    # read literally, as the original's plus-quoting produced).
    assert conninfo_to_dict(dsn)["password"] == "p w"
    assert (
        conninfo_to_dict(_dsn_from_django({"USER": "a+b", "PASSWORD": "x/y:z"}))[
            "password"
        ]
        == "x/y:z"
    )
    assert _dsn_from_django({"NAME": "x"}) == "postgresql:///x"
    assert Chancy({"NAME": "x"}, no_default_plugins=True).dsn == "postgresql:///x"


def test_django_settings_dict_with_a_socket_directory_or_an_ipv6_host() -> None:
    from psycopg.conninfo import conninfo_to_dict

    socket = _dsn_from_django(
        {"NAME": "app", "USER": "u", "HOST": "/var/run/postgresql", "PORT": "5433"}
    )
    assert socket == "postgresql://u@%2Fvar%2Frun%2Fpostgresql:5433/app"
    assert conninfo_to_dict(socket) == {
        "user": "u",
        "host": "/var/run/postgresql",
        "port": "5433",
        "dbname": "app",
    }
    ipv6 = _dsn_from_django({"NAME": "app", "HOST": "::1"})
    assert ipv6 == "postgresql://[::1]:5432/app"
    assert conninfo_to_dict(ipv6)["host"] == "::1"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dsn": "host=x port=notaport ="}, "invalid PostgreSQL DSN"),
        ({"dsn": "postgresql://x", "prefix": "bad-prefix"}, "invalid table prefix"),
        ({"dsn": "postgresql://x", "max_connection_pool_size": 0}, "pool sizes"),
    ],
)
def test_bad_configuration_is_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Chancy(**kwargs)


async def test_unreachable_server_gives_a_clear_error() -> None:
    app = Chancy(
        "postgresql://postgres@127.0.0.1:1/nope?connect_timeout=1",
        no_default_plugins=True,
    )
    with pytest.raises(ConnectionError, match="cannot connect to PostgreSQL"):
        await asyncio.wait_for(app.push(Job(func="m.f")), 60)


async def test_two_prefixes_live_side_by_side(chancy_dsn: str, chancy: Chancy) -> None:
    other = Chancy(chancy_dsn, prefix="other_", no_default_plugins=True)
    async with other:
        await other.migrate()
        try:
            await other.push(Job(func="m.f"))
            assert await count_rows(other, "jobs") == 1
            assert await count_rows(chancy, "jobs") == 0
        finally:
            await other.migrate(to_version=0)


async def test_get_all_workers_reports_leader_flag(chancy: Chancy) -> None:
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"INSERT INTO {chancy.sql.workers} (worker_id, tags, queues, expires_at)"
            " VALUES ('w1', ARRAY['*'], ARRAY['default'], NOW() + interval '1 minute'),"
            " ('w2', ARRAY['*'], ARRAY[]::text[], NOW() + interval '1 minute')"
        )
        await conn.execute(
            f"INSERT INTO {chancy.sql.leader} (id, worker_id, expires_at)"
            " VALUES (1, 'w2', NOW() + interval '1 minute')"
        )
    workers = {w["worker_id"]: w for w in await chancy.get_all_workers()}
    assert workers["w1"]["is_leader"] is False
    assert workers["w2"]["is_leader"] is True
    assert set(workers["w1"]) == {
        "worker_id",
        "tags",
        "queues",
        "last_seen",
        "expires_at",
        "is_leader",
    }


async def test_bulk_push_round_trips_every_field_and_notifies_once_per_queue(
    chancy: Chancy, chancy_dsn: str
) -> None:
    """Large batches take the COPY path; unique jobs in the same call still de-duplicate."""
    listener = await psycopg.AsyncConnection.connect(chancy_dsn, autocommit=True)
    await listener.execute(f'LISTEN "{chancy.prefix}events"')
    jobs = [
        Job(
            func="m.f",
            queue=f"q{i % 2}",
            kwargs={"i": i, "nested": {"x": [i]}},
            meta={"m": i},
            limits=[Limit(Limit.Type.TIME, i + 1)],
            priority=i % 3,
        )
        for i in range(300)
    ]
    jobs += [
        Job(func="m.f", queue="q0", unique_key="u1"),
        Job(func="m.f", queue="q0", unique_key="u1"),
    ]
    refs = [r async for batch in chancy.push_many(jobs, batch_size=1000) for r in batch]
    assert len(refs) == 302 and refs[300] == refs[301]
    stored = {j.id: j for j in await chancy.get_jobs(refs)}
    assert len(stored) == 301
    for i in (0, 17, 299):
        job_ = stored[refs[i].identifier]
        assert job_.kwargs == {"i": i, "nested": {"x": [i]}}
        assert job_.meta == {"m": i}
        assert job_.limits == [Limit(Limit.Type.TIME, i + 1)]
        assert (job_.queue, job_.priority) == (f"q{i % 2}", i % 3)
    notes = [n.payload async for n in listener.notifies(timeout=1)]
    await listener.close()
    assert sorted(notes) == [
        '{"t":"queue.pushed","q":"q0"}',
        '{"t":"queue.pushed","q":"q1"}',
    ]


async def test_bulk_copy_stores_awkward_text_exactly(chancy: Chancy) -> None:
    """The COPY path stores exactly what COPY's text format would treat
    specially (tabs, newlines, backslashes, ``\\.``)."""
    awkward = {
        "backslash": "C:\\temp\\new",
        "controls": "tab\there\nnewline\rreturn",
        "copy_end": "\\.",
        "quote": 'say "hi"',
        "unicode": "café ☕ 𝄞",
        "nul_escape": "\\u0000 is text here",
    }
    jobs = [
        Job(
            func="m.f",
            queue="odd\tqueue\\name",
            kwargs={"i": i, **awkward},
            meta={"note": "line1\nline2\\"},
            scheduled_at=datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        )
        for i in range(100)
    ]
    refs = [r async for batch in chancy.push_many(jobs) for r in batch]
    stored = {j.id: j for j in await chancy.get_jobs(refs)}
    assert len(stored) == 100
    for i, ref in enumerate(refs):
        job_ = stored[ref.identifier]
        assert job_.kwargs == {"i": i, **awkward}
        assert job_.meta == {"note": "line1\nline2\\"}
        assert job_.queue == "odd\tqueue\\name"
        assert job_.scheduled_at == datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


async def test_bulk_copy_stores_edge_numbers_and_times_exactly(chancy: Chancy) -> None:
    """The COPY path sends integers and timestamps in binary: the extremes of
    the integer columns, times before PostgreSQL's epoch (2000), times in
    other zones and naive times (read as UTC) come back as pushed."""
    zone = timezone(timedelta(hours=-7, minutes=-30))
    cases = [
        (-(2**31), 2**31 - 1, datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        (2**31 - 1, 1, datetime(1970, 1, 1, tzinfo=UTC)),
        (0, 7, datetime(2000, 1, 1, tzinfo=UTC)),
        (-1, 3, datetime(2031, 2, 3, 4, 5, 6, 1, tzinfo=zone)),
        (5, 2, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (1, 1, datetime(2026, 6, 1, 12, 0, 0, 500)),  # naive: UTC
    ]
    jobs = [
        Job(
            func="m.f",
            kwargs={"i": i},
            priority=priority,
            max_attempts=attempts,
            scheduled_at=when,
        )
        for i in range(120)
        for priority, attempts, when in [cases[i % len(cases)]]
    ]
    refs = [r async for batch in chancy.push_many(jobs) for r in batch]
    stored = {j.id: j for j in await chancy.get_jobs(refs)}
    assert len(stored) == 120
    for i, ref in enumerate(refs):
        priority, attempts, when = cases[i % len(cases)]
        job_ = stored[ref.identifier]
        assert (job_.kwargs, job_.priority, job_.max_attempts) == (
            {"i": i},
            priority,
            attempts,
        )
        expected = when if when.tzinfo else when.replace(tzinfo=UTC)
        assert job_.scheduled_at == expected


async def test_bulk_push_on_a_non_utf8_connection_keeps_non_ascii_text(
    chancy: Chancy, chancy_dsn: str
) -> None:
    """On a caller's connection whose client encoding is not UTF-8, a bulk
    push stores non-ASCII queue names, funcs, kwargs and meta as given (the
    COPY data is bytes read in the client encoding, so such names go
    through parameters)."""
    await chancy.declare(Queue("café"))
    jobs = [
        Job(func="m.f", queue="café", kwargs={"i": i, "s": "naïve ☕"}, meta={"m": "é"})
        for i in range(100)
    ]
    jobs += [Job(func="m.f", kwargs={"i": i}) for i in range(100)]
    async with await psycopg.AsyncConnection.connect(
        chancy_dsn, options="-c client_encoding=LATIN1"
    ) as conn:
        assert conn.info.encoding == "iso8859-1"
        refs = await chancy.push_many_ex(conn, jobs)
        await conn.commit()
    stored = {j.id: j for j in await chancy.get_jobs(refs)}
    assert len(stored) == 200
    for i, ref in enumerate(refs[:100]):
        job_ = stored[ref.identifier]
        assert job_.queue == "café"
        assert (job_.kwargs, job_.meta) == ({"i": i, "s": "naïve ☕"}, {"m": "é"})
    assert {stored[r.identifier].queue for r in refs[100:]} == {"default"}


async def test_bulk_push_keeps_each_jobs_meta_and_time_when_objects_are_shared(
    chancy: Chancy,
) -> None:
    """Serialising reuses the text of a meta or scheduled_at object the previous
    job shared (jobs from one template); jobs that differ keep their own."""
    shared_meta = {"from": "template"}
    later = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    earlier = datetime(2020, 1, 1, tzinfo=UTC)
    jobs = []
    for i in range(200):
        meta = shared_meta if i % 3 else {"own": i}
        when = later if i % 5 else earlier
        jobs.append(Job(func="m.f", kwargs={"i": i}, meta=meta, scheduled_at=when))
    refs = [r async for batch in chancy.push_many(jobs) for r in batch]
    stored = {j.id: j for j in await chancy.get_jobs(refs)}
    for i, ref in enumerate(refs):
        job_ = stored[ref.identifier]
        assert job_.meta == ({"from": "template"} if i % 3 else {"own": i})
        assert job_.scheduled_at == (later if i % 5 else earlier)


async def test_ids_follow_the_order_jobs_were_given_in(chancy: Chancy) -> None:
    """Unique and plain jobs in one call get increasing ids in input order, so
    equal-priority jobs of one push run first-in first-out."""
    jobs = [
        Job(func="m.f", unique_key=f"k{i}") if i % 4 == 0 else Job(func="m.f")
        for i in range(100)
    ]
    refs = [r async for batch in chancy.push_many(jobs) for r in batch]
    ids = [r.identifier for r in refs]
    assert ids == sorted(ids) and len(set(ids)) == 100


async def test_a_circular_kwargs_fails_clearly_and_the_next_push_works(
    chancy: Chancy,
) -> None:
    loop: dict[str, object] = {}
    loop["self"] = loop
    shared = {"a": 1}
    with pytest.raises(TypeError, match="kwargs is not JSON-serialisable"):
        await chancy.push(Job(func="m.f", kwargs={"x": loop}))
    # Once fixed, the same dict pushes fine: the failed call left no
    # circular-reference markers behind.
    del loop["self"]
    loop["shared"] = shared
    ref = await chancy.push(Job(func="m.f", kwargs={"x": loop, "y": shared}))
    stored = await chancy.get_job(ref)
    assert stored is not None
    assert stored.kwargs == {"x": {"shared": {"a": 1}}, "y": {"a": 1}}
    assert await count_rows(chancy, "jobs") == 1


async def test_kwargs_with_non_string_keys_are_refused(chancy: Chancy) -> None:
    with pytest.raises(TypeError, match="string keys"):
        await chancy.push(Job(func="m.f", kwargs={1: "one"}))  # type: ignore[dict-item]
    assert await count_rows(chancy, "jobs") == 0


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


async def test_surrogate_pairs_and_escaped_lookalikes_are_stored(
    chancy: Chancy,
) -> None:
    # Characters beyond the BMP are escaped as a valid surrogate pair; the
    # text "\ud800" (a backslash, then "ud800") is no surrogate at all.
    kwargs = {
        "emoji": "a\U0001f600b",
        "text": "\\ud800 and \\\\udc00",
        "edge": "\U0010ffff",
    }
    ref = await chancy.push(Job(func="m.f", kwargs=kwargs, meta={"e": "\U0001f600"}))
    stored = await chancy.get_job(ref)
    assert stored is not None
    assert stored.kwargs == kwargs and stored.meta == {"e": "\U0001f600"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("func", "m.f\ud800"),
        ("queue", "q\udfff"),
        ("unique_key", "\ud83d\ude00"),  # a pair, but as two code points
        ("concurrency_key", "k\udc00"),
    ],
)
async def test_text_columns_with_surrogates_are_refused_naming_the_field(
    chancy: Chancy, field: str, value: str
) -> None:
    """Found by the round-trip property test: psycopg cannot encode them, and
    its UnicodeEncodeError named neither the job nor the field."""
    fields: dict[str, Any] = {"func": "m.f", field: value}
    bad = Job(**fields)
    name = "func" if field == "func" else field
    with pytest.raises(ValueError, match=f"{name}.*surrogates"):
        await chancy.push(bad)
    with pytest.raises(ValueError, match=f"{name}.*surrogates"):
        async for _ in chancy.push_many([Job(func="m.ok"), bad]):
            pass
    with pytest.raises(ValueError, match=f"{name}.*surrogates"):
        chancy.check_job(bad)
    assert await count_rows(chancy, "jobs") == 0


async def test_non_ascii_text_columns_are_stored(chancy: Chancy) -> None:
    pushed = Job(
        func="módulo.función",
        queue="café",
        unique_key="ключ-\U0001f600",
        concurrency_key="клиент",
    )
    stored = await chancy.get_job(await chancy.push(pushed))
    assert stored is not None
    assert (stored.func, stored.queue, stored.unique_key, stored.concurrency_key) == (
        "módulo.función",
        "café",
        "ключ-\U0001f600",
        "клиент",
    )


async def test_check_job_raises_what_push_would_and_writes_nothing(
    chancy: Chancy,
) -> None:
    @job(queue="q", priority=3)
    def decorated() -> None: ...

    assert chancy.check_job(decorated) == decorated.job  # type: ignore[attr-defined]
    for bad, error, message in [
        (Job(func="m.f", priority=2**31), ValueError, "32 bits"),
        (Job(func="m.f", kwargs={"x": object()}), TypeError, "not JSON"),
        (Job(func="m.f", kwargs={"x": "\ud800"}), ValueError, "lone UTF-16"),
        ("not a job", TypeError, "expected a Job"),
    ]:
        with pytest.raises(error, match=message):
            chancy.check_job(bad)  # type: ignore[arg-type]
    assert await count_rows(chancy, "jobs") == 0


def test_a_scheduled_at_that_is_not_a_datetime_is_refused() -> None:
    with pytest.raises(TypeError, match="scheduled_at must be a datetime, got str"):
        Job(func="m.f", scheduled_at="2030-01-01")  # type: ignore[arg-type]


async def test_sets_in_kwargs_and_meta_are_stored_as_lists(chancy: Chancy) -> None:
    ref = await chancy.push(
        Job(
            func="m.f",
            kwargs={"tags": {"a"}, "ids": frozenset([3]), "nested": [{"x": {1}}]},
            meta={"seen": {"w1"}},
        )
    )
    stored = await chancy.get_job(ref)
    assert stored is not None
    assert stored.kwargs == {"tags": ["a"], "ids": [3], "nested": [{"x": [1]}]}
    assert stored.meta == {"seen": ["w1"]}
    # Many at once (the COPY path) too.
    jobs = [Job(func="m.f", kwargs={"s": {i}}) for i in range(100)]
    refs = [r async for batch in chancy.push_many(jobs) for r in batch]
    assert [j.kwargs["s"] for j in await chancy.get_jobs(refs[:3])] in (
        [[0], [1], [2]],
        [[0], [2], [1]],
        [[1], [0], [2]],
        [[1], [2], [0]],
        [[2], [0], [1]],
        [[2], [1], [0]],
    )


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (Job(func="m.f", kwargs={"s": "a\x00b"}), "kwargs contain a NUL"),
        (Job(func="m.f", meta={"s": "\x00"}), "meta contain a NUL"),
        (Job(func="m.f\x00"), "NUL"),
        (Job(func="m.f", queue="q\x00"), "NUL"),
        (Job(func="m.f", unique_key="k\x00"), "unique_key must not contain NUL"),
        (Job(func="m.f", priority=2**31), "priority must fit in 32 bits"),
        (Job(func="m.f", priority=-(2**31) - 1), "priority must fit in 32 bits"),
        (Job(func="m.f", max_attempts=2**31), "max_attempts must be an int from 1"),
        (Job(func="m.f", kwargs={"n": float("nan")}), "not JSON-serialisable"),
        (Job(func="m.f", kwargs={"n": float("inf")}), "not JSON-serialisable"),
        (Job(func="m.f", kwargs={"s": "\ud800"}), "kwargs contain a lone UTF-16"),
        (Job(func="m.f", kwargs={"s": "a\udc00b"}), "kwargs contain a lone UTF-16"),
        (Job(func="m.f", meta={"s": "\udbff"}), "meta contain a lone UTF-16"),
        (Job(func="m.f", kwargs={"deep": _nested(100_000)}), "kwargs is nested too"),
        (Job(func="m.f", meta={"deep": _nested(100_000)}), "meta is nested too"),
        (Job(func="m.f", meta=[1, 2]), "meta must be a dict, got list"),  # type: ignore[arg-type]
        (Job(func="m.f", limits=["1s"]), "limits must be a list of chancy.Limit"),  # type: ignore[list-item]
        (Job(func="m..f"), "import path"),
        (Job(func=".m.f"), "import path"),
        (Job(func="m.f."), "import path"),
    ],
)
async def test_unstorable_jobs_are_refused_before_anything_is_written(
    chancy: Chancy, job: Job, message: str
) -> None:
    for jobs in ([job], [Job(func="m.f")] * 70 + [job]):  # single and COPY paths
        with pytest.raises((TypeError, ValueError), match=message):
            await chancy.push_many_ex(None, jobs)
    assert await count_rows(chancy, "jobs") == 0


async def test_push_many_commits_earlier_batches_before_a_bad_one_raises(
    chancy: Chancy,
) -> None:
    """Each batch is its own transaction; a bad batch writes nothing of itself."""
    good = [Job(func="m.f", kwargs={"i": i}) for i in range(150)]
    bad = [Job(func="m.f", kwargs={"i": i}) for i in range(99)]
    bad.append(Job(func="m.f", kwargs={"oops": object()}))
    seen: list[list[Reference]] = []
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        async for batch in chancy.push_many(good + bad, batch_size=150):
            seen.append(batch)
    assert [len(b) for b in seen] == [150]
    assert await count_rows(chancy, "jobs") == 150


async def test_push_many_does_not_insert_a_batch_nobody_asked_for(
    chancy: Chancy,
) -> None:
    jobs = [Job(func="m.f", kwargs={"i": i}) for i in range(300)]
    gen = chancy.push_many(jobs, batch_size=100)
    first = await anext(gen)
    assert len(first) == 100
    await gen.aclose()
    assert await count_rows(chancy, "jobs") == 100


async def test_a_push_refused_by_the_server_midway_writes_nothing(
    chancy: Chancy,
) -> None:
    """A push of plain and unique jobs takes two statements in one transaction:
    when the server refuses the second, the first is rolled back and the
    pooled connection is handed back clean (the next push works)."""
    jobs_table = f'"{chancy.prefix}jobs"'
    async with chancy.pool.connection() as conn:
        await conn.execute(
            "CREATE FUNCTION chancy_test_refuse() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
        )
        await conn.execute(
            f"CREATE TRIGGER chancy_test_refuse BEFORE INSERT ON {jobs_table}"
            " FOR EACH ROW WHEN (NEW.func = 'm.refused')"
            " EXECUTE FUNCTION chancy_test_refuse()"
        )
    try:
        plain = [Job(func="m.f", kwargs={"i": i}) for i in range(3)]
        refused = Job(func="m.refused", unique_key="k")
        with pytest.raises(psycopg.errors.RaiseException, match="refused by the test"):
            await chancy.push_many_ex(None, [*plain, refused])
        assert await count_rows(chancy, "jobs") == 0
        with pytest.raises(psycopg.errors.RaiseException):
            chancy.sync_push_many_ex(None, [*plain, refused])
        assert await count_rows(chancy, "jobs") == 0
        await chancy.push(Job(func="m.f"))
        chancy.sync_push(Job(func="m.f"))
        assert await count_rows(chancy, "jobs") == 2
        # On the caller's autocommit connection: all of the push or nothing.
        async with await psycopg.AsyncConnection.connect(
            chancy.dsn, autocommit=True
        ) as conn:
            with pytest.raises(psycopg.errors.RaiseException):
                await chancy.push_many_ex(conn, [*plain, refused])
        # In the caller's transaction: the push is undone, the transaction
        # goes on and commits what the caller wrote before it.
        async with await psycopg.AsyncConnection.connect(chancy.dsn) as conn:
            await chancy.push_ex(conn.cursor(), Job(func="m.mine"))
            with pytest.raises(psycopg.errors.RaiseException):
                await chancy.push_many_ex(conn, [*plain, refused])
            await conn.commit()
        assert await count_rows(chancy, "jobs") == 3
    finally:
        async with chancy.pool.connection() as conn:
            await conn.execute(f"DROP TRIGGER chancy_test_refuse ON {jobs_table}")
            await conn.execute("DROP FUNCTION chancy_test_refuse()")


def _stream(n: int, bad_at: int | None = None) -> list[Job]:
    """``n`` plain jobs, enough that the push serialises them while it writes
    (the one at ``bad_at`` cannot be stored)."""
    assert n >= _ops.STREAM_FROM
    jobs = [Job(func="m.f", kwargs={"i": i}) for i in range(n)]
    if bad_at is not None:
        jobs[bad_at] = Job(func="m.f", kwargs={"oops": object()})
    plan = _ops.serialise(jobs, stream=True)
    assert plan.rest, "the push would not be streamed"
    return jobs


async def test_a_bad_job_met_while_streaming_writes_nothing_anywhere(
    chancy: Chancy, chancy_dsn: str
) -> None:
    """A push serialised while it writes meets its bad job after most rows
    went to the server: it still raises the error naming the job, nothing of
    it is written, and the caller's transaction goes on."""
    jobs = _stream(3_000, bad_at=2_600)
    not_json = "cannot store job 'm.f': its kwargs is not JSON-serialisable"
    # The app's own connection.
    with pytest.raises(TypeError, match=not_json):
        await chancy.push_many_ex(None, jobs)
    assert await count_rows(chancy, "jobs") == 0
    # The caller's transaction, with a job of its own already in it.
    async with await psycopg.AsyncConnection.connect(chancy_dsn) as conn:
        mine = await chancy.push_ex(conn.cursor(), Job(func="m.mine"))
        with pytest.raises(TypeError, match=not_json):
            await chancy.push_many_ex(conn.cursor(), jobs)
        await conn.commit()
    assert await count_rows(chancy, "jobs") == 1
    assert (await chancy.get_job(mine)) is not None
    # An idle connection: the push opens a transaction, and commits nothing.
    async with await psycopg.AsyncConnection.connect(chancy_dsn) as conn:
        with pytest.raises(TypeError, match=not_json):
            await chancy.push_many_ex(conn, jobs)
        await conn.commit()
    # An autocommit connection: all of the push or nothing.
    async with await psycopg.AsyncConnection.connect(
        chancy_dsn, autocommit=True
    ) as conn:
        with pytest.raises(TypeError, match=not_json):
            await chancy.push_many_ex(conn, jobs)
    assert await count_rows(chancy, "jobs") == 1
    # The same on the sync API.
    with psycopg.Connection.connect(chancy_dsn) as conn:
        with pytest.raises(TypeError, match=not_json):
            chancy.sync_push_many_ex(conn.cursor(), jobs)
        conn.execute("SELECT 1")  # the transaction is usable
        conn.commit()
    with psycopg.Connection.connect(chancy_dsn, autocommit=True) as conn:
        with pytest.raises(TypeError, match=not_json):
            chancy.sync_push_many_ex(conn, jobs)
    with pytest.raises(TypeError, match=not_json):
        chancy.sync_push_many_ex(None, jobs)
    assert await count_rows(chancy, "jobs") == 1
    # And a good streamed push on each kind of connection writes every job.
    good = _stream(1_200)
    async with await psycopg.AsyncConnection.connect(chancy_dsn) as conn:
        refs = await chancy.push_many_ex(conn, good)
        await conn.commit()
    assert len(set(refs)) == 1_200
    assert len(await chancy.get_jobs(refs)) == 1_200
    with psycopg.Connection.connect(chancy_dsn, autocommit=True) as conn:
        chancy.sync_push_many_ex(conn, good)
    assert await count_rows(chancy, "jobs") == 1 + 2 * 1_200


async def test_a_streamed_push_keeps_the_unique_keys_and_queues_of_every_chunk(
    chancy: Chancy, chancy_dsn: str
) -> None:
    """Unique keys, per-key limits and queues met in later chunks are written
    as in any push: one job per key (also across chunks), the ``queue.pushed``
    notification of a queue seen only in the last chunk."""
    listener = await psycopg.AsyncConnection.connect(chancy_dsn, autocommit=True)
    await listener.execute(f'LISTEN "{chancy.prefix}events"')
    jobs = _stream(1_300)
    jobs[10] = Job(func="m.u", unique_key="u")
    jobs[900] = Job(func="m.u", unique_key="u")  # the same key, a later chunk
    jobs[1_100] = Job(func="m.v", unique_key="v")
    jobs[800] = Job(func="m.c", concurrency_key="c")
    jobs[1_299] = Job(func="m.f", queue="late", kwargs={"i": 1_299})
    refs = await chancy.push_many_ex(None, jobs)
    assert len(refs) == 1_300
    assert refs[10] == refs[900]
    assert len(set(refs)) == 1_299
    assert await count_rows(chancy, "jobs") == 1_299
    stored = {j.id: j for j in await chancy.get_jobs(refs)}
    assert stored[refs[800].identifier].concurrency_key == "c"
    assert stored[refs[1_100].identifier].unique_key == "v"
    assert stored[refs[1_299].identifier].queue == "late"
    assert stored[refs[1_298].identifier].kwargs == {"i": 1_298}
    # Ids follow the order the jobs were given in, across chunks.
    ids = [r.identifier for i, r in enumerate(refs) if i not in (900,)]
    assert ids == sorted(ids)
    notes = [n.payload async for n in listener.notifies(timeout=1)]
    await listener.close()
    assert sorted(notes) == [
        '{"t":"queue.pushed","q":"default"}',
        '{"t":"queue.pushed","q":"late"}',
    ]
    # Pushed again, the held keys give the existing jobs.
    again = await chancy.push_many_ex(None, jobs)
    assert (again[10], again[900], again[1_100]) == (refs[10], refs[10], refs[1_100])


async def test_several_statements_on_an_idle_connection_are_left_to_the_caller(
    chancy: Chancy, chancy_dsn: str
) -> None:
    """A push of plain and unique jobs takes more than one statement: on the
    caller's idle connection it opens a transaction the caller ends (here, a
    rollback), never one it commits itself."""
    jobs = [Job(func="m.f"), Job(func="m.f", unique_key="k")]
    async with await psycopg.AsyncConnection.connect(chancy_dsn) as conn:
        await chancy.push_many_ex(conn, jobs)
        await conn.rollback()
    with psycopg.Connection.connect(chancy_dsn) as conn:
        chancy.sync_push_many_ex(conn, jobs)
        conn.rollback()
    assert await count_rows(chancy, "jobs") == 0


def test_uuid7_many_is_increasing_unique_and_rfc_9562() -> None:
    batches = [uuid7_many(500) for _ in range(5)]
    ids = [i for batch in batches for i in batch] + [uuid7()]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    # Indistinguishable from UUIDs built the ordinary way.
    assert all(
        uuid.UUID(str(i)) == i and hash(uuid.UUID(i.hex)) == hash(i) for i in ids
    )
    ms = int(time.time() * 1000)
    assert abs((ids[0].int >> 80) - ms) < 5000


def test_a_forked_child_makes_other_ids_than_its_parent() -> None:
    """Random bits are drawn ahead in bulk; a forked child (a process pool, a
    pre-forking web server) must not make the ids its parent makes next."""
    import os

    uuid7()  # the parent now holds bytes drawn ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, uuid7_many(3)[0].hex.encode())
        os._exit(0)
    os.close(write)
    child = uuid.UUID(os.read(read, 64).decode())
    os.close(read)
    os.waitpid(pid, 0)
    parent = uuid7_many(3)[0]
    mask = (1 << 62) - 1  # rand_b: random in both, whatever the millisecond
    assert child.int & mask != parent.int & mask


def test_random_uuids_are_version_4_unique_and_differ_in_a_forked_child() -> None:
    """The worker's execution claims: random UUIDv4s from the bytes drawn
    ahead for ids, so a forked child must not repeat its parent's next."""
    import os

    from chancy.utils import random_uuid

    ids = [random_uuid() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    assert all(uuid.UUID(str(i)) == i for i in ids[:50])
    # Every random bit varies (no bit stuck by the masking).
    random_bits = ((1 << 128) - 1) & ~((0xF << 76) | (0x3 << 62))
    assert functools.reduce(operator.or_, (i.int for i in ids)) & random_bits == (
        random_bits
    )
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, random_uuid().hex.encode())
        os._exit(0)
    os.close(write)
    child = uuid.UUID(os.read(read, 64).decode())
    os.close(read)
    os.waitpid(pid, 0)
    assert child != random_uuid()


async def test_a_pooled_connection_cut_while_idle_is_replaced_not_raised(
    chancy: Chancy, chancy_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a database restart (or a firewall cutting idle sockets), the first
    push gets a fresh connection instead of an error."""
    monkeypatch.setattr(chancy._idle_check, "after", 0.05)
    await chancy.push(Job(func="m.f"))
    async with chancy.pool.connection() as conn:
        pid = conn.info.backend_pid
    await _terminate(chancy_dsn, pid)
    await asyncio.sleep(0.1)
    ref = await chancy.push(Job(func="m.f"))
    assert await chancy.get_job(ref) is not None


def test_a_sync_pooled_connection_cut_while_idle_is_replaced(
    chancy_dsn: str, chancy: Chancy
) -> None:
    app = Chancy(chancy_dsn, no_default_plugins=True)
    app._idle_check.after = 0.05
    with app:
        app.sync_push(Job(func="m.f"))
        with app.sync_pool.connection() as conn:
            pid = conn.info.backend_pid
        with psycopg.connect(chancy_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.1)
        ref = app.sync_push(Job(func="m.f"))
        assert app.sync_get_job(ref) is not None


async def test_pooled_connections_load_json_and_jsonb_like_psycopg(
    chancy: Chancy,
) -> None:
    """The pools' faster JSON loader returns what json.loads would."""
    async with chancy.pool.connection() as conn:
        cursor = await conn.execute(
            'SELECT \'  {"a": [1, 2.5, "é", null]}\'::json,'
            " '{\"b\": {\"c\": true}}'::jsonb, 'null'::jsonb, '\"x\"'::json"
        )
        row = await cursor.fetchone()
    assert row == ({"a": [1, 2.5, "é", None]}, {"b": {"c": True}}, None, "x")


LOGGING_SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
from chancy import Chancy
app = Chancy("postgresql://localhost/app", no_default_plugins=True)
app.log.info("hello from chancy")
kinds = [type(h).__name__ for h in logging.getLogger("chancy").handlers]
print("handlers", kinds)
"""


def test_the_library_adds_no_log_handler_so_basicconfig_shows_each_line_once() -> None:
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", LOGGING_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ).stdout
    assert out.count("hello from chancy") == 1, out
    assert "handlers ['NullHandler']" in out


def test_configure_logging_adds_one_handler_unless_logging_is_configured() -> None:
    import logging

    from chancy.utils import configure_logging

    log = logging.getLogger("chancy")
    before = list(log.handlers)
    level = log.level
    root = logging.getLogger()
    root_handlers = list(root.handlers)
    try:
        root.handlers = []
        configure_logging()
        configure_logging()  # idempotent
        added = [h for h in log.handlers if h not in before]
        assert len(added) == 1 and log.level == logging.INFO
        log.handlers = list(before)
        root.addHandler(logging.NullHandler())
        configure_logging()
        assert log.handlers == before  # the application configured logging
    finally:
        log.handlers = before
        log.setLevel(level)
        root.handlers = root_handlers


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresq://postgres:s3cretpw@db.example/app",
        "host=db.example password=s3cretpw port=notaport =",
        "host=db.example password='s3cret pw' port=notaport =",
    ],
)
def test_an_invalid_dsn_is_reported_without_its_password(dsn: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid PostgreSQL DSN") as info:
        Chancy(dsn)
    assert "s3cret" not in str(info.value)


async def test_a_failed_connection_is_reported_without_the_password() -> None:
    app = Chancy(
        "postgresql://someone:s3cretpw@127.0.0.1:1/app?connect_timeout=2",
        no_default_plugins=True,
    )
    with pytest.raises(ConnectionError, match="cannot connect") as info:
        await app.ensure_open()
    assert "s3cretpw" not in str(info.value)


async def test_declare_warns_when_it_keeps_other_stored_settings(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    await chancy.declare(Queue("q", concurrency=2, executor=Chancy.Executor.Async))
    caplog.clear()
    same = await chancy.declare(
        Queue("q", concurrency=2, executor=Chancy.Executor.Async)
    )
    assert same.concurrency == 2 and "already exists" not in caplog.text
    kept = await chancy.declare(Queue("q", concurrency=5))
    assert kept.concurrency == 2  # stored settings kept, as in the original
    warning = caplog.text
    assert "queue 'q' already exists with other settings" in warning
    assert "concurrency: stored 2, given 5" in warning
    assert "executor: stored 'chancy.executors.asyncex.AsyncExecutor'" in warning
    assert "upsert=True" in warning
    caplog.clear()
    assert (
        await chancy.declare(Queue("q", concurrency=5), upsert=True)
    ).concurrency == 5
    assert "already exists" not in caplog.text


async def test_a_push_to_an_undeclared_queue_warns_once(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    await chancy.declare(Queue("known"))
    await chancy.push(Job(func="m.f", queue="known"))
    await chancy.push(Job(func="m.f"))  # "default": every worker declares it
    assert "nobody declared" not in caplog.text
    await chancy.push(Job(func="m.f", queue="typo"))
    assert caplog.text.count("queue 'typo', which nobody declared") == 1
    refs = [
        r
        async for b in chancy.push_many([Job(func="m.f", queue="typo")] * 100)
        for r in b
    ]
    assert len(refs) == 100
    assert caplog.text.count("queue 'typo', which nobody declared") == 1
    # ("default" too: no worker ran yet to declare it.)
    assert await chancy.get_undeclared_queues() == {"default": 1, "typo": 101}
    await chancy.declare(Queue("typo"))
    assert await chancy.get_undeclared_queues() == {"default": 1}


async def test_a_queue_declared_in_the_same_transaction_counts(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        chancy.pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await chancy.declare_ex(cur, Queue("together"))
        await chancy.push_ex(cur, Job(func="m.f", queue="together"))
    assert "nobody declared" not in caplog.text


def test_sync_push_to_an_undeclared_queue_warns(
    chancy_dsn: str, chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    app = Chancy(chancy_dsn, no_default_plugins=True)
    with app:
        app.sync_push(Job(func="m.f", queue="nowhere"))
    assert "queue 'nowhere', which nobody declared" in caplog.text


# ---------------------------------------------------------------------------
# The hot connection: single statements that come often skip the pool
# ---------------------------------------------------------------------------


async def _lane_open(chancy: Chancy) -> psycopg.AsyncConnection:
    """Push until the app holds its hot connection; return it."""
    for _ in range(200):
        await chancy.push(Job(func="m.f"))
        if chancy._lane.conn is not None:
            return chancy._lane.conn
        await asyncio.sleep(0.01)
    raise AssertionError("the hot connection never opened")


async def _backends(dsn: str) -> set[int]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        cur = await admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        return {pid for (pid,) in await cur.fetchall()}


async def test_pushes_in_quick_succession_use_one_connection_beside_the_pool(
    chancy: Chancy,
) -> None:
    """One push now and then takes a pooled connection; a run of pushes gets
    an autocommit connection of its own, outside the pool's count, and stops
    taking connections from the pool."""
    await chancy.push(Job(func="m.f"))
    assert chancy._lane.conn is None  # one push: nothing held
    lane = await _lane_open(chancy)
    assert lane.autocommit
    requests = chancy.pool.get_stats().get("requests_num", 0)
    refs = [await chancy.push(Job(func="m.f", kwargs={"n": i})) for i in range(20)]
    assert chancy.pool.get_stats().get("requests_num", 0) == requests
    assert chancy._lane.conn is lane
    jobs = await chancy.get_jobs(refs)
    assert sorted(j.kwargs["n"] for j in jobs) == list(range(20))
    assert all(j.state == QueuedJob.State.PENDING for j in jobs)


async def test_a_hot_connection_cut_while_idle_is_never_used(
    chancy_dsn: str, chancy: Chancy
) -> None:
    """A terminated (or restarted) server connection says so before it
    closes: the next push sees it, goes to the pool and succeeds."""
    chancy._lane.check_after = 0.05  # looked at after 50 ms idle (default 0.5 s)
    lane = await _lane_open(chancy)
    pid = lane.info.backend_pid
    await _terminate(chancy_dsn, pid)
    await asyncio.sleep(0.1)
    ref = await chancy.push(Job(func="m.f"))
    assert (await chancy.get_job(ref)) is not None
    assert chancy._lane.conn is not lane
    fresh = await _lane_open(chancy)
    assert fresh.info.backend_pid != pid


async def test_a_statement_error_keeps_the_hot_connection_but_a_transaction_closes_it(
    chancy: Chancy,
) -> None:
    from chancy import _ops

    lane = await _lane_open(chancy)

    def failing() -> _ops.Operation:
        yield _ops.Execute("SELECT 1 / 0", ())

    with pytest.raises(psycopg.errors.DivisionByZero):
        await chancy._run(failing(), autocommit=True)
    assert chancy._lane.conn is lane and not chancy._lane.busy

    def leaves_a_transaction_open() -> _ops.Operation:
        yield _ops.Execute("BEGIN", ())

    await chancy._run(leaves_a_transaction_open(), autocommit=True)
    assert chancy._lane.conn is None  # closed, not lent again mid-transaction
    await asyncio.gather(*chancy._lane.closing)
    assert lane.closed
    assert (await chancy.get_job(await chancy.push(Job(func="m.f")))) is not None


async def test_the_hot_connection_closes_when_idle_and_with_the_app(
    chancy_dsn: str, chancy: Chancy
) -> None:
    chancy._lane.idle_after = 0.2
    lane = await _lane_open(chancy)
    pid = lane.info.backend_pid
    assert pid in await _backends(chancy_dsn)
    for _ in range(100):  # closed by its idle timer, 0.2 s after its last use
        if chancy._lane.conn is None:
            break
        await asyncio.sleep(0.01)
    assert chancy._lane.conn is None
    await asyncio.gather(*chancy._lane.closing)
    assert pid not in await _backends(chancy_dsn)

    app = Chancy(chancy_dsn, no_default_plugins=True)
    async with app:
        pid = (await _lane_open(app)).info.backend_pid
    assert app._lane.conn is None
    assert pid not in await _backends(chancy_dsn)


async def test_an_app_given_a_pool_never_opens_a_connection_of_its_own(
    chancy_dsn: str, chancy: Chancy
) -> None:
    from psycopg_pool import AsyncConnectionPool

    async with AsyncConnectionPool(chancy_dsn, min_size=1, max_size=2) as pool:
        app = Chancy(chancy_dsn, pool=pool, no_default_plugins=True)
        for _ in range(20):
            await app.push(Job(func="m.f"))
        await asyncio.sleep(0.05)
        assert app._lane.conn is None and app._lane.opening is None


def test_a_hot_connection_opens_for_one_busy_loop_not_for_a_loop_per_call(
    chancy_dsn: str,
) -> None:
    """asgiref's async_to_sync and the like run each call on a new event
    loop: a connection opened on one would never be used on the next."""
    from chancy._pool import Lane

    opened: list[psycopg.AsyncConnection] = []

    async def connect() -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(chancy_dsn, autocommit=True)
        opened.append(conn)
        return conn

    lane = Lane(connect)

    async def one_call() -> None:
        assert lane.take() is None
        await asyncio.sleep(0.05)

    for _ in range(3):
        asyncio.run(one_call())
    assert opened == [] and lane.conn is None

    async def busy_loop() -> bool:
        for _ in range(50):
            conn = lane.take()
            if conn is not None:
                await conn.execute("SELECT 1")
                lane.give_back(conn)
                await lane.close()
                return True
            await asyncio.sleep(0.01)
        return False

    assert asyncio.run(busy_loop())
    assert len(opened) == 1 and opened[0].closed


async def test_after_a_restart_one_dead_connection_gets_the_pool_checked(
    chancy_dsn: str, chancy: Chancy
) -> None:
    """A database restart kills every pooled connection; the first caller to
    meet a dead one gets the error, and the pool checks the others at once,
    instead of failing the next caller for each one."""
    app = Chancy(
        chancy_dsn,
        no_default_plugins=True,
        min_connection_pool_size=3,
        max_connection_pool_size=3,
    )
    async with app:
        ref = await app.push(Job(func="m.f"))

        pids: set[int] = set()

        async def hold() -> None:
            async with app.pool.connection() as conn:
                pids.add(conn.info.backend_pid)
                await conn.execute("SELECT pg_sleep(0.05)")

        await asyncio.gather(hold(), hold(), hold())  # three live connections
        assert len(pids) == 3
        await _terminate(chancy_dsn, *pids)
        await asyncio.sleep(0.1)
        with pytest.raises(psycopg.OperationalError):
            await app.get_job(ref)
        await _pool._sweeps[app.pool]  # the background check it started
        for _ in range(6):
            assert await app.get_job(ref) is not None
