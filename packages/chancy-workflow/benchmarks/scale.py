"""Time a large workflow: how long pushing it takes, and how long until it completes.

    PYTHONPATH=packages/chancy-core/src:packages/chancy-leadership/src:packages/chancy-workflow/src \\
        python3 packages/chancy-workflow/benchmarks/scale.py [--chains 10] [--length 100]

The default shape is 10 independent chains of 100 steps (1,000 steps, wide and
deep). ``--fan`` adds a final step depending on the last step of every chain.
Jobs are no-op coroutines on an async queue served by one worker in this
process, so the numbers measure the workflow machinery, not the jobs.

The database is ``CHANCY_TEST_DSN``'s server (or a local server, or a throwaway
cluster, as for the test suite); a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import secrets
import statistics
import time

from chancy import Chancy, Job, Queue, Worker
from chancy._pgserver import create_database, drop_database, get_server_dsn
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.workflow import Workflow, WorkflowPlugin


async def noop() -> None:
    return None


def build(chains: int, length: int, fan: bool) -> Workflow:
    workflow = Workflow(f"scale-{chains}x{length}")
    job = Job.from_func(noop, queue="bench")
    for chain in range(chains):
        for i in range(length):
            workflow.add(f"c{chain}_{i}", job, [f"c{chain}_{i - 1}"] if i else None)
    if fan:
        workflow.add("sink", job, [f"c{chain}_{length - 1}" for chain in range(chains)])
    return workflow


async def wait_until_finished(app: Chancy, workflow_id: str, timeout: float) -> None:
    """Poll the workflow's state every 10 ms (cheaper than ``wait_for_workflow``,
    which loads every step, so the measurement disturbs the run less)."""
    async with asyncio.timeout(timeout), app.pool.connection() as conn:
        await conn.set_autocommit(True)
        while True:
            cursor = await conn.execute(
                f'SELECT state FROM "{app.prefix}workflows" WHERE id = %s',
                (workflow_id,),
            )
            row = await cursor.fetchone()
            if row is None or row[0] not in ("pending", "running"):
                return
            await asyncio.sleep(0.01)


async def run(dsn: str, args: argparse.Namespace) -> None:
    plugin = WorkflowPlugin(polling_interval=args.polling_interval)
    app = Chancy(dsn, plugins=[ImmediateLeadership(), plugin], no_default_plugins=True)
    async with app:
        await app.migrate()
        await app.declare(
            Queue(
                "bench",
                executor=Chancy.Executor.Async,
                concurrency=args.concurrency,
                polling_interval=0.1,
                eager_polling=True,
            ),
            upsert=True,
        )
        async with Worker(app, register_signal_handlers=False):
            for attempt in range(args.repeat):
                workflow = build(args.chains, args.length, args.fan)
                started = time.perf_counter()
                workflow_id = await WorkflowPlugin.push(app, workflow)
                pushed = time.perf_counter() - started
                await wait_until_finished(app, workflow_id, args.timeout)
                elapsed = time.perf_counter() - started
                done = await WorkflowPlugin.fetch_workflow(app, workflow_id)
                assert done is not None
                counts = collections.Counter(
                    step.state.value if step.state else None for _, step in done
                )
                jobs = await app.get_jobs([step.job_id for _, step in done])  # type: ignore[misc]
                latencies = sorted(
                    (j.started_at - j.created_at).total_seconds()
                    for j in jobs
                    if j.started_at and j.created_at
                )
                print(
                    f"run {attempt + 1}: {len(workflow)} steps ({args.chains} chains x"
                    f" {args.length}{' + sink' if args.fan else ''}):"
                    f" push {pushed * 1000:.1f} ms, completed in {elapsed:.2f} s"
                    f" ({done.state.value}; {dict(counts)});"
                    f" job wait median {statistics.median(latencies) * 1000:.1f} ms,"
                    f" p95 {latencies[int(len(latencies) * 0.95)] * 1000:.1f} ms"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=10)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument(
        "--fan", action="store_true", help="add a fan-in step at the end"
    )
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--polling-interval", type=float, default=30)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    server = os.environ.get("CHANCY_TEST_DSN") or get_server_dsn()
    name = f"chancy_bench_{secrets.token_hex(4)}"
    dsn = create_database(server, name)
    try:
        asyncio.run(run(dsn, args))
    finally:
        drop_database(server, name)


if __name__ == "__main__":
    main()
