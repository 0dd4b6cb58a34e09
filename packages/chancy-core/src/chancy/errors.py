"""The exceptions Chancy raises."""

from __future__ import annotations

__all__ = [
    "ChancyError",
    "ConfigurationError",
    "JobCancelledError",
    "MigrationError",
    "MigrationsNeededError",
    "PluginDependencyError",
    "WorkerLostError",
]


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
