"""Recovery of the jobs held by workers that stopped sending heartbeats."""

from __future__ import annotations

import asyncio
import time
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from chancy import events
from chancy.events import EventSpec
from chancy.executors.base import DEFAULT_MAX_LOST_RUNS
from chancy.maintenance import Alias, MaintenanceService, counted_pass
from chancy.plugin import PluginScope

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

__all__ = ["RECOVERY_RECOVERED", "Recovery"]

IDENTIFIER: Final = "chancy.recovery"
DISTRIBUTION: Final = "chancy-recovery"
LEADERSHIP: Final = "chancy.leadership"

#: The error recorded on a recovered job, after ``worker <id>``.
LOST_MESSAGE: Final = "stopped sending heartbeats while running this job"

RECOVERY_RECOVERED: Final = EventSpec(
    name="recovery.recovered",
    payload={
        "elapsed": "seconds the pass took",
        "rows_recovered": "jobs recovered by the pass",
    },
    delivery="notified",
    sent_by="Recovery after every pass (on the leader, or Recovery.recover()),"
    " after job.recovered for each job and queue.pushed for their queues",
)


def _recover_sql(jobs: str, workers: str) -> str:
    """One statement: find, lock and reset the jobs of lost workers.

    ``jobs`` and ``workers`` are core's quoted, validated table names; every
    value is a bind parameter. A job is lost when its worker has no row seen
    within ``threshold`` seconds; never this (live) worker's own jobs, and
    nothing while the database server itself started less than ``threshold``
    seconds ago: after a crash restart every worker gets one heartbeat timeout
    to reconnect and announce itself before its jobs are taken.

    The lost run does not use up an attempt: it is recorded in ``errors``
    (``"lost": true``) and counted in ``meta["lost_runs"]``; at
    ``max_lost_runs`` the job fails instead of running again.
    """
    lost_before = (
        "CASE WHEN jsonb_typeof(j.meta->'lost_runs') = 'number'"
        " AND (j.meta->>'lost_runs')::numeric >= 0"
        " THEN (j.meta->>'lost_runs')::numeric::int ELSE 0 END"
    )
    give_up = "lost.n >= %(max_lost_runs)s"
    return (
        f"WITH lost AS ("
        f" SELECT j.id, j.claim_id, j.taken_by, {lost_before} + 1 AS n FROM {jobs} j"
        f" WHERE j.state = 'running' AND j.taken_by IS DISTINCT FROM %(self)s"
        f" AND pg_postmaster_start_time() <= NOW() - make_interval(secs => %(threshold)s)"
        f" AND NOT EXISTS ("
        f"  SELECT 1 FROM {workers} w WHERE w.worker_id = j.taken_by"
        f"  AND w.last_seen >= NOW() - make_interval(secs => %(threshold)s))"
        f" FOR UPDATE OF j SKIP LOCKED)"
        f" UPDATE {jobs} j SET"
        f" meta = jsonb_set(j.meta, '{{lost_runs}}', to_jsonb(lost.n)),"
        f" errors = j.errors || jsonb_build_array(jsonb_build_object("
        f"  'attempt', j.attempts, 'lost', true,"
        f"  'traceback', 'chancy.errors.WorkerLostError: worker '"
        f"  || COALESCE(lost.taken_by, '(unknown)') || ' {LOST_MESSAGE}'"
        f"  || CASE WHEN {give_up}"
        f"   THEN '; the job was lost ' || lost.n || ' time'"
        f"    || CASE WHEN lost.n = 1 THEN '' ELSE 's' END"
        f"    || ' (max_lost_runs=' || %(max_lost_runs)s || '), so it fails without"
        f" running again'"
        f"   ELSE ' (lost run ' || lost.n || ' of at most ' || %(max_lost_runs)s"
        f"    || '; it runs again)' END)),"
        f" state = CASE WHEN {give_up} THEN 'failed'"
        f"  WHEN j.attempts > 0 THEN 'retrying' ELSE 'pending' END,"
        f" completed_at = CASE WHEN {give_up} THEN NOW() ELSE NULL END,"
        f" claim_id = NULL, taken_by = NULL"
        f" FROM lost WHERE j.id = lost.id"
        f" RETURNING j.id, lost.claim_id, lost.taken_by, j.queue, j.state"
    )


class _Statements:
    """Recovery's statements for one pair of core table names."""

    __slots__ = ("recover",)

    def __init__(self, jobs: str, workers: str) -> None:
        self.recover = _recover_sql(jobs, workers)


@cache
def _statements(jobs: str, workers: str) -> _Statements:
    return _Statements(jobs, workers)


class Recovery(MaintenanceService):
    """Gives back the jobs of workers that died while running them.

    A worker writes a heartbeat to the ``{prefix}workers`` table every
    ``heartbeat_poll_interval`` seconds. On the leader, every ``poll_interval``
    seconds, Recovery takes every ``running`` job whose worker has not been
    seen for ``heartbeat_timeout`` seconds (the leader worker's own setting
    unless given here) and, in one statement, locked with
    ``FOR UPDATE SKIP LOCKED``:

    * records the lost run in ``errors`` (``chancy.errors.WorkerLostError:
      worker <id> stopped sending heartbeats while running this job``, marked
      ``"lost": true``) and counts it in ``meta["lost_runs"]``, but does not
      use up one of the job's attempts: the job runs again (``pending``, or
      ``retrying`` if earlier attempts failed);
    * at ``max_lost_runs`` lost runs fails the job instead (with
      ``completed_at`` and an error naming the count), so a job that kills
      its worker every time does not loop forever;
    * clears its execution claim and ``taken_by``: if the presumed-dead worker
      was only cut off and finishes the job later, its update no longer
      matches the claim and is discarded.

    A worker that is alive never has its jobs recovered: the leader never
    takes its own, and no job is taken while the database server has been up
    for less than ``heartbeat_timeout`` (after a crash restart every worker
    first gets the time to reconnect and send a heartbeat).

    Then it deletes expired worker rows and sends ``job.recovered``
    (``{"j": job id, "c": the cleared claim}``) for each job, so that a worker
    still running it stops, ``queue.pushed`` for the queues with jobs to run
    again, and ``RECOVERY_RECOVERED`` (``{"elapsed", "rows_recovered"}``).

    The same lost-run rule applies where a worker itself sees the child
    process running a job die (process executor): it uses this plugin's
    ``max_lost_runs``, which is set on every worker of the app.

    :param poll_interval: seconds between passes.
    :param heartbeat_timeout: seconds without a heartbeat after which a
        worker is presumed dead; ``None`` uses the leader's
        ``Worker.heartbeat_timeout``. Keep it well above every worker's
        ``heartbeat_poll_interval``.
    :param max_lost_runs: lost runs after which a job fails instead of
        running again (the poison-pill rule of Sidekiq Pro's reliable fetch).

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
    default_order = 30

    def __init__(
        self,
        *,
        poll_interval: float = 60,
        heartbeat_timeout: float | None = None,
        max_lost_runs: int = DEFAULT_MAX_LOST_RUNS,
    ) -> None:
        if (
            not isinstance(max_lost_runs, int)
            or isinstance(max_lost_runs, bool)
            or max_lost_runs < 1
        ):
            raise ValueError(
                f"Recovery max_lost_runs must be a positive integer, got {max_lost_runs!r}"
            )
        if poll_interval <= 0:
            raise ValueError(
                f"Recovery poll_interval must be positive, got {poll_interval!r}"
            )
        if heartbeat_timeout is not None and heartbeat_timeout <= 0:
            raise ValueError(
                f"Recovery heartbeat_timeout must be positive, got {heartbeat_timeout!r}"
            )
        super().__init__(interval=poll_interval)
        #: Heartbeat threshold; ``None`` means the leader worker's setting.
        self.heartbeat_timeout = heartbeat_timeout
        #: Lost runs after which a job fails.
        self.max_lost_runs = max_lost_runs
        #: Test signals besides ``passes``: jobs recovered by the last pass and
        #: in total.
        self.last_recovered = 0
        self.rows_recovered = 0

    #: Seconds between passes (the service's ``interval``).
    poll_interval = Alias[float]("interval")
    #: Set after every pass (the service's ``pass_done``).
    recovered_event = Alias[asyncio.Event]("pass_done")

    def __repr__(self) -> str:
        return (
            f"<Recovery(poll_interval={self.poll_interval!r},"
            f" heartbeat_timeout={self.heartbeat_timeout!r},"
            f" max_lost_runs={self.max_lost_runs!r})>"
        )

    async def on_worker_started(self, *, worker: Worker) -> None:
        """Every worker of the app applies this plugin's ``max_lost_runs`` when
        it sees a job's process die itself."""
        worker.max_lost_runs = self.max_lost_runs

    async def run_pass(self, worker: Worker, chancy: Chancy) -> None:
        """One pass on the leader (a pass at once, then one every ``poll_interval``)."""
        await self.recover(worker, chancy)

    @counted_pass
    async def recover(self, worker: Worker, chancy: Chancy) -> int:
        """One pass; returns the number of jobs recovered.

        Callable directly (from any worker, leader or not): the row locks make
        concurrent passes safe.
        """
        threshold = (
            self.heartbeat_timeout
            if self.heartbeat_timeout is not None
            else worker.heartbeat_timeout
        )
        started = time.monotonic()
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            async with conn.transaction(), conn.cursor() as cursor:
                await cursor.execute(
                    _statements(chancy.sql.jobs, chancy.sql.workers).recover,
                    {
                        "threshold": threshold,
                        "self": worker.worker_id,
                        "max_lost_runs": self.max_lost_runs,
                    },
                )
                rows: list[tuple[Any, ...]] = await cursor.fetchall()
                await cursor.execute(chancy.sql.heartbeat_expire)
                elapsed = round(time.monotonic() - started, 6)
                notifications: list[tuple[str, dict[str, Any]]] = [
                    (
                        events.JOB_RECOVERED.name,
                        {"j": str(job_id), "c": str(claim) if claim else None},
                    )
                    for job_id, claim, _by, _queue, _state in rows
                ]
                retry_queues = dict.fromkeys(
                    q for *_, q, state in rows if state != "failed"
                )
                notifications.extend(
                    (events.QUEUE_PUSHED.name, {"q": q}) for q in retry_queues
                )
                notifications.append(
                    (
                        RECOVERY_RECOVERED.name,
                        {"elapsed": elapsed, "rows_recovered": len(rows)},
                    )
                )
                await chancy.notify_many(cursor, notifications)
        if rows:
            lost_workers = sorted({str(by) for _id, _claim, by, _q, _s in rows})
            failed = sum(1 for *_, state in rows if state == "failed")
            worker.log.warning(
                "Recovery: %d job(s) of lost worker(s) %s recovered (%d to run again, %d"
                " lost too often and failed)",
                len(rows),
                ", ".join(lost_workers),
                len(rows) - failed,
                failed,
            )
        else:
            worker.log.debug("Recovery: no lost jobs (%.3fs)", elapsed)
        self.last_recovered = len(rows)
        self.rows_recovered += len(rows)
        return len(rows)
