"""Scaling of certified training: seconds per training step vs hidden width, batch size and workers.

Setting: Two-Moons (``mibpcert.data.two_moons``: ``make_moons`` noise 0.1, seed 0, unscaled), B
training points trained **full batch** (the data set is the batch, so one step is one epoch), a
2-h-1 ReLU MLP (``mlp([2, h, 1], seed=0)``, float64), hinge loss, lr 0.2 (the MIBP-Cert setting of
``benchmarks/backends``), ``LinfFeatures(0.01)`` on every training point, ``--steps`` steps (3).
Methods (``TrainConfig`` fields):

* ``interval``: ``method="interval"``;
* ``affine``: ``method="affine"`` (affine forms, no solver);
* ``per_sample``: ``method="mibp", mode="per_sample", relax="lp"`` (HiGHS, McCormick LP);
* ``joint``: ``method="mibp", mode="joint", relax="lp"``;
* ``relational``: ``method="mibp", mode="joint", relax="lp", relational=True``.

All MIBP rows use ``time_limit=--time-limit`` (20 s) per objective. Sweeps: hidden width h in
``--widths`` (8 16 32 64) at B = ``--width-batch`` (50); batch size B in ``--batches`` (25 50 100
200) at h = ``--batch-width`` (16); workers 1 and 2 for ``per_sample`` and ``joint`` at
``--workers-size`` (h 16, B 100); and the issue's target row, joint at h 20, B 100 (Moons-100).

Time per step = the median of ``StepLog.seconds`` over steps 2..S (step 1 starts from a point box,
whose programs are much cheaper, so it is shown apart); the process pool of ``workers=2`` starts
before step 1 and is not in any step. ``solver`` = ``StepLog.solver_seconds`` (``StepTightener.solve``
times building the programs and bounding them), ``rest`` = the interval/affine step, the nominal
step and the checks.

Sizes run smallest first; a size whose estimated step time exceeds ``--budget`` (60 s) is skipped
and printed as "skipped (est. N s)". The estimate extrapolates from the largest measured size of the
same method and sweep with the slope of its two largest measured sizes on a log-log scale (at least
1), or with exponent 2 when only one size was measured; the first size of a sweep (and the workers
and target rows) from the nearest measured size of any sweep, scaled by both sweeps' exponents. Growth exponents are least-squares fits of
log(time) on log(size) over the measured sizes. "Where the time goes": solver vs rest at the largest
measured size of every MIBP method, and a cProfile of one joint step at the largest measured joint
size (the probe state and profile groups of ``benchmarks/backends``: build / relax / HiGHS / dual
bound).

Usage (from the repository root)::

    python benchmarks/scaling.py --quick      # smoke check, smallest sizes, ~1-2 min
    python benchmarks/scaling.py              # ~15-25 min on a loaded 2-core machine (13 min at load 4.5)
    python benchmarks/scaling.py --budget 120 --save-raw /tmp/scaling.json
    python benchmarks/scaling.py --from-raw /tmp/scaling.json   # rewrite the .md/.png only
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time

import torch
from common import cpu_description, fmt, say, verdict, versions, write_result

from mibpcert import TrainConfig, certified_train, mlp
from mibpcert.data import two_moons
from mibpcert.threats import LinfFeatures

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

METHODS = {
    "interval": dict(method="interval"),
    "affine": dict(method="affine"),
    "per_sample": dict(method="mibp", mode="per_sample", relax="lp"),
    "joint": dict(method="mibp", mode="joint", relax="lp"),
    "relational": dict(method="mibp", mode="joint", relax="lp", relational=True),
}
MIBP = ("per_sample", "joint", "relational")
WORKER_METHODS = ("per_sample", "joint")
TARGET_SIZE = (20, 100)  # Moons-100, 2-20-1: one full-batch step = one epoch
TARGET_SEC = 10.0  # joint LP, s/epoch on 2 cores
TARGET_SPEEDUP = 1.6  # 2 workers vs 1, joint step, idle machine
QUIET_LOAD = 0.5  # 1-minute load average at the start below which nothing else is taken to run
PRIOR_EXPONENT = 2.0  # skip estimate when one size of a sweep is measured
LOSS, SEED = "hinge", 0


def quiet(R: dict) -> bool:
    """Whether the machine ran nothing else when the benchmark started (the load averages during the
    run include the benchmark's own worker processes, so they cannot tell)."""
    return R["load_start"][0] < QUIET_LOAD


# ------------------------------------------------------------------------------------------------
# one measurement
# ------------------------------------------------------------------------------------------------
def measure(method: str, h: int, B: int, workers: int, args) -> dict:
    """One ``certified_train`` run of ``args.steps`` full-batch steps; its step times."""
    d = two_moons(n_train=B, n_test=0, noise=0.1, seed=SEED)
    cfg = TrainConfig(epochs=args.steps, lr=args.lr, batch_size=B, loss=LOSS, time_limit=args.time_limit,
                      workers=workers, **METHODS[method])
    t0 = time.perf_counter()
    res = certified_train(mlp([2, h, 1], seed=SEED), d.X_train, d.y_train, LinfFeatures(args.eps), cfg)
    wall = time.perf_counter() - t0
    log = res.log
    later = log[1:] or log
    reasons: dict[str, int] = {}
    for s in log:
        for k, v in s.fallback_reasons.items():
            reasons[k] = reasons.get(k, 0) + v
    return dict(
        method=method, h=h, B=B, workers=workers, status="ok",
        step=statistics.median(s.seconds for s in later),
        solver=statistics.median(s.solver_seconds for s in later),
        rest=statistics.median(s.seconds - s.solver_seconds for s in later),
        step1=log[0].seconds, steps=[s.seconds for s in log], solver_steps=[s.solver_seconds for s in log],
        wall=wall, startup=wall - sum(s.seconds for s in log),
        solver_sides=sum(s.solver_bounds for s in log), fallback_sides=sum(s.fallback_bounds for s in log),
        skipped=sum(s.skipped_objectives for s in log),
        reasons=reasons, width_ratio=log[-1].width_ratio, mean_width=log[-1].mean_width,
        load=os.getloadavg()[0],
    )


def fit(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(time) on log(size); None below two distinct sizes."""
    pts = [(math.log(s), math.log(t)) for s, t in points if t > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = statistics.fmean(x for x, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def estimate(points: list[tuple[float, float]], size: float) -> float | None:
    """Step time at ``size`` extrapolated from the largest measured size (see module docstring)."""
    if not points:
        return None
    pts = sorted(points)
    s1, t1 = pts[-1]
    if len(pts) == 1:
        e = PRIOR_EXPONENT
    else:
        s0, t0 = pts[-2]
        e = max(1.0, math.log(t1 / t0) / math.log(s1 / s0)) if t0 > 0 and t1 > 0 else PRIOR_EXPONENT
    return t1 * (size / s1) ** e


class Runner:
    """Measures configurations once each (the sweeps share sizes), skipping those over budget."""

    def __init__(self, args) -> None:
        self.args = args
        self.done: dict[tuple, dict] = {}

    def run(self, method: str, h: int, B: int, workers: int, est: float | None) -> dict:
        key = (method, h, B, workers)
        if key in self.done and self.done[key]["status"] == "ok":
            return self.done[key]
        if est is not None and est > self.args.budget:
            row = dict(method=method, h=h, B=B, workers=workers, status="skipped", est=est)
            say(f"  {method:<10} h {h:>3} B {B:>3} w {workers}: skipped (est. {est:.0f} s)")
        else:
            try:
                row = measure(method, h, B, workers, self.args)
                row["est"] = est
                say(f"  {method:<10} h {h:>3} B {B:>3} w {workers}: {row['step']:8.3f} s/step "
                    f"(step 1 {row['step1']:.3f} s, solver {row['solver']:.2f} s, fallback sides {row['fallback_sides']}, "
                    f"load {row['load']:.1f}" + (f", est. was {est:.1f} s" if est is not None else "") + ")")
            except Exception as e:  # a failed size is a result, not the end of the benchmark
                row = dict(method=method, h=h, B=B, workers=workers, status="failed", est=est,
                           note=f"{type(e).__name__}: {str(e)[:200]}")
                say(f"  {method:<10} h {h:>3} B {B:>3} w {workers}: FAILED {row['note']}")
        self.done[key] = row
        return row

    def sweep(self, method: str, sizes: list[tuple[int, int]], axis: int) -> list[dict]:
        """The sizes (h, B) in order; ``axis`` 0 = width sweep, 1 = batch sweep."""
        rows, pts = [], []
        for h, B in sizes:
            size = (h, B)[axis]
            est = estimate(pts, size) if pts else predict(self, method, h, B)  # first size: from the other sweep
            row = self.run(method, h, B, 1, est)
            rows.append(row)
            if row["status"] == "ok":
                pts.append((size, row["step"]))
        return rows


# ------------------------------------------------------------------------------------------------
# the cProfile of one joint step (reuses benchmarks/backends)
# ------------------------------------------------------------------------------------------------
def profile_joint(h: int, B: int, args) -> dict:
    """cProfile of one joint HiGHS-LP step at (h, B): state after 2 interval steps (step 3), the
    groups of ``benchmarks.backends.profiling`` (no time limit there)."""
    if ROOT not in sys.path:
        sys.path.append(ROOT)
    from benchmarks.backends.probe import step_state
    from benchmarks.backends.profiling import profile_step

    d = two_moons(n_train=B, n_test=0, noise=0.1, seed=SEED)
    st = step_state(d, [2, h, 1], SEED, args.eps, args.lr, LOSS, B, 2)
    p = profile_step(st, "joint", "lp")
    p.update(h=h, B=B)
    return p


PROFILE_SPLIT = [  # (label, keys of profile_step's "cum")
    ("build the program (`programs`)", ("programs",)),
    ("McCormick relaxation (`relax`)", ("relax",)),
    ("HiGHS model load (`_load`)", ("_load",)),
    ("HiGHS simplex (`run`)", ("run",)),
    ("rigorous dual bound (`safe_lp_bound`)", ("safe_lp_bound",)),
]


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
def cell(row: dict | None, key: str = "step") -> str:
    if row is None:
        return "–"
    if row["status"] == "skipped":
        return f"skipped (est. {row['est']:.0f} s)"
    if row["status"] == "failed":
        return "failed"
    v = row[key]
    s = f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 10 else f"{v:.1f}"
    return s + (" ⏱" if row.get("reasons", {}).get("time_limit") else "")


def secs(v: float) -> str:
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 10 else f"{v:.1f}"


def find(rows: list[dict], method: str, h: int, B: int, w: int = 1) -> dict | None:
    for r in rows:
        if (r["method"], r["h"], r["B"], r["workers"]) == (method, h, B, w):
            return r
    return None


def sweep_table(R: dict, axis: int) -> str:
    a = R["args"]
    sizes = a["widths"] if axis == 0 else a["batches"]
    label = "h" if axis == 0 else "B"
    lines = [f"| {label} | " + " | ".join(R["methods"]) + " |", "|---:|" + "---:|" * len(R["methods"])]
    for s in sizes:
        h, B = (s, a["width_batch"]) if axis == 0 else (a["batch_width"], s)
        lines.append(f"| {s} | " + " | ".join(cell(find(R["rows"], m, h, B)) for m in R["methods"]) + " |")
    return "\n".join(lines)


def top_slope(R: dict, m: str, axis: int) -> float | None:
    """Log-log slope between the two largest measured sizes of a sweep."""
    a = R["args"]
    pts = []
    for s in (a["widths"] if axis == 0 else a["batches"]):
        h, B = (s, a["width_batch"]) if axis == 0 else (a["batch_width"], s)
        r = find(R["rows"], m, h, B)
        if r is not None and r["status"] == "ok":
            pts.append((s, r["step"]))
    return fit(pts[-2:]) if len(pts) >= 2 else None


def exponents(R: dict) -> dict[tuple[str, int], tuple[float | None, int]]:
    a = R["args"]
    out = {}
    for m in R["methods"]:
        for axis, sizes in ((0, a["widths"]), (1, a["batches"])):
            pts = []
            for s in sizes:
                h, B = (s, a["width_batch"]) if axis == 0 else (a["batch_width"], s)
                r = find(R["rows"], m, h, B)
                if r is not None and r["status"] == "ok":
                    pts.append((s, r["step"]))
            out[(m, axis)] = (fit(pts), len(pts))
    return out


def exponent_table(R: dict, ex) -> str:
    a = R["args"]
    lines = [f"| method | width h (B {a['width_batch']}) | slope, two largest h | batch B (h {a['batch_width']}) | "
             "slope, two largest B |", "|---|---:|---:|---:|---:|"]
    for m in R["methods"]:
        c = []
        for axis in (0, 1):
            e, n = ex[(m, axis)]
            c.append(f"{e:.2f} ({n} sizes)" if e is not None else f"– ({n} size{'s' if n != 1 else ''})")
            c.append(fmt(top_slope(R, m, axis), ".2f"))
        lines.append(f"| {m} | " + " | ".join(c) + " |")
    return "\n".join(lines)


def workers_table(R: dict) -> tuple[str, dict]:
    h, B = R["args"]["workers_size"]
    lines = ["| method | h | B | 1 worker s/step | 2 workers s/step | speed-up | outside the steps s (2 workers: pool start and close, set-up) | load |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    speed = {}
    for m in WORKER_METHODS:
        r1, r2 = find(R["rows"], m, h, B, 1), find(R["rows"], m, h, B, 2)
        ok = r1 is not None and r2 is not None and r1["status"] == r2["status"] == "ok"
        sp = r1["step"] / r2["step"] if ok else None
        speed[m] = sp
        lines.append(f"| {m} | {h} | {B} | {cell(r1)} | {cell(r2)} | {fmt(sp, '.2f')}{'×' if sp else ''} | "
                     f"{fmt(r2['startup'] if ok else None, '.1f')} | "
                     f"{fmt(r1['load'] if ok else None, '.1f')} / {fmt(r2['load'] if ok else None, '.1f')} |")
    return "\n".join(lines), speed


def largest(R: dict, m: str) -> dict | None:
    """The measured workers=1 row of method ``m`` with the most hidden units × samples (ties: time)."""
    ok = [r for r in R["rows"] if r["method"] == m and r["workers"] == 1 and r["status"] == "ok"]
    return max(ok, key=lambda r: (r["h"] * r["B"], r["step"])) if ok else None


def where_table(R: dict) -> str:
    lines = ["| method | h | B | s/step | solver s (share) | rest s (share) | step 1 s | solver / fallback sides | last step width ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in R["methods"]:
        r = largest(R, m)
        if r is None:
            continue
        t = r["step"]
        lines.append(f"| {m} | {r['h']} | {r['B']} | {secs(t)} | {secs(r['solver'])} ({100 * r['solver'] / t:.0f}%) | "
                     f"{secs(r['rest'])} ({100 * r['rest'] / t:.0f}%) | {secs(r['step1'])} | "
                     f"{r['solver_sides']} / {r['fallback_sides']} | {r['width_ratio']:.3f} |")
    return "\n".join(lines)


def detail_table(R: dict) -> str:
    lines = ["| method | h | B | workers | s/step (median steps 2..S) | each step s | solver s/step | solver sides/step | "
             "ms per side | skipped objectives/step | est. before run s | fallback sides (reasons) | load (1 min) |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in sorted(R["rows"], key=lambda r: (list(METHODS).index(r["method"]), r["workers"], r["h"], r["B"])):
        if r["status"] != "ok":
            lines.append(f"| {r['method']} | {r['h']} | {r['B']} | {r['workers']} | {cell(r)} | {r.get('note', '')} | | | | | "
                         f"{fmt(r.get('est'), '.1f')} | | |")
            continue
        reasons = ", ".join(f"{k} {v}" for k, v in r["reasons"].items())
        sides = (r["solver_sides"] + r["fallback_sides"]) / len(r["steps"])
        per_side = fmt(1e3 * r["solver"] / sides, ".2f") if sides else "–"
        skipped = f"{r['skipped'] / len(r['steps']):.0f}" if "skipped" in r else "–"  # raw files before the column: –
        lines.append(f"| {r['method']} | {r['h']} | {r['B']} | {r['workers']} | {secs(r['step'])} | "
                     f"{' / '.join(secs(s) for s in r['steps'])} | {secs(r['solver'])} | {sides:.0f} | {per_side} | "
                     f"{skipped} | {fmt(r.get('est'), '.1f')} | "
                     f"{r['fallback_sides']}{f' ({reasons})' if reasons else ''} | {r['load']:.1f} |")
    return "\n".join(lines)


def profile_section(p: dict | None) -> str:
    if not p:
        return "Not run (`--no-profile`, or no joint size was measured)."
    total = p["cum"].get("tighten", p["wall"])
    lines = [f"One joint HiGHS-LP step at h {p['h']}, B {p['B']} (state after 2 interval steps, no time limit; "
             f"{p['wall']:.1f} s under cProfile, `tighten()` {total:.1f} s):", "",
             "| part | seconds | share |", "|---|---:|---:|"]
    named = 0.0
    for label, keys in PROFILE_SPLIT:
        v = sum(p["cum"].get(k, 0.0) for k in keys)
        named += v
        lines.append(f"| {label} | {v:.2f} | {100 * v / total:.0f}% |")
    # run and safe_lp_bound are inside bound(); _load too: "other" = tighten - the named groups
    lines.append(f"| other (solve loop, objectives, intersecting the boxes) | {total - named:.2f} | {100 * (total - named) / total:.0f}% |")
    lines += ["", "Top functions by own time:", "", "```", p["top"], "```"]
    return "\n".join(lines)


def notes(R: dict, ex, speed) -> list[str]:
    """Observations computed from the numbers."""
    out = []
    a = R["args"]
    ratios = []
    for m in MIBP:
        ok = [r for r in R["rows"] if r["method"] == m and r["workers"] == 1 and r["status"] == "ok" and r["step1"] > 0]
        if ok:
            ratios.append(f"`{m}` {statistics.median(r['step'] / r['step1'] for r in ok):.1f}×")
    if ratios:
        out.append("A later step costs " + ", ".join(ratios) + " step 1 (median over the sizes): step 1 starts from a "
                   "point box (every bilinear term has a fixed factor, no ReLU can switch), so timing step 1 alone "
                   "understates the cost of training.")
    for m in ("interval", "affine"):
        ok = [r["step"] for r in R["rows"] if r["method"] == m and r["status"] == "ok"]
        if ok and max(ok) < 0.05:
            out.append(f"`{m}` takes {1e3 * min(ok):.0f}-{1e3 * max(ok):.0f} ms per step at every size: per-operator "
                       "dispatch, not arithmetic, so its exponents are noise.")
    for (m, axis), (e, n) in ex.items():
        top = top_slope(R, m, axis)
        if e is not None and max(e, top or 0) > 2.0:
            out.append(f"`{m}` grows faster than quadratically in {'h' if axis == 0 else 'B'} (exponent {e:.2f} over {n} "
                       f"sizes, {top:.2f} between the two largest).")
    for m in MIBP:
        for axis in (0, 1):
            sizes = a["widths"] if axis == 0 else a["batches"]
            pts = []
            for sz in sizes:
                h, B = (sz, a["width_batch"]) if axis == 0 else (a["batch_width"], sz)
                r = find(R["rows"], m, h, B)
                if r is not None and r["status"] == "ok" and r["solver_sides"]:
                    sides = (r["solver_sides"] + r["fallback_sides"]) / len(r["steps"])
                    pts.append((sz, sides, 1e3 * r["solver"] / sides))
            if len(pts) >= 2:
                (s0, n0, t0), (s1, n1, t1) = pts[0], pts[-1]
                what = "h" if axis == 0 else "B"
                out.append(f"`{m}`, {what} {s0} → {s1}: objective sides per step {n0:.0f} → {n1:.0f} ({n1 / n0:.1f}×), "
                           f"solver time per side {t0:.1f} → {t1:.1f} ms ({t1 / t0:.1f}×).")
    skipped = [r for r in R["rows"] if r["status"] == "skipped"]
    if skipped:
        out.append("Skipped (estimated step time over the budget of "
                   f"{a['budget']:g} s): " + "; ".join(f"{r['method']} h {r['h']} B {r['B']}"
                                                       + (f" w {r['workers']}" if r["workers"] > 1 else "")
                                                       + f" (est. {r['est']:.0f} s)" for r in skipped) + ".")
    failed = [r for r in R["rows"] if r["status"] == "failed"]
    if failed:
        out.append("Failed: " + "; ".join(f"{r['method']} h {r['h']} B {r['B']}: {r['note']}" for r in failed) + ".")
    tl = [r for r in R["rows"] if r["status"] == "ok" and r["reasons"].get("time_limit")]
    if tl:
        out.append("Objectives stopped by the time limit (⏱ in the tables; their time is capped, their side keeps the "
                   "interval bound): " + "; ".join(f"{r['method']} h {r['h']} B {r['B']}: {r['reasons']['time_limit']} sides"
                                                   for r in tl) + ".")
    for m, sp in speed.items():
        if sp is not None and sp < 1:
            out.append(f"`{m}` with 2 workers is **slower** than with 1 ({sp:.2f}×) at this load.")
    for h, B in [(r["h"], r["B"]) for r in R["rows"] if r["method"] == "relational" and r["status"] == "ok" and r["workers"] == 1]:
        j, rel = find(R["rows"], "joint", h, B), find(R["rows"], "relational", h, B)
        if j is not None and j["status"] == "ok":
            out.append(f"h {h}, B {B}: relational {secs(rel['step'])} s vs joint {secs(j['step'])} s per step "
                       f"({rel['step'] / j['step']:.1f}×).")
    return out


def plot(R: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    a = R["args"]
    colors = dict(interval="tab:gray", affine="tab:green", per_sample="tab:blue", joint="tab:orange", relational="tab:red")
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), gridspec_kw=dict(width_ratios=[1, 1, 0.7]))
    ticks = FuncFormatter(lambda v, _: f"{v:g}")

    def log_axes(ax, xs, subs=(1.0, 3.0)):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.xaxis.set_major_formatter(ticks)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.yaxis.set_major_formatter(ticks)
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", alpha=0.3)

    def place_labels(ax, labels):
        """Labels right of the line ends, pushed apart vertically (log scale) so they do not overlap."""
        lo, hi = (math.log10(v) for v in ax.get_ylim())
        gap = 0.045 * (hi - lo)
        placed = []
        for x, y, text, color in sorted(labels, key=lambda t: t[1]):
            ly = math.log10(y)
            if placed and ly < placed[-1] + gap:
                ly = placed[-1] + gap
            placed.append(ly)
            ax.annotate(text, (x, y), xytext=(x * 1.04, 10 ** ly), textcoords="data", fontsize=8, color=color,
                        va="center")

    labels: list = []
    for axis, ax in enumerate(axes[:2]):
        sizes = a["widths"] if axis == 0 else a["batches"]
        for m in R["methods"]:
            xs, ys, ex_x, ex_y = [], [], [], []
            for s in sizes:
                h, B = (s, a["width_batch"]) if axis == 0 else (a["batch_width"], s)
                r = find(R["rows"], m, h, B)
                if r is None:
                    continue
                if r["status"] == "ok":
                    xs.append(s)
                    ys.append(r["step"])
                elif r["status"] == "skipped":
                    ex_x.append(s)
                    ex_y.append(r["est"])
            ax.plot(xs, ys, "o-", color=colors[m])
            if ex_x and xs:
                ax.plot([xs[-1]] + ex_x, [ys[-1]] + ex_y, ":", color=colors[m], alpha=0.6)
                ax.plot(ex_x, ex_y, "x", color=colors[m], ms=8, mew=2, alpha=0.8)
            e = R["exponents"].get(f"{m}/{axis}")
            if e is not None:  # the fitted exponent at the line's end
                labels.append((xs[-1], ys[-1], f"^{e:.2f}", colors[m]))
        ax.axhline(a["budget"], color="k", lw=0.8, ls="--")
        log_axes(ax, sizes)
        ax.set_xlim(sizes[0] / 1.15, sizes[-1] * 1.35)
        place_labels(ax, labels)
        labels.clear()
        ax.set_xlabel(f"hidden width h (batch B = {a['width_batch']})" if axis == 0 else f"batch size B (h = {a['batch_width']})")
        ax.set_ylabel("seconds per step (median of steps 2..S)")
        ax.set_title(("width sweep" if axis == 0 else "batch sweep") + " (^ = fitted exponent)")
    ax = axes[2]
    h, B = a["workers_size"]
    for m in WORKER_METHODS:
        xs, ys = [], []
        for w in (1, 2):
            r = find(R["rows"], m, h, B, w)
            if r is not None and r["status"] == "ok":
                xs.append(w)
                ys.append(r["step"])
        if xs:
            ax.plot(xs, ys, "o-", color=colors[m])
            ax.plot([1, 2], [ys[0], ys[0] / 2], ":", color=colors[m], alpha=0.5)
            if len(ys) == 2:
                ax.annotate(f"speed-up {ys[0] / ys[1]:.2f}×", (2, ys[1]), textcoords="offset points", xytext=(6, -3),
                            fontsize=8, color=colors[m])
    log_axes(ax, [1, 2], subs=(1.0, 2.0, 5.0))
    ax.set_xlim(0.9, 3.3)
    ax.set_xlabel(f"workers (h = {h}, B = {B})")
    ax.set_ylabel("seconds per step")
    ax.set_title(f"workers (load {R['load_start'][0]:.1f} → {R['load_end'][0]:.1f}, {os.cpu_count()} cores)")
    handles = [Line2D([], [], color=colors[m], marker="o", label=m) for m in R["methods"]]
    handles += [Line2D([], [], color="k", marker="x", ls=":", label="skipped: estimated"),
                Line2D([], [], color="k", ls="--", lw=0.8, label=f"budget {a['budget']:g} s/step (skip above)"),
                Line2D([], [], color="k", ls=":", alpha=0.5, label="workers: ideal (time / workers)")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.suptitle("mibpcert certified training: time per step vs size (Two-Moons, full batch, 2-h-1 MLP, hinge, "
                 f"eps {a['eps']:g}, HiGHS LP)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(R: dict, md_path: str, png_path: str) -> str:
    a = R["args"]
    ex = exponents(R)
    R["exponents"] = {f"{m}/{axis}": e for (m, axis), (e, _) in ex.items()}
    wt, speed = workers_table(R)
    th, tb = TARGET_SIZE
    t_row = find(R["rows"], "joint", th, tb)
    if t_row is not None and t_row["status"] == "ok":
        t1 = (f"Moons-100 h {th} joint LP ≤ {TARGET_SEC:g} s/epoch on 2 cores: {secs(t_row['step'])} s/epoch "
              f"(one full-batch step; load {t_row['load']:.1f}) — "
              + verdict(t_row["step"], TARGET_SEC, at_most=True, spec=".1f", unit=" s", factor=True))
    else:
        t1 = (f"Moons-100 h {th} joint LP ≤ {TARGET_SEC:g} s/epoch on 2 cores: not measured "
              f"({cell(t_row) if t_row else 'not run'})" + (
                  f"; the estimate is {t_row['est'] / TARGET_SEC:.1f}× the target" if t_row and t_row.get("est") else ""))
    sp = speed.get("joint")
    wh, wb = a["workers_size"]
    if sp is not None:
        r1, r2 = find(R["rows"], "joint", wh, wb, 1), find(R["rows"], "joint", wh, wb, 2)
        t2 = (f"2 workers ≥ {TARGET_SPEEDUP:g}× faster than 1 (joint step, h {wh}, B {wb}): {sp:.2f}× — "
              + verdict(sp, TARGET_SPEEDUP, at_most=False, spec=".2f")
              + (f"; measured with nothing else running (1-minute load {R['load_start'][0]:.2f} at the start; the load "
                 f"averages {r1['load']:.1f} and {r2['load']:.1f} after the rows are the benchmark's own processes)"
                 if quiet(R) else
                 f"; measured at load averages {r1['load']:.1f} and {r2['load']:.1f} on {os.cpu_count()} cores, "
                 "**not an idle machine**, so this does not decide the target"))
    else:
        t2 = f"2 workers ≥ {TARGET_SPEEDUP:g}× faster than 1 (joint step): not measured"
    la, lb = R["load_start"], R["load_end"]
    md = [
        "# Scaling: seconds per certified training step" + (" (quick mode)" if a["quick"] else ""),
        "",
        f"Generated by `python benchmarks/scaling.py{' --quick' if a['quick'] else ''}` on {R['date']}; "
        f"total runtime {R['runtime'] / 60:.1f} min. {versions()}, {cpu_description()}, torch threads {a['threads']}; "
        f"load average (1/5/15 min) {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f} at the start, "
        f"{lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f} at the end" + (
            ": nothing else ran when it started; the load during the run is the benchmark's own (each row lists "
            "the 1-minute load when it finished)." if quiet(R) else
            ": the machine was shared with other work, so every time here is noisy (each row lists the 1-minute "
            "load when it finished)."),
        "",
        "## Setting",
        "",
        f"Two-Moons (`two_moons(n_train=B, noise=0.1, seed=0)`, unscaled), **full batch** (the B points are the "
        f"batch, one step = one epoch), 2-h-1 ReLU MLP (`mlp([2, h, 1], seed=0)`, float64), hinge loss, lr {a['lr']:g}, "
        f"`LinfFeatures({a['eps']:g})` on every point, {a['steps']} steps per run. MIBP rows: HiGHS, McCormick LP "
        f"(`relax='lp'`), `time_limit={a['time_limit']:g}` s per objective. Methods: `interval`; `affine` "
        "(`method='affine'`); `per_sample` and `joint` (`method='mibp'`, that mode); `relational` (`method='mibp', "
        "mode='joint', relational=True`).",
        "",
        "**s/step** = median of `StepLog.seconds` over steps 2..S: step 1 starts from a point box and is much "
        "cheaper (listed in the details), and the worker pool starts before step 1, outside every step. These are "
        "early steps from a seeded init with narrow boxes; later in training wider boxes leave more ReLUs unstable "
        "and a program of the same size can cost far more (`results/backends.md`: a 100-sample joint program of a "
        "mini-batch run took ~1,800 s later in training). "
        f"Sizes run smallest first; a size whose estimated step time exceeds the budget ({a['budget']:g} s, "
        "`--budget`) is skipped. The estimate extrapolates from the largest measured size of the same method and "
        "sweep with the log-log slope of its two largest measured sizes (at least 1; exponent "
        f"{PRIOR_EXPONENT:g} after one size). ⏱ = some objectives stopped at the time limit.",
        "",
        f"## Width sweep (B = {a['width_batch']}), seconds per step",
        "",
        sweep_table(R, 0),
        "",
        f"## Batch sweep (h = {a['batch_width']}), seconds per step",
        "",
        sweep_table(R, 1),
        "",
        "## Workers (`workers=2`: a local pool of 2 processes; per_sample shares out the programs, joint the "
        "objectives of its one program)",
        "",
        wt,
        "",
        "*Outside the steps* is mostly starting and closing the pool: `spawn` re-runs the main module's imports in "
        "every worker, and this script (like most user scripts) imports torch at the top.",
        "",
        "## Growth exponents",
        "",
        "Least-squares slope of log(s/step) on log(size) over the measured sizes of each sweep (time ∝ size^exponent; "
        "– below two sizes), and the slope between the two largest measured sizes (the growth where it matters).",
        "",
        exponent_table(R, ex),
        "",
        "## Targets (issue 13)",
        "",
        f"* {t1}.",
        f"* {t2}.",
        "",
        "## Where the time goes at the largest measured size",
        "",
        "Per method, the measured size with the most h × B: `solver` = `StepLog.solver_seconds` "
        "(`StepTightener.solve`: building the programs *and* bounding them; for `relational` the relational program "
        "on the affine forms), `rest` = everything else in the step (the interval step, for `affine`/`relational` the "
        "affine step, the nominal SGD step, the soundness check and the log); medians over steps 2..S.",
        "",
        where_table(R),
        "",
        "### cProfile of one joint step",
        "",
        profile_section(R.get("profile")),
        "",
        "## Observations",
        "",
    ]
    md += [f"* {n}" for n in notes(R, ex, speed)] or ["* none"]
    md += ["", "## All measurements", "", detail_table(R), "", f"![time per step vs size]({os.path.basename(png_path)})", ""]
    text = "\n".join(md)
    write_result(md_path, text)
    plot(R, png_path)
    return "\n".join([sweep_table(R, 0), "", sweep_table(R, 1), "", wt, "", exponent_table(R, ex), "",
                      "target: " + t1, "target: " + t2, "", where_table(R)])


# ------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke check: widths 8 16 at B 25, batches 25 50 at h 8, workers at h 8 B 50, 2 steps, budget 10 s")
    ap.add_argument("--widths", type=int, nargs="+", default=None, help="hidden widths of the width sweep (8 16 32 64)")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes of the batch sweep (25 50 100 200)")
    ap.add_argument("--width-batch", type=int, default=None, help="B of the width sweep (50)")
    ap.add_argument("--batch-width", type=int, default=None, help="h of the batch sweep (16)")
    ap.add_argument("--workers-size", type=int, nargs=2, default=None, metavar=("H", "B"),
                    help="size of the workers sweep (16 100)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--steps", type=int, default=None, help="steps per run (3; s/step = median of steps 2..S)")
    ap.add_argument("--budget", type=float, default=None, help="skip a size whose estimated s/step exceeds this (60)")
    ap.add_argument("--time-limit", type=float, default=20.0, help="MIBP time limit per objective, seconds (20)")
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: tiny tensors, busy machine)")
    ap.add_argument("--no-target", action="store_true", help="skip the h 20, B 100 joint target row")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile of the largest joint step")
    ap.add_argument("--save-raw", metavar="FILE", help="also write the measurements as JSON")
    ap.add_argument("--from-raw", metavar="FILE", help="rewrite the .md and .png from saved measurements, run nothing")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "scaling.md"))
    ap.add_argument("--png", default=None, help="plot path (default: the .md's name with .png)")
    args = ap.parse_args(argv)
    png = args.png or os.path.splitext(args.out)[0] + ".png"

    if args.from_raw:
        with open(args.from_raw) as f:
            R = json.load(f)
        R["args"]["workers_size"] = tuple(R["args"]["workers_size"])
        print(report(R, args.out, png))
        say(f"\nwrote {args.out} and {png}")
        return 0

    q = args.quick
    defaults = dict(widths=[8, 16] if q else [8, 16, 32, 64], batches=[25, 50] if q else [25, 50, 100, 200],
                    width_batch=25 if q else 50, batch_width=8 if q else 16, workers_size=[8, 50] if q else [16, 100],
                    steps=2 if q else 3, budget=10.0 if q else 60.0)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.steps < 2:
        ap.error("--steps must be at least 2 (step 1 is not representative)")
    torch.set_num_threads(args.threads)
    T0 = time.perf_counter()
    load_start = os.getloadavg()
    say(f"load average {load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f} on {os.cpu_count()} cores; {versions()}")

    # warm-up: imports, first solver calls (1 step of each method at the smallest size)
    say("== warm-up")
    warm = argparse.Namespace(**{**vars(args), "steps": 2})
    for m in args.methods:
        measure(m, min(args.widths), min(args.batches), 1, warm)

    runner = Runner(args)
    for m in args.methods:
        say(f"== {m}: width sweep (B {args.width_batch})")
        runner.sweep(m, [(h, args.width_batch) for h in args.widths], 0)
        say(f"== {m}: batch sweep (h {args.batch_width})")
        runner.sweep(m, [(args.batch_width, B) for B in args.batches], 1)

    say(f"== workers (h {args.workers_size[0]}, B {args.workers_size[1]})")
    wh, wb = args.workers_size
    for m in WORKER_METHODS:
        if m not in args.methods:
            continue
        r1 = runner.run(m, wh, wb, 1, predict(runner, m, wh, wb))
        if r1["status"] == "ok":
            runner.run(m, wh, wb, 2, r1["step"])  # estimate: no speed-up
        else:
            runner.done[(m, wh, wb, 2)] = dict(method=m, h=wh, B=wb, workers=2, status="skipped", est=r1.get("est"))

    if not args.no_target and "joint" in args.methods:
        th, tb = TARGET_SIZE
        say(f"== target row: joint h {th}, B {tb} (Moons-100, one step = one epoch)")
        runner.run("joint", th, tb, 1, predict(runner, "joint", th, tb))

    R = dict(rows=list(runner.done.values()), methods=args.methods, load_start=load_start,
             args=dict(quick=q, widths=args.widths, batches=args.batches, width_batch=args.width_batch,
                       batch_width=args.batch_width, workers_size=tuple(args.workers_size), steps=args.steps,
                       budget=args.budget, time_limit=args.time_limit, lr=args.lr, eps=args.eps, threads=args.threads))
    if not args.no_profile and "joint" in args.methods:
        big = largest(R, "joint")
        if big is not None:
            say(f"== cProfile of one joint step at h {big['h']}, B {big['B']}")
            p = profile_joint(big["h"], big["B"], args)
            R["profile"] = p
            say(f"  {p['wall']:.1f} s; " + ", ".join(f"{k} {v:.2f}" for k, v in p["cum"].items()))
    R["load_end"] = os.getloadavg()
    R["runtime"] = time.perf_counter() - T0
    R["date"] = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    if args.save_raw:
        with open(args.save_raw, "w") as f:
            json.dump(R, f, indent=1, default=str)
    print()
    print(report(R, args.out, png))
    say(f"\ntotal {R['runtime'] / 60:.1f} min, load average at the end {R['load_end'][0]:.2f}")
    say(f"wrote {args.out} and {png}")
    return 0


def predict(runner: Runner, m: str, h: int, B: int) -> float | None:
    """Step time of method ``m`` at (h, B) from its measured sweeps: the nearest measured size
    scaled by the exponents of both sweeps (each at least 1; PRIOR_EXPONENT when unknown)."""
    ok = [r for r in runner.done.values() if r["method"] == m and r["workers"] == 1 and r["status"] == "ok"]
    if not ok:
        return None
    a = runner.args
    e = []
    for axis, sizes in ((0, a.widths), (1, a.batches)):
        pts = [(s, r["step"]) for s in sizes for r in ok
               if (r["h"], r["B"]) == ((s, a.width_batch) if axis == 0 else (a.batch_width, s))]
        f = fit(pts)
        e.append(PRIOR_EXPONENT if f is None else max(1.0, f))
    ref = min(ok, key=lambda r: abs(math.log(r["h"] / h)) + abs(math.log(r["B"] / B)))
    return ref["step"] * (h / ref["h"]) ** e[0] * (B / ref["B"]) ** e[1]


if __name__ == "__main__":
    raise SystemExit(main())
