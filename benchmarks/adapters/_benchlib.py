"""Shared machinery of the benchmark adapters.

Every adapter (one per system) is a script run with *that system's*
interpreter, so this module may only use the standard library and psycopg 3
(installed in every peer virtualenv). An adapter implements a small
:class:`System` interface; the workloads below drive it identically for every
system, so the systems differ only in their own code.

Protocol: ``python <adapter>.py run '<json spec>'`` runs one workload against
one fresh database and prints one line ``BENCH-RESULT {json}``;
``python <adapter>.py worker '<json>'`` is the worker process it spawns. The
worker prints ``READY`` once it serves, and stops gracefully when a line
``stop`` (or EOF) arrives on its stdin.

Exactly-once is checked through a *ledger*: every benchmark job appends
``"<seq> <start wall time>\\n"`` to the file named by ``BENCH_LEDGER`` (one
``write`` on an ``O_APPEND`` descriptor, atomic for such short lines). The
harness checks that the ledger holds every sequence number exactly once and
that the database shows every job finished.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

LEDGER_ENV = "BENCH_LEDGER"

# ---------------------------------------------------------------------------
# The job body, shared by every system (imported by each system's job module)
# ---------------------------------------------------------------------------

_ledger_fd: int | None = None
_ledger_pid: int | None = None
_ledger_lock = threading.Lock()


def record(seq: int) -> None:
    """What every benchmark job does: append its number and start time to the ledger."""
    global _ledger_fd, _ledger_pid
    now = time.time()
    pid = os.getpid()
    if _ledger_pid != pid:
        with _ledger_lock:
            if _ledger_pid != pid:
                path = os.environ.get(LEDGER_ENV)
                _ledger_fd = (
                    os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                    if path
                    else -1
                )
                _ledger_pid = pid
    if _ledger_fd is not None and _ledger_fd >= 0:
        os.write(_ledger_fd, b"%d %.6f\n" % (seq, now))


# ---------------------------------------------------------------------------
# Process-tree accounting through /proc (Linux)
# ---------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE")
_HZ = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode()
    except OSError:
        return None
    # The command name may hold spaces: split after its closing parenthesis.
    return data[data.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids.extend(int(x) for x in fh.read().split())
        except OSError:
            pass
    return kids


def tree_pids(root: int) -> list[int]:
    seen, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(_children(pid))
    return seen


def tree_cpu(root: int) -> float:
    """CPU seconds (user+system) of the live tree plus everything it has reaped."""
    total = 0
    for pid in tree_pids(root):
        fields = _stat(pid)
        if fields:
            # utime, stime, cutime, cstime are fields 14-17 (1-based, so 11-14 here)
            total += sum(int(x) for x in fields[11:15])
    return total / _HZ


def tree_rss(root: int) -> int:
    """Resident bytes of the tree (sum of each process's RSS)."""
    total = 0
    for pid in tree_pids(root):
        fields = _stat(pid)
        if fields:
            total += int(fields[21]) * _PAGE
    return total


class Sampler(threading.Thread):
    """Samples the tree's RSS every ``interval`` seconds; records (progress, rss)."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.peak = 0
        self.samples: list[tuple[int, int]] = []
        self.progress = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            rss = tree_rss(self.root)
            self.peak = max(self.peak, rss)
            self.samples.append((self.progress, rss))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def rss_at(self, progress: int) -> int | None:
        for done, rss in self.samples:
            if done >= progress:
                return rss
        return None


# ---------------------------------------------------------------------------
# Ledger
# ---------------------------------------------------------------------------


class Ledger:
    def __init__(self, path: str) -> None:
        self.path = path
        open(path, "wb").close()
        self._fh = open(path, "rb")  # noqa: SIM115 - read incrementally until close()
        self._partial = b""
        self.lines = 0

    def poll(self) -> int:
        """Count complete lines written so far (incremental, cheap)."""
        chunk = self._fh.read()
        if chunk:
            self.lines += chunk.count(b"\n")
        return self.lines

    def entries(self) -> list[tuple[int, float]]:
        out = []
        with open(self.path, "rb") as fh:
            for line in fh:
                if line.endswith(b"\n"):
                    seq, start = line.split()
                    out.append((int(seq), float(start)))
        return out

    def close(self) -> None:
        self._fh.close()


def check_ledger(
    entries: list[tuple[int, float]], expected: set[int] | range
) -> dict[str, Any]:
    seqs = [s for s, _ in entries]
    distinct = set(seqs)
    wanted = set(expected)
    return {
        "ran": len(seqs),
        "duplicates": len(seqs) - len(distinct),
        "missing": len(wanted - distinct),
        "unexpected": len(distinct - wanted),
        "exactly_once": len(seqs) == len(distinct) and distinct == wanted,
    }


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)

    def pct(p: float) -> float:
        k = (len(values) - 1) * p
        lo = int(k)
        hi = min(lo + 1, len(values) - 1)
        return values[lo] + (values[hi] - values[lo]) * (k - lo)

    return {
        "p50": pct(0.5),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "mean": statistics.fmean(values),
        "max": values[-1],
    }


# ---------------------------------------------------------------------------
# The worker subprocess
# ---------------------------------------------------------------------------


class WorkerProcess:
    """The system's worker, run by the same adapter script in its own process."""

    def __init__(
        self, script: str, config: dict[str, Any], ledger: str, log_path: str
    ) -> None:
        env = dict(os.environ)
        env[LEDGER_ENV] = ledger
        self.log = open(log_path, "ab")  # noqa: SIM115 - the child's stderr until stop()
        self.proc = subprocess.Popen(
            [sys.executable, script, "worker", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
        )
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(
                    f"worker exited before READY (rc={self.proc.wait()}); see {self.log.name}"
                )
            if line.strip() == b"READY":
                return
        raise TimeoutError("worker did not become ready")

    def stop(self, timeout: float = 60) -> int:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"stop\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9
        finally:
            self.log.close()


def stop_event_from_stdin(loop: asyncio.AbstractEventLoop) -> asyncio.Event:
    """An event set when the harness writes ``stop`` (or closes stdin).

    A dedicated thread reads stdin, so no executor thread of the system under
    test is taken.
    """
    event = asyncio.Event()

    def reader() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        loop.call_soon_threadsafe(event.set)

    threading.Thread(target=reader, daemon=True, name="bench-stdin").start()
    return event


def ready() -> None:
    """Tell the harness the worker serves; also arm the SIGUSR1 task dump."""
    try:
        import signal

        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    except (RuntimeError, NotImplementedError, AttributeError):
        pass
    sys.stdout.write("READY\n")
    sys.stdout.flush()


def dump_tasks() -> None:
    """Print every asyncio task's stack to stderr (the worker log): the harness
    sends SIGUSR1 when a run times out, so a stalled worker explains itself."""
    tasks = asyncio.all_tasks()
    sys.stderr.write(
        f"\n===== bench: {len(tasks)} asyncio task(s) at {time.strftime('%H:%M:%S')} =====\n"
    )
    for task in sorted(tasks, key=lambda t: t.get_name()):
        sys.stderr.write(f"--- {task!r}\n")
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# The system interface
# ---------------------------------------------------------------------------


class System:
    """What an adapter implements. Jobs are described as (seq, t) pairs: ``t``
    is the wall time just before the push (0 when not measured)."""

    name = "?"
    #: executor name -> None if supported, else why not
    executors: dict[str, str | None] = {}

    def __init__(self, dsn: str, options: dict[str, Any]) -> None:
        self.dsn = dsn
        self.options = options

    async def setup(self, executor: str) -> None: ...
    async def close(self) -> None: ...
    def make_jobs(self, items: list[tuple[int, float]], executor: str) -> Any: ...
    async def push_bulk(self, jobs: Any) -> None: ...
    async def push_one(self, job: Any) -> None: ...
    async def push_small_batch(self, jobs: Any) -> None:
        await self.push_bulk(jobs)

    async def push_bulk_tx(self, jobs: Any) -> None:
        """All ``jobs`` in one transaction (what the raw ``COPY`` does); a
        system whose bulk API already commits once needs nothing else."""
        await self.push_bulk(jobs)

    #: SQL: count finished (succeeded) benchmark jobs
    finished_sql = ""
    #: SQL: count failed benchmark jobs (checked only when progress stalls)
    failed_sql = ""
    #: SQL: (rows, distinct seq) of enqueued benchmark jobs
    rows_sql = ""
    #: SQL run after the prefill, tables to VACUUM ANALYZE
    vacuum_tables: tuple[str, ...] = ()

    async def prefill_finished(self, conn: Any, n: int) -> None:
        raise NotImplementedError

    def worker_config(self, executor: str, concurrency: int) -> dict[str, Any]:
        return {
            "dsn": self.dsn,
            "executor": executor,
            "concurrency": concurrency,
            "options": self.options,
        }


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------


async def _scalar(conn: Any, sql: str) -> Any:
    cur = await conn.execute(sql)
    row = await cur.fetchone()
    return row


class Runner:
    def __init__(self, system: System, spec: dict[str, Any], script: str) -> None:
        self.system = system
        self.spec = spec
        self.script = script
        self.workdir = spec["workdir"]
        os.makedirs(self.workdir, exist_ok=True)
        self.concurrency = int(spec.get("concurrency", 50))
        self._ledgers = 0

    def ledger(self) -> Ledger:
        self._ledgers += 1
        return Ledger(os.path.join(self.workdir, f"ledger-{self._ledgers}.txt"))

    async def connect(self) -> Any:
        import psycopg

        return await psycopg.AsyncConnection.connect(self.system.dsn, autocommit=True)

    # -- helpers ------------------------------------------------------------

    async def _enqueue_all(self, n: int, executor: str, start: int = 0) -> None:
        chunk = 20000
        for lo in range(start, start + n, chunk):
            items = [(i, 0.0) for i in range(lo, min(lo + chunk, start + n))]
            await self.system.push_bulk(self.system.make_jobs(items, executor))

    async def _wait_done(
        self,
        ledger: Ledger,
        n: int,
        conn: Any,
        *,
        finished_before: int = 0,
        timeout: float,
        sampler: Sampler | None = None,
        worker: WorkerProcess | None = None,
    ) -> dict[str, Any]:
        """Wait for the ledger to hold n lines, then for the database to show
        them finished. Returns wall times and CPU snapshots."""
        deadline = time.monotonic() + timeout
        cpu0 = None
        seen, seen_at = -1, time.monotonic()
        while ledger.poll() < n:
            if ledger.lines != seen:
                seen, seen_at = ledger.lines, time.monotonic()
            elif time.monotonic() - seen_at > 3 and self.system.failed_sql:
                # No progress: jobs that fail never reach the ledger; say so now.
                (failed,) = await _scalar(conn, self.system.failed_sql)
                if failed:
                    self._dump(worker)
                    raise RuntimeError(
                        f"{failed} benchmark job(s) failed (see the worker log); {ledger.lines}/{n} ran"
                    )
                seen_at = time.monotonic()
            if cpu0 is None and ledger.lines and worker is not None:
                cpu0 = tree_cpu(worker.pid)
            if sampler is not None:
                sampler.progress = ledger.lines
            if worker is not None and worker.proc.poll() is not None:
                raise RuntimeError(
                    f"worker died (rc={worker.proc.returncode}); see {worker.log.name}"
                )
            if time.monotonic() > deadline:
                self._dump(worker)
                raise TimeoutError(
                    f"only {ledger.lines}/{n} jobs ran within {timeout:.0f}s"
                )
            await asyncio.sleep(0.005)
        if sampler is not None:
            sampler.progress = ledger.lines
        t_ran = time.time()
        while True:
            (done,) = await _scalar(conn, self.system.finished_sql)
            if done - finished_before >= n:
                break
            if time.monotonic() > deadline:
                self._dump(worker)
                raise TimeoutError(
                    f"only {done - finished_before}/{n} jobs saved as finished within {timeout:.0f}s"
                )
            await asyncio.sleep(0.005)
        t_saved = time.time()
        cpu1 = tree_cpu(worker.pid) if worker is not None else None
        return {
            "t_ran": t_ran,
            "t_saved": t_saved,
            "cpu0": cpu0,
            "cpu1": cpu1,
            "finished": done - finished_before,
        }

    @staticmethod
    def _dump(worker: WorkerProcess | None) -> None:
        if worker is not None and worker.proc.poll() is None:
            import signal

            os.kill(worker.pid, signal.SIGUSR1)
            time.sleep(0.5)

    def _timeout(self, n: int) -> float:
        return max(60.0, n / 40.0)

    # -- workloads --------------------------------------------------------------

    async def enqueue(
        self, n: int, single: bool, one_transaction: bool = False
    ) -> dict[str, Any]:
        system = self.system
        await system.setup("async")
        jobs = system.make_jobs([(i, 0.0) for i in range(n)], "async")
        t0 = time.perf_counter()
        if single:
            for job in jobs:
                await system.push_one(job)
        elif one_transaction:
            await system.push_bulk_tx(jobs)
        else:
            await system.push_bulk(jobs)
        elapsed = time.perf_counter() - t0
        conn = await self.connect()
        rows, distinct = await _scalar(conn, system.rows_sql)
        await conn.close()
        ok = rows == n and distinct == n
        return {
            "metrics": {"jobs_per_s": n / elapsed, "seconds": elapsed},
            "checks": {"rows": rows, "distinct": distinct, "ok": ok},
        }

    async def burndown(
        self,
        n: int,
        executor: str,
        *,
        prefill: int = 0,
        longtx: bool = False,
        fetch_probe: int = 0,
        memory_marks: bool = False,
    ) -> dict[str, Any]:
        system = self.system
        await system.setup(executor)
        conn = await self.connect()
        metrics: dict[str, Any] = {}
        if prefill:
            t = time.perf_counter()
            await system.prefill_finished(conn, prefill)
            for table in system.vacuum_tables:
                await conn.execute(f"VACUUM ANALYZE {table}")
            metrics["prefill_seconds"] = time.perf_counter() - t
        holder = None
        if longtx:
            import psycopg

            holder = await psycopg.AsyncConnection.connect(system.dsn)
            await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            await holder.execute("SELECT txid_current()")  # holds the xmin horizon back
        await self._enqueue_all(n, executor)
        ledger = self.ledger()
        worker = WorkerProcess(
            self.script,
            system.worker_config(executor, self.concurrency),
            ledger.path,
            os.path.join(self.workdir, "worker.log"),
        )
        sampler = Sampler(worker.pid)
        sampler.start()
        checks: dict[str, Any] = {}
        try:
            done = await self._wait_done(
                ledger,
                n,
                conn,
                timeout=self._timeout(n),
                sampler=sampler,
                worker=worker,
            )
            final_rss = tree_rss(worker.pid)
            sampler.samples.append((n, final_rss))
            sampler.peak = max(sampler.peak, final_rss)
            entries = ledger.entries()
            t0 = min(s for _, s in entries)
            seconds = done["t_saved"] - t0
            metrics.update(
                {
                    "jobs_per_s": n / seconds,
                    "seconds": seconds,
                    "save_lag_ms": (done["t_saved"] - max(s for _, s in entries))
                    * 1000,
                    "cpu_ms_per_job": ((done["cpu1"] - done["cpu0"]) * 1000 / n)
                    if done["cpu0"] is not None
                    else None,
                }
            )
            checks.update(check_ledger(entries, range(n)))
            checks["db_finished"] = done["finished"]
            if fetch_probe:
                # An idle worker after the burn-down: push one at a time, push->start.
                await asyncio.sleep(0.5)
                probe = await self._push_spaced(
                    fetch_probe, executor, start=n, gap=0.02
                )
                done2 = await self._wait_done(
                    ledger, n + fetch_probe, conn, timeout=60, worker=worker
                )
                ledger2_entries = ledger.entries()
                lat = [(s - probe[q]) * 1000 for q, s in ledger2_entries if q in probe]
                metrics["fetch_p50_ms"] = percentiles(lat).get("p50")
                metrics["fetch_p95_ms"] = percentiles(lat).get("p95")
                probe_check = check_ledger(ledger2_entries, range(n + fetch_probe))
                checks["exactly_once"] = (
                    checks["exactly_once"] and probe_check["exactly_once"]
                )
                checks["db_finished"] = done2["finished"]
        finally:
            sampler.stop()
            rc = worker.stop()
            if holder is not None:
                await holder.rollback()
                await holder.close()
            ledger.close()
        metrics["peak_rss_mb"] = sampler.peak / 2**20
        if memory_marks:
            early = sampler.rss_at(n // 10)
            late = sampler.rss_at(n)
            if early and late:
                metrics["rss_at_10pct_mb"] = early / 2**20
                metrics["rss_at_end_mb"] = late / 2**20
                metrics["rss_growth_mb"] = (late - early) / 2**20
        checks["worker_rc"] = rc
        expected = n + fetch_probe
        checks["ok"] = (
            bool(checks.get("exactly_once")) and checks.get("db_finished") == expected
        )
        await conn.close()
        return {"metrics": metrics, "checks": checks}

    async def _push_spaced(
        self, n: int, executor: str, *, start: int, gap: float
    ) -> dict[int, float]:
        pushed: dict[int, float] = {}
        next_at = time.perf_counter()
        for seq in range(start, start + n):
            now = time.perf_counter()
            if next_at > now:
                await asyncio.sleep(next_at - now)
            next_at += gap
            t = time.time()
            job = self.system.make_jobs([(seq, t)], executor)[0]
            await self.system.push_one(job)
            pushed[seq] = t
        return pushed

    async def latency(self, n: int, gap: float) -> dict[str, Any]:
        system = self.system
        await system.setup("async")
        conn = await self.connect()
        ledger = self.ledger()
        worker = WorkerProcess(
            self.script,
            system.worker_config("async", self.concurrency),
            ledger.path,
            os.path.join(self.workdir, "worker.log"),
        )
        try:
            worker.wait_ready()
            await asyncio.sleep(1.0)  # an idle worker
            pushed = await self._push_spaced(n, "async", start=0, gap=gap)
            done = await self._wait_done(ledger, n, conn, timeout=60, worker=worker)
            entries = ledger.entries()
        finally:
            rc = worker.stop()
            ledger.close()
        lat = [(s - pushed[q]) * 1000 for q, s in entries if q in pushed]
        p = percentiles(lat)
        checks = check_ledger(entries, range(n))
        checks["db_finished"] = done["finished"]
        checks["worker_rc"] = rc
        checks["ok"] = checks["exactly_once"] and done["finished"] == n
        await conn.close()
        return {
            "metrics": {
                "p50_ms": p["p50"],
                "p95_ms": p["p95"],
                "p99_ms": p["p99"],
                "max_ms": p["max"],
            },
            "checks": checks,
        }

    async def steady(
        self, duration: float, producers: int, batch: int, rate: float | None = None
    ) -> dict[str, Any]:
        system = self.system
        await system.setup("async")
        conn = await self.connect()
        ledger = self.ledger()
        worker = WorkerProcess(
            self.script,
            system.worker_config("async", self.concurrency),
            ledger.path,
            os.path.join(self.workdir, "worker.log"),
        )
        pushed: dict[int, float] = {}
        counter = iter(range(10**9))
        stop = asyncio.Event()

        # rate: offered load in jobs/s over all producers (None: as fast as they can push)
        interval = (batch * producers / rate) if rate else 0.0

        async def produce() -> None:
            next_at = time.perf_counter()
            while not stop.is_set():
                if interval:
                    next_at += interval
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if stop.is_set():
                        break
                t = time.time()
                seqs = [next(counter) for _ in range(batch)]
                await system.push_small_batch(
                    system.make_jobs([(s, t) for s in seqs], "async")
                )
                for s in seqs:
                    pushed[s] = t

        try:
            worker.wait_ready()
            await asyncio.sleep(0.5)
            cpu0 = tree_cpu(worker.pid)
            t_start = time.time()
            tasks = [asyncio.create_task(produce()) for _ in range(producers)]
            await asyncio.sleep(duration)
            stop.set()
            await asyncio.gather(*tasks)
            t_end = time.time()
            cpu1 = tree_cpu(worker.pid)
            n = len(pushed)
            done = await self._wait_done(
                ledger, n, conn, timeout=self._timeout(n), worker=worker
            )
            entries = ledger.entries()
        finally:
            rc = worker.stop()
            ledger.close()
        in_window = [s for _, s in entries if t_start <= s <= t_end]
        lat = [
            (s - pushed[q]) * 1000
            for q, s in entries
            if q in pushed and pushed[q] <= t_end
        ]
        p = percentiles(lat)
        checks = check_ledger(entries, set(pushed))
        checks["db_finished"] = done["finished"]
        checks["worker_rc"] = rc
        checks["ok"] = checks["exactly_once"] and done["finished"] == n
        window = t_end - t_start
        await conn.close()
        return {
            "metrics": {
                "jobs_per_s": len(in_window) / window,
                "pushed_per_s": n / window,
                "backlog_at_end": n - len(in_window),
                "latency_p50_ms": p.get("p50"),
                "latency_p95_ms": p.get("p95"),
                "cpu_ms_per_job": (cpu1 - cpu0) * 1000 / max(1, len(in_window)),
            },
            "checks": checks,
        }


def main(system_cls: type[System], worker_main: Any) -> None:
    role = sys.argv[1]
    spec = json.loads(sys.argv[2])
    script = os.path.abspath(sys.argv[0])
    if role == "worker":
        asyncio.run(worker_main(spec))
        return
    options = dict(spec.get("options", {}))
    options.setdefault("concurrency", spec.get("concurrency", 50))
    system = system_cls(spec["dsn"], options)
    runner = Runner(system, spec, script)
    workload = spec["workload"]
    size = spec["size"]
    result: dict[str, Any] = {
        "system": spec.get("label", system.name),
        "workload": workload,
    }

    async def go() -> dict[str, Any]:
        try:
            if workload == "enqueue_bulk":
                return await runner.enqueue(size["n"], single=False)
            if workload == "enqueue_bulk_tx":
                return await runner.enqueue(
                    size["n"], single=False, one_transaction=True
                )
            if workload == "enqueue_single":
                return await runner.enqueue(size["n"], single=True)
            if workload.startswith("burndown_"):
                executor = workload.split("_", 1)[1]
                why = system.executors.get(executor, "not supported")
                if why:
                    return {"skipped": why}
                return await runner.burndown(size["n"], executor)
            if workload == "memory":
                return await runner.burndown(size["n"], "async", memory_marks=True)
            if workload == "latency":
                return await runner.latency(size["n"], size.get("gap", 0.02))
            if workload == "steady":
                return await runner.steady(
                    size["seconds"],
                    size.get("producers", 4),
                    size.get("batch", 10),
                    size.get("rate"),
                )
            if workload == "degraded_finished":
                return await runner.burndown(
                    size["n"],
                    "async",
                    prefill=size["prefill"],
                    fetch_probe=size["probe"],
                )
            if workload == "degraded_longtx":
                return await runner.burndown(
                    size["n"], "async", longtx=True, fetch_probe=size["probe"]
                )
            raise ValueError(f"unknown workload {workload!r}")
        finally:
            await system.close()

    try:
        result.update(asyncio.run(go()))
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    sys.stdout.write("BENCH-RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
