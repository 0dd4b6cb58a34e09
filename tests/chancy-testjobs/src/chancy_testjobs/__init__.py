"""Job functions for Chancy's own test suites.

A test-only distribution (``tests/chancy-testjobs``, never in a runtime
wheel): executors that start fresh interpreters (``spawn`` child processes,
sub-interpreters) must be able to import job functions by name, and test
directories are not on ``sys.path`` in pytest's importlib mode.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

from chancy.job import QueuedJob

__all__: list[str] = []


def noop() -> None:
    """Do nothing."""


async def async_noop() -> None:
    """Do nothing, asynchronously."""


def add(*, a: int, b: int) -> int:
    return a + b


def fail(*, message: str = "this job failed on purpose") -> None:
    raise ValueError(message)


async def async_fail(*, message: str = "this job failed on purpose") -> None:
    raise ValueError(message)


def set_meta(*, key: str, value: Any, context: QueuedJob) -> None:
    """Store ``value`` under ``key`` in the job's meta (persisted on completion)."""
    context.meta[key] = value


async def async_set_meta(*, key: str, value: Any, context: QueuedJob) -> None:
    await asyncio.sleep(0)
    context.meta[key] = value


def set_meta_then_fail(*, key: str, value: Any, context: QueuedJob) -> None:
    context.meta[key] = value
    raise ValueError("failed after setting meta")


def record_pid(*, context: QueuedJob) -> None:
    """Store the id of the process that ran the job in its meta."""
    context.meta["pid"] = os.getpid()


def record_thread(*, context: QueuedJob) -> None:
    context.meta["thread"] = threading.get_ident()


def unpicklable() -> Any:
    """Return a value that cannot be pickled."""
    return threading.Lock()


def allocate(*, size: int) -> int:
    """Allocate ``size`` bytes (to trip a memory limit)."""
    block = bytearray(size)
    return len(block)


def kill_self() -> None:
    """Kill the process running the job, as the OOM killer would."""
    os.kill(os.getpid(), signal.SIGKILL)


def kill_self_once(*, context: QueuedJob) -> None:
    """Kill the process running the job on its first run only; then succeed."""
    if not context.meta.get("lost_runs"):
        os.kill(os.getpid(), signal.SIGKILL)
    context.meta["survived"] = os.getpid()


def busy_loop(*, seconds: float, context: QueuedJob) -> None:
    """Burn CPU for ``seconds`` without sleeping or calling ``checkpoint()``."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    context.meta["finished"] = True


def stubborn_loop(*, seconds: float, context: QueuedJob) -> None:
    """Like :func:`busy_loop`, with SIGALRM and SIGUSR1 blocked (a job stuck in C code)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGUSR1})
    busy_loop(seconds=seconds, context=context)


def sleep_loop(*, seconds: float, context: QueuedJob, step: float = 0.05) -> None:
    """Sleep in short steps for ``seconds``; marks ``meta["finished"]`` at the end."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(step)
    context.meta["finished"] = True


async def async_sleep(*, seconds: float, context: QueuedJob) -> None:
    """Sleep for ``seconds``; marks ``meta["finished"]`` at the end."""
    await asyncio.sleep(seconds)
    context.meta["finished"] = True


def cooperative_loop(*, seconds: float, context: QueuedJob) -> None:
    """Work in small steps for ``seconds``, calling ``context.checkpoint()`` between them."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        context.checkpoint()
        time.sleep(0.02)
    context.meta["finished"] = True


class CustomBaseError(BaseException):
    """A ``BaseException`` subclass that is neither ``Exception`` nor cancellation."""


def _base_exception(kind: str) -> BaseException:
    if kind == "SystemExit":
        return SystemExit(3)
    if kind == "KeyboardInterrupt":
        return KeyboardInterrupt()
    if kind == "CancelledError":
        return asyncio.CancelledError("raised by the job itself")
    return CustomBaseError("a BaseException subclass")


def raise_base(*, kind: str) -> None:
    """Raise a ``BaseException`` that is not an ``Exception`` (a poison job)."""
    raise _base_exception(kind)


async def async_raise_base(*, kind: str) -> None:
    await asyncio.sleep(0)
    raise _base_exception(kind)


def record_pid_and_sleep(*, path: str, seconds: float) -> None:
    """Write this process's id to ``path``, then sleep (to be killed meanwhile)."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)


def return_value(*, value: Any) -> Any:
    """Return ``value`` (stored as the job's result)."""
    return value


async def async_return_value(*, value: Any) -> Any:
    await asyncio.sleep(0)
    return value


def report_progress(
    *, steps: int, delay: float = 0.0, context: QueuedJob, message: str = "step"
) -> int:
    """Report progress ``steps`` times, sleeping ``delay`` between reports."""
    for step in range(1, steps + 1):
        context.set_progress(step, steps, f"{message} {step}")
        if delay:
            time.sleep(delay)
    return steps


async def async_report_progress(
    *, steps: int, delay: float = 0.0, context: QueuedJob, message: str = "step"
) -> int:
    for step in range(1, steps + 1):
        context.set_progress(step, steps, f"{message} {step}")
        await asyncio.sleep(delay)
    return steps


def snooze_once(*, seconds: float, context: QueuedJob) -> str:
    """Snooze on the first run, succeed on the next."""
    from chancy.errors import Snooze

    if not context.meta.get("snoozes"):
        raise Snooze(seconds)
    return "woke up"


async def async_snooze_once(*, seconds: float, context: QueuedJob) -> str:
    from chancy.errors import Snooze

    await asyncio.sleep(0)
    if not context.meta.get("snoozes"):
        raise Snooze(seconds)
    return "woke up"


def snooze_badly(*, seconds: Any) -> None:
    """Raise ``Snooze(seconds)``; ``"nan"`` and ``"inf"`` become those floats
    (JSON kwargs cannot hold them)."""
    from chancy.errors import Snooze

    if seconds in ("nan", "inf"):
        seconds = float(seconds)
    raise Snooze(seconds)


async def sleep_for(*, seconds: float) -> None:
    await asyncio.sleep(seconds)


async def block_the_loop(*, seconds: float) -> str:
    """An async job that blocks its event loop (a mistake the worker reports)."""
    time.sleep(seconds)  # noqa: ASYNC251 - on purpose
    return "done"
