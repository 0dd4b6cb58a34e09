"""The base class of periodic services: :class:`MaintenanceService`.

After River's maintenance services (its job cleaner, rescuer, periodic
enqueuer): each service does one thing in *passes*, one pass every
:attr:`~MaintenanceService.interval` seconds, and only the pass is its own
code. The loop, waking up early, the test signal and the error policy are
the same for all of them::

    from chancy.maintenance import MaintenanceService
    from chancy.plugin import PluginScope

    class StaleQueueReport(MaintenanceService):
        identifier = "myapp.stale_queue_report"
        scope = PluginScope.LEADER  # passes run on the elected leader only
        dependencies = ("chancy.leadership",)

        def __init__(self, *, interval: float = 300) -> None:
            super().__init__(interval=interval)

        async def run_pass(self, worker, chancy):
            ...  # one pass; return None to wait `interval` for the next

The rules, in one place:

* **Passes.** :meth:`~MaintenanceService.run` calls
  :meth:`~MaintenanceService.run_pass` at once (or after one interval when
  :attr:`~MaintenanceService.first_pass_at_start` is false), then again
  after each interval. ``run_pass`` may return a shorter wait (seconds) when
  it knows the next pass is due sooner (a cron schedule, a lease to renew).
  :meth:`~chancy.plugin.Plugin.wake_up` ends the wait: the next pass runs now.
* **Scope.** With ``scope = PluginScope.LEADER`` the worker's supervisor
  runs the loop only while the worker holds the leader lease and cancels it
  when the lease is lost, so a pass never needs ``wait_for_leader``.
* **Errors.** A pass that raises ends the loop; the worker's supervisor logs
  it (one warning line for the database errors of
  :data:`chancy.errors.TRANSIENT_ERRORS`, a traceback for anything else) and
  restarts the loop with exponential back-off (``Worker(backoff_initial=,
  backoff_max=, backoff_max_retries=)``). Services never retry or back off
  on their own.
* **Test signal.** Every finished pass adds one to
  :attr:`~MaintenanceService.passes` and sets
  :attr:`~MaintenanceService.pass_done`;
  ``await service.wait_for_passes(n, timeout=...)`` waits for ``n`` more.
  A failed pass is not counted. A public method that runs one whole pass
  (``Pruner.run_once``, ``Recovery.recover``) is decorated with
  :func:`counted_pass`: called by hand it counts as a pass too, and called
  from ``run_pass`` it is not counted twice.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    Generic,
    ParamSpec,
    TypeVar,
    overload,
)

from chancy.plugin import Plugin

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

__all__ = ["Alias", "MaintenanceService", "counted_pass", "wait_for_count"]

_T = TypeVar("_T")
_P = ParamSpec("_P")
_S = TypeVar("_S", bound="MaintenanceService")

#: Set while a pass that will be counted runs (in the loop's task, or in a
#: :func:`counted_pass` method called by hand), so that it is counted once.
_COUNTING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "chancy_maintenance_counting", default=False
)


def counted_pass(
    method: Callable[Concatenate[_S, _P], Awaitable[_T]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    """Mark a public method that runs one whole pass: when it returns, it
    counts as a pass (:meth:`MaintenanceService.record_pass`), unless it was
    called from a pass that is counted already (the loop's
    :meth:`MaintenanceService.run_pass`).
    A method that raises is not counted."""

    @functools.wraps(method)
    async def counted(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if _COUNTING.get():
            return await method(self, *args, **kwargs)
        token = _COUNTING.set(True)
        try:
            result = await method(self, *args, **kwargs)
        finally:
            _COUNTING.reset(token)
        self.record_pass()
        return result

    return counted


async def wait_for_count(
    current: Callable[[], int], event: asyncio.Event, count: int, timeout: float | None
) -> None:
    """Wait until ``current()`` has grown by ``count``; ``event`` is set after
    each increase. Raises :class:`TimeoutError` after ``timeout`` seconds.

    The one test-signal wait behind :meth:`MaintenanceService.wait_for_passes`
    and the plugins' own counters (``Metrics.wait_for_sync``, ...).
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be an integer >= 0, got {count!r}")
    target = current() + count
    async with asyncio.timeout(timeout):
        while current() < target:
            event.clear()
            await event.wait()


class Alias(Generic[_T]):
    """A read-write attribute that is another attribute under an older name
    (``Pruner.poll_interval`` is its :attr:`~MaintenanceService.interval`,
    ``Pruner.pruned_event`` its :attr:`~MaintenanceService.pass_done`)."""

    def __init__(self, target: str, doc: str = "") -> None:
        self.target = target
        self.__doc__ = doc or f"Another name of :attr:`{target}`."

    @overload
    def __get__(self, instance: None, owner: type) -> Alias[_T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> _T: ...
    def __get__(self, instance: object | None, owner: type) -> Alias[_T] | _T:
        if instance is None:
            return self
        value: _T = getattr(instance, self.target)
        return value

    def __set__(self, instance: object, value: _T) -> None:
        setattr(instance, self.target, value)


class MaintenanceService(Plugin, abc.ABC):
    """A plugin that does its work in periodic passes (see :mod:`chancy.maintenance`).

    Subclasses implement :meth:`run_pass`, call ``super().__init__(interval=...)``
    and declare their facts as class attributes like any
    :class:`~chancy.plugin.Plugin`.

    :param interval: seconds between two passes (a positive number).
    """

    #: Whether the first pass runs as soon as the loop starts (when the
    #: worker starts, or, for a leader-scoped service, when it starts
    #: leading); if false the loop first waits one interval.
    first_pass_at_start: ClassVar[bool] = True

    def __init__(self, *, interval: float) -> None:
        super().__init__()
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not interval > 0
        ):
            raise ValueError(
                f"{type(self).__name__} interval must be a positive number of"
                f" seconds, got {interval!r}"
            )
        #: Seconds between two passes; :meth:`run_pass` may ask for less.
        self.interval: float = interval
        #: Passes finished by this instance (by every worker using it).
        self.passes = 0
        #: Set after every finished pass (tests may clear it).
        self.pass_done = asyncio.Event()

    @abc.abstractmethod
    async def run_pass(self, worker: Worker, chancy: Chancy) -> float | None:
        """Do one pass. Return ``None`` to run the next one in
        :attr:`interval` seconds, or a number of seconds to run it sooner.

        Raise on failure: the worker's supervisor logs the error and
        restarts the loop with back-off. The loop counts the pass; to run
        one by hand, call the service's public :func:`counted_pass` method.
        """

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """The loop: a pass, then a wait, until the worker stops (or, for a
        leader-scoped service, the worker stops leading)."""
        if not self.first_pass_at_start:
            await self.wait_for_next_pass(worker, self.interval)
        while True:
            token = _COUNTING.set(True)
            try:
                delay = await self.run_pass(worker, chancy)
            finally:
                _COUNTING.reset(token)
            self.record_pass()
            if delay is None or delay > self.interval:
                delay = self.interval
            await self.wait_for_next_pass(worker, max(0.0, delay))

    async def wait_for_next_pass(self, worker: Worker, seconds: float) -> None:
        """Wait ``seconds``, or until :meth:`~chancy.plugin.Plugin.wake_up`,
        before the next pass.
        Override to wait on something of your own as well."""
        await self.sleep(seconds)

    def record_pass(self) -> None:
        """Count one finished pass and set :attr:`pass_done` (the loop does it
        after every :meth:`run_pass`)."""
        self.passes += 1
        self.pass_done.set()

    async def wait_for_passes(
        self, count: int = 1, *, timeout: float | None = None
    ) -> None:
        """Wait until ``count`` more passes have finished (a test signal);
        :class:`TimeoutError` after ``timeout`` seconds."""
        await wait_for_count(lambda: self.passes, self.pass_done, count, timeout)
