"""Run the benchmarks: ``python -m benchmarks [--quick] [--systems ...] [--workloads ...]``.

Every (repeat, workload, system) run gets a fresh database and its own
adapter subprocess, run by that system's interpreter: ours with this
interpreter (the workspace), the peers in virtualenvs under
``benchmarks/.venvs/`` created on first use. Runs are interleaved (each
workload runs every system before the next repeat, alternating the order),
medians are taken over repeats, and ratios to the original Chancy are taken
per repeat. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ADAPTERS = BENCH / "adapters"
VENVS = BENCH / ".venvs"
OURS_SRC = ROOT / "packages" / "chancy-core" / "src"

BASELINE = "chancy"
DEFAULT_SYSTEMS = ["ours", "chancy", "procrastinate", "pgqueuer", "raw"]
#: The yardstick: the same work in hand-written SQL (adapters/raw_adapter.py).
RAW = "raw"

#: Peer virtualenvs: name -> pip requirements (pinned to the newest release
#: at the time of writing; bump deliberately).
VENV_SPECS: dict[str, list[str]] = {
    "chancy": ["chancy[cli]==0.26.0", "psycopg[binary]"],
    "procrastinate": ["procrastinate==3.10.0", "psycopg[binary,pool]"],
    "pgqueuer": ["pgqueuer==1.6.0", "asyncpg", "psycopg[binary]"],
    "tools": ["matplotlib"],
}

SYSTEMS: dict[str, dict[str, Any]] = {
    "ours": {"adapter": "chancy_adapter.py", "venv": None, "dist": "chancy-core"},
    "chancy": {"adapter": "chancy_adapter.py", "venv": "chancy", "dist": "chancy"},
    "procrastinate": {
        "adapter": "procrastinate_adapter.py",
        "venv": "procrastinate",
        "dist": "procrastinate",
    },
    "pgqueuer": {
        "adapter": "pgqueuer_adapter.py",
        "venv": "pgqueuer",
        "dist": "pgqueuer",
    },
    # psycopg and SQL only; ours' interpreter, because its schema is made by
    # ours' core migrations (the same chancy_jobs table ours works against).
    "raw": {"adapter": "raw_adapter.py", "venv": None, "dist": "psycopg"},
}

WORKLOADS = [
    "enqueue_bulk",
    "enqueue_bulk_tx",
    "enqueue_single",
    "burndown_async",
    "burndown_threads",
    "burndown_processes",
    "steady",
    "latency",
    "memory",
    "degraded_finished",
    "degraded_longtx",
]

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "enqueue_bulk": {"n": 20_000},
        "enqueue_bulk_tx": {"n": 20_000},
        "enqueue_single": {"n": 2_000},
        "burndown_async": {"n": 10_000},
        "burndown_threads": {"n": 10_000},
        "burndown_processes": {"n": 10_000},
        "steady": {"seconds": 10, "producers": 4, "batch": 10},
        "latency": {"n": 200, "gap": 0.02},
        "memory": {"n": 100_000},
        "degraded_finished": {"n": 10_000, "prefill": 1_000_000, "probe": 50},
        "degraded_longtx": {"n": 10_000, "probe": 50},
    },
    "quick": {
        "enqueue_bulk": {"n": 2_000},
        "enqueue_bulk_tx": {"n": 2_000},
        "enqueue_single": {"n": 200},
        "burndown_async": {"n": 1_000},
        "burndown_threads": {"n": 1_000},
        "burndown_processes": {"n": 1_000},
        "steady": {"seconds": 3, "producers": 4, "batch": 10},
        "latency": {"n": 30, "gap": 0.02},
        "memory": {"n": 5_000},
        "degraded_finished": {"n": 1_000, "prefill": 50_000, "probe": 20},
        "degraded_longtx": {"n": 1_000, "probe": 20},
    },
}

#: What the table shows: (workload, metric, label, higher_is_better)
METRICS: list[tuple[str, str, str, bool]] = [
    ("enqueue_bulk", "jobs_per_s", "bulk enqueue (jobs/s)", True),
    (
        "enqueue_bulk_tx",
        "jobs_per_s",
        "bulk enqueue, one transaction (jobs/s)",
        True,
    ),
    ("enqueue_single", "jobs_per_s", "single push (jobs/s)", True),
    ("burndown_async", "jobs_per_s", "burn-down, async (jobs/s)", True),
    ("burndown_threads", "jobs_per_s", "burn-down, threads (jobs/s)", True),
    ("burndown_processes", "jobs_per_s", "burn-down, processes (jobs/s)", True),
    ("steady", "jobs_per_s", "steady state: run (jobs/s)", True),
    ("steady", "pushed_per_s", "steady state: pushed (jobs/s)", True),
    ("latency", "p50_ms", "latency p50 (ms)", False),
    ("latency", "p95_ms", "latency p95 (ms)", False),
    ("latency", "p99_ms", "latency p99 (ms)", False),
    ("burndown_async", "cpu_ms_per_job", "worker CPU per job, async (ms)", False),
    ("burndown_async", "peak_rss_mb", "worker peak RSS, async (MB)", False),
    (
        "burndown_processes",
        "peak_rss_mb",
        "worker peak RSS incl. children, processes (MB)",
        False,
    ),
    ("memory", "cpu_ms_per_job", "worker CPU per job, long run (ms)", False),
    ("memory", "rss_growth_mb", "RSS growth 10%→100% of long run (MB)", False),
    ("memory", "peak_rss_mb", "worker peak RSS, long run (MB)", False),
    (
        "degraded_finished",
        "jobs_per_s",
        "burn-down with many finished rows (jobs/s)",
        True,
    ),
    (
        "degraded_finished",
        "fetch_p50_ms",
        "fetch p50 with many finished rows (ms)",
        False,
    ),
    (
        "degraded_longtx",
        "jobs_per_s",
        "burn-down with a long transaction open (jobs/s)",
        True,
    ),
    (
        "degraded_longtx",
        "fetch_p50_ms",
        "fetch p50 with a long transaction open (ms)",
        False,
    ),
]


#: Issue 18's targets, each a same-run ratio: (label, numerator, denominator,
#: comparison, bound), numerator and denominator as (system, workload, metric).
#: The ratio is taken per repeat (same repeat, same workload) and the median
#: of those is compared with the bound.
TARGETS: list[tuple[str, tuple[str, str, str], tuple[str, str, str], str, float]] = [
    (
        "worker CPU per no-op async job ≤ pgqueuer's",
        ("ours", "burndown_async", "cpu_ms_per_job"),
        ("pgqueuer", "burndown_async", "cpu_ms_per_job"),
        "<=",
        1.0,
    ),
    (
        "async burn-down ≥ 2× pgqueuer",  # noqa: RUF001
        ("ours", "burndown_async", "jobs_per_s"),
        ("pgqueuer", "burndown_async", "jobs_per_s"),
        ">=",
        2.0,
    ),
    (
        "threaded burn-down ≥ 4× the original",  # noqa: RUF001
        ("ours", "burndown_threads", "jobs_per_s"),
        ("chancy", "burndown_threads", "jobs_per_s"),
        ">=",
        4.0,
    ),
    (
        # The same work as the raw COPY: every row in one transaction
        # (push_many commits each batch_size batch on its own, by contract).
        "bulk enqueue ≥ 90% of raw COPY (one transaction each)",
        ("ours", "enqueue_bulk_tx", "jobs_per_s"),
        ("raw", "enqueue_bulk_tx", "jobs_per_s"),
        ">=",
        0.9,
    ),
    (
        "single push ≥ 90% of raw INSERT + NOTIFY",
        ("ours", "enqueue_single", "jobs_per_s"),
        ("raw", "enqueue_single", "jobs_per_s"),
        ">=",
        0.9,
    ),
    (
        "push→start p50 ≤ 1.25× the raw loop's",  # noqa: RUF001
        ("ours", "latency", "p50_ms"),
        ("raw", "latency", "p50_ms"),
        "<=",
        1.25,
    ),
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Interpreters
# ---------------------------------------------------------------------------


def _venv_python(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def ensure_venv(name: str) -> Path:
    """Create (or refresh) ``benchmarks/.venvs/<name>`` with its pinned packages."""
    spec = VENV_SPECS[name]
    marker = VENVS / name / ".bench-spec"
    python = _venv_python(name)
    if python.exists() and marker.exists() and marker.read_text() == "\n".join(spec):
        return python
    log(f"creating virtualenv {name}: pip install {' '.join(spec)}")
    VENVS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENVS / name)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *spec,
        ],
        check=True,
    )
    marker.write_text("\n".join(spec))
    return python


def _ours_env() -> dict[str, str]:
    """PYTHONPATH additions for ours: nothing if this interpreter imports the
    workspace's chancy (the hatch env), else the core's src/."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import chancy, os; print(os.path.realpath(chancy.__file__))",
        ],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        check=False,
    )
    if probe.returncode == 0:
        location = probe.stdout.strip()
        if location.startswith(str(ROOT)):
            return {}
        raise SystemExit(
            f"this interpreter imports a chancy that is not the workspace's ({location});"
            " run from the workspace env (hatch run bench:run) or a clean interpreter"
        )
    return {"PYTHONPATH": str(OURS_SRC)}


def interpreter(
    system: str, extra_env: dict[str, dict[str, str]]
) -> tuple[str, dict[str, str]]:
    info = SYSTEMS[system]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["PYTHONUNBUFFERED"] = "1"
    if info["venv"] is None:
        env.update(extra_env.get(system, {}))
        return sys.executable, env
    python = ensure_venv(info["venv"])
    env["VIRTUAL_ENV"] = str(VENVS / info["venv"])
    return str(python), env


def version_of(system: str, python: str, env: dict[str, str]) -> str:
    code = (
        "import importlib.metadata as m\n"
        "try:\n"
        f"    print(m.version({SYSTEMS[system]['dist']!r}))\n"
        "except m.PackageNotFoundError:\n"
        "    import chancy; print(getattr(chancy, '__version__', '?'))\n"
    )
    out = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    return out.stdout.strip() or "?"


# ---------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------


def server_dsn(arg: str | None) -> str:
    if arg:
        return arg
    try:
        sys.path.insert(0, str(OURS_SRC))
        from chancy._pgserver import get_server_dsn  # type: ignore[import-not-found]

        return get_server_dsn()
    except Exception as exc:
        log(f"chancy._pgserver unavailable ({exc}); using the default local server")
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    finally:
        if sys.path and sys.path[0] == str(OURS_SRC):
            sys.path.pop(0)


def _with_dbname(dsn: str, name: str) -> str:
    """The server DSN pointed at database ``name``, as a URI (asyncpg wants one)."""
    from urllib.parse import quote, urlencode

    from psycopg.conninfo import conninfo_to_dict

    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    params.pop("dbname", None)
    user = params.pop("user", "")
    password = params.pop("password", "")
    host = params.pop("host", "")
    port = params.pop("port", "")
    auth = (
        quote(user, safe="")
        + (":" + quote(password, safe="") if password else "")
        + ("@" if user else "")
    )
    netloc = ""
    if host and not host.startswith("/") and "," not in host:
        netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    else:
        if host:
            params["host"] = host
        if port:
            params["port"] = port
    query = ("?" + urlencode(params)) if params else ""
    return f"postgresql://{auth}{netloc}/{quote(name, safe='')}{query}"


def create_db(server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_dbname(server, name)


def drop_db(server: str, name: str) -> None:
    import psycopg

    try:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as exc:
        log(f"could not drop {name}: {exc}")


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------

#: How an adapter's run reports: its last stdout line starting with this.
RESULT_MARK = "BENCH-RESULT "


def adapter_result(stdout: str) -> dict[str, Any] | None:
    """The result an adapter's run printed last (``BENCH-RESULT {json}``),
    or ``None`` if it printed none."""
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARK)]
    return json.loads(lines[-1][len(RESULT_MARK) :]) if lines else None


def run_one(
    system: str,
    workload: str,
    repeat: int,
    args: argparse.Namespace,
    server: str,
    extra_env: dict[str, dict[str, str]],
    workroot: Path,
) -> dict[str, Any]:
    python, env = interpreter(system, extra_env)
    dbname = f"bench_{system}_{workload}_{repeat}_{uuid.uuid4().hex[:6]}"[:63]
    dsn = create_db(server, dbname)
    workdir = workroot / f"r{repeat}-{workload}-{system}"
    size = dict(SIZES["quick" if args.quick else "full"][workload])
    if workload == "steady" and args.steady_rate:
        size["rate"] = args.steady_rate
    spec = {
        "dsn": dsn,
        "workload": workload,
        "size": size,
        "concurrency": args.concurrency,
        "workdir": str(workdir),
        "label": system,
        "options": {"bare": args.bare},
    }
    started = time.monotonic()
    result: dict[str, Any] = {"system": system, "workload": workload}
    try:
        proc = subprocess.run(
            [
                python,
                str(ADAPTERS / SYSTEMS[system]["adapter"]),
                "run",
                json.dumps(spec),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=args.timeout,
            cwd=str(workroot),
            check=False,
        )
        printed = adapter_result(proc.stdout)
        if printed is not None:
            result = printed
        else:
            result["error"] = (
                f"adapter exited {proc.returncode} without a result: {proc.stderr[-2000:]}"
            )
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "driver.log").write_text(proc.stderr)
    except subprocess.TimeoutExpired:
        result["error"] = f"timed out after {args.timeout}s"
    finally:
        if not args.keep_db:
            drop_db(server, dbname)
    result["system"] = system
    result["repeat"] = repeat
    result["wall_seconds"] = time.monotonic() - started
    return result


def describe(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"skipped ({result['skipped']})"
    if "error" in result:
        return f"ERROR {result['error'][:300]}"
    metrics = result.get("metrics", {})
    shown = ", ".join(
        f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))
    )
    ok = result.get("checks", {}).get("ok")
    return f"{'ok' if ok else 'CHECK FAILED'}: {shown}"


# ---------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------


def _value(run: dict[str, Any], metric: str) -> float | None:
    """A run's metric, if it ran, passed its checks and measured it."""
    if "error" in run or not run.get("checks", {}).get("ok"):
        return None
    value = run.get("metrics", {}).get(metric)
    return value if isinstance(value, (int, float)) and value else None


def same_run_ratios(
    runs: list[dict[str, Any]],
    numerator: tuple[str, str, str],
    denominator: tuple[str, str, str],
) -> list[float]:
    """numerator ÷ denominator for every repeat in which both were measured."""
    (n_sys, n_wl, n_metric), (d_sys, d_wl, d_metric) = numerator, denominator
    ratios = []
    for run in runs:
        if run["system"] != n_sys or run["workload"] != n_wl:
            continue
        other = next(
            (
                r
                for r in runs
                if r["system"] == d_sys
                and r["workload"] == d_wl
                and r.get("repeat") == run.get("repeat")
            ),
            None,
        )
        mv = _value(run, n_metric)
        dv = _value(other, d_metric) if other is not None else None
        if mv is not None and dv is not None:
            ratios.append(mv / dv)
    return ratios


def evaluate_targets(
    runs: list[dict[str, Any]], systems: list[str], workloads: list[str]
) -> list[dict[str, Any]]:
    """Every target of :data:`TARGETS` as PASS, MISS (with the ratio) or n/a (why)."""
    out = []
    for label, num, den, op, bound in TARGETS:
        entry: dict[str, Any] = {
            "target": label,
            "numerator": list(num),
            "denominator": list(den),
            "op": op,
            "bound": bound,
        }
        missing = [
            f"{system} not in this run"
            for system in dict.fromkeys((num[0], den[0]))
            if system not in systems
        ]
        missing += [
            f"workload {wl} not in this run"
            for wl in dict.fromkeys((num[1], den[1]))
            if wl not in workloads
        ]
        ratios = [] if missing else same_run_ratios(runs, num, den)
        if ratios:
            ratio = statistics.median(ratios)
            ok = ratio <= bound if op == "<=" else ratio >= bound
            entry.update(ratio=ratio, ratios=ratios, verdict="PASS" if ok else "MISS")
        else:
            why = "; ".join(missing) or next(
                (
                    f"{r['system']} {r['workload']}: "
                    + (r.get("skipped") or r.get("error", "a check failed"))[:200]
                    for r in runs
                    if (r["system"], r["workload"])
                    in ((num[0], num[1]), (den[0], den[1]))
                    and (
                        "skipped" in r
                        or "error" in r
                        or not r.get("checks", {}).get("ok")
                    )
                ),
                "no measurement",
            )
            entry.update(verdict="n/a", why=why)
        out.append(entry)
    return out


def summarise(runs: list[dict[str, Any]], systems: list[str]) -> dict[str, Any]:
    rows = []
    for workload, metric, label, higher in METRICS:
        row: dict[str, Any] = {
            "workload": workload,
            "metric": metric,
            "label": label,
            "higher_is_better": higher,
            "systems": {},
        }
        present = False
        for system in systems:
            mine = [
                r for r in runs if r["system"] == system and r["workload"] == workload
            ]
            if not mine:
                continue
            present = True
            cell: dict[str, Any] = {}
            if all("skipped" in r for r in mine):
                cell["skipped"] = mine[0]["skipped"]
            values = [
                r["metrics"][metric]
                for r in mine
                if isinstance(r.get("metrics", {}).get(metric), (int, float))
            ]
            errors = [r["error"] for r in mine if "error" in r]
            failed = [r for r in mine if "checks" in r and not r["checks"].get("ok")]
            if values:
                cell["median"] = statistics.median(values)
                cell["values"] = values
            if errors:
                cell["errors"] = len(errors)
                cell["error"] = errors[0][:500]
            cell["checks_ok"] = not failed and not errors and bool(values)
            ratios = []
            for r in mine:
                base = next(
                    (
                        b
                        for b in runs
                        if b["system"] == BASELINE
                        and b["workload"] == workload
                        and b["repeat"] == r["repeat"]
                    ),
                    None,
                )
                mv = r.get("metrics", {}).get(metric)
                bv = (base or {}).get("metrics", {}).get(metric)
                if (
                    isinstance(mv, (int, float))
                    and isinstance(bv, (int, float))
                    and bv
                    and mv
                ):
                    ratios.append(mv / bv)
            if ratios:
                cell["ratio"] = statistics.median(ratios)
            if system != RAW and RAW in systems:
                vs_raw = same_run_ratios(
                    runs, (system, workload, metric), (RAW, workload, metric)
                )
                if vs_raw:
                    cell["ratio_raw"] = statistics.median(vs_raw)
            row["systems"][system] = cell
        if present:
            rows.append(row)
    return {"rows": rows}


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.1:
        return f"{value:.2f}"
    return f"{value:.2g}"


def markdown(summary: dict[str, Any], systems: list[str], meta: dict[str, Any]) -> str:
    names = {s: f"{s} {meta['versions'].get(s, '')}".strip() for s in systems}
    names["ours"] = f"ours ({meta['git']})"
    names[BASELINE] = f"original chancy {meta['versions'].get(BASELINE, '')}".strip()
    if RAW in systems:
        names[RAW] = f"raw SQL (psycopg {meta['versions'].get(RAW, '')})"
    vs_raw = "ours" in systems and RAW in systems
    out = [
        f"# Benchmark results ({meta['mode']}, {meta['repeats']} repeat(s), {meta['date']})",
        "",
        f"Machine: {meta['machine']}. PostgreSQL {meta['postgres']}. Concurrency {meta['concurrency']}."
        + (" Default plugins off (--bare)." if meta.get("bare") else ""),
        "",
        (
            "Each cell: median over repeats, and in parentheses the median per-repeat"
            " ratio to the original Chancy (↑ = higher is better, ↓ = lower is better)."
            " ✗ = a correctness check failed (exactly-once / finished in the database);"
            " n/a = the system has no such executor."
            + (
                " *ours ÷ raw*: ours as a fraction of the raw-SQL yardstick (median"
                " per-repeat ratio; for ↓ rows, ours' value over raw's)."
                if vs_raw
                else ""
            )
        ),
        "",
        "| workload | "
        + " | ".join(names[s] for s in systems)
        + (" | ours ÷ raw |" if vs_raw else " |"),
        "|---|" + "---:|" * (len(systems) + (1 if vs_raw else 0)),
    ]
    for row in summary["rows"]:
        arrow = "↑" if row["higher_is_better"] else "↓"
        cells = []
        for system in systems:
            cell = row["systems"].get(system)
            if cell is None:
                cells.append("")
                continue
            if "skipped" in cell:
                cells.append("n/a")
                continue
            if "median" not in cell:
                cells.append("error" if cell.get("errors") else "-")
                continue
            text = _fmt(cell["median"])
            if "ratio" in cell and system != BASELINE:
                text += f" ({cell['ratio']:.2f}×)"  # noqa: RUF001
            if not cell.get("checks_ok"):
                text += " ✗"
            cells.append(text)
        if vs_raw:
            ours = row["systems"].get("ours") or {}
            cells.append(f"{ours['ratio_raw']:.2f}" if "ratio_raw" in ours else "")
        out.append(f"| {row['label']} {arrow} | " + " | ".join(cells) + " |")
    errors = [
        (row["label"], s, c["error"])
        for row in summary["rows"]
        for s, c in row["systems"].items()
        if c.get("error")
    ]
    targets = summary.get("targets") or []
    if targets:
        out += [
            "",
            "Targets (issue 18; same-run ratios, median over repeats):",
            "",
            "| target | ratio | verdict |",
            "|---|---:|---|",
        ]
        for t in targets:
            ratio = f"{t['ratio']:.2f}" if "ratio" in t else "-"
            verdict = t["verdict"] + (f" ({t['why']})" if "why" in t else "")
            out.append(f"| {t['target']} | {ratio} | {verdict} |")
    if errors:
        out += ["", "Errors:", ""]
        seen = set()
        for label, system, err in errors:
            if (system, err) not in seen:
                seen.add((system, err))
                out.append(f"- {system} / {label}: `{err.splitlines()[0][:200]}`")
    out.append("")
    return "\n".join(out)


def _git() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "packages"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        ).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) if rev else "?"
    except OSError:
        return "?"


def _postgres_version(server: str) -> str:
    import psycopg

    with psycopg.connect(server) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma-separated, from {', '.join(SYSTEMS)} (default: all)",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, from {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="repeats per workload and system (default 3)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run of a few minutes"
    )
    parser.add_argument(
        "--dsn",
        help="server DSN (a role that may CREATE DATABASE); default:"
        " chancy._pgserver.get_server_dsn(), else postgresql://postgres@127.0.0.1:5432/postgres",
    )
    parser.add_argument(
        "--out", default=str(BENCH / "results"), help="output directory"
    )
    parser.add_argument(
        "--concurrency", type=int, default=50, help="worker concurrency (default 50)"
    )
    parser.add_argument(
        "--bare",
        action="store_true",
        help="Chancy (ours and original) with no_default_plugins=True",
    )
    parser.add_argument(
        "--steady-rate",
        type=float,
        default=None,
        help="steady state: offered load in jobs/s over all producers (default: as fast as they push)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="seconds per run before it is killed",
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="do not drop the databases afterwards"
    )
    parser.add_argument(
        "--no-chart", action="store_true", help="skip the PNG (needs the tools venv)"
    )
    args = parser.parse_args(argv)

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for s in systems:
        if s not in SYSTEMS:
            parser.error(f"unknown system {s!r}")
    for w in workloads:
        if w not in WORKLOADS:
            parser.error(f"unknown workload {w!r}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    workroot = out / "runs" / stamp
    workroot.mkdir(parents=True, exist_ok=True)

    local = [s for s in systems if SYSTEMS[s]["venv"] is None]
    extra_env = dict.fromkeys(local, _ours_env()) if local else {}
    server = server_dsn(args.dsn)
    versions = {}
    for s in systems:
        python, env = interpreter(s, extra_env)
        versions[s] = version_of(s, python, env)
    meta = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "repeats": args.repeats,
        "concurrency": args.concurrency,
        "bare": args.bare,
        "steady_rate": args.steady_rate,
        "sizes": {w: SIZES["quick" if args.quick else "full"][w] for w in workloads},
        "git": _git(),
        "versions": versions,
        "postgres": _postgres_version(server),
        "machine": f"{os.cpu_count()} CPU(s), {sys.platform}, Python {sys.version.split()[0]}",
        "systems": systems,
        "workloads": workloads,
    }
    log(
        f"systems: {', '.join(f'{s} {versions[s]}' for s in systems)}; workloads: {', '.join(workloads)}"
    )

    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        for workload in workloads:
            order = systems if repeat % 2 == 0 else systems[::-1]
            for system in order:
                result = run_one(
                    system, workload, repeat, args, server, extra_env, workroot
                )
                runs.append(result)
                log(f"r{repeat} {workload:<19} {system:<13} {describe(result)}")
                (workroot / "runs.json").write_text(
                    json.dumps({"meta": meta, "runs": runs}, indent=1)
                )

    summary = summarise(runs, systems)
    summary["targets"] = evaluate_targets(runs, systems, workloads)
    report = {"meta": meta, "summary": summary, "runs": runs}
    (out / "latest.json").write_text(json.dumps(report, indent=1))
    table = markdown(summary, systems, meta)
    (out / "latest.md").write_text(table)
    print(table)
    if not args.no_chart:
        try:
            tools = ensure_venv("tools")
            subprocess.run(
                [
                    str(tools),
                    str(BENCH / "plot.py"),
                    str(out / "latest.json"),
                    str(out / "latest.png"),
                ],
                check=True,
            )
            log(f"chart: {out / 'latest.png'}")
        except Exception as exc:
            log(f"no chart ({exc})")
    bad = [
        r for r in runs if "error" in r or ("checks" in r and not r["checks"].get("ok"))
    ]
    if bad:
        log(f"{len(bad)} run(s) failed or failed a correctness check; see {workroot}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
