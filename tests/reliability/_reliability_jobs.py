"""Job functions of the reliability suite.

The worker processes of the suite (``_reliability_worker.py``) have this
directory on ``PYTHONPATH``, and so do the child processes of their process
executors, which import jobs by name. Every run records itself in the
directory named by ``CHANCY_RELIABILITY_DIR``: one file per process
(``runs-<pid>.log``), one line per event, written with a single ``write`` on
a file opened with ``O_APPEND`` (atomic for lines this short, also from
several threads)::

    S <job id> <pid> <parent pid> <time.time()>     the run started
    E <job id> <pid> <parent pid> <time.time()>     the run ended (its effect is done)

The test reads these files (:func:`_reliability.read_runs`) to count the
side effects of each job, and to tell which process ran which run and when.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import time
from typing import Any

from chancy import QueuedJob

ENV_DIR = "CHANCY_RELIABILITY_DIR"

_fd: int | None = None
_fd_pid: int | None = None


def _write(kind: str, job: QueuedJob) -> None:
    global _fd, _fd_pid
    pid = os.getpid()
    if _fd is None or _fd_pid != pid:
        directory = os.environ[ENV_DIR]
        _fd = os.open(
            os.path.join(directory, f"runs-{pid}.log"),
            os.O_WRONLY | os.O_APPEND | os.O_CREAT,
            0o644,
        )
        _fd_pid = pid
    line = f"{kind} {job.id} {pid} {os.getppid()} {time.time():.6f}\n"
    os.write(_fd, line.encode())


def record(*, seconds: float = 0.0, context: QueuedJob) -> None:
    """Record the start, sleep ``seconds``, record the end (the side effect)."""
    _write("S", context)
    if seconds:
        time.sleep(seconds)
    _write("E", context)


async def arecord(*, seconds: float = 0.0, context: QueuedJob) -> None:
    """:func:`record` for the async executor."""
    _write("S", context)
    if seconds:
        await asyncio.sleep(seconds)
    _write("E", context)


def _first_run(context: QueuedJob) -> bool:
    """Whether this is the first run of the job (a marker file per job id)."""
    marker = os.path.join(os.environ[ENV_DIR], f"started-{context.id}")
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    return True


def long_once(*, seconds: float, context: QueuedJob) -> None:
    """:func:`record` for ``seconds`` on its first run, at once on later runs."""
    record(seconds=seconds if _first_run(context) else 0.0, context=context)


async def along_once(*, seconds: float, context: QueuedJob) -> None:
    """:func:`long_once` for the async executor."""
    await arecord(seconds=seconds if _first_run(context) else 0.0, context=context)


def record_meta(*, seconds: float = 0.0, context: QueuedJob) -> None:
    """:func:`record`, and store the pid of the process that ran it in ``meta``."""
    record(seconds=seconds, context=context)
    context.meta["ran_in"] = os.getpid()


async def arecord_meta(*, seconds: float = 0.0, context: QueuedJob) -> None:
    """:func:`record_meta` for the async executor."""
    await arecord(seconds=seconds, context=context)
    context.meta["ran_in"] = os.getpid()


async def aecho(*, context: QueuedJob, **kwargs: Any) -> None:
    """Do nothing with any keyword arguments (the round-trip property test)."""


# -- poison jobs ---------------------------------------------------------------


def exit_hard(*, context: QueuedJob) -> None:
    """Leave the process at once, without cleaning up (``os._exit``)."""
    _write("S", context)
    os._exit(7)


async def aexit_hard(*, context: QueuedJob) -> None:
    """:func:`exit_hard` from an async job: the whole worker goes."""
    _write("S", context)
    os._exit(7)


def segfault(*, context: QueuedJob) -> None:
    """Read address 0: the process dies of SIGSEGV."""
    _write("S", context)
    # Python's own fault handler may be on: it prints and re-raises the signal.
    ctypes.string_at(0)


def kill_self(*, context: QueuedJob) -> None:
    """SIGKILL the process running the job (the OOM killer's way)."""
    _write("S", context)
    os.kill(os.getpid(), signal.SIGKILL)


class PoisonBaseError(BaseException):
    """Neither an ``Exception`` nor a cancellation."""


def _poison(kind: str) -> BaseException:
    if kind == "SystemExit":
        return SystemExit(3)
    if kind == "KeyboardInterrupt":
        return KeyboardInterrupt()
    if kind == "CancelledError":
        return asyncio.CancelledError("raised by the job itself")
    return PoisonBaseError("a BaseException subclass")


def raise_base(*, kind: str, context: QueuedJob) -> None:
    """Raise a ``BaseException`` that is not an ``Exception``."""
    _write("S", context)
    raise _poison(kind)


async def araise_base(*, kind: str, context: QueuedJob) -> None:
    """:func:`raise_base` for the async executor."""
    _write("S", context)
    await asyncio.sleep(0)
    raise _poison(kind)
