"""Jobs: the immutable description of work (:class:`Job`), a stored instance of
it (:class:`QueuedJob`), resource :class:`Limit`\\ s, the :class:`Reference`
returned by every push, and the :func:`~chancy.job` decorator."""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs

__all__ = [
    "IsAJob",
    "Job",
    "Limit",
    "QueuedJob",
    "Reference",
    "job",
    "progress_payload",
]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(
            f"scheduled_at must be a datetime, got {type(value).__name__} {value!r}"
        )
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# attrs converters are named, annotated functions (not lambdas) so that mypy's
# attrs plugin can type the generated ``__init__``.
def _limit_type(value: str) -> Limit.Type:
    return Limit.Type(value)


def _kwargs(value: dict[str, Any] | None) -> dict[str, Any]:
    return {} if value is None else value


def _job_id(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _job_state(value: str) -> QueuedJob.State:
    # A dict lookup (filled below QueuedJob) instead of the enum's call
    # machinery: this runs twice per job on the worker's hot path.
    state = _STATE_BY_VALUE.get(value)
    return state if state is not None else QueuedJob.State(value)


@attrs.define(slots=True)
class Limit:
    """A resource limit applied to one run of a job.

    ``Limit(Limit.Type.TIME, 30)`` stops a run after 30 seconds of wall time;
    ``Limit(Limit.Type.MEMORY, 512 * 1024**2)`` caps the address space of the
    process running it (process executor only).
    """

    class Type(str, enum.Enum):
        MEMORY = "memory"
        TIME = "time"

    type_: Limit.Type = attrs.field(converter=_limit_type)
    value: int

    def serialize(self) -> dict[str, Any]:
        return {"t": self.type_.value, "v": self.value}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Limit:
        return cls(cls.Type(data["t"]), data["v"])


class Reference:
    """A handle on a pushed job, returned by every push.

    Compares equal to another reference, to the job's :class:`uuid.UUID` and to
    its canonical string form, and hashes like the UUID.
    """

    __slots__ = ("identifier",)

    def __init__(self, identifier: str | uuid.UUID) -> None:
        if not isinstance(identifier, uuid.UUID):
            identifier = uuid.UUID(str(identifier))
        self.identifier: uuid.UUID = identifier

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reference):
            return self.identifier == other.identifier
        if isinstance(other, uuid.UUID):
            return self.identifier == other
        if isinstance(other, str):
            try:
                return self.identifier == uuid.UUID(other)
            except ValueError:
                return False
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.identifier)

    def __repr__(self) -> str:
        return f"<Reference({str(self.identifier)!r})>"

    def __str__(self) -> str:
        return str(self.identifier)


@attrs.frozen(kw_only=True, slots=True)
class Job:
    """An immutable description of a unit of work.

    Build one with :meth:`Job.from_func` or the :func:`~chancy.job` decorator and
    change it with the ``with_*`` builders, which return modified copies.
    """

    #: Importable name of the function, ``"package.module.function"``.
    func: str
    #: Name of the queue the job runs on.
    queue: str = "default"
    #: Keyword arguments; must be JSON-serialisable.
    kwargs: dict[str, Any] = attrs.field(factory=dict, converter=_kwargs)
    #: Higher runs first.
    priority: int = 0
    #: Total number of runs allowed (1 = no retry).
    max_attempts: int = 1
    #: The job is not run before this time.
    scheduled_at: datetime = attrs.field(factory=_utcnow, converter=_aware)
    #: Resource limits for each run.
    limits: list[Limit] = attrs.field(factory=list)
    #: At most one unfinished job with this key exists at a time.
    unique_key: str | None = None
    #: Free-form metadata, also used by plugins (``retry_settings``, ``workflow_id``…).
    meta: dict[str, Any] = attrs.field(factory=dict)
    #: Jobs sharing a key count against their queue's per-key limits
    #: (``Queue(key_concurrency=…, key_rate_limit=…)``); ``None``: no key.
    concurrency_key: str | None = None
    #: Save the function's return value as :attr:`QueuedJob.result`.
    store_result: bool = True

    @classmethod
    def from_func(cls, func: Callable[..., Any], **kwargs: Any) -> Job:
        """A job running ``func`` (referenced by its module and qualified name)."""
        return cls(func=f"{func.__module__}.{func.__qualname__}", **kwargs)

    def with_priority(self, priority: int) -> Job:
        return attrs.evolve(self, priority=priority)

    def with_max_attempts(self, max_attempts: int) -> Job:
        return attrs.evolve(self, max_attempts=max_attempts)

    def with_scheduled_at(self, scheduled_at: datetime) -> Job:
        return attrs.evolve(self, scheduled_at=scheduled_at)

    def with_limits(self, limits: list[Limit]) -> Job:
        return attrs.evolve(self, limits=limits)

    def with_kwargs(self, **kwargs: Any) -> Job:
        return attrs.evolve(self, kwargs=kwargs)

    def with_unique_key(self, unique_key: str | None) -> Job:
        return attrs.evolve(self, unique_key=unique_key)

    def with_queue(self, queue: str) -> Job:
        return attrs.evolve(self, queue=queue)

    def with_meta(self, meta: dict[str, Any]) -> Job:
        return attrs.evolve(self, meta=meta)

    def with_concurrency_key(self, concurrency_key: str | None) -> Job:
        """A copy whose runs count against the queue's per-key limits under
        ``concurrency_key`` (``"customer:42"``)."""
        return attrs.evolve(self, concurrency_key=concurrency_key)

    def with_store_result(self, store_result: bool) -> Job:
        return attrs.evolve(self, store_result=store_result)

    def pack(self) -> dict[str, Any]:
        """Compact serialisation, as stored by the cron and workflow tables."""
        return {
            "f": self.func,
            "k": self.kwargs,
            "p": self.priority,
            "a": self.max_attempts,
            "s": self.scheduled_at.timestamp() if self.scheduled_at else None,
            "l": [limit.serialize() for limit in self.limits],
            "u": self.unique_key,
            "q": self.queue,
            "m": self.meta,
            # Only when set, so the original's packed form is unchanged.
            **(
                {"ck": self.concurrency_key} if self.concurrency_key is not None else {}
            ),
            **({} if self.store_result else {"sr": False}),
        }

    @classmethod
    def unpack(cls, data: dict[str, Any]) -> Job:
        """The inverse of :meth:`pack`."""
        scheduled = data.get("s")
        return Job(
            func=data["f"],
            kwargs=data.get("k") or {},
            priority=data.get("p", 0),
            max_attempts=data.get("a", 1),
            scheduled_at=(
                datetime.fromtimestamp(scheduled, tz=UTC)
                if scheduled is not None
                else _utcnow()
            ),
            limits=[Limit.deserialize(limit) for limit in data.get("l") or []],
            unique_key=data.get("u"),
            queue=data.get("q", "default"),
            meta=data.get("m") or {},
            concurrency_key=data.get("ck"),
            store_result=data.get("sr", True),
        )


@attrs.frozen(kw_only=True, slots=True)
class QueuedJob(Job):
    """A job as stored in the jobs table.

    The instance passed to plugin hooks and (through a keyword-only parameter
    annotated ``QueuedJob``) to the job function itself is immutable, except
    for ``meta``: changes made to it by the job are saved when it finishes.
    """

    class State(str, enum.Enum):
        """Where a job is in its life; ``str()`` of a state is its value."""

        PENDING = "pending"
        RUNNING = "running"
        FAILED = "failed"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"

    id: uuid.UUID = attrs.field(converter=_job_id)
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    attempts: int = 0
    state: QueuedJob.State = attrs.field(default=State.PENDING, converter=_job_state)
    errors: list[dict[str, Any]] = attrs.field(factory=list)
    #: The execution claim this instance was fetched with; the worker's update
    #: applies only while the row still carries it (fencing). Not user data.
    claim_id: uuid.UUID | None = attrs.field(default=None, eq=False, repr=False)
    #: Monotonic deadline of the current run when it has a time limit.
    deadline: float | None = attrs.field(default=None, eq=False, repr=False)
    #: The function's return value, as stored (JSON); ``None`` when it
    #: returned nothing, has not finished, or has ``store_result=False``.
    result: Any = None
    #: The latest progress the running job reported with :meth:`set_progress`:
    #: ``{"done", "total", "message", "at"}``; kept once it finished.
    progress: dict[str, Any] | None = None

    @classmethod
    def unpack(cls, row: dict[str, Any]) -> QueuedJob:
        """Build from a jobs-table row (as a dict)."""
        return cls(
            id=row["id"],
            func=row["func"],
            queue=row["queue"],
            kwargs=row.get("kwargs") or {},
            priority=row.get("priority") or 0,
            max_attempts=row.get("max_attempts") or 1,
            scheduled_at=row.get("scheduled_at") or _utcnow(),
            limits=[Limit.deserialize(limit) for limit in row.get("limits") or ()],
            unique_key=row.get("unique_key"),
            meta=row.get("meta") or {},
            created_at=row.get("created_at"),
            started_at=row.get("started_at"),
            completed_at=row.get("completed_at"),
            attempts=row.get("attempts") or 0,
            state=row.get("state") or "pending",
            errors=row.get("errors") or [],
            claim_id=row.get("claim_id"),
            concurrency_key=row.get("concurrency_key"),
            store_result=row.get("store_result", True),
            result=row.get("result"),
            progress=row.get("progress"),
        )

    @property
    def time_remaining(self) -> float | None:
        """Seconds left before this run's time limit, or ``None`` without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def checkpoint(self) -> None:
        """Raise :class:`TimeoutError` if this run is past its time limit.

        Long-running synchronous jobs can call it between units of work to
        stop cleanly when their time is up.
        """
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise TimeoutError(f"job {self.func} exceeded its time limit")

    @property
    def is_finished(self) -> bool:
        return self.state in (QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED)

    def set_progress(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report how far the running job got: ``done`` units of ``total``.

        Call it from inside the job, on the ``QueuedJob`` it was given
        (``*, context: QueuedJob``), as often as you like: the worker saves
        the latest report while the job runs, at most once a second, and
        keeps the last one when it finishes. Read it back as :attr:`progress`.
        Works in the async, threaded and process executors.

        :raises ValueError: a number that is negative, not finite, or
            ``done`` beyond ``total``; a message over 1,000 characters.
        :raises RuntimeError: called outside the job's own run.
        """
        payload = progress_payload(done, total, message)
        sink = _progress_sinks.get(self.id)
        if sink is None:
            raise RuntimeError(
                f"set_progress() reports the progress of a running job: job {self.id}"
                " is not running here (call it on the QueuedJob the job was given)"
            )
        sink(self, payload)


#: Where :meth:`QueuedJob.set_progress` sends a running job's reports, by job
#: id: set by the worker (or a process executor's child) for the run.
_progress_sinks: dict[uuid.UUID, Callable[[QueuedJob, dict[str, Any]], None]] = {}

#: Longest progress message, in characters.
MAX_PROGRESS_MESSAGE = 1000


def progress_payload(
    done: float, total: float | None = None, message: str | None = None
) -> dict[str, Any]:
    """A validated progress report: ``{"done", "total", "message", "at"}``."""
    import math

    def number(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"set_progress(): {name} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"set_progress(): {name} must be a finite number >= 0, got {value!r}"
            )
        return value

    done = number("done", done)
    if total is not None:
        total = number("total", total)
        if done > total:
            raise ValueError(
                f"set_progress(): done ({done!r}) is more than total ({total!r})"
            )
    if message is not None:
        if not isinstance(message, str):
            raise TypeError(
                f"set_progress(): message must be a string, got {type(message).__name__}"
            )
        if len(message) > MAX_PROGRESS_MESSAGE:
            raise ValueError(
                f"set_progress(): message is {len(message)} characters long; at most"
                f" {MAX_PROGRESS_MESSAGE} are kept"
            )
        if "\x00" in message:
            raise ValueError("set_progress(): message must not contain NUL characters")
    return {
        "done": done,
        "total": total,
        "message": message,
        "at": _utcnow().isoformat(),
    }


@runtime_checkable
class IsAJob(Protocol):
    """A callable decorated with :func:`~chancy.job`: it carries its template in ``.job``."""

    job: Job

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


F = TypeVar("F", bound=Callable[..., Any])


def job(**options: Any) -> Callable[[F], F]:
    """Decorate a function so it can be pushed directly::

        @job(queue="emails", max_attempts=3)
        def send_welcome(*, user_id: int) -> None: ...

        await chancy.push(send_welcome)                      # template as is
        await chancy.push(send_welcome.job.with_kwargs(user_id=7))

    The function itself is returned unchanged (still callable); its template
    :class:`Job` is stored in ``func.job``.
    """
    if "func" in options:
        raise TypeError("@job() takes every Job field except 'func'")

    def decorator(func: F) -> F:
        func.job = Job.from_func(func, **options)  # type: ignore[attr-defined]
        return func

    return decorator


def as_job(obj: Job | IsAJob) -> Job:
    """Accept a :class:`Job` or a function decorated with :func:`~chancy.job`."""
    if isinstance(obj, Job):
        return obj
    template = getattr(obj, "job", None)
    if isinstance(template, Job):
        return template
    raise TypeError(
        f"expected a Job or a function decorated with @job, got {type(obj).__name__}: {obj!r}"
    )


_STATE_BY_VALUE: dict[str, QueuedJob.State] = {s.value: s for s in QueuedJob.State}
_REPLACERS: dict[type, Any] = {}


def _replacer(cls: type) -> Any:
    """Straight-line copy code for ``cls``'s fields (generated once per class,
    as attrs generates ``__init__``): no per-field loop or ``getattr`` call."""
    found = _REPLACERS.get(cls)
    if found is None:
        names = [f.name for f in attrs.fields(cls)]
        lines = ["def replace(job, changes):", "    new = _new(_cls)"]
        lines += [f"    _set(new, {name!r}, job.{name})" for name in names]
        lines += [
            "    for name, value in changes.items():",
            "        _set(new, name, value)",
        ]
        lines += ["    return new"]
        namespace: dict[str, Any] = {
            "_new": object.__new__,
            "_set": object.__setattr__,
            "_cls": cls,
        }
        exec("\n".join(lines), namespace)  # noqa: S102 - code built from field names
        found = _REPLACERS[cls] = namespace["replace"]
    return found


def replace_job(job: QueuedJob, /, **changes: Any) -> QueuedJob:
    """``attrs.evolve`` for the worker's hot path: a copy of ``job`` with
    ``changes``, without running converters or validators again.

    Only for values that are already in their stored form (a ``State``
    member, an aware ``datetime``…), as the executors produce them.
    """
    cls = type(job)
    try:
        return _replacer(cls)(job, changes)  # type: ignore[no-any-return]
    except AttributeError:
        # A slotted class has no room for an unknown name: checked only
        # then, not on every call of the hot path.
        unknown = changes.keys() - _field_set(cls)
        if unknown:
            raise TypeError(
                f"{cls.__name__} has no field(s) {sorted(unknown)}"
            ) from None
        raise


_FIELD_SETS: dict[type, frozenset[str]] = {}


def _field_set(cls: type) -> frozenset[str]:
    found = _FIELD_SETS.get(cls)
    if found is None:
        found = _FIELD_SETS[cls] = frozenset(f.name for f in attrs.fields(cls))
    return found


def job_from_fetched_row(row: dict[str, Any]) -> QueuedJob:
    """A :class:`QueuedJob` from a whole row of the jobs table as a fetch
    returned it (``{prefix}fetch_limited``'s ``RETURNING j.*``).

    The values come straight from the jobs table (UUIDs, aware datetimes,
    decoded JSON), so the converters of :meth:`QueuedJob.unpack` are skipped;
    the result is equal to ``QueuedJob.unpack(row)``.
    """
    new = _fetched_job(
        tuple([row[column] for column in FETCHED_COLUMNS]),
        row["queue"],
        row["claim_id"],
    )
    state = row["state"]
    if state != "running":
        _put(new, "state", _STATE_BY_VALUE.get(state) or _job_state(state or "pending"))
    _put(new, "result", row.get("result"))
    return new


#: The columns the worker's plain fetch statement returns, in this order
#: (``RETURNING j.id, j.func, …``). The queue, the state (``running``) and
#: the execution claim are not among them: the fetch sets them, so the
#: worker already knows them.
FETCHED_COLUMNS = (
    "id",
    "func",
    "kwargs",
    "limits",
    "meta",
    "priority",
    "attempts",
    "max_attempts",
    "created_at",
    "started_at",
    "completed_at",
    "scheduled_at",
    "unique_key",
    "errors",
    "concurrency_key",
    "store_result",
    "progress",
)

_RUNNING = QueuedJob.State.RUNNING
_new_object = object.__new__
_put = object.__setattr__


def _fetched_job(values: Any, queue: str, claim: uuid.UUID | None) -> QueuedJob:
    """A ``running`` :class:`QueuedJob` of ``queue`` claimed under ``claim``,
    from the :data:`FETCHED_COLUMNS` values of its row."""
    (
        id_,
        func,
        kwargs,
        limits,
        meta,
        priority,
        attempts,
        max_attempts,
        created_at,
        started_at,
        completed_at,
        scheduled_at,
        unique_key,
        errors,
        concurrency_key,
        store_result,
        progress,
    ) = values
    put = _put
    new = _new_object(QueuedJob)
    put(new, "func", func)
    put(new, "queue", queue)
    put(new, "kwargs", kwargs or {})
    put(new, "priority", priority or 0)
    put(new, "max_attempts", max_attempts or 1)
    put(new, "scheduled_at", scheduled_at or _utcnow())
    put(new, "limits", [Limit.deserialize(x) for x in limits] if limits else [])
    put(new, "unique_key", unique_key)
    put(new, "meta", meta or {})
    put(new, "concurrency_key", concurrency_key)
    put(new, "store_result", store_result)
    put(new, "id", id_)
    put(new, "created_at", created_at)
    put(new, "started_at", started_at)
    put(new, "completed_at", completed_at)
    put(new, "attempts", attempts or 0)
    put(new, "state", _RUNNING)
    put(new, "errors", errors or [])
    put(new, "claim_id", claim)
    put(new, "deadline", None)
    put(new, "result", None)
    put(new, "progress", progress)
    return new


def fetched_jobs(
    queue: str, claim: uuid.UUID
) -> Callable[[Any], Callable[..., QueuedJob]]:
    """A psycopg row factory making a :class:`QueuedJob` of each row of the
    worker's plain fetch statement (columns :data:`FETCHED_COLUMNS`), which
    claimed it for ``queue`` under ``claim``, without building a dict (or a
    tuple) per row first."""

    def make(values: Any) -> QueuedJob:
        return _fetched_job(values, queue, claim)

    def factory(cursor: Any) -> Callable[..., QueuedJob]:
        return make

    return factory


# _fetched_job sets every field by hand: a new field must be added there.
_FETCHED_FIELDS = frozenset(
    [
        "func",
        "queue",
        "kwargs",
        "priority",
        "max_attempts",
        "scheduled_at",
        "limits",
        "unique_key",
        "meta",
        "concurrency_key",
        "store_result",
        "id",
        "created_at",
        "started_at",
        "completed_at",
        "attempts",
        "state",
        "errors",
        "claim_id",
        "deadline",
        "result",
        "progress",
    ]
)
assert _field_set(QueuedJob) == _FETCHED_FIELDS, "update _fetched_job"
