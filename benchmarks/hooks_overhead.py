"""Per-job cost of the plugin hooks on the hot path, without a database.

    python benchmarks/hooks_overhead.py          # from the repo root (hatch env)
    PYTHONPATH=packages/chancy-core/src python benchmarks/hooks_overhead.py

Prints nanoseconds per call for:

- the ``has_job_completed`` / ``has_job_starting`` guards with no plugin
  implementing the hooks, and with one plugin implementing ``on_job_completed``;
- ``PluginManager.job_completed`` with that plugin (the chained call);
- the plain pluggy call ``pm.hook.chancy_job_completed(...)`` with no
  implementation, i.e. what calling the hook unguarded would cost;
- the whole ``Executor.on_job_completed`` path (new state, hooks, queueing the
  save) with no plugin and with one plugin;
- two neighbouring per-job costs for scale: ``QueuedJob.unpack`` of a fetched
  row and the push-side serialisation per pushed job.

The design goal: hooks nobody implements must cost next to nothing per job.
"""

from __future__ import annotations

import asyncio
import sys
import time
import timeit
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    import chancy  # noqa: F401
except ImportError:  # run from the repo root without the workspace env
    sys.path.insert(
        0, str(Path(__file__).resolve().parents[1] / "packages" / "chancy-core" / "src")
    )

from chancy import Chancy, Queue
from chancy.executors.asyncex import AsyncExecutor
from chancy.job import Job, QueuedJob
from chancy.plugin import Plugin

DSN = "postgresql://nobody@127.0.0.1:1/none"  # never connected to


class CompletedPlugin(Plugin):
    """Implements only on_job_completed, returning the job unchanged."""

    @staticmethod
    def get_identifier() -> str:
        return "bench.completed"

    async def on_job_completed(
        self, *, worker: Any, job: QueuedJob, exc: Any = None, result: Any = None
    ) -> Any:
        return job


class FakeWorker:
    """Just what Executor.on_job_completed touches."""

    def __init__(self, chancy: Chancy) -> None:
        self.chancy = chancy
        self.saved = 0

    def queue_update(self, job: QueuedJob) -> None:
        self.saved += 1

    def on_job_completed(self, *, queue: Queue, job: QueuedJob) -> None:
        pass


def _row() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": uuid.uuid4(),
        "queue": "bench",
        "func": "bench.noop",
        "kwargs": {"seq": 1},
        "limits": [],
        "meta": {},
        "state": "running",
        "priority": 0,
        "attempts": 0,
        "max_attempts": 1,
        "claim_id": uuid.uuid4(),
        "created_at": now,
        "started_at": now,
        "completed_at": None,
        "scheduled_at": now,
        "unique_key": None,
        "errors": [],
    }


def sync_ns(fn: Any, number: int = 200_000) -> float:
    timer = timeit.Timer(fn)
    best = min(timer.repeat(repeat=5, number=number))
    return best / number * 1e9


def async_ns(make_coro: Any, number: int = 100_000) -> float:
    async def loop() -> float:
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(number):
                await make_coro()
            best = min(best, time.perf_counter() - t)
        return best

    return asyncio.run(loop()) / number * 1e9


def main() -> None:
    bare = Chancy(DSN, no_default_plugins=True)
    hooked = Chancy(DSN, no_default_plugins=True, plugins=[CompletedPlugin()])
    job = QueuedJob.unpack(_row())
    queue = Queue("bench", executor=Chancy.Executor.Async)
    results: list[tuple[str, float]] = []

    for label, app in (("no plugin", bare), ("1 plugin (on_job_completed)", hooked)):
        pm = app.plugin_manager
        results.append(
            (f"has_job_completed, {label}", sync_ns(lambda pm=pm: pm.has_job_completed))
        )
        results.append(
            (f"has_job_starting, {label}", sync_ns(lambda pm=pm: pm.has_job_starting))
        )

    pm = hooked.plugin_manager
    worker = FakeWorker(hooked)
    results.append(
        (
            "PluginManager.job_completed, 1 plugin",
            async_ns(lambda: pm.job_completed(worker, job, None, None)),
        )
    )

    bare_pm = bare.plugin_manager
    results.append(
        (
            "unguarded pluggy pm.hook.chancy_job_completed(...), no plugin",
            sync_ns(
                lambda: bare_pm.pm.hook.chancy_job_completed(
                    worker=worker, job=job, exc=None, result=None
                )
            ),
        )
    )

    for label, app in (("no plugin", bare), ("1 plugin", hooked)):
        w = FakeWorker(app)
        executor = AsyncExecutor(w, queue)  # type: ignore[arg-type]
        results.append(
            (
                f"Executor.on_job_completed (whole path), {label}",
                async_ns(
                    lambda ex=executor: ex.on_job_completed(job=job, result=None),
                    number=50_000,
                ),
            )
        )

    row = _row()
    results.append(
        (
            "QueuedJob.unpack(row) per fetched job",
            sync_ns(lambda: QueuedJob.unpack(row), number=50_000),
        )
    )
    jobs = [
        Job(func="bench.noop", queue="bench", kwargs={"seq": i}) for i in range(1000)
    ]
    # The push-side serialiser is private and changes with the insert path;
    # time whichever one this version has.
    for name in ("_serialise", "_prepare_insert"):
        prepare = getattr(bare, name, None)
        if prepare is not None:
            results.append(
                (
                    f"Chancy.{name} per pushed job (batch of 1000)",
                    sync_ns(lambda p=prepare: p(jobs), number=50) / 1000,
                )
            )
            break

    width = max(len(label) for label, _ in results)
    print(f"{'':<{width}}  ns/call")
    for label, ns in results:
        print(f"{label:<{width}}  {ns:9.0f}")


if __name__ == "__main__":
    main()
