"""Prometheus text exposition (format 0.0.4) of a metrics view.

The web package serves :func:`prometheus_text` at ``/metrics``; anything else
can too::

    metrics = await chancy.plugins["chancy.metrics"].get_metrics(chancy)
    body = prometheus_text(metrics)  # Content-Type: text/plain; version=0.0.4

Names are ``chancy_`` plus the sanitised key; keys of the built-in shapes
become one family with labels (``job:app.f:succeeded`` →
``chancy_job_total{func="app.f",state="succeeded"}``). Counters are exposed
as their cumulative total across workers (``_total``); histograms as a
summary without quantiles (``_count``, ``_sum``, cumulative) plus ``_min``
and ``_max`` gauges from the newest bucket; gauges as their newest value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from chancy.plugins.metrics.series import Metric

__all__ = ["CONTENT_TYPE", "describe", "prometheus_text"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_STATES: Final = frozenset({"pending", "running", "retrying", "succeeded", "failed"})
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def _sanitise(text: str) -> str:
    name = _INVALID.sub("_", text)
    return re.sub(r"__+", "_", name).strip("_") or "metric"


def describe(key: str) -> tuple[str, dict[str, str]]:
    """The family name (without ``_total``) and labels of a metric key."""
    parts = key.split(":")
    head, last = parts[0], parts[-1]
    if head == "job" and len(parts) >= 3:
        func = ":".join(parts[1:-1])
        if last in _STATES:
            return "chancy_job", {"func": func, "state": last}
        return f"chancy_job_{_sanitise(last)}", {"func": func}
    if head == "queue" and len(parts) >= 3:
        if len(parts) >= 4 and parts[-2] == "depth":
            queue = ":".join(parts[1:-2])
            return "chancy_queue_depth", {"queue": queue, "state": last}
        queue = ":".join(parts[1:-1])
        if last in _STATES:
            return "chancy_queue_jobs", {"queue": queue, "state": last}
        return f"chancy_queue_{_sanitise(last)}", {"queue": queue}
    if head == "global" and len(parts) == 3 and parts[1] == "status":
        return "chancy_global_status", {"state": last}
    if head == "table" and len(parts) >= 3:
        return f"chancy_table_{_sanitise(last)}", {"table": ":".join(parts[1:-1])}
    return f"chancy_{_sanitise(key)}", {}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _number(value: Any) -> str:
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def prometheus_text(metrics: Mapping[str, Metric]) -> str:
    """Render a view from :meth:`Metrics.get_metrics` as Prometheus text."""
    # family name -> (type, help, [(suffix, labels, value)])
    families: dict[str, tuple[str, str, list[tuple[str, dict[str, str], Any]]]] = {}

    def add(name: str, kind: str, key: str, labels: dict[str, str], value: Any) -> None:
        family = families.get(name)
        if family is None:
            family = families[name] = (kind, key, [])
        elif family[0] != kind:
            return  # a user key that collides with another type: skip it
        family[2].append((name, labels, value))

    for key in sorted(metrics):
        metric = metrics[key]
        base, labels = describe(key)
        if metric.metric_type == "counter":
            total = metric.cumulative
            if total is None:
                total = sum(v for _, v in metric.values_1day)
            add(f"{base}_total", "counter", key, labels, total)
        elif metric.metric_type == "gauge":
            latest = metric.latest
            if latest is not None:
                add(base, "gauge", key, labels, latest)
        elif metric.metric_type == "histogram":
            cumulative = metric.cumulative or {
                "count": sum(v["count"] for _, v in metric.values_1day),
                "sum": sum(v["sum"] for _, v in metric.values_1day),
            }
            family = families.get(base)
            if family is not None and family[0] != "summary":
                continue
            if family is None:
                family = families[base] = ("summary", key, [])
            family[2].append((f"{base}_count", labels, cumulative["count"]))
            family[2].append((f"{base}_sum", labels, cumulative["sum"]))
            latest = metric.latest
            if latest is not None:
                add(f"{base}_min", "gauge", key, labels, latest["min"])
                add(f"{base}_max", "gauge", key, labels, latest["max"])
    lines: list[str] = []
    for name in sorted(families):
        kind, key, samples = families[name]
        lines.append(f"# HELP {name} Chancy metric {_escape(key.split(':')[0])}")
        lines.append(f"# TYPE {name} {kind}")
        for sample_name, labels, value in samples:
            lines.append(f"{sample_name}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n" if lines else ""
