"""Executors run a queue's jobs inside a worker: asyncio tasks, threads,
processes or sub-interpreters. Pick one per queue with ``Queue.executor``."""
