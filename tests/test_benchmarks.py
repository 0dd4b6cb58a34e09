"""The benchmark harness: target verdicts and the raw-SQL yardstick adapter."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as bench


def _run(system: str, workload: str, repeat: int, **metrics: float) -> dict:
    return {
        "system": system,
        "workload": workload,
        "repeat": repeat,
        "metrics": metrics,
        "checks": {"ok": True},
    }


def test_targets_are_same_run_ratios_with_verdicts() -> None:
    runs = [
        # ours 2.5x and 1.5x pgqueuer in two repeats: median 2.0 -> PASS (>= 2)
        _run("ours", "burndown_async", 0, jobs_per_s=250, cpu_ms_per_job=0.06),
        _run("pgqueuer", "burndown_async", 0, jobs_per_s=100, cpu_ms_per_job=0.03),
        _run("ours", "burndown_async", 1, jobs_per_s=150, cpu_ms_per_job=0.06),
        _run("pgqueuer", "burndown_async", 1, jobs_per_s=100, cpu_ms_per_job=0.03),
        # bulk in one transaction 80% of raw -> MISS (push_many's
        # per-batch row is not what the target compares)
        _run("ours", "enqueue_bulk_tx", 0, jobs_per_s=80),
        _run("raw", "enqueue_bulk_tx", 0, jobs_per_s=100),
        _run("ours", "enqueue_bulk", 0, jobs_per_s=95),
        _run("raw", "enqueue_bulk", 0, jobs_per_s=100),
        # a raw run that failed its checks gives no ratio
        _run("ours", "enqueue_single", 0, jobs_per_s=95),
        {**_run("raw", "enqueue_single", 0, jobs_per_s=100), "checks": {"ok": False}},
    ]
    systems = ["ours", "pgqueuer", "raw"]
    workloads = [
        "burndown_async",
        "enqueue_bulk",
        "enqueue_bulk_tx",
        "enqueue_single",
        "latency",
    ]
    by_name = {t["target"]: t for t in bench.evaluate_targets(runs, systems, workloads)}
    burn = by_name["async burn-down ≥ 2× pgqueuer"]  # noqa: RUF001
    assert burn["verdict"] == "PASS"
    assert burn["ratio"] == pytest.approx(2.0)
    cpu = by_name["worker CPU per no-op async job ≤ pgqueuer's"]
    assert cpu["verdict"] == "MISS"
    assert cpu["ratio"] == pytest.approx(2.0)
    bulk = by_name["bulk enqueue ≥ 90% of raw COPY (one transaction each)"]
    assert (bulk["verdict"], bulk["ratio"]) == ("MISS", pytest.approx(0.8))
    single = by_name["single push ≥ 90% of raw INSERT + NOTIFY"]
    assert single["verdict"] == "n/a"
    assert "a check failed" in single["why"]
    threads = by_name["threaded burn-down ≥ 4× the original"]  # noqa: RUF001
    assert threads["verdict"] == "n/a"
    assert "chancy not in this run" in threads["why"]
    latency = by_name["push→start p50 ≤ 1.25× the raw loop's"]  # noqa: RUF001
    assert latency["verdict"] == "n/a"


@pytest.mark.parametrize(
    ("adapter", "workload", "size"),
    [
        ("raw", "enqueue_bulk", {"n": 300}),
        ("raw", "enqueue_bulk_tx", {"n": 300}),
        ("raw", "burndown_async", {"n": 300}),
        # ours through the bench adapter: a streamed one-transaction push
        ("chancy", "enqueue_bulk_tx", {"n": 1_500}),
    ],
)
def test_bench_adapters_enqueue_and_burn_down_exactly_once(
    chancy_server_dsn: str, tmp_path: Path, adapter: str, workload: str, size: dict
) -> None:
    """The yardstick does the same work as the systems and passes the same checks."""
    name = f"bench_test_{adapter}_{uuid.uuid4().hex[:8]}"
    dsn = bench.create_db(chancy_server_dsn, name)
    try:
        spec = {
            "dsn": dsn,
            "workload": workload,
            "size": size,
            "concurrency": 20,
            "workdir": str(tmp_path / workload),
            "label": adapter,
            "options": {},
        }
        proc = subprocess.run(
            [
                sys.executable,
                str(bench.ADAPTERS / f"{adapter}_adapter.py"),
                "run",
                json.dumps(spec),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        result = bench.adapter_result(proc.stdout)
        assert result is not None, proc.stderr
        assert "error" not in result, result.get("traceback")
        assert result["checks"]["ok"], result["checks"]
        assert result["metrics"]["jobs_per_s"] > 0
    finally:
        bench.drop_db(chancy_server_dsn, name)


def _run_probe(script: str, dsn: str, database: str, *args: str) -> str:
    """Run ``benchmarks/<script>`` against ``dsn``; its output, once it has
    succeeded and dropped the database it made (``database``)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--dsn", dsn, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
    assert row == (0,)
    return proc.stdout


def test_enqueue_probe_runs_every_variant_and_leaves_no_database(
    chancy_server_dsn: str,
) -> None:
    """benchmarks/enqueue_probe.py (the figures in the README's performance
    notes) runs end to end, names every variant and drops its database."""
    out = _run_probe(
        "enqueue_probe.py",
        chancy_server_dsn,
        "chancy_enqueue_probe",
        *("--pushes", "20", "--jobs", "2500", "--repeats", "1"),
    )
    for variant in (
        "raw, pooled",
        "raw + plan",
        "ours",
        "raw COPY, 1,000-row transactions",
        "push_many, batch_size=5000",
        "push_many_ex (one transaction)",
        "raw COPY data, pre-built",
        "ours' COPY data, pre-built",
    ):
        assert variant in out, out
    assert "WAL" in out


def test_latency_probe_splits_every_stage_for_both_and_leaves_no_database(
    chancy_server_dsn: str,
) -> None:
    """benchmarks/latency_probe.py (the per-stage figures in
    benchmarks/README.md) runs a worker of each kind, every job it pushed
    runs (it exits non-zero naming a job that did not), and it prints every
    stage for both (a notification can beat the pusher's own reply, so only
    the push, the fetch and the total must be positive)."""
    out = _run_probe(
        "latency_probe.py",
        chancy_server_dsn,
        "chancy_latency_probe",
        *("--jobs", "20", "--gap", "0.01", "--rounds", "1"),
    )
    lines = {
        line.rsplit(maxsplit=2)[0].strip(): line.split()[-2:]
        for line in out.splitlines()[2:]
    }
    assert set(lines) == {
        "total",
        "push",
        "push → notified",
        "notified → fetch",
        "fetch",
        "fetch → start",
    }, out
    for stage in ("total", "push", "fetch"):
        ours, raw = lines[stage]
        assert float(ours) > 0 and float(raw) > 0, out


def test_soak_flatness_is_measured_from_the_first_report_after_warm_up() -> None:
    from benchmarks.soak import flat

    # steady growth: each value within 20% of its neighbours' median, but the
    # last is 40% above the first -> not flat
    ok, deviation = flat([100.0, 110.0, 120.0, 130.0, 140.0], floor=1.0)
    assert not ok
    assert deviation == pytest.approx(0.4)
    assert flat([100.0, 115.0, 90.0, 105.0], floor=1.0)[0]
    # near zero, the absolute band decides
    assert flat([0.0, 3_000.0, 8_000.0], floor=10_000)[0]
    assert not flat([0.0, 30_000.0], floor=10_000)[0]


def test_bulk_ab_interleaves_the_adapters_and_leaves_no_database(
    chancy_server_dsn: str, tmp_path: Path
) -> None:
    """benchmarks/bulk_ab.py (the before/after bulk figures in
    benchmarks/README.md) runs ours, a base checkout and raw through the
    bench adapters, checks each run's rows, prints the ratios to raw and
    drops every database it made."""
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bulk_ab.py"),
            *("--dsn", chancy_server_dsn, "--rounds", "1", "--jobs", "1500"),
            *("--base", str(ROOT)),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    medians = {
        line.split()[0]: line.split()
        for line in proc.stdout.splitlines()
        if "÷ raw" in line and "jobs/s" in line
    }
    assert set(medians) == {"ours", "base", "raw"}, proc.stdout
    assert medians["raw"][-1] == "1.00", proc.stdout
    assert float(medians["ours"][-1]) > 0, proc.stdout
    import psycopg

    with psycopg.connect(chancy_server_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'bulk_ab_%'"
        ).fetchone()
    assert row == (0,)
