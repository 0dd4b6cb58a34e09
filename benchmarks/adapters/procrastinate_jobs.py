"""Benchmark tasks for procrastinate (the app is configured from BENCH_DSN)."""

from __future__ import annotations

import os

import procrastinate
from _benchlib import record

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_DSN", ""))
)


@app.task(name="noop_async", queue="bench")
async def noop_async(seq: int, t: float = 0.0) -> None:
    record(seq)


# procrastinate runs synchronous tasks in worker threads (asgiref sync_to_async).
@app.task(name="noop_sync", queue="bench")
def noop_sync(seq: int, t: float = 0.0) -> None:
    record(seq)
