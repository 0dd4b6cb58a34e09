"""Quick in-process measurements of our hot path, for before/after comparisons.

    python benchmarks/inprocess.py [--dsn DSN] [--repeats 3]

Worker and client share one process and one event loop (so this is not the
peer comparison of ``python -m benchmarks``; use it to compare two versions
of our own code on the same machine). Each measurement uses a fresh database:

- push_many: 20,000 jobs with ``push_many`` (batch 1000 and 5000), jobs/s;
- push: 2,000 sequential ``push`` calls, jobs/s;
- burn-down: 10,000 pre-enqueued no-op jobs, async executor, concurrency 50,
  eager polling, clock stops when every row is ``succeeded``; jobs/s and the
  process's CPU ms per job;
- latency: idle worker, 200 jobs pushed 20 ms apart; ``started_at -
  created_at`` (both server time) p50/p95/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import statistics
import time
import uuid

import psycopg

from chancy import Chancy, Job, Queue, Worker


async def noop() -> None:
    return None


FUNC = f"{__name__}.noop"


def fresh_database(server: str) -> str:
    name = f"chancy_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return psycopg.conninfo.make_conninfo(server, dbname=name)


def drop_database(server: str, dsn: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def with_app(server: str, body) -> dict:
    dsn = fresh_database(server)
    try:
        async with Chancy(dsn, no_default_plugins=True) as chancy:
            await chancy.migrate()
            return await body(chancy)
    finally:
        drop_database(server, dsn)


async def push_many(chancy: Chancy) -> dict:
    out = {}
    jobs = [Job(func=FUNC, queue="b", kwargs={"i": i}) for i in range(20_000)]
    for batch in (1000, 5000):
        async with chancy.pool.connection() as conn:
            await conn.execute(f"TRUNCATE {chancy.sql.jobs}")
        start = time.perf_counter()
        async for _ in chancy.push_many(jobs, batch_size=batch):
            pass
        out[f"push_many_{batch}_per_s"] = len(jobs) / (time.perf_counter() - start)
    start = time.perf_counter()
    for job in jobs[:2000]:
        await chancy.push(job)
    out["push_per_s"] = 2000 / (time.perf_counter() - start)
    return out


async def burn_down(chancy: Chancy, n: int = 10_000) -> dict:
    queue = Queue(
        "b",
        executor=Chancy.Executor.Async,
        concurrency=50,
        polling_interval=1,
        eager_polling=True,
        state="paused",
    )
    await chancy.declare(queue)
    async for _ in chancy.push_many([Job(func=FUNC, queue="b")] * n, batch_size=5000):
        pass
    worker = Worker(chancy, register_signal_handlers=False)
    await worker.start()
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    await chancy.resume_queue("b")
    async with chancy.pool.connection() as conn:
        while True:
            cur = await conn.execute(
                f"SELECT count(*) FROM {chancy.sql.jobs} WHERE state <> 'succeeded'"
            )
            if (await cur.fetchone())[0] == 0:
                break
            await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    await worker.stop()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"burn_down_per_s": n / elapsed, "cpu_ms_per_job": cpu / n * 1000}


async def latency(chancy: Chancy, n: int = 200) -> dict:
    await chancy.declare(
        Queue(
            "l",
            executor=Chancy.Executor.Async,
            concurrency=50,
            polling_interval=5,
            eager_polling=True,
        )
    )
    async with Worker(chancy, register_signal_handlers=False):
        await asyncio.sleep(0.5)
        refs = []
        for _ in range(n):
            refs.append(await chancy.push(Job(func=FUNC, queue="l")))
            await asyncio.sleep(0.02)
        await chancy.wait_for_jobs(refs, interval=0.05, timeout=60)
        jobs = await chancy.get_jobs(refs)
    ms = sorted((j.started_at - j.created_at).total_seconds() * 1000 for j in jobs)
    q = statistics.quantiles(ms, n=100)
    return {"latency_p50_ms": q[49], "latency_p95_ms": q[94], "latency_p99_ms": q[98]}


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", help="server DSN (a role that may CREATE DATABASE)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("chancy").setLevel(logging.WARNING)
    server = args.dsn
    if server is None:
        from chancy._pgserver import get_server_dsn

        server = get_server_dsn()
    results: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for body in (push_many, burn_down, latency):
            for key, value in (await with_app(server, body)).items():
                results.setdefault(key, []).append(value)
    for key, values in results.items():
        print(
            f"{key:24} median {statistics.median(values):10.3f}   runs {[round(v, 3) for v in values]}"
        )


if __name__ == "__main__":
    asyncio.run(main())
