"""The exceptions Chancy raises."""

from __future__ import annotations

from typing import Final

import psycopg

__all__ = [
    "TRANSIENT_ERRORS",
    "ChancyError",
    "ConfigurationError",
    "JobCancelledError",
    "MigrationError",
    "MigrationsNeededError",
    "PluginDependencyError",
    "Snooze",
    "WorkerLostError",
]

#: The errors a database outage raises: a lost or refused connection
#: (``OperationalError``, including the pool's timeout), a connection that
#: was closed under the caller (``InterfaceError``) and the socket errors
#: below them. They are worth retrying; every other error is a bug or a bad
#: input. The worker's own loops retry them in place; the task supervisor
#: restarts a plugin loop that raised one with back-off, logging one warning
#: line instead of a traceback.
TRANSIENT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    OSError,
)


class ChancyError(Exception):
    """Base class of every error raised by Chancy itself."""


class ConfigurationError(ChancyError, ValueError):
    """A setting, argument or piece of stored configuration is invalid."""


class MigrationsNeededError(ChancyError):
    """The database schema is older than this code: run ``chancy migrate``."""


class MigrationError(ChancyError):
    """A migration could not be found, loaded or applied."""


class PluginDependencyError(ConfigurationError):
    """A plugin needs another plugin that is not installed or not enabled."""


class JobCancelledError(ChancyError):
    """Recorded on a job that was cancelled with :meth:`Chancy.cancel_job() <chancy.Chancy.cancel_job>`."""


class WorkerLostError(ChancyError):
    """Recorded on a job whose worker (or worker process) died while running it."""


#: The longest delay a job may snooze for: one year.
MAX_SNOOZE = 366 * 86400.0


class Snooze(Exception):
    """Raise it from a job to run it again after ``seconds``, without using up
    an attempt: ``raise chancy.Snooze(30)``.

    The job goes back to ``pending`` (``retrying`` if earlier attempts failed)
    with ``scheduled_at`` that much later; the number of snoozes is counted in
    ``meta["snoozes"]``. Nothing is recorded in ``errors``.

    :param seconds: a finite number from 0 to one year.
    :raises ValueError: a negative, infinite, NaN or absurdly long delay.
    """

    def __init__(self, seconds: float) -> None:
        import math

        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"Snooze() takes a number of seconds, got {seconds!r}")
        if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SNOOZE:
            raise ValueError(
                f"Snooze() takes a finite number of seconds from 0 to {MAX_SNOOZE:g}"
                f" (one year), got {seconds!r}"
            )
        super().__init__(seconds)
        self.seconds = float(seconds)

    def __str__(self) -> str:
        return f"snoozed for {self.seconds:g}s"
