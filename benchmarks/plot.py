"""Draw ``latest.png`` from ``latest.json``: every metric as a speed-up over
the original Chancy (higher is better; lower-is-better metrics are inverted).

Run by ``python -m benchmarks`` with the tools virtualenv (matplotlib), or by
hand: ``benchmarks/.venvs/tools/bin/python benchmarks/plot.py IN.json OUT.png``.
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BASELINE = "chancy"
COLORS = {
    "ours": "#1b9e77",
    "chancy": "#7570b3",
    "procrastinate": "#d95f02",
    "pgqueuer": "#e7298a",
}


def main(src: str, dst: str) -> None:
    with open(src) as fh:
        report = json.load(fh)
    meta = report["meta"]
    systems = meta["systems"]
    # RSS growth is an absolute "is memory flat" number: near 0 for every
    # good system, so a ratio of two near-zero values says nothing.
    rows = [
        r
        for r in report["summary"]["rows"]
        if r["metric"] != "rss_growth_mb"
        and any("ratio" in c for c in r["systems"].values())
    ]
    if not rows:
        print("nothing to plot (no baseline ratios)", file=sys.stderr)
        return
    labels = [r["label"] for r in rows]
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(min(16, max(8, 0.7 * len(rows) + 3)), 7))
    for i, system in enumerate(systems):
        xs, ys = [], []
        for j, row in enumerate(rows):
            cell = row["systems"].get(system, {})
            ratio = cell.get("ratio")
            if ratio:
                xs.append(j + (i - (len(systems) - 1) / 2) * width)
                ys.append(ratio if row["higher_is_better"] else 1 / ratio)
        name = "original chancy" if system == BASELINE else system
        ax.bar(xs, ys, width, label=name, color=COLORS.get(system))
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("× original Chancy (higher is better)")  # noqa: RUF001
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=40, ha="right", fontsize=8)
    ax.set_title(
        f"Chancy benchmarks ({meta['mode']}, {meta['repeats']} repeat(s), git {meta['git']})"
    )
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
