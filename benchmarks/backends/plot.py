"""The figure: mean parameter width per step of the comparison, sweep and mini-batch runs."""
from __future__ import annotations

import numpy as np


def plot(cmp_runs: list[dict], mb_runs: list[dict], sweep: list[dict], path: str, cmp_title: str, mb_title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    # the sweep's seed-0 runs at the largest eps: interval vs MIBP over all epochs, per width
    eps_max = max((r["eps"] for r in sweep), default=None)
    sw_runs = []
    for r in sweep:
        if r["seed"] == 0 and r["eps"] == eps_max:
            iv = dict(r["iv"], label=f"h {r['hidden']} interval")
            sw_runs.append(iv)
            if r["mibp"] is not None:
                sw_runs.append(dict(r["mibp"], label=f"h {r['hidden']} highs-lp joint"))
    panels = [(cmp_runs, cmp_title), (sw_runs, f"accuracy-sweep runs, seed 0, eps {eps_max:g}" if eps_max else ""),
              (mb_runs, mb_title)]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    for ax, (runs, title) in zip(axes, panels):
        for r in runs:
            if not r.get("ok") or "mean_width" not in r:
                continue
            steps = np.arange(1, len(r["mean_width"]) + 1)
            iv = r["method"] == "interval"
            style = "-" if iv else ("--" if r["mode"] == "per_sample" else "-.")
            ax.plot(steps, r["mean_width"], style, marker="o", ms=3, label=r["label"], lw=2.2 if iv else 1.3)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("SGD step")
        ax.set_ylabel("mean parameter width")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
