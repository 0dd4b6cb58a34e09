"""The in-process event hub of a worker."""

from __future__ import annotations

import asyncio
import inspect
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

__all__ = ["Event", "Hub"]

Handler = Callable[["Event"], Awaitable[None] | None]


@attrs.frozen(slots=True)
class Event:
    """One event: its name (``"job.completed"``) and its body."""

    #: The event's name, ``<area>.<what happened>``.
    name: str
    #: What the emitter attached; a JSON object for database notifications.
    body: dict[str, Any] = attrs.field(factory=dict)


class Hub:
    """Named events with handlers, wildcard handlers and waiters.

    Handlers run sequentially in registration order; coroutine handlers are
    awaited. A failing handler is logged by the worker and does not stop the
    others.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._any: list[Handler] = []
        self._waiters: dict[str, list[asyncio.Future[Event]]] = defaultdict(list)
        self.on_error: Callable[[Event, BaseException], None] | None = None

    def on(self, event: str, handler: Handler) -> None:
        self._handlers[event].append(handler)

    def on_any(self, handler: Handler) -> None:
        self._any.append(handler)

    def remove(self, event: str, handler: Handler) -> None:
        handlers = self._handlers.get(event)
        if handlers and handler in handlers:
            handlers.remove(handler)

    def remove_on_any(self, handler: Handler) -> None:
        if handler in self._any:
            self._any.remove(handler)

    def clear(self) -> None:
        self._handlers.clear()
        self._any.clear()
        for waiters in self._waiters.values():
            for fut in waiters:
                fut.cancel()
        self._waiters.clear()

    def has_listeners(self, event: str) -> bool:
        return bool(self._handlers.get(event) or self._any or self._waiters.get(event))

    async def emit(self, event: str, body: dict[str, Any] | None = None) -> None:
        ev = Event(event, body if body is not None else {})
        handlers = self._handlers.get(event)
        for handler in (*(handlers or ()), *self._any):
            try:
                result = handler(ev)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # a handler must never break the emitter
                if self.on_error is not None:
                    self.on_error(ev, exc)
        waiters = self._waiters.pop(event, None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(ev)

    async def wait_for(
        self, event: str | list[str], timeout: float | None = None
    ) -> list[Event]:
        """Wait for the first of the named events.

        Returns the events that fired, or an empty list on timeout.
        """
        names = [event] if isinstance(event, str) else list(event)
        if not names:
            raise ValueError("wait_for() needs at least one event name")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Event]] = []
        for name in names:
            fut: asyncio.Future[Event] = loop.create_future()
            self._waiters[name].append(fut)
            futures.append(fut)
        try:
            done, _ = await asyncio.wait(
                futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for name, fut in zip(names, futures, strict=True):
                if not fut.done():
                    fut.cancel()
                waiters = self._waiters.get(name)
                if waiters and fut in waiters:
                    waiters.remove(fut)
        return [f.result() for f in done if not f.cancelled()]
