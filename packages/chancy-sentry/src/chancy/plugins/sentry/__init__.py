"""Sentry error reporting: every job run that raises is sent to Sentry.

Call ``sentry_sdk.init()`` yourself, in the process that runs the worker, and
pass :class:`SentryPlugin` to the app; it is never enabled by default::

    import sentry_sdk

    from chancy import Chancy
    from chancy.plugins.sentry import SentryPlugin

    sentry_sdk.init(dsn="https://key@o0.ingest.sentry.io/0", environment="prod")

    chancy = Chancy(
        "postgresql://localhost/app",
        plugins=[SentryPlugin(tags={"service": "billing"})],
    )

After each run that raised, the plugin captures the exception in a new Sentry
scope tagged ``chancy.func``, ``chancy.worker`` (the worker's id) and
``chancy.queue``, with the job's id in the extra ``chancy.job_id`` and a
``chancy`` context (id, function, queue, state, attempts). Successful runs
send nothing. The job is returned unchanged, and a failure to report is
logged as a warning: it never stops the worker or changes the job.

Options: ``tags`` (more tags on every event), ``ignore`` (exception classes
not to report, e.g. ``[JobCancelledError]``) and ``capture_retries`` (``False``
reports only a job's last failure, not the runs that will be retried).
"""

from __future__ import annotations

from chancy.plugins.sentry.plugin import SentryPlugin

__all__ = ["SentryPlugin"]
