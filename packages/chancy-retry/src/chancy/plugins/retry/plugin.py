"""Retries of failed jobs with exponential back-off and per-exception rules."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import attrs

from chancy.errors import (
    ChancyError,
    ConfigurationError,
    JobCancelledError,
    Snooze,
    WorkerLostError,
)
from chancy.job import QueuedJob
from chancy.plugin import Plugin

if TYPE_CHECKING:
    from chancy.worker import Worker

__all__ = [
    "InvalidRetrySettings",
    "RetryPlugin",
    "RetrySettings",
    "retry_settings",
]

IDENTIFIER: Final = "chancy.retry_plugin"
DISTRIBUTION: Final = "chancy-retry"

#: The key of ``Job.meta`` holding a job's own settings.
META_KEY: Final = "retry_settings"

#: Every setting, in the order they are documented.
SETTINGS: Final = (
    "backoff",
    "backoff_factor",
    "backoff_limit",
    "backoff_jitter",
    "retry_on",
    "fail_on",
)

#: An exception class, its name, or several of them.
ExceptionNames: TypeAlias = (
    str | type[BaseException] | Iterable[str | type[BaseException]]
)

#: The longest wait the plugin schedules, in seconds (about a century).
_MAX_DELAY: Final = 100 * 365.25 * 86400

# A dotted name. Loose on purpose: ``<locals>`` appears in the qualified name
# of local classes, and module names are not always identifiers.
_NAME = re.compile(r"[^\s.]+(?:\.[^\s.]+)*")


class InvalidRetrySettings(ConfigurationError):
    """Retry settings with a wrong value; the message names the setting.

    Raised at once by :func:`retry_settings` and :class:`RetryPlugin`. When a
    job's own ``meta["retry_settings"]`` is wrong, the job fails instead (with
    this message added to its error) and the worker carries on.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        #: The setting at fault (``None`` when the whole mapping is wrong).
        self.key = key


def _describe(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def _number(where: str, key: str, value: object, *, seconds: bool) -> float:
    if seconds and isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        what = "a number of seconds" if seconds else "a number"
        if seconds:
            what += " or a timedelta"
        raise InvalidRetrySettings(
            f"{where}: {key!r} must be {what}, at least 0, got {_describe(value)}",
            key=key,
        )
    return value


def _jitter(where: str, key: str, value: object) -> tuple[float, float]:
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(
            not isinstance(v, bool)
            and isinstance(v, int | float)
            and math.isfinite(v)
            and v >= 0
            for v in value
        )
        and value[0] <= value[1]
    ):
        return (value[0], value[1])
    raise InvalidRetrySettings(
        f"{where}: {key!r} must be [minimum, maximum], two numbers of seconds with"
        f" 0 <= minimum <= maximum, got {_describe(value)}",
        key=key,
    )


def _exception_name(where: str, key: str, item: object) -> str:
    if isinstance(item, type):
        if not issubclass(item, BaseException):
            raise InvalidRetrySettings(
                f"{where}: {key!r} takes exception classes or their names;"
                f" {item.__qualname__} is not an exception class",
                key=key,
            )
        return f"{item.__module__}.{item.__qualname__}"
    if isinstance(item, str) and _NAME.fullmatch(item):
        return item
    raise InvalidRetrySettings(
        f"{where}: {key!r} must list exception classes or their names"
        f' ("ValueError", "myapp.errors.TransientError"), got {_describe(item)}',
        key=key,
    )


def _exceptions(where: str, key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str | type):
        return (_exception_name(where, key, value),)
    if isinstance(value, Mapping | bytes) or not isinstance(value, Iterable):
        raise InvalidRetrySettings(
            f"{where}: {key!r} must be a list of exception names, got"
            f" {_describe(value)}",
            key=key,
        )
    return tuple(_exception_name(where, key, item) for item in value)


def _check(where: str, key: str, value: object) -> Any:
    """``value`` of setting ``key``, validated and in :class:`RetrySettings` form."""
    if key in ("backoff", "backoff_limit"):
        return _number(where, key, value, seconds=True)
    if key == "backoff_factor":
        return _number(where, key, value, seconds=False)
    if key == "backoff_jitter":
        return _jitter(where, key, value)
    if key == "retry_on":
        return None if value is None else _exceptions(where, key, value)
    if key == "fail_on":
        return () if value is None else _exceptions(where, key, value)
    raise InvalidRetrySettings(
        f"{where}: unknown setting {key!r}; the settings are {', '.join(SETTINGS)}",
        key=key,
    )


def _class_paths(exc: BaseException) -> list[str]:
    """``module.qualname`` of the exception's class and of each of its bases.

    An exception raised in a child process (process and sub-interpreter
    executors) reaches the worker rebuilt: built-in exceptions as themselves,
    others as ``RemoteJobError`` carrying the original class's path only.
    """
    paths = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in type(exc).__mro__
        if cls is not object
    ]
    if isinstance(exc, ChancyError):
        from chancy.executors.process import RemoteJobError

        if isinstance(exc, RemoteJobError) and exc.type_name:
            paths.insert(0, exc.type_name)
    return paths


def _matching(paths: list[str], names: Iterable[str]) -> str | None:
    """The first of ``names`` naming one of ``paths`` (see :func:`_class_paths`).

    A name matches a class whose dotted path is the name or ends with
    ``"." + name``: ``"ValueError"`` and ``"builtins.ValueError"`` match
    ``ValueError`` and its subclasses, ``"errors.Transient"`` matches
    ``myapp.errors.Transient``.
    """
    for name in names:
        suffix = "." + name
        if any(path == name or path.endswith(suffix) for path in paths):
            return name
    return None


@attrs.frozen
class RetrySettings:
    """Validated retry settings: the plugin's defaults or a job's effective ones.

    The delay before attempt ``n + 1`` (after ``n`` failed attempts) is
    ``min(backoff * backoff_factor ** (n - 1), backoff_limit)`` plus a random
    jitter drawn uniformly from ``backoff_jitter``, in seconds.
    """

    #: Seconds to wait after the first failure.
    backoff: float = 1
    #: Each further failure multiplies the wait by this.
    backoff_factor: float = 2.0
    #: The wait before jitter never exceeds this many seconds.
    backoff_limit: float = 300
    #: ``(minimum, maximum)`` seconds of random jitter added to every wait.
    backoff_jitter: tuple[float, float] = (1, 5)
    #: Only exceptions matching one of these names are retried (``None``: all).
    retry_on: tuple[str, ...] | None = None
    #: Exceptions matching one of these names fail the job at once.
    fail_on: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(RetrySettings):
            value = _check("RetrySettings", field.name, getattr(self, field.name))
            object.__setattr__(self, field.name, value)

    def merged(
        self, overrides: Mapping[str, Any], *, where: str = "retry settings"
    ) -> RetrySettings:
        """A copy with ``overrides`` (setting name → value) validated and applied.

        :param where: names the source of the settings in error messages.
        :raises InvalidRetrySettings: naming the first wrong setting.
        """
        if not isinstance(overrides, Mapping):
            raise InvalidRetrySettings(
                f"{where} must be a mapping of setting names to values, got"
                f" {_describe(overrides)}"
            )
        changes = {}
        for key, value in overrides.items():
            if not isinstance(key, str):
                raise InvalidRetrySettings(
                    f"{where}: setting names are strings, got {key!r}"
                )
            changes[key] = _check(where, key, value)
        return attrs.evolve(self, **changes)

    def delay(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` failed attempts (jitter included)."""
        delay = 0.0
        if self.backoff:
            try:
                delay = self.backoff * float(self.backoff_factor) ** max(
                    attempts - 1, 0
                )
            except OverflowError:
                delay = math.inf
        low, high = self.backoff_jitter
        return min(delay, self.backoff_limit) + random.uniform(low, high)

    def reason_to_fail(self, exc: BaseException) -> str | None:
        """Why ``exc`` must not be retried under these settings, or ``None``."""
        paths = _class_paths(exc)
        name = _matching(paths, self.fail_on)
        if name is not None:
            return f"{paths[0]} matches fail_on entry {name!r}"
        if self.retry_on is not None and _matching(paths, self.retry_on) is None:
            listed = ", ".join(repr(n) for n in self.retry_on) or "nothing"
            return f"{paths[0]} does not match retry_on ({listed})"
        return None

    def to_meta(self) -> dict[str, Any]:
        """These settings as JSON-ready ``retry_settings`` for ``Job.meta``."""
        meta: dict[str, Any] = {
            "backoff": self.backoff,
            "backoff_factor": self.backoff_factor,
            "backoff_limit": self.backoff_limit,
            "backoff_jitter": list(self.backoff_jitter),
            "fail_on": list(self.fail_on),
        }
        if self.retry_on is not None:
            meta["retry_on"] = list(self.retry_on)
        return meta


def retry_settings(
    *,
    backoff: float | timedelta | None = None,
    backoff_factor: float | None = None,
    backoff_limit: float | timedelta | None = None,
    backoff_jitter: tuple[float, float] | list[float] | None = None,
    retry_on: ExceptionNames | None = None,
    fail_on: ExceptionNames | None = None,
) -> dict[str, Any]:
    """Build a job's ``retry_settings``, validated, for ``Job.meta``::

        job = Job.from_func(fetch, max_attempts=5).with_meta(
            {"retry_settings": retry_settings(backoff=2, retry_on=[TimeoutError])}
        )

    Only the settings given are included; the others keep the
    :class:`RetryPlugin`'s defaults. Exception classes become their dotted
    names, timedeltas seconds, and the jitter a two-item list, so the result
    is JSON.

    :raises InvalidRetrySettings: naming the wrong setting.
    """
    given = {
        "backoff": backoff,
        "backoff_factor": backoff_factor,
        "backoff_limit": backoff_limit,
        "backoff_jitter": backoff_jitter,
        "retry_on": retry_on,
        "fail_on": fail_on,
    }
    out: dict[str, Any] = {}
    for key, value in given.items():
        if value is None:
            continue
        checked = _check("retry_settings()", key, value)
        out[key] = list(checked) if isinstance(checked, tuple) else checked
    return out


class RetryPlugin(Plugin):
    """Retries failed jobs later, with exponential back-off and jitter.

    The core already counts attempts: a job that raised is ``retrying`` while
    ``attempts < max_attempts`` (and would run again at once), ``failed``
    afterwards, and each attempt's error and traceback is appended to
    ``errors``. This plugin decides *when* and *whether* the next attempt
    runs: it sets ``scheduled_at = now + delay`` (see :class:`RetrySettings`),
    or fails the job at once when the exception is excluded by ``fail_on`` or
    ``retry_on``. ``max_attempts`` still bounds the number of attempts: a job
    out of attempts stays ``failed``.

    Settings come from the job's ``meta["retry_settings"]`` (build it with
    :func:`retry_settings`), each missing one from the plugin's defaults. A
    job whose settings are wrong fails, and its error says which setting is
    wrong; the worker carries on.

    :param retry_on: default for jobs that do not set it: only exceptions
        matching these classes or names are retried (``None``: every
        exception).
    :param fail_on: default for jobs that do not set it: exceptions matching
        these fail the job at once. Wins over ``retry_on``.
    :param default_settings: defaults for the other settings, e.g.
        ``{"backoff": 5, "backoff_limit": 600}``.
    :raises InvalidRetrySettings: naming the wrong setting.
    """

    identifier = IDENTIFIER
    distribution = DISTRIBUTION

    def __init__(
        self,
        *,
        retry_on: ExceptionNames | None = None,
        fail_on: ExceptionNames | None = None,
        default_settings: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        defaults = RetrySettings()
        if default_settings is not None:
            defaults = defaults.merged(
                default_settings, where="RetryPlugin default_settings"
            )
        arguments = {"retry_on": retry_on, "fail_on": fail_on}
        for key, value in arguments.items():
            if value is None:
                continue
            if default_settings is not None and key in default_settings:
                raise InvalidRetrySettings(
                    f"RetryPlugin: {key!r} is given both as an argument and in"
                    " default_settings",
                    key=key,
                )
            defaults = defaults.merged({key: value}, where="RetryPlugin")
        #: Settings of jobs that set none of their own.
        self.defaults: RetrySettings = defaults

    def __repr__(self) -> str:
        return f"<RetryPlugin(defaults={self.defaults!r})>"

    def settings_for(self, job: QueuedJob) -> RetrySettings:
        """The job's effective settings: its ``meta["retry_settings"]`` over the
        plugin's defaults.

        :raises InvalidRetrySettings: naming the wrong setting.
        """
        own = job.meta.get(META_KEY)
        if own is None:
            return self.defaults
        return self.defaults.merged(own, where=f"job meta {META_KEY!r}")

    @staticmethod
    def calculate_next_run(
        job: QueuedJob, retry_settings: RetrySettings | Mapping[str, Any]
    ) -> datetime:
        """When the job's next attempt may run: now plus the back-off delay.

        ``retry_settings`` may be a raw mapping (validated over the default
        settings), as in the original plugin.
        """
        if not isinstance(retry_settings, RetrySettings):
            retry_settings = RetrySettings().merged(retry_settings)
        # Huge settings must not overflow datetime: a century is "never" enough.
        delay = min(retry_settings.delay(job.attempts), _MAX_DELAY)
        return datetime.now(UTC) + timedelta(seconds=delay)

    @staticmethod
    def fail(job: QueuedJob, reason: str) -> QueuedJob:
        """The job failed for good now; ``reason`` is added to this attempt's error."""
        errors = list(job.errors)
        if errors and errors[-1].get("attempt") == job.attempts - 1:
            last = dict(errors[-1])
            text = str(last.get("traceback") or "").rstrip("\n")
            last["traceback"] = f"{text}\n\nRetryPlugin: {reason}\n"
            errors[-1] = last
        return attrs.evolve(
            job,
            state=QueuedJob.State.FAILED,
            completed_at=datetime.now(UTC),
            errors=errors,
        )

    async def on_job_completed(
        self,
        *,
        worker: Worker,
        job: QueuedJob,
        exc: BaseException | None = None,
        result: Any = None,
    ) -> QueuedJob:
        if exc is None or job.state not in (
            QueuedJob.State.FAILED,
            QueuedJob.State.RETRYING,
        ):
            return job
        if job.attempts >= job.max_attempts:
            return job  # out of attempts: failed, as the core decided
        if isinstance(exc, JobCancelledError):
            return job  # cancel_job already wrote the outcome
        if isinstance(exc, WorkerLostError):
            return job  # a lost run: not an attempt, it has its own cap
        if isinstance(exc, Snooze):
            return job  # the job asked to run later: not a failure
        try:
            settings = self.settings_for(job)
        except InvalidRetrySettings as error:
            worker.log.warning(
                "RetryPlugin: job %s (%s) fails without retry: %s",
                job.id,
                job.func,
                error,
            )
            return self.fail(job, f"not retried: {error}")
        reason = settings.reason_to_fail(exc)
        if reason is not None:
            return self.fail(job, f"not retried: {reason}")
        return attrs.evolve(
            job,
            state=QueuedJob.State.RETRYING,
            completed_at=None,
            scheduled_at=self.calculate_next_run(job, settings),
        )
