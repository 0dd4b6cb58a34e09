"""Job functions for chancy-otel's tests: they report the span current in the job.

Imported only by those tests (chancy-otel and OpenTelemetry are imported
inside the functions, so this distribution needs neither).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from chancy.job import QueuedJob

__all__: list[str] = []


def _current() -> dict[str, Any]:
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return {
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "valid": ctx.is_valid,
    }


async def async_current_span(*, seconds: float = 0) -> dict[str, Any]:
    """The span current in an async job, as the job sees it without help,
    after sleeping ``seconds``."""
    await asyncio.sleep(seconds)
    return _current()


def current_span(*, context: QueuedJob, seconds: float = 0) -> dict[str, Any]:
    """The span current inside ``use_job_context`` (threaded and process jobs),
    after sleeping ``seconds``."""
    from chancy.plugins.otel import use_job_context

    time.sleep(seconds)
    outside = _current()
    with use_job_context(context):
        inside = _current()
    return {**inside, "outside_valid": outside["valid"]}
