"""Every event of the core, with its payload.

Events reach a worker's in-process hub (:class:`chancy.hub.Hub`) in two
ways: *notified* events are sent with ``pg_notify`` on the app's channel
(``{prefix}events``), delivered when the sending transaction commits, and
relayed to the hub of every listening worker (its own included); *local*
events are emitted on one worker's hub only. Listen with
``worker.hub.on(name, handler)`` (or ``on_any`` for all of them)::

    from chancy import events

    worker.hub.on(events.QUEUE_PUSHED.name, lambda event: print(event.body["q"]))

Plugins define their own events the same way, next to the code that sends
them (``chancy.plugins.leadership.plugin.LEADERSHIP_GAINED``…), and list them
in their README.
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = [
    "CORE_EVENTS",
    "JOB_CANCELLED",
    "JOB_RECOVERED",
    "METRICS_INCREMENT_COUNTER",
    "METRICS_RECORD_GAUGE",
    "METRICS_RECORD_HISTOGRAM_VALUE",
    "QUEUE_DECLARED",
    "QUEUE_DELETED",
    "QUEUE_PAUSED",
    "QUEUE_PUSHED",
    "QUEUE_RESUMED",
    "WORKER_ANNOUNCED",
    "WORKER_QUEUE_FULL",
    "WORKER_QUEUE_REMOVED",
    "WORKER_QUEUE_STARTED",
    "WORKER_QUEUE_UPDATED",
    "WORKER_SHUTDOWN_TIMEOUT",
    "WORKER_STARTED",
    "WORKER_STOPPED",
    "EventSpec",
]


@attrs.frozen
class EventSpec:
    """The name, payload and origin of one event."""

    #: The event's name on the hub (and the ``t`` key of a notification).
    name: str
    #: Payload keys and what they hold.
    payload: dict[str, str]
    #: ``"notified"`` (sent with pg_notify, reaches every worker) or
    #: ``"local"`` (one worker's hub only).
    delivery: str
    #: Who sends it and when.
    sent_by: str

    def __str__(self) -> str:
        return self.name


def _notified(name: str, sent_by: str, **payload: str) -> EventSpec:
    return EventSpec(name, payload, "notified", sent_by)


def _local(name: str, sent_by: str, **payload: str) -> EventSpec:
    return EventSpec(name, payload, "local", sent_by)


_QUEUE = "the queue's name"
_OBJECTS = {
    "queue": "the Queue",
    "executor": "its Executor (None if it could not start)",
    "worker": "the Worker",
}

# -- notified -----------------------------------------------------------------

QUEUE_DECLARED: Final = _notified(
    "queue.declared", "Chancy.declare(); workers rescan their queues", q=_QUEUE
)
QUEUE_PAUSED: Final = _notified(
    "queue.paused", "Chancy.pause_queue(); workers rescan their queues", q=_QUEUE
)
QUEUE_RESUMED: Final = _notified(
    "queue.resumed",
    "Chancy.resume_queue() and a worker's auto-resume; workers rescan",
    q=_QUEUE,
)
QUEUE_DELETED: Final = _notified(
    "queue.deleted", "Chancy.delete_queue(); workers drop the queue", q=_QUEUE
)
QUEUE_PUSHED: Final = _notified(
    "queue.pushed",
    "every push (once per queue per call), retry_jobs(), Recovery, released"
    " claims; the workers serving the queue fetch at once",
    q=_QUEUE,
)
JOB_CANCELLED: Final = _notified(
    "job.cancelled",
    "Chancy.cancel_job(); every worker interrupts the run if it has it",
    j="the job's id (string)",
)
JOB_RECOVERED: Final = _notified(
    "job.recovered",
    "Recovery; a worker still running that execution interrupts it",
    j="the job's id (string)",
    c="the execution claim that was cleared (string or null)",
)
WORKER_ANNOUNCED: Final = _notified(
    "worker.announced", "every heartbeat", worker_id="the worker's id"
)

# -- local --------------------------------------------------------------------

WORKER_STARTED: Final = _local(
    "worker.started", "the end of Worker.start()", worker="the Worker"
)
WORKER_STOPPED: Final = _local(
    "worker.stopped", "a clean Worker.stop()", worker="the Worker"
)
WORKER_SHUTDOWN_TIMEOUT: Final = _local(
    "worker.shutdown_timeout",
    "Worker.stop() when jobs were still running at its deadline",
    worker="the Worker",
)
WORKER_QUEUE_STARTED: Final = _local(
    "worker.queue.started", "the worker started serving a queue", **_OBJECTS
)
WORKER_QUEUE_UPDATED: Final = _local(
    "worker.queue.updated",
    "a served queue was edited (old queue and executor; applied at once)",
    **_OBJECTS,
)
WORKER_QUEUE_REMOVED: Final = _local(
    "worker.queue.removed",
    "a served queue was deleted or no longer matches, and has drained",
    **_OBJECTS,
)
WORKER_QUEUE_FULL: Final = _local(
    "worker.queue.full", "a poll found no free slot", **_OBJECTS
)
METRICS_INCREMENT_COUNTER: Final = _local(
    "metrics.increment_counter",
    "Worker.increment_counter(), for whichever metrics plugin listens",
    key="the metric's key",
    value="the amount",
)
METRICS_RECORD_GAUGE: Final = _local(
    "metrics.record_gauge",
    "Worker.record_gauge(), for whichever metrics plugin listens",
    key="the metric's key",
    value="the value",
)
METRICS_RECORD_HISTOGRAM_VALUE: Final = _local(
    "metrics.record_histogram_value",
    "Worker.record_histogram_value(), for whichever metrics plugin listens",
    key="the metric's key",
    value="the value",
)

#: Every event of the core, by name.
CORE_EVENTS: Final[dict[str, EventSpec]] = {
    spec.name: spec
    for spec in (
        QUEUE_DECLARED,
        QUEUE_PAUSED,
        QUEUE_RESUMED,
        QUEUE_DELETED,
        QUEUE_PUSHED,
        JOB_CANCELLED,
        JOB_RECOVERED,
        WORKER_ANNOUNCED,
        WORKER_STARTED,
        WORKER_STOPPED,
        WORKER_SHUTDOWN_TIMEOUT,
        WORKER_QUEUE_STARTED,
        WORKER_QUEUE_UPDATED,
        WORKER_QUEUE_REMOVED,
        WORKER_QUEUE_FULL,
        METRICS_INCREMENT_COUNTER,
        METRICS_RECORD_GAUGE,
        METRICS_RECORD_HISTOGRAM_VALUE,
    )
}
