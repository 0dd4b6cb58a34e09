"""Cron with real worker processes: a per-second schedule is pushed exactly
once per tick, none missed, with and without a leadership plugin.

Each worker is a process of its own (``_cron_worker.py``) building
``Chancy(dsn, plugins=[Cron(...)], no_default_plugins=True)`` on the test's
database. The pushed jobs go to a queue no worker serves. A trigger, for this
test only, appends the job id to the unique key of every job inserted into
that queue, so a push is never absorbed by the previous tick's pending job:
every push leaves exactly one row, whose ``scheduled_at`` is the instant of
the firing. A tick fired at second *T* therefore has its job in the bucket
``[T, T+1)``; a second fire of the same tick would add a second row to that
bucket, a missed tick would leave it empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from chancy import Chancy, Job
from chancy.plugins.cron import Cron

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "_cron_worker.py"
QUEUE = "cron_ticks"  # no worker serves it
KEY = "tick"
REPORT = re.compile(r"^FIRED (\d+) PASSES (\d+) LEADS (\d+)$")


@dataclass
class Report:
    fired: int
    passes: int
    leads: int


class WorkerProcess:
    """One worker process; stopped with SIGTERM, killed if it does not stop."""

    def __init__(
        self, name: str, proc: asyncio.subprocess.Process, log: IO[bytes], path: Path
    ) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.log_path = path
        self.output: list[str] = []

    @classmethod
    async def start(
        cls, dsn: str, name: str, poll_interval: float, leadership: bool, tmp: Path
    ) -> WorkerProcess:
        path = tmp / f"{name}.log"
        log = path.open("wb")
        args = [str(SCRIPT), dsn, name, str(poll_interval)]
        if leadership:
            args.append("--leadership")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=log
        )
        return cls(name, proc, log, path)

    async def _line(self) -> str | None:
        """The next line of output; ``None`` once the process closed its stdout."""
        assert self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            return None
        line = raw.decode().strip()
        self.output.append(line)
        return line

    async def started(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while (line := await self._line()) != "STARTED":
                if line is None:
                    raise AssertionError(
                        f"{self.name} exited before starting:\n{self.logs()}"
                    )

    async def terminate(self, timeout: float) -> Report:
        """SIGTERM, then wait at most ``timeout`` for a graceful exit."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                while await self._line() is not None:
                    pass
                await self.proc.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.name} did not stop within {timeout}s of SIGTERM:\n{self.logs()}"
            ) from None
        assert self.proc.returncode == 0, (self.proc.returncode, self.logs())
        for line in self.output:
            if match := REPORT.match(line):
                return Report(*map(int, match.groups()))
        raise AssertionError(f"{self.name} printed no report: {self.output}")

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self.log.close()

    def logs(self) -> str:
        self.log.flush()
        return f"stdout: {self.output}\nstderr:\n{self.log_path.read_text()[-4000:]}"


async def sql(app: Chancy, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with app.pool.connection() as conn:
        cursor = await conn.execute(query.replace("{p}", app.prefix), params)
        return await cursor.fetchall() if cursor.description else []


@contextlib.asynccontextmanager
async def one_row_per_push(app: Chancy) -> Any:
    """Give every job pushed to QUEUE a unique key of its own (see the module docs)."""
    await sql(
        app,
        "CREATE FUNCTION {p}test_key_per_push() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN NEW.unique_key := NEW.unique_key || '@' || NEW.id::text;"
        " RETURN NEW; END $$",
    )
    await sql(
        app,
        f"CREATE TRIGGER {{p}}test_key_per_push BEFORE INSERT ON {{p}}jobs"
        f" FOR EACH ROW WHEN (NEW.queue = '{QUEUE}')"
        " EXECUTE FUNCTION {p}test_key_per_push()",
    )
    try:
        yield
    finally:
        await sql(app, "DROP FUNCTION {p}test_key_per_push() CASCADE")


async def db_now(app: Chancy) -> float:
    return float((await sql(app, "SELECT clock_timestamp()"))[0][0].timestamp())


async def run_cluster(
    app: Chancy,
    dsn: str,
    tmp: Path,
    *,
    workers: int,
    leadership: bool,
    seconds: float,
) -> tuple[list[float], int, float, list[Report], list[WorkerProcess]]:
    """Run ``workers`` processes with a per-second schedule for ``seconds``.

    Returns the firing instants of the pushed jobs, the first tick, the end
    of the observed window (both epoch seconds), and each process's report.
    """
    procs: list[WorkerProcess] = []
    try:
        async with one_row_per_push(app):
            for i in range(workers):
                procs.append(
                    await WorkerProcess.start(
                        dsn, f"cron-proc-{i}", 30, leadership, tmp
                    )
                )
            await asyncio.gather(*(p.started(timeout=60) for p in procs))
            if leadership:
                async with asyncio.timeout(30):
                    while not await sql(
                        app, "SELECT 1 FROM {p}leader WHERE expires_at > NOW()"
                    ):
                        await asyncio.sleep(0.05)
            await Cron.schedule(
                app,
                "* * * * * *",
                Job(func="app.tasks.tick", queue=QUEUE, unique_key=KEY),
            )
            first_tick = (await Cron.get_schedules(app))[KEY]["next_run"].timestamp()
            await asyncio.sleep(seconds)
            window_end = await db_now(app)
            reports = await asyncio.gather(*(p.terminate(timeout=20) for p in procs))
            rows = await sql(
                app,
                "SELECT unique_key, scheduled_at FROM {p}jobs WHERE queue = %s",
                QUEUE,
            )
    finally:
        for p in procs:
            await p.kill()
    assert all(key.startswith(f"{KEY}@") for key, _ in rows)
    return (
        sorted(at.timestamp() for _, at in rows),
        int(first_tick),
        window_end,
        list(reports),
        procs,
    )


def check_once_per_tick(
    fired_at: list[float], first_tick: int, window_end: float, seconds: float
) -> None:
    """Exactly one push per tick from the first tick to the last whole second
    before the window closed; never two pushes for one tick anywhere."""
    per_tick = Counter(math.floor(at) for at in fired_at)
    ticks = list(range(first_tick, math.floor(window_end)))  # the last one is whole
    detail = "pushes per tick (seconds after the first): " + str(
        {t - first_tick: per_tick[t] for t in sorted(set(per_tick) | set(ticks))}
    )
    assert len(ticks) >= seconds - 2, (len(ticks), detail)
    assert min(per_tick) >= first_tick, detail  # nothing before the first tick
    assert all(count == 1 for count in per_tick.values()), detail  # never twice
    assert all(per_tick[t] == 1 for t in ticks), detail  # none missed


#: The test's own app only manages schedules (and migrates core and cron).
SCHEDULES_ONLY = {"plugins": [Cron()], "no_default_plugins": True}


@pytest.mark.parametrize("chancy", [SCHEDULES_ONLY], indirect=True)
async def test_three_worker_processes_without_leadership_push_once_per_tick(
    chancy: Chancy, chancy_dsn: str, tmp_path: Path
) -> None:
    seconds = 20
    fired_at, first_tick, window_end, reports, procs = await run_cluster(
        chancy, chancy_dsn, tmp_path, workers=3, leadership=False, seconds=seconds
    )
    check_once_per_tick(fired_at, first_tick, window_end, seconds)
    # Every process ran passes (all three raced for every tick), none led,
    # and the pushes are the firings the processes counted: nothing extra.
    assert all(r.passes > 0 and r.leads == 0 for r in reports), reports
    assert sum(r.fired for r in reports) == len(fired_at), reports
    assert all(p.proc.returncode == 0 for p in procs)


@pytest.mark.parametrize("chancy", [SCHEDULES_ONLY], indirect=True)
async def test_two_worker_processes_with_leadership_push_once_per_tick_on_the_leader(
    chancy: Chancy, chancy_dsn: str, tmp_path: Path
) -> None:
    seconds = 8
    fired_at, first_tick, window_end, reports, _ = await run_cluster(
        chancy, chancy_dsn, tmp_path, workers=2, leadership=True, seconds=seconds
    )
    check_once_per_tick(fired_at, first_tick, window_end, seconds)
    assert sum(r.fired for r in reports) == len(fired_at), reports
    # One worker led throughout and did every pass; the other never fired.
    assert sorted(r.leads for r in reports) == [0, 1], reports
    leader = next(r for r in reports if r.leads)
    follower = next(r for r in reports if not r.leads)
    assert leader.fired == len(fired_at)
    assert (follower.fired, follower.passes) == (0, 0), reports
