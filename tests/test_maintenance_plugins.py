"""Leadership, Pruner and Recovery together, as an app gets them by default
when their distributions are installed (entry points, no ``plugins=``)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import uuid

import pytest

from chancy import Chancy, Worker

MAINTENANCE = ("chancy-leadership", "chancy-pruner", "chancy-recovery")


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not all(_installed(name) for name in MAINTENANCE),
    reason="needs chancy-leadership, chancy-pruner and chancy-recovery installed",
)


async def test_the_default_plugins_elect_prune_and_recover_at_once(
    chancy: Chancy, worker_no_start: Worker
) -> None:
    from chancy.plugins.leadership import Leadership
    from chancy.plugins.pruner import Pruner
    from chancy.plugins.recovery import Recovery

    leadership = chancy.plugins["chancy.leadership"]
    pruner = chancy.plugins["chancy.pruner"]
    recovery = chancy.plugins["chancy.recovery"]
    assert isinstance(leadership, Leadership) and leadership.poll_interval == 60
    assert isinstance(pruner, Pruner) and pruner.poll_interval == 60
    assert isinstance(recovery, Recovery) and recovery.poll_interval == 60
    order = list(chancy.plugins)
    assert order.index("chancy.leadership") < order.index("chancy.pruner")

    old, lost = uuid.uuid4(), uuid.uuid4()
    async with chancy.pool.connection() as conn:
        await conn.execute(
            f"INSERT INTO {chancy.sql.jobs} (id, queue, func, state, created_at)"
            " VALUES (%s, 'default', 'somewhere.something', 'succeeded',"
            " NOW() - interval '2 days')",
            (old,),
        )
        await conn.execute(
            f"INSERT INTO {chancy.sql.jobs}"
            " (id, queue, func, state, taken_by, claim_id, max_attempts)"
            " VALUES (%s, 'nowhere', 'somewhere.something', 'running', 'gone',"
            " gen_random_uuid(), 2)",
            (lost,),
        )

    # With the default one-minute intervals, the first election and the first
    # passes still happen at once.
    await worker_no_start.start()
    await asyncio.wait_for(worker_no_start.is_leader.wait(), 5)
    async with asyncio.timeout(10):
        while pruner.passes < 1 or recovery.passes < 1:
            await asyncio.sleep(0.02)
    assert await chancy.get_job(old) is None
    recovered = await chancy.get_job(lost)
    assert recovered is not None and recovered.state.value == "pending"
    assert recovered.attempts == 0 and recovered.meta == {"lost_runs": 1}


def test_the_default_plugins_come_in_the_originals_order() -> None:
    from chancy import Chancy

    order = list(Chancy("postgresql://localhost/app").plugins)
    expected = [
        "chancy.leadership",
        "chancy.pruner",
        "chancy.recovery",
        "chancy.metrics",
        "chancy.workflow_plugin",
    ]
    assert [ident for ident in order if ident in expected] == expected
    assert order[: len(expected)] == expected
