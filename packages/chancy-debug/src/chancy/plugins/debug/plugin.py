"""The :class:`DebugPlugin`: logs and counts every event on a worker's hub."""

from __future__ import annotations

import collections
import logging
import re
import reprlib
import weakref
from typing import TYPE_CHECKING, Any, Final

from chancy.errors import ConfigurationError
from chancy.plugin import Plugin

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.hub import Event, Hub
    from chancy.worker import Worker

__all__ = ["DebugPlugin", "render_body"]

IDENTIFIER: Final = "chancy.debug_plugin"
DISTRIBUTION: Final = "chancy-debug"

#: Default longest rendering of an event's body, in characters.
MAX_BODY_LENGTH: Final = 300
_MIN_BODY_LENGTH: Final = 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel = 3
    r.maxdict = 10
    r.maxlist = r.maxtuple = r.maxset = r.maxfrozenset = r.maxdeque = 10
    r.maxarray = 10
    r.maxstring = 80
    r.maxlong = 40
    r.maxother = 80
    return r


_REPR = _repr()


def render_body(body: Any, max_length: int = MAX_BODY_LENGTH) -> str:
    """A short, one-line rendering of an event's body that never raises.

    Nested containers and long values are abbreviated (``reprlib``), an
    object whose ``repr()`` raises is shown by its type, control characters
    (newlines included) are escaped so that one event is one log line, and
    the result is cut to ``max_length`` characters.
    """
    try:
        text = _REPR.repr(body)
    except Exception:
        text = f"<{type(body).__name__} that cannot be shown>"
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)
    if len(text) > max_length:
        text = text[: max_length - 3] + "..."
    return text


def _level(level: int | str) -> int:
    if isinstance(level, bool):
        raise ConfigurationError(f"DebugPlugin: invalid log level {level!r}")
    if isinstance(level, int):
        return level
    if isinstance(level, str):
        value = logging.getLevelNamesMapping().get(level.strip().upper())
        if value is not None:
            return value
    raise ConfigurationError(
        f"DebugPlugin: invalid log level {level!r}; use a number or a name such as"
        " 'DEBUG' or 'INFO'"
    )


class DebugPlugin(Plugin):
    """Logs every event on each worker's hub and counts them by name.

    When a worker starts, the plugin registers a wildcard handler
    (``worker.hub.on_any``) that sees everything the hub carries: the
    worker's own events (``worker.started``, ``worker.queue.started``, ...),
    the database's notifications relayed by LISTEN (``queue.pushed``,
    ``job.cancelled``, ``leadership.gained``, ...) and the events of other
    plugins. Each is logged as ``Hub event <name>: <body>``, the body in a
    short, one-line rendering (:func:`render_body`), and counted in
    :attr:`event_counts`. The handler stays registered for the worker's
    lifetime, so ``worker.stopped`` is seen too.

    It is never enabled by default: pass it in ``plugins=[...]``.

    :param level: the log level of the messages (a number or a name);
        ``logging.INFO`` by default, so that the app's default logger shows
        them.
    :param logger: where to log; the app's logger (``chancy``) by default.
    :param max_body_length: the longest rendering of a body, in characters.
    :raises ConfigurationError: for a wrong setting.
    """

    identifier = IDENTIFIER
    distribution = DISTRIBUTION

    def __init__(
        self,
        *,
        level: int | str = logging.INFO,
        logger: logging.Logger | None = None,
        max_body_length: int = MAX_BODY_LENGTH,
    ) -> None:
        super().__init__()
        if logger is not None and not isinstance(logger, logging.Logger):
            raise ConfigurationError(
                f"DebugPlugin: logger must be a logging.Logger, got {logger!r}"
            )
        if (
            not isinstance(max_body_length, int)
            or isinstance(max_body_length, bool)
            or max_body_length < _MIN_BODY_LENGTH
        ):
            raise ConfigurationError(
                "DebugPlugin: max_body_length must be an int of at least"
                f" {_MIN_BODY_LENGTH}, got {max_body_length!r}"
            )
        #: The level events are logged at.
        self.level: int = _level(level)
        #: The logger used; ``None`` means the app's logger.
        self.logger: logging.Logger | None = logger
        #: The longest rendering of an event's body.
        self.max_body_length: int = max_body_length
        #: How many events of each name the hubs carried (all workers together).
        self.event_counts: collections.Counter[str] = collections.Counter()
        self._hubs: weakref.WeakSet[Hub] = weakref.WeakSet()

    def __repr__(self) -> str:
        return (
            f"<DebugPlugin(level={logging.getLevelName(self.level)!r},"
            f" max_body_length={self.max_body_length!r})>"
        )

    def attach(self, worker: Worker) -> None:
        """Log and count the events of ``worker``'s hub from now on.

        Called when the worker starts; call it yourself for a worker that
        only listens (``Worker.listen()``). Attaching twice does nothing.
        """
        hub = worker.hub
        if hub in self._hubs:
            return
        log = self.logger or worker.log
        level = self.level
        counts = self.event_counts
        max_length = self.max_body_length

        def on_event(event: Event) -> None:
            counts[event.name] += 1
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "Hub event %s: %s",
                    event.name,
                    render_body(event.body, max_length),
                )

        hub.on_any(on_event)
        self._hubs.add(hub)

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """Attach to the worker's hub, then return.

        The worker runs this as soon as it has started listening, before it
        declares its queues, so even the first events are seen; the handler
        stays registered after this returns.
        """
        self.attach(worker)
