"""The leader is killed again and again while it fires cron ticks and
advances workflows (chancy-cron and chancy-workflow with chancy-leadership).

Four worker processes run Leadership, Recovery, Cron and the WorkflowPlugin.
A per-second schedule pushes into a queue nobody serves; a trigger of the
test's own gives every push a row of its own (see ``one_row_per_push``), so
two pushes for one tick would show as two rows in one second. Workflows
(fan-out and fan-in) are pushed in waves; their steps run on the workers.
Every few seconds the current leader is SIGKILLed and a new worker started.

No tick is pushed twice (ticks missed while no one led collapse into one
push, as documented) and ticks resume after every failover; every workflow
completes, and each of its steps got exactly one job.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import math
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from chancy import Chancy, Job, Queue
from chancy.plugins.cron import Cron
from chancy.plugins.workflow import Workflow, WorkflowPlugin


def _harness() -> ModuleType:
    """``_reliability.py`` next to this file (tests do not import each other)."""
    module = sys.modules.get("_reliability")
    if module is None:
        spec = importlib.util.spec_from_file_location(
            "_reliability", Path(__file__).with_name("_reliability.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["_reliability"] = module
        spec.loader.exec_module(module)
    return module


rel = _harness()
pytestmark = pytest.mark.reliability

WORKERS = 4
KILLS = rel.scaled(3, 30)
KILL_EVERY = rel.scaled(3.0, 4.0)
#: Workflows pushed per wave (one wave per kill, and one before).
WAVE = rel.scaled(4, 8)
TICKS = "rel_cron_ticks"  # no worker serves it
KEY = "rel-tick"
QUEUES = [
    Queue(
        "wf_steps", executor=Chancy.Executor.Async, concurrency=10, polling_interval=1
    ),
]
PLUGINS = {
    "cron": {"poll_interval": 5},
    "workflow": {"polling_interval": 1},
}


@contextlib.asynccontextmanager
async def one_row_per_push(app: Chancy) -> AsyncIterator[None]:
    """Append the job id to the unique key of every job pushed to TICKS, so a
    push is never absorbed by the previous tick's pending job."""
    await rel.query(
        app,
        "CREATE FUNCTION {p}rel_key_per_push() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN NEW.unique_key := NEW.unique_key || '@' || NEW.id::text;"
        " RETURN NEW; END $$",
    )
    await rel.query(
        app,
        "CREATE TRIGGER {p}rel_key_per_push BEFORE INSERT ON {p}jobs FOR EACH ROW"
        f" WHEN (NEW.queue = '{TICKS}') EXECUTE FUNCTION {{p}}rel_key_per_push()",
    )
    try:
        yield
    finally:
        await rel.query(app, "DROP FUNCTION {p}rel_key_per_push() CASCADE")


def workflow(rnd: random.Random, n: int) -> Workflow:
    def step() -> Job:
        return rel.job("arecord", "wf_steps", seconds=round(rnd.uniform(0.05, 0.6), 3))

    return (
        Workflow(f"rel-{n}")
        .add("fetch", step())
        .add_group([(f"part_{i}", step()) for i in range(3)], dependencies=["fetch"])
        .add("join", step(), dependencies=[f"part_{i}" for i in range(3)])
        .add("publish", step(), dependencies=["join"])
    )


async def test_killing_the_leader_never_fires_twice_nor_loses_a_step(
    chancy: Chancy, chancy_dsn: str, tmp_path: Path
) -> None:
    timer = rel.Timer()
    rnd = random.Random()
    await rel.declare_queues(chancy, QUEUES)
    workflow_ids: list[str] = []
    kills: list[float] = []
    async with (
        one_row_per_push(chancy),
        rel.Fleet(chancy_dsn, tmp_path / "runs") as fleet,
    ):
        await fleet.start_many(WORKERS, **PLUGINS)
        await rel.wait_until(
            lambda: rel.leader_name(chancy), timeout=30, message="no leader"
        )
        await Cron.schedule(
            chancy, "* * * * * *", Job(func="app.tick", queue=TICKS, unique_key=KEY)
        )
        first_tick = (await Cron.get_schedules(chancy))[KEY]["next_run"].timestamp()
        for wave in range(KILLS + 1):
            for _ in range(WAVE):
                wf = workflow(rnd, len(workflow_ids))
                workflow_ids.append(await WorkflowPlugin.push(chancy, wf))
            if wave == KILLS:
                break
            await asyncio.sleep(KILL_EVERY * rnd.uniform(0.7, 1.3))
            leader = await rel.wait_until(
                lambda: rel.leader_name(chancy), timeout=30, message="no leader"
            )
            await fleet.by_name(leader).kill()
            kills.append(time.time())
            await fleet.start(**PLUGINS)
        # Ticks resume after the last failover.
        await rel.wait_until(
            lambda: _ticks_after(chancy, kills[-1] + 1),
            timeout=30,
            message=lambda: _logs(fleet),
        )
        done = await _wait_workflows(chancy, workflow_ids, timeout=rel.scaled(60, 300))
        await Cron.unschedule(chancy, KEY)
        window_end = time.time()
        for worker in fleet.alive:
            worker.send(signal.SIGTERM)
        for worker in fleet.alive:
            assert await worker.wait(30) == 0, worker.log()
        logs = fleet.logs()
        rows = await rel.query(
            chancy,
            "SELECT unique_key, scheduled_at FROM {p}jobs WHERE queue = %s",
            TICKS,
        )

    # Cron: never two pushes for one tick; pushes all along the run.
    assert all(key.startswith(f"{KEY}@") for key, _ in rows)
    per_second = Counter(math.floor(at.timestamp()) for _, at in rows)
    assert per_second, logs
    twice = {t - int(first_tick): n for t, n in per_second.items() if n > 1}
    assert not twice, f"ticks pushed more than once (second: pushes): {twice}"
    assert min(per_second) >= int(first_tick)
    seconds = math.floor(window_end) - int(first_tick)
    missed = seconds - len(per_second)

    # Workflows: all completed, each step had exactly one job.
    assert [w.state for w in done] == [Workflow.State.COMPLETED] * len(done), [
        (w.id, w.state) for w in done
    ]
    per_step = await rel.query(
        chancy,
        "SELECT meta->>'workflow_id', meta->>'workflow_step_id', count(*),"
        " bool_and(state = 'succeeded') FROM {p}jobs WHERE queue = 'wf_steps'"
        " GROUP BY 1, 2",
    )
    steps = {(wf, step): (n, ok) for wf, step, n, ok in per_step}
    expected = {(w.id, step_id) for w in done for step_id in w.steps}
    assert set(steps) == expected, set(steps) ^ expected
    assert all(n == 1 and ok for n, ok in steps.values()), {
        k: v for k, v in steps.items() if v != (1, True)
    }
    for w in done:
        recorded = {str(s.job_id) for s in w.steps.values()}
        assert len(recorded) == len(w.steps) and None not in recorded
    rel.report(
        "leader killed during cron ticks and workflow advancement",
        test="tests/reliability/test_reliability_leader.py",
        workers=WORKERS,
        leaders_killed=len(kills),
        cron_seconds=seconds,
        cron_pushes=len(rows),
        ticks_pushed_twice=len(twice),
        ticks_collapsed_during_failover=missed,
        workflows=len(done),
        workflow_steps=len(steps),
        steps_pushed_twice=sum(1 for n, _ in steps.values() if n > 1),
        steps_lost=len(expected - set(steps)),
        seconds=timer.seconds,
    )


async def _ticks_after(app: Chancy, at: float) -> bool:
    rows = await rel.query(
        app,
        "SELECT count(*) FROM {p}jobs WHERE queue = %s AND scheduled_at > to_timestamp(%s)",
        TICKS,
        at,
    )
    return bool(rows[0][0])


async def _wait_workflows(
    app: Chancy, ids: list[str], *, timeout: float
) -> list[Workflow]:
    async def finished() -> list[Workflow] | None:
        found = await WorkflowPlugin.fetch_workflows(app, ids=ids, limit=len(ids))
        if len(found) == len(ids) and all(w.is_complete for w in found):
            return found
        return None

    async def why() -> str:
        found = await WorkflowPlugin.fetch_workflows(app, ids=ids, limit=len(ids))
        return f"workflows: {Counter(w.state.value for w in found)}"

    result: list[Workflow] = await rel.wait_until(
        finished, timeout=timeout, message=why
    )
    return result


async def _logs(fleet: object) -> str:
    return "ticks did not resume after the last failover\n" + fleet.logs()  # type: ignore[attr-defined]
