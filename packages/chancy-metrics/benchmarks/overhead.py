"""Time :meth:`Metrics.on_job_updated` per job (the hot path; no database).

Run: ``PYTHONPATH=packages/chancy-core/src:packages/chancy-metrics/src
python3 packages/chancy-metrics/benchmarks/overhead.py [jobs]``.

It measures the awaited call as the worker makes it (a coroutine per job),
for a mix of 20 functions, 4 queues and 3 states, and subtracts the cost of
awaiting an empty coroutine so the plugin's own work is shown separately.
"""

from __future__ import annotations

import asyncio
import sys
import time
import types
import uuid
from datetime import UTC, datetime, timedelta

from chancy.job import QueuedJob
from chancy.plugins.metrics import Metrics


def make_jobs(count: int) -> list[QueuedJob]:
    now = datetime.now(UTC)
    states = ("succeeded", "succeeded", "failed", "retrying")
    jobs = []
    for i in range(count):
        started = now + timedelta(milliseconds=i % 50)
        jobs.append(
            QueuedJob(
                id=uuid.uuid4(),
                func=f"app.tasks.f{i % 20}",
                queue=f"q{i % 4}",
                state=states[i % len(states)],
                scheduled_at=now,
                started_at=started,
                completed_at=started + timedelta(milliseconds=5 + i % 7),
            )
        )
    return jobs


async def empty(*, worker: object, job: QueuedJob) -> None:
    return None


async def measure(jobs: list[QueuedJob], rounds: int) -> tuple[float, float]:
    plugin = Metrics()
    worker = types.SimpleNamespace(worker_id="bench")
    plugin._stores["bench"] = plugin._new_store("bench", worker)
    hook = plugin.on_job_updated
    best_hook = best_empty = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for job in jobs:
            await hook(worker=worker, job=job)  # type: ignore[arg-type]
        best_hook = min(best_hook, (time.perf_counter_ns() - start) / len(jobs))
        start = time.perf_counter_ns()
        for job in jobs:
            await empty(worker=worker, job=job)
        best_empty = min(best_empty, (time.perf_counter_ns() - start) / len(jobs))
    store = plugin._stores["bench"]
    start = time.perf_counter_ns()
    store.fold()
    fold_ms = (time.perf_counter_ns() - start) / 1e6
    print(f"fold of {len(store.series)} keys into 4 resolutions: {fold_ms:.2f} ms")
    return best_hook, best_empty


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    jobs = make_jobs(count)
    hook, empty_cost = asyncio.run(measure(jobs, rounds=5))
    print(f"on_job_updated: {hook:.0f} ns/job (best of 5 x {count} jobs)")
    print(f"empty async hook: {empty_cost:.0f} ns/job")
    print(f"metrics work: {hook - empty_cost:.0f} ns/job")


if __name__ == "__main__":
    main()
