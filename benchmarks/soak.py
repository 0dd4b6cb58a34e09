"""Soak: ours under a steady offered load for a long time, watched for drift.

``python -m benchmarks.soak --minutes 30 --rate 1500 [--report-every 5]``

One worker process (``Chancy(dsn)`` with its default plugins, so the Pruner
runs on its defaults unless ``--prune-*`` says otherwise; queue ``bench``,
``AsyncExecutor``, concurrency 50) and one producer in this process pushing
``--rate`` jobs/s in batches of ``--batch`` through ``push_many`` on a fixed
schedule. Every ``--report-every`` minutes it reports the jobs table's heap
and index sizes, live and dead tuples (``pg_stat_user_tables``), push→start
latency p50/p99 of the jobs started in that interval (the "fetch" latency, as
in the harness's degraded workloads: it covers NOTIFY, the claim statement and
the hand-off), the backlog, and the worker's RSS and CPU per job.

At the end the producer stops, the backlog drains, and the run is checked:
every pushed job ran exactly once (ledger) and is saved as succeeded, no job
failed, the producer never raised, the worker log holds no ``ERROR`` or
traceback. The flatness verdict: after the first ``--warmup-reports``
reports, each metric stays within ±20 % of its value at the first report
after them (or within a small absolute band, for values near zero: see
``FLAT_FLOOR``).

Writes ``soak.json`` and ``soak.md`` under ``--out`` (default
``benchmarks/results``); the exit status is 1 on any error or a non-flat
metric.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import datetime as _dt
import json
import os
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

sys.path.insert(0, str(ADAPTERS))

import chancy_adapter
from _benchlib import WorkerProcess, percentiles, tree_cpu, tree_rss

#: Flat means within ±FLAT_TOLERANCE of the first post-warm-up report, or within
#: this absolute band of it (values near zero would otherwise never be flat).
FLAT_TOLERANCE = 0.20
FLAT_FLOOR: dict[str, float] = {
    "heap_mb": 8.0,
    "indexes_mb": 4.0,
    "dead_tuples": 10_000,
    "fetch_p99_ms": 2.0,
    "rss_mb": 5.0,
}
FLAT_LABELS = {
    "heap_mb": "jobs heap (MB)",
    "indexes_mb": "jobs indexes (MB)",
    "dead_tuples": "dead tuples",
    "fetch_p99_ms": "push→start p99 (ms)",
    "rss_mb": "worker RSS (MB)",
}

#: The throwaway cluster's settings: PostgreSQL's defaults where they matter
#: for a soak (autovacuum on, fsync, synchronous commits), not the test
#: server's (whose CI configuration turns autovacuum off).
PRODUCTION_LIKE = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "autovacuum": "on",
    "shared_buffers": "128MB",
}


def server_settings(dsn: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
            (["autovacuum", "fsync", "synchronous_commit", "shared_buffers"],),
        ).fetchall()
    return dict(rows)


STATS_SQL = """
SELECT pg_relation_size('chancy_jobs'), pg_indexes_size('chancy_jobs'),
       n_live_tup, n_dead_tup, autovacuum_count, vacuum_count,
       (SELECT count(*) FROM chancy_jobs WHERE queue = 'bench'
          AND state IN ('pending', 'retrying')),
       (SELECT count(*) FROM chancy_jobs WHERE queue = 'bench' AND state = 'failed')
FROM pg_stat_user_tables WHERE relname = 'chancy_jobs'
"""


def flat(values: list[float], floor: float) -> tuple[bool, float]:
    """Whether every value stays within ±20 % (or ``floor``) of the first one
    (the first report after warm-up), so steady growth shows; the largest
    relative deviation."""
    if not values:
        return True, 0.0
    ref = values[0]
    worst = max(abs(v - ref) for v in values)
    ok = worst <= max(FLAT_TOLERANCE * abs(ref), floor)
    return ok, (worst / abs(ref)) if ref else 0.0


class LedgerTail:
    """Reads the ledger's new complete lines since the last call."""

    def __init__(self, path: str) -> None:
        open(path, "wb").close()
        self.fh = open(path, "rb")  # noqa: SIM115 - read incrementally until close()
        self.partial = b""

    def read(self) -> list[tuple[int, float]]:
        data = self.partial + self.fh.read()
        lines = data.split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            seq, start = line.split()
            out.append((int(seq), float(start)))
        return out

    def close(self) -> None:
        self.fh.close()


async def soak(args: argparse.Namespace, server: str, workdir: Path) -> dict[str, Any]:
    import psycopg

    name = f"bench_soak_{uuid.uuid4().hex[:8]}"
    dsn = create_db(server, name)
    options: dict[str, Any] = {"concurrency": args.concurrency}
    pruner: dict[str, Any] = {}
    if args.prune_age is not None:
        pruner["age"] = args.prune_age
    if args.prune_interval is not None:
        pruner["poll_interval"] = args.prune_interval
    if args.prune_max is not None:
        pruner["maximum_to_prune"] = args.prune_max
    if pruner:
        options["pruner"] = pruner
    system = chancy_adapter.ChancySystem(dsn, options)
    ledger_path = str(workdir / "ledger.txt")
    tail = LedgerTail(ledger_path)
    errors: list[str] = []
    reports: list[dict[str, Any]] = []
    pushed = array.array("d")
    seen = bytearray()
    duplicates = 0
    started_total = 0
    worker: WorkerProcess | None = None
    conn: Any = None
    try:
        await system.setup("async")
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        worker = WorkerProcess(
            str(ADAPTERS / "chancy_adapter.py"),
            system.worker_config("async", args.concurrency),
            ledger_path,
            str(workdir / "worker.log"),
        )
        worker.wait_ready()
        template = system.jobs.noop_async.job
        stop = asyncio.Event()
        interval = args.batch / args.rate

        async def produce() -> None:
            next_at = time.perf_counter()
            seq = 0
            while not stop.is_set():
                next_at += interval
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if stop.is_set():
                    break
                t = time.time()
                jobs = [
                    template.with_kwargs(seq=s, t=t)
                    for s in range(seq, seq + args.batch)
                ]
                try:
                    await system.push_small_batch(jobs)
                except Exception as exc:
                    errors.append(f"push failed: {type(exc).__name__}: {exc}")
                    if len(errors) > 20:
                        stop.set()
                    continue
                pushed.extend([t] * args.batch)
                seq += args.batch

        interval_lat: list[float] = []

        def take_ledger() -> list[float]:
            """Consume the ledger's new lines; the latencies since the last report."""
            nonlocal duplicates, started_total
            lat = interval_lat
            for seq, start in tail.read():
                if seq >= len(seen):
                    seen.extend(bytes(seq + 1 - len(seen) + 100_000))
                if seen[seq]:
                    duplicates += 1
                seen[seq] = 1
                started_total += 1
                if seq < len(pushed):
                    lat.append((start - pushed[seq]) * 1000)
            return lat

        async def report(index: int, since: float, cpu_before: float) -> float:
            lat = list(take_ledger())
            interval_lat.clear()
            cur = await conn.execute(STATS_SQL)
            heap, idx, live, dead, autovac, vac, backlog, failed = await cur.fetchone()
            cpu = tree_cpu(worker.pid)
            p = percentiles(lat)
            elapsed = time.monotonic() - since
            entry = {
                "report": index,
                "minute": round((time.monotonic() - t_start) / 60, 2),
                "pushed_total": len(pushed),
                "started_in_interval": len(lat),
                "run_per_s": len(lat) / elapsed if elapsed else 0.0,
                "heap_mb": heap / 2**20,
                "indexes_mb": idx / 2**20,
                "live_tuples": live,
                "dead_tuples": dead,
                "autovacuums": autovac + vac,
                "backlog": backlog,
                "failed_jobs": failed,
                "fetch_p50_ms": p.get("p50"),
                "fetch_p99_ms": p.get("p99"),
                "rss_mb": tree_rss(worker.pid) / 2**20,
                "cpu_ms_per_job": (cpu - cpu_before) * 1000 / max(1, len(lat)),
            }
            reports.append(entry)
            log(
                f"report {index} @ {entry['minute']:.1f} min: heap {entry['heap_mb']:.1f} MB,"
                f" indexes {entry['indexes_mb']:.1f} MB, live {live:,}, dead {dead:,},"
                f" backlog {backlog:,}, push→start p50 {entry['fetch_p50_ms'] or 0:.2f}"
                f" p99 {entry['fetch_p99_ms'] or 0:.2f} ms, RSS {entry['rss_mb']:.1f} MB,"
                f" {entry['run_per_s']:,.0f} jobs/s"
            )
            return cpu

        t_start = time.monotonic()
        producer = asyncio.create_task(produce())
        end = t_start + args.minutes * 60
        every = args.report_every * 60
        index = 0
        since, cpu_mark = time.monotonic(), tree_cpu(worker.pid)
        while time.monotonic() < end and not stop.is_set():
            await asyncio.sleep(min(5.0, every, max(0.0, end - time.monotonic())))
            if worker.proc.poll() is not None:
                errors.append(f"worker died (rc={worker.proc.returncode})")
                break
            take_ledger()  # keeps the tail short between reports
            if time.monotonic() - since >= every - 0.5 or time.monotonic() >= end:
                index += 1
                cpu_mark = await report(index, since, cpu_mark)
                since = time.monotonic()
        stop.set()
        await producer
        # Drain: every pushed job ran (ledger) and none is left unfinished.
        total = len(pushed)
        deadline = time.monotonic() + max(120.0, total / 500)
        while True:
            take_ledger()
            cur = await conn.execute(
                "SELECT count(*) FROM chancy_jobs WHERE queue = 'bench'"
                " AND state IN ('pending', 'retrying', 'running')"
            )
            (left,) = await cur.fetchone()
            if started_total >= total and not left:
                break
            if time.monotonic() > deadline:
                errors.append(f"drain timed out: {started_total}/{total} ran")
                break
            await asyncio.sleep(0.2)
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'failed'),"
            " count(*) FILTER (WHERE state IN ('pending', 'retrying', 'running'))"
            " FROM chancy_jobs WHERE queue = 'bench'"
        )
        failed, unfinished = await cur.fetchone()
    finally:
        rc = worker.stop() if worker is not None else None
        tail.close()
        if conn is not None:
            await conn.close()
        await system.close()
        if not args.keep_db:
            drop_db(server, name)

    missing = sum(1 for s in range(len(pushed)) if s >= len(seen) or not seen[s])
    log_text = (workdir / "worker.log").read_text(errors="replace")
    log_errors = [
        line
        for line in log_text.splitlines()
        if "[ERROR]" in line or "[CRITICAL]" in line or line.startswith("Traceback")
    ]
    checks = {
        "pushed": len(pushed),
        "started": started_total,
        "duplicates": duplicates,
        "missing": missing,
        "failed_jobs": failed,
        "unfinished_jobs": unfinished,
        "producer_errors": len(errors),
        "worker_log_errors": len(log_errors),
        "worker_rc": rc,
    }
    checks["ok"] = (
        not duplicates
        and not missing
        and not failed
        and not unfinished
        and not errors
        and not log_errors
    )
    return {
        "reports": reports,
        "checks": checks,
        "errors": errors[:20],
        "worker_log_errors": log_errors[:20],
        "pruner": pruner or "defaults",
    }


def verdicts(result: dict[str, Any], warmup: int) -> list[dict[str, Any]]:
    after = result["reports"][warmup:]
    out = []
    for metric, floor in FLAT_FLOOR.items():
        values = [r[metric] for r in after if isinstance(r.get(metric), (int, float))]
        ok, dev = flat(values, floor)
        out.append(
            {
                "metric": metric,
                "values": values,
                "max_deviation": dev,
                "verdict": "FLAT" if ok else "NOT FLAT",
            }
        )
    return out


def markdown(
    result: dict[str, Any], meta: dict[str, Any], flats: list[dict[str, Any]]
) -> str:
    c = result["checks"]
    lines = [
        f"# soak ({meta['date']}, {meta['git']})",
        "",
        (
            f"Machine: {meta['machine']}; load average at start {meta['loadavg']}. PostgreSQL {meta['postgres']}"
            f" ({', '.join(f'{k}={v}' for k, v in meta['server_settings'].items())})."
        ),
        f"Command: `{meta['command']}`. Pruner: {json.dumps(result['pruner'])}.",
        "",
        "| report | minute | jobs/s run | heap MB | indexes MB | live tuples | dead tuples | autovacuums | backlog | push→start p50 / p99 ms | worker RSS MB | CPU ms/job |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in result["reports"]:
        lines.append(
            f"| {r['report']} | {r['minute']:.1f} | {r['run_per_s']:,.0f} | {r['heap_mb']:,.1f}"
            f" | {r['indexes_mb']:,.1f} | {r['live_tuples']:,} | {r['dead_tuples']:,}"
            f" | {r['autovacuums']} | {r['backlog']:,}"
            f" | {r['fetch_p50_ms'] or 0:.2f} / {r['fetch_p99_ms'] or 0:.2f}"
            f" | {r['rss_mb']:.1f} | {r['cpu_ms_per_job']:.3f} |"
        )
    lines += [
        "",
        f"Flatness after {meta['warmup_reports']} warm-up report(s) (±20 % of the first report after warm-up, or the absolute band):",
        "",
        "| metric | values | max deviation | verdict |",
        "|---|---|---:|---|",
    ]
    for f in flats:
        vals = ", ".join(f"{v:,.1f}" for v in f["values"])
        lines.append(
            f"| {FLAT_LABELS[f['metric']]} (band {FLAT_FLOOR[f['metric']]:g}) | {vals}"
            f" | {f['max_deviation'] * 100:.0f}% | {f['verdict']} |"
        )
    lines += [
        "",
        (
            f"Errors: {'none' if c['ok'] else 'SEE BELOW'} — pushed {c['pushed']:,}, ran {c['started']:,},"
            f" duplicates {c['duplicates']}, missing {c['missing']}, failed {c['failed_jobs']},"
            f" unfinished {c['unfinished_jobs']}, producer errors {c['producer_errors']},"
            f" worker log errors {c['worker_log_errors']}."
        ),
    ]
    for line in result["errors"] + result["worker_log_errors"]:
        lines.append(f"- `{line[:200]}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--minutes", type=float, default=30, help="duration (default 30)"
    )
    parser.add_argument(
        "--rate", type=float, default=1500, help="offered jobs/s (default 1500)"
    )
    parser.add_argument(
        "--report-every",
        type=float,
        default=5,
        help="minutes between reports (default 5)",
    )
    parser.add_argument(
        "--batch", type=int, default=50, help="jobs per push_many call (default 50)"
    )
    parser.add_argument(
        "--warmup-reports",
        type=int,
        default=1,
        help="reports left out of the flatness verdict (default 1)",
    )
    parser.add_argument(
        "--prune-age",
        type=float,
        help="Pruner rule Age() > SECONDS (default: the Pruner's own, a day)",
    )
    parser.add_argument(
        "--prune-interval",
        type=float,
        help="Pruner poll_interval seconds (default: its own)",
    )
    parser.add_argument(
        "--prune-max",
        type=int,
        help="Pruner maximum_to_prune per pass (default: its own)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=50, help="worker concurrency (default 50)"
    )
    parser.add_argument(
        "--server",
        choices=("throwaway", "local"),
        default="throwaway",
        help="throwaway (default): a fresh cluster of this run, autovacuum on and"
        " durable commits (PRODUCTION_LIKE); local: the server python -m benchmarks uses",
    )
    parser.add_argument("--dsn", help="server DSN (overrides --server)")
    parser.add_argument(
        "--out", default=str(BENCH / "results"), help="output directory"
    )
    parser.add_argument("--keep-db", action="store_true", help="keep the database")
    args = parser.parse_args(argv)
    for name in ("minutes", "rate", "report_every"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.batch < 1 or args.warmup_reports < 0:
        parser.error("--batch must be at least 1 and --warmup-reports at least 0")
    if args.report_every > args.minutes:
        parser.error("--report-every must not exceed --minutes")

    cluster = None
    if args.dsn:
        server = args.dsn
    elif args.server == "throwaway":
        from chancy._pgserver import ThrowawayCluster

        cluster = ThrowawayCluster(settings=PRODUCTION_LIKE)
        cluster.start()
        server = cluster.tcp_dsn
        log(f"throwaway cluster on port {cluster.port} ({PRODUCTION_LIKE})")
    else:
        server = server_dsn(None)
    try:
        return _main(args, argv, server)
    finally:
        if cluster is not None:
            cluster.stop()


def _main(args: argparse.Namespace, argv: list[str], server: str) -> int:
    out = Path(args.out)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = out / "runs" / f"soak-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "git": _git(),
        "postgres": _postgres_version(server),
        "machine": f"{os.cpu_count()} CPU(s), {sys.platform}, Python {sys.version.split()[0]}",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "server_settings": server_settings(server),
        "command": "hatch run bench:soak " + " ".join(argv),
        "warmup_reports": args.warmup_reports,
        "rate": args.rate,
        "minutes": args.minutes,
    }
    result = asyncio.run(soak(args, server, workdir))
    flats = verdicts(result, args.warmup_reports)
    text = markdown(result, meta, flats)
    (out / "soak.json").write_text(
        json.dumps({"meta": meta, **result, "flatness": flats}, indent=1)
    )
    (out / "soak.md").write_text(text)
    print(text)
    ok = result["checks"]["ok"] and all(f["verdict"] == "FLAT" for f in flats)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
