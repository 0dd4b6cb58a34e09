"""Queues: named, database-stored configuration that every worker follows."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

__all__ = ["Queue"]

PROCESS_EXECUTOR = "chancy.executors.process.ProcessExecutor"


def _tags(value: Any) -> set[str]:
    if value is None:
        return {".*"}
    if isinstance(value, str):
        return {value}
    return set(value)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _state(value: str) -> Queue.State:
    return Queue.State(value)


def _executor_options(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return {} if value is None else dict(value)


def _validate_concurrency(_: Any, __: Any, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(
            f"Queue concurrency must be a positive integer or None, got {value!r}"
        )


def _validate_positive(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, (int, float)) or value <= 0):
        raise ValueError(
            f"Queue {attribute.name} must be a positive number, got {value!r}"
        )


@attrs.frozen(slots=True)
class Queue:
    """A queue's configuration.

    Declare it with :meth:`Chancy.declare`; workers whose tags match pick it
    up (and pick up later changes) without restarting.
    """

    class State(str, enum.Enum):
        """Whether workers fetch the queue's jobs (``active``) or not (``paused``)."""

        ACTIVE = "active"
        PAUSED = "paused"

    #: The queue's globally unique name.
    name: str = attrs.field()
    #: Maximum simultaneous jobs *per worker*; ``None`` uses the executor's default.
    concurrency: int | None = attrs.field(
        default=None, kw_only=True, validator=_validate_concurrency
    )
    #: Regular expressions; a worker serves the queue when any matches any worker tag.
    tags: set[str] = attrs.field(factory=lambda: {".*"}, kw_only=True, converter=_tags)
    #: ``active`` or ``paused``.
    state: Queue.State = attrs.field(
        default=State.ACTIVE, kw_only=True, converter=_state
    )
    #: Import path of the executor class running this queue's jobs.
    executor: str = attrs.field(default=PROCESS_EXECUTOR, kw_only=True)
    #: Keyword arguments for the executor's constructor (JSON-serialisable).
    executor_options: dict[str, Any] = attrs.field(
        factory=dict, kw_only=True, converter=_executor_options
    )
    #: Seconds between polls when nothing wakes the queue.
    polling_interval: int | float = attrs.field(
        default=5, kw_only=True, validator=_validate_positive
    )
    #: Maximum jobs started per ``rate_limit_window`` across all workers.
    rate_limit: int | None = attrs.field(
        default=None, kw_only=True, validator=_validate_positive
    )
    #: Length of the rate-limit window in seconds.
    rate_limit_window: int | None = attrs.field(
        default=None, kw_only=True, validator=_validate_positive
    )
    #: A paused queue becomes active again after this time.
    resume_at: datetime | None = attrs.field(
        default=None, kw_only=True, converter=_aware
    )
    #: Poll again as soon as a job of this queue finishes. (Without it, a
    #: finished run still fetches at once when the last fetch filled every
    #: free slot, so a backlog drains without waiting for the interval.)
    eager_polling: bool = attrs.field(default=False, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(
                f"Queue name must be a non-empty string, got {self.name!r}"
            )
        if (self.rate_limit is None) != (self.rate_limit_window is None):
            raise ValueError(
                f"Queue {self.name!r}: rate_limit and rate_limit_window must be set together"
            )

    @classmethod
    def unpack(cls, data: dict[str, Any]) -> Queue:
        """Build from a queues-table row; missing optional columns are tolerated."""
        return cls(
            data["name"],
            concurrency=data.get("concurrency"),
            tags=set(data["tags"]) if data.get("tags") is not None else {".*"},
            state=data.get("state") or "active",
            executor=data.get("executor") or PROCESS_EXECUTOR,
            executor_options=data.get("executor_options") or {},
            polling_interval=data.get("polling_interval") or 5,
            rate_limit=data.get("rate_limit"),
            rate_limit_window=data.get("rate_limit_window"),
            resume_at=data.get("resume_at"),
            eager_polling=bool(data.get("eager_polling", False)),
        )

    def pack(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "tags": sorted(self.tags),
            "state": self.state.value,
            "executor": self.executor,
            "executor_options": self.executor_options,
            "polling_interval": self.polling_interval,
            "rate_limit": self.rate_limit,
            "rate_limit_window": self.rate_limit_window,
            "resume_at": self.resume_at.isoformat() if self.resume_at else None,
            "eager_polling": self.eager_polling,
        }
