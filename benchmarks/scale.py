"""Scale benchmarks for ours: a big jobs table, and several worker processes.

``python -m benchmarks.scale table [--finished N] [--pending N]``
    The jobs table already holds ``--finished`` succeeded rows and
    ``--pending`` runnable jobs, written by ``COPY`` in the setup (then
    ``VACUUM ANALYZE``). Measured, against the same run on an empty table
    (the same pending jobs, no finished rows): the fetch statement's time
    (the worker's own claim statement, run in a transaction that is rolled
    back), the web API's job list and counts (chancy-web's endpoint functions,
    called in-process), the table and index sizes, the burn-down of all the
    pending jobs by one worker process (jobs/s, must stay within 20 % of the
    empty table's), and then push→start latency of an idle worker.

``python -m benchmarks.scale workers [--jobs N] [--workers 1,2,4]``
    1, 2 and 4 worker processes on one queue and on four queues; the
    aggregate burn-down throughput per case, the curve (as a multiple of one
    worker), a flag where it falls, and lock waits sampled from
    ``pg_stat_activity`` during each burn-down.

Both write ``scale-table.{json,md}`` / ``scale-workers.{json,md}`` under
``--out`` (default ``benchmarks/results``). See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.__main__ import (
    ADAPTERS,
    BENCH,
    _git,
    _postgres_version,
    create_db,
    drop_db,
    log,
    server_dsn,
)
from benchmarks.soak import server_settings

sys.path.insert(0, str(ADAPTERS))

import itertools

import chancy_adapter
from _benchlib import (
    Runner,
    Sampler,
    WorkerProcess,
    check_ledger,
    percentiles,
    tree_cpu,
)

FUNC = "chancy_jobs.noop_async"
#: Rows per COPY data message in the setup.
COPY_ROWS = 10_000
#: Targets of issue 18 for the big table.
FETCH_P50_MS = 5.0
API_MS = 100.0
BURNDOWN_WITHIN = 0.20


# ---------------------------------------------------------------------------
# Setup by COPY
# ---------------------------------------------------------------------------


def _ids(start_ms: int, n: int, offset: int) -> list[str]:
    """Time-ordered UUID texts (a v7-like layout: ms timestamp, then a counter)."""
    return [f"{start_ms:012x}7{offset + i:019x}" for i in range(n)]


async def copy_jobs(
    conn: Any, *, finished: int, pending: int, queues: list[str]
) -> float:
    """COPY ``finished`` succeeded rows (created over the last 20 hours, so the
    default Pruner keeps them) and ``pending`` runnable benchmark jobs
    (``seq`` 0..pending-1, spread round-robin over ``queues``); seconds taken."""
    t0 = time.perf_counter()
    now_ms = int(time.time() * 1000)
    columns = (
        "id, queue, func, kwargs, state, attempts, max_attempts, created_at,"
        " started_at, completed_at, scheduled_at"
    )
    sql = f"COPY chancy_jobs ({columns}) FROM STDIN"
    cur = conn.cursor()
    # Finished: oldest first, ids (and created_at) rising with the row number.
    span_ms = 20 * 3600 * 1000
    async with conn.transaction(), cur.copy(sql) as copy:
        for lo in range(0, finished, COPY_ROWS):
            n = min(COPY_ROWS, finished - lo)
            ms = now_ms - span_ms + (span_ms * lo // max(1, finished))
            ts = _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC).isoformat()
            rows = "".join(
                f'{rid}\t{queues[0]}\t{FUNC}\t{{"seq": {lo + i}}}\tsucceeded\t1\t1'
                f"\t{ts}\t{ts}\t{ts}\t{ts}\n"
                for i, rid in enumerate(_ids(ms, n, lo))
            )
            await copy.write(rows.encode())
    async with conn.transaction(), cur.copy(sql) as copy:
        ts = _dt.datetime.fromtimestamp(now_ms / 1000, _dt.UTC).isoformat()
        for lo in range(0, pending, COPY_ROWS):
            n = min(COPY_ROWS, pending - lo)
            rows = "".join(
                f"{rid}\t{queues[(lo + i) % len(queues)]}\t{FUNC}"
                f'\t{{"seq": {lo + i}, "t": 0.0}}\tpending\t0\t1\t{ts}\t\\N\t\\N\t{ts}\n'
                for i, rid in enumerate(_ids(now_ms, n, lo))
            )
            await copy.write(rows.encode())
    await conn.execute("VACUUM ANALYZE chancy_jobs")
    return time.perf_counter() - t0


SIZES_SQL = """
SELECT pg_relation_size('chancy_jobs'), pg_indexes_size('chancy_jobs'),
       pg_total_relation_size('chancy_jobs'),
       (SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'chancy_jobs'),
       (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'chancy_jobs')
"""
INDEX_SIZES_SQL = """
SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes
WHERE relname = 'chancy_jobs' ORDER BY indexrelname
"""


async def table_sizes(conn: Any) -> dict[str, Any]:
    cur = await conn.execute(SIZES_SQL)
    heap, indexes, total, live, dead = await cur.fetchone()
    cur = await conn.execute(INDEX_SIZES_SQL)
    per_index = {name: size / 2**20 for name, size in await cur.fetchall()}
    return {
        "heap_mb": heap / 2**20,
        "indexes_mb": indexes / 2**20,
        "total_mb": total / 2**20,
        "live_tuples": live,
        "dead_tuples": dead,
        "index_mb": per_index,
    }


# ---------------------------------------------------------------------------
# Probes
# ---------------------------------------------------------------------------


async def fetch_probe(chancy: Any, conn: Any, queue: str, n: int) -> dict[str, float]:
    """The worker's claim statement (``chancy.sql.fetch_jobs``, 50 jobs), timed
    ``n`` times, each in a transaction rolled back (nothing is claimed)."""
    params = {"queue": queue, "limit": 50, "worker_id": "scale-probe"}
    times = []
    for _ in range(n):
        async with conn.transaction(force_rollback=True):
            t = time.perf_counter()
            cur = await conn.execute(chancy.sql.fetch_jobs, params, prepare=True)
            await cur.fetchall()
            times.append((time.perf_counter() - t) * 1000)
    return percentiles(times)


async def api_probe(chancy: Any, n: int) -> dict[str, dict[str, float]]:
    """chancy-web's job list and counts endpoints, called in-process (the
    endpoint functions with a real Starlette request; no HTTP)."""
    from starlette.requests import Request

    from chancy.plugins.web.core import CoreApiPlugin

    core = CoreApiPlugin(api=None)
    calls = {
        "jobs?state=pending": (core.get_jobs, b"state=pending"),
        "jobs?state=succeeded": (core.get_jobs, b"state=succeeded"),
        "jobs?state=all": (core.get_jobs, b"state=all"),
        "jobs?queue=bench&state=succeeded": (
            core.get_jobs,
            b"queue=bench&state=succeeded",
        ),
        "jobs/counts": (core.get_counts, b""),
        "jobs/counts?queue=bench": (core.get_counts, b"queue=bench"),
    }
    out = {}
    for name, (endpoint, query) in calls.items():
        times = []
        for _ in range(n):
            request = Request(
                {
                    "type": "http",
                    "method": "GET",
                    "path": "/api/v1/jobs",
                    "query_string": query,
                    "headers": [],
                }
            )
            t = time.perf_counter()
            response = await endpoint(request, chancy=chancy, worker=None)
            times.append((time.perf_counter() - t) * 1000)
            if response.status_code != 200:
                raise RuntimeError(
                    f"{name}: HTTP {response.status_code} {response.body!r}"
                )
        out[name] = percentiles(times)
    return out


class ScaleSystem(chancy_adapter.ChancySystem):
    """Ours with the benchmark queue(s) declared; ``finished_sql`` over all of them."""

    def __init__(self, dsn: str, options: dict[str, Any], queues: list[str]) -> None:
        super().__init__(dsn, options)
        self.queues = queues
        names = ", ".join(f"'{q}'" for q in queues)
        self.finished_sql = (
            f"SELECT count(*) FROM chancy_jobs WHERE queue IN ({names})"
            " AND state = 'succeeded'"
        )
        self.failed_sql = (
            f"SELECT count(*) FROM chancy_jobs WHERE queue IN ({names})"
            " AND state = 'failed'"
        )

    async def setup(self, executor: str) -> None:
        from chancy import Queue

        await super().setup(executor)
        for name in self.queues[1:]:
            await self.chancy.declare(
                Queue(
                    name,
                    concurrency=int(self.options.get("concurrency", 50)),
                    executor=chancy_adapter.EXECUTORS[executor],
                    eager_polling=True,
                ),
                upsert=True,
            )


async def _connect(dsn: str) -> Any:
    import psycopg

    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


async def burn(
    runner: Runner,
    conn: Any,
    n: int,
    *,
    workers: int = 1,
    finished_before: int = 0,
    push: Any = None,
    lock_sampler: bool = False,
) -> dict[str, Any]:
    """Start ``workers`` worker processes, (optionally ``push`` the jobs once
    all serve), wait until ``n`` jobs ran and are saved; jobs/s from the first
    start to the last save, worker CPU, lock waits."""
    system = runner.system
    ledger = runner.ledger()
    procs = [
        WorkerProcess(
            runner.script,
            system.worker_config("async", runner.concurrency),
            ledger.path,
            os.path.join(runner.workdir, f"worker-{i}.log"),
        )
        for i in range(workers)
    ]
    samplers = [Sampler(p.pid) for p in procs]
    for s in samplers:
        s.start()
    locks: list[dict[str, int]] = []
    halt = asyncio.Event()

    async def sample_locks() -> None:
        probe = await _connect(system.dsn)
        try:
            while not halt.is_set():
                cur = await probe.execute(
                    "SELECT wait_event_type || ':' || wait_event, count(*)"
                    " FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND state = 'active'"
                    " AND wait_event_type IN ('Lock', 'LWLock')"
                    " GROUP BY 1"
                )
                locks.append(dict(await cur.fetchall()))
                try:
                    await asyncio.wait_for(halt.wait(), 0.1)
                except TimeoutError:
                    pass
        finally:
            await probe.close()

    try:
        for p in procs:
            p.wait_ready()
        cpu0 = sum(tree_cpu(p.pid) for p in procs)
        sampling = asyncio.create_task(sample_locks()) if lock_sampler else None
        if push is not None:
            await push()
        done = await runner._wait_done(
            ledger,
            n,
            conn,
            finished_before=finished_before,
            timeout=runner._timeout(n) * 2,
            worker=procs[0],
        )
        cpu1 = sum(tree_cpu(p.pid) for p in procs)
        halt.set()
        if sampling is not None:
            await sampling
        entries = ledger.entries()
    finally:
        halt.set()
        for s in samplers:
            s.stop()
        rcs = [p.stop() for p in procs]
        ledger.close()
    t0 = min(s for _, s in entries)
    seconds = done["t_saved"] - t0
    checks = check_ledger(entries, range(n))
    checks["db_finished"] = done["finished"]
    checks["worker_rc"] = rcs
    checks["ok"] = checks["exactly_once"] and done["finished"] == n
    result: dict[str, Any] = {
        "jobs_per_s": n / seconds,
        "seconds": seconds,
        "cpu_ms_per_job": (cpu1 - cpu0) * 1000 / n,
        "peak_rss_mb": sum(s.peak for s in samplers) / 2**20,
        "checks": checks,
    }
    if lock_sampler:
        waits: dict[str, int] = {}
        for sample in locks:
            for name, count in sample.items():
                waits[name] = waits.get(name, 0) + count
        result["lock_samples"] = len(locks)
        result["lock_waits"] = waits
        result["lock_waits_max"] = max((sum(s.values()) for s in locks), default=0)
        result["lock_waits_mean"] = (
            statistics.fmean(sum(s.values()) for s in locks) if locks else 0.0
        )
    return result


# ---------------------------------------------------------------------------
# scale table
# ---------------------------------------------------------------------------


async def table_case(
    server: str, finished: int, pending: int, args: argparse.Namespace, workroot: Path
) -> dict[str, Any]:
    name = f"bench_scale_table_{finished}_{uuid.uuid4().hex[:6]}"
    dsn = create_db(server, name)
    workdir = workroot / f"table-{finished}"
    spec = {"workdir": str(workdir), "concurrency": args.concurrency}
    system = ScaleSystem(dsn, {"concurrency": args.concurrency}, ["bench"])
    runner = Runner(system, spec, str(ADAPTERS / "chancy_adapter.py"))
    out: dict[str, Any] = {"finished_rows": finished, "pending_rows": pending}
    try:
        await system.setup("async")
        conn = await _connect(dsn)
        try:
            log(f"table: COPY {finished:,} finished + {pending:,} pending rows")
            out["setup_seconds"] = await copy_jobs(
                conn, finished=finished, pending=pending, queues=["bench"]
            )
            out["sizes_before"] = await table_sizes(conn)
            out["fetch_ms"] = await fetch_probe(
                system.chancy, conn, "bench", args.probes
            )
            out["api_ms"] = await api_probe(system.chancy, args.probes)
            log(
                f"table {finished:,}: fetch p50 {out['fetch_ms']['p50']:.2f} ms;"
                f" burning down {pending:,} jobs"
            )
            out["burndown"] = await burn(
                runner, conn, pending, finished_before=finished
            )
            # An idle worker afterwards: push->start through the big table.
            ledger = runner.ledger()
            worker = WorkerProcess(
                runner.script,
                system.worker_config("async", runner.concurrency),
                ledger.path,
                str(workdir / "probe-worker.log"),
            )
            try:
                worker.wait_ready()
                await asyncio.sleep(1.0)
                pushed = await runner._push_spaced(
                    args.probes, "async", start=pending, gap=0.02
                )
                await runner._wait_done(
                    ledger,
                    args.probes,
                    conn,
                    finished_before=finished + pending,
                    timeout=60,
                    worker=worker,
                )
                lat = [
                    (s - pushed[q]) * 1000 for q, s in ledger.entries() if q in pushed
                ]
                out["push_start_ms"] = percentiles(lat)
            finally:
                worker.stop()
                ledger.close()
            out["sizes_after"] = await table_sizes(conn)
        finally:
            await conn.close()
    finally:
        await system.close()
        if not args.keep_db:
            drop_db(server, name)
    return out


def table_report(
    cases: list[dict[str, Any]], meta: dict[str, Any]
) -> tuple[str, list[dict[str, Any]]]:
    empty, big = cases
    verdicts = []

    def verdict(target: str, value: float, ok: bool, shown: str) -> None:
        verdicts.append(
            {
                "target": target,
                "value": value,
                "verdict": "PASS" if ok else "MISS",
                "shown": shown,
            }
        )

    p50 = big["fetch_ms"]["p50"]
    verdict(
        f"fetch p50 < {FETCH_P50_MS:g} ms", p50, p50 < FETCH_P50_MS, f"{p50:.2f} ms"
    )
    ratio = big["burndown"]["jobs_per_s"] / empty["burndown"]["jobs_per_s"]
    verdict(
        "burn-down within 20% of the empty table's",
        ratio,
        ratio >= 1 - BURNDOWN_WITHIN,
        f"{ratio:.2f}× ({big['burndown']['jobs_per_s']:,.0f} vs {empty['burndown']['jobs_per_s']:,.0f} jobs/s)",  # noqa: RUF001
    )
    for name, p in big["api_ms"].items():
        verdict(
            f"API {name} < {API_MS:g} ms (p50)",
            p["p50"],
            p["p50"] < API_MS,
            f"{p['p50']:.1f} ms (max {p['max']:.1f})",
        )
    for case in cases:
        ok = case["burndown"]["checks"]["ok"]
        verdict(
            f"exactly once, all saved ({case['finished_rows']:,} finished rows)",
            float(ok),
            ok,
            "ok" if ok else json.dumps(case["burndown"]["checks"]),
        )

    def sizes(s: dict[str, Any]) -> str:
        return f"heap {s['heap_mb']:,.1f} MB, indexes {s['indexes_mb']:,.1f} MB, total {s['total_mb']:,.1f} MB"

    lines = [
        f"# scale_table ({meta['date']}, {meta['git']})",
        "",
        (
            f"Machine: {meta['machine']}; load average at start {meta['loadavg']}. PostgreSQL {meta['postgres']}"
            f" ({', '.join(f'{k}={v}' for k, v in meta['server_settings'].items())})."
        ),
        f"Command: `{meta['command']}`",
        "",
        "| | empty table | big table |",
        "|---|---:|---:|",
        f"| finished rows | {empty['finished_rows']:,} | {big['finished_rows']:,} |",
        f"| pending rows (burned down) | {empty['pending_rows']:,} | {big['pending_rows']:,} |",
        f"| setup by COPY + VACUUM ANALYZE (s) | {empty['setup_seconds']:.1f} | {big['setup_seconds']:.1f} |",
        f"| fetch statement p50 / p99 (ms) | {empty['fetch_ms']['p50']:.2f} / {empty['fetch_ms']['p99']:.2f} | {big['fetch_ms']['p50']:.2f} / {big['fetch_ms']['p99']:.2f} |",
        f"| burn-down (jobs/s) | {empty['burndown']['jobs_per_s']:,.0f} | {big['burndown']['jobs_per_s']:,.0f} |",
        f"| worker CPU per job (ms) | {empty['burndown']['cpu_ms_per_job']:.3f} | {big['burndown']['cpu_ms_per_job']:.3f} |",
        f"| idle push→start p50 / p99 (ms) | {empty['push_start_ms']['p50']:.2f} / {empty['push_start_ms']['p99']:.2f} | {big['push_start_ms']['p50']:.2f} / {big['push_start_ms']['p99']:.2f} |",
    ]
    for name in big["api_ms"]:
        e, b = empty["api_ms"][name], big["api_ms"][name]
        lines.append(
            f"| API {name} p50 / max (ms) | {e['p50']:.1f} / {e['max']:.1f} | {b['p50']:.1f} / {b['max']:.1f} |"
        )
    lines += [
        f"| sizes after setup | {sizes(empty['sizes_before'])} | {sizes(big['sizes_before'])} |",
        f"| sizes after burn-down | {sizes(empty['sizes_after'])} | {sizes(big['sizes_after'])} |",
        "",
        "Index sizes after setup (MB), big table: "
        + ", ".join(
            f"{k} {v:,.1f}" for k, v in big["sizes_before"]["index_mb"].items()
        ),
        "",
        "| target | value | verdict |",
        "|---|---:|---|",
    ]
    lines += [f"| {v['target']} | {v['shown']} | {v['verdict']} |" for v in verdicts]
    return "\n".join(lines) + "\n", verdicts


# ---------------------------------------------------------------------------
# scale workers
# ---------------------------------------------------------------------------


async def workers_case(
    server: str, workers: int, queues: int, args: argparse.Namespace, workroot: Path
) -> dict[str, Any]:
    names = ["bench"] + [f"bench{i}" for i in range(1, queues)]
    dbname = f"bench_scale_w{workers}_q{queues}_{uuid.uuid4().hex[:6]}"
    dsn = create_db(server, dbname)
    spec = {
        "workdir": str(workroot / f"w{workers}-q{queues}"),
        "concurrency": args.concurrency,
    }
    system = ScaleSystem(dsn, {"concurrency": args.concurrency}, names)
    runner = Runner(system, spec, str(ADAPTERS / "chancy_adapter.py"))
    n = args.jobs
    try:
        await system.setup("async")
        conn = await _connect(dsn)
        template = system.jobs.noop_async.job
        jobs = [
            template.with_queue(names[i % queues]).with_kwargs(seq=i, t=0.0)
            for i in range(n)
        ]

        async def push() -> None:
            await system.push_bulk(jobs)

        try:
            result = await burn(
                runner, conn, n, workers=workers, push=push, lock_sampler=True
            )
        finally:
            await conn.close()
    finally:
        await system.close()
        if not args.keep_db:
            drop_db(server, dbname)
    result.update({"workers": workers, "queues": queues, "jobs": n})
    return result


def workers_report(cases: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"# scale_workers ({meta['date']}, {meta['git']})",
        "",
        (
            f"Machine: {meta['machine']}; load average at start {meta['loadavg']}. PostgreSQL {meta['postgres']}"
            f" ({', '.join(f'{k}={v}' for k, v in meta['server_settings'].items())})."
        ),
        f"Command: `{meta['command']}`",
        "",
        "| queues | workers | jobs/s | × 1 worker | CPU ms/job (all workers) | lock waits: mean / max sampled | checks |",  # noqa: RUF001
        "|---:|---:|---:|---:|---:|---|---|",
    ]
    notes = [""]
    for queues in sorted({c["queues"] for c in cases}):
        mine = sorted(
            (c for c in cases if c["queues"] == queues), key=lambda c: c["workers"]
        )
        base = mine[0]["jobs_per_s"]
        best = 0.0
        for c in mine:
            c["vs_one"] = c["jobs_per_s"] / base
            c["falls"] = c["jobs_per_s"] < 0.95 * best
            best = max(best, c["jobs_per_s"])
            waits = ", ".join(
                f"{k} {v}"
                for k, v in sorted(c["lock_waits"].items(), key=lambda kv: -kv[1])[:4]
            )
            lines.append(
                f"| {queues} | {c['workers']} | {c['jobs_per_s']:,.0f} | {c['vs_one']:.2f}"
                + (" **falls**" if c["falls"] else "")
                + f" | {c['cpu_ms_per_job']:.3f} | {c['lock_waits_mean']:.2f} / {c['lock_waits_max']}"
                + (f" ({waits})" if waits else "")
                + f" | {'ok' if c['checks']['ok'] else 'FAILED'} |"
            )
        falls = [c["workers"] for c in mine if c["falls"]]
        flat = next(
            (
                c["workers"]
                for prev, c in itertools.pairwise(mine)
                if c["jobs_per_s"] < prev["jobs_per_s"] * 1.10
            ),
            None,
        )
        notes.append(
            f"- {queues} queue(s): "
            + (
                f"throughput FALLS at {', '.join(map(str, falls))} workers (more than 5% below the best before). "
                if falls
                else "throughput never falls. "
            )
            + (
                f"Flattens (gain < 10%) at {flat} workers."
                if flat
                else "Still rising at the largest count."
            )
        )
    notes.append(
        "- Lock waits: backends of this database waiting on a `Lock` or `LWLock`"
        " in `pg_stat_activity`, sampled every 100 ms during the burn-down."
    )
    return "\n".join(lines + notes) + "\n"


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def _meta(server: str, argv: list[str]) -> dict[str, Any]:
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "git": _git(),
        "postgres": _postgres_version(server),
        "machine": f"{os.cpu_count()} CPU(s), {sys.platform}, Python {sys.version.split()[0]}",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "server_settings": server_settings(server),
        "command": "hatch run bench:scale " + " ".join(argv),
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="what", required=True)
    table = sub.add_parser("table", help="a big jobs table (scale_table)")
    table.add_argument(
        "--finished",
        type=int,
        default=10_000_000,
        help="finished rows (default 10,000,000)",
    )
    table.add_argument(
        "--pending",
        type=int,
        default=1_000_000,
        help="pending jobs (default 1,000,000)",
    )
    table.add_argument(
        "--probes", type=int, default=50, help="samples per probe (default 50)"
    )
    workers = sub.add_parser("workers", help="several worker processes (scale_workers)")
    workers.add_argument(
        "--jobs", type=int, default=40_000, help="jobs per case (default 40,000)"
    )
    workers.add_argument(
        "--workers", default="1,2,4", help="worker process counts (default 1,2,4)"
    )
    workers.add_argument("--queues", default="1,4", help="queue counts (default 1,4)")
    for p in (table, workers):
        p.add_argument("--dsn", help="server DSN (default as for python -m benchmarks)")
        p.add_argument("--out", default=str(BENCH / "results"), help="output directory")
        p.add_argument(
            "--concurrency",
            type=int,
            default=50,
            help="worker concurrency (default 50)",
        )
        p.add_argument("--keep-db", action="store_true", help="keep the databases")
    args = parser.parse_args(argv)
    for name in ("finished", "pending", "probes", "jobs"):
        value = getattr(args, name, None)
        if value is not None and value < (1 if name != "finished" else 0):
            parser.error(
                f"--{name} must be at least {1 if name != 'finished' else 0}, got {value}"
            )

    server = server_dsn(args.dsn)
    out = Path(args.out)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    workroot = out / "runs" / f"scale-{args.what}-{stamp}"
    workroot.mkdir(parents=True, exist_ok=True)
    meta = _meta(server, argv)
    ok = True
    if args.what == "table":
        cases = []
        for finished in (0, args.finished):
            cases.append(
                asyncio.run(table_case(server, finished, args.pending, args, workroot))
            )
        text, verdicts = table_report(cases, meta)
        ok = all(v["verdict"] == "PASS" for v in verdicts)
        (out / "scale-table.json").write_text(
            json.dumps({"meta": meta, "cases": cases, "verdicts": verdicts}, indent=1)
        )
        (out / "scale-table.md").write_text(text)
    else:
        counts = [int(x) for x in args.workers.split(",") if x.strip()]
        queue_counts = [int(x) for x in args.queues.split(",") if x.strip()]
        if not counts or min(counts) < 1 or not queue_counts or min(queue_counts) < 1:
            parser.error("--workers and --queues take positive integers, e.g. 1,2,4")
        cases = []
        for queues in queue_counts:
            for k in counts:
                log(f"workers: {k} process(es), {queues} queue(s), {args.jobs:,} jobs")
                case = asyncio.run(workers_case(server, k, queues, args, workroot))
                log(
                    f"  {case['jobs_per_s']:,.0f} jobs/s; lock waits mean {case['lock_waits_mean']:.2f}"
                )
                cases.append(case)
        text = workers_report(cases, meta)
        ok = all(c["checks"]["ok"] for c in cases)
        (out / "scale-workers.json").write_text(
            json.dumps({"meta": meta, "cases": cases}, indent=1)
        )
        (out / "scale-workers.md").write_text(text)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
