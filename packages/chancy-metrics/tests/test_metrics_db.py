"""Metrics against a real database: built-ins, sync, cluster view, leader, cleanup."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from chancy import Chancy, Job, Queue, Worker
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.metrics import Metrics

ASYNC = "chancy.executors.asyncex.AsyncExecutor"
JOBS = "chancy_testjobs"


def _app(**options: Any) -> dict[str, Any]:
    return {
        "plugins": [Metrics(**options), ImmediateLeadership()],
        "no_default_plugins": True,
    }


def _plugin(chancy: Chancy) -> Metrics:
    plugin = chancy.plugins["chancy.metrics"]
    assert isinstance(plugin, Metrics)
    return plugin


async def _until(predicate: Callable[[], Any], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def _latest(metrics: dict[str, Any], key: str) -> Any:
    metric = metrics.get(key)
    return None if metric is None else metric.values_1min[0][1]


@pytest.mark.parametrize(
    "chancy", [_app(sync_interval=1, collection_interval=1)], indirect=True
)
async def test_built_in_metrics_after_jobs_run(chancy: Chancy, worker: Worker) -> None:
    plugin = _plugin(chancy)
    queue = f"q_{uuid.uuid4().hex[:8]}"
    await chancy.declare(
        Queue(queue, executor=ASYNC, polling_interval=0.1, eager_polling=True),
        upsert=True,
    )
    refs = [await chancy.push(Job(func=f"{JOBS}.async_noop", queue=queue))]
    refs.append(await chancy.push(Job(func=f"{JOBS}.async_noop", queue=queue)))
    refs.append(await chancy.push(Job(func=f"{JOBS}.async_fail", queue=queue)))
    for ref in refs:
        assert await chancy.wait_for_job(ref, interval=0.05, timeout=20) is not None

    async def local_done() -> bool:
        view = await plugin.get_metrics(chancy, worker_id=worker.worker_id)
        return _latest(view, f"queue:{queue}:throughput") == 3

    await _until(local_done)
    await plugin.wait_for_sync(timeout=10)
    view = await plugin.get_metrics(chancy)
    assert _latest(view, f"job:{JOBS}.async_noop:succeeded") == 2
    assert _latest(view, f"job:{JOBS}.async_fail:failed") == 1
    assert _latest(view, f"queue:{queue}:succeeded") == 2
    assert _latest(view, f"queue:{queue}:failed") == 1
    assert _latest(view, "global:status:succeeded") == 2
    execution = _latest(view, f"queue:{queue}:execution_time")
    assert execution["count"] == 3 and execution["min"] >= 0
    assert _latest(view, f"job:{JOBS}.async_noop:execution_time")["count"] == 2
    assert _latest(view, f"queue:{queue}:wait_time")["count"] == 3
    assert view[f"queue:{queue}:throughput"].values_1day[0][1] == 3
    # prefix filtering of the cluster view, by whole segments
    assert set(await plugin.get_metrics(chancy, metric_prefix=f"queue:{queue}")) == {
        f"queue:{queue}:{name}"
        for name in (
            "throughput",
            "succeeded",
            "failed",
            "execution_time",
            "wait_time",
            "depth:pending",
            "depth:running",
            "depth:retrying",
        )
    }
    # another process (no cache) reads the same view from the table
    assert _latest(
        await Metrics().get_metrics(chancy), f"queue:{queue}:throughput"
    ) == _latest(view, f"queue:{queue}:throughput")


@pytest.mark.parametrize(
    "chancy", [_app(sync_interval=3600, collection_interval=1)], indirect=True
)
async def test_leader_records_queue_depth_and_table_sizes(
    chancy: Chancy, worker: Worker
) -> None:
    plugin = _plugin(chancy)
    await chancy.declare(Queue("idle", tags={"nobody"}), upsert=True)
    for _ in range(3):
        await chancy.push(Job(func=f"{JOBS}.noop", queue="idle"))
    await plugin.wait_for_collection(passes=2, timeout=10)
    view = await plugin.get_metrics(chancy, worker_id=worker.worker_id)
    assert _latest(view, "queue:idle:depth:pending") == 3
    assert _latest(view, "queue:idle:depth:running") == 0
    assert _latest(view, "queue:default:depth:pending") == 0
    for table in ("jobs", "queues", "workers", "leader", "metrics"):
        size = _latest(view, f"table:{table}:total_size_bytes")
        assert size is not None and size["max"] > 0, table
        assert f"table:{table}:index_size_bytes" in view


@pytest.mark.parametrize("chancy", [_app()], indirect=True)
async def test_depth_query_reads_only_unfinished_rows(chancy: Chancy) -> None:
    from chancy.plugins.metrics.plugin import _sql

    async with chancy.pool.connection() as conn:
        await conn.execute("SET enable_seqscan = off")
        cursor = await conn.execute(
            b"EXPLAIN " + _sql(chancy).depth.as_bytes(conn)  # type: ignore[operator]
        )
        plan = "\n".join(row[0] for row in await cursor.fetchall())
    assert "idx_jobs_fetch" in plan and "idx_jobs_running" in plan, plan
    assert "idx_jobs_finished" not in plan and "idx_jobs_queue_state" not in plan


async def _worker(chancy: Chancy, worker_id: str) -> Worker:
    worker = Worker(chancy, worker_id=worker_id, register_signal_handlers=False)
    await worker.start()
    return worker


@pytest.mark.parametrize(
    "chancy",
    [{"plugins": [Metrics(sync_interval=3600)], "no_default_plugins": True}],
    indirect=True,
)
async def test_two_workers_are_merged_and_a_stop_syncs(chancy: Chancy) -> None:
    plugin = _plugin(chancy)
    one = await _worker(chancy, "w-one")
    two = await _worker(chancy, "w-two")
    try:
        await one.increment_counter("app:sent", 2)
        await two.increment_counter("app:sent", 3)
        await one.record_gauge("app:temperature", 20)
        await two.record_histogram_value("app:size", 10)
        await one.record_histogram_value("app:size", 30)
        await plugin.sync(one, chancy)
        await plugin.sync(two, chancy)
        view = await plugin.get_metrics(chancy, metric_prefix="app")
        assert _latest(view, "app:sent") == 5
        assert view["app:sent"].cumulative == 5
        assert _latest(view, "app:temperature") == 20
        assert _latest(view, "app:size") == {
            "count": 2,
            "sum": 40,
            "avg": 20,
            "min": 10,
            "max": 30,
        }
        only_two = await Metrics().get_metrics(chancy, "app:sent", worker_id="w-two")
        assert _latest(only_two, "app:sent") == 3
        # one row per key, resolution and worker
        async with chancy.pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT count(*) FROM {chancy.prefix}metrics WHERE metric_key = 'app:sent'"
            )
            assert (await cursor.fetchone()) == (8,)
        # recorded after the last sync: saved by the final sync on stop
        await two.increment_counter("app:sent", 10)
    finally:
        await two.stop()
        await one.stop()
    assert _latest(await plugin.refresh(chancy), "app:sent") == 15


@pytest.mark.parametrize(
    "chancy",
    [
        {
            "plugins": [Metrics(sync_interval=3600, maximum_metric_age=3600)],
            "no_default_plugins": True,
        }
    ],
    indirect=True,
)
async def test_cleanup_removes_rows_not_updated_for_too_long(chancy: Chancy) -> None:
    plugin = _plugin(chancy)
    await plugin.increment_counter("app:old")
    await plugin.increment_counter("app:new")
    await plugin._write(chancy, plugin._default_store())
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"UPDATE {chancy.prefix}metrics SET updated_at = NOW() - interval '2 hours'"
            " WHERE metric_key = 'app:old'"
        )
    assert await plugin.cleanup(chancy) == 4  # its four resolutions
    assert set(await plugin.refresh(chancy)) == {"app:new"}
    assert await plugin.cleanup(chancy) == 0
