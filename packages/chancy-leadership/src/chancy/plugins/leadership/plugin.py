"""Leader election through a lease row in the ``{prefix}leader`` table."""

from __future__ import annotations

import asyncio
import contextlib
import random
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from chancy.events import EventSpec
from chancy.maintenance import Alias, MaintenanceService, counted_pass
from chancy.plugin import Plugin

if TYPE_CHECKING:
    from psycopg import AsyncCursor

    from chancy.app import Chancy
    from chancy.hub import Event
    from chancy.worker import Worker

__all__ = [
    "LEADERSHIP_GAINED",
    "LEADERSHIP_LOST",
    "LEADERSHIP_RENEWED",
    "ImmediateLeadership",
    "Leadership",
]

IDENTIFIER: Final = "chancy.leadership"
DISTRIBUTION: Final = "chancy-leadership"

#: The lease always lives in this row.
LEASE_ID: Final = 1

_WORKER_ID: Final = {"worker_id": "the worker's id"}

LEADERSHIP_GAINED: Final = EventSpec(
    name="leadership.gained",
    payload=_WORKER_ID,
    delivery="notified",
    sent_by="Leadership, in the round where a worker takes the lease",
)
LEADERSHIP_RENEWED: Final = EventSpec(
    name="leadership.renewed",
    payload=_WORKER_ID,
    delivery="notified",
    sent_by="Leadership, in every round where the leader renews its lease",
)
LEADERSHIP_LOST: Final = EventSpec(
    name="leadership.lost",
    payload=_WORKER_ID,
    delivery="notified",
    sent_by="Leadership, when a renewal finds the lease taken and when a"
    " stopping leader releases it; the other workers compete at once",
)


class _Statements:
    """The lease statements for one table prefix (values are bind parameters)."""

    __slots__ = ("acquire", "current", "expire", "limits", "release", "renew")

    def __init__(self, leader: str) -> None:
        # A round never waits long for a lock, and a round stalled inside its
        # transaction (a frozen process) is ended by the server, releasing the
        # row lock for the other workers.
        self.limits = (
            "SELECT set_config('lock_timeout', %s, true),"
            " set_config('idle_in_transaction_session_timeout', %s, true)"
        )
        # ``leader`` is core's quoted, validated table name.
        self.expire = f"DELETE FROM {leader} WHERE expires_at < NOW()"
        # Renewal is fenced: it only extends a lease that still names us, so a
        # stalled former leader can never extend its successor's lease.
        self.renew = (
            f"UPDATE {leader} SET expires_at = NOW() + make_interval(secs => %s)"
            f" WHERE id = {LEASE_ID} AND worker_id = %s"
        )
        # Take a free lease; a lease that still names us (we lost track of it
        # after an error) is taken back rather than left to expire.
        self.acquire = (
            f"INSERT INTO {leader} AS l (id, worker_id, first_seen, expires_at)"
            f" VALUES ({LEASE_ID}, %s, NOW(), NOW() + make_interval(secs => %s))"
            f" ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at"
            f" WHERE l.worker_id = EXCLUDED.worker_id"
        )
        self.current = (
            f"SELECT worker_id, EXTRACT(EPOCH FROM expires_at - NOW())::float8"
            f" FROM {leader} WHERE id = {LEASE_ID}"
        )
        self.release = f"DELETE FROM {leader} WHERE id = {LEASE_ID} AND worker_id = %s"


@cache
def _statements(leader: str) -> _Statements:
    return _Statements(leader)


class _Lease:
    """What one worker knows about its lease."""

    __slots__ = ("deadline", "next_check", "wake", "watchdog")

    def __init__(self) -> None:
        #: Wakes the election loop early (leader released, lease about to expire).
        self.wake = asyncio.Event()
        #: Loop time by which our lease has certainly expired (while we lead).
        self.deadline: float | None = None
        #: Seconds until the current holder's lease expires (while we do not lead).
        self.next_check: float | None = None
        #: Clears ``worker.is_leader`` shortly before ``deadline``.
        self.watchdog: asyncio.TimerHandle | None = None

    def cancel_watchdog(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None


class Leadership(MaintenanceService):
    """Elects one leader among the workers sharing a database.

    The leader holds a lease: row ``id = 1`` of the ``{prefix}leader`` table,
    naming its worker id, valid until ``expires_at``. Each worker tries to
    take the lease as soon as it starts and then every ``poll_interval``
    seconds; the leader renews it on the same schedule. A renewal only applies
    while the row still names this worker, so a stalled former leader cannot
    extend its successor's lease. The worker's :attr:`~chancy.Worker.is_leader`
    event is set while it holds the lease, and cleared

    * when a renewal finds the row naming someone else,
    * when the database cannot be reached (a leader that could not renew must
      not keep believing it leads),
    * shortly before the lease expires if, for any reason, it was not renewed
      in time (measured on the worker's monotonic clock, from before the
      renewal was sent),
    * when the worker stops: the row is then deleted, and the other workers,
      told by the ``leadership.lost`` notification, elect a successor at once.

    If the leader dies without stopping, its lease expires after ``timeout``
    seconds; the others check again when it would expire, so failover takes
    about ``timeout`` seconds (at most ``timeout + poll_interval``).

    Notifications: ``LEADERSHIP_GAINED``, ``LEADERSHIP_RENEWED`` and
    ``LEADERSHIP_LOST``, each with ``{"worker_id": ...}``.

    :param poll_interval: seconds between renewals (and election attempts).
    :param timeout: seconds a lease lasts without renewal; at least
        ``poll_interval``, about twice as much is a good choice.

    A :class:`~chancy.maintenance.MaintenanceService` whose pass is one
    election round: ``wake_up()`` starts a round now,
    ``wait_for_passes(n, timeout=...)`` waits for ``n`` more (``rounds`` and
    ``wait_for_round()`` are the older names).
    """

    identifier = IDENTIFIER
    distribution = DISTRIBUTION
    default_enabled = True
    tables = ("leader",)
    #: Position among the default plugins (spec: leadership, pruner,
    #: recovery, metrics, workflow, then the others).
    default_order = 10

    def __init__(self, poll_interval: float = 60, timeout: float = 120) -> None:
        if poll_interval <= 0:
            raise ValueError(
                f"Leadership poll_interval must be positive, got {poll_interval!r}"
            )
        if timeout < poll_interval:
            raise ValueError(
                f"Leadership timeout ({timeout!r}) must be at least poll_interval"
                f" ({poll_interval!r}); about twice poll_interval is recommended"
            )
        super().__init__(interval=poll_interval)
        #: Seconds a lease lasts without renewal.
        self.timeout = timeout
        self._leases: dict[str, _Lease] = {}

    #: Seconds between renewals and election attempts (the service's
    #: ``interval``).
    poll_interval = Alias[float]("interval")
    #: Election rounds done by any worker using this instance (``passes``).
    rounds = Alias[int]("passes")
    #: Set after each round (``pass_done``).
    round_done = Alias[asyncio.Event]("pass_done")

    def __repr__(self) -> str:
        return f"<Leadership(poll_interval={self.poll_interval!r}, timeout={self.timeout!r})>"

    # -- internals -------------------------------------------------------------

    @property
    def _margin(self) -> float:
        """How long before the lease expires a leader stops believing it leads."""
        return min(1.0, self.timeout / 10)

    @property
    def _statement_limit_ms(self) -> int:
        """Longest lock wait, and longest pause inside a round's transaction."""
        return max(100, min(10_000, int(self.timeout * 500)))

    def _lease(self, worker: Worker) -> _Lease:
        lease = self._leases.get(worker.worker_id)
        if lease is None:
            lease = self._leases[worker.worker_id] = _Lease()
        return lease

    def _step_down(
        self, worker: Worker, lease: _Lease, message: str, *args: Any
    ) -> None:
        """Stop believing we lead (and say so once)."""
        lease.cancel_watchdog()
        lease.deadline = None
        if worker.is_leader.is_set():
            worker.is_leader.clear()
            worker.log.info(message, worker.worker_id, *args)

    def _on_watchdog(self, worker: Worker, lease: _Lease) -> None:
        lease.watchdog = None
        if worker.is_leader.is_set():
            worker.is_leader.clear()
            lease.deadline = None
            worker.log.warning(
                "Worker %s is no longer the leader: its lease expires before it could"
                " be renewed",
                worker.worker_id,
            )
        lease.wake.set()  # try again at once

    def _believe(self, worker: Worker, lease: _Lease, deadline: float) -> bool:
        """Lead until ``deadline`` (loop time) unless it is already too close."""
        loop = asyncio.get_running_loop()
        lease.cancel_watchdog()
        if deadline - self._margin <= loop.time():
            self._step_down(
                worker,
                lease,
                "Worker %s is no longer the leader: its renewed lease would expire"
                " before the next renewal",
            )
            return False
        lease.deadline = deadline
        lease.watchdog = loop.call_at(
            deadline - self._margin, self._on_watchdog, worker, lease
        )
        worker.is_leader.set()
        return True

    def _next_delay(self, worker: Worker, lease: _Lease) -> float:
        """Seconds until the next round."""
        loop = asyncio.get_running_loop()
        shortest = min(self._margin / 2, self.poll_interval)
        if worker.is_leader.is_set() and lease.deadline is not None:
            # Renew in time even when a round took long.
            until = lease.deadline - 2 * self._margin - loop.time()
            return max(shortest, min(self.poll_interval, until))
        if lease.next_check is not None:
            # Someone else leads: look again when their lease would expire
            # (a live leader renews it long before). Jitter spreads the workers.
            jitter = random.uniform(0, min(0.2, self.poll_interval / 20))
            return min(self.poll_interval, lease.next_check + shortest + jitter)
        return self.poll_interval

    @staticmethod
    async def _sleep_for(lease: _Lease, seconds: float) -> None:
        if lease.wake.is_set():
            await asyncio.sleep(0)
        else:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow
            # a cancellation that arrives as the event is set, and the worker
            # would then wait forever for this loop to stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await lease.wake.wait()
        lease.wake.clear()

    def wake_up(self) -> None:
        """Start an election round now, in every worker using this plugin."""
        super().wake_up()
        for lease in self._leases.values():
            lease.wake.set()

    # -- the election ---------------------------------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """Take part in elections until the worker stops: first round at once."""
        lease = self._lease(worker)

        def on_lost(event: Event) -> None:
            # A leader stepped down: compete for the lease now, not at expiry.
            if (
                event.body.get("worker_id") != worker.worker_id
                and not worker.is_leader.is_set()
            ):
                lease.wake.set()

        worker.hub.on(LEADERSHIP_LOST.name, on_lost)
        try:
            await super().run(worker, chancy)
        finally:
            worker.hub.remove(LEADERSHIP_LOST.name, on_lost)
            self._step_down(
                worker, lease, "Worker %s is no longer the leader (stopping)"
            )

    async def run_pass(self, worker: Worker, chancy: Chancy) -> float:
        """One election round; the next one comes in time to renew the lease
        (or when the current holder's lease would expire)."""
        await self.elect(worker, chancy)
        return self._next_delay(worker, self._lease(worker))

    async def wait_for_next_pass(self, worker: Worker, seconds: float) -> None:
        """Sleep on this worker's lease: woken by :meth:`wake_up`, by a
        leader stepping down, or by the watchdog."""
        await self._sleep_for(self._lease(worker), seconds)

    @counted_pass
    async def elect(self, worker: Worker, chancy: Chancy) -> bool:
        """One election round; returns whether ``worker`` leads afterwards.

        In one transaction: expired leases are deleted; then a leader renews
        its lease if the row still names it, and any other worker takes the
        lease if it is free. Database errors are logged and make the worker
        stop believing it leads; they are not raised.
        """
        lease = self._lease(worker)
        loop = asyncio.get_running_loop()
        statements = _statements(chancy.sql.leader)
        was_leader = worker.is_leader.is_set()
        sent_at = loop.time()
        worker_id = worker.worker_id
        lease.next_check = None
        try:
            await chancy.ensure_open()
            async with chancy.pool.connection() as conn:
                async with conn.transaction(), conn.cursor() as cursor:
                    limit = f"{self._statement_limit_ms}ms"
                    await cursor.execute(statements.limits, (limit, limit))
                    await cursor.execute(statements.expire)
                    if was_leader:
                        await cursor.execute(
                            statements.renew, (self.timeout, worker_id)
                        )
                    else:
                        await cursor.execute(
                            statements.acquire, (worker_id, self.timeout)
                        )
                    leads = cursor.rowcount == 1
                    if not leads:
                        lease.next_check = await self._time_left(cursor, statements)
                    if leads:
                        event = (
                            LEADERSHIP_RENEWED.name
                            if was_leader
                            else LEADERSHIP_GAINED.name
                        )
                    else:
                        event = LEADERSHIP_LOST.name if was_leader else ""
                    if event:
                        await chancy.notify(cursor, event, {"worker_id": worker_id})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            lease.next_check = None
            if worker.is_leader.is_set():
                self._step_down(
                    worker,
                    lease,
                    "Worker %s is no longer the leader: its lease could not be renewed (%s)",
                    exc,
                )
            else:
                lease.cancel_watchdog()
                worker.log.warning(
                    "Worker %s: leader election failed (%s); trying again in %ss",
                    worker_id,
                    exc,
                    self.poll_interval,
                )
            return False

        if leads:
            if self._believe(worker, lease, sent_at + self.timeout) and not was_leader:
                worker.log.info("Worker %s is now the leader", worker_id)
        elif was_leader or worker.is_leader.is_set():
            self._step_down(
                worker,
                lease,
                "Worker %s is no longer the leader: another worker holds the lease",
            )
        return worker.is_leader.is_set()

    @staticmethod
    async def _time_left(
        cursor: AsyncCursor[Any], statements: _Statements
    ) -> float | None:
        await cursor.execute(statements.current)
        row = await cursor.fetchone()
        if row is None:
            return None
        return max(0.0, float(row[1]))

    async def on_worker_stopped(self, *, worker: Worker) -> None:
        """Give the lease up so that a successor takes over at once."""
        lease = self._leases.pop(worker.worker_id, None)
        if lease is not None:
            lease.cancel_watchdog()
        worker.is_leader.clear()
        chancy = worker.chancy
        try:
            async with chancy.pool.connection() as conn:
                async with conn.transaction(), conn.cursor() as cursor:
                    statements = _statements(chancy.sql.leader)
                    limit = f"{self._statement_limit_ms}ms"
                    await cursor.execute(statements.limits, (limit, limit))
                    await cursor.execute(statements.release, (worker.worker_id,))
                    released = cursor.rowcount == 1
                    if released:
                        await chancy.notify(
                            cursor,
                            LEADERSHIP_LOST.name,
                            {"worker_id": worker.worker_id},
                        )
        except Exception as exc:
            worker.log.warning(
                "Worker %s could not release the leader lease (%s); it expires in at"
                " most %ss",
                worker.worker_id,
                exc,
                self.timeout,
            )
            return
        if released:
            worker.log.info("Worker %s released the leader lease", worker.worker_id)

    async def wait_for_round(
        self, *, rounds: int = 1, timeout: float | None = None
    ) -> None:
        """:meth:`~chancy.maintenance.MaintenanceService.wait_for_passes`
        under its older name: until ``rounds`` more election rounds were done."""
        await self.wait_for_passes(rounds, timeout=timeout)


class ImmediateLeadership(Plugin):
    """Makes every worker the leader at once, without an election. Tests only.

    It replaces :class:`Leadership` (same identifier) and is never enabled by
    default. Each worker using it believes it leads, so leader-only plugins
    run in every one of them: never use it with more than one worker.
    """

    identifier = IDENTIFIER
    distribution = DISTRIBUTION
    tables = ("leader",)

    _warned: set[str]

    def __init__(self) -> None:
        super().__init__()
        self._warned = set()

    def _take(self, worker: Worker) -> None:
        if worker.worker_id not in self._warned:
            self._warned.add(worker.worker_id)
            worker.log.warning(
                "ImmediateLeadership: worker %s is the leader without an election;"
                " use it in tests only",
                worker.worker_id,
            )
        worker.is_leader.set()

    async def on_worker_started(self, *, worker: Worker) -> None:
        self._take(worker)

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        self._take(worker)
