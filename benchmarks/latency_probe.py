"""Where push→start time goes: ours against the raw loop, stage by stage.

    hatch run python benchmarks/latency_probe.py [--dsn DSN] [--jobs 300]
        [--gap 0.02] [--rounds 2]

Makes (and drops) its own database, ``chancy_latency_probe``, on the server
of ``--dsn`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
Each round runs ours, then the raw loop, each with an idle worker in a
separate process, pushing ``--jobs`` jobs ``--gap`` seconds apart from this
one, as ``bench``'s latency workload does. Stamps (``time.time()``, one
clock for both processes) split each job's push→start time into:

- ``push``: the pusher's call (ours: ``await chancy.push(job)`` of a job
  made with ``with_kwargs``; raw: the yardstick's ``INSERT … pg_notify``);
- ``push → notified``: until the worker's LISTEN connection hands the
  notification over (ours: ``Hub.emit`` of ``queue.pushed``);
- ``notified → fetch``: until the fetch statement is sent;
- ``fetch``: the claim statement and building the job (ours:
  ``Worker.fetch_jobs``; raw: the yardstick's ``UPDATE … RETURNING``);
- ``fetch → start``: until the job's first line (ours: through the async
  executor's task).

Ours' worker is a plain ``Worker`` with the default plugins; the stamps are
put on the class's own methods, so it still fetches on the hot connection.
The raw worker is ``adapters/raw_adapter.py``'s loop with the same stamps.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

try:
    import chancy  # noqa: F401
except ImportError:  # run from the repo root without the workspace env
    sys.path.insert(
        0, str(Path(__file__).resolve().parents[1] / "packages" / "chancy-core" / "src")
    )

import psycopg
from psycopg.conninfo import make_conninfo

from chancy import Chancy, Job, Queue, Worker, job

# The raw loop's statements are the yardstick's own (sent on the app's
# channel here, so that one LISTEN serves both kinds of worker).
sys.path.insert(0, str(Path(__file__).resolve().parent / "adapters"))
from raw_adapter import FETCH_SQL, INSERT_NOTIFY_SQL, SAVE_SQL

DATABASE = "chancy_latency_probe"
QUEUE = "bench"
STAGES = ("push", "push → notified", "notified → fetch", "fetch", "fetch → start")

PUSHED = '{"t":"queue.pushed","q":"bench"}'

#: Worker-side stamps: notifications, fetches (start, end, job numbers), starts.
STAMPS: dict[str, Any] = {"notified": [], "fetches": [], "started": {}}


@job(queue=QUEUE)
async def probe_job(*, seq: int) -> None:
    STAMPS["started"][seq] = time.time()


async def ours_worker(dsn: str) -> None:
    from chancy.hub import Hub

    fetch_jobs = Worker.fetch_jobs
    emit = Hub.emit

    async def stamped_fetch(self: Worker, queue: Queue, conn: Any, **kw: Any) -> Any:
        t0 = time.time()
        jobs = await fetch_jobs(self, queue, conn, **kw)
        if jobs:
            STAMPS["fetches"].append((t0, time.time(), [j.kwargs["seq"] for j in jobs]))
        return jobs

    async def stamped_emit(self: Hub, event: str, body: Any = None) -> None:
        if event == "queue.pushed":
            STAMPS["notified"].append(time.time())
        await emit(self, event, body)

    Worker.fetch_jobs = stamped_fetch  # type: ignore[method-assign]
    Hub.emit = stamped_emit  # type: ignore[method-assign]
    async with Chancy(dsn) as app:
        worker = Worker(app, register_signal_handlers=False)
        await worker.start()
        await _serve_until_stdin_closes()
        await worker.stop()


async def raw_worker(dsn: str) -> None:
    listen = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    work = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await listen.execute('LISTEN "chancy_events"')
    wake = asyncio.Event()

    async def listener() -> None:
        async for _ in listen.notifies():
            STAMPS["notified"].append(time.time())
            wake.set()

    async def loop() -> None:
        params = {"queue": QUEUE, "limit": 50, "worker": "raw"}
        while True:
            wake.clear()
            t0 = time.time()
            cur = await work.execute(FETCH_SQL, params, prepare=True)
            rows = await cur.fetchall()
            if not rows:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 1.0)
                continue
            STAMPS["fetches"].append((t0, time.time(), [r[1]["seq"] for r in rows]))
            for _id, kwargs in rows:
                STAMPS["started"][kwargs["seq"]] = time.time()
            await work.execute(SAVE_SQL, ([r[0] for r in rows],), prepare=True)

    tasks = [asyncio.create_task(listener()), asyncio.create_task(loop())]
    await _serve_until_stdin_closes()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await work.close()
    await listen.close()


async def _serve_until_stdin_closes() -> None:
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def push_spaced(kind: str, dsn: str, n: int, gap: float) -> dict[int, Any]:
    """Push ``n`` jobs ``gap`` seconds apart; each one's (call, return) stamps."""
    pushed: dict[int, tuple[float, float]] = {}
    async with (
        Chancy(dsn, no_default_plugins=True) as app,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
    ):
        template = Job(func="__main__.probe_job", queue=QUEUE)

        async def ours(seq: int) -> None:
            await app.push(template.with_kwargs(seq=seq))

        async def raw(seq: int) -> None:
            kwargs = f'{{"seq": {seq}}}'
            params = (uuid.uuid4(), QUEUE, "raw.noop", kwargs, "chancy_events", PUSHED)
            await conn.execute(INSERT_NOTIFY_SQL, params, prepare=True)

        push = ours if kind == "ours" else raw
        next_at = time.perf_counter()
        for seq in range(n):
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at += gap
            t0 = time.time()
            await push(seq)
            pushed[seq] = (t0, time.time())
    return pushed


def run_one(kind: str, dsn: str, n: int, gap: float) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "stamps.json")
        worker = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, "--dsn", dsn, "--out", out],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert worker.stdin is not None and worker.stdout is not None
        if worker.stdout.readline().strip() != "READY":
            raise SystemExit(f"the {kind} worker did not start")
        time.sleep(1.0)  # an idle worker
        pushed = asyncio.run(push_spaced(kind, dsn, n, gap))
        time.sleep(0.5)
        worker.stdin.close()
        if worker.wait(timeout=60) != 0:
            raise SystemExit(f"the {kind} worker failed")
        with open(out) as f:
            stamps = json.load(f)
    started = {int(k): v for k, v in stamps["started"].items()}
    fetched: dict[int, tuple[float, float]] = {}
    for t0, t1, seqs in stamps["fetches"]:
        for seq in seqs:
            fetched[seq] = (t0, t1)
    notified = sorted(stamps["notified"])
    stages: dict[str, list[float]] = {name: [] for name in ("total", *STAGES)}
    for seq, (a, b) in sorted(pushed.items())[n // 10 :]:  # skip the warm-up
        if seq not in started or seq not in fetched:
            raise SystemExit(
                f"{kind}: job {seq} never ran ({len(started)} started, {len(fetched)} fetched, {len(notified)} notified)"
            )
        f0, f1 = fetched[seq]
        i = bisect.bisect_left(notified, a)
        note = notified[i] if i < len(notified) else float("nan")
        for name, value in zip(
            ("total", *STAGES),
            (started[seq] - a, b - a, note - b, f0 - note, f1 - f0, started[seq] - f1),
            strict=True,
        ):
            stages[name].append(value * 1000)
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", choices=("ours", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        body = ours_worker if args.worker == "ours" else raw_worker
        asyncio.run(body(args.dsn))
        with open(args.out, "w") as f:
            json.dump(STAMPS, f)
        return
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    dsn = make_conninfo(args.dsn, dbname=DATABASE)
    try:

        async def prepare() -> None:
            async with Chancy(dsn) as app:
                await app.migrate()
                await app.declare(
                    Queue(
                        QUEUE,
                        concurrency=50,
                        executor="chancy.executors.asyncex.AsyncExecutor",
                        eager_polling=True,
                    ),
                    upsert=True,
                )

        asyncio.run(prepare())
        results: dict[str, dict[str, list[float]]] = {}
        for _ in range(args.rounds):
            for kind in ("ours", "raw"):
                for name, values in run_one(kind, dsn, args.jobs, args.gap).items():
                    results.setdefault(kind, {}).setdefault(name, []).extend(values)
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    print(
        f"push→start by stage, {args.jobs:,} jobs {args.gap * 1000:g} ms apart,"
        f" {args.rounds} round(s); p50 in ms:"
    )
    print(f"  {'stage':18s} {'ours':>7s} {'raw':>7s}")
    for name in ("total", *STAGES):
        ours_p50 = statistics.median(results["ours"][name])
        raw_p50 = statistics.median(results["raw"][name])
        print(f"  {name:18s} {ours_p50:7.3f} {raw_p50:7.3f}")


if __name__ == "__main__":
    main()
