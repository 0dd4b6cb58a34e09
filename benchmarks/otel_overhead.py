"""What chancy-otel's hooks cost per push and per run, without a database.

    hatch run bench:python benchmarks/otel_overhead.py   # hatch-test env: SDK installed

Prints microseconds for a push call of one job, per job of a push call of
1,000 jobs, and per run (``on_job_starting``, ``on_job_completed`` and
``on_job_updated``), with:

- no SDK: OpenTelemetry's API alone, whose spans and instruments are no-ops
  (what an app pays before it sets up a provider);
- the SDK with spans and metrics (recorded, never exported: the exporter's
  own cost depends on the back end);
- the SDK with spans only (``metrics=False``).
"""

from __future__ import annotations

import asyncio
import time
import types
import uuid
from datetime import UTC, datetime
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from chancy import Job, QueuedJob
from chancy.plugins.otel import OpenTelemetryPlugin

ROUNDS = 20_000
BATCH = 1_000


def measure(label: str, plugin: OpenTelemetryPlugin) -> None:
    app: Any = None  # the hooks do not use the app
    one = [Job(func="m.f", queue="q")]
    many = [Job(func="m.f", queue="q") for _ in range(BATCH)]
    start = time.perf_counter()
    for _ in range(ROUNDS):
        stored = plugin.on_jobs_pushing(chancy=app, jobs=one) or one
        plugin.on_jobs_pushed(chancy=app, jobs=stored, references=None, error=None)
    single = (time.perf_counter() - start) / ROUNDS * 1e6
    start = time.perf_counter()
    for _ in range(20):
        stored = plugin.on_jobs_pushing(chancy=app, jobs=many) or many
        plugin.on_jobs_pushed(chancy=app, jobs=stored, references=None, error=None)
    batch = (time.perf_counter() - start) / 20 / BATCH * 1e6

    worker: Any = types.SimpleNamespace(worker_id="bench")
    now = datetime.now(UTC)
    job = QueuedJob(
        id=uuid.uuid4(),
        func="m.f",
        queue="q",
        meta=dict(stored[0].meta),
        created_at=now,
        started_at=now,
        state="running",
    )

    async def runs() -> float:
        start = time.perf_counter()
        for _ in range(ROUNDS):
            running = await plugin.on_job_starting(job=job, worker=worker)
            done = await plugin.on_job_completed(worker=worker, job=running)
            await plugin.on_job_updated(worker=worker, job=done)
        return (time.perf_counter() - start) / ROUNDS * 1e6

    run = asyncio.run(runs())
    print(
        f"{label:<24} push of 1 job {single:6.1f} µs   per job of a push of"
        f" {BATCH} {batch:5.2f} µs   per run {run:6.1f} µs"
    )


def main() -> None:
    measure("no SDK (API no-ops)", OpenTelemetryPlugin())
    spans = TracerProvider()  # no span processor: recorded, not exported
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    measure(
        "SDK, spans and metrics",
        OpenTelemetryPlugin(tracer_provider=spans, meter_provider=meters),
    )
    measure(
        "SDK, spans only", OpenTelemetryPlugin(tracer_provider=spans, metrics=False)
    )


if __name__ == "__main__":
    main()
