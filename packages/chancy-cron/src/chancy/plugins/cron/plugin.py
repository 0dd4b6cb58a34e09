"""The :class:`Cron` plugin: schedules stored in ``{prefix}cron``, fired by the workers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from psycopg import AsyncCursor, sql
from psycopg.rows import dict_row

from chancy.events import EventSpec
from chancy.job import IsAJob, Job, as_job
from chancy.maintenance import Alias, MaintenanceService, counted_pass
from chancy.plugins.cron.schedule import (
    CronExpression,
    next_run,
    parse,
    timezone_name,
    validate,
)

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.hub import Event
    from chancy.worker import Worker

__all__ = ["CRON_SCHEDULED", "Cron"]

IDENTIFIER: Final = "chancy.cron"
DISTRIBUTION: Final = "chancy-cron"
#: With a plugin of this identifier in the app, only the leader fires.
LEADERSHIP: Final = "chancy.leadership"

#: Schedules fired per transaction; a pass keeps going while batches are full.
BATCH_SIZE: Final = 500
#: A schedule that can no longer be evaluated (its time zone vanished from
#: tzdata, its stored job is corrupt) is retried after this long.
BROKEN_RETRY: Final = timedelta(hours=1)
#: Added to the wait until the earliest ``next_run`` so the pass finds it due.
_SLACK: Final = 0.005
#: A due schedule locked by another pass (another worker firing it) is looked
#: at again this soon, to learn its new ``next_run`` (or fire it if that pass
#: rolled back), instead of sleeping a whole ``poll_interval``.
LOCKED_RETRY: Final = 0.25

_COLUMNS: Final = ("unique_key", "job", "cron", "timezone", "last_run", "next_run")

CRON_SCHEDULED: Final = EventSpec(
    name="cron.scheduled",
    payload={"n": "how many schedules were added or replaced"},
    delivery="notified",
    sent_by="Cron.schedule() and schedule_ex(), on commit; the firing workers"
    " wake up, since a new schedule may be due before they would",
)


class _Statements:
    """The cron statements for one table prefix."""

    __slots__ = (
        "advance",
        "delay",
        "due",
        "now",
        "postpone",
        "remove",
        "select",
        "select_keys",
        "upsert",
    )

    def __init__(self, prefix: str) -> None:
        table = sql.Identifier(f"{prefix}cron")
        columns = sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
        self.now = sql.SQL("SELECT NOW() AS now")
        self.upsert = sql.SQL(
            "INSERT INTO {t} (unique_key, job, cron, timezone, next_run)"
            " SELECT * FROM unnest(%s::text[], %s::jsonb[], %s::text[], %s::text[],"
            " %s::timestamptz[])"
            " ON CONFLICT (unique_key) DO UPDATE SET job = EXCLUDED.job,"
            " cron = EXCLUDED.cron, timezone = EXCLUDED.timezone,"
            " next_run = EXCLUDED.next_run"
        ).format(t=table)
        self.remove = sql.SQL(
            "DELETE FROM {t} WHERE unique_key = ANY(%s::text[]) RETURNING unique_key"
        ).format(t=table)
        self.select = sql.SQL(
            "SELECT {c} FROM {t} ORDER BY next_run, unique_key"
        ).format(c=columns, t=table)
        self.select_keys = sql.SQL(
            "SELECT {c} FROM {t} WHERE unique_key = ANY(%s::text[])"
            " ORDER BY next_run, unique_key"
        ).format(c=columns, t=table)
        # Row locks make firing exactly-once: a row locked by another pass
        # (another worker, or a former leader still committing) is skipped,
        # and its next_run is advanced in the same transaction as the push.
        self.due = sql.SQL(
            "SELECT unique_key, job, cron, timezone FROM {t}"
            " WHERE next_run <= NOW() ORDER BY next_run LIMIT %s FOR UPDATE SKIP LOCKED"
        ).format(t=table)
        self.advance = sql.SQL(
            "UPDATE {t} AS c SET last_run = NOW(), next_run = d.next_run"
            " FROM unnest(%s::text[], %s::timestamptz[]) AS d(unique_key, next_run)"
            " WHERE c.unique_key = d.unique_key"
        ).format(t=table)
        self.postpone = sql.SQL(
            "UPDATE {t} SET next_run = %s WHERE unique_key = ANY(%s::text[])"
        ).format(t=table)
        # Rows still due after this pass are locked by another pass: the
        # caller looks again soon rather than waiting for a future next_run.
        # Both subqueries are answered from the next_run index.
        self.delay = sql.SQL(
            "SELECT EXTRACT(EPOCH FROM (SELECT min(next_run) FROM {t}"
            " WHERE next_run > NOW()) - clock_timestamp())::float8 AS wait,"
            " EXISTS (SELECT 1 FROM {t} WHERE next_run <= NOW()) AS locked"
        ).format(t=table)


@cache
def _statements(prefix: str) -> _Statements:
    return _Statements(prefix)


def _sql(chancy: Chancy) -> _Statements:
    return _statements(chancy.prefix)


def _as_dict(row: Any, names: Sequence[str]) -> dict[str, Any]:
    return dict(row) if isinstance(row, dict) else dict(zip(names, row, strict=True))


def _packed(job: Job) -> str:
    """The job as stored in the ``job`` column; raises if it cannot be stored."""
    func = job.func
    if not isinstance(func, str) or "." not in func or not all(func.split(".")):
        raise ValueError(
            f"job func must be an import path like 'module.function', got {func!r}"
        )
    if not isinstance(job.queue, str) or not job.queue:
        raise ValueError(
            f"job {func!r}: queue must be a non-empty string, got {job.queue!r}"
        )
    if not isinstance(job.unique_key, str):
        raise TypeError(
            f"job {func!r}: unique_key must be a string, got {job.unique_key!r}"
        )
    if not isinstance(job.kwargs, dict) or not all(
        isinstance(k, str) for k in job.kwargs
    ):
        raise TypeError(
            f"cannot schedule job {func!r}: kwargs must be a dict with string keys"
        )
    if not isinstance(job.priority, int) or isinstance(job.priority, bool):
        raise TypeError(f"job {func!r}: priority must be an int, got {job.priority!r}")
    if (
        not isinstance(job.max_attempts, int)
        or isinstance(job.max_attempts, bool)
        or job.max_attempts < 1
    ):
        raise ValueError(
            f"job {func!r}: max_attempts must be an int >= 1, got {job.max_attempts!r}"
        )
    try:
        return json.dumps(job.pack(), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot schedule job {func!r} ({job.unique_key!r}): it cannot be stored"
            f" as JSON ({exc})"
        ) from None


class _Prepared:
    """Validated arguments of one :meth:`Cron.schedule` call."""

    __slots__ = ("cron", "jobs", "keys", "packed", "timezone")

    def __init__(
        self, cron: CronExpression, timezone: str, jobs: list[Job], packed: list[str]
    ) -> None:
        self.cron = cron
        self.timezone = timezone
        self.jobs = jobs
        self.packed = packed
        self.keys = [str(job.unique_key) for job in jobs]


class Cron(MaintenanceService):
    """Runs jobs on cron schedules; the schedules live in the database.

    Schedules are managed from any process with the class methods
    :meth:`schedule`, :meth:`unschedule` and :meth:`get_schedules` (and their
    ``_ex`` variants, which use the caller's cursor and transaction); no
    worker is needed for that. The plugin's loop fires the due schedules
    every ``poll_interval`` seconds, or earlier when a schedule is due sooner
    (or was just added). It runs in every worker when the app has no
    leadership plugin, and only in the leader when it has one
    (``chancy.leadership``). Either way each schedule fires exactly once per
    due time, whatever the number of workers and across leader failover: the
    due rows are claimed with ``FOR UPDATE SKIP LOCKED`` and their jobs pushed
    and their ``next_run`` advanced in the same transaction. Missed runs (no
    worker for a while) collapse into a single run.

    A :class:`~chancy.maintenance.MaintenanceService`. Test signals:
    ``passes`` and ``pass_done`` (one pass finished),
    ``wait_for_passes`` (``wait_for_pass`` is its older name),
    :attr:`fired_count` and :attr:`fired` (a pass fired at least one
    schedule), :attr:`last_fired` (the keys fired by the last pass).

    :param poll_interval: longest sleep, in seconds, between two passes.
    """

    identifier = IDENTIFIER
    distribution = DISTRIBUTION
    default_enabled = True
    tables = ("cron",)
    migrations_key = "cron"
    migrations_package = "chancy.plugins.cron.migrations"
    #: Position among the default plugins (spec: leadership, pruner,
    #: recovery, metrics, workflow, then the others).
    default_order = 60

    def __init__(self, *, poll_interval: float = 60) -> None:
        if isinstance(poll_interval, bool) or not isinstance(
            poll_interval, (int, float)
        ):
            raise TypeError(
                f"Cron poll_interval must be a number, got {poll_interval!r}"
            )
        if poll_interval <= 0:
            raise ValueError(
                f"Cron poll_interval must be positive, got {poll_interval!r}"
            )
        super().__init__(interval=poll_interval)
        #: Schedules fired by this instance since it was created.
        self.fired_count = 0
        #: Set after a pass that fired at least one schedule.
        self.fired = asyncio.Event()
        #: Unique keys fired by the latest pass.
        self.last_fired: list[str] = []

    #: Longest sleep between two passes, in seconds (the service's ``interval``).
    poll_interval = Alias[float]("interval")

    def __repr__(self) -> str:
        return f"<Cron(poll_interval={self.poll_interval!r})>"

    def api_plugin(self) -> str | None:
        """``GET /api/v1/crons`` in the web API (``chancy-web``)."""
        return "chancy.plugins.cron.api.CronApiPlugin"

    # -- managing schedules (any process) ---------------------------------------

    @staticmethod
    def _prepare(
        chancy: Chancy,
        cron: str | CronExpression,
        jobs: Sequence[Job | IsAJob],
        timezone: str | tzinfo,
    ) -> _Prepared:
        """Validate everything before anything is written; each job as
        :meth:`Chancy.push` will when the schedule fires."""
        expression = parse(cron)
        name = timezone_name(timezone)
        validate(expression, name)  # no run at all (Feb 30) fails here
        if not jobs:
            raise ValueError("Cron.schedule() needs at least one job to schedule")
        resolved: list[Job] = []
        seen: set[str] = set()
        for obj in jobs:
            job = as_job(obj)
            if not job.unique_key:
                raise ValueError(
                    f"Cron.schedule() requires that each job has a unique_key; {job.func!r}"
                    " has none (use job.with_unique_key('...') or @job(unique_key='...'))"
                )
            if job.unique_key in seen:
                raise ValueError(
                    f"Cron.schedule() got two jobs with the unique_key {job.unique_key!r}"
                )
            seen.add(job.unique_key)
            chancy.check_job(job)
            resolved.append(job)
        packed = [_packed(job) for job in resolved]
        return _Prepared(expression, name, resolved, packed)

    @classmethod
    async def schedule(
        cls,
        chancy: Chancy,
        cron: str,
        *jobs: Job | IsAJob,
        timezone: str | tzinfo = "UTC",
    ) -> None:
        """Run each job on the schedule ``cron``, in the time zone ``timezone``.

        Each job is stored under its ``unique_key``; scheduling a key again
        replaces its expression, job, time zone and next run (its last run is
        kept). The pushed jobs keep their unique key, so a run that is still
        pending or running when the next one is due makes that push a no-op.

        :param cron: a 5-field, 6-field (seconds first) or ``@alias`` expression.
        :param timezone: an IANA name or a :class:`zoneinfo.ZoneInfo`.
        :raises ValueError: a job has no ``unique_key`` ("requires that each
            job has a unique_key"), the expression or the time zone is invalid
            (the message names it), or the expression never matches.
        :raises TypeError: a job cannot be stored (arguments that are not
            JSON-serialisable). Nothing is written when anything is invalid.
        """
        prepared = cls._prepare(chancy, cron, jobs, timezone)
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            async with conn.transaction(), conn.cursor() as cursor:
                await cls._upsert(chancy, cursor, prepared)

    @classmethod
    async def schedule_ex(
        cls,
        chancy: Chancy,
        cursor: AsyncCursor[Any],
        cron: str,
        *jobs: Job | IsAJob,
        timezone: str | tzinfo = "UTC",
    ) -> None:
        """:meth:`schedule` on the caller's cursor: visible when the caller commits."""
        await cls._upsert(chancy, cursor, cls._prepare(chancy, cron, jobs, timezone))

    @classmethod
    async def _upsert(
        cls, chancy: Chancy, cursor: AsyncCursor[Any], prepared: _Prepared
    ) -> None:
        await cursor.execute(_sql(chancy).now)
        row = await cursor.fetchone()
        now: datetime = row["now"] if isinstance(row, dict) else row[0]  # type: ignore[index]
        first = next_run(prepared.cron, now, prepared.timezone)
        # A stable order: concurrent calls lock the same keys in the same order.
        order = sorted(range(len(prepared.keys)), key=lambda i: prepared.keys[i])
        count = len(order)
        await cursor.execute(
            _sql(chancy).upsert,
            (
                [prepared.keys[i] for i in order],
                [prepared.packed[i] for i in order],
                [prepared.cron.expression] * count,
                [prepared.timezone] * count,
                [first] * count,
            ),
        )
        await chancy.notify(cursor, CRON_SCHEDULED.name, {"n": count})
        chancy.log.info(
            "Cron: scheduled %s on %r (%s); next run at %s",
            ", ".join(repr(k) for k in prepared.keys),
            prepared.cron.expression,
            prepared.timezone,
            first.isoformat(),
        )

    @classmethod
    async def unschedule(cls, chancy: Chancy, *unique_keys: str) -> list[str]:
        """Remove the schedules with these keys; returns the keys that existed.

        Jobs already pushed by them are not touched.
        """
        if not unique_keys:
            return []
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            async with conn.transaction(), conn.cursor() as cursor:
                return await cls.unschedule_ex(chancy, cursor, *unique_keys)

    @classmethod
    async def unschedule_ex(
        cls, chancy: Chancy, cursor: AsyncCursor[Any], *unique_keys: str
    ) -> list[str]:
        """:meth:`unschedule` on the caller's cursor."""
        if not unique_keys:
            return []
        await cursor.execute(_sql(chancy).remove, (sorted(unique_keys),))
        removed = sorted(
            _as_dict(r, ("unique_key",))["unique_key"] for r in await cursor.fetchall()
        )
        if removed:
            chancy.log.info("Cron: unscheduled %s", ", ".join(repr(k) for k in removed))
        return removed

    @classmethod
    async def get_schedules(
        cls, chancy: Chancy, *, unique_keys: list[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Schedules by unique key, soonest first (all of them when ``unique_keys`` is ``None``).

        Each value is ``{"unique_key", "job" (a Job), "cron", "timezone",
        "last_run", "next_run"}``.
        """
        await chancy.ensure_open()
        async with (
            chancy.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            return await cls.get_schedules_ex(chancy, cursor, unique_keys=unique_keys)

    @classmethod
    async def get_schedules_ex(
        cls,
        chancy: Chancy,
        cursor: AsyncCursor[Any],
        *,
        unique_keys: list[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """:meth:`get_schedules` on the caller's cursor."""
        if isinstance(unique_keys, str):
            raise TypeError("unique_keys must be a list of keys, not a string")
        statements = _sql(chancy)
        if unique_keys is None:
            await cursor.execute(statements.select)
        else:
            await cursor.execute(statements.select_keys, (list(unique_keys),))
        result: dict[str, dict[str, Any]] = {}
        for raw in await cursor.fetchall():
            row = _as_dict(raw, _COLUMNS)
            row["job"] = Job.unpack(row["job"])
            result[row["unique_key"]] = row
        return result

    # -- firing (every worker, or the leader) -------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """Fire due schedules until cancelled (on shutdown).

        Without a leadership plugin in the app, every worker runs passes and
        the row locks hand each due schedule to one of them. With one, a
        worker runs a pass only while it leads: before each pass it waits
        for ``worker.is_leader``, so a worker that lost the lead stops firing
        at its next wake-up (a pass already under way finishes; the row locks
        keep it from firing anything twice).
        """
        chancy.log.info(
            "Cron: firing due schedules %s",
            "while this worker leads (a leadership plugin is enabled)"
            if LEADERSHIP in chancy.plugins
            else "on this worker, as on every worker (no leadership plugin);"
            " row locks give each due run to one worker",
        )

        def on_scheduled(event: Event) -> None:
            self.wake_up()  # a new schedule may be due before we would wake

        worker.hub.on(CRON_SCHEDULED.name, on_scheduled)
        try:
            await super().run(worker, chancy)
        finally:
            worker.hub.remove(CRON_SCHEDULED.name, on_scheduled)

    async def run_pass(self, worker: Worker, chancy: Chancy) -> float | None:
        """One pass (waiting to lead first when the app has a leadership
        plugin); the next comes when the earliest schedule is due, at most
        ``poll_interval`` later."""
        if LEADERSHIP in chancy.plugins and not worker.is_leader.is_set():
            await self.wait_for_leader(worker)
        _, wait = await self._pass(chancy)
        return None if wait is None else max(0.0, wait + _SLACK)

    @counted_pass
    async def run_once(self, chancy: Chancy) -> list[str]:
        """One pass: fire every due schedule that no one else is firing.

        Returns the unique keys fired. Safe to call from any number of
        processes at once; each due run is fired by exactly one of them.
        """
        fired, _ = await self._pass(chancy)
        return fired

    async def _pass(self, chancy: Chancy) -> tuple[list[str], float | None]:
        """Fire what is due; returns the keys fired and how long to sleep: the
        seconds until the next due time, at most :data:`LOCKED_RETRY` while
        another pass holds a due row, ``None`` when nothing is scheduled."""
        fired: list[str] = []
        wait: float | None = None
        try:
            await chancy.ensure_open()
            while True:
                keys, selected, wait = await self._fire_batch(chancy)
                fired.extend(keys)
                if selected < BATCH_SIZE or not keys:
                    break
        finally:
            # What the committed batches fired, even if a later one failed.
            self.last_fired = fired
            self.fired_count += len(fired)
            if fired:
                self.fired.set()
        return fired, wait

    async def _fire_batch(self, chancy: Chancy) -> tuple[list[str], int, float | None]:
        statements = _sql(chancy)
        log = chancy.log
        async with chancy.pool.connection() as conn:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(statements.now)
                now_row = await cursor.fetchone()
                assert now_row is not None
                now: datetime = now_row["now"]
                await cursor.execute(statements.due, (BATCH_SIZE,))
                rows = await cursor.fetchall()
                jobs: list[Job] = []
                keys: list[str] = []
                runs: list[datetime] = []
                broken: list[str] = []
                for row in rows:
                    key = row["unique_key"]
                    try:
                        job = Job.unpack(row["job"]).with_scheduled_at(now)
                        if job.unique_key is None:
                            job = job.with_unique_key(key)
                        # One job that push refuses must not fail the batch
                        # (every other due schedule with it) on every pass.
                        chancy.check_job(job)
                        following = next_run(row["cron"], now, row["timezone"])
                    except Exception as exc:
                        log.error(
                            "Cron: the schedule %r cannot fire (%s: %s); trying again in %s",
                            key,
                            type(exc).__name__,
                            exc,
                            BROKEN_RETRY,
                        )
                        broken.append(key)
                        continue
                    jobs.append(job)
                    keys.append(key)
                    runs.append(following)
                if jobs:
                    pushed: list[Job | IsAJob] = list(jobs)
                    await chancy.push_many_ex(cursor, pushed)
                    await cursor.execute(statements.advance, (keys, runs))
                if broken:
                    await cursor.execute(
                        statements.postpone, (now + BROKEN_RETRY, broken)
                    )
                await cursor.execute(statements.delay)
                delay_row = await cursor.fetchone()
                assert delay_row is not None
                wait: float | None = delay_row["wait"]
                if delay_row["locked"]:
                    # Another pass holds a due row: look again soon.
                    wait = LOCKED_RETRY if wait is None else min(wait, LOCKED_RETRY)
        for key, job, following in zip(keys, jobs, runs, strict=True):
            log.debug(
                "Cron: fired %r (%s on queue %r); next run at %s",
                key,
                job.func,
                job.queue,
                following.isoformat(),
            )
        return keys, len(rows), wait

    async def wait_for_pass(
        self, *, passes: int = 1, timeout: float | None = None
    ) -> None:
        """:meth:`~chancy.maintenance.MaintenanceService.wait_for_passes`
        under its older name: until ``passes`` more passes finished."""
        await self.wait_for_passes(passes, timeout=timeout)
