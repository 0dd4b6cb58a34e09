"""Retries with back-off: a failed job runs again later, not at once.

Without this plugin, a job that raises and has attempts left
(``max_attempts``) is ``retrying`` and runs again as soon as a worker polls
its queue. :class:`RetryPlugin` schedules the next attempt after an
exponential back-off with random jitter, and can fail a job at once for
exceptions that retrying will not fix::

    from chancy import Chancy, Job, Queue
    from chancy.plugins.retry import RetryPlugin, retry_settings

    chancy = Chancy(
        "postgresql://localhost/app",
        plugins=[RetryPlugin(fail_on=[PermissionError])],
    )

    async def fetch(*, url: str) -> None: ...

    job = Job.from_func(fetch, kwargs={"url": "https://example.com"}, max_attempts=5)
    await chancy.push(
        job.with_meta(
            {
                "retry_settings": retry_settings(
                    backoff=2,  # seconds after the first failure
                    backoff_factor=3,  # then 6, 18, 54... seconds
                    backoff_limit=300,  # never more than 5 minutes
                    backoff_jitter=[0, 1],  # plus 0-1 s at random
                    retry_on=[TimeoutError, ConnectionError],
                )
            }
        )
    )

After ``n`` failed attempts the next one is scheduled
``min(backoff * backoff_factor ** (n - 1), backoff_limit)`` seconds later, plus
a jitter drawn uniformly from ``backoff_jitter``; the job's ``scheduled_at``
shows when. Defaults: ``backoff=1``, ``backoff_factor=2.0``,
``backoff_limit=300``, ``backoff_jitter=[1, 5]``, every exception retried.

``retry_on`` lists the only exceptions that are retried; ``fail_on`` lists
exceptions that fail the job at once and wins over ``retry_on``. Both take
exception classes or names (``"ValueError"``, ``"myapp.errors.Transient"``)
and match subclasses. The number of attempts is always bounded by
``max_attempts``. Every attempt's error and traceback is kept in the job's
``errors``; when the plugin fails a job early, the reason is appended to that
attempt's traceback. A job whose ``retry_settings`` are wrong fails the same
way, with a message naming the setting.

The plugin's own settings (``RetryPlugin(retry_on=..., fail_on=...,
default_settings={...})``) apply to jobs that do not set them.
"""

from __future__ import annotations

from chancy.plugins.retry.plugin import (
    InvalidRetrySettings,
    RetryPlugin,
    RetrySettings,
    retry_settings,
)

__all__ = ["InvalidRetrySettings", "RetryPlugin", "RetrySettings", "retry_settings"]
