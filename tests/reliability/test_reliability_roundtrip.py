"""A property test of push -> fetch -> run -> save round trips (hypothesis).

A worker process serves one async queue. For each generated job (arbitrary
JSON-like kwargs and meta with sets, tuples, unicode, nesting, floats and
big integers; priorities, attempts, scheduled times with and without a time
zone, unique keys), ``sync_push`` either refuses it with ``TypeError`` or
``ValueError`` and writes nothing, or the job runs and ``get_job`` returns
what was pushed, modulo the documented conversions (``docs/guarantees.md``):

* sets, frozensets and tuples come back as lists (a set's order is not kept);
* a naive ``scheduled_at`` is UTC; times come back in UTC, the same instant;
* numbers are stored as PostgreSQL ``numeric``: a float that JSON writes
  with an exponent and whose value is a whole number (``1e+16``) comes back
  as that integer; ``-0.0`` comes back as ``0.0``;
* a surrogate pair held as two code points comes back as the one character
  it encodes.

Refused, and only those: kwargs or meta that JSON cannot hold (NaN and
infinities; a NUL character or a lone surrogate anywhere), and fields out of
range (priority and max_attempts beyond 32 bits, NUL in a unique key).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chancy import Chancy, Job, Queue, QueuedJob


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

EXAMPLES = rel.scaled(300, 3000)
QUEUE = "roundtrip"
INT32 = 2**31

# -- strategies ------------------------------------------------------------------


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    """``good`` four times in five, else ``bad``."""
    return st.one_of(good, good, good, good, bad)


#: Any code point, surrogates and NUL included (refusals are part of the property).
text = mostly(
    st.text(st.characters(exclude_characters="\x00"), max_size=12),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=12),
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | mostly(st.floats(allow_nan=False, allow_infinity=False), st.floats())
    | text
)
hashables = st.integers(-1000, 1000) | st.text(max_size=5)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(text, inner, max_size=4)
        | st.frozensets(hashables, max_size=4)
        | st.sets(hashables, max_size=4)
    ),
    max_leaves=12,
)
#: ``context`` is the job function's own parameter, not an argument.
kwargs_keys = text.filter(lambda k: k != "context")
jobs = st.builds(
    lambda kwargs, meta, priority, max_attempts, when, key: Job(
        func="_reliability_jobs.aecho",
        queue=QUEUE,
        kwargs=kwargs,
        meta=meta,
        priority=priority,
        max_attempts=max_attempts,
        scheduled_at=when,
        unique_key=key,
    ),
    kwargs=st.dictionaries(kwargs_keys, json_like, max_size=5),
    meta=st.dictionaries(text, json_like, max_size=3),
    priority=mostly(st.integers(-INT32, INT32 - 1), st.integers(-(2**40), 2**40)),
    max_attempts=mostly(st.integers(1, INT32 - 1), st.integers(INT32, 2**40)),
    when=st.datetimes(
        min_value=datetime(1990, 1, 1),
        max_value=datetime(2024, 12, 31),
        timezones=st.none() | st.timezones(),
    ),
    key=st.none() | text,
)

# -- what the database can hold, and the documented conversions ---------------------


def _storable(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            value.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            return False  # a lone surrogate
        return "\x00" not in value
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return all(_storable(v) for v in value)
    return True


def _refused(job: Job) -> bool:
    return not (
        _storable(job.kwargs)
        and _storable(job.meta)
        and -INT32 <= job.priority < INT32
        and job.max_attempts < INT32
        and (job.unique_key is None or _storable_key(job.unique_key))
    )


def _storable_key(key: str) -> bool:
    """A text column holds no NUL and no surrogate code point at all (a pair
    held as two code points is not turned into its character there)."""
    return "\x00" not in key and not any("\ud800" <= c <= "\udfff" for c in key)


def _text(value: str) -> str:
    """A surrogate pair held as two code points is the character it encodes."""
    return value.encode("utf-16", "surrogatepass").decode("utf-16")


def _canonical(value: Any) -> Any:
    """``value`` as the database gives it back (sets as sorted lists of
    canonical JSON, to compare them whatever their order)."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        text_form = repr(value)  # what json.dumps writes
        if "e" in text_form:
            # numeric writes "1e+16" back as 10000000000000000: an integer.
            number = Decimal(text_form)
            if number == number.to_integral_value():
                return int(number)
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return ("set", sorted(json.dumps(_canonical(v), sort_keys=True) for v in value))
    return [_canonical(v) for v in value]


def _same(expected: Any, stored: Any) -> bool:
    """``stored`` (read back) is ``expected`` (pushed), modulo the conversions."""
    want = _canonical(expected)
    return _equal(want, stored)


def _equal(want: Any, got: Any) -> bool:
    if isinstance(want, tuple) and want[:1] == ("set",):
        return isinstance(got, list) and Counter(
            json.dumps(v, sort_keys=True) for v in got
        ) == Counter(want[1])
    if isinstance(want, bool) or isinstance(got, bool):
        return type(want) is type(got) and want == got
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and want.keys() == got.keys()
            and all(_equal(want[k], got[k]) for k in want)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(want) == len(got)
            and all(_equal(w, g) for w, g in zip(want, got, strict=True))
        )
    if isinstance(want, float) and isinstance(got, float) and want == 0.0:
        return got == 0.0  # numeric has no negative zero
    return bool(want == got and type(want) is type(got))


# -- the test ------------------------------------------------------------------------


async def test_what_was_pushed_is_what_the_worker_ran_and_saved(
    chancy: Chancy, chancy_dsn: str, tmp_path: Path
) -> None:
    timer = rel.Timer()
    await chancy.declare(
        Queue(QUEUE, executor=Chancy.Executor.Async, concurrency=10, polling_interval=1)
    )
    tally = Counter[str]()
    async with rel.Fleet(chancy_dsn, tmp_path / "runs") as fleet:
        await fleet.start_many(1)
        # A thread cannot be cancelled: if this test is (its timeout), the
        # event set on the way out ends the thread's examples at once, instead
        # of hypothesis shrinking examples that each wait for a gone fleet.
        stopped = threading.Event()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,  # no .hypothesis directory in the work tree
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(job=jobs)
        def round_trip(job: Job) -> None:
            if stopped.is_set():  # the test was cancelled: end the thread fast
                raise RuntimeError("the test is over")
            count = _count(chancy)
            if _refused(job):
                with pytest.raises((TypeError, ValueError)):
                    chancy.sync_push(job)
                assert _count(chancy) == count, "a refused job left a row"
                tally["refused"] += 1
                return
            ref = chancy.sync_push(job)
            done = _wait(chancy, ref, fleet, stopped)
            tally["round trips"] += 1
            assert done.state is QueuedJob.State.SUCCEEDED, done.errors
            assert (done.attempts, done.errors) == (1, [])
            assert (done.func, done.queue, done.unique_key) == (
                job.func,
                job.queue,
                job.unique_key,
            )
            assert (done.priority, done.max_attempts) == (
                job.priority,
                job.max_attempts,
            )
            assert _same(job.kwargs, done.kwargs), (job.kwargs, done.kwargs)
            assert _same(job.meta, done.meta), (job.meta, done.meta)
            # The same instant. Not ``==``: PEP 495 makes a comparison across
            # zones of a time in a DST gap or fold unequal whatever the
            # instants; Python's own utcoffset() is what was stored.
            assert done.scheduled_at.timestamp() == job.scheduled_at.timestamp(), (
                job.scheduled_at,
                done.scheduled_at,
            )
            assert done.scheduled_at.tzinfo is not None
            assert done.created_at and done.started_at and done.completed_at
            assert done.created_at <= done.started_at <= done.completed_at

        try:
            await asyncio.to_thread(round_trip)
        finally:
            stopped.set()
    assert tally["round trips"] >= EXAMPLES // 4, tally  # mostly not refused
    rel.report(
        "push -> fetch -> save round trips (hypothesis)",
        test="tests/reliability/test_reliability_roundtrip.py",
        examples=sum(tally.values()),
        round_trips=tally["round trips"],
        refused=tally["refused"],
        seconds=timer.seconds,
    )


def _count(chancy: Chancy) -> int:
    chancy.sync_ensure_open()
    with chancy.sync_pool.connection() as conn:
        row = conn.execute(f"SELECT count(*) FROM {chancy.sql.jobs}").fetchone()
    assert row is not None
    return int(row[0])


def _wait(chancy: Chancy, ref: Any, fleet: Any, stopped: threading.Event) -> QueuedJob:
    deadline = time.monotonic() + 30
    while True:
        if stopped.is_set():
            raise RuntimeError("the test is over")
        job = chancy.sync_get_job(ref)
        assert job is not None
        if job.is_finished:
            return job
        assert time.monotonic() < deadline, f"job {ref} did not finish\n{fleet.logs()}"
        time.sleep(0.005)
