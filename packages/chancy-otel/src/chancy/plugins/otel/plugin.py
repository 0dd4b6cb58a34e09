"""OpenTelemetry traces and metrics for Chancy: one trace from push to every run."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import attrs

from chancy.errors import ConfigurationError, Snooze
from chancy.job import Job, QueuedJob
from chancy.plugin import Plugin

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider
    from opentelemetry.util.types import AttributeValue

    from chancy.app import Chancy
    from chancy.job import Reference
    from chancy.worker import Worker

__all__ = [
    "META_KEY",
    "RUN_META_KEY",
    "OpenTelemetryPlugin",
    "job_context",
    "use_job_context",
]

IDENTIFIER: Final = "chancy.otel"
DISTRIBUTION: Final = "chancy-otel"
#: The instrumentation scope of the tracer and the meter.
SCOPE: Final = "chancy.plugins.otel"

#: The key of ``Job.meta`` holding the push's trace context (W3C
#: ``traceparent``, ``tracestate``, ``baggage``, as the propagator writes them).
META_KEY: Final = "otel"
#: The key of ``QueuedJob.meta`` holding the trace context of the run in
#: progress (the consumer span), while the job runs; removed before saving.
RUN_META_KEY: Final = "otel_run"

#: ``messaging.system``.
SYSTEM: Final = "chancy"

# Semantic conventions for messaging (attribute names as strings: the
# incubating module of opentelemetry-semantic-conventions is not a stable API).
MESSAGING_SYSTEM: Final = "messaging.system"
DESTINATION: Final = "messaging.destination.name"
OPERATION_TYPE: Final = "messaging.operation.type"
OPERATION_NAME: Final = "messaging.operation.name"
#: The attribute before semantic conventions 1.26, for older back ends.
OPERATION_LEGACY: Final = "messaging.operation"
MESSAGE_ID: Final = "messaging.message.id"
BATCH_COUNT: Final = "messaging.batch.message_count"
ERROR_TYPE: Final = "error.type"

FUNC: Final = "chancy.job.func"
ATTEMPT: Final = "chancy.job.attempt"
MAX_ATTEMPTS: Final = "chancy.job.max_attempts"
PRIORITY: Final = "chancy.job.priority"
STATE: Final = "chancy.job.state"
DELAY: Final = "chancy.job.delay"
WAIT_TIME: Final = "chancy.job.wait_time"
WORKER_ID: Final = "chancy.worker.id"

#: Producer spans waiting for their ``chancy_jobs_pushed`` (a bound, so that
#: a push that never reports back cannot grow the map without end).
MAX_PENDING_PUSHES: Final = 10_000


class _OpenTelemetry:
    """What the plugin uses of OpenTelemetry's API, imported once, when the
    first plugin is created or a helper called: an installed but unused
    chancy-otel imports nothing, and the per-job paths import nothing."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace

        self.attach = context.attach
        self.detach = context.detach
        self.extract = propagate.extract
        self.inject = propagate.inject
        self.set_span_in_context = trace.set_span_in_context
        self.producer = trace.SpanKind.PRODUCER
        self.consumer = trace.SpanKind.CONSUMER
        self.status = trace.Status
        self.error = trace.StatusCode.ERROR


_API: _OpenTelemetry | None = None

_log = logging.getLogger("chancy.otel")


def _api() -> _OpenTelemetry:
    global _API
    if _API is None:
        _API = _OpenTelemetry()
    return _API


def _class_path(exc: BaseException) -> str:
    name = getattr(exc, "type_name", None)  # RemoteJobError: the child's class
    if isinstance(name, str) and name:
        return name
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _seconds(later: Any, earlier: Any) -> float | None:
    if later is None or earlier is None:
        return None
    return float((later - earlier).total_seconds())


def job_context(job: Job) -> Context:
    """The OpenTelemetry context a job's own code should continue.

    While the job runs with :class:`OpenTelemetryPlugin` enabled, that is
    the context of its consumer span (``meta["otel_run"]``), so spans the job
    starts become children of its run, in every executor (the process
    executor's child processes included). Otherwise it is the context of
    the push (``meta["otel"]``), or an empty context.
    """
    carrier = job.meta.get(RUN_META_KEY) or job.meta.get(META_KEY)
    if not isinstance(carrier, Mapping):
        carrier = {}
    return _api().extract(carrier)


@contextmanager
def use_job_context(job: Job) -> Iterator[Context]:
    """Make :func:`job_context` the current context inside the ``with`` block.

    For jobs run by the threaded and process executors (async jobs already
    run with their consumer span current)::

        @job(queue="reports")
        def build_report(*, context: QueuedJob) -> None:
            with use_job_context(context):
                with tracer.start_as_current_span("render"):
                    ...
    """
    api = _api()
    ctx = job_context(job)
    token = api.attach(ctx)
    try:
        yield ctx
    finally:
        api.detach(token)


@attrs.define
class _Run:
    span: Span
    worker: Worker
    started: float
    attributes: dict[str, AttributeValue]
    task: asyncio.Task[Any] | None = None
    token: Token[Context] | None = None


class OpenTelemetryPlugin(Plugin):
    """Traces every push and every run, and optionally records metrics.

    * **Push**: a ``PRODUCER`` span ``publish <queue>`` per push call
      (``push``, ``push_ex``, each batch of ``push_many``, the ``sync_``
      forms), child of whatever span is current in the caller. Its trace
      context is written to each job's ``meta["otel"]`` by the global
      propagator (W3C ``traceparent`` by default), and the span ends when the
      push's statements ran, with ``messaging.message.id`` (one job) or
      ``messaging.batch.message_count`` (several), or with the exception and
      status ``ERROR`` when the push failed.
    * **Run**: a ``CONSUMER`` span ``process <queue>`` around each run, on
      the worker, whose parent is the push's context: the trace continues
      from the code that pushed the job, each attempt a span of its own. It
      starts when the worker hands the job to its executor and ends when the
      run's outcome is known, in every executor. It carries the attempt, the
      push → start delay (``chancy.job.delay``) and the job's new state; a
      failed run records the exception and sets status ``ERROR``. In the
      async executor the span is current while the job runs; elsewhere the
      job continues it with :func:`use_job_context`.
    * **Metrics** (``metrics=True``, the default; free without a meter
      provider): ``messaging.client.sent.messages``,
      ``messaging.client.operation.duration`` (pushes),
      ``messaging.client.consumed.messages``, ``messaging.process.duration``
      (runs), and, mirroring chancy-metrics, ``chancy.jobs`` (saved updates
      by function, queue and state), ``chancy.job.execution_time`` and
      ``chancy.job.wait_time``.

    :param tracer_provider: the provider of the tracer; default the global one
        (``opentelemetry.trace.set_tracer_provider``).
    :param meter_provider: the provider of the meter; default the global one.
    :param metrics: record metrics as well as spans.
    :param attributes: more attributes for every span (strings, numbers,
        booleans, or sequences of one of them), e.g. ``{"service.team": "billing"}``.
    :raises ConfigurationError: for a wrong setting.
    """

    identifier = IDENTIFIER
    distribution = DISTRIBUTION

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        metrics: bool = True,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        super().__init__()
        from opentelemetry import metrics as otel_metrics
        from opentelemetry import trace

        if not isinstance(metrics, bool):
            raise ConfigurationError(
                f"OpenTelemetryPlugin: metrics must be True or False, got {metrics!r}"
            )
        #: Attributes added to every span.
        self.attributes: dict[str, AttributeValue] = _check_attributes(attributes)
        #: Whether metrics are recorded.
        self.metrics: bool = metrics
        self.tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        self._api = _api()
        #: Producer spans until their push reports back, by the ``id()`` of
        #: the context dict shared by the push's jobs (kept alive here, so
        #: that the id stays theirs): any propagator's format works.
        self._pushes: OrderedDict[int, tuple[dict[str, str], Span, float]] = (
            OrderedDict()
        )
        #: Pushes come from any thread (``sync_push``).
        self._pushes_lock = threading.Lock()
        #: Consumer spans by job id, until their run's outcome is known.
        self._runs: dict[uuid.UUID, _Run] = {}
        if metrics:
            meter = otel_metrics.get_meter(SCOPE, meter_provider=meter_provider)
            self._sent = meter.create_counter(
                "messaging.client.sent.messages",
                unit="{message}",
                description="Jobs pushed (written, or not because the push failed).",
            )
            self._push_duration = meter.create_histogram(
                "messaging.client.operation.duration",
                unit="s",
                description="Duration of push calls.",
            )
            self._consumed = meter.create_counter(
                "messaging.client.consumed.messages",
                unit="{message}",
                description="Job runs started by workers.",
            )
            self._process_duration = meter.create_histogram(
                "messaging.process.duration",
                unit="s",
                description="Duration of job runs, from hand-over to outcome.",
            )
            self._jobs = meter.create_counter(
                "chancy.jobs",
                unit="{job}",
                description="Saved job updates by function, queue and new state.",
            )
            self._execution_time = meter.create_histogram(
                "chancy.job.execution_time",
                unit="s",
                description="completed_at - started_at of finished jobs.",
            )
            self._wait_time = meter.create_histogram(
                "chancy.job.wait_time",
                unit="s",
                description="started_at - scheduled_at of runs.",
            )

    def __repr__(self) -> str:
        return (
            f"<OpenTelemetryPlugin(metrics={self.metrics!r},"
            f" attributes={self.attributes!r})>"
        )

    # -- push ---------------------------------------------------------------

    # Tracing never breaks a push or a run: a failure of the plugin's own
    # (a malformed context in a job's meta, an SDK that raises) is logged as
    # a warning, and the push or the run goes on without its span.

    def on_jobs_pushing(
        self, *, chancy: Chancy, jobs: Sequence[Job]
    ) -> list[Job] | None:
        """Start the push's producer span; write its context into each job."""
        try:
            return self._push_started(jobs)
        except Exception:
            _log.warning(
                "OpenTelemetryPlugin: could not trace a push of %d job(s)",
                len(jobs),
                exc_info=True,
            )
            return None

    def on_jobs_pushed(
        self,
        *,
        chancy: Chancy,
        jobs: Sequence[Job],
        references: Sequence[Reference] | None,
        error: BaseException | None,
    ) -> None:
        """End the producer span of the push; count the jobs."""
        try:
            self._push_ended(jobs, references, error)
        except Exception:
            _log.warning(
                "OpenTelemetryPlugin: could not end the span of a push", exc_info=True
            )

    async def on_job_starting(self, *, job: QueuedJob, worker: Worker) -> QueuedJob:
        try:
            return self._run_started(job, worker)
        except Exception:
            _log.warning(
                "OpenTelemetryPlugin: could not start the span of job %s (%s)",
                job.id,
                job.func,
                exc_info=True,
            )
            return job

    async def on_job_completed(
        self,
        *,
        worker: Worker,
        job: QueuedJob,
        exc: BaseException | None = None,
        result: Any = None,
    ) -> QueuedJob:
        if RUN_META_KEY in job.meta:
            job = attrs.evolve(
                job, meta={k: v for k, v in job.meta.items() if k != RUN_META_KEY}
            )
        try:
            self._run_ended(job, exc)
        except Exception:
            _log.warning(
                "OpenTelemetryPlugin: could not end the span of job %s (%s)",
                job.id,
                job.func,
                exc_info=True,
            )
        return job

    def _push_started(self, jobs: Sequence[Job]) -> list[Job] | None:
        api = self._api
        queues = list(dict.fromkeys(job.queue for job in jobs))
        name = f"publish {queues[0]}" if len(queues) == 1 else "publish"
        attributes: dict[str, AttributeValue] = {
            MESSAGING_SYSTEM: SYSTEM,
            OPERATION_TYPE: "send",
            OPERATION_NAME: "publish",
            OPERATION_LEGACY: "publish",
            **self.attributes,
        }
        if len(queues) == 1:
            attributes[DESTINATION] = queues[0]
        if len(jobs) == 1:
            attributes[FUNC] = jobs[0].func
        else:
            attributes[BATCH_COUNT] = len(jobs)
        span = self.tracer.start_span(name, kind=api.producer, attributes=attributes)
        carrier: dict[str, str] = {}
        api.inject(carrier, context=api.set_span_in_context(span))
        if not carrier:
            span.end()
            return None  # no trace to carry: store the jobs as they are
        if span.is_recording():
            with self._pushes_lock:
                self._pushes[id(carrier)] = (carrier, span, time.perf_counter())
                stale = (
                    self._pushes.popitem(last=False)[1][1]
                    if len(self._pushes) > MAX_PENDING_PUSHES
                    else None
                )
            if stale is not None:
                stale.end()
        return [attrs.evolve(job, meta={**job.meta, META_KEY: carrier}) for job in jobs]

    def _push_ended(
        self,
        jobs: Sequence[Job],
        references: Sequence[Reference] | None,
        error: BaseException | None,
    ) -> None:
        carrier = jobs[0].meta.get(META_KEY) if jobs else None
        pending = None
        if carrier is not None:
            with self._pushes_lock:
                found = self._pushes.get(id(carrier))
                if found is not None and found[0] is carrier:
                    pending = self._pushes.pop(id(carrier))
        if pending is not None:
            _, span, began = pending
            if error is not None:
                span.record_exception(error)
                span.set_attribute(ERROR_TYPE, _class_path(error))
                span.set_status(self._api.status(self._api.error, f"{error}"))
            elif references is not None and len(references) == 1:
                span.set_attribute(MESSAGE_ID, str(references[0].identifier))
            span.end()
            elapsed: float | None = time.perf_counter() - began
        else:
            elapsed = None
        if self.metrics:
            base: dict[str, AttributeValue] = {
                MESSAGING_SYSTEM: SYSTEM,
                OPERATION_NAME: "publish",
            }
            if error is not None:
                base[ERROR_TYPE] = _class_path(error)
            counts: dict[str, int] = {}
            for job in jobs:
                counts[job.queue] = counts.get(job.queue, 0) + 1
            for queue, count in counts.items():
                self._sent.add(count, {**base, DESTINATION: queue})
            if elapsed is not None:
                if len(counts) == 1:
                    base[DESTINATION] = next(iter(counts))
                self._push_duration.record(elapsed, base)

    # -- runs ---------------------------------------------------------------

    def _run_started(self, job: QueuedJob, worker: Worker) -> QueuedJob:
        api = self._api
        carrier = job.meta.get(META_KEY)
        parent = api.extract(carrier) if isinstance(carrier, Mapping) else None
        attributes: dict[str, AttributeValue] = {
            MESSAGING_SYSTEM: SYSTEM,
            DESTINATION: job.queue,
            OPERATION_TYPE: "process",
            OPERATION_NAME: "process",
            OPERATION_LEGACY: "process",
            MESSAGE_ID: str(job.id),
            FUNC: job.func,
            ATTEMPT: job.attempts + 1,
            MAX_ATTEMPTS: job.max_attempts,
            PRIORITY: job.priority,
            WORKER_ID: worker.worker_id,
            **self.attributes,
        }
        delay = _seconds(job.started_at, job.created_at)
        if delay is not None:
            attributes[DELAY] = delay
        waited = _seconds(job.started_at, job.scheduled_at)
        if waited is not None:
            attributes[WAIT_TIME] = max(0.0, waited)
        span = self.tracer.start_span(
            f"process {job.queue}",
            context=parent,
            kind=api.consumer,
            attributes=attributes,
        )
        run = _Run(span, worker, time.perf_counter(), attributes)
        previous = self._runs.pop(job.id, None)
        if previous is not None:  # a run we never heard the end of
            previous.span.end()
        self._runs[job.id] = run
        run_ctx = api.set_span_in_context(span)
        task = asyncio.current_task()
        if task is not None and task.get_name() == f"job:{job.id}":
            # This hook runs in the job's own task (async and process
            # executors): the job's code runs with the span current.
            run.task = task
            run.token = api.attach(run_ctx)
        if self.metrics:
            self._consumed.add(1, self._metric_attributes(job, "process"))
        run_carrier: dict[str, str] = {}
        api.inject(run_carrier, context=run_ctx)
        if not run_carrier:
            return job
        return attrs.evolve(job, meta={**job.meta, RUN_META_KEY: run_carrier})

    def _run_ended(self, job: QueuedJob, exc: BaseException | None) -> None:
        run = self._runs.pop(job.id, None)
        if run is None:
            return
        failed = exc is not None and not isinstance(exc, Snooze)
        try:
            span = run.span
            span.set_attribute(STATE, job.state.value)
            if failed:
                assert exc is not None
                self._record_failure(span, job, exc)
            span.end()
            if self.metrics:
                attributes = self._metric_attributes(job, "process")
                if failed:
                    assert exc is not None
                    attributes[ERROR_TYPE] = _class_path(exc)
                self._process_duration.record(
                    time.perf_counter() - run.started, attributes
                )
        finally:
            if run.token is not None and asyncio.current_task() is run.task:
                self._api.detach(run.token)

    def _record_failure(self, span: Span, job: QueuedJob, exc: BaseException) -> None:
        extra: dict[str, AttributeValue] = {}
        if exc.__traceback__ is None:
            # Raised in a child process: the worker has the child's
            # formatted traceback in the job's errors.
            last = job.errors[-1] if job.errors else None
            if isinstance(last, Mapping) and isinstance(last.get("traceback"), str):
                extra["exception.stacktrace"] = last["traceback"]
        extra["exception.type"] = _class_path(exc)
        span.record_exception(exc, attributes=extra)
        span.set_attribute(ERROR_TYPE, _class_path(exc))
        span.set_status(self._api.status(self._api.error, f"{_class_path(exc)}: {exc}"))

    async def on_job_updated(self, *, worker: Worker, job: QueuedJob) -> None:
        """Mirror chancy-metrics' per-job metrics for one saved update."""
        if not self.metrics:
            return
        attributes: dict[str, AttributeValue] = {
            DESTINATION: job.queue,
            FUNC: job.func,
            STATE: job.state.value,
        }
        self._jobs.add(1, attributes)
        started = job.started_at
        if started is None:
            return
        timing: dict[str, AttributeValue] = {DESTINATION: job.queue, FUNC: job.func}
        elapsed = _seconds(job.completed_at, started)
        if elapsed is not None:
            self._execution_time.record(elapsed, timing)
        waited = _seconds(started, job.scheduled_at)
        if waited is not None and waited >= 0:  # a retry's scheduled_at is ahead
            self._wait_time.record(waited, timing)

    async def on_worker_stopped(self, *, worker: Worker) -> None:
        """End the spans of runs the worker stopped without an outcome."""
        for job_id, run in list(self._runs.items()):
            if run.worker is worker:
                del self._runs[job_id]
                run.span.set_status(
                    self._api.status(
                        self._api.error,
                        "the worker stopped before the run ended; the job is put back",
                    )
                )
                run.span.end()

    def _metric_attributes(
        self, job: QueuedJob, operation: str
    ) -> dict[str, AttributeValue]:
        return {
            MESSAGING_SYSTEM: SYSTEM,
            DESTINATION: job.queue,
            OPERATION_NAME: operation,
        }


def _check_attributes(
    attributes: Mapping[str, AttributeValue] | None,
) -> dict[str, AttributeValue]:
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise ConfigurationError(
            "OpenTelemetryPlugin: attributes must be a mapping of names to"
            f" values, got {attributes!r}"
        )
    scalar = (str, bool, int, float)
    out: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(
                f"OpenTelemetryPlugin: attribute names are non-empty strings, got {key!r}"
            )
        ok = isinstance(value, scalar) or (
            isinstance(value, Sequence)
            and not isinstance(value, str | bytes)
            and len({type(v) for v in value}) <= 1
            and all(isinstance(v, scalar) for v in value)
        )
        if not ok:
            raise ConfigurationError(
                f"OpenTelemetryPlugin: the value of attribute {key!r} must be a"
                " string, number or boolean, or a sequence of one of them, got"
                f" {value!r}"
            )
        out[key] = tuple(value) if isinstance(value, list) else value
    return out
