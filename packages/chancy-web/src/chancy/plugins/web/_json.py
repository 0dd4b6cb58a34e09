"""JSON encoding for the API: datetimes as ISO 8601, UUIDs as strings, enums
as their values, sets as sorted lists; NaN and infinite numbers (which JSON
cannot express) as ``null``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import uuid
from typing import Any

import attrs
from starlette.responses import JSONResponse

__all__ = ["ApiJSONResponse", "dumps", "to_jsonable"]


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if attrs.has(type(value)):
        return attrs.asdict(value, recurse=False)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    identifier = getattr(value, "identifier", None)  # chancy.job.Reference
    if isinstance(identifier, uuid.UUID):
        return str(identifier)
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinite floats replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def dumps(value: Any) -> str:
    """``value`` as compact, valid JSON; anything unknown becomes its ``str()``,
    NaN and infinite numbers ``null``."""
    try:
        return json.dumps(
            value,
            default=_default,
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )
    except ValueError:
        # Rare (a row stored before numbers were validated): walk and retry.
        return json.dumps(
            _finite(to_plain(value)),
            default=_default,
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )


def to_plain(value: Any) -> Any:
    """``value`` as plain JSON types, NaN and infinities kept."""
    return json.loads(json.dumps(value, default=_default, allow_nan=True))


def to_jsonable(value: Any) -> Any:
    """``value`` converted to plain JSON types (a round trip through :func:`dumps`)."""
    return json.loads(dumps(value))


class ApiJSONResponse(JSONResponse):
    """A :class:`~starlette.responses.JSONResponse` that encodes what Chancy returns."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")
