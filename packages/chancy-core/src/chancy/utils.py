"""Small helpers shared by the core and plugins."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import importlib
import json
import os
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
        candidate = (ms << 74) | (int.from_bytes(os.urandom(10), "big") >> 6 >> 1)
        if candidate <= _uuid7_last:
            candidate = _uuid7_last + 1
        _uuid7_last = candidate
    ms_part = candidate >> 74
    rand_a = (candidate >> 62) & 0xFFF
    rand_b = candidate & ((1 << 62) - 1)
    value = (ms_part << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


def uuid7_many(count: int) -> list[uuid.UUID]:
    """``count`` increasing UUIDv7s, cheaper than calling :func:`uuid7` in a loop."""
    global _uuid7_last
    if count <= 0:
        return []
    randomness = os.urandom(10 * count)
    out: list[uuid.UUID] = []
    append = out.append
    mask62 = (1 << 62) - 1
    with _uuid7_lock:
        ms = time.time_ns() // 1_000_000
        last = _uuid7_last
        for i in range(count):
            candidate = (ms << 74) | (
                int.from_bytes(randomness[10 * i : 10 * i + 10], "big") >> 7
            )
            if candidate <= last:
                candidate = last + 1
            last = candidate
            value = (
                ((candidate >> 74) << 80)
                | (0x7 << 76)
                | (((candidate >> 62) & 0xFFF) << 64)
                | (0b10 << 62)
                | (candidate & mask62)
            )
            append(uuid.UUID(int=value))
        _uuid7_last = last
    return out


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
