"""Removal of finished jobs that match a rule."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar, Final

import psycopg
from psycopg import sql

from chancy.plugin import Plugin, PluginScope
from chancy.rule import JobRules, SQLAble, compile_rule

if TYPE_CHECKING:
    from psycopg import AsyncCursor

    from chancy.app import Chancy
    from chancy.worker import Worker

__all__ = ["Pruner"]

IDENTIFIER: Final = "chancy.pruner"
DISTRIBUTION: Final = "chancy-pruner"

#: Only jobs in these states are ever removed.
PRUNABLE_STATES: Final = ("succeeded", "failed")

#: The default rule: jobs created more than one day ago.
DEFAULT_RULE: Final = JobRules.Age() > 86400

_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, OSError)


class Pruner(Plugin):
    """Deletes finished jobs that match a rule, on the leader.

    Every ``poll_interval`` seconds (the first pass as soon as the worker
    leads), the pruner deletes jobs that are ``succeeded`` or ``failed`` *and*
    match ``rule``; pending, running and retrying jobs are never removed,
    whatever the rule says. It deletes in batches of ``batch_size`` rows, each
    in its own short transaction (rows locked by someone else are skipped),
    until fewer than a batch match or ``maximum_to_prune`` rows were removed
    in this pass. It then sends ``pruner.removed`` (``{"elapsed",
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
    """

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
        super().__init__()
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
        #: Which finished jobs to remove.
        self.rule = rule
        #: The most rows one pass removes.
        self.maximum_to_prune = maximum_to_prune
        #: Seconds between passes.
        self.poll_interval = poll_interval
        #: Rows deleted per transaction.
        self.batch_size = batch_size
        #: Test signals: passes done, rows removed by the last pass and in
        #: total, and an event set after every pass.
        self.passes = 0
        self.last_removed = 0
        self.rows_removed = 0
        self.pruned_event = asyncio.Event()

    def __repr__(self) -> str:
        return (
            f"<Pruner(rule={self.rule!r}, maximum_to_prune={self.maximum_to_prune!r},"
            f" poll_interval={self.poll_interval!r})>"
        )

    @staticmethod
    def get_identifier() -> str:
        return IDENTIFIER

    @staticmethod
    def get_dependencies() -> list[str]:
        return ["chancy.leadership"]

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.LEADER

    @classmethod
    def is_default(cls) -> bool:
        return True

    @classmethod
    def get_distribution(cls) -> str | None:
        return DISTRIBUTION

    # -- the loop ---------------------------------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """On the leader: a pass at once, then one every ``poll_interval``."""
        while True:
            await self.wait_for_leader(worker)
            try:
                await self.run_once(chancy, log=worker.log)
            except _TRANSIENT as exc:
                worker.log.warning(
                    "Pruner: the pass failed (%s); trying again later", exc
                )
            await self.sleep(self.poll_interval)  # wake_up() runs a pass now

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
                    "pruner.removed",
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
        self.passes += 1
        self.last_removed = removed
        self.rows_removed += removed
        self.pruned_event.set()
        return removed

    # -- pruning ------------------------------------------------------------------

    def _delete(self, chancy: Chancy) -> tuple[sql.Composed, list[Any]]:
        rule, params = compile_rule(self.rule)
        jobs = sql.Identifier(f"{chancy.prefix}jobs")
        query = sql.SQL(
            "DELETE FROM {jobs} WHERE id IN ("
            "SELECT id FROM {jobs} WHERE state = ANY(%s) AND ({rule})"
            " LIMIT %s FOR UPDATE SKIP LOCKED)"
        ).format(jobs=jobs, rule=rule)
        return query, params

    async def prune(self, chancy: Chancy, cursor: AsyncCursor[Any]) -> int:
        """Delete finished jobs matching the rule; returns how many.

        Deletes up to ``batch_size`` rows at a time until fewer than a batch
        match or ``maximum_to_prune`` rows are gone. Each batch runs in
        ``cursor.connection.transaction()``: its own transaction when the
        connection is idle (as in :meth:`run_once`), a savepoint inside a
        transaction the caller has open (then nothing commits before the
        caller does). Values of the rule are bind parameters.
        """
        query, params = self._delete(chancy)
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

    async def wait_for_passes(
        self, count: int = 1, *, timeout: float | None = None
    ) -> None:
        """Wait until ``count`` more passes are done (a test signal)."""
        target = self.passes + count
        async with asyncio.timeout(timeout):
            while self.passes < target:
                self.pruned_event.clear()
                await self.pruned_event.wait()
