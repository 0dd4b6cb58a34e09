"""Metrics maths, recording and Prometheus output (no database)."""

from __future__ import annotations

import re
import tomllib
import types
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chancy import Chancy
from chancy.job import QueuedJob
from chancy.plugins.metrics import (
    DEFAULT_POINTS,
    Metric,
    Metrics,
    bucket_start,
    hooks,
    matches_prefix,
    prometheus_text,
)
from chancy.plugins.metrics.series import add_point, cutoff, merge_points

PACKAGE = Path(__file__).resolve().parents[1]
DSN = "postgresql://localhost/never_connected"


def test_identity_and_packaging() -> None:
    plugin = Metrics()
    assert Metrics.get_identifier() == "chancy.metrics"
    assert Metrics.is_default() is True
    assert Metrics.get_distribution() == "chancy-metrics"
    assert Metrics.get_dependencies() == []
    assert plugin.migrate_key() == "metrics"
    assert plugin.migrate_package() == "chancy.plugins.metrics.migrations"
    assert plugin.get_tables() == ["metrics"]
    assert plugin.max_points_per_resolution == DEFAULT_POINTS
    assert (plugin.sync_interval, plugin.collection_interval) == (60, 30)
    assert (plugin.maximum_metric_age, plugin.max_buffered_points) == (7776000, 10000)
    assert hooks.chancy_register_plugins() == [Metrics]
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["chancy"] == {
        "metrics": "chancy.plugins.metrics.hooks"
    }
    assert not (PACKAGE / "src/chancy/__init__.py").exists()
    assert not (PACKAGE / "src/chancy/plugins/__init__.py").exists()
    app = Chancy(DSN, plugins=[plugin], no_default_plugins=True)
    migrator = plugin.migrator(app)
    assert migrator is not None and migrator.latest_version == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sync_interval": 0},
        {"collection_interval": -1},
        {"max_buffered_points": 0},
        {"max_points_per_resolution": {"2min": 5}},
        {"max_points_per_resolution": {"1min": 0}},
    ],
)
def test_invalid_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Metrics(**kwargs)


def test_bucket_alignment() -> None:
    ts = datetime(2024, 5, 17, 13, 47, 31, tzinfo=UTC).timestamp()
    expected = {
        "1min": datetime(2024, 5, 17, 13, 47, tzinfo=UTC),
        "5min": datetime(2024, 5, 17, 13, 45, tzinfo=UTC),
        "1hour": datetime(2024, 5, 17, 13, 0, tzinfo=UTC),
        "1day": datetime(2024, 5, 17, tzinfo=UTC),
    }
    for resolution, start in expected.items():
        assert bucket_start(ts, resolution) == start.timestamp()


def test_add_point_merges_orders_and_truncates() -> None:
    points: list[list[Any]] = []
    for minute in (0, 1, 1, 3, 2):
        add_point(points, minute * 60, 1.0, "counter", limit=3, oldest=-1)
    assert points == [[180, 1.0], [120, 1.0], [60, 2.0]]
    # the retention window drops old buckets even below the limit
    add_point(points, 240, 5.0, "counter", limit=10, oldest=120)
    assert points == [[240, 5.0], [180, 1.0]]
    gauge: list[list[Any]] = []
    add_point(gauge, 60, 1.0, "gauge", limit=5, oldest=0)
    add_point(gauge, 60, 7.0, "gauge", limit=5, oldest=0)
    assert gauge == [[60, 7.0]]


def test_retention_cutoff() -> None:
    now = 10 * 86400 + 30
    assert cutoff(now, "1min", 60) == bucket_start(now, "1min") - 3600
    assert cutoff(now, "1day", 90) == 10 * 86400 - 90 * 86400


def test_merge_points_of_workers() -> None:
    a = [(120, 2.0), (60, 1.0)]
    b = [(180, 4.0), (120, 3.0)]
    assert merge_points("counter", [a, b], limit=10, oldest=0) == [
        [180, 4.0],
        [120, 5.0],
        [60, 1.0],
    ]
    assert merge_points("counter", [a, b], limit=2, oldest=0) == [
        [180, 4.0],
        [120, 5.0],
    ]
    assert merge_points("counter", [a, b], limit=10, oldest=60) == [
        [180, 4.0],
        [120, 5.0],
    ]
    # gauges: the first source (the latest written) wins
    assert merge_points("gauge", [a, b], limit=10, oldest=0)[1] == [120, 2.0]
    h = merge_points(
        "histogram", [[(60, (2, 3.0, 1.0, 2.0))], [(60, (1, 5.0, 5.0, 5.0))]],
        limit=10, oldest=0,
    )  # fmt: skip
    assert h == [[60, (3, 8.0, 1.0, 5.0)]]
    metric = Metric.from_points("histogram", {"1min": h})
    assert metric.values_1min[0][1] == {
        "count": 3,
        "sum": 8.0,
        "avg": 8.0 / 3,
        "min": 1.0,
        "max": 5.0,
    }
    assert metric.values_1min[0][0] == datetime(1970, 1, 1, 0, 1, tzinfo=UTC)
    assert metric.values["5min"] == [] == metric.values_1day


@pytest.mark.parametrize(
    ("prefix", "key", "expected"),
    [
        (None, "queue:a:throughput", True),
        ("", "queue:a", True),
        ("queue", "queue:a:throughput", True),
        ("queue:a", "queue:a:throughput", True),
        ("queue:a:", "queue:a:throughput", True),
        ("queue:a", "queue:a", True),
        ("queue:a", "queue:ab:throughput", False),
        ("queue:a:throughput", "queue:a", False),
        ("job", "jobs:x", False),
    ],
)
def test_matches_prefix(prefix: str | None, key: str, expected: bool) -> None:
    assert matches_prefix(prefix, key) is expected


def _fake_worker() -> Any:
    return types.SimpleNamespace(worker_id=str(uuid.uuid4()))


def _job(state: str, *, seconds: float = 2.0, wait: float = 0.5) -> QueuedJob:
    scheduled = datetime.now(UTC) - timedelta(seconds=10)
    started = scheduled + timedelta(seconds=wait)
    return QueuedJob(
        id=uuid.uuid4(),
        func="app.tasks.send",
        queue="mail",
        state=state,
        scheduled_at=scheduled,
        started_at=started,
        completed_at=started + timedelta(seconds=seconds),
    )


async def test_built_in_metrics_in_memory() -> None:
    plugin = Metrics()
    worker = _fake_worker()
    store = plugin._new_store(worker.worker_id, worker)
    plugin._stores[worker.worker_id] = store
    await plugin.on_job_updated(worker=worker, job=_job("succeeded", seconds=2))
    await plugin.on_job_updated(worker=worker, job=_job("succeeded", seconds=4))
    await plugin.on_job_updated(worker=worker, job=_job("failed", seconds=1))
    view = await plugin.get_metrics(None, worker_id=worker.worker_id)  # type: ignore[arg-type]
    assert view["job:app.tasks.send:succeeded"].values_1min[0][1] == 2
    assert view["job:app.tasks.send:failed"].values_1min[0][1] == 1
    assert view["global:status:succeeded"].values_1day[0][1] == 2
    assert view["queue:mail:throughput"].values_1hour[0][1] == 3
    assert view["queue:mail:failed"].metric_type == "counter"
    execution = view["job:app.tasks.send:execution_time"].values_5min[0][1]
    assert execution == {"count": 3, "sum": 7.0, "avg": 7.0 / 3, "min": 1.0, "max": 4.0}
    assert view["queue:mail:execution_time"].values_1min[0][1]["count"] == 3
    assert view["queue:mail:wait_time"].values_1min[0][1]["avg"] == pytest.approx(0.5)
    assert view["job:app.tasks.send:succeeded"].cumulative == 2
    assert set(await plugin.get_metrics(None, "queue:mail", worker.worker_id)) == {  # type: ignore[arg-type]
        "queue:mail:throughput",
        "queue:mail:failed",
        "queue:mail:succeeded",
        "queue:mail:execution_time",
        "queue:mail:wait_time",
    }


async def test_max_buffered_points_drops_new_keys() -> None:
    plugin = Metrics(max_buffered_points=2)
    for i in range(4):
        await plugin.increment_counter(f"app:c{i}")
    await plugin.increment_counter("app:c0", 2)  # an existing key still counts
    assert plugin.dropped_points == 2
    store = plugin._default_store()
    store.fold()
    assert sorted(store.series) == ["app:c0", "app:c1"]
    assert store.series["app:c0"].points["1min"][0][1] == 3
    with pytest.raises(ValueError):
        await plugin.record_gauge("app:g", float("nan"))


_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$"
)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> tuple[dict[str, str], dict[tuple[Any, ...], float]]:
    """A small parser of the text format: (types by family, samples)."""
    types_: dict[str, str] = {}
    samples: dict[tuple[Any, ...], float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types_, f"two TYPE lines for {name}"
            types_[name] = kind
        elif line.startswith("#") or not line:
            continue
        else:
            match = _SAMPLE.match(line)
            assert match, line
            labels = tuple(sorted(_LABEL.findall(match["labels"] or "")))
            samples[(match["name"], labels)] = float(match["value"])
    return types_, samples


async def test_prometheus_text_round_trip() -> None:
    plugin = Metrics()
    worker = _fake_worker()
    store = plugin._new_store(worker.worker_id, worker)
    plugin._stores[worker.worker_id] = store
    for state in ("succeeded", "succeeded", "failed"):
        await plugin.on_job_updated(worker=worker, job=_job(state))
    store.set_gauge("queue:mail:depth:pending", 7.0)
    store.count('app:weird "key"\\n', 1.0)
    view = await plugin.get_metrics(None, worker_id=worker.worker_id)  # type: ignore[arg-type]
    text = prometheus_text(view)
    kinds, samples = parse_prometheus(text)
    assert kinds["chancy_job_total"] == "counter"
    assert kinds["chancy_queue_depth"] == "gauge"
    assert kinds["chancy_job_execution_time"] == "summary"
    assert kinds["chancy_job_execution_time_max"] == "gauge"
    func = ("func", "app.tasks.send")
    assert samples[("chancy_job_total", (func, ("state", "succeeded")))] == 2
    assert samples[("chancy_job_total", (func, ("state", "failed")))] == 1
    assert samples[("chancy_global_status_total", (("state", "failed"),))] == 1
    assert samples[("chancy_queue_throughput_total", (("queue", "mail"),))] == 3
    assert (
        samples[("chancy_queue_jobs_total", (("queue", "mail"), ("state", "failed")))]
        == 1
    )
    assert (
        samples[("chancy_queue_depth", (("queue", "mail"), ("state", "pending")))] == 7
    )
    assert samples[("chancy_job_execution_time_count", (func,))] == 3
    assert samples[("chancy_job_execution_time_sum", (func,))] == 6
    assert samples[("chancy_queue_wait_time_max", (("queue", "mail"),))] == 0.5
    assert samples[("chancy_app_weird_key_n_total", ())] == 1
    assert prometheus_text({}) == ""
