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
    """
    escaped: dict[str, str] = {}

    def text(value: str) -> str:
        out = escaped.get(value)
        if out is None:
            out = escaped[value] = value.translate(_COPY_ESCAPES)
        return out

    lines: list[str] = []
    append = lines.append
    # Jobs made from one template share their scheduled_at object.
    last_when: Any = None
    stamp = ""
    for job_id, queue, func, kwargs, limits, meta, priority, max_attempts, when in rows:
        if "\\" in kwargs:
            kwargs = kwargs.replace("\\", "\\\\")
        if "\\" in meta:
            meta = meta.replace("\\", "\\\\")
        if "\\" in limits:
            limits = limits.replace("\\", "\\\\")
        if when is not last_when:
            last_when, stamp = when, when.isoformat()
        append(
            f"{job_id.hex}\t{text(queue)}\t{text(func)}\t{kwargs}\t{limits}\t{meta}"
            f"\t{priority}\t{max_attempts}\t{stamp}\n"
        )
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
