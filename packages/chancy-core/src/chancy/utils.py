"""Small helpers shared by the core and plugins."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import importlib
import json
import logging
import os
import re
import secrets
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import attrs

__all__ = [
    "chancy_uuid",
    "chunked",
    "import_string",
    "json_dumps",
    "uuid7",
    "uuid7_many",
    "wait_event",
]

_uuid7_lock = threading.Lock()
_uuid7_last = 0

#: Random bytes drawn ahead, 10 per id: one system call per 64 ids instead
#: of one per id (pushing one job, that call was ~5% of its client time).
_RANDOM_DRAW = 10 * 64
_random_buffer = b""
_random_at = 0


def _random_bytes(count: int) -> bytes:
    """``count`` (at most ``_RANDOM_DRAW``) random bytes from the bytes
    drawn ahead (under ``_uuid7_lock``)."""
    global _random_buffer, _random_at
    at = _random_at
    if at + count > len(_random_buffer):
        _random_buffer = os.urandom(_RANDOM_DRAW)
        at = 0
    _random_at = at + count
    return _random_buffer[at : at + count]


def _random74() -> int:
    """74 random bits (under ``_uuid7_lock``)."""
    return int.from_bytes(_random_bytes(10), "big") >> 7


def _forget_random() -> None:
    # A forked child must not draw the bytes its parent draws next: two
    # processes would make the same ids within one millisecond.
    global _random_buffer, _random_at
    _random_buffer, _random_at = b"", 0


os.register_at_fork(after_in_child=_forget_random)


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a UTF-16 surrogate code point (U+D800 to
    U+DFFF), which UTF-8, and so a PostgreSQL text column, cannot hold."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def uuid7() -> uuid.UUID:
    """Return an RFC 9562 UUIDv7.

    48 bits of Unix milliseconds, then 74 bits that are a counter seeded at
    random each millisecond, so ids made by one process are strictly
    increasing even within one millisecond. PostgreSQL compares UUIDs
    bytewise, so ``ORDER BY id`` is creation order.
    """
    global _uuid7_last
    with _uuid7_lock:
        ms = time.time_ns() // 1_000_000
        # 74 bits below the timestamp: 12 bits "rand_a" + 62 bits "rand_b".
        candidate = (ms << 74) | _random74()
        if candidate <= _uuid7_last:
            candidate = _uuid7_last + 1
        _uuid7_last = candidate
    ms_part = candidate >> 74
    rand_a = (candidate >> 62) & 0xFFF
    rand_b = candidate & ((1 << 62) - 1)
    value = (ms_part << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


_MASK62 = (1 << 62) - 1


def _uuid7_layout(candidate: int) -> int:
    """Spread 48 ms bits + 74 counter bits around the version and variant bits."""
    return (
        ((candidate >> 74) << 80)
        | (0x7 << 76)
        | (((candidate >> 62) & 0xFFF) << 64)
        | (0b10 << 62)
        | (candidate & _MASK62)
    )


_SAFE_UNKNOWN = uuid.SafeUUID.unknown
# UUID's slots, set through their descriptors: UUID.__setattr__ refuses, and
# object.__setattr__ looks the name up again for every id (a third slower).
_new_object = object.__new__
_set_int = uuid.UUID.__dict__["int"].__set__
_set_is_safe = uuid.UUID.__dict__["is_safe"].__set__


def _uuid_from_int(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` without its argument checks (value is in range)."""
    out = _new_object(uuid.UUID)
    _set_int(out, value)
    _set_is_safe(out, _SAFE_UNKNOWN)
    return out


#: The version (4) and variant (RFC 9562) bits of a random UUID.
_V4_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_V4_SET = (0x4 << 76) | (0x2 << 62)


def random_uuid() -> uuid.UUID:
    """A random UUIDv4, like :func:`uuid.uuid4`, from the random bytes drawn
    ahead for :func:`uuid7` (no system call per id): a worker's execution
    claims, one per fetch."""
    with _uuid7_lock:
        value = int.from_bytes(_random_bytes(16), "big")
    return _uuid_from_int((value & _V4_CLEAR) | _V4_SET)


def uuid7_many(count: int) -> list[uuid.UUID]:
    """``count`` increasing UUIDv7s, much cheaper than calling :func:`uuid7` in a loop.

    The first id's 74 bits below the timestamp are random (or one more than the
    last id this process made); the following ones count up from it (RFC 9562
    §6.2, a monotonic random counter), so a batch costs one random draw.
    """
    global _uuid7_last
    if count <= 0:
        return []
    with _uuid7_lock:
        ms = time.time_ns() // 1_000_000
        first = (ms << 74) | _random74()
        if first <= _uuid7_last:
            first = _uuid7_last + 1
        _uuid7_last = first + count - 1
    if (first & _MASK62) + count <= _MASK62:
        # The counter stays inside its low 62 bits: the UUIDs are consecutive.
        base = _uuid7_layout(first)
        return [_uuid_from_int(base + i) for i in range(count)]
    return [_uuid_from_int(_uuid7_layout(first + i)) for i in range(count)]


def chancy_uuid() -> str:
    """A new time-ordered id as a 32-digit hex string (the original's spelling)."""
    return uuid7().hex


def import_string(name: str) -> Any:
    """Import ``package.module.attribute`` (or ``package.module:attribute``).

    :raises ImportError: naming the path when the module or attribute is missing.
    """
    if ":" in name:
        module_name, _, attr_path = name.partition(":")
    else:
        module_name, _, attr_path = name.rpartition(".")
    if not module_name or not attr_path:
        raise ImportError(f"{name!r} is not an import path of the form 'module.attr'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # ``package.Class.method``: import the longest importable prefix.
        if (
            exc.name is None
            or not module_name.startswith(exc.name)
            or "." not in module_name
        ):
            raise ImportError(f"cannot import {name!r}: {exc}") from exc
        parent, _, first = module_name.rpartition(".")
        obj = import_string(f"{parent}.{first}")
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(
                f"cannot import {name!r}: no attribute {part!r}"
            ) from None
    return obj


def _default(o: Any) -> Any:
    if isinstance(o, uuid.UUID):
        return str(o)
    if isinstance(o, datetime):
        if o.tzinfo is None:
            o = o.replace(tzinfo=UTC)
        return o.isoformat()
    if isinstance(o, date):
        return o.isoformat()
    if isinstance(o, timedelta):
        return o.total_seconds()
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=repr)
    if attrs.has(type(o)):
        return attrs.asdict(o, recurse=False)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if hasattr(o, "pack"):
        return o.pack()
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def json_dumps(obj: Any) -> str:
    """``json.dumps`` that also encodes UUIDs, datetimes, enums, sets and attrs classes."""
    return json.dumps(obj, default=_default, separators=(",", ":"))


def chunked(items: list[Any], size: int) -> list[list[Any]]:
    """Split ``items`` into lists of at most ``size`` elements."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]


def random_token(nbytes: int = 16) -> str:
    return secrets.token_hex(nbytes)


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; True if it was set.

    Unlike ``asyncio.wait_for`` on Python 3.11, a cancellation that arrives
    just as the event is set is never swallowed.
    """
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


def configure_logging(level: int | str = logging.INFO) -> logging.Logger:
    """Show Chancy's log lines on stderr, for programs that do not configure
    logging themselves (the ``chancy`` command line, the demo).

    Adds a handler to the ``chancy`` logger (``rich``'s when it is installed,
    else ``[time][LEVEL] message`` lines) unless that logger or the root
    logger already has one, and sets the ``chancy`` logger's level. Libraries
    and applications that configure logging never need it: Chancy itself only
    adds a ``NullHandler``.
    """
    log = logging.getLogger("chancy")
    log.setLevel(level)
    has_handler = any(
        not isinstance(h, logging.NullHandler) for h in log.handlers
    ) or bool(logging.getLogger().handlers)
    if not has_handler:
        try:
            from rich.logging import RichHandler  # type: ignore[import-not-found]

            handler: logging.Handler = RichHandler(rich_tracebacks=True)
        except ImportError:
            handler = logging.StreamHandler()
            handler.setFormatter(
                logging.Formatter(
                    "[%(asctime)s][%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S"
                )
            )
        log.addHandler(handler)
    return log


#: ``scheme://user:password@`` in a URI (the password is group 2).
_URI_PASSWORD = re.compile(
    r"([a-z][a-z0-9+.-]*://[^/\s:@]*:)([^@\s/]*)(@)", re.IGNORECASE
)
#: ``password=...`` in a key/value connection string, quoted or not.
_KV_PASSWORD = re.compile(
    r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE
)


def redact_dsn(text: str, dsn: str | None = None) -> str:
    """``text`` with every PostgreSQL password in it replaced by ``***``.

    Masks ``scheme://user:password@`` and ``password=...`` wherever they
    appear (also in a DSN that cannot be parsed, quoted inside an error
    message), and, when ``dsn`` is given and parses, that DSN's password
    wherever else it shows up. Used for every error and log line that may
    include a DSN.
    """
    text = _URI_PASSWORD.sub(r"\1***\3", text)
    text = _KV_PASSWORD.sub(r"\1***", text)
    if dsn:
        try:
            from psycopg.conninfo import conninfo_to_dict

            password = conninfo_to_dict(dsn).get("password")
        except Exception:
            password = None
        if password and len(str(password)) >= 3:
            text = text.replace(str(password), "***")
    return text
