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
