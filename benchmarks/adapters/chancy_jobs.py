"""Benchmark jobs for Chancy (ours and the original share this API)."""

from __future__ import annotations

from _benchlib import record

from chancy import job


@job(queue="bench")
async def noop_async(*, seq: int, t: float = 0.0) -> None:
    record(seq)


@job(queue="bench")
def noop_sync(*, seq: int, t: float = 0.0) -> None:
    record(seq)
