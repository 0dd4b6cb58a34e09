"""Periodic priority increases of waiting jobs that match a rule."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from functools import cache
from typing import TYPE_CHECKING, ClassVar, Final

from psycopg import sql

from chancy.events import EventSpec
from chancy.maintenance import Alias, MaintenanceService, counted_pass
from chancy.plugin import PluginScope
from chancy.rule import JobRules, SQLAble, compile_rule

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

__all__ = ["REPRIORITIZE_DONE", "Reprioritize"]

IDENTIFIER: Final = "chancy.reprioritize"
DISTRIBUTION: Final = "chancy-reprioritize"
LEADERSHIP: Final = "chancy.leadership"

#: Only jobs in these states are ever reprioritized.
WAITING_STATES: Final = ("pending", "retrying")

# The jobs table's priority is an INTEGER: saturate rather than overflow.
_INT_MIN: Final = -(2**31)
_INT_MAX: Final = 2**31 - 1

REPRIORITIZE_DONE: Final = EventSpec(
    name="reprioritize.done",
    payload={
        "elapsed": "seconds the pass took",
        "rows": "jobs whose priority the pass raised",
    },
    delivery="notified",
    sent_by="Reprioritize after every pass (on the leader, or"
    " Reprioritize.reprioritize())",
)


class _Statements:
    """Reprioritize's statements for one table prefix."""

    __slots__ = ("jobs",)

    def __init__(self, prefix: str) -> None:
        self.jobs = sql.Identifier(f"{prefix}jobs")

    def batch(self, rule: sql.Composable, *, after: bool) -> sql.Composed:
        """Raise one batch of waiting jobs matching ``rule``.

        Parameters, in order: the states, the rule's values, the last id of
        the previous batch (when ``after``), the batch size, the increase.
        """
        return sql.SQL(
            "WITH batch AS ("
            "SELECT id FROM {jobs} WHERE state = ANY(%s) AND ({rule}){after}"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE {jobs} j SET priority ="
            " LEAST(GREATEST(j.priority::bigint + %s, {low}), {high})::integer"
            " FROM batch WHERE j.id = batch.id RETURNING j.id"
        ).format(
            jobs=self.jobs,
            rule=rule,
            after=sql.SQL(" AND id > %s" if after else ""),
            low=sql.Literal(_INT_MIN),
            high=sql.Literal(_INT_MAX),
        )


@cache
def _statements(prefix: str) -> _Statements:
    return _Statements(prefix)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Reprioritize(MaintenanceService):
    """Raises the priority of waiting jobs that match a rule, on the leader.

    Age-based anti-starvation: with ``rule=Age() > 600``, a job still waiting
    ten minutes after it was pushed gains ``priority_increase`` every
    ``check_interval`` seconds until a worker takes it.

    Every ``check_interval`` seconds (the first pass one interval after the
    worker starts leading), a pass walks the ``pending`` and ``retrying`` jobs
    that match ``rule`` in id order, in batches of ``batch_size`` rows, each
    batch its own short transaction that locks its rows with ``FOR UPDATE
    SKIP LOCKED`` and adds ``priority_increase`` to their priority. Each
    batch starts after the last id of the previous one, so a pass raises
    every matching job **once** even though the jobs still match the rule
    afterwards; rows locked by someone else are skipped until the next pass.
    The pass ends with an empty batch and sends ``REPRIORITIZE_DONE``
    (``{"elapsed", "rows"}``).

    ::

        from chancy.plugins.reprioritize import Reprioritize

        Reprioritize(
            (Reprioritize.Rules.Age() > 600) & (Reprioritize.Rules.Queue() == "reports"),
            check_interval=300,
            priority_increase=1,
        )

    :param rule: which waiting jobs to raise (see :mod:`chancy.rule`).
    :param check_interval: seconds between passes.
    :param priority_increase: added to each matching job's priority per pass
        (higher runs first). Priorities saturate at the limits of a 32-bit
        integer.
    :param batch_size: rows updated per transaction.

    A :class:`~chancy.maintenance.MaintenanceService`: ``wake_up()`` runs a
    pass now, ``wait_for_passes(n, timeout=...)`` waits for ``n`` more.
    """

    identifier = IDENTIFIER
    distribution = DISTRIBUTION
    scope = PluginScope.LEADER
    dependencies = (LEADERSHIP,)
    dependency_distributions = {LEADERSHIP: "chancy-leadership"}
    #: The first pass waits one interval, so that a change of leader does
    #: not raise priorities early.
    first_pass_at_start = False

    #: The rules for the jobs table (:class:`chancy.rule.JobRules`).
    Rules: ClassVar[type[JobRules]] = JobRules

    def __init__(
        self,
        rule: SQLAble,
        *,
        check_interval: float = 300,
        priority_increase: int = 1,
        batch_size: int = 1000,
    ) -> None:
        compile_rule(rule)  # a bare column or a non-rule fails here, not at 3 a.m.
        if (
            isinstance(check_interval, bool)
            or not isinstance(check_interval, int | float)
            or not check_interval > 0
        ):
            raise ValueError(
                "Reprioritize check_interval must be a positive number of seconds,"
                f" got {check_interval!r}"
            )
        if not _is_int(priority_increase) or priority_increase == 0:
            raise ValueError(
                "Reprioritize priority_increase must be a non-zero integer,"
                f" got {priority_increase!r}"
            )
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(
                f"Reprioritize batch_size must be an integer of at least 1,"
                f" got {batch_size!r}"
            )
        super().__init__(interval=check_interval)
        #: Which waiting jobs to raise.
        self.rule = rule
        #: Added to each matching job's priority per pass.
        self.priority_increase = priority_increase
        #: Rows updated per transaction.
        self.batch_size = batch_size
        #: Test signals besides ``passes``: rows raised by the last pass and
        #: in total.
        self.last_updated = 0
        self.rows_updated = 0

    #: Seconds between passes (the service's ``interval``).
    check_interval = Alias[float]("interval")
    #: Set after every pass (the service's ``pass_done``).
    reprioritized_event = Alias[asyncio.Event]("pass_done")

    def __repr__(self) -> str:
        return (
            f"<Reprioritize(rule={self.rule!r}, check_interval={self.check_interval!r},"
            f" priority_increase={self.priority_increase!r},"
            f" batch_size={self.batch_size!r})>"
        )

    # -- the loop ---------------------------------------------------------------

    async def run_pass(self, worker: Worker, chancy: Chancy) -> None:
        """One pass on the leader, every ``check_interval`` seconds.

        The first pass waits one interval, so that a change of leader does
        not raise priorities early. :meth:`~chancy.plugin.Plugin.wake_up`
        runs a pass now.
        """
        await self.reprioritize(chancy, log=worker.log)

    # -- a pass -----------------------------------------------------------------

    @counted_pass
    async def reprioritize(
        self, chancy: Chancy, *, log: logging.Logger | None = None
    ) -> int:
        """One pass: raise every matching waiting job once; returns how many.

        Batches of ``batch_size`` rows, each its own transaction, walk the
        matching jobs by id until one comes back empty. Then
        ``reprioritize.done`` is sent and the test signals are updated.
        Callable directly, from any worker: the row locks make concurrent
        passes safe (a job locked by one pass is skipped by the other).
        """
        log = log or chancy.log
        started = time.monotonic()
        rule, params = compile_rule(self.rule)
        statements = _statements(chancy.prefix)
        first = statements.batch(rule, after=False)
        following = statements.batch(rule, after=True)
        states = list(WAITING_STATES)
        updated = 0
        last_id: uuid.UUID | None = None
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            async with conn.cursor() as cursor:
                while True:
                    async with conn.transaction():
                        if last_id is None:
                            await cursor.execute(
                                first,
                                [
                                    states,
                                    *params,
                                    self.batch_size,
                                    self.priority_increase,
                                ],
                            )
                        else:
                            await cursor.execute(
                                following,
                                [
                                    states,
                                    *params,
                                    last_id,
                                    self.batch_size,
                                    self.priority_increase,
                                ],
                            )
                        ids: list[uuid.UUID] = [
                            row[0] for row in await cursor.fetchall()
                        ]
                    if not ids:
                        break
                    updated += len(ids)
                    # PostgreSQL and Python order UUIDs the same way (by bytes).
                    last_id = max(ids)
            elapsed = round(time.monotonic() - started, 6)
            async with conn.transaction(), conn.cursor() as cursor:
                await chancy.notify(
                    cursor,
                    REPRIORITIZE_DONE.name,
                    {"elapsed": elapsed, "rows": updated},
                )
        if updated:
            log.info(
                "Reprioritize: raised the priority of %d job(s) by %d in %.3fs",
                updated,
                self.priority_increase,
                elapsed,
            )
        else:
            log.debug("Reprioritize: no job to raise (%.3fs)", elapsed)
        self.last_updated = updated
        self.rows_updated += updated
        return updated

    #: The original's name for :meth:`reprioritize`.
    reprioritize_jobs = reprioritize
