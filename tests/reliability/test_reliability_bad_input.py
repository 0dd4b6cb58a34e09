"""The bad-input catalogue: what a careless or hostile caller sends to every
entry point that writes, and what it gets back.

Each case is one call. A *refused* case must raise Chancy's own error
(``TypeError``, ``ValueError`` or a ``ChancyError``, never a database error
that got as far as PostgreSQL) whose message names the problem, and every
table of the database must hold exactly what it held before (a snapshot of
every row, taken before and after). A few inputs are legitimate however odd
they look, such as SQL meta-characters in a name: those are *stored
verbatim* (read back unchanged, nothing else written). A payload beyond
PostgreSQL's own limits is refused by the server, in one piece: the
database error names the limit and nothing is written, not even the valid
jobs pushed with it.

Entry points: ``Chancy.push``, ``push_many`` (its COPY path), ``push_ex``
and ``push_many_ex`` in the caller's transaction (also one large enough to be
serialised while it is written), ``sync_push`` and
``sync_push_many``; ``Job(...)``; ``Chancy(prefix=...)``; ``Queue(...)`` and
``declare``; the queue operations on unknown names; ``Cron.schedule``;
``WorkflowPlugin.push`` and ``Sequence.push``; the command line (``chancy
job push``, ``queue declare|pause|resume|delete``, ``cron add|remove|next``);
the web API's queue limits (``POST /api/v1/queues`` and ``PATCH
/api/v1/queues/{name}`` with bad ``global_concurrency``, ``key_concurrency``,
``key_rate_limit``/``key_rate_limit_window``: 422 naming the field). The rest
of the web API, and triggers, have catalogues of their own.

Every input is refused before anything is written; queue settings are
validated by :class:`chancy.Queue` itself, so ``declare``, the command line
and the web API refuse the same ones.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import re
import secrets
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from chancy import Chancy, Job, Queue, Reference, _ops
from chancy._pgserver import create_database, drop_database
from chancy.cli import cli
from chancy.errors import ChancyError
from chancy.plugins.cron import Cron
from chancy.plugins.workflow import Sequence, Workflow, WorkflowPlugin


def _harness() -> ModuleType:
    """``_reliability.py`` next to this file (tests do not import each other)."""
    module = sys.modules.get("_reliability")
    if module is None:
        spec = importlib.util.spec_from_file_location(
            "_reliability", Path(__file__).with_name("_reliability.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["_reliability"] = module
        spec.loader.exec_module(module)
    return module


rel = _harness()
pytestmark = pytest.mark.reliability

#: Our errors: raised before anything reaches the database.
OURS = (TypeError, ValueError, ChancyError)
SQL = "x'); DROP TABLE chancy_jobs; --"


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def ok(**fields: Any) -> Job:
    """A valid job (of fields given)."""
    return Job(func="app.tasks.work", **fields)


# ---------------------------------------------------------------------------
# The database, migrated once for the module, and a snapshot of it
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue_dsn(chancy_server_dsn: str) -> Iterator[str]:
    """A database of this module's own, with core's and every default
    plugin's tables (cron, workflows, ...)."""
    name = f"chancy_rel_input_{os.getpid()}_{secrets.token_hex(3)}"
    dsn = create_database(chancy_server_dsn, name)

    async def migrate() -> None:
        async with Chancy(dsn) as app:
            await app.migrate()

    # In a thread of its own: no event loop of the tests' is disturbed.
    thread = threading.Thread(target=asyncio.run, args=(migrate(),))
    thread.start()
    thread.join()
    try:
        yield dsn
    finally:
        conn = _snapshot_connections.pop(dsn, None)
        if conn is not None:
            conn.close()
        drop_database(chancy_server_dsn, name)


@pytest.fixture
async def app(catalogue_dsn: str) -> AsyncIterator[Chancy]:
    async with Chancy(catalogue_dsn) as chancy:
        yield chancy


_snapshot_connections: dict[str, psycopg.Connection[Any]] = {}
_snapshot_lock = threading.Lock()


def snapshot(dsn: str) -> dict[str, list[str]]:
    """Every row of every table of the ``public`` schema, as text (one query,
    on a connection kept for the module)."""
    with _snapshot_lock:
        conn = _snapshot_connections.get(dsn)
        if conn is None or conn.closed:
            conn = _snapshot_connections[dsn] = psycopg.connect(dsn, autocommit=True)
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        query = psycopg.sql.SQL(" UNION ALL ").join(
            psycopg.sql.SQL("SELECT {}, t::text FROM {} t").format(
                psycopg.sql.Literal(table), psycopg.sql.Identifier(table)
            )
            for table in tables
        )
        result: dict[str, list[str]] = {table: [] for table in tables}
        for table, row in conn.execute(query):
            result[table].append(row)
    return {table: sorted(rows) for table, rows in result.items()}


async def refused(
    app: Chancy,
    call: Callable[[], Awaitable[Any]],
    match: str,
    errors: tuple[type[BaseException], ...] = OURS,
) -> BaseException:
    """``call`` raises one of ``errors`` matching ``match``; nothing written."""
    before = await asyncio.to_thread(snapshot, app.dsn)
    with pytest.raises(errors, match=match) as info:
        await call()
    if errors == OURS:
        assert not isinstance(info.value, psycopg.Error), info.value
    assert await asyncio.to_thread(snapshot, app.dsn) == before
    return info.value


def changed(
    before: dict[str, list[str]], after: dict[str, list[str]]
) -> dict[str, Any]:
    """Rows added to (and removed from) each table."""
    diff = {}
    for table in before.keys() | after.keys():
        old, new = set(before.get(table, [])), set(after.get(table, []))
        if old != new:
            diff[table] = {"added": sorted(new - old), "removed": sorted(old - new)}
    return diff


# ---------------------------------------------------------------------------
# Pushing jobs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BadJob:
    id: str
    make: Callable[[], Job]
    match: str


BAD_JOBS = [
    BadJob("kwargs-object", lambda: ok(kwargs={"x": object()}), "kwargs is not JSON"),
    BadJob("kwargs-bytes", lambda: ok(kwargs={"x": b"\x00\xff"}), "kwargs is not JSON"),
    BadJob("kwargs-int-key", lambda: ok(kwargs={1: "x"}), "string keys"),
    BadJob("kwargs-nan", lambda: ok(kwargs={"x": math.nan}), "not JSON"),
    BadJob("kwargs-inf", lambda: ok(kwargs={"x": [math.inf]}), "not JSON"),
    BadJob("meta-minus-inf", lambda: ok(meta={"x": -math.inf}), "meta is not JSON"),
    BadJob("kwargs-nul", lambda: ok(kwargs={"x": "a\x00b"}), "kwargs contain a NUL"),
    BadJob("meta-nul-key", lambda: ok(meta={"a\x00": 1}), "meta contain a NUL"),
    BadJob("kwargs-lone-surrogate", lambda: ok(kwargs={"x": "\ud800"}), "lone UTF-16"),
    BadJob("kwargs-too-deep", lambda: ok(kwargs={"x": _nested(50_000)}), "nested too"),
    BadJob("meta-not-a-dict", lambda: ok(meta=[1, 2]), "meta must be a dict"),  # type: ignore[arg-type]
    BadJob("priority-2-31", lambda: ok(priority=2**31), "32 bits"),
    BadJob("priority-negative-huge", lambda: ok(priority=-(2**63)), "32 bits"),
    BadJob("priority-nan", lambda: ok(priority=math.nan), "priority must be an int"),  # type: ignore[arg-type]
    BadJob("priority-inf", lambda: ok(priority=math.inf), "priority must be an int"),  # type: ignore[arg-type]
    BadJob("priority-bool", lambda: ok(priority=True), "priority must be an int"),
    BadJob("max-attempts-0", lambda: ok(max_attempts=0), "max_attempts must be"),
    BadJob(
        "max-attempts-negative", lambda: ok(max_attempts=-5), "max_attempts must be"
    ),
    BadJob("max-attempts-huge", lambda: ok(max_attempts=2**40), "max_attempts must be"),
    BadJob("max-attempts-float", lambda: ok(max_attempts=1.5), "max_attempts must be"),  # type: ignore[arg-type]
    BadJob("func-empty", lambda: Job(func=""), "import path"),
    BadJob("func-no-dot", lambda: Job(func="work"), "import path"),
    BadJob("func-empty-part", lambda: Job(func="app..work"), "import path"),
    BadJob("func-nul", lambda: Job(func="app.work\x00"), "NUL"),
    BadJob("queue-empty", lambda: ok(queue=""), "queue must be a non-empty"),
    BadJob("queue-nul", lambda: ok(queue="q\x00"), "NUL"),
    BadJob("queue-not-a-string", lambda: ok(queue=5), "queue must be"),  # type: ignore[arg-type]
    BadJob("unique-key-nul", lambda: ok(unique_key="k\x00"), "NUL"),
    BadJob("unique-key-int", lambda: ok(unique_key=7), "unique_key must be"),  # type: ignore[arg-type]
    BadJob("limits-strings", lambda: ok(limits=["30s"]), "chancy.Limit"),  # type: ignore[list-item]
    BadJob("kwargs-not-a-dict", lambda: ok(kwargs=[1]), "kwargs must be a dict"),  # type: ignore[arg-type]
    BadJob(
        "scheduled-at-string", lambda: ok(scheduled_at="2030-01-01"), "scheduled_at"
    ),  # type: ignore[arg-type]
]


async def _in_transaction(app: Chancy, call: Callable[[Any], Awaitable[Any]]) -> None:
    """``call(cursor)`` in the caller's own transaction, after a valid write:
    the whole transaction is rolled back by the error."""
    async with app.pool.connection() as conn:
        async with conn.transaction(), conn.cursor() as cursor:
            await app.push_ex(cursor, ok(kwargs={"before": True}))
            await call(cursor)


async def _push_many(app: Chancy, job: Job) -> None:
    # Large enough for the COPY path; the bad job comes last.
    async for _ in app.push_many([ok(kwargs={"i": i}) for i in range(99)] + [job]):
        pass


PUSHES: dict[str, Callable[[Chancy, Job], Awaitable[Any]]] = {
    "push": lambda app, job: app.push(job),
    "push_many": _push_many,
    "push_ex": lambda app, job: _in_transaction(app, lambda c: app.push_ex(c, job)),
    "push_many_ex": lambda app, job: _in_transaction(
        app, lambda c: app.push_many_ex(c, [ok(), job])
    ),
    # Large enough to be serialised while it is written: the bad job, last,
    # is met after the other rows went to the server.
    "push_many_ex_streamed": lambda app, job: _in_transaction(
        app,
        lambda c: app.push_many_ex(
            c, [ok(kwargs={"i": i}) for i in range(_ops.STREAM_FROM)] + [job]
        ),
    ),
    "sync_push": lambda app, job: asyncio.to_thread(app.sync_push, job),
    "sync_push_many": lambda app, job: asyncio.to_thread(
        lambda: list(
            app.sync_push_many([ok(kwargs={"i": i}) for i in range(99)] + [job])
        )
    ),
}


@pytest.mark.parametrize("entry", list(PUSHES))
@pytest.mark.parametrize("bad", BAD_JOBS, ids=[b.id for b in BAD_JOBS])
async def test_push_refuses_an_unstorable_job(
    app: Chancy, bad: BadJob, entry: str
) -> None:
    async def call() -> None:
        await PUSHES[entry](app, bad.make())

    await refused(app, call, bad.match)


async def test_a_payload_beyond_postgresql_limits_is_refused_whole(app: Chancy) -> None:
    # A string longer than jsonb can hold (2**28 - 1 bytes), pushed with 99
    # valid jobs in one COPY: the server refuses it, and none of them is stored.
    huge = ok(kwargs={"blob": "x" * (2**28)})
    await refused(
        app,
        lambda: _push_many(app, huge),
        "jsonb strings cannot exceed",
        errors=(psycopg.errors.ProgramLimitExceeded,),
    )


@pytest.mark.parametrize("entry", ["push", "push_many", "sync_push"])
async def test_sql_in_a_queue_name_is_stored_verbatim(app: Chancy, entry: str) -> None:
    before = await asyncio.to_thread(snapshot, app.dsn)
    await PUSHES[entry](app, ok(queue=SQL, kwargs={"q": "'; SELECT pg_sleep(10); --"}))
    after = await asyncio.to_thread(snapshot, app.dsn)
    diff = changed(before, after)
    rows = await rel.query(
        app, "SELECT queue, kwargs FROM {p}jobs WHERE queue = %s", SQL
    )
    assert (SQL, {"q": "'; SELECT pg_sleep(10); --"}) in rows
    # Only jobs were added (as many as were pushed); nothing else changed.
    assert set(diff) == {"chancy_jobs"} and not diff["chancy_jobs"]["removed"], diff


@pytest.mark.parametrize(
    "prefix", [SQL, 'chancy"; DROP SCHEMA public; --', "", "1abc", "x" * 42, "a-b"]
)
async def test_a_table_prefix_with_sql_in_it_is_refused(
    app: Chancy, prefix: str
) -> None:
    async def call() -> None:
        Chancy(app.dsn, prefix=prefix)

    await refused(app, call, "invalid table prefix")


# ---------------------------------------------------------------------------
# Queues
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BadQueue:
    id: str
    make: Callable[[], Queue]
    match: str
    marks: tuple[Any, ...] = ()


BAD_QUEUES = [
    BadQueue("name-empty", lambda: Queue(""), "name must be a non-empty"),
    BadQueue("name-not-a-string", lambda: Queue(5), "name must be"),  # type: ignore[arg-type]
    BadQueue("concurrency-0", lambda: Queue("q", concurrency=0), "concurrency"),
    BadQueue("concurrency-negative", lambda: Queue("q", concurrency=-3), "concurrency"),
    BadQueue("concurrency-float", lambda: Queue("q", concurrency=1.5), "concurrency"),  # type: ignore[arg-type]
    BadQueue("polling-0", lambda: Queue("q", polling_interval=0), "polling_interval"),
    BadQueue(
        "polling-negative", lambda: Queue("q", polling_interval=-1), "polling_interval"
    ),
    BadQueue("state-unknown", lambda: Queue("q", state="zombie"), "zombie"),  # type: ignore[arg-type]
    BadQueue("rate-limit-alone", lambda: Queue("q", rate_limit=5), "rate_limit_window"),
    BadQueue(
        "executor-unknown",
        lambda: Queue("q", executor="nope.Nope"),
        "cannot be imported",
    ),
    BadQueue(
        "executor-not-one", lambda: Queue("q", executor="json.dumps"), "not an Executor"
    ),
    BadQueue(
        "executor-options-object",
        lambda: Queue("q", executor_options={"x": object()}),
        "executor_options must be JSON",
    ),
    # Accepted on main, or refused only by the database:
    BadQueue(
        "polling-nan",
        lambda: Queue("q", polling_interval=math.nan),
        "polling_interval",
        (),
    ),
    BadQueue(
        "polling-inf",
        lambda: Queue("q", polling_interval=math.inf),
        "polling_interval",
        (),
    ),
    BadQueue(
        "polling-huge",
        lambda: Queue("q", polling_interval=1e300),
        "polling_interval",
        (),
    ),
    BadQueue(
        "polling-bool",
        lambda: Queue("q", polling_interval=True),
        "polling_interval",
        (),
    ),
    BadQueue(
        "concurrency-huge",
        lambda: Queue("q", concurrency=2**40),
        "concurrency",
        (),
    ),
    BadQueue(
        "concurrency-bool",
        lambda: Queue("q", concurrency=True),
        "concurrency",
        (),
    ),
    BadQueue(
        "rate-limit-nan",
        lambda: Queue("q", rate_limit=math.nan, rate_limit_window=1),  # type: ignore[arg-type]
        "rate_limit",
        (),
    ),
    BadQueue(
        "rate-limit-fraction",
        lambda: Queue("q", rate_limit=1.5, rate_limit_window=1),  # type: ignore[arg-type]
        "rate_limit",
        (),
    ),
    BadQueue("name-nul", lambda: Queue("q\x00"), "name", ()),
    BadQueue("name-huge", lambda: Queue("q" * 100_000), "name", ()),
    BadQueue("tag-invalid-regex", lambda: Queue("q", tags={"("}), "tag", ()),
    BadQueue(
        "tag-catastrophic-regex",
        lambda: Queue("q", tags={"(a+)+$"}),
        "tag",
        (),
    ),
    BadQueue("tag-nul", lambda: Queue("q", tags={"a\x00"}), "tag", ()),
    BadQueue(
        "executor-options-nan",
        lambda: Queue("q", executor_options={"x": math.nan}),
        "executor_options",
        (),
    ),
    BadQueue(
        "executor-option-unknown",
        lambda: Queue(
            "q", executor=Chancy.Executor.Async, executor_options={"nope": 1}
        ),
        "nope",
        (),
    ),
    BadQueue(
        "resume-at-string",
        lambda: Queue("q", resume_at="2030"),
        "resume_at",
        (),
    ),  # type: ignore[arg-type]    # Cluster-wide and per-key limits (issue 15).
    BadQueue(
        "global-concurrency-0",
        lambda: Queue("q", global_concurrency=0),
        "global_concurrency",
    ),
    BadQueue(
        "global-concurrency-huge",
        lambda: Queue("q", global_concurrency=2**31),
        "global_concurrency",
    ),
    BadQueue(
        "global-concurrency-float",
        lambda: Queue("q", global_concurrency=2.5),  # type: ignore[arg-type]
        "global_concurrency",
    ),
    BadQueue(
        "key-concurrency-negative",
        lambda: Queue("q", key_concurrency=-1),
        "key_concurrency",
    ),
    BadQueue(
        "key-concurrency-bool",
        lambda: Queue("q", key_concurrency=True),
        "key_concurrency",
    ),
    BadQueue(
        "key-rate-limit-alone",
        lambda: Queue("q", key_rate_limit=5),
        "key_rate_limit_window",
    ),
    BadQueue(
        "key-rate-window-alone",
        lambda: Queue("q", key_rate_limit_window=60),
        "key_rate_limit",
    ),
    BadQueue(
        "key-rate-limit-0",
        lambda: Queue("q", key_rate_limit=0, key_rate_limit_window=60),
        "key_rate_limit",
    ),
    BadQueue(
        "key-rate-window-nan",
        lambda: Queue("q", key_rate_limit=5, key_rate_limit_window=math.nan),  # type: ignore[arg-type]
        "key_rate_limit_window",
    ),
]


@pytest.mark.parametrize("upsert", [False, True], ids=["declare", "upsert"])
@pytest.mark.parametrize(
    "bad", [pytest.param(b, id=b.id, marks=b.marks) for b in BAD_QUEUES]
)
async def test_declare_refuses_a_bad_queue(
    app: Chancy, bad: BadQueue, upsert: bool
) -> None:
    await refused(app, lambda: app.declare(bad.make(), upsert=upsert), bad.match)


async def test_sql_in_a_queue_name_is_declared_verbatim(app: Chancy) -> None:
    before = await asyncio.to_thread(snapshot, app.dsn)
    stored = await app.declare(Queue(SQL, tags={"x'--"}), upsert=True)
    assert stored.name == SQL and stored.tags == {"x'--"}
    assert (await app.get_queue(SQL)).name == SQL
    diff = changed(before, await asyncio.to_thread(snapshot, app.dsn))
    assert set(diff) == {"chancy_queues"} and len(diff["chancy_queues"]["added"]) == 1
    await app.delete_queue(SQL)


@pytest.mark.parametrize(
    ("operation", "match"),
    [
        ("pause_queue", "no queue named"),
        ("resume_queue", "no queue named"),
        ("get_queue", "no queue named"),
    ],
)
async def test_an_unknown_queue_name_is_a_clear_error(
    app: Chancy, operation: str, match: str
) -> None:
    await refused(app, lambda: getattr(app, operation)(SQL), match, errors=(KeyError,))


async def test_unknown_ids_change_nothing(app: Chancy) -> None:
    before = await asyncio.to_thread(snapshot, app.dsn)
    nobody = Reference(uuid.uuid4())
    assert await app.retry_jobs([nobody]) == []
    assert await app.purge_jobs([nobody]) == []
    await app.cancel_job(nobody)
    await app.delete_queue(SQL)
    assert await Cron.unschedule(app, SQL) == []
    with pytest.raises(ValueError, match="UUID"):
        await app.get_job("1; DROP TABLE chancy_jobs")
    with pytest.raises(KeyError, match="no workflow"):
        await WorkflowPlugin.cancel_workflow(app, str(uuid.uuid4()))
    assert await asyncio.to_thread(snapshot, app.dsn) == before


# ---------------------------------------------------------------------------
# Cron schedules
# ---------------------------------------------------------------------------


def keyed(**fields: Any) -> Job:
    return ok(unique_key="rel-cron", **fields)


BAD_SCHEDULES: list[tuple[str, Callable[[Chancy], Awaitable[Any]], str]] = [
    (
        "expression-garbage",
        lambda a: Cron.schedule(a, "not a cron", keyed()),
        "not a cron",
    ),
    (
        "expression-out-of-range",
        lambda a: Cron.schedule(a, "61 * * * *", keyed()),
        "61",
    ),
    (
        "expression-never",
        lambda a: Cron.schedule(a, "0 0 30 2 *", keyed()),
        "matches no date",
    ),
    ("expression-empty", lambda a: Cron.schedule(a, "", keyed()), "empty"),
    (
        "expression-zero-step",
        lambda a: Cron.schedule(a, "*/0 * * * *", keyed()),
        "step",
    ),
    (
        "expression-regex",
        lambda a: Cron.schedule(a, "(a+)+$ * * * *", keyed()),
        "invalid cron",
    ),
    (
        "expression-nul",
        lambda a: Cron.schedule(a, "* * * *\x00 *", keyed()),
        "invalid cron",
    ),
    (
        "expression-huge",
        lambda a: Cron.schedule(a, "* " * 100_000, keyed()),
        "invalid cron",
    ),
    (
        "timezone-unknown",
        lambda a: Cron.schedule(a, "* * * * *", keyed(), timezone="Mars/Olympus"),
        "unknown time zone",
    ),
    (
        "timezone-path",
        lambda a: Cron.schedule(a, "* * * * *", keyed(), timezone="../../etc/passwd"),
        "unknown time zone",
    ),
    (
        "timezone-nul",
        lambda a: Cron.schedule(a, "* * * * *", keyed(), timezone="UTC\x00"),
        "unknown time zone",
    ),
    (
        "no-unique-key",
        lambda a: Cron.schedule(a, "* * * * *", ok()),
        "requires that each job has a unique_key",
    ),
    ("no-job", lambda a: Cron.schedule(a, "* * * * *"), "at least one job"),
    (
        "same-key-twice",
        lambda a: Cron.schedule(a, "* * * * *", keyed(), keyed()),
        "two jobs",
    ),
    (
        "kwargs-object",
        lambda a: Cron.schedule(a, "* * * * *", keyed(kwargs={"x": object()})),
        "JSON",
    ),
    (
        "kwargs-nan",
        lambda a: Cron.schedule(a, "* * * * *", keyed(kwargs={"x": math.nan})),
        "JSON",
    ),
    (
        "kwargs-nul",
        lambda a: Cron.schedule(a, "* * * * *", keyed(kwargs={"x": "\x00"})),
        "NUL",
    ),
    (
        "kwargs-lone-surrogate",
        lambda a: Cron.schedule(a, "* * * * *", keyed(kwargs={"x": "\udfff"})),
        "lone UTF-16",
    ),
    (
        "unique-key-nul",
        lambda a: Cron.schedule(a, "* * * * *", ok(unique_key="k\x00")),
        "NUL",
    ),
    (
        "func-nul",
        lambda a: Cron.schedule(a, "* * * * *", Job(func="m.f\x00", unique_key="k")),
        "NUL",
    ),
    (
        "priority-huge",
        lambda a: Cron.schedule(a, "* * * * *", keyed(priority=2**40)),
        "32 bits",
    ),
    (
        "max-attempts-huge",
        lambda a: Cron.schedule(a, "* * * * *", keyed(max_attempts=2**40)),
        "max_attempts",
    ),
    (
        "meta-not-a-dict",
        lambda a: Cron.schedule(a, "* * * * *", keyed(meta=[1])),
        "meta must be",
    ),
    (
        "limits-strings",
        lambda a: Cron.schedule(a, "* * * * *", keyed(limits=["1s"])),
        "chancy.Limit",
    ),
]


@pytest.mark.parametrize(
    ("call", "match"),
    [pytest.param(call, match, id=case) for case, call, match in BAD_SCHEDULES],
)
async def test_cron_schedule_refuses_bad_input(
    app: Chancy, call: Callable[[Chancy], Awaitable[Any]], match: str
) -> None:
    await refused(app, lambda: call(app), match)


async def test_sql_in_a_cron_key_is_stored_verbatim(app: Chancy) -> None:
    await Cron.schedule(app, "* * * * *", ok(unique_key=SQL, queue=SQL))
    schedules = await Cron.get_schedules(app, unique_keys=[SQL])
    assert schedules[SQL]["job"].queue == SQL
    assert await Cron.unschedule(app, SQL) == [SQL]


# ---------------------------------------------------------------------------
# Workflows
# ---------------------------------------------------------------------------


def step() -> Job:
    return ok()


def _cycle() -> Workflow:
    return (
        Workflow("cycle")
        .add("a", step(), ["b"])
        .add("b", step(), ["c"])
        .add("c", step(), ["a"])
    )


BAD_WORKFLOWS: list[tuple[str, Callable[[], Workflow | Sequence], str]] = [
    ("cycle", _cycle, "dependency cycle: a -> b -> c -> a"),
    (
        "self-dependency",
        lambda: Workflow("self").add("a", step(), ["a"]),
        "dependency cycle",
    ),
    (
        "dangling",
        lambda: Workflow("dangling").add("a", step(), ["ghost"]),
        "unknown steps",
    ),
    ("empty", lambda: Workflow("empty"), "no steps"),
    ("sequence-empty", lambda: Sequence("empty", []), "no steps"),
    ("name-empty", lambda: Workflow("").add("a", step()), "non-empty name"),
    ("name-nul", lambda: Workflow("w\x00").add("a", step()), "NUL"),
    ("step-id-nul", lambda: Workflow("w").add("a\x00", step()), "NUL"),
    (
        "id-not-a-uuid",
        lambda: Workflow("w", id="1; DROP TABLE x").add("a", step()),
        "UUID",
    ),
    (
        "kwargs-object",
        lambda: Workflow("w").add("a", ok(kwargs={"x": object()})),
        "JSON",
    ),
    ("kwargs-nan", lambda: Workflow("w").add("a", ok(kwargs={"x": math.nan})), "JSON"),
    ("kwargs-nul", lambda: Workflow("w").add("a", ok(kwargs={"x": "\x00"})), "NUL"),
    (
        "kwargs-lone-surrogate",
        lambda: Workflow("w").add("a", ok(kwargs={"x": "\ud800"})),
        "lone UTF-16",
    ),
    ("priority-huge", lambda: Workflow("w").add("a", ok(priority=2**40)), "32 bits"),
    ("func-no-dot", lambda: Workflow("w").add("a", Job(func="work")), "import path"),
    ("meta-not-a-dict", lambda: Workflow("w").add("a", ok(meta=[1])), "meta must be"),  # type: ignore[arg-type]
    (
        "sequence-bad-job",
        lambda: Sequence("s", [ok(), ok(kwargs={"x": object()})]),
        "step_1",
    ),
]


@pytest.mark.parametrize(
    ("make", "match"),
    [pytest.param(make, match, id=case) for case, make, match in BAD_WORKFLOWS],
)
async def test_workflow_push_refuses_bad_input(
    app: Chancy, make: Callable[[], Workflow | Sequence], match: str
) -> None:
    async def call() -> None:
        workflow = make()
        if isinstance(workflow, Sequence):
            await workflow.push(app)
        else:
            await WorkflowPlugin.push(app, workflow)

    await refused(app, call, match)


async def test_sql_in_a_workflow_name_is_stored_verbatim(app: Chancy) -> None:
    workflow_id = await WorkflowPlugin.push(app, Workflow(SQL).add(SQL, step()))
    stored = await WorkflowPlugin.fetch_workflow(app, workflow_id)
    assert stored is not None and stored.name == SQL and list(stored.steps) == [SQL]


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------

APP_MODULE = """
import os
from chancy import Chancy

chancy = Chancy(os.environ["CHANCY_RELIABILITY_CLI_DSN"])
"""


@pytest.fixture(scope="module")
def cli_app(
    catalogue_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``--app`` for the command line: a module building ``Chancy(dsn)``."""
    name = f"chancy_rel_cli_{secrets.token_hex(4)}"
    directory = tmp_path_factory.mktemp("cli")
    (directory / f"{name}.py").write_text(APP_MODULE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHANCY_RELIABILITY_CLI_DSN", catalogue_dsn)
        patch.syspath_prepend(str(directory))
        for variable in (
            "CHANCY_APP",
            "CHANCY_DISABLE_PLUGINS",
            "CHANCY_DISABLE_PLUGIN_AUTOLOAD",
        ):
            patch.delenv(variable, raising=False)
        yield f"{name}:chancy"
    sys.modules.pop(name, None)


CLI_CASES: list[Any] = [
    ("push-func-no-dot", ["job", "push", "work"], "import path"),
    ("push-func-empty-part", ["job", "push", "app..work"], "import path"),
    (
        "push-kwargs-not-json",
        ["job", "push", "app.work", "-k", "{nope"],
        "not valid JSON",
    ),
    ("push-kwargs-list", ["job", "push", "app.work", "-k", "[1, 2]"], "JSON object"),
    ("push-kwargs-nan", ["job", "push", "app.work", "-k", '{"x": NaN}'], "not JSON"),
    ("push-kwargs-nul", ["job", "push", "app.work", "-k", '{"x": "\\u0000"}'], "NUL"),
    (
        "push-kwargs-surrogate",
        ["job", "push", "app.work", "-k", '{"x": "\\ud800"}'],
        "lone UTF-16",
    ),
    ("push-priority-huge", ["job", "push", "app.work", "-p", "99999999999"], "32 bits"),
    (
        "push-priority-text",
        ["job", "push", "app.work", "-p", "high"],
        "not a valid integer",
    ),
    ("push-attempts-0", ["job", "push", "app.work", "-m", "0"], "max-attempts"),
    ("push-queue-empty", ["job", "push", "app.work", "-q", ""], "must not be empty"),
    ("push-queue-nul", ["job", "push", "app.work", "-q", "q\x00"], "NUL"),
    ("push-unique-key-nul", ["job", "push", "app.work", "-u", "k\x00"], "NUL"),
    (
        "push-scheduled-at",
        ["job", "push", "app.work", "--scheduled-at", "tomorrow"],
        "ISO 8601",
    ),
    (
        "job-get-not-an-id",
        ["job", "get", "1; DROP TABLE chancy_jobs"],
        "JOB_ID|job id|UUID",
    ),
    (
        "declare-executor-unknown",
        ["queue", "declare", "q", "-e", "nope.Nope"],
        "cannot be imported",
    ),
    (
        "declare-executor-garbage",
        ["queue", "declare", "q", "-e", "nope"],
        "neither one of",
    ),
    ("declare-concurrency-0", ["queue", "declare", "q", "-c", "0"], "concurrency"),
    ("declare-polling-0", ["queue", "declare", "q", "-p", "0"], "polling-interval"),
    ("declare-rate-alone", ["queue", "declare", "q", "-r", "5"], "together"),
    (
        "declare-global-concurrency-0",
        ["queue", "declare", "q", "--global-concurrency", "0"],
        "global_concurrency",
    ),
    (
        "declare-key-rate-alone",
        ["queue", "declare", "q", "--key-rate-limit", "5"],
        "together",
    ),
    ("declare-polling-nan", ["queue", "declare", "q", "-p", "nan"], "polling"),
    ("declare-polling-inf", ["queue", "declare", "q", "-p", "inf"], "polling"),
    (
        "declare-concurrency-huge",
        ["queue", "declare", "q", "-c", "99999999999"],
        "concurrency",
    ),
    ("declare-tag-catastrophic", ["queue", "declare", "q", "-t", "(a+)+$"], "tag"),
    ("declare-tag-invalid", ["queue", "declare", "q", "-t", "("], "tag"),
    ("pause-unknown", ["queue", "pause", SQL], "no queue named"),
    ("resume-unknown", ["queue", "resume", SQL], "no queue named"),
    (
        "cron-add-garbage",
        ["cron", "add", "not a cron", "app.work", "-u", "k"],
        "invalid cron",
    ),
    (
        "cron-add-never",
        ["cron", "add", "0 0 30 2 *", "app.work", "-u", "k"],
        "matches no date",
    ),
    (
        "cron-add-timezone",
        ["cron", "add", "* * * * *", "app.work", "-u", "k", "-z", "Mars/Olympus"],
        "unknown time zone",
    ),
    ("cron-add-func", ["cron", "add", "* * * * *", "work", "-u", "k"], "import path"),
    (
        "cron-add-key-blank",
        ["cron", "add", "* * * * *", "app.work", "-u", " "],
        "unique-key",
    ),
    (
        "cron-add-priority-huge",
        ["cron", "add", "* * * * *", "app.work", "-u", "k", "-p", "99999999999"],
        "32 bits",
    ),
    (
        "cron-add-kwargs-nan",
        ["cron", "add", "* * * * *", "app.work", "-u", "k", "-k", '{"x": NaN}'],
        "JSON",
    ),
    ("cron-remove-unknown", ["cron", "remove", SQL], "no schedule"),
    ("cron-next-never", ["cron", "next", "0 0 30 2 *"], "matches no date"),
]


def _cli_params() -> list[Any]:
    params = []
    for case_id, args, match in CLI_CASES:
        params.append(pytest.param(args, match, id=case_id))
    return params


@pytest.mark.parametrize(("args", "match"), _cli_params())
def test_the_command_line_refuses_bad_input(
    cli_app: str, catalogue_dsn: str, args: list[str], match: str
) -> None:
    before = snapshot(catalogue_dsn)
    result = CliRunner().invoke(cli, ["--app", cli_app, *args])
    output = result.output
    assert result.exit_code not in (0, None), output
    # A message, not a crash: click's own exit, no traceback.
    assert isinstance(result.exception, SystemExit), (output, result.exception)
    assert "Traceback" not in output
    assert re.search(match, output), output
    assert snapshot(catalogue_dsn) == before


def test_the_command_line_stores_sql_in_names_verbatim(
    cli_app: str, catalogue_dsn: str
) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["--app", cli_app, "job", "push", "app.work", "-q", SQL]
    )
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    with psycopg.connect(catalogue_dsn) as conn:
        row = conn.execute(
            "SELECT queue FROM chancy_jobs WHERE id = %s", (job_id,)
        ).fetchone()
    assert row == (SQL,)
    result = runner.invoke(cli, ["--app", cli_app, "queue", "declare", SQL])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["--app", cli_app, "queue", "delete", SQL, "-y"])
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------
# The web API: queue limits (POST /api/v1/queues, PATCH /api/v1/queues/{name})
# ---------------------------------------------------------------------------
# The rest of the web API's bad input (bodies, filters, ids, headers) is in
# packages/chancy-web/tests (test_web_api.py, test_web_security.py).

#: An existing queue the PATCH cases change (declared before each snapshot).
LIMITED = "rel-web-limits"

#: (case, JSON body fields, what the 422's error must say).
BAD_WEB_LIMITS: list[tuple[str, dict[str, Any], str]] = [
    ("global-0", {"global_concurrency": 0}, "global_concurrency must be an integer"),
    (
        "global-negative",
        {"global_concurrency": -3},
        "global_concurrency must be an integer",
    ),
    (
        "global-2-31",
        {"global_concurrency": 2**31},
        "global_concurrency must be an integer from 1 to 2147483647",
    ),
    (
        "global-fraction",
        {"global_concurrency": 1.5},
        "global_concurrency must be an integer",
    ),
    (
        "global-string",
        {"global_concurrency": "3"},
        "global_concurrency must be an integer",
    ),
    ("global-bool", {"global_concurrency": True}, "global_concurrency must be"),
    ("key-0", {"key_concurrency": 0}, "key_concurrency must be an integer"),
    ("key-object", {"key_concurrency": {"n": 1}}, "key_concurrency must be"),
    (
        "key-rate-alone",
        {"key_rate_limit": 5},
        "key_rate_limit and key_rate_limit_window must be set together",
    ),
    (
        "key-window-alone",
        {"key_rate_limit_window": 60},
        "key_rate_limit and key_rate_limit_window must be set together",
    ),
    (
        "key-rate-0",
        {"key_rate_limit": 0, "key_rate_limit_window": 60},
        "key_rate_limit must be an integer",
    ),
    (
        "key-window-negative",
        {"key_rate_limit": 5, "key_rate_limit_window": -1},
        "key_rate_limit_window must be an integer",
    ),
    (
        "key-window-fraction",
        {"key_rate_limit": 5, "key_rate_limit_window": 0.5},
        "key_rate_limit_window must be an integer",
    ),
]


@pytest.fixture
async def web_api(catalogue_dsn: str) -> AsyncIterator[Any]:
    """An httpx client of the web API on the catalogue's database, with a
    bearer token minted by a ``TokenAuthBackend`` (no login row to write)."""
    httpx = pytest.importorskip("httpx")
    from chancy import Worker
    from chancy.plugins.web import Api
    from chancy.plugins.web.auth import TokenAuthBackend

    backend = TokenAuthBackend(secrets.token_urlsafe(32), users={"ops": "x"})
    api = Api(authentication_backend=backend, secret_key=secrets.token_urlsafe(32))
    async with Chancy(catalogue_dsn, plugins=[api], no_default_plugins=True) as app:
        asgi = api.build_starlette_app(Worker(app, register_signal_handlers=False), app)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi),
            base_url="http://test",
            headers={"Authorization": f"Bearer {backend.create_token('ops')}"},
        ) as client:
            await app.declare(Queue(LIMITED, key_concurrency=2), upsert=True)
            yield client


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize(
    ("fields", "match"),
    [pytest.param(fields, match, id=case) for case, fields, match in BAD_WEB_LIMITS],
)
async def test_the_web_api_refuses_bad_queue_limits(
    web_api: Any, catalogue_dsn: str, method: str, fields: dict[str, Any], match: str
) -> None:
    before = await asyncio.to_thread(snapshot, catalogue_dsn)
    if method == "POST":
        response = await web_api.post(
            "/api/v1/queues", json={"name": "rel-web-new", **fields}
        )
    else:
        response = await web_api.patch(f"/api/v1/queues/{LIMITED}", json=fields)
    assert response.status_code == 422, response.text
    assert match in response.json()["error"], response.json()
    assert await asyncio.to_thread(snapshot, catalogue_dsn) == before
