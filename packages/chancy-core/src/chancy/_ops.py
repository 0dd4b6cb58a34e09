"""The client operations of :class:`~chancy.Chancy`, written once for both
async and sync callers.

Each operation is a generator that yields the database work it needs
(:class:`Execute`, :class:`Copy`, :class:`Savepoint`) and receives the
results; :func:`run_async` and :func:`run_sync` carry the work out on an
async or a sync psycopg cursor. So ``Chancy.push`` and ``Chancy.sync_push``
(and every other async/sync pair) share one implementation and cannot drift,
in the style of psycopg's own generators. An error raised by the database is
thrown into the operation, which may handle it.

Pushing is the hot path: :func:`serialise` validates and encodes jobs in a
few microseconds each, and :func:`push` writes them in one statement (a
single job: scalar parameters, prepared), with ``unnest`` for small batches
or with ``COPY`` for large ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import re
import uuid
from collections.abc import Generator, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import attrs
from psycopg.rows import dict_row

from chancy import events
from chancy._encoding import (
    COPY_BINARY_HEADER,
    COPY_BINARY_TRAILER,
    JSON_NUL,
    copy_binary,
    is_json,
    json_encoders,
)
from chancy.job import IsAJob, Job, Limit, Reference, as_job
from chancy.utils import has_surrogate, json_dumps, uuid7_many

if TYPE_CHECKING:
    from psycopg import AsyncCursor, Cursor

    from chancy._sql import Statements

__all__ = [
    "COPY_CHUNK",
    "COPY_THRESHOLD",
    "STREAM_FROM",
    "Copy",
    "Execute",
    "InsertPlan",
    "Savepoint",
    "check_job",
    "run_async",
    "run_sync",
    "serialise",
]

#: Batches of plain (non-unique) jobs at least this large are written with COPY.
COPY_THRESHOLD = 64
#: Rows per ``COPY`` data message: the server parses one chunk while we format
#: the next.
COPY_CHUNK = 250
#: Pushes of at least this many jobs are serialised while they are written:
#: one chunk before the ``COPY`` starts, every further one between two data
#: messages, so Python and the server work at the same time.
STREAM_FROM = 4 * COPY_CHUNK
#: The savepoint a :class:`Savepoint` step opens on a connection that is not
#: in autocommit (PostgreSQL takes a repeated name as the newest one).
_SAVEPOINT = "chancy_savepoint"
_UNDO_SAVEPOINT = f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}; RELEASE SAVEPOINT {_SAVEPOINT}"
#: The range of the jobs table's INTEGER columns (priority, max_attempts).
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


# ---------------------------------------------------------------------------
# The work an operation asks for, and the two drivers
# ---------------------------------------------------------------------------


@attrs.frozen(slots=True)
class Execute:
    """Run one statement; the operation receives the rows it asks for."""

    query: str
    params: Any = None
    #: ``None`` (nothing), ``"one"`` (a row or ``None``) or ``"all"``.
    fetch: Literal["one", "all"] | None = None
    #: Rows as dicts (whatever the cursor's row factory) or as tuples.
    dicts: bool = True
    #: A hot statement: prepare it at once.
    prepare: bool | None = None


@attrs.frozen(slots=True)
class Copy:
    """``COPY … FROM STDIN`` with the given data chunks (written lazily)."""

    statement: str
    chunks: Iterable[bytes]
    #: Set once every chunk is written (async only): the caller may prepare
    #: the next batch while the server ingests this one.
    sent: asyncio.Event | None = None


@attrs.frozen(slots=True)
class Savepoint:
    """Run another operation in a savepoint (a transaction of its own on an
    autocommit connection): if it fails, nothing it wrote remains, the
    caller's transaction goes on and the error is thrown into the operation
    that asked.

    On a connection that is not in autocommit the drivers send ``SAVEPOINT``
    themselves rather than use psycopg's ``transaction()``, which on an idle
    connection would open, and on success commit, a transaction the caller
    meant to commit (or roll back) later.
    """

    operation: Generator[Any, Any, Any]


Operation = Generator[Any, Any, Any]


def _shape(cursor: Any, rows: list[Any], dicts: bool) -> list[Any]:
    if not rows:
        return rows
    if dicts:
        if isinstance(rows[0], dict):
            return rows
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in rows]
    if isinstance(rows[0], dict):
        return [tuple(row.values()) for row in rows]
    return rows


async def run_async(
    cursor: AsyncCursor[Any], operation: Operation, prepare: bool | None = True
) -> Any:
    """Carry ``operation`` out on an async cursor; return its result.

    ``prepare``: ``True`` prepares the statements that ask for it at once;
    ``False`` prepares none (behind a transaction pooler); ``None`` leaves it
    to the connection's ``prepare_threshold``.
    """
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = operation.throw(error) if error is not None else operation.send(send)
        except StopIteration as stop:
            return stop.value
        send, error = None, None
        try:
            if type(step) is Execute:
                await cursor.execute(
                    step.query,
                    step.params,
                    prepare=step.prepare if prepare else prepare,
                )
                if step.fetch == "all":
                    send = _shape(cursor, await cursor.fetchall(), step.dicts)
                elif step.fetch == "one":
                    row = await cursor.fetchone()
                    send = None if row is None else _shape(cursor, [row], step.dicts)[0]
            elif type(step) is Copy:
                async with cursor.copy(step.statement) as copy:
                    for chunk in step.chunks:
                        await copy.write(chunk)
                    if step.sent is not None:
                        step.sent.set()
            elif type(step) is Savepoint:
                connection = cursor.connection
                if connection.autocommit:
                    async with connection.transaction():
                        send = await run_async(cursor, step.operation, prepare)
                else:
                    await cursor.execute(f"SAVEPOINT {_SAVEPOINT}", prepare=False)
                    try:
                        send = await run_async(cursor, step.operation, prepare)
                    except Exception:
                        with contextlib.suppress(Exception):  # raise the first error
                            await cursor.execute(_UNDO_SAVEPOINT, prepare=False)
                        raise
                    await cursor.execute(
                        f"RELEASE SAVEPOINT {_SAVEPOINT}", prepare=False
                    )
            else:  # pragma: no cover - a programming error
                raise TypeError(f"unknown database step {step!r}")
        except Exception as exc:
            error = exc


def run_sync(
    cursor: Cursor[Any], operation: Operation, prepare: bool | None = True
) -> Any:
    """Carry ``operation`` out on a sync cursor; return its result
    (``prepare`` as for :func:`run_async`)."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = operation.throw(error) if error is not None else operation.send(send)
        except StopIteration as stop:
            return stop.value
        send, error = None, None
        try:
            if type(step) is Execute:
                cursor.execute(
                    step.query,
                    step.params,
                    prepare=step.prepare if prepare else prepare,
                )
                if step.fetch == "all":
                    send = _shape(cursor, cursor.fetchall(), step.dicts)
                elif step.fetch == "one":
                    row = cursor.fetchone()
                    send = None if row is None else _shape(cursor, [row], step.dicts)[0]
            elif type(step) is Copy:
                with cursor.copy(step.statement) as copy:
                    for chunk in step.chunks:
                        copy.write(chunk)
            elif type(step) is Savepoint:
                connection = cursor.connection
                if connection.autocommit:
                    with connection.transaction():
                        send = run_sync(cursor, step.operation, prepare)
                else:
                    cursor.execute(f"SAVEPOINT {_SAVEPOINT}", prepare=False)
                    try:
                        send = run_sync(cursor, step.operation, prepare)
                    except Exception:
                        with contextlib.suppress(Exception):  # raise the first error
                            cursor.execute(_UNDO_SAVEPOINT, prepare=False)
                        raise
                    cursor.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}", prepare=False)
            else:  # pragma: no cover - a programming error
                raise TypeError(f"unknown database step {step!r}")
        except Exception as exc:
            error = exc


#: The row factory of the cursors Chancy opens for its operations.
ROW_FACTORY = dict_row


# ---------------------------------------------------------------------------
# Serialising jobs
# ---------------------------------------------------------------------------

#: A UTF-16 surrogate escape without its other half (the encoder writes
#: lowercase hex): PostgreSQL's jsonb refuses those. Characters beyond the
#: BMP are escaped as a valid pair (``\ud83d\ude00``) and pass.
_JSON_LONE_SURROGATE = re.compile(
    r"(?<!\\)(?:\\\\)*"
    r"(?:\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})"
    r"|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2})"
)


def _check_escapes(func: str, kw: str, meta_text: str) -> None:
    """Refuse JSON text that PostgreSQL's jsonb cannot hold: a NUL character,
    or half of a UTF-16 surrogate pair."""
    for what, text in (("kwargs", kw), ("meta", meta_text)):
        if "\\u0000" in text and JSON_NUL.search(text):
            raise ValueError(
                f"cannot store job {func!r}: its {what} contain a NUL character"
                " (\\x00), which PostgreSQL cannot store"
            )
        if "\\ud" in text and _JSON_LONE_SURROGATE.search(text):
            raise ValueError(
                f"cannot store job {func!r}: its {what} contain a lone UTF-16"
                " surrogate (a character from U+D800 to U+DFFF without its pair),"
                " which PostgreSQL cannot store"
            )


def _refuse_surrogates(func: str, what: str, text: str) -> None:
    """Refuse a text column's value holding a surrogate, naming the column."""
    if has_surrogate(text):
        raise ValueError(
            f"job {func!r}: {what} must not contain UTF-16 surrogates (characters"
            " U+D800 to U+DFFF, e.g. half of an emoji decoded with"
            " 'surrogatepass'), which PostgreSQL cannot store"
        )


def _limits_text(job: Job) -> str:
    limits = job.limits
    if not isinstance(limits, list | tuple) or not all(
        isinstance(limit, Limit) for limit in limits
    ):
        raise TypeError(
            f"job {job.func!r}: limits must be a list of chancy.Limit, got {limits!r}"
        )
    return json_encoders.encode([limit.serialize() for limit in limits])


@functools.lru_cache(maxsize=1024)
def _pushed_payload(queue: str) -> str:
    """The ``queue.pushed`` notification for ``queue`` (the same string every push)."""
    return json_dumps({"t": events.QUEUE_PUSHED.name, "q": queue})


def _unique_key(row: tuple[Any, ...]) -> str:
    return row[9]  # type: ignore[no-any-return]


@attrs.define(slots=True)
class InsertPlan:
    """Jobs validated and encoded, ready to be written."""

    #: (id, queue, func, kwargs, limits, meta, priority, max_attempts,
    #: scheduled_at): written with COPY when many
    plain: list[tuple[Any, ...]]
    #: the same plus (None, concurrency_key, store_result): jobs with a
    #: concurrency key or without a stored result
    special: list[tuple[Any, ...]]
    #: the same plus (unique_key, concurrency_key, store_result), sorted by key
    unique: list[tuple[Any, ...]]
    refs: list[Reference | None]
    by_key: dict[str, list[int]]
    payloads: list[str]
    #: Every distinct queue of the jobs, in order of first appearance.
    queues: list[str]
    #: The jobs as given, for ``chancy_jobs_pushed`` (set only when a plugin
    #: implements it).
    jobs: list[Job] | None = None
    #: A streamed plan: the jobs after the first chunk, serialised by
    #: :meth:`plain_chunks` while the ``COPY`` writes the ones before.
    rest: Sequence[Job | IsAJob] = ()

    def plain_chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        """The plain rows, :data:`COPY_CHUNK` at a time. For a streamed plan,
        each chunk after the first is serialised as it is asked for, and every
        other list of the plan is complete once this is exhausted (raises on
        the first bad job)."""
        plain = self.plain
        for start in range(0, len(plain), COPY_CHUNK):
            yield plain[start : start + COPY_CHUNK]
        rest, self.rest = self.rest, ()
        if not rest:
            return
        refs, by_key, unique = self.refs, self.by_key, self.unique
        queues = dict.fromkeys(self.queues)
        for start in range(0, len(rest), COPY_CHUNK):
            more = serialise(rest[start : start + COPY_CHUNK], notifications=False)
            offset = len(refs)
            refs.extend(more.refs)
            self.special.extend(more.special)
            for row in more.unique:
                key = row[9]
                indices = [offset + index for index in more.by_key[key]]
                if key in by_key:  # the same key in an earlier chunk: one job
                    by_key[key].extend(indices)
                else:
                    by_key[key] = indices
                    unique.append(row)
            queues.update(dict.fromkeys(more.queues))
            yield more.plain
        unique.sort(key=_unique_key)
        self.queues = list(queues)
        if self.payloads:  # the app sends notifications
            self.payloads = [_pushed_payload(q) for q in queues]

    @property
    def single_job(self) -> bool:
        """Whether the plan inserts exactly one job (one scalar statement)."""
        lists = len(self.plain) + len(self.special) + len(self.unique)
        return lists == 1 and not self.rest

    def one_job_statement(self, sql: Statements) -> tuple[str, tuple[Any, ...]]:
        """The statement and parameters inserting the plan's only job."""
        if self.unique:
            row = self.unique[0]
            if self.payloads:
                return sql.insert_job_notify, (*row, sql.channel, self.payloads[0])
            return sql.insert_job, row
        row = (*self.plain[0], None, None, True) if self.plain else self.special[0]
        if self.payloads:
            return sql.insert_keyless_job_notify, (*row, sql.channel, self.payloads[0])
        return sql.insert_keyless_job, row

    @property
    def single_statement(self) -> bool:
        """Whether :func:`push` writes everything in one statement (so it may
        run in autocommit)."""
        lists = bool(self.plain) + bool(self.special) + bool(self.unique)
        return lists == 1 and len(self.plain) < COPY_THRESHOLD and not self.rest

    def finish_refs(self, rows: list[Any]) -> list[Reference]:
        """Every job's reference; unique jobs get the id the database kept."""
        refs = self.refs
        if self.by_key:
            for job_id, key in rows:
                for index in self.by_key.get(key, ()):
                    refs[index] = Reference(job_id)
        return refs  # type: ignore[return-value]


def serialise(
    jobs: Iterable[Job | IsAJob], *, notifications: bool = True, stream: bool = False
) -> InsertPlan:
    """Validate and serialise jobs; raises before anything is written.

    Hot path of bulk pushes (a few microseconds per job): valid jobs take
    one chain of exact-type checks; anything else goes through
    :func:`check_job`, which accepts subclasses and names the problem.
    Ids are UUIDv7s in the order of ``jobs``.

    With ``stream`` and at least :data:`STREAM_FROM` jobs whose first chunk
    is mostly plain, only that chunk is serialised here: the plan's
    :meth:`~InsertPlan.plain_chunks` serialises the rest while the ``COPY``
    writes (a bad job among them then raises during the write).
    """
    jobs = jobs if isinstance(jobs, list) else list(jobs)
    if stream and len(jobs) >= STREAM_FROM:
        plan = serialise(jobs[:COPY_CHUNK], notifications=notifications)
        if len(plan.plain) >= COPY_THRESHOLD:
            plan.rest = jobs[COPY_CHUNK:]
            return plan
    ids = uuid7_many(len(jobs))
    plain: list[tuple[Any, ...]] = []
    special: list[tuple[Any, ...]] = []
    unique: list[tuple[Any, ...]] = []
    refs: list[Reference | None] = [None] * len(jobs)
    by_key: dict[str, list[int]] = {}
    queues: dict[str, None] = {}
    dumps = json_encoders.encode
    # Jobs made from one template share their meta and limits objects.
    meta_obj: Any = None
    meta_text = "{}"
    for index, obj in enumerate(jobs):
        job = obj if type(obj) is Job else as_job(obj)
        func = job.func
        queue = job.queue
        kwargs = job.kwargs
        meta = job.meta
        priority = job.priority
        max_attempts = job.max_attempts
        when = job.scheduled_at
        if not (
            type(func) is str
            and "." in func
            and func[0] != "."
            and func[-1] != "."
            and ".." not in func
            and type(queue) is str
            and queue
            and type(kwargs) is dict
            and type(meta) is dict
            and type(priority) is int
            and type(max_attempts) is int
            and _INT_MIN <= priority <= _INT_MAX
            and 1 <= max_attempts <= _INT_MAX
            and type(when) is datetime
            and "\x00" not in func
            and "\x00" not in queue
            and func.isascii()
            and queue.isascii()
        ):
            check_job(job)
            # COPY sends its bytes as they are, read in the connection's
            # client encoding: a non-ASCII queue or func goes through
            # parameters, which psycopg encodes for the connection.
            ascii_names = func.isascii() and queue.isascii()
        else:
            ascii_names = True
        try:
            kw = dumps(kwargs) if kwargs else "{}"
            if meta is not meta_obj:
                meta_text = dumps(meta) if meta else "{}"
                meta_obj = meta
        except (TypeError, ValueError) as exc:
            what = "kwargs" if kwargs and not is_json(kwargs) else "meta"
            raise TypeError(
                f"cannot store job {func!r}: its {what} is not JSON-serialisable ({exc})"
            ) from None
        except RecursionError:
            what = "kwargs" if kwargs and not is_json(kwargs) else "meta"
            raise ValueError(
                f"cannot store job {func!r}: its {what} is nested too deeply to be"
                " stored as JSON"
            ) from None
        if "\\u" in kw or "\\u" in meta_text:
            # Escapes (all non-ASCII text): one search on the hot path.
            _check_escapes(func, kw, meta_text)
        for name in kwargs:
            if type(name) is not str:
                raise TypeError(
                    f"cannot store job {func!r}: kwargs must have string keys"
                )
        limits = _limits_text(job) if job.limits else "[]"
        if queue not in queues:
            queues[queue] = None
        key = job.unique_key
        ckey = job.concurrency_key
        store = job.store_result
        if ckey is not None or store is not True:
            if ckey is not None and (type(ckey) is not str or "\x00" in ckey):
                raise TypeError(
                    f"job {func!r}: concurrency_key must be a string without NUL"
                    f" characters, or None; got {ckey!r}"
                )
            if ckey is not None:
                _refuse_surrogates(func, "concurrency_key", ckey)
            if type(store) is not bool:
                raise TypeError(
                    f"job {func!r}: store_result must be True or False, got {store!r}"
                )
        if key is None and (ckey is not None or not store or not ascii_names):
            # A per-key limit or no stored result (the columns COPY leaves
            # out), or a name COPY could garble.
            job_id = ids[index]
            refs[index] = Reference(job_id)
            special.append(
                (job_id, queue, func, kw, limits, meta_text, priority, max_attempts,
                 when, None, ckey, store)
            )  # fmt: skip
        elif key is None:
            job_id = ids[index]
            refs[index] = Reference(job_id)
            plain.append(
                (
                    job_id,
                    queue,
                    func,
                    kw,
                    limits,
                    meta_text,
                    priority,
                    max_attempts,
                    when,
                )
            )
        elif not isinstance(key, str):
            raise TypeError(f"job {func!r}: unique_key must be a string or None")
        elif "\x00" in key:
            raise ValueError(
                f"job {func!r}: unique_key must not contain NUL characters (\\x00)"
            )
        elif has_surrogate(key):
            _refuse_surrogates(func, "unique_key", key)
        elif key in by_key:
            by_key[key].append(index)  # same key twice in one call: one job
        else:
            by_key[key] = [index]
            unique.append(
                (ids[index], queue, func, kw, limits, meta_text, priority,
                 max_attempts, when, key, ckey, store)
            )  # fmt: skip
    # Lock unique keys in a stable order so concurrent pushes cannot deadlock.
    unique.sort(key=_unique_key)
    payloads = [_pushed_payload(q) for q in queues] if notifications else []
    return InsertPlan(plain, special, unique, refs, by_key, payloads, list(queues))


def check_job(job: Job) -> None:
    """Raise the error naming what is wrong with ``job``'s fields, if anything is."""
    func = job.func
    if not isinstance(func, str) or "." not in func or not all(func.split(".")):
        raise ValueError(
            f"job func must be an import path like 'module.function', got {func!r}"
        )
    queue = job.queue
    if not isinstance(queue, str) or not queue:
        raise ValueError(
            f"job {func!r}: queue must be a non-empty string, got {queue!r}"
        )
    if "\x00" in func or "\x00" in queue:
        raise ValueError(
            f"job {func!r}: func and queue must not contain NUL characters (\\x00)"
        )
    _refuse_surrogates(func, "func", func)
    _refuse_surrogates(func, "queue", queue)
    if type(job.kwargs) is not dict:
        raise TypeError(f"cannot store job {func!r}: kwargs must be a dict")
    if not isinstance(job.meta, dict):
        raise TypeError(
            f"cannot store job {func!r}: meta must be a dict, got"
            f" {type(job.meta).__name__}"
        )
    priority, max_attempts = job.priority, job.max_attempts
    if type(priority) is not int:
        raise TypeError(f"job {func!r}: priority must be an int, got {priority!r}")
    if not _INT_MIN <= priority <= _INT_MAX:
        raise ValueError(
            f"job {func!r}: priority must fit in 32 bits"
            f" ({_INT_MIN}..{_INT_MAX}), got {priority!r}"
        )
    if type(max_attempts) is not int or not 1 <= max_attempts <= _INT_MAX:
        raise ValueError(
            f"job {func!r}: max_attempts must be an int from 1 to {_INT_MAX},"
            f" got {max_attempts!r}"
        )
    if not isinstance(job.scheduled_at, datetime):
        raise TypeError(f"job {func!r}: scheduled_at must be a datetime")


def _columns(rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    return tuple(list(c) for c in zip(*rows, strict=True))


# ---------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------


def insert(
    sql: Statements, plan: InsertPlan, sent: asyncio.Event | None = None
) -> Operation:
    """Write ``plan``; returns the ``(id, unique_key)`` rows of unique jobs.

    Sends the ``queue.pushed`` notifications in the same statement where it
    can (delivered when the transaction commits).
    """
    if plan.single_job:
        # Scalar parameters: binding one-element arrays costs more (see _sql).
        query, params = plan.one_job_statement(sql)
        rows = yield Execute(
            query,
            params,
            fetch="all" if plan.unique else None,
            dicts=False,
            prepare=True,
        )
        return rows or []
    rows = []
    notified = False
    if plan.rest or len(plan.plain) >= COPY_THRESHOLD:
        chunks = itertools.chain(
            (COPY_BINARY_HEADER,),
            (copy_binary(rows) for rows in plan.plain_chunks() if rows),
            (COPY_BINARY_TRAILER,),
        )
        yield Copy(sql.copy_jobs, chunks, sent)
    elif plan.plain:
        params = _columns([(*r, None, None, True) for r in plan.plain])
        if plan.payloads and not plan.unique and not plan.special:
            yield Execute(
                sql.insert_keyless_notify, (*params, sql.channel, plan.payloads)
            )
            notified = True
        else:
            yield Execute(sql.insert_keyless, params)
    if plan.special:
        params = _columns(plan.special)
        if plan.payloads and not plan.unique and not notified:
            yield Execute(
                sql.insert_keyless_notify, (*params, sql.channel, plan.payloads)
            )
            notified = True
        else:
            yield Execute(sql.insert_keyless, params)
    if plan.unique:
        params = _columns(plan.unique)
        if plan.payloads and not notified:
            rows = yield Execute(
                sql.insert_jobs_notify,
                (*params, sql.channel, plan.payloads),
                fetch="all",
                dicts=False,
            )
            notified = True
        else:
            rows = yield Execute(sql.insert_jobs, params, fetch="all", dicts=False)
    if plan.payloads and not notified:
        yield Execute(sql.notify_many, (sql.channel, plan.payloads))
    return rows


def declared_queues(sql: Statements, names: list[str]) -> Operation:
    """The names among ``names`` that are declared queues."""
    rows = yield Execute(sql.declared_queues, (names,), fetch="all", dicts=False)
    return {row[0] for row in rows}


def notify_many(
    sql: Statements, events_: list[tuple[str, dict[str, Any]]]
) -> Operation:
    """Send several notifications in one statement (on commit)."""
    if events_:
        yield Execute(
            sql.notify_many,
            (sql.channel, [json_dumps({"t": e, **p}) for e, p in events_]),
        )


def fetch_one(query: str, params: Any) -> Operation:
    """One row as a dict, or ``None``."""
    return (yield Execute(query, params, fetch="one"))


def fetch_all(query: str, params: Any = None) -> Operation:
    """Every row, as dicts."""
    return (yield Execute(query, params, fetch="all"))


def ref_id(ref: Reference | uuid.UUID | str) -> uuid.UUID:
    """The job id a reference (or UUID, or its string form) stands for."""
    if isinstance(ref, Reference):
        return ref.identifier
    if isinstance(ref, uuid.UUID):
        return ref
    return uuid.UUID(str(ref))
