"""JSON encoding for the API: datetimes as ISO 8601, UUIDs as strings, enums
as their values, sets as sorted lists."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
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


def dumps(value: Any) -> str:
    """``value`` as compact JSON; anything unknown becomes its ``str()``."""
    return json.dumps(
        value, default=_default, ensure_ascii=False, separators=(",", ":")
    )


def to_jsonable(value: Any) -> Any:
    """``value`` converted to plain JSON types (a round trip through :func:`dumps`)."""
    return json.loads(dumps(value))


class ApiJSONResponse(JSONResponse):
    """A :class:`~starlette.responses.JSONResponse` that encodes what Chancy returns."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")
