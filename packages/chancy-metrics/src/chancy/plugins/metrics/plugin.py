"""The :class:`Metrics` plugin: in-memory recording, periodic sync, cluster view."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from psycopg import sql

from chancy import events
from chancy.maintenance import Alias, MaintenanceService, wait_for_count
from chancy.plugins.metrics.series import (
    DEFAULT_POINTS,
    RESOLUTIONS,
    Metric,
    add_point,
    bucket_start,
    cutoff,
    histogram_dict,
    histogram_tuple,
    is_finite_number,
    matches_prefix,
    merge_points,
)

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.hub import Event
    from chancy.job import QueuedJob
    from chancy.worker import Worker

__all__ = ["Metrics"]

IDENTIFIER: Final = "chancy.metrics"
DISTRIBUTION: Final = "chancy-metrics"

#: Core tables whose sizes the leader records.
CORE_TABLES: Final = ("jobs", "queues", "workers", "leader", "queue_rate_limits")
#: Job states counted by the queue-depth gauges.
DEPTH_STATES: Final = ("pending", "running", "retrying")
#: Longest metric key the table stores (``VARCHAR(255)``).
MAX_KEY_LENGTH: Final = 255
#: Entries of the per-(func, queue, state) key cache before it is reset.
_KEY_CACHE_SIZE: Final = 10000

_log = logging.getLogger("chancy.metrics")


class _JobKeys:
    """The metric keys one (func, queue, state) combination updates."""

    __slots__ = ("counters", "job_execution", "queue_execution", "queue_wait")

    def __init__(self, func: str, queue: str, state: str) -> None:
        self.counters = (
            f"job:{func}:{state}",
            f"global:status:{state}",
            f"queue:{queue}:throughput",
            f"queue:{queue}:{state}",
        )
        self.job_execution = f"job:{func}:execution_time"
        self.queue_execution = f"queue:{queue}:execution_time"
        self.queue_wait = f"queue:{queue}:wait_time"


class _Series:
    """One metric's points (newest first) per resolution, plus its totals."""

    __slots__ = ("cumulative", "metric_type", "points")

    def __init__(self, metric_type: str) -> None:
        self.metric_type = metric_type
        self.points: dict[str, list[list[Any]]] = {r: [] for r in RESOLUTIONS}
        #: counters: float; histograms: [count, sum]; gauges: None.
        self.cumulative: Any = (
            0.0
            if metric_type == "counter"
            else [0.0, 0.0]
            if metric_type == "histogram"
            else None
        )


class _Store:
    """One worker's metrics: the current minute's accumulators and the series.

    The hot path (:meth:`count`, :meth:`observe`, :meth:`set_gauge`) only
    touches three dicts; :meth:`fold` moves them into every resolution once a
    minute or at a sync.
    """

    __slots__ = (
        "counters",
        "dropped",
        "full",
        "gauges",
        "histograms",
        "limits",
        "max_pending",
        "minute",
        "minute_end",
        "modified",
        "on_full",
        "series",
        "worker",
        "worker_id",
    )

    def __init__(
        self,
        worker_id: str,
        limits: Mapping[str, int],
        max_pending: int,
        worker: Any = None,
    ) -> None:
        self.worker_id = worker_id
        self.worker = worker
        self.limits = limits
        self.max_pending = max_pending
        self.counters: dict[str, float] = {}
        self.gauges: dict[str, float] = {}
        self.histograms: dict[str, list[float]] = {}
        self.series: dict[str, _Series] = {}
        self.modified: set[str] = set()
        self.dropped = 0
        self.full = False
        self.minute = 0
        self.minute_end = 0.0
        self.on_full: Any = None

    # -- the hot path ---------------------------------------------------------

    def _room(self) -> bool:
        if (
            len(self.counters) + len(self.gauges) + len(self.histograms)
            < self.max_pending
        ):
            return True
        self.dropped += 1
        if not self.full:
            self.full = True
            if self.on_full is not None:
                self.on_full()
        return False

    def tick(self, now: float) -> None:
        if now >= self.minute_end:
            self.fold(now)

    def count(self, key: str, value: float) -> None:
        counters = self.counters
        old = counters.get(key)
        if old is not None:
            counters[key] = old + value
        elif self._room():
            counters[key] = value

    def set_gauge(self, key: str, value: float) -> None:
        gauges = self.gauges
        if key in gauges or self._room():
            gauges[key] = value

    def observe(self, key: str, value: float) -> None:
        h = self.histograms.get(key)
        if h is not None:
            h[0] += 1
            h[1] += value
            # Comparisons rather than min()/max(): no call on the hot path.
            if value < h[2]:  # noqa: PLR1730
                h[2] = value
            if value > h[3]:  # noqa: PLR1730
                h[3] = value
        elif self._room():
            self.histograms[key] = [1, value, value, value]

    # -- folding ----------------------------------------------------------------

    def _series(self, key: str, metric_type: str) -> _Series | None:
        series = self.series.get(key)
        if series is None:
            if len(key) > MAX_KEY_LENGTH:
                _log.warning("Metrics: ignoring the over-long metric key %.60r…", key)
                return None
            series = self.series[key] = _Series(metric_type)
        elif series.metric_type != metric_type:
            _log.warning(
                "Metrics: %r is a %s; ignoring a %s value",
                key,
                series.metric_type,
                metric_type,
            )
            return None
        return series

    def _add(self, series: _Series, key: str, value: Any, now: float) -> None:
        minute = self.minute
        for resolution, limit in self.limits.items():
            add_point(
                series.points[resolution],
                bucket_start(minute, resolution),
                value,
                series.metric_type,
                limit=limit,
                oldest=cutoff(now, resolution, limit),
            )
        self.modified.add(key)

    def fold(self, now: float | None = None) -> None:
        """Move the accumulated values into every resolution; start a new minute."""
        if now is None:
            now = time.time()
        if self.counters or self.gauges or self.histograms:
            counters, self.counters = self.counters, {}
            gauges, self.gauges = self.gauges, {}
            histograms, self.histograms = self.histograms, {}
            for key, value in counters.items():
                series = self._series(key, "counter")
                if series is not None:
                    series.cumulative += value
                    self._add(series, key, value, now)
            for key, value in gauges.items():
                series = self._series(key, "gauge")
                if series is not None:
                    self._add(series, key, value, now)
            for key, (n, total, low, high) in histograms.items():
                series = self._series(key, "histogram")
                if series is not None:
                    series.cumulative[0] += n
                    series.cumulative[1] += total
                    self._add(series, key, (n, total, low, high), now)
        self.minute = bucket_start(now, "1min")
        self.minute_end = self.minute + 60.0

    def metrics(self, prefix: str | None) -> dict[str, Metric]:
        out: dict[str, Metric] = {}
        for key, series in self.series.items():
            if matches_prefix(prefix, key):
                cumulative = series.cumulative
                if series.metric_type == "histogram":
                    cumulative = {"count": cumulative[0], "sum": cumulative[1]}
                out[key] = Metric.from_points(
                    series.metric_type, series.points, cumulative
                )
        return out


class _Statements:
    """The plugin's statements for one table prefix."""

    __slots__ = (
        "cleanup",
        "depth",
        "queues",
        "reload",
        "reload_worker",
        "sizes",
        "upsert",
    )

    def __init__(self, prefix: str) -> None:
        table = sql.Identifier(f"{prefix}metrics")
        jobs = sql.Identifier(f"{prefix}jobs")
        # One statement per sync, whatever the number of rows: the rows travel
        # as one JSON array [[key, resolution, [ts…], [value…], type, meta], …].
        self.upsert = sql.SQL(
            "INSERT INTO {t} AS m (metric_key, resolution, worker_id, timestamps,"
            ' "values", metric_type, metadata, updated_at)'
            " SELECT r->>0, r->>1, %(worker_id)s,"
            " ARRAY(SELECT to_timestamp(x::float8) FROM jsonb_array_elements_text(r->2)"
            " WITH ORDINALITY AS e(x, i) ORDER BY i),"
            " ARRAY(SELECT v FROM jsonb_array_elements(r->3) WITH ORDINALITY AS e(v, i)"
            " ORDER BY i),"
            " r->>4, r->5, NOW()"
            " FROM jsonb_array_elements(%(rows)s::jsonb) AS r"
            " ON CONFLICT (metric_key, resolution, worker_id) DO UPDATE SET"
            ' timestamps = EXCLUDED.timestamps, "values" = EXCLUDED."values",'
            " metric_type = EXCLUDED.metric_type, metadata = EXCLUDED.metadata,"
            " updated_at = EXCLUDED.updated_at"
        ).format(t=table)
        # Rows whose newest point is older than their resolution's retention
        # window cannot contribute and are not read.
        select = (
            'SELECT metric_key, resolution, metric_type, timestamps, "values", metadata'
            " FROM {t} WHERE updated_at > NOW() - make_interval(secs =>"
            " COALESCE((%(windows)s::jsonb ->> resolution)::float8, 0))"
        )
        self.reload = sql.SQL(select + " ORDER BY updated_at DESC").format(t=table)
        self.reload_worker = sql.SQL(
            select + " AND worker_id = %(worker_id)s ORDER BY updated_at DESC"
        ).format(t=table)
        self.cleanup = sql.SQL(
            "DELETE FROM {t} WHERE updated_at < NOW() - make_interval(secs => %s)"
        ).format(t=table)
        # Written as an OR so that each arm can use a partial index
        # (pending/retrying: the fetch index; running: the running index):
        # finished rows, the bulk of the table, are never read.
        self.depth = sql.SQL(
            "SELECT queue, state, count(*) FROM {jobs}"
            " WHERE state IN ('pending', 'retrying') OR state = 'running'"
            " GROUP BY queue, state"
        ).format(jobs=jobs)
        self.queues = sql.SQL("SELECT name FROM {q}").format(
            q=sql.Identifier(f"{prefix}queues")
        )
        # Sizes of the tables named (prefixed) in the parameter that exist.
        self.sizes = sql.SQL(
            "SELECT n, pg_total_relation_size(c), pg_table_size(c),"
            " pg_indexes_size(c) FROM unnest(%s::text[]) AS n,"
            " LATERAL (SELECT to_regclass(quote_ident(n)) AS c) x WHERE c IS NOT NULL"
        )


@cache
def _statements(prefix: str) -> _Statements:
    return _Statements(prefix)


def _sql(chancy: Chancy) -> _Statements:
    return _statements(chancy.prefix)


class _Schedule:
    """When one worker's loop syncs and collects next (monotonic time)."""

    __slots__ = ("next_collect", "next_sync")

    def __init__(self, sync_interval: float) -> None:
        now = time.monotonic()
        self.next_sync = now + sync_interval
        self.next_collect = now


class Metrics(MaintenanceService):
    """Records job and queue metrics per worker and shares them across the cluster.

    Every worker keeps its metrics in memory: built-in ones for each saved job
    update (counters and execution/wait-time histograms), those sent through
    :meth:`Worker.increment_counter <chancy.Worker.increment_counter>`
    and friends (hub events ``metrics.*``), and those recorded with
    :meth:`increment_counter`, :meth:`record_gauge` and
    :meth:`record_histogram_value`. Every ``sync_interval`` seconds it writes
    the metrics it changed (one statement) and reloads the cluster view, which
    :meth:`get_metrics` returns. The leader also records queue depths and
    table sizes every ``collection_interval`` seconds.

    A :class:`~chancy.maintenance.MaintenanceService` in every worker: each
    pass syncs when ``sync_interval`` has passed (or the buffer is full) and,
    on the leader, collects when ``collection_interval`` has. Test signals:
    ``passes`` / ``wait_for_passes``, :attr:`syncs` /
    :meth:`wait_for_sync` and :attr:`collections` / :meth:`wait_for_collection`.

    :param sync_interval: seconds between two syncs of a worker.
    :param max_points_per_resolution: points kept per resolution (merged with
        the defaults ``{"1min": 60, "5min": 288, "1hour": 168, "1day": 90}``).
    :param maximum_metric_age: :meth:`cleanup` deletes rows not updated for
        this many seconds.
    :param collection_interval: seconds between two leader collections.
    :param max_buffered_points: most distinct metric keys a worker accumulates
        between two folds (about a minute); values for new keys beyond it are
        dropped (counted in :attr:`dropped_points`) and a sync is started.
    """

    identifier = IDENTIFIER
    distribution = DISTRIBUTION
    default_enabled = True
    tables = ("metrics",)
    migrations_key = "metrics"
    migrations_package = "chancy.plugins.metrics.migrations"
    #: Position among the default plugins (spec: leadership, pruner,
    #: recovery, metrics, workflow, then the others).
    default_order = 40

    def __init__(
        self,
        *,
        sync_interval: int = 60,
        max_points_per_resolution: dict[str, int] | None = None,
        maximum_metric_age: int = 7776000,
        collection_interval: int = 30,
        max_buffered_points: int = 10000,
    ) -> None:
        for name, value in (
            ("sync_interval", sync_interval),
            ("maximum_metric_age", maximum_metric_age),
            ("collection_interval", collection_interval),
            ("max_buffered_points", max_buffered_points),
        ):
            if not is_finite_number(value) or value <= 0:
                raise ValueError(f"Metrics {name} must be positive, got {value!r}")
        points = dict(DEFAULT_POINTS)
        for resolution, count in (max_points_per_resolution or {}).items():
            if resolution not in RESOLUTIONS:
                raise ValueError(
                    f"Metrics: unknown resolution {resolution!r}"
                    f" (use one of {', '.join(RESOLUTIONS)})"
                )
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError(
                    f"Metrics: points for {resolution!r} must be an int >= 1,"
                    f" got {count!r}"
                )
            points[resolution] = count
        super().__init__(interval=sync_interval)
        #: Points kept per resolution.
        self.max_points_per_resolution: dict[str, int] = points
        #: Rows older than this (seconds since their last update) are cleaned up.
        self.maximum_metric_age = maximum_metric_age
        #: Seconds between leader collections.
        self.collection_interval = collection_interval
        #: Most keys accumulated in memory between folds.
        self.max_buffered_points = max_buffered_points
        self._windows = json.dumps(
            {r: points[r] * w for r, w in RESOLUTIONS.items()}, separators=(",", ":")
        )
        self._stores: dict[str, _Store] = {}
        self._last_store: _Store | None = None
        self._orphan: _Store | None = None
        self._keys: dict[tuple[str, str, str], _JobKeys] = {}
        self._handlers: dict[str, list[tuple[str, Any]]] = {}
        self._cluster: dict[str, Metric] | None = None
        #: Test signals: completed syncs and leader collections.
        self.syncs = 0
        self.synced = asyncio.Event()
        self.collections = 0
        self.collected = asyncio.Event()
        self._schedules: dict[str, _Schedule] = {}

    #: Seconds between syncs (the service's ``interval``).
    sync_interval = Alias[float]("interval")

    def __repr__(self) -> str:
        return (
            f"<Metrics(sync_interval={self.sync_interval!r},"
            f" collection_interval={self.collection_interval!r})>"
        )

    def api_plugin(self) -> str | None:
        """``GET /api/v1/metrics[/{prefix}]`` in the web API (``chancy-web``)."""
        return "chancy.plugins.metrics.api.MetricsApiPlugin"

    @property
    def dropped_points(self) -> int:
        """Values dropped because ``max_buffered_points`` was reached."""
        stores = list(self._stores.values())
        if self._orphan is not None:
            stores.append(self._orphan)
        return sum(s.dropped for s in stores)

    # -- recording ----------------------------------------------------------------

    def _new_store(self, worker_id: str, worker: Any = None) -> _Store:
        store = _Store(
            worker_id, self.max_points_per_resolution, self.max_buffered_points, worker
        )
        store.on_full = self.wake_up
        store.fold()
        return store

    def _default_store(self) -> _Store:
        for store in self._stores.values():
            return store
        if self._orphan is None:
            self._orphan = self._new_store("")
        return self._orphan

    async def increment_counter(self, key: str, value: float = 1) -> None:
        """Add ``value`` to the counter ``key`` (in this process's first worker)."""
        self._record("counter", key, value)

    async def record_gauge(self, key: str, value: float) -> None:
        """Set the gauge ``key`` (the bucket keeps the last value)."""
        self._record("gauge", key, value)

    async def record_histogram_value(self, key: str, value: float) -> None:
        """Add an observation to the histogram ``key``."""
        self._record("histogram", key, value)

    def _record(
        self, metric_type: str, key: str, value: float, store: _Store | None = None
    ) -> None:
        if not isinstance(key, str) or not key:
            raise TypeError(f"a metric key must be a non-empty string, got {key!r}")
        if not is_finite_number(value):
            raise ValueError(f"a metric value must be a finite number, got {value!r}")
        if store is None:
            store = self._default_store()
        store.tick(time.time())
        if metric_type == "counter":
            store.count(key, float(value))
        elif metric_type == "gauge":
            store.set_gauge(key, float(value))
        else:
            store.observe(key, float(value))

    def _job_keys(self, func: str, queue: str, state: str) -> _JobKeys:
        if len(self._keys) >= _KEY_CACHE_SIZE:
            self._keys.clear()
        keys = self._keys[(func, queue, state)] = _JobKeys(func, queue, state)
        return keys

    async def on_job_updated(self, *, worker: Worker, job: QueuedJob) -> None:
        """Built-in metrics for one saved update: dict updates only, no I/O."""
        store = self._last_store
        if store is None or store.worker is not worker:
            store = self._stores.get(worker.worker_id)
            if store is None:
                return
            self._last_store = store
        now = time.time()
        if now >= store.minute_end:
            store.fold(now)
        state = job.state.value
        keys = self._keys.get((job.func, job.queue, state))
        if keys is None:
            keys = self._job_keys(job.func, job.queue, state)
        counters = store.counters
        for key in keys.counters:  # store.count(), inlined
            old = counters.get(key)
            if old is None:
                store.count(key, 1.0)
            else:
                counters[key] = old + 1.0
        started = job.started_at
        if started is not None:
            completed = job.completed_at
            if completed is not None:
                elapsed = (completed - started).total_seconds()
                store.observe(keys.job_execution, elapsed)
                store.observe(keys.queue_execution, elapsed)
            waited = (started - job.scheduled_at).total_seconds()
            if waited >= 0:  # a retry's scheduled_at is its next run
                store.observe(keys.queue_wait, waited)

    # -- worker lifecycle -----------------------------------------------------------

    async def on_worker_started(self, *, worker: Worker) -> None:
        store = self._stores.get(worker.worker_id)
        if store is None:
            if self._orphan is not None and not self._stores:
                store, self._orphan = self._orphan, None
                store.worker_id, store.worker = worker.worker_id, worker
            else:
                store = self._new_store(worker.worker_id, worker)
            self._stores[worker.worker_id] = store

        def handler(metric_type: str) -> Any:
            def on_event(event: Event) -> None:
                body = event.body
                try:
                    self._record(
                        metric_type, body["key"], body.get("value", 1), store=store
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    worker.log.warning("Metrics: ignored %s (%s)", event.name, exc)

            return on_event

        handlers = [
            (events.METRICS_INCREMENT_COUNTER.name, handler("counter")),
            (events.METRICS_RECORD_GAUGE.name, handler("gauge")),
            (events.METRICS_RECORD_HISTOGRAM_VALUE.name, handler("histogram")),
        ]
        for name, fn in handlers:
            worker.hub.on(name, fn)
        self._handlers[worker.worker_id] = handlers

    async def on_worker_stopped(self, *, worker: Worker) -> None:
        """The final sync: what a short-lived worker recorded is not lost."""
        for name, fn in self._handlers.pop(worker.worker_id, []):
            worker.hub.remove(name, fn)
        store = self._stores.pop(worker.worker_id, None)
        if self._last_store is store:
            self._last_store = None
        if store is None:
            return
        try:
            await self._write(worker.chancy, store)
        except Exception:
            worker.log.exception(
                "Metrics: the final sync of %s failed", store.worker_id
            )

    # -- the loop ---------------------------------------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """Sync every ``sync_interval``; collect every ``collection_interval``
        when leading. A restart (after an error) syncs one interval later and
        collects at once."""
        self._schedules[worker.worker_id] = _Schedule(self.sync_interval)
        try:
            await super().run(worker, chancy)
        finally:
            self._schedules.pop(worker.worker_id, None)

    async def run_pass(self, worker: Worker, chancy: Chancy) -> float:
        """Collect (on the leader) and sync when they are due; returns the
        time until the next of them."""
        schedule = self._schedules.get(worker.worker_id)
        if schedule is None:
            schedule = self._schedules[worker.worker_id] = _Schedule(self.sync_interval)
        now = time.monotonic()
        if worker.is_leader.is_set() and now >= schedule.next_collect:
            schedule.next_collect = now + self.collection_interval
            await self.collect(worker, chancy)
        store = self._stores.get(worker.worker_id)
        full = store is not None and (
            len(store.modified) * len(RESOLUTIONS) >= self.max_buffered_points
            or store.full
        )
        if now >= schedule.next_sync or full:
            schedule.next_sync = time.monotonic() + self.sync_interval
            await self.sync(worker, chancy)
        deadline = min(schedule.next_sync, now + self.collection_interval)
        if worker.is_leader.is_set():
            deadline = min(deadline, schedule.next_collect)
        return max(0.05, deadline - time.monotonic())

    async def sync(self, worker: Worker, chancy: Chancy) -> None:
        """Write this worker's modified metrics, then reload the cluster view."""
        store = self._stores.get(worker.worker_id)
        if store is not None:
            await self._write(chancy, store)
        self._cluster = await self._load(chancy)
        self.syncs += 1
        self.synced.set()

    async def _write(self, chancy: Chancy, store: _Store) -> int:
        """Upsert the modified series of ``store`` in one statement; returns rows."""
        store.fold()
        store.full = False
        modified, store.modified = store.modified, set()
        rows: list[list[Any]] = []
        for key in sorted(modified):  # a stable lock order
            series = store.series.get(key)
            if series is None:
                continue
            if series.metric_type == "counter":
                meta: dict[str, Any] = {"total": series.cumulative}
            elif series.metric_type == "histogram":
                meta = {"count": series.cumulative[0], "sum": series.cumulative[1]}
            else:
                meta = {}
            for resolution, points in series.points.items():
                if series.metric_type == "histogram":
                    values: list[Any] = [histogram_dict(v) for _, v in points]
                else:
                    values = [v for _, v in points]
                rows.append(
                    [
                        key,
                        resolution,
                        [t for t, _ in points],
                        values,
                        series.metric_type,
                        meta,
                    ]
                )
        if not rows:
            return 0
        try:
            await chancy.ensure_open()
            async with chancy.pool.connection() as conn:
                await conn.execute(
                    _sql(chancy).upsert,
                    {
                        "worker_id": store.worker_id,
                        "rows": json.dumps(rows, separators=(",", ":")),
                    },
                )
        except BaseException:
            store.modified |= modified
            raise
        return len(rows)

    async def _load(
        self, chancy: Chancy, worker_id: str | None = None
    ) -> dict[str, Metric]:
        """The merged view of every worker's rows (or of one worker's)."""
        statements = _sql(chancy)
        params = {"windows": self._windows, "worker_id": worker_id}
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            cursor = await conn.execute(
                statements.reload if worker_id is None else statements.reload_worker,
                params,
            )
            rows = await cursor.fetchall()
        # key -> (type, {resolution: [sources]}, cumulative)
        grouped: dict[str, tuple[str, dict[str, list[Any]], list[Any]]] = {}
        for key, resolution, metric_type, stamps, values, meta in rows:
            if resolution not in RESOLUTIONS:
                continue
            entry = grouped.get(key)
            if entry is None:
                entry = grouped[key] = (metric_type, {}, [])
            elif entry[0] != metric_type:
                continue  # the most recently written type wins
            if metric_type == "histogram":
                values = [histogram_tuple(v) for v in values]
            points = [
                (int(t.timestamp()), v) for t, v in zip(stamps, values, strict=False)
            ]
            entry[1].setdefault(resolution, []).append(points)
            if resolution == "1day" and meta:
                entry[2].append(meta)
        now = time.time()
        out: dict[str, Metric] = {}
        for key, (metric_type, by_resolution, metas) in grouped.items():
            merged = {}
            for resolution, sources in by_resolution.items():
                limit = self.max_points_per_resolution[resolution]
                merged[resolution] = merge_points(
                    metric_type,
                    sources,
                    limit=limit,
                    oldest=cutoff(now, resolution, limit),
                )
            cumulative: Any = None
            if metric_type == "counter":
                cumulative = sum(float(m.get("total", 0)) for m in metas)
            elif metric_type == "histogram":
                cumulative = {
                    "count": sum(float(m.get("count", 0)) for m in metas),
                    "sum": sum(float(m.get("sum", 0)) for m in metas),
                }
            out[key] = Metric.from_points(metric_type, merged, cumulative)
        return out

    async def get_metrics(
        self,
        chancy: Chancy,
        metric_prefix: str | None = None,
        worker_id: str | None = None,
    ) -> dict[str, Metric]:
        """Metrics by key, filtered by whole-segment prefix.

        Without ``worker_id``: the cluster view as of the last sync (loaded
        from the database when this process has not synced yet). With the id
        of a worker of this process: its live in-memory view. With another
        worker's id: that worker's rows in the database.
        """
        if worker_id is None:
            cluster = self._cluster
            if cluster is None:
                cluster = self._cluster = await self._load(chancy)
        elif worker_id in self._stores:
            store = self._stores[worker_id]
            store.fold()
            return store.metrics(metric_prefix)
        else:
            cluster = await self._load(chancy, worker_id)
        return {k: m for k, m in cluster.items() if matches_prefix(metric_prefix, k)}

    async def refresh(self, chancy: Chancy) -> dict[str, Metric]:
        """Reload the cluster view from the database now."""
        self._cluster = await self._load(chancy)
        return self._cluster

    # -- leader collection ------------------------------------------------------------

    def _tables(self, chancy: Chancy) -> list[str]:
        names = list(CORE_TABLES)
        for plugin in chancy.plugins.values():
            try:
                tables = plugin.get_tables()
            except Exception:
                continue
            names.extend(t for t in tables if t not in names)
        return names

    async def collect(self, worker: Worker, chancy: Chancy) -> None:
        """Record queue depths and table sizes (the leader does it periodically)."""
        store = self._stores.get(worker.worker_id)
        if store is None:
            return
        statements = _sql(chancy)
        tables = self._tables(chancy)
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            cursor = await conn.execute(statements.depth)
            depths = await cursor.fetchall()
            cursor = await conn.execute(statements.queues)
            queues = [row[0] for row in await cursor.fetchall()]
            cursor = await conn.execute(
                statements.sizes, ([chancy.prefix + t for t in tables],)
            )
            sizes = await cursor.fetchall()
        counts = {(q, s): 0 for q in queues for s in DEPTH_STATES}
        for queue, state, count in depths:
            counts[(queue, state)] = count
        store.tick(time.time())
        for (queue, state), count in counts.items():
            store.set_gauge(f"queue:{queue}:depth:{state}", float(count))
        plen = len(chancy.prefix)
        for name, total, table, indexes in sizes:
            name = name[plen:]
            store.observe(f"table:{name}:total_size_bytes", float(total))
            store.observe(f"table:{name}:table_size_bytes", float(table))
            store.observe(f"table:{name}:index_size_bytes", float(indexes))
        self.collections += 1
        self.collected.set()

    # -- maintenance -------------------------------------------------------------------

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Delete rows not updated for ``maximum_metric_age`` seconds."""
        await chancy.ensure_open()
        async with chancy.pool.connection() as conn:
            cursor = await conn.execute(
                _sql(chancy).cleanup, (float(self.maximum_metric_age),)
            )
            return int(cursor.rowcount)

    # -- test signals ---------------------------------------------------------------------

    async def wait_for_sync(
        self, *, passes: int = 1, timeout: float | None = None
    ) -> None:
        """Wait until ``passes`` more syncs finished."""
        await wait_for_count(lambda: self.syncs, self.synced, passes, timeout)

    async def wait_for_collection(
        self, *, passes: int = 1, timeout: float | None = None
    ) -> None:
        """Wait until ``passes`` more leader collections finished."""
        await wait_for_count(lambda: self.collections, self.collected, passes, timeout)
