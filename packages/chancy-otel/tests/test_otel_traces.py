"""OpenTelemetryPlugin against real pushes and runs, read from the SDK's
in-memory exporter and metric reader."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from chancy import Chancy, Job, Queue, QueuedJob, Worker
from chancy.errors import ConfigurationError
from chancy.plugins.otel import META_KEY, OpenTelemetryPlugin

QUEUE = "otel"
ASYNC = "chancy.executors.asyncex.AsyncExecutor"
THREADED = "chancy.executors.thread.ThreadedExecutor"
PROCESS = "chancy.executors.process.ProcessExecutor"
# Importable by name from a child process too.
CURRENT = "chancy_testjobs.otel.current_span"
ASYNC_CURRENT = "chancy_testjobs.otel.async_current_span"
FAIL = "chancy_testjobs.fail"
ASYNC_FAIL = "chancy_testjobs.async_fail"

EXECUTORS = [
    pytest.param(ASYNC, ASYNC_CURRENT, ASYNC_FAIL, id="async"),
    pytest.param(THREADED, CURRENT, FAIL, id="threaded"),
    pytest.param(PROCESS, CURRENT, FAIL, id="process"),
]


class Telemetry:
    """A tracer provider and a meter provider that keep what they record."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("tests")

    def plugin(self, **options: Any) -> OpenTelemetryPlugin:
        return OpenTelemetryPlugin(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            **options,
        )

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        return [s for s in found if name is None or s.name == name]

    def metrics(self) -> dict[str, list[Any]]:
        """``{metric name: [data points]}``."""
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        if data is None:  # nothing was recorded
            return out
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def telemetry() -> Any:
    t = Telemetry()
    yield t
    t.shutdown()


@contextlib.asynccontextmanager
async def app(dsn: str, plugin: OpenTelemetryPlugin) -> AsyncIterator[Chancy]:
    chancy = Chancy(dsn, plugins=[plugin], no_default_plugins=True)
    async with chancy:
        await chancy.migrate()
        try:
            yield chancy
        finally:
            await chancy.migrate(to_version=0)


@contextlib.asynccontextmanager
async def serving(chancy: Chancy, executor: str) -> AsyncIterator[Worker]:
    await chancy.declare(
        Queue(
            QUEUE,
            executor=executor,
            concurrency=2,
            polling_interval=0.1,
            eager_polling=True,
        ),
        upsert=True,
    )
    worker = Worker(chancy, shutdown_timeout=30, register_signal_handlers=False)
    async with worker:
        async with asyncio.timeout(10):
            while QUEUE not in worker.executors:
                await asyncio.sleep(0.02)
        yield worker


async def finished(chancy: Chancy, ref: Any) -> QueuedJob:
    job = await chancy.wait_for_job(ref, interval=0.05, timeout=30)
    assert job is not None
    return job


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    ctx = span.get_span_context()
    assert ctx is not None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


@pytest.mark.parametrize(("executor", "func", "_fail"), EXECUTORS)
async def test_a_push_and_its_run_are_one_trace(
    chancy_dsn: str, telemetry: Telemetry, executor: str, func: str, _fail: str
) -> None:
    plugin = telemetry.plugin()
    async with app(chancy_dsn, plugin) as chancy:
        async with serving(chancy, executor) as worker:
            with telemetry.tracer.start_as_current_span("request") as request:
                ref = await chancy.push(
                    Job(func=func, queue=QUEUE, kwargs={"seconds": 0.3})
                )
            job = await finished(chancy, ref)
            await asyncio.sleep(0.05)  # the span ends right after the save
    assert job.state is QueuedJob.State.SUCCEEDED, job.errors
    # The push's context is stored with the job; the run's is not kept.
    assert set(job.meta) == {META_KEY}
    assert job.meta[META_KEY]["traceparent"].startswith("00-")

    (publish,) = telemetry.spans(f"publish {QUEUE}")
    (process,) = telemetry.spans(f"process {QUEUE}")
    trace_id = format(request.get_span_context().trace_id, "032x")
    # One trace: request -> publish (producer) -> process (consumer).
    assert publish.kind is SpanKind.PRODUCER
    assert publish.parent is not None
    assert publish.parent.span_id == request.get_span_context().span_id
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is not None
    assert process.parent.span_id == publish.get_span_context().span_id
    assert hex_ids(publish)[0] == hex_ids(process)[0] == trace_id
    assert job.meta[META_KEY]["traceparent"].split("-")[1:3] == list(hex_ids(publish))

    assert dict(publish.attributes or {}) == {
        "messaging.system": "chancy",
        "messaging.destination.name": QUEUE,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.operation": "publish",
        "messaging.message.id": str(job.id),
        "chancy.job.func": func,
    }
    attributes = dict(process.attributes or {})
    delay = attributes.pop("chancy.job.delay")
    wait = attributes.pop("chancy.job.wait_time")
    assert attributes == {
        "messaging.system": "chancy",
        "messaging.destination.name": QUEUE,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.operation": "process",
        "messaging.message.id": str(job.id),
        "chancy.job.func": func,
        "chancy.job.attempt": 1,
        "chancy.job.max_attempts": 1,
        "chancy.job.priority": 0,
        "chancy.worker.id": worker.worker_id,
        "chancy.job.state": "succeeded",
    }
    assert job.started_at is not None and job.created_at is not None
    assert delay == pytest.approx(
        (job.started_at - job.created_at).total_seconds(), abs=1e-3
    )
    assert delay >= 0 and wait >= 0
    assert process.status.status_code is StatusCode.UNSET
    # The span covers the run (the job sleeps 0.3 s), in every executor.
    assert process.start_time is not None and process.end_time is not None
    assert (process.end_time - process.start_time) / 1e9 >= 0.3
    # (The push's span may end after the run started: the job is visible,
    # and the worker woken, as soon as its insert commits.)

    # The job's own code sees the run's span: async jobs without help, the
    # others (threads, child processes) through use_job_context.
    seen = job.result
    assert seen["valid"]
    assert (seen["trace_id"], seen["span_id"]) == hex_ids(process)
    if executor != ASYNC:
        assert seen["outside_valid"] is False
    assert plugin._runs == {}  # every run's span was ended


@pytest.mark.parametrize(("executor", "_func", "fail"), EXECUTORS)
async def test_a_failed_run_records_the_exception_and_each_attempt_has_a_span(
    chancy_dsn: str, telemetry: Telemetry, executor: str, _func: str, fail: str
) -> None:
    async with app(chancy_dsn, telemetry.plugin()) as chancy:
        async with serving(chancy, executor):
            ref = await chancy.push(
                Job(
                    func=fail,
                    queue=QUEUE,
                    kwargs={"message": "card declined"},
                    max_attempts=2,
                )
            )
            job = await finished(chancy, ref)
            await asyncio.sleep(0.05)
    assert job.state is QueuedJob.State.FAILED
    assert job.attempts == 2
    (publish,) = telemetry.spans(f"publish {QUEUE}")
    runs = sorted(telemetry.spans(f"process {QUEUE}"), key=lambda s: s.start_time or 0)
    assert [(s.attributes or {})["chancy.job.attempt"] for s in runs] == [1, 2]
    assert [(s.attributes or {})["chancy.job.state"] for s in runs] == [
        "retrying",
        "failed",
    ]
    for span in runs:
        # Both attempts continue the trace of the push.
        assert span.parent is not None
        assert span.parent.span_id == publish.get_span_context().span_id
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ValueError: card declined"
        assert (span.attributes or {})["error.type"] == "ValueError"
        (event,) = span.events
        assert event.name == "exception"
        event_attributes = event.attributes or {}
        assert event_attributes["exception.type"] == "ValueError"
        assert event_attributes["exception.message"] == "card declined"
        # The traceback, also for a job that raised in a child process.
        assert "ValueError: card declined" in str(
            event_attributes["exception.stacktrace"]
        )


async def test_batches_failed_pushes_and_sync_pushes_have_producer_spans(
    chancy_dsn: str, telemetry: Telemetry
) -> None:
    plugin = telemetry.plugin()
    async with app(chancy_dsn, plugin) as chancy:
        refs = [
            ref
            async for batch in chancy.push_many(
                [Job(func="m.f", queue=QUEUE)] * 5
                + [Job(func="m.g", queue="other")] * 2,
                batch_size=4,
            )
            for ref in batch
        ]
        with pytest.raises(ValueError):
            await chancy.push(Job(func="m.f", queue=QUEUE, priority=2**40))
        sync_ref = await asyncio.to_thread(_sync_push, chancy)
        jobs = await chancy.get_jobs([*refs, sync_ref])
    assert plugin._pushes == {}  # every producer span was ended

    batches = telemetry.spans("publish")  # two queues in the second batch
    one_queue = telemetry.spans(f"publish {QUEUE}")
    assert len(batches) == 1 and len(one_queue) == 3
    first = next(
        s
        for s in one_queue
        if (s.attributes or {}).get("messaging.batch.message_count")
    )
    assert (first.attributes or {})["messaging.batch.message_count"] == 4
    assert "messaging.message.id" not in (first.attributes or {})
    assert (batches[0].attributes or {})["messaging.batch.message_count"] == 3
    assert "messaging.destination.name" not in (batches[0].attributes or {})
    # Each job carries the context of its own batch's span.
    by_span = {hex_ids(s)[1]: s for s in [*batches, *one_queue]}
    parents = [by_span[j.meta[META_KEY]["traceparent"].split("-")[2]] for j in jobs]
    assert parents[:4] == [first] * 4
    assert parents[4:7] == [batches[0]] * 3
    refused = [s for s in one_queue if s.status.status_code is StatusCode.ERROR]
    (refused_span,) = refused
    assert (refused_span.attributes or {})["error.type"] == "ValueError"
    assert refused_span.events[0].name == "exception"
    sync_span = by_span[jobs[-1].meta[META_KEY]["traceparent"].split("-")[2]]
    assert (sync_span.attributes or {})["messaging.message.id"] == str(jobs[-1].id)


def _sync_push(chancy: Chancy) -> Any:
    with chancy:
        return chancy.sync_push(Job(func="m.f", queue=QUEUE))


async def test_without_a_tracer_provider_jobs_are_stored_unchanged(
    chancy_dsn: str,
) -> None:
    plugin = OpenTelemetryPlugin(
        tracer_provider=trace.NoOpTracerProvider(), metrics=False
    )
    async with app(chancy_dsn, plugin) as chancy:
        ref = await chancy.push(Job(func="m.f", queue=QUEUE, meta={"mine": 1}))
        job = await chancy.get_job(ref)
    assert job is not None
    assert job.meta == {"mine": 1}
    assert plugin._pushes == {}


async def test_metrics_mirror_chancy_metrics(
    chancy_dsn: str, telemetry: Telemetry
) -> None:
    async with app(chancy_dsn, telemetry.plugin()) as chancy:
        async with serving(chancy, ASYNC):
            ok = await finished(
                chancy, await chancy.push(Job(func=ASYNC_CURRENT, queue=QUEUE))
            )
            bad = await finished(
                chancy, await chancy.push(Job(func=ASYNC_FAIL, queue=QUEUE))
            )
            await asyncio.sleep(0.05)
    assert ok.state is QueuedJob.State.SUCCEEDED
    assert bad.state is QueuedJob.State.FAILED
    metrics = telemetry.metrics()

    (sent,) = metrics["messaging.client.sent.messages"]
    assert sent.value == 2
    assert dict(sent.attributes) == {
        "messaging.system": "chancy",
        "messaging.operation.name": "publish",
        "messaging.destination.name": QUEUE,
    }
    (push_time,) = metrics["messaging.client.operation.duration"]
    assert push_time.count == 2
    (consumed,) = metrics["messaging.client.consumed.messages"]
    assert consumed.value == 2
    durations = {
        p.attributes.get("error.type"): p.count
        for p in metrics["messaging.process.duration"]
    }
    assert durations == {None: 1, "ValueError": 1}
    jobs = {
        (p.attributes["chancy.job.func"], p.attributes["chancy.job.state"]): p.value
        for p in metrics["chancy.jobs"]
    }
    assert jobs == {(ASYNC_CURRENT, "succeeded"): 1, (ASYNC_FAIL, "failed"): 1}
    assert sum(p.count for p in metrics["chancy.job.execution_time"]) == 2
    assert sum(p.count for p in metrics["chancy.job.wait_time"]) == 2


async def test_metrics_can_be_turned_off(chancy_dsn: str, telemetry: Telemetry) -> None:
    async with app(chancy_dsn, telemetry.plugin(metrics=False)) as chancy:
        async with serving(chancy, ASYNC):
            await finished(
                chancy, await chancy.push(Job(func=ASYNC_CURRENT, queue=QUEUE))
            )
    assert telemetry.metrics() == {}
    assert len(telemetry.spans()) == 2


def test_attributes_are_added_to_every_span_and_checked() -> None:
    plugin = OpenTelemetryPlugin(attributes={"team": "billing", "tags": ["a", "b"]})
    assert plugin.attributes == {"team": "billing", "tags": ("a", "b")}
    with pytest.raises(ConfigurationError, match="attribute 'bad'"):
        OpenTelemetryPlugin(attributes={"bad": {"nested": 1}})
    with pytest.raises(ConfigurationError, match="mapping"):
        OpenTelemetryPlugin(attributes=["team"])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="metrics"):
        OpenTelemetryPlugin(metrics="yes")  # type: ignore[arg-type]


def test_installed_but_not_enabled_it_imports_nothing() -> None:
    probe = (
        "import sys; from chancy import Chancy;"
        "app = Chancy('postgresql://127.0.0.1/unused');"
        "print('chancy.otel' in app.plugins,"
        " sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "[]"]


async def test_a_snooze_is_not_a_failure(chancy_dsn: str, telemetry: Telemetry) -> None:
    async with app(chancy_dsn, telemetry.plugin()) as chancy:
        async with serving(chancy, ASYNC):
            ref = await chancy.push(
                Job(
                    func="chancy_testjobs.async_snooze_once",
                    queue=QUEUE,
                    kwargs={"seconds": 0.1},
                )
            )
            job = await finished(chancy, ref)
            await asyncio.sleep(0.05)
    assert job.state is QueuedJob.State.SUCCEEDED
    runs = sorted(telemetry.spans(f"process {QUEUE}"), key=lambda s: s.start_time or 0)
    assert [(s.attributes or {})["chancy.job.state"] for s in runs] == [
        "pending",
        "succeeded",
    ]
    assert [s.status.status_code for s in runs] == [StatusCode.UNSET] * 2
    assert all(not s.events for s in runs)


async def test_a_run_cut_short_by_the_worker_stopping_ends_its_span(
    chancy_dsn: str, telemetry: Telemetry
) -> None:
    plugin = telemetry.plugin()
    async with app(chancy_dsn, plugin) as chancy:
        async with serving(chancy, ASYNC) as worker:
            worker.shutdown_timeout = 0.1
            ref = await chancy.push(
                Job(
                    func="chancy_testjobs.async_sleep",
                    queue=QUEUE,
                    kwargs={"seconds": 30},
                )
            )
            await chancy.wait_for_job(
                ref, interval=0.05, timeout=10, states={QueuedJob.State.RUNNING}
            )
        # The worker stopped: the job was put back, its span ended.
        job = await chancy.get_job(ref)
    assert job is not None and job.state is not QueuedJob.State.RUNNING
    (run,) = telemetry.spans(f"process {QUEUE}")
    assert run.status.status_code is StatusCode.ERROR
    assert "worker stopped" in (run.status.description or "")
    assert plugin._runs == {}


async def test_a_malformed_context_in_meta_never_fails_the_run(
    chancy_dsn: str, telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    async with app(chancy_dsn, telemetry.plugin()) as chancy:
        async with serving(chancy, ASYNC), Chancy(chancy_dsn) as plain:
            # Pushed by an app without the plugin, with a broken context.
            ref = await plain.push(
                Job(func=ASYNC_CURRENT, queue=QUEUE, meta={"otel": {"traceparent": 5}})
            )
            job = await finished(chancy, ref)
    assert job.state is QueuedJob.State.SUCCEEDED
    assert job.meta == {"otel": {"traceparent": 5}}
    assert "could not start the span of job" in caplog.text
    assert telemetry.spans(f"process {QUEUE}") == []


class DashPropagator(TextMapPropagator):
    """A propagator with a format of its own (not W3C's ``traceparent``)."""

    def inject(
        self, carrier: Any, context: Any = None, setter: Any = default_setter
    ) -> None:
        ctx = trace.get_current_span(context).get_span_context()
        if ctx.is_valid:
            setter.set(carrier, "x-trace", f"{ctx.trace_id:x}-{ctx.span_id:x}")

    def extract(
        self, carrier: Any, context: Any = None, getter: Any = default_getter
    ) -> Any:
        values = getter.get(carrier, "x-trace")
        if not values:
            return context or Context()
        trace_id, span_id = (int(part, 16) for part in values[0].split("-"))
        parent = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(1)
            )
        )
        return trace.set_span_in_context(parent, context)

    @property
    def fields(self) -> set[str]:
        return {"x-trace"}


async def test_any_propagator_carries_the_trace(
    chancy_dsn: str, telemetry: Telemetry
) -> None:
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(DashPropagator())
    try:
        plugin = telemetry.plugin()
        async with app(chancy_dsn, plugin) as chancy:
            async with serving(chancy, ASYNC):
                ref = await chancy.push(
                    Job(func=ASYNC_CURRENT, queue=QUEUE, kwargs={"seconds": 0.1})
                )
                job = await finished(chancy, ref)
                await asyncio.sleep(0.05)
    finally:
        propagate.set_global_textmap(before)
    assert set(job.meta[META_KEY]) == {"x-trace"}
    (publish,) = telemetry.spans(f"publish {QUEUE}")
    (process,) = telemetry.spans(f"process {QUEUE}")
    assert plugin._pushes == {}  # ended by the push, not at once
    assert publish.end_time is not None and publish.start_time is not None
    assert (publish.attributes or {})["messaging.message.id"] == str(job.id)
    assert process.parent is not None
    assert process.parent.span_id == publish.get_span_context().span_id
