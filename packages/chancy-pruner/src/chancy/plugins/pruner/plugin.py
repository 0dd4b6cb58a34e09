"""Removal of finished jobs that match a rule."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Final

from psycopg import sql

from chancy.events import EventSpec
from chancy.maintenance import Alias, MaintenanceService, counted_pass
from chancy.plugin import PluginScope
from chancy.rule import JobRules, SQLAble, compile_rule

if TYPE_CHECKING:
    from psycopg import AsyncCursor

    from chancy.app import Chancy
    from chancy.worker import Worker

__all__ = ["PRUNER_REMOVED", "Pruner"]

IDENTIFIER: Final = "chancy.pruner"
DISTRIBUTION: Final = "chancy-pruner"
LEADERSHIP: Final = "chancy.leadership"

#: Only jobs in these states are ever removed.
PRUNABLE_STATES: Final = ("succeeded", "failed")

#: The default rule: jobs created more than one day ago.
DEFAULT_RULE: Final = JobRules.Age() > 86400

PRUNER_REMOVED: Final = EventSpec(
    name="pruner.removed",
    payload={
        "elapsed": "seconds the pass took to delete",
        "rows_removed": "jobs deleted by the pass",
    },
    delivery="notified",
    sent_by="the Pruner after every pass (on the leader, or Pruner.run_once())",
)


class _Statements:
    """The pruner's statements for one table prefix."""

    __slots__ = ("jobs",)

    def __init__(self, prefix: str) -> None:
        self.jobs = sql.Identifier(f"{prefix}jobs")

    def delete(self, rule: sql.Composable) -> sql.Composed:
        """Delete one batch of finished jobs matching ``rule``; parameters: the
        prunable states, the rule's values, the batch size."""
        return sql.SQL(
            "DELETE FROM {jobs} WHERE id IN ("
            "SELECT id FROM {jobs} WHERE state = ANY(%s) AND ({rule})"
            " LIMIT %s FOR UPDATE SKIP LOCKED)"
        ).format(jobs=self.jobs, rule=rule)


@cache
def _statements(prefix: str) -> _Statements:
    return _Statements(prefix)


class Pruner(MaintenanceService):
    """Deletes finished jobs that match a rule, on the leader.

    Every ``poll_interval`` seconds (the first pass as soon as the worker
    leads), the pruner deletes jobs that are ``succeeded`` or ``failed`` *and*
    match ``rule``; pending, running and retrying jobs are never removed,
    whatever the rule says. It deletes in batches of ``batch_size`` rows, each
    in its own short transaction (rows locked by someone else are skipped),
    until fewer than a batch match or ``maximum_to_prune`` rows were removed
    in this pass. It then sends ``PRUNER_REMOVED`` (``{"elapsed",
    "rows_removed"}``) and asks every plugin to trim its own tables
    (:meth:`~chancy.plugin.Plugin.cleanup`).

    The default rule removes jobs created more than one day ago.
    ``Age`` is measured from ``created_at`` (when the job was pushed), not from
    when it finished::

        from chancy.plugins.pruner import Pruner

        Pruner(Pruner.Rules.Age() > 60 * 60 * 24 * 7)  # a week
        Pruner((Pruner.Rules.Queue() == "reports") & (Pruner.Rules.Age() > 3600))

    :param rule: which finished jobs to remove (see :mod:`chancy.rule`).
    :param maximum_to_prune: the most rows one pass removes.
    :param poll_interval: seconds between passes.
    :param batch_size: rows deleted per transaction.

    A :class:`~chancy.maintenance.MaintenanceService`: ``wake_up()`` runs a
    pass now, ``wait_for_passes(n, timeout=...)`` waits for ``n`` more.
    """

    identifier = IDENTIFIER
    distribution = DISTRIBUTION
    scope = PluginScope.LEADER
    dependencies = (LEADERSHIP,)
    dependency_distributions = {LEADERSHIP: "chancy-leadership"}
    default_enabled = True
    #: Position among the default plugins (spec: leadership, pruner,
    #: recovery, metrics, workflow, then the others).
    default_order = 20

    #: The rules for the jobs table (:class:`chancy.rule.JobRules`).
    Rules: ClassVar[type[JobRules]] = JobRules

    def __init__(
        self,
        rule: SQLAble = DEFAULT_RULE,
        *,
        maximum_to_prune: int = 10000,
        poll_interval: float = 60,
        batch_size: int = 1000,
    ) -> None:
        compile_rule(rule)  # a bare column or a non-rule fails here, not at 3 a.m.
        if maximum_to_prune < 1:
            raise ValueError(
                f"Pruner maximum_to_prune must be at least 1, got {maximum_to_prune!r}"
            )
        if batch_size < 1:
            raise ValueError(
                f"Pruner batch_size must be at least 1, got {batch_size!r}"
            )
        if poll_interval <= 0:
            raise ValueError(
                f"Pruner poll_interval must be positive, got {poll_interval!r}"
            )
        super().__init__(interval=poll_interval)
        #: Which finished jobs to remove.
        self.rule = rule
        #: The most rows one pass removes.
        self.maximum_to_prune = maximum_to_prune
        #: Rows deleted per transaction.
        self.batch_size = batch_size
        #: Test signals besides ``passes``: rows removed by the last pass and
        #: in total.
        self.last_removed = 0
        self.rows_removed = 0

    #: Seconds between passes (the service's ``interval``).
    poll_interval = Alias[float]("interval")
    #: Set after every pass (the service's ``pass_done``).
    pruned_event = Alias[asyncio.Event]("pass_done")

    def __repr__(self) -> str:
        return (
            f"<Pruner(rule={self.rule!r}, maximum_to_prune={self.maximum_to_prune!r},"
            f" poll_interval={self.poll_interval!r})>"
        )

    # -- the loop ---------------------------------------------------------------

    #: Seconds before the next pass when one pass removed ``maximum_to_prune``
    #: rows (more are likely due): a backlog is worked off at once instead of
    #: ``maximum_to_prune`` rows per ``poll_interval``.
    catch_up_interval: float = 1.0

    async def run_pass(self, worker: Worker, chancy: Chancy) -> float | None:
        """One pass on the leader (a pass at once, then one every
        ``poll_interval``, or after ``catch_up_interval`` while a pass keeps
        removing its whole ``maximum_to_prune``)."""
        removed = await self.run_once(chancy, log=worker.log)
        if removed >= self.maximum_to_prune:
            return min(self.catch_up_interval, self.interval)
        return None

    @counted_pass
    async def run_once(
        self, chancy: Chancy, *, log: logging.Logger | None = None
    ) -> int:
        """One pass as the loop runs it: prune (a transaction per batch),
        notify, then every plugin's cleanup. Returns the jobs removed."""
        log = log or chancy.log
        started = time.monotonic()
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            async with conn.cursor() as cursor:
                removed = await self.prune(chancy, cursor)
            elapsed = round(time.monotonic() - started, 6)
            async with conn.transaction(), conn.cursor() as cursor:
                await chancy.notify(
                    cursor,
                    PRUNER_REMOVED.name,
                    {"elapsed": elapsed, "rows_removed": removed},
                )
        if removed:
            log.info("Pruner: removed %d finished job(s) in %.3fs", removed, elapsed)
        else:
            log.debug("Pruner: nothing to remove (%.3fs)", elapsed)
        try:
            results = await chancy.plugin_manager.cleanup(chancy)
        except Exception:
            log.exception("Pruner: a plugin's cleanup failed")
        else:
            for name, rows in results:
                if rows is not None:
                    log.info("Pruner: cleanup of %s removed %s row(s)", name, rows)
        self.last_removed = removed
        self.rows_removed += removed
        return removed

    # -- pruning ------------------------------------------------------------------

    async def prune(self, chancy: Chancy, cursor: AsyncCursor[Any]) -> int:
        """Delete finished jobs matching the rule; returns how many.

        Deletes up to ``batch_size`` rows at a time until fewer than a batch
        match or ``maximum_to_prune`` rows are gone. Each batch runs in
        ``cursor.connection.transaction()``: its own transaction when the
        connection is idle (as in :meth:`run_once`), a savepoint inside a
        transaction the caller has open (then nothing commits before the
        caller does). Values of the rule are bind parameters.
        """
        rule, params = compile_rule(self.rule)
        query = _statements(chancy.prefix).delete(rule)
        states = list(PRUNABLE_STATES)
        removed = 0
        while removed < self.maximum_to_prune:
            batch = min(self.batch_size, self.maximum_to_prune - removed)
            async with cursor.connection.transaction():
                await cursor.execute(query, [states, *params, batch])
                deleted = max(cursor.rowcount, 0)
            removed += deleted
            if deleted < batch:
                break
        return removed
