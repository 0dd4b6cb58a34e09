"""Leader election against a real database, with several workers in one process
(each with its own app and worker id) and, for crashes, a worker in a process
of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest

from chancy import Chancy, Worker
from chancy.hub import Event
from chancy.plugins.leadership import ImmediateLeadership, Leadership

NO_DEFAULTS = {"plugins": [], "no_default_plugins": True}
uses_db = pytest.mark.parametrize("chancy", [NO_DEFAULTS], indirect=True)

WORKER_SCRIPT = Path(__file__).with_name("_leadership_worker.py")


class StallableLeadership(Leadership):
    """Leadership whose rounds can be paused, like a process that froze."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stalled = False

    async def elect(self, worker: Worker, chancy: Chancy) -> bool:
        if self.stalled:
            return worker.is_leader.is_set()
        return await super().elect(worker, chancy)


class Cluster:
    """Workers sharing one database, each with its own app."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.workers: dict[str, Worker] = {}
        self.plugins: dict[str, Leadership] = {}
        self.events: list[tuple[str, str, Any]] = []  # (observer, event, worker_id)

    async def start(
        self,
        worker_id: str,
        *,
        poll_interval: float = 0.2,
        timeout: float = 0.6,
        plugin: Leadership | None = None,
        notifications: bool = True,
    ) -> Worker:
        plugin = plugin or Leadership(poll_interval, timeout)
        app = Chancy(
            self.dsn,
            plugins=[plugin],
            no_default_plugins=True,
            notifications=notifications,
            max_connection_pool_size=4,
        )
        await app.ensure_open()
        worker = Worker(
            app, worker_id=worker_id, register_signal_handlers=False, shutdown_timeout=5
        )

        def record(event: Event) -> None:
            self.events.append((worker_id, event.name, event.body.get("worker_id")))

        for name in ("leadership.gained", "leadership.renewed", "leadership.lost"):
            worker.hub.on(name, record)
        self.workers[worker_id] = worker
        self.plugins[worker_id] = plugin
        await worker.start()
        return worker

    def leaders(self) -> list[str]:
        return [wid for wid, w in self.workers.items() if w.is_leader.is_set()]

    async def stop(self, worker_id: str) -> None:
        worker = self.workers[worker_id]
        await worker.stop()
        await worker.chancy.__aexit__(None, None, None)

    async def close(self) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(Exception):
                await worker.stop()
            with contextlib.suppress(Exception):
                await worker.chancy.__aexit__(None, None, None)


@pytest.fixture
async def cluster(chancy: Chancy, chancy_dsn: str) -> AsyncIterator[Cluster]:
    c = Cluster(chancy_dsn)
    try:
        yield c
    finally:
        await c.close()


class Sampler:
    """Checks every 20 ms, in the background, how many workers believe they lead."""

    def __init__(self, cluster: Cluster, interval: float = 0.02) -> None:
        self.cluster = cluster
        self.interval = interval
        self.samples = 0
        self.most_at_once = 0
        self.overlaps: list[list[str]] = []
        self.seen: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            leaders = self.cluster.leaders()
            self.samples += 1
            self.most_at_once = max(self.most_at_once, len(leaders))
            if len(leaders) > 1:
                self.overlaps.append(leaders)
            for wid in leaders:
                if not self.seen or self.seen[-1] != wid:
                    self.seen.append(wid)
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> Sampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def lease(chancy: Chancy) -> tuple[str, datetime] | None:
    async with chancy.pool.connection() as conn:
        cursor = await conn.execute(
            f"SELECT worker_id, expires_at FROM {chancy.sql.leader} WHERE id = 1"
        )
        row = await cursor.fetchone()
    return (row[0], row[1]) if row else None


async def wait_until(predicate: Any, timeout: float, interval: float = 0.01) -> float:
    """Wait until ``predicate()`` is true; return the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


# ---------------------------------------------------------------------------
# One worker
# ---------------------------------------------------------------------------


@uses_db
async def test_a_single_worker_leads_within_one_interval(
    chancy: Chancy, cluster: Cluster
) -> None:
    started = time.monotonic()
    worker = await cluster.start("solo", poll_interval=0.5, timeout=1.5)
    await asyncio.wait_for(worker.is_leader.wait(), 0.5)
    # The first attempt is made at once, not after a first interval.
    assert time.monotonic() - started < 0.5
    row = await lease(chancy)
    assert row is not None and row[0] == "solo"

    # It keeps the lease: renewed (with a later expiry) on every round.
    plugin = cluster.plugins["solo"]
    await plugin.wait_for_round(rounds=2, timeout=3)
    assert worker.is_leader.is_set()
    later = await lease(chancy)
    assert later is not None and later[0] == "solo" and later[1] > row[1]
    await wait_until(
        lambda: ("solo", "leadership.renewed", "solo") in cluster.events, 2
    )
    assert ("solo", "leadership.gained", "solo") in cluster.events


@uses_db
async def test_immediate_leadership_leads_at_once_and_warns(
    chancy: Chancy, chancy_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chancy")
    async with Chancy(
        chancy_dsn, plugins=[ImmediateLeadership()], no_default_plugins=True
    ) as app:
        worker = Worker(app, worker_id="imm", register_signal_handlers=False)
        await worker.start()
        try:
            assert worker.is_leader.is_set()
            assert "ImmediateLeadership" in caplog.text
        finally:
            await worker.stop()
        assert not worker.is_leader.is_set()


# ---------------------------------------------------------------------------
# Several workers
# ---------------------------------------------------------------------------


@uses_db
async def test_five_workers_never_two_leaders_through_handovers(
    chancy: Chancy, cluster: Cluster
) -> None:
    async with Sampler(cluster) as sampler:
        await asyncio.gather(*(cluster.start(f"w{i}") for i in range(5)))
        await wait_until(lambda: len(cluster.leaders()) == 1, 2)
        await asyncio.sleep(1.0)
        # Hand the lease over twice by stopping the leader gracefully.
        for _ in range(2):
            (leader,) = cluster.leaders()
            await cluster.stop(leader)
            await wait_until(lambda: len(cluster.leaders()) == 1, 2)
            await asyncio.sleep(0.8)
        await asyncio.sleep(0.5)

    assert sampler.samples > 100
    assert sampler.overlaps == []
    assert sampler.most_at_once == 1
    assert len(sampler.seen) == 3 and len(set(sampler.seen)) == 3
    # Exactly one of the three remaining workers leads, and the lease names it.
    (leader,) = cluster.leaders()
    row = await lease(chancy)
    assert row is not None and row[0] == leader
    remaining = [w for w in cluster.workers.values() if not w.shutdown_event.is_set()]
    assert len(remaining) == 3


@uses_db
@pytest.mark.parametrize(
    ("notifications", "poll", "limit"),
    [(True, 3.0, 1.5), (False, 1.0, 2.0)],
    ids=["notify", "poll-only"],
)
async def test_graceful_stop_hands_over_within_a_poll_interval(
    chancy: Chancy, cluster: Cluster, notifications: bool, poll: float, limit: float
) -> None:
    timeout = 10.0  # far longer than the hand-over may take
    first = await cluster.start(
        "first", poll_interval=poll, timeout=timeout, notifications=notifications
    )
    await asyncio.wait_for(first.is_leader.wait(), 1)
    second = await cluster.start(
        "second", poll_interval=poll, timeout=timeout, notifications=notifications
    )
    await wait_until(lambda: cluster.plugins["second"].rounds >= 1, 3)
    assert not second.is_leader.is_set()

    stopped = time.monotonic()
    await cluster.stop("first")
    assert not first.is_leader.is_set()
    await asyncio.wait_for(second.is_leader.wait(), poll + 2)
    elapsed = time.monotonic() - stopped
    # The stopping leader gave the lease up: no waiting for it to expire.
    # Told by leadership.lost, the other worker takes over at once (well
    # within its 3 s poll interval); without notifications, at its next round.
    assert elapsed < limit, elapsed
    row = await lease(chancy)
    assert row is not None and row[0] == "second"
    if notifications:
        assert ("second", "leadership.lost", "first") in cluster.events


# ---------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------


class Subprocess:
    """A leadership worker in a process of its own."""

    def __init__(self, proc: asyncio.subprocess.Process, log: IO[bytes]) -> None:
        self.proc = proc
        self.log = log

    @classmethod
    async def start(
        cls, dsn: str, worker_id: str, poll: float, timeout: float, log_path: Path
    ) -> Subprocess:
        log = log_path.open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER_SCRIPT),
            dsn,
            worker_id,
            str(poll),
            str(timeout),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        return cls(proc, log)

    async def expect(self, line: str, timeout: float) -> None:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                got = await self.proc.stdout.readline()
                if not got:
                    raise AssertionError(
                        f"the worker process exited before printing {line!r}"
                    )
                if got.decode().strip() == line:
                    return

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
            await self.proc.wait()
        self.log.close()


@uses_db
async def test_a_killed_leader_is_replaced_once_its_lease_expires(
    chancy: Chancy, chancy_dsn: str, cluster: Cluster, tmp_path: Path
) -> None:
    poll, timeout = 0.3, 1.5
    doomed = await Subprocess.start(
        chancy_dsn, "doomed", poll, timeout, tmp_path / "doomed.log"
    )
    try:
        await doomed.expect("LEADER", timeout=30)
        survivor = await cluster.start("survivor", poll_interval=poll, timeout=timeout)
        await cluster.plugins["survivor"].wait_for_round(rounds=2, timeout=5)
        assert not survivor.is_leader.is_set()
        row = await lease(chancy)
        assert row is not None and row[0] == "doomed"

        doomed.proc.send_signal(signal.SIGKILL)
        await doomed.proc.wait()
        killed = time.monotonic()
        await asyncio.wait_for(survivor.is_leader.wait(), timeout + poll + 2)
        elapsed = time.monotonic() - killed
    finally:
        await doomed.close()
    # It waited for the dead leader's lease to expire (nobody released it)...
    assert elapsed > timeout - poll - 0.2, elapsed
    # ...and not longer than timeout + poll_interval (plus scheduling slack).
    assert elapsed < timeout + poll + 0.5, elapsed
    row = await lease(chancy)
    assert row is not None and row[0] == "survivor"


@uses_db
async def test_a_frozen_leader_process_steps_down_when_it_resumes(
    chancy: Chancy, chancy_dsn: str, cluster: Cluster, tmp_path: Path
) -> None:
    poll, timeout = 0.3, 1.2
    frozen = await Subprocess.start(
        chancy_dsn, "frozen", poll, timeout, tmp_path / "frozen.log"
    )
    try:
        await frozen.expect("LEADER", timeout=30)
        other = await cluster.start("other", poll_interval=poll, timeout=timeout)
        frozen.proc.send_signal(signal.SIGSTOP)
        await asyncio.wait_for(other.is_leader.wait(), timeout + poll + 3)
        frozen.proc.send_signal(signal.SIGCONT)
        # On waking up it finds its lease gone and stops believing it leads...
        await frozen.expect("FOLLOWER", timeout=5)
        # ...without disturbing the new leader.
        await cluster.plugins["other"].wait_for_round(rounds=2, timeout=5)
        assert other.is_leader.is_set()
        row = await lease(chancy)
        assert row is not None and row[0] == "other"
    finally:
        await frozen.close()


@uses_db
async def test_a_stalled_leader_cannot_renew_once_the_lease_names_another(
    chancy: Chancy, cluster: Cluster
) -> None:
    poll, timeout = 0.2, 1.0
    plugin_a = StallableLeadership(poll, timeout)
    plugin_b = StallableLeadership(poll, timeout)
    async with Sampler(cluster) as sampler:
        a = await cluster.start("a", plugin=plugin_a)
        await asyncio.wait_for(a.is_leader.wait(), 1)
        b = await cluster.start("b", plugin=plugin_b)

        # A stops renewing: it steps down by itself before its lease expires,
        # and only then does B take over.
        plugin_a.stalled = True
        await asyncio.wait_for(b.is_leader.wait(), timeout + poll + 1)
        assert not a.is_leader.is_set()
    assert sampler.overlaps == []

    # Now the worst case: A still believes it leads (its process was frozen
    # before it could notice) and comes back to renew. Freeze B's rounds too so
    # that the lease's expiry can be compared.
    plugin_b.stalled = True
    await asyncio.sleep(poll)  # let a round of B that may be in flight finish
    before = await lease(chancy)
    assert before is not None and before[0] == "b"
    a.is_leader.set()
    assert await Leadership.elect(plugin_a, a, a.chancy) is False
    assert not a.is_leader.is_set()
    after = await lease(chancy)
    assert after == before  # A did not extend B's lease
    assert b.is_leader.is_set()


@uses_db
async def test_a_database_error_clears_is_leader_and_the_lease_is_taken_back(
    chancy: Chancy,
    cluster: Cluster,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="chancy")
    plugin = StallableLeadership(0.3, 3.0)  # long lease: the row outlives the error
    worker = await cluster.start("flaky", plugin=plugin)
    await asyncio.wait_for(worker.is_leader.wait(), 1)
    plugin.stalled = True  # drive the rounds by hand

    async def broken() -> Any:
        raise psycopg.OperationalError("the database went away")

    with monkeypatch.context() as m:
        m.setattr(worker.chancy, "ensure_open", broken)
        assert await Leadership.elect(plugin, worker, worker.chancy) is False
    assert not worker.is_leader.is_set()
    assert "could not be renewed" in caplog.text
    assert "the database went away" in caplog.text

    # The row still names this worker and has not expired: the next round
    # takes it back instead of waiting for it to expire.
    assert await Leadership.elect(plugin, worker, worker.chancy) is True
    assert worker.is_leader.is_set()
    row = await lease(chancy)
    assert row is not None and row[0] == "flaky"


@uses_db
async def test_a_leader_that_cannot_renew_steps_down_before_its_lease_expires(
    chancy: Chancy, cluster: Cluster
) -> None:
    poll, timeout = 0.3, 2.0
    plugin = StallableLeadership(poll, timeout)
    worker = await cluster.start("slow", plugin=plugin)
    await asyncio.wait_for(worker.is_leader.wait(), 1)
    plugin.stalled = True
    stalled_at = time.monotonic()
    row = await lease(chancy)
    assert row is not None
    await wait_until(lambda: not worker.is_leader.is_set(), timeout + 0.5)
    # It stepped down while its lease was still valid in the database.
    assert time.monotonic() - stalled_at < timeout
    async with chancy.pool.connection() as conn:
        cursor = await conn.execute(
            f"SELECT expires_at > NOW() FROM {chancy.sql.leader} WHERE worker_id = 'slow'"
        )
        still_valid = await cursor.fetchone()
    assert still_valid == (True,)
    # Once it can renew again, it leads again.
    plugin.stalled = False
    await asyncio.wait_for(worker.is_leader.wait(), poll + 1)


@uses_db
async def test_stopping_releases_the_lease(chancy: Chancy, cluster: Cluster) -> None:
    worker = await cluster.start("leaving")
    await asyncio.wait_for(worker.is_leader.wait(), 1)
    await cluster.stop("leaving")
    assert not worker.is_leader.is_set()
    assert await lease(chancy) is None


@uses_db
async def test_a_follower_does_not_release_the_leaders_lease(
    chancy: Chancy, cluster: Cluster
) -> None:
    leader = await cluster.start("leader")
    await asyncio.wait_for(leader.is_leader.wait(), 1)
    follower = await cluster.start("follower")
    await cluster.plugins["follower"].wait_for_round(timeout=2)
    await cluster.stop("follower")
    assert not follower.is_leader.is_set()
    row = await lease(chancy)
    assert row is not None and row[0] == "leader"
    assert leader.is_leader.is_set()
