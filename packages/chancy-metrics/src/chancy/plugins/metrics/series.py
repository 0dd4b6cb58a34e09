"""Metric maths without I/O: resolutions, bucket alignment, merging, retention.

Points are kept newest first as ``[timestamp, value]`` pairs, where
``timestamp`` is the start of the bucket in epoch seconds (an ``int``) and
``value`` is a ``float`` for counters and gauges, or a ``(count, sum, min,
max)`` tuple for histograms. :class:`Metric` is the public, read-only form.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import attrs

__all__ = [
    "DEFAULT_POINTS",
    "METRIC_TYPES",
    "RESOLUTIONS",
    "Metric",
    "add_point",
    "bucket_start",
    "combine",
    "cutoff",
    "histogram_dict",
    "histogram_tuple",
    "matches_prefix",
    "merge_points",
]

#: Bucket width of each resolution, in seconds.
RESOLUTIONS: Final[Mapping[str, int]] = {
    "1min": 60,
    "5min": 300,
    "1hour": 3600,
    "1day": 86400,
}
#: Points kept per resolution unless ``max_points_per_resolution`` says otherwise.
DEFAULT_POINTS: Final[Mapping[str, int]] = {
    "1min": 60,
    "5min": 288,
    "1hour": 168,
    "1day": 90,
}
METRIC_TYPES: Final = ("counter", "gauge", "histogram")

Histogram = tuple[float, float, float, float]  # count, sum, min, max
Value = float | Histogram


def bucket_start(timestamp: float, resolution: str) -> int:
    """Start (epoch seconds) of the ``resolution`` bucket holding ``timestamp``.

    Buckets are aligned to the minute, the 5-minute boundary, the hour and
    the (UTC) day.
    """
    width = RESOLUTIONS[resolution]
    return int(timestamp // width) * width


def cutoff(now: float, resolution: str, points: int) -> int:
    """Timestamps at or before this are outside the retention window.

    The window holds the current bucket and the ``points - 1`` before it.
    """
    return bucket_start(now, resolution) - points * RESOLUTIONS[resolution]


def combine(metric_type: str, old: Any, new: Any) -> Any:
    """Merge two values of one bucket (``new`` wins for gauges)."""
    if metric_type == "counter":
        return old + new
    if metric_type == "gauge":
        return new
    return (
        old[0] + new[0],
        old[1] + new[1],
        min(old[2], new[2]),
        max(old[3], new[3]),
    )


def add_point(
    points: list[list[Any]],
    timestamp: int,
    value: Any,
    metric_type: str,
    *,
    limit: int,
    oldest: int,
) -> None:
    """Merge ``value`` into the bucket ``timestamp`` of ``points`` (newest first).

    Then drop points beyond ``limit`` or at/before ``oldest``.
    """
    if not points or points[0][0] < timestamp:
        points.insert(0, [timestamp, value])
    elif points[0][0] == timestamp:
        points[0][1] = combine(metric_type, points[0][1], value)
    else:  # an older bucket (a late fold): keep the order
        for i, point in enumerate(points):
            if point[0] == timestamp:
                point[1] = combine(metric_type, point[1], value)
                break
            if point[0] < timestamp:
                points.insert(i, [timestamp, value])
                break
        else:
            points.append([timestamp, value])
    while points and (len(points) > limit or points[-1][0] <= oldest):
        points.pop()


def merge_points(
    metric_type: str,
    sources: Iterable[Iterable[tuple[int, Any]]],
    *,
    limit: int,
    oldest: int,
) -> list[list[Any]]:
    """Merge the points of several workers into one series, newest first.

    Counters are summed; histograms combined; for gauges the first source
    wins, so pass the most recently updated source first.
    """
    merged: dict[int, Any] = {}
    for source in sources:
        for timestamp, value in source:
            if timestamp <= oldest:
                continue
            if timestamp in merged:
                if metric_type != "gauge":
                    merged[timestamp] = combine(metric_type, merged[timestamp], value)
            else:
                merged[timestamp] = value
    ordered = sorted(merged.items(), reverse=True)[:limit]
    return [[t, v] for t, v in ordered]


def histogram_dict(value: Histogram) -> dict[str, float]:
    count, total, low, high = value
    return {
        "count": count,
        "sum": total,
        "avg": total / count if count else 0.0,
        "min": low,
        "max": high,
    }


def histogram_tuple(value: Mapping[str, Any]) -> Histogram:
    return (
        float(value["count"]),
        float(value["sum"]),
        float(value["min"]),
        float(value["max"]),
    )


def matches_prefix(prefix: str | None, key: str) -> bool:
    """Whether ``key`` starts with ``prefix`` as whole colon-separated segments.

    ``queue:default`` matches ``queue:default`` and ``queue:default:throughput``
    but not ``queue:default2:throughput``. An empty or ``None`` prefix matches
    everything; a trailing colon is ignored.
    """
    if not prefix:
        return True
    prefix = prefix.rstrip(":")
    if not prefix:
        return True
    return key == prefix or key.startswith(prefix + ":")


def is_finite_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _as_datetime(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


@attrs.frozen
class Metric:
    """One metric's points at every resolution, newest first.

    Each point is ``(timestamp, value)``: the bucket's start as an aware UTC
    :class:`~datetime.datetime`, and a ``float`` (counters: the bucket's
    sum; gauges: its last value) or, for histograms, a dict ``{"count",
    "sum", "avg", "min", "max"}``.
    """

    #: ``"counter"``, ``"gauge"`` or ``"histogram"``.
    metric_type: str
    #: Points by resolution (``"1min"``, ``"5min"``, ``"1hour"``, ``"1day"``).
    values: dict[str, list[tuple[datetime, Any]]]
    #: Cumulative totals since the workers started (counters: ``float``;
    #: histograms: ``{"count", "sum"}``; gauges: ``None``).
    cumulative: Any = None

    @property
    def values_1min(self) -> list[tuple[datetime, Any]]:
        return self.values.get("1min", [])

    @property
    def values_5min(self) -> list[tuple[datetime, Any]]:
        return self.values.get("5min", [])

    @property
    def values_1hour(self) -> list[tuple[datetime, Any]]:
        return self.values.get("1hour", [])

    @property
    def values_1day(self) -> list[tuple[datetime, Any]]:
        return self.values.get("1day", [])

    @property
    def latest(self) -> Any:
        """The newest value at the finest resolution that has one (or ``None``)."""
        for resolution in RESOLUTIONS:
            points = self.values.get(resolution)
            if points:
                return points[0][1]
        return None

    @classmethod
    def from_points(
        cls,
        metric_type: str,
        points: Mapping[str, list[list[Any]]],
        cumulative: Any = None,
    ) -> Metric:
        """Build from internal points (epoch-second timestamps, tuple histograms)."""
        values: dict[str, list[tuple[datetime, Any]]] = {}
        for resolution in RESOLUTIONS:
            series = points.get(resolution, [])
            if metric_type == "histogram":
                values[resolution] = [
                    (_as_datetime(t), histogram_dict(v)) for t, v in series
                ]
            else:
                values[resolution] = [(_as_datetime(t), v) for t, v in series]
        return cls(metric_type=metric_type, values=values, cumulative=cumulative)
