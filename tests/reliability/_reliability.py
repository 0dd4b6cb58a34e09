"""The harness of the reliability suite: worker processes, faults, and checks.

Each test module loads this file by path (:func:`load` in the module, see
any ``test_reliability_*.py``); it is not a test module and not a package.

Scaling
=======

Every scenario runs in two sizes. The quick one runs in the normal
``hatch test``; the soak one (more jobs, more faults, longer) when the
environment variable ``CHANCY_RELIABILITY=soak`` is set, which
``hatch run reliability:soak`` does (see ``docs/guarantees.md``).
:func:`scaled` picks the figure for the current size.

Worker processes
================

:class:`Fleet` starts workers as processes of their own
(``_reliability_worker.py``) on the test's database, each with the settings
and plugins of :func:`worker_config`, and kills every one of them when the
test ends, whatever happens (``async with Fleet(...)``). The worker
processes and their executors' children record each run of the suite's jobs
(``_reliability_jobs.py``) in files that :func:`read_runs` reads back.

Figures
=======

:func:`report` prints a scenario's figures (jobs, faults injected,
duration, duplicates, missing...) and, when ``CHANCY_RELIABILITY_REPORT``
names a file, appends them to it as one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg

from chancy import Chancy, Job

HERE = Path(__file__).resolve().parent
WORKER_SCRIPT = HERE / "_reliability_worker.py"
JOBS = "_reliability_jobs"

#: ``soak`` selects the long variant of every scenario.
ENV_SCALE = "CHANCY_RELIABILITY"
#: A file to append each scenario's figures to (one JSON object per line).
ENV_REPORT = "CHANCY_RELIABILITY_REPORT"

SOAK = os.environ.get(ENV_SCALE, "").strip().lower() == "soak"

Q_ASYNC = Chancy.Executor.Async.value
Q_THREADS = Chancy.Executor.Threaded.value
Q_PROCESS = Chancy.Executor.Process.value


def scaled(quick: Any, soak: Any) -> Any:
    """``soak`` when the soak variant runs, else ``quick``."""
    return soak if SOAK else quick


def report(scenario: str, **figures: Any) -> None:
    """Print a scenario's figures, and append them to ``$CHANCY_RELIABILITY_REPORT``."""
    entry = {"scenario": scenario, "variant": "soak" if SOAK else "quick", **figures}
    line = json.dumps(entry, sort_keys=False, default=str)
    print(f"RELIABILITY {line}", flush=True)
    path = os.environ.get(ENV_REPORT)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


# ---------------------------------------------------------------------------
# Runs recorded by the jobs
# ---------------------------------------------------------------------------


@dataclass
class Run:
    """One run of a job, as the job recorded it."""

    job: str
    pid: int
    ppid: int
    start: float
    end: float | None = None

    def in_process(self, pids: Iterable[int]) -> bool:
        """Whether the run was in one of ``pids`` or in a child of one of them."""
        pids = set(pids)
        return self.pid in pids or self.ppid in pids


def read_runs(directory: Path) -> dict[str, list[Run]]:
    """Every run recorded in ``directory``, by job id, in start order."""
    runs: dict[str, list[Run]] = defaultdict(list)
    open_runs: dict[tuple[str, int], Run] = {}
    events: list[tuple[float, str, str, int, int]] = []
    for path in directory.glob("runs-*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 5:
                continue  # a line cut by a kill: not a complete record
            kind, job, pid, ppid, at = parts
            events.append((float(at), kind, job, int(pid), int(ppid)))
    events.sort()
    for at, kind, job, pid, ppid in events:
        if kind == "S":
            run = Run(job, pid, ppid, at)
            runs[job].append(run)
            open_runs[(job, pid)] = run
        elif kind == "E":
            started = open_runs.pop((job, pid), None)
            if started is not None:
                started.end = at
    return dict(runs)


def effects(runs: dict[str, list[Run]]) -> Counter[str]:
    """How many times each job's side effect was done (runs that ended)."""
    return Counter(
        {
            job: sum(1 for r in job_runs if r.end is not None)
            for job, job_runs in runs.items()
        }
    )


def exactly_once(
    job_ids: Iterable[str], runs: dict[str, list[Run]]
) -> tuple[dict[str, int], list[str], list[str]]:
    """Duplicated effects (job -> count), missing effects, effects of unknown jobs."""
    wanted = set(job_ids)
    done = effects(runs)
    duplicates = {job: n for job, n in done.items() if n > 1}
    missing = sorted(job for job in wanted if done.get(job, 0) == 0)
    unknown = sorted(job for job in done if job not in wanted)
    return duplicates, missing, unknown


def overlapping(
    runs: dict[str, list[Run]], died_at: dict[int, float]
) -> list[tuple[str, Run, Run]]:
    """Pairs of runs of one job that were alive at the same time.

    A run that recorded no end lasted until its process (or, for a
    process-executor child, its worker) died, per ``died_at``; a run with
    neither is taken as still going.
    """
    found = []
    for job, job_runs in runs.items():
        spans = []
        for run in job_runs:
            end = run.end
            if end is None:
                end = died_at.get(run.pid, died_at.get(run.ppid, float("inf")))
            spans.append((run.start, end, run))
        spans.sort(key=lambda s: s[0])
        for (_, end_a, a), (start_b, _, b) in itertools.pairwise(spans):
            if start_b < end_a:
                found.append((job, a, b))
    return found


# ---------------------------------------------------------------------------
# Database helpers
# ---------------------------------------------------------------------------


async def query(app: Chancy, text: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run ``text`` (``{p}`` stands for the app's table prefix) on a pooled connection."""
    await app.ensure_open()
    async with app.pool.connection() as conn:
        cursor = await conn.execute(text.replace("{p}", app.prefix), params)
        return await cursor.fetchall() if cursor.description else []


async def states(app: Chancy) -> Counter[str]:
    """Number of jobs in each state."""
    rows = await query(app, "SELECT state, count(*) FROM {p}jobs GROUP BY state")
    return Counter({state: int(n) for state, n in rows})


async def retrying(call: Callable[[], Awaitable[Any]], *, timeout: float = 30) -> Any:
    """``await call()``, again while the database cannot be reached (it restarts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except (psycopg.OperationalError, psycopg.InterfaceError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def wait_until(
    check: Callable[[], Awaitable[Any]],
    *,
    timeout: float,
    interval: float = 0.25,
    message: Callable[[], Awaitable[str]] | str = "the condition was not met",
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``.

    A database that cannot be reached counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = await check()
        except (psycopg.OperationalError, psycopg.InterfaceError, OSError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            text = message if isinstance(message, str) else await message()
            raise AssertionError(f"after {timeout:.0f}s: {text}")
        await asyncio.sleep(interval)


async def wait_finished(
    app: Chancy, total: int, *, timeout: float, fleet: Fleet | None = None
) -> Counter[str]:
    """Wait until ``total`` jobs are finished (succeeded or failed)."""

    async def done() -> Counter[str] | None:
        counts = await states(app)
        return counts if counts["succeeded"] + counts["failed"] >= total else None

    async def why() -> str:
        text = f"jobs by state: {dict(await states(app))} (want {total} finished)"
        return text + ("\n" + fleet.logs() if fleet is not None else "")

    result: Counter[str] = await wait_until(done, timeout=timeout, message=why)
    return result


async def lost_entries(app: Chancy) -> list[tuple[str, str, Any]]:
    """(job id, state, error entry) of every lost run recorded on a job."""
    rows = await query(
        app,
        "SELECT id::text, state, e FROM {p}jobs, jsonb_array_elements(errors) AS e"
        " WHERE e->>'lost' = 'true'",
    )
    return [(job, state, entry) for job, state, entry in rows]


async def declare_queues(app: Chancy, queues: Sequence[Any]) -> None:
    for queue in queues:
        await app.declare(queue, upsert=True)


async def push_all(app: Chancy, jobs: Sequence[Job]) -> list[str]:
    """Push ``jobs`` with ``push_many`` (batches of 1000); their ids."""
    ids: list[str] = []
    async for refs in app.push_many(jobs):
        ids.extend(str(ref) for ref in refs)
    return ids


def job(func: str, queue: str, **kwargs: Any) -> Job:
    """A job of this suite's job module."""
    return Job(func=f"{JOBS}.{func}", queue=queue, kwargs=kwargs)


# ---------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------

#: Settings that detect a dead worker within seconds (the defaults take 90 s).
FAST_RECOVERY: dict[str, Any] = {
    "leadership": {"poll_interval": 0.3, "timeout": 1.5},
    "recovery": {"poll_interval": 0.3, "heartbeat_timeout": 3.0},
    "worker": {
        "heartbeat_poll_interval": 0.3,
        "heartbeat_timeout": 3.0,
        "backoff_initial": 0.1,
        "backoff_max": 1.0,
        "queue_change_poll_interval": 2.0,
        "shutdown_timeout": 10.0,
    },
}


def worker_config(dsn: str, worker_id: str, **overrides: Any) -> dict[str, Any]:
    """The configuration of one worker process (see ``_reliability_worker.py``).

    Starts from :data:`FAST_RECOVERY`; ``worker=`` entries are merged into
    the worker's settings, any other key replaces that part (``None``
    leaves a plugin out).
    """
    config: dict[str, Any] = {
        "dsn": dsn,
        "worker_id": worker_id,
        "leadership": dict(FAST_RECOVERY["leadership"]),
        "recovery": dict(FAST_RECOVERY["recovery"]),
        "worker": dict(FAST_RECOVERY["worker"]),
        "max_lifetime": scaled(240, 3600),
    }
    for key, value in overrides.items():
        if key == "worker":
            config["worker"].update(value)
        else:
            config[key] = value
    return config


class WorkerProcess:
    """A worker process of a :class:`Fleet`."""

    def __init__(
        self, name: str, proc: asyncio.subprocess.Process, out: Path, err: Path
    ) -> None:
        self.name = name
        self.proc = proc
        self.pid = proc.pid
        self.out_path = out
        self.err_path = err
        self.started_at: float | None = None
        #: ``time.time()`` right after SIGKILL was sent (None: not killed).
        self.killed_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.out_path.read_text()
        return ""

    def log(self, tail: int = 6000) -> str:
        with contextlib.suppress(OSError):
            return self.err_path.read_text(errors="replace")[-tail:]
        return ""

    async def wait_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while "STARTED" not in self.output():
            if not self.alive or self.proc.returncode is not None:
                raise AssertionError(
                    f"worker {self.name} exited ({self.proc.returncode}) before"
                    f" starting:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"worker {self.name} did not start within {timeout}s:\n{self.log()}"
                )
            await asyncio.sleep(0.05)
        self.started_at = time.time()

    def send(self, signum: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    async def kill(self) -> float:
        """SIGKILL it; returns the time it was killed at."""
        if self.alive:
            self.send(signal.SIGKILL)
            self.killed_at = time.time()
        await self.proc.wait()
        return self.killed_at or time.time()

    async def wait(self, timeout: float) -> int:
        try:
            async with asyncio.timeout(timeout):
                return await self.proc.wait()
        except TimeoutError:
            raise AssertionError(
                f"worker {self.name} did not exit within {timeout}s:\n{self.log()}"
            ) from None


class Fleet:
    """Worker processes of one test; every one is killed when the test ends.

    ``directory`` receives the runs the jobs record and each worker's output
    (``<name>.out``) and log (``<name>.log``).
    """

    def __init__(self, dsn: str, directory: Path) -> None:
        self.dsn = dsn
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.procs: list[WorkerProcess] = []
        self._files: list[IO[bytes]] = []
        self._count = 0

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(HERE), env.get("PYTHONPATH")) if p
        )
        env["CHANCY_RELIABILITY_DIR"] = str(self.directory)
        env.pop("PYTHONFAULTHANDLER", None)  # segfaulting jobs need no dump
        return env

    async def start(self, name: str | None = None, **overrides: Any) -> WorkerProcess:
        """Start a worker process (see :func:`worker_config`); does not wait."""
        self._count += 1
        name = name or f"w{self._count}"
        config = worker_config(overrides.pop("dsn", self.dsn), name, **overrides)
        out_path = self.directory / f"{name}.out"
        err_path = self.directory / f"{name}.log"
        out = out_path.open("ab")
        err = err_path.open("ab")
        self._files += [out, err]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER_SCRIPT),
            json.dumps(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=self.env(),
        )
        worker = WorkerProcess(name, proc, out_path, err_path)
        self.procs.append(worker)
        return worker

    async def start_many(
        self, count: int, *, timeout: float = 60, **overrides: Any
    ) -> list[WorkerProcess]:
        """Start ``count`` workers and wait until every one serves."""
        started = [await self.start(**overrides) for _ in range(count)]
        await asyncio.gather(*(w.wait_started(timeout) for w in started))
        return started

    @property
    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.procs if w.alive]

    def by_name(self, name: str) -> WorkerProcess:
        return next(w for w in self.procs if w.name == name)

    @property
    def killed(self) -> dict[int, float]:
        """pid -> time of the SIGKILL, for every killed worker."""
        return {w.pid: w.killed_at for w in self.procs if w.killed_at is not None}

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {w.name} (pid {w.pid}, exit {w.proc.returncode}) ---\n{w.log(tail)}"
            for w in self.procs
        )

    def grep(self, text: str) -> list[str]:
        """Lines of every worker's log that contain ``text``."""
        return [
            line
            for w in self.procs
            for line in w.log(tail=10**9).splitlines()
            if text in line
        ]

    async def close(self) -> None:
        for worker in self.procs:
            if worker.alive:
                worker.send(signal.SIGCONT)  # a stopped process cannot die otherwise
                worker.send(signal.SIGKILL)
        for worker in self.procs:
            with contextlib.suppress(ProcessLookupError):
                await worker.proc.wait()
        for f in self._files:
            f.close()
        self._files.clear()


async def leader_name(app: Chancy) -> str | None:
    """The worker id holding an unexpired leadership lease, if any."""
    rows = await query(app, "SELECT worker_id FROM {p}leader WHERE expires_at > NOW()")
    return str(rows[0][0]) if rows else None


@dataclass
class Timer:
    """Wall-clock duration of a scenario."""

    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return round(time.monotonic() - self.started, 1)
