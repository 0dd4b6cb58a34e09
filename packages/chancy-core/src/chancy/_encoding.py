"""Encoding of job data: JSON for the jsonb columns, ``COPY`` text for bulk pushes.

The hot path of pushing jobs: a few microseconds per job, so the encoders are
built once per thread and the ``COPY`` lines are formatted by hand.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "JSON_NUL",
    "copy_text",
    "encode_json",
    "is_json",
    "json_default",
    "json_encoders",
    "load_json",
]

#: A NUL character in JSON text: ``\u0000`` not itself escaped (``\\u0000``
#: is the text "\u0000", which is fine). PostgreSQL's jsonb cannot hold one.
JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def json_default(obj: Any) -> Any:
    """Sets and frozensets are stored as lists (as in the original 0.26)."""
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=json_default)
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)


class _JsonEncoders(threading.local):
    """One C encoder per thread: ``json.dumps(obj, allow_nan=False,
    separators=(",", ":"))`` without the encoder ``JSONEncoder.encode`` builds
    on every call (the larger part of encoding a small ``kwargs`` dict).

    Per thread because the encoder's circular-reference markers are shared by
    its calls; they are cleared after a failed call.
    """

    encode: Callable[[Any], str]

    def __init__(self) -> None:
        if _c_make_encoder is None:  # an interpreter without the C accelerator
            self.encode = _JSON.encode
            return
        markers: dict[int, Any] = {}
        chunks = _c_make_encoder(
            markers,
            _JSON.default,
            json.encoder.encode_basestring_ascii,
            None,  # indent
            ":",
            ",",
            False,  # sort_keys
            False,  # skipkeys
            False,  # allow_nan
        )
        join = "".join

        def encode(obj: Any) -> str:
            try:
                return join(chunks(obj, 0))
            except BaseException:
                markers.clear()
                raise

        self.encode = encode


json_encoders = _JsonEncoders()


def encode_json(obj: Any) -> str:
    """``json.dumps(obj, allow_nan=False, separators=(",", ":"))``, faster."""
    return json_encoders.encode(obj)


#: ``COPY`` text-format escapes (tab, newline, carriage return, backslash).
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(rows: Sequence[tuple[Any, ...]]) -> bytes:
    """Plain-job rows as ``COPY … FROM STDIN`` text-format data.

    Formatting the lines ourselves costs a fraction of psycopg's per-value
    binary dumpers. JSON columns come from :func:`json.dumps` (ASCII, control
    characters escaped), so a backslash is the only character to escape.
    Jobs made from one template share their queue, func, limits, meta and
    scheduled_at objects: the text around a row's id and kwargs is reused
    while those are the same objects as the previous row's.
    """
    lines: list[str] = []
    append = lines.append
    last_queue: Any = None
    last_func: Any = None
    middle = ""
    last_limits: Any = None
    last_meta: Any = None
    last_priority: Any = None
    last_attempts: Any = None
    last_when: Any = None
    tail = ""
    for job_id, queue, func, kwargs, limits, meta, priority, max_attempts, when in rows:
        if "\\" in kwargs:
            kwargs = kwargs.replace("\\", "\\\\")
        if queue is not last_queue or func is not last_func:
            last_queue, last_func = queue, func
            middle = (
                f"\t{queue.translate(_COPY_ESCAPES)}\t{func.translate(_COPY_ESCAPES)}\t"
            )
        if (
            meta is not last_meta
            or limits is not last_limits
            or when is not last_when
            or priority is not last_priority
            or max_attempts is not last_attempts
        ):
            last_meta, last_limits, last_when = meta, limits, when
            last_priority, last_attempts = priority, max_attempts
            limits_text = limits.replace("\\", "\\\\")
            meta_text = meta.replace("\\", "\\\\")
            tail = (
                f"\t{limits_text}\t{meta_text}\t{priority}\t{max_attempts}"
                f"\t{when.isoformat()}\n"
            )
        append(f"{job_id.hex}{middle}{kwargs}{tail}")
    return "".join(lines).encode()


def is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False, default=json_default)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


_decode_json = json.JSONDecoder().decode


def load_json(data: Any) -> Any:
    """psycopg's JSON loader without ``json.loads``' encoding sniffing of bytes
    (the server sends UTF-8). Empty objects and arrays, most of a fetched
    job's JSON columns, skip the decoder."""
    if len(data) == 2:
        if data == b"{}":
            return {}
        if data == b"[]":
            return []
    return _decode_json(str(data, "utf-8"))
