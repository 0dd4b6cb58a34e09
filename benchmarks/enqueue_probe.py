"""Where the enqueue time goes: ours against the raw-SQL yardstick, in one process.

    hatch run python benchmarks/enqueue_probe.py [--dsn DSN] [--pushes 3000]
        [--jobs 20000] [--repeats 3]

Makes (and drops) its own database, ``chancy_enqueue_probe``, on the server
of ``--dsn`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).

**Single push**, interleaved push by push in a random order, so that both
see the same machine at the same moment (the separate-process ``bench``
figures swing ±30% between repeats on a shared machine):

- ``raw``: the yardstick's autocommit ``INSERT … SELECT … FROM (SELECT
  pg_notify(…))`` on a connection it holds (``adapters/raw_adapter.py``);
- ``raw, pooled``: the same statement on a connection checked out of the
  app's pool for each push (autocommit on and off around it);
- ``raw + plan``: the same statement after validating and serialising the
  job as ``push`` does (``Chancy._plan``), result unused;
- ``ours``: ``await chancy.push(job)``.

Each line gives the median latency and the throughput ratio to ``raw``.

**Bulk**, each variant run in turn ``--repeats`` times on an emptied table:

- ``raw COPY, one transaction``: the yardstick (``COPY`` of f-string lines,
  1,000 rows per data message, one ``pg_notify``);
- ``raw COPY, 1,000-row transactions``: the same rows committed 1,000 at a
  time, as ``push_many``'s default ``batch_size`` commits them;
- ``push_many, batch_size=1000`` and ``=5000``;
- ``push_many_ex``: all jobs in one transaction (one COPY);
- ``raw COPY data, pre-built`` and ``ours' COPY data, pre-built``: the
  server's side alone, each side's COPY text made before the clock starts
  (ours' with ``serialise`` and ``copy_binary``, as ``push_many_ex`` makes
  it: binary ``COPY``, where raw's is text) and sent in 64 kB writes, in one
  transaction.

Each bulk line also gives the WAL the variant wrote (``pg_current_wal_insert_lsn``
before and after).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
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

from chancy import Chancy, Job, Queue
from chancy._encoding import COPY_BINARY_HEADER, COPY_BINARY_TRAILER, copy_binary
from chancy._ops import serialise

# The yardstick's own statements (adapters/raw_adapter.py).
sys.path.insert(0, str(Path(__file__).resolve().parent / "adapters"))
from raw_adapter import COPY_SQL, INSERT_NOTIFY_SQL

DATABASE = "chancy_enqueue_probe"
QUEUE = "bench"


def _raw_params(seq: int) -> tuple[Any, ...]:
    return (
        uuid.uuid4(),
        QUEUE,
        "raw.noop",
        f'{{"seq": {seq}, "t": 1.5}}',
        "raw_bench",
        QUEUE,
    )


async def single_push(chancy: Chancy, conn: Any, pushes: int) -> None:
    template = Job(func="bench.noop", queue=QUEUE)
    jobs = [template.with_kwargs(seq=i, t=1.5) for i in range(pushes)]
    pool = await chancy.ensure_open()

    async def raw(i: int) -> None:
        await conn.execute(INSERT_NOTIFY_SQL, _raw_params(i), prepare=True)

    async def raw_pooled(i: int) -> None:
        async with pool.connection() as pooled:
            await pooled.set_autocommit(True)
            await pooled.execute(INSERT_NOTIFY_SQL, _raw_params(i), prepare=True)
            await pooled.set_autocommit(False)

    async def raw_plan(i: int) -> None:
        chancy._plan([jobs[i]])
        await conn.execute(INSERT_NOTIFY_SQL, _raw_params(i), prepare=True)

    async def ours(i: int) -> None:
        await chancy.push(jobs[i])

    variants = {
        "raw": raw,
        "raw, pooled": raw_pooled,
        "raw + plan": raw_plan,
        "ours": ours,
    }
    await ours(0)  # warm: prepared statements, the queue check
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    for i in range(pushes):
        random.shuffle(order)
        for name, push in order:
            t0 = time.perf_counter()
            await push(i)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["raw"])
    print(f"single push, {pushes:,} interleaved rounds:")
    for name, values in times.items():
        p50 = statistics.median(values)
        print(
            f"  {name:28s} p50 {p50 * 1e6:6.0f} µs   throughput ÷ raw {base / p50:.2f}"
        )


async def bulk(chancy: Chancy, conn: Any, n: int, repeats: int) -> None:
    template = Job(func="bench.noop", queue=QUEUE)
    jobs = [template.with_kwargs(seq=i, t=0.0) for i in range(n)]

    def lines(prefix: str, lo: int, hi: int, tail: str) -> bytes:
        head = f"\t{QUEUE}\traw.noop\t"
        return "".join(
            f'{prefix}{i:012x}{head}{{"seq": {i}, "t": 0.0}}{tail}'
            for i in range(lo, hi)
        ).encode()

    async def raw_copy(per_transaction: int) -> None:
        prefix = uuid.uuid4().hex[:20]
        scheduled = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
        tail = f"\t[]\t{{}}\t0\t1\t{scheduled}\n"
        for start in range(0, n, per_transaction):
            stop = min(n, start + per_transaction)
            async with conn.transaction():
                async with conn.cursor().copy(COPY_SQL) as copy:
                    for lo in range(start, stop, 1000):
                        await copy.write(lines(prefix, lo, min(stop, lo + 1000), tail))
                await conn.execute("SELECT pg_notify(%s, %s)", ("raw_bench", QUEUE))

    async def one_transaction() -> None:
        await raw_copy(n)

    async def per_thousand() -> None:
        await raw_copy(1000)

    def many(batch_size: int) -> Any:
        async def run() -> None:
            async for _ in chancy.push_many(jobs, batch_size=batch_size):
                pass

        return run

    async def many_ex() -> None:
        await chancy.push_many_ex(None, jobs)

    def prebuilt(data: bytes, statement: str = COPY_SQL) -> Any:
        async def run() -> None:
            async with conn.transaction():
                async with conn.cursor().copy(statement) as copy:
                    for lo in range(0, len(data), 65536):
                        await copy.write(data[lo : lo + 65536])

        return run

    scheduled = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
    raw_data = lines(uuid.uuid4().hex[:20], 0, n, f"\t[]\t{{}}\t0\t1\t{scheduled}\n")
    ours_data = COPY_BINARY_HEADER + copy_binary(serialise(jobs).plain)
    ours_data += COPY_BINARY_TRAILER

    variants = {
        "raw COPY, one transaction": one_transaction,
        "raw COPY, 1,000-row transactions": per_thousand,
        "push_many, batch_size=1000": many(1000),
        "push_many, batch_size=5000": many(5000),
        "push_many_ex (one transaction)": many_ex,
        "raw COPY data, pre-built": prebuilt(raw_data),
        "ours' COPY data, pre-built": prebuilt(ours_data, chancy.sql.copy_jobs),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    wal: dict[str, list[float]] = {name: [] for name in variants}
    lsn = "SELECT pg_current_wal_insert_lsn()"
    for _ in range(repeats):
        for name, run in variants.items():
            await conn.execute("TRUNCATE chancy_jobs")
            (before,) = await (await conn.execute(lsn)).fetchone()  # type: ignore[misc]
            t0 = time.perf_counter()
            await run()
            rates[name].append(n / (time.perf_counter() - t0))
            cur = await conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s::pg_lsn)",
                (before,),
            )
            (written,) = await cur.fetchone()  # type: ignore[misc]
            wal[name].append(float(written))
    base = statistics.median(rates["raw COPY, one transaction"])
    print(f"bulk, {n:,} jobs, median of {repeats}:")
    for name, values in rates.items():
        rate = statistics.median(values)
        mb = statistics.median(wal[name]) / 1e6
        print(
            f"  {name:34s} {rate:9,.0f} jobs/s   ÷ raw {rate / base:.2f}"
            f"   WAL {mb:5.2f} MB"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--pushes", type=int, default=3000)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    dsn = make_conninfo(args.dsn, dbname=DATABASE)
    try:
        async with Chancy(dsn, no_default_plugins=True) as chancy:
            await chancy.migrate()
            await chancy.declare(Queue(QUEUE))
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
            try:
                await single_push(chancy, conn, args.pushes)
                await bulk(chancy, conn, args.jobs, args.repeats)
            finally:
                await conn.close()
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    asyncio.run(main())
