"""The maintenance-service base: passes, wake-ups, the test signal, errors
handled by the supervisor, and the leader-only scope."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import ClassVar

import psycopg
import pytest

from chancy import Chancy, Worker
from chancy.errors import TRANSIENT_ERRORS
from chancy.maintenance import Alias, MaintenanceService, counted_pass, wait_for_count
from chancy.plugin import PluginScope


class Counter(MaintenanceService):
    """Counts its passes; can be told to fail or to ask for a shorter wait."""

    identifier = "test.counter"

    #: Exceptions the next passes raise, in order.
    failures: list[BaseException]
    #: What run_pass returns.
    next_delay: float | None = None

    def __init__(self, *, interval: float = 3600) -> None:
        super().__init__(interval=interval)
        self.failures = []
        self.started: list[float] = []
        self.workers: list[str] = []

    async def run_pass(self, worker: Worker, chancy: Chancy) -> float | None:
        self.started.append(time.monotonic())
        self.workers.append(worker.worker_id)
        if self.failures:
            raise self.failures.pop(0)
        return self.next_delay

    #: An older name, as plugins keep them.
    every = Alias[float]("interval")


class LaterCounter(Counter):
    identifier = "test.later_counter"
    first_pass_at_start = False


class LeaderCounter(Counter):
    identifier = "test.leader_counter"
    scope: ClassVar[PluginScope] = PluginScope.LEADER


class Tidier(MaintenanceService):
    """Its pass is a public method users may call by hand."""

    identifier = "test.tidier"

    def __init__(self) -> None:
        super().__init__(interval=3600)
        self.tidied = 0

    async def run_pass(self, worker: Worker, chancy: Chancy) -> None:
        await self.tidy()

    @counted_pass
    async def tidy(self, *, fail: bool = False) -> int:
        if fail:
            raise RuntimeError("no")
        self.tidied += 1
        return self.tidied


def _app(plugin: MaintenanceService) -> dict[str, object]:
    return {"plugins": [plugin], "no_default_plugins": True}


def test_interval_must_be_positive_and_run_pass_is_required() -> None:
    for bad in (0, -1, True, "5", float("nan")):
        with pytest.raises(ValueError, match="Counter interval must be a positive"):
            Counter(interval=bad)  # type: ignore[arg-type]

    class Incomplete(MaintenanceService):
        pass

    with pytest.raises(TypeError, match="run_pass"):
        Incomplete(interval=1)  # type: ignore[abstract]


def test_alias_reads_and_writes_the_target() -> None:
    counter = Counter(interval=5)
    assert counter.every == 5
    counter.every = 7
    assert counter.interval == 7
    assert isinstance(Counter.every, Alias)


async def test_wait_for_passes_counts_record_pass_and_times_out() -> None:
    counter = Counter()
    waiter = asyncio.ensure_future(counter.wait_for_passes(2, timeout=5))
    await asyncio.sleep(0)  # counting starts when the waiter does
    counter.record_pass()
    await asyncio.sleep(0)
    assert not waiter.done()
    counter.record_pass()
    await asyncio.wait_for(waiter, 1)
    assert counter.passes == 2 and counter.pass_done.is_set()
    with pytest.raises(TimeoutError):
        await counter.wait_for_passes(1, timeout=0.05)
    with pytest.raises(ValueError, match="count must be an integer"):
        await wait_for_count(lambda: 0, asyncio.Event(), -1, None)


async def test_a_counted_pass_called_by_hand_counts_once() -> None:
    tidier = Tidier()
    assert await tidier.tidy() == 1
    assert tidier.passes == 1 and tidier.pass_done.is_set()
    with pytest.raises(RuntimeError):
        await tidier.tidy(fail=True)
    assert tidier.passes == 1  # a failed pass is not counted


@pytest.mark.parametrize("chancy", [_app(Tidier())], indirect=True)
async def test_a_counted_pass_inside_run_pass_is_not_counted_twice(
    chancy: Chancy, worker: Worker
) -> None:
    tidier = chancy.plugins["test.tidier"]
    assert isinstance(tidier, Tidier)
    if tidier.passes == 0:
        await tidier.wait_for_passes(1, timeout=5)
    await asyncio.sleep(0.1)
    assert (tidier.passes, tidier.tidied) == (1, 1)
    tidier.wake_up()
    await tidier.wait_for_passes(1, timeout=5)
    assert (tidier.passes, tidier.tidied) == (2, 2)


@pytest.mark.parametrize("chancy", [_app(Counter(interval=0.05))], indirect=True)
async def test_passes_repeat_every_interval(chancy: Chancy, worker: Worker) -> None:
    counter = chancy.plugins["test.counter"]
    assert isinstance(counter, Counter)
    await counter.wait_for_passes(4, timeout=10)
    gaps = [b - a for a, b in zip(counter.started, counter.started[1:], strict=False)]
    assert gaps and min(gaps) >= 0.04  # never sooner than the interval


@pytest.mark.parametrize("chancy", [_app(Counter())], indirect=True)
async def test_first_pass_at_once_then_only_when_woken(
    chancy: Chancy, worker: Worker
) -> None:
    counter = chancy.plugins["test.counter"]
    assert isinstance(counter, Counter)
    if counter.passes == 0:
        await counter.wait_for_passes(1, timeout=5)
    await asyncio.sleep(0.2)
    assert counter.passes == 1  # the next one is an hour away
    counter.wake_up()
    await counter.wait_for_passes(1, timeout=5)
    assert counter.passes == 2


@pytest.mark.parametrize("chancy", [_app(LaterCounter())], indirect=True)
async def test_first_pass_after_one_interval_when_asked(
    chancy: Chancy, worker: Worker
) -> None:
    counter = chancy.plugins["test.later_counter"]
    assert isinstance(counter, LaterCounter)
    await asyncio.sleep(0.2)
    assert counter.passes == 0
    counter.wake_up()
    await counter.wait_for_passes(1, timeout=5)
    assert counter.passes == 1


@pytest.mark.parametrize("chancy", [_app(Counter())], indirect=True)
async def test_run_pass_may_ask_for_a_shorter_wait(
    chancy: Chancy, worker: Worker
) -> None:
    counter = chancy.plugins["test.counter"]
    assert isinstance(counter, Counter)
    counter.next_delay = 0.01
    counter.wake_up()
    await counter.wait_for_passes(5, timeout=10)  # no wake-ups: an hour otherwise


@pytest.mark.parametrize("chancy", [_app(Counter())], indirect=True)
@pytest.mark.parametrize("worker", [{"backoff_initial": 0.05}], indirect=True)
async def test_a_transient_error_is_logged_once_and_retried_by_the_supervisor(
    chancy: Chancy, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    counter = chancy.plugins["test.counter"]
    assert isinstance(counter, Counter)
    caplog.set_level(logging.WARNING, logger="chancy")
    counter.failures = [
        psycopg.OperationalError("server closed the connection"),
        RuntimeError("a bug"),
    ]
    before = counter.passes
    tries = len(counter.started)
    counter.wake_up()
    await counter.wait_for_passes(1, timeout=10)
    # Two failed passes (not counted), each followed by a restart that ran a
    # pass at once; the third succeeded.
    assert counter.passes == before + 1
    assert len(counter.started) == tries + 3
    records = [r for r in caplog.records if "plugin:test.counter" in r.getMessage()]
    transient = [r for r in records if "OperationalError" in r.getMessage()]
    assert len(transient) == 1
    assert transient[0].levelno == logging.WARNING
    assert transient[0].exc_info is None  # one line, no traceback
    crashed = [r for r in records if "crashed" in r.getMessage()]
    assert len(crashed) == 1 and crashed[0].exc_info is not None
    assert isinstance(psycopg.InterfaceError("closed"), TRANSIENT_ERRORS)


@pytest.mark.parametrize("chancy", [_app(LeaderCounter())], indirect=True)
async def test_a_leader_scoped_service_runs_passes_only_while_leading(
    chancy: Chancy, worker: Worker
) -> None:
    counter = chancy.plugins["test.leader_counter"]
    assert isinstance(counter, LeaderCounter)
    counter.next_delay = 0.02
    await asyncio.sleep(0.3)
    assert counter.passes == 0
    worker.is_leader.set()
    await counter.wait_for_passes(3, timeout=5)
    worker.is_leader.clear()
    await asyncio.sleep(0.5)  # the supervisor notices within 0.2 s
    stopped_at = counter.passes
    await asyncio.sleep(0.3)
    assert counter.passes == stopped_at
    worker.is_leader.set()  # leading again: a pass at once
    await counter.wait_for_passes(1, timeout=5)
