"""Enqueue A/B across processes: the ``bench`` adapters, interleaved run by run.

    hatch run bench:python benchmarks/bulk_ab.py [--dsn DSN] [--rounds 10]
        [--workload enqueue_bulk_tx] [--jobs 20000] [--base CHECKOUT]

Each run is exactly one ``bench`` run: a new database, a new adapter process
(``adapters/chancy_adapter.py`` or ``adapters/raw_adapter.py``), the
workload's jobs made before the clock starts and pushed once. The systems
take turns within each round, in alternating order, so that they see the
same machine at the same moment: on a shared 2-CPU machine single runs
swing ±30%, and a median of paired ratios is steadier than the medians of
separate series.

Systems: ``ours`` (this checkout) and ``raw`` (the yardstick); with
``--base``, also ``base``: ours as another checkout's
``packages/chancy-core/src`` has it (a ``git worktree`` of an earlier
commit), for before/after figures of a change.

Prints each round's jobs/s, then per system the median and the median of
its per-round ratios to raw. The databases (``bulk_ab_…``) are dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

# The harness's own database and result helpers (benchmarks/__main__.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.__main__ import ADAPTERS, adapter_result, create_db, drop_db

WORKLOADS = ("enqueue_bulk_tx", "enqueue_bulk", "enqueue_single")


def run_once(
    system: str, server: str, workload: str, jobs: int, base: Path | None
) -> float:
    """One adapter run on a database of its own; its jobs/s."""
    name = f"bulk_ab_{system}_{uuid.uuid4().hex[:8]}"
    dsn = create_db(server, name)
    try:
        spec: dict[str, Any] = {
            "dsn": dsn,
            "workload": workload,
            "size": {"n": jobs},
            "concurrency": 50,
            "workdir": str(Path.cwd()),
            "label": system,
            "options": {"bare": False},
        }
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONUNBUFFERED"] = "1"
        if system == "base" and base is not None:
            env["PYTHONPATH"] = str(base / "packages" / "chancy-core" / "src")
        adapter = "raw_adapter.py" if system == "raw" else "chancy_adapter.py"
        proc = subprocess.run(
            [sys.executable, str(ADAPTERS / adapter), "run", json.dumps(spec)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        result = adapter_result(proc.stdout)
        if result is None:
            raise SystemExit(
                f"{system}: the adapter exited {proc.returncode} without a result:"
                f"\n{proc.stderr[-3000:]}"
            )
        if "error" in result or not result["checks"]["ok"]:
            raise SystemExit(f"{system}: {result}")
        return float(result["metrics"]["jobs_per_s"])
    finally:
        drop_db(server, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--workload", choices=WORKLOADS, default="enqueue_bulk_tx")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument(
        "--base", type=Path, help="another checkout whose ours runs as 'base'"
    )
    args = parser.parse_args()
    if args.base is not None and not (args.base / "packages" / "chancy-core").is_dir():
        parser.error(f"--base {args.base} is not a checkout of this repository")
    systems = ["ours", "base", "raw"] if args.base else ["ours", "raw"]
    rates: dict[str, list[float]] = {system: [] for system in systems}
    print(f"{args.workload}, {args.jobs:,} jobs, jobs/s per round:")
    print("  round " + "".join(f"{system:>10}" for system in systems))
    for round_ in range(args.rounds):
        order = systems if round_ % 2 == 0 else systems[::-1]
        for system in order:
            rates[system].append(
                run_once(system, args.dsn, args.workload, args.jobs, args.base)
            )
        row = "".join(f"{rates[system][-1]:10,.0f}" for system in systems)
        print(f"  {round_ + 1:5d} {row}", flush=True)
    print(f"median of {args.rounds} (÷ raw: median of the per-round ratios):")
    for system in systems:
        ratio = statistics.median(
            a / b for a, b in zip(rates[system], rates["raw"], strict=True)
        )
        print(
            f"  {system:5s} {statistics.median(rates[system]):10,.0f} jobs/s"
            f"   ÷ raw {ratio:.2f}"
        )


if __name__ == "__main__":
    main()
