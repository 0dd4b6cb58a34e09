"""OpenTelemetry for Chancy: a trace from each push through every run of the job.

Set up OpenTelemetry yourself (a ``TracerProvider`` and, for metrics, a
``MeterProvider``, with their exporters) and pass
:class:`OpenTelemetryPlugin` to the app; it is never enabled by default::

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from chancy import Chancy
    from chancy.plugins.otel import OpenTelemetryPlugin

    trace.set_tracer_provider(TracerProvider())  # plus a span processor

    chancy = Chancy("postgresql://localhost/app", plugins=[OpenTelemetryPlugin()])

Each push call gets a ``PRODUCER`` span (``publish <queue>``) whose context
is stored in the job's ``meta["otel"]``; each run gets a ``CONSUMER`` span
(``process <queue>``) on the worker, a child of that context, with the
messaging semantic conventions' attributes (``messaging.system="chancy"``,
``messaging.destination.name``, ``messaging.operation.type``/``.name``,
``messaging.message.id``), the attempt, the push → start delay, and the
exception and status ``ERROR`` when the run failed. Async jobs run with the
span current; threaded and process jobs continue it with
:func:`use_job_context`. Metrics go through the OpenTelemetry metrics API.
"""

from __future__ import annotations

from chancy.plugins.otel.plugin import (
    META_KEY,
    RUN_META_KEY,
    OpenTelemetryPlugin,
    job_context,
    use_job_context,
)

__all__ = [
    "META_KEY",
    "RUN_META_KEY",
    "OpenTelemetryPlugin",
    "job_context",
    "use_job_context",
]
