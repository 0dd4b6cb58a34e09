"""Metrics for Chancy: job counters, timings, queue depths and table sizes.

Installed, the plugin is enabled by default. Each worker records metrics in
memory, writes the ones it changed every ``sync_interval`` seconds and reads
back the merged view of the whole cluster::

    from chancy import Chancy, Worker
    from chancy.plugins.metrics import Metrics, prometheus_text

    chancy = Chancy(dsn, plugins=[Metrics(sync_interval=30)])

    async with Worker(chancy) as worker:
        await worker.increment_counter("app:emails_sent")   # from anywhere with a worker
        metrics = chancy.plugins["chancy.metrics"]
        await metrics.record_histogram_value("app:payload_bytes", 5120)

        view = await metrics.get_metrics(chancy, metric_prefix="queue:default")
        for key, metric in view.items():
            print(key, metric.metric_type, metric.values_1min[:3])
        print(prometheus_text(await metrics.get_metrics(chancy)))

Types: ``counter`` (sum per bucket), ``gauge`` (last value per bucket) and
``histogram`` (``{"count", "sum", "avg", "min", "max"}`` per bucket), at four
resolutions: ``1min`` (60 points), ``5min`` (288), ``1hour`` (168) and
``1day`` (90). Built-in keys: ``job:{func}:{state}``,
``job:{func}:execution_time``, ``global:status:{state}``,
``queue:{queue}:throughput``, ``queue:{queue}:{state}``,
``queue:{queue}:execution_time``, ``queue:{queue}:wait_time`` and, from the
leader, ``queue:{queue}:depth:{state}`` and ``table:{name}:*_size_bytes``.
"""

from __future__ import annotations

from chancy.plugins.metrics.plugin import Metrics
from chancy.plugins.metrics.prometheus import CONTENT_TYPE, prometheus_text
from chancy.plugins.metrics.series import (
    DEFAULT_POINTS,
    RESOLUTIONS,
    Metric,
    bucket_start,
    matches_prefix,
)

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_POINTS",
    "RESOLUTIONS",
    "Metric",
    "Metrics",
    "bucket_start",
    "matches_prefix",
    "prometheus_text",
]
