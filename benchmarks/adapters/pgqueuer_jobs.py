"""Benchmark entrypoints for pgqueuer (payload: b"<seq> <push time>")."""

from __future__ import annotations

import asyncio

from _benchlib import record


def _seq(payload: bytes) -> int:
    return int(payload.split(b" ", 1)[0])


async def noop_async(job) -> None:
    record(_seq(job.payload))


def _noop_sync(payload: bytes) -> None:
    record(_seq(payload))


# pgqueuer 1.x entrypoints are async; its documented way to run blocking code
# is asyncio.to_thread() inside the entrypoint.
async def noop_threads(job) -> None:
    await asyncio.to_thread(_noop_sync, job.payload)
