"""The "Targets" section of the result file: each target, met or missed by how much."""
from __future__ import annotations

import statistics

from benchmarks.common import verdict

from .profiling import share
from .settings import TARGET_ACC, TARGET_EPS, TARGET_MB_RATIO, TARGET_SEC


def target_lines(args, cmp_runs, sweep, mb_runs, mb_mibp_steps, profiles) -> str:
    """One bullet per target (accuracy and time per hidden width, default configuration,
    mini-batch width ratio) and the share of a joint step's time by part."""
    out = []
    rows = [r for r in sweep if r["eps"] == TARGET_EPS and r["mibp"] is not None and r["mibp"].get("ok")]
    by_h: dict[int, list] = {}
    for r in rows:
        by_h.setdefault(r["hidden"], []).append(r)
    for h, rs in sorted(by_h.items()):
        mf = statistics.mean(r["mibp"]["final_acc"] for r in rs)
        mb = statistics.mean(r["mibp"]["best_acc"] for r in rs)
        ivf = statistics.mean(r["iv"]["final_acc"] for r in rs)
        ivb = statistics.mean(r["iv"]["best_acc"] for r in rs)
        sec = statistics.mean(r["mibp"]["epoch_seconds"] for r in rs)
        clean = statistics.mean(r["mibp"]["clean_acc"] for r in rs)
        out.append(
            f"* **h {h}, eps 0.01, {len(rs)} seed(s), MIBP (HiGHS LP, joint)**: certified accuracy best-val {mb:.3f} "
            f"(final {mf:.3f}; interval {ivb:.3f} / {ivf:.3f}) — target ≥ {TARGET_ACC:.2f} "
            + verdict(mb, TARGET_ACC, at_most=False, spec=".3f")
            + f"; {sec:.1f} s/epoch — target ≤ {TARGET_SEC:g} s "
            + verdict(sec, TARGET_SEC, at_most=True, spec=".1f", unit=" s", factor=True)
            + f". Clean accuracy of the selected nominal models: {clean:.3f} (an upper bound on what any certificate "
              "of these models can reach).")
    # default configuration of TrainConfig (highs, per_sample, milp)
    dflt = [r for r in cmp_runs if r.get("ok") and r["method"] == "mibp" and r["backend"] == "highs"
            and r["mode"] == "per_sample" and r["relax"] == "milp"]
    if dflt:
        r = dflt[0]
        out.append(f"* `TrainConfig` default MIBP configuration (highs, per_sample, relax=milp), h 10: "
                   f"{r['epoch_seconds']:.1f} s/epoch, step ratio {statistics.mean(r['step_ratio']):.4f} (no tightening "
                   "worth its cost in this setting).")
    iv = mb_runs[0]
    for r in mb_runs[1:]:
        if not r.get("ok"):
            continue
        s = len(r["mean_width"])
        ratio = r["mean_width"][-1] / iv["mean_width"][s - 1]
        grows_iv = iv["mean_width"][s - 1] > iv["mean_width"][max(0, s - 2)]
        grows_m = r["mean_width"][-1] > r["mean_width"][-2] if s > 1 else True
        ok = ratio <= TARGET_MB_RATIO and s >= 10
        out.append(
            f"* **Mini-batch, {r['label']}**: mean-width ratio to interval after {s} step(s) {ratio:.3f} — target "
            f"≤ {TARGET_MB_RATIO} after 10 steps "
            + ("**met**" if ok else (f"**missed** ({ratio:.3f} vs {TARGET_MB_RATIO}, {ratio / TARGET_MB_RATIO:.1f}×)"
                                     + ("" if s >= 10 else f"; only {s} steps run")))
            + f"; bounds {'still grow' if grows_m else 'stopped growing'} at the last step (interval: "
              f"{'grow' if grows_iv else 'do not grow'}); {statistics.mean(r['step_seconds']):.1f} s/step.")
    p = {q["mode"]: q for q in profiles}
    if "joint" in p:
        pj = p["joint"]
        out.append(f"* Time of one joint HiGHS-LP step (profile): {share(pj, 'run')} inside HiGHS "
                   f"`run`, {share(pj, 'programs')} building the program, "
                   f"{share(pj, 'relax', '_load')} relaxing and loading it, "
                   f"{share(pj, 'safe_lp_bound')} in the safe dual bound; see the profile section.")
    return "\n".join(out)
