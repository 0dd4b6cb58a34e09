"""Reports the exception of every failed job run to Sentry."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from chancy.errors import ConfigurationError, Snooze
from chancy.job import QueuedJob
from chancy.plugin import Plugin

if TYPE_CHECKING:
    from chancy.worker import Worker

__all__ = ["SentryPlugin"]

IDENTIFIER: Final = "chancy.sentry_plugin"
DISTRIBUTION: Final = "chancy-sentry"

#: The tags the plugin sets on every event it sends.
TAGS: Final = ("chancy.func", "chancy.worker", "chancy.queue")
#: The extra (``event["extra"]``) holding the job's id.
JOB_ID_EXTRA: Final = "chancy.job_id"
#: The extra holding the run's traceback when the exception carries none.
TRACEBACK_EXTRA: Final = "chancy.traceback"
#: The context (``event["contexts"]``) describing the job and the run.
CONTEXT: Final = "chancy"

# Sentry's limits: tag keys of at most 32 characters from this set, values of
# at most 200 characters without a newline. Longer values are dropped by
# Sentry, so the plugin cuts its own values to fit.
_TAG_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,32}")
_MAX_TAG_VALUE: Final = 200


def _tag_value(value: object) -> str:
    text = str(value).replace("\r", " ").replace("\n", " ")
    if len(text) > _MAX_TAG_VALUE:
        text = text[: _MAX_TAG_VALUE - 3] + "..."
    return text


def _check_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise ConfigurationError(
            f"SentryPlugin: tags must be a mapping of tag names to strings, got"
            f" {tags!r}"
        )
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
            raise ConfigurationError(
                f"SentryPlugin: tag name {key!r} is not a valid Sentry tag key (1 to"
                " 32 letters, digits, '_', '.', ':' or '-')"
            )
        if key in TAGS:
            raise ConfigurationError(
                f"SentryPlugin: the tag {key!r} is set by the plugin itself"
            )
        if not isinstance(value, str) or "\n" in value or len(value) > _MAX_TAG_VALUE:
            raise ConfigurationError(
                f"SentryPlugin: the value of tag {key!r} must be a string of at most"
                f" {_MAX_TAG_VALUE} characters without a newline, got {value!r}"
            )
        out[key] = value
    return out


def _check_ignore(
    ignore: type[BaseException] | Iterable[type[BaseException]] | None,
) -> tuple[type[BaseException], ...]:
    if ignore is None:
        return ()
    items: tuple[object, ...]
    if isinstance(ignore, type | str) or not isinstance(ignore, Iterable):
        items = (ignore,)
    else:
        items = tuple(ignore)
    out: list[type[BaseException]] = []
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ConfigurationError(
                f"SentryPlugin: ignore takes exception classes, got {item!r}"
            )
        out.append(item)
    return tuple(out)


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class SentryPlugin(Plugin):
    """Sends the exception of every job run that raised to Sentry.

    It assumes that ``sentry_sdk.init()`` was called elsewhere, in the
    process running the worker, and uses whatever client that set up. Each
    exception is captured in a new scope (``sentry_sdk.new_scope()``), so
    nothing it sets leaks into other events, with:

    * the tags ``chancy.func`` (the job's function), ``chancy.worker`` (the
      worker's id) and ``chancy.queue``, plus the plugin's ``tags``;
    * the extra ``chancy.job_id``;
    * a ``chancy`` context with the job's id, function, queue, state,
      attempts and ``max_attempts`` and the worker's id;
    * the job's function as the event's transaction name;
    * the extra ``chancy.traceback`` when the exception has no traceback of
      its own (a job run by the process executor raises in a child process;
      the worker only gets a rebuilt exception, and the child's formatted
      traceback).

    The job's arguments (``kwargs``) and ``meta`` are not sent.

    Reporting never breaks the worker: if it fails, a warning is logged and
    the job is saved as it would be without the plugin. The job is always
    returned unchanged.

    :param tags: more tags for every event, e.g. ``{"service": "billing"}``.
    :param ignore: exception classes not to report (and their subclasses),
        e.g. ``[JobCancelledError]``. An exception raised by a job run in a
        child process and rebuilt as ``RemoteJobError`` matches a class of
        this list only by its exact import path, not its base classes.
    :param capture_retries: report runs after which the job will be retried
        (state ``retrying``). With ``False`` only the last failure of a job is
        reported. When another plugin (such as the ``RetryPlugin``) decides
        about retries, list it before this one in ``plugins=[...]``: plugins
        see each job in that order.
    :raises ConfigurationError: for a wrong setting.
    """

    identifier = IDENTIFIER
    distribution = DISTRIBUTION

    def __init__(
        self,
        *,
        tags: Mapping[str, str] | None = None,
        ignore: type[BaseException] | Iterable[type[BaseException]] | None = None,
        capture_retries: bool = True,
    ) -> None:
        super().__init__()
        #: Tags added to every event, besides the plugin's own.
        self.tags: dict[str, str] = _check_tags(tags)
        #: Exception classes that are not reported.
        self.ignore: tuple[type[BaseException], ...] = _check_ignore(ignore)
        #: Whether runs that will be retried are reported.
        self.capture_retries: bool = bool(capture_retries)
        #: Events handed to Sentry (for tests and health checks).
        self.captured: int = 0
        #: Reports that raised and were skipped.
        self.capture_failures: int = 0

    def __repr__(self) -> str:
        return (
            f"<SentryPlugin(tags={self.tags!r},"
            f" ignore={[_class_path(c) for c in self.ignore]!r},"
            f" capture_retries={self.capture_retries!r})>"
        )

    def should_capture(self, job: QueuedJob, exc: BaseException) -> bool:
        """Whether the run of ``job`` that raised ``exc`` is reported.

        Override it to filter further; it must not raise (if it does, the
        run is not reported and a warning is logged).
        """
        if not self.capture_retries and job.state is QueuedJob.State.RETRYING:
            return False
        if self.ignore:
            if isinstance(exc, self.ignore):
                return False
            remote = getattr(exc, "type_name", None)
            if remote and any(remote == _class_path(c) for c in self.ignore):
                return False
        return True

    def capture(
        self, *, worker: Worker, job: QueuedJob, exc: BaseException
    ) -> str | None:
        """Send ``exc`` to Sentry in a new scope; return the event id, if any."""
        import sentry_sdk

        with sentry_sdk.new_scope() as scope:
            for key, value in self.tags.items():
                scope.set_tag(key, value)
            scope.set_tag("chancy.func", _tag_value(job.func))
            scope.set_tag("chancy.worker", _tag_value(worker.worker_id))
            scope.set_tag("chancy.queue", _tag_value(job.queue))
            scope.set_extra(JOB_ID_EXTRA, str(job.id))
            scope.set_context(
                CONTEXT,
                {
                    "job_id": str(job.id),
                    "func": job.func,
                    "queue": job.queue,
                    "state": job.state.value,
                    "attempts": job.attempts,
                    "max_attempts": job.max_attempts,
                    "worker_id": worker.worker_id,
                },
            )
            scope.set_transaction_name(job.func, source="task")
            if exc.__traceback__ is None:
                tb = _this_runs_traceback(job)
                if tb is not None:
                    scope.set_extra(TRACEBACK_EXTRA, tb)
            event_id = sentry_sdk.capture_exception(exc)
        if event_id is not None:
            self.captured += 1
        return event_id

    async def on_job_completed(
        self,
        *,
        worker: Worker,
        job: QueuedJob,
        exc: BaseException | None = None,
        result: Any = None,
    ) -> QueuedJob:
        if exc is None or isinstance(exc, Snooze):
            return job  # a snooze is the job asking to run later, not a failure
        try:
            if self.should_capture(job, exc):
                self.capture(worker=worker, job=job, exc=exc)
        except Exception:
            self.capture_failures += 1
            # A warning, not an error: Sentry's logging integration turns
            # error records into events, which would fail the same way.
            worker.log.warning(
                "SentryPlugin: the failure of job %s (%s) could not be reported"
                " to Sentry",
                job.id,
                job.func,
                exc_info=True,
            )
        return job

    async def on_worker_started(self, *, worker: Worker) -> None:
        try:
            import sentry_sdk

            active = sentry_sdk.get_client().is_active()
        except Exception:
            active = True  # nothing useful to say
        if not active:
            worker.log.warning(
                "SentryPlugin: sentry_sdk.init() has not been called in this"
                " process; failed jobs will not be reported"
            )


def _this_runs_traceback(job: QueuedJob) -> str | None:
    """The traceback the core recorded for the run that just ended."""
    if not job.errors:
        return None
    last = job.errors[-1]
    if not isinstance(last, Mapping) or last.get("attempt") != job.attempts - 1:
        return None
    tb = last.get("traceback")
    return tb if isinstance(tb, str) else None
