"""Extending the API with routes (see :mod:`chancy.plugins.web.extension`)."""

from __future__ import annotations

from chancy.plugins.web.extension import (
    ApiError,
    ApiPlugin,
    RouteT,
    error_response,
    json_response,
    parse_datetime,
    parse_uuid,
    query_bool,
    query_int,
    read_json,
)

__all__ = [
    "ApiError",
    "ApiPlugin",
    "RouteT",
    "error_response",
    "json_response",
    "parse_datetime",
    "parse_uuid",
    "query_bool",
    "query_int",
    "read_json",
]
