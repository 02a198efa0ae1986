"""Part 1: the backend comparison, one ``certified_train`` per backend / mode where the single-step
probe's estimate fits the time budget (MIBP-Cert setting, h 10, eps 0.01, seed 0)."""
from __future__ import annotations

from benchmarks.common import fmt, say

from .probe import probe_of
from .runs import cum_ratio, train_run
from .settings import COMBOS


def compare_backends(args, d0, probe_rows: list[dict]) -> list[dict]:
    """Rows of the comparison table, the interval run first."""
    say(f"== backend comparison (MIBP-Cert, h 10, eps 0.01, seed 0, {args.cmp_epochs} epochs)")
    tl, stl = args.time_limit, args.scip_time_limit
    cmp_runs = []
    budget_run = 120.0 if not args.quick else 40.0  # run a combination in full when its estimate fits
    for label, method, backend, mode, relax in COMBOS:
        tag = label if method == "interval" else f"{label} {mode}"
        pr = None if method == "interval" else probe_of(probe_rows, "MIBP-Cert h10", mode, label)
        skip = None
        if pr is not None and "ms_per_obj" not in pr:
            skip = pr.get("note", "not measured")
        elif pr is not None and pr["est_step_s"] * args.cmp_epochs > budget_run:
            skip = (f"est. {'≥ ' if pr.get('est_is_lower') else ''}{pr['est_step_s']:.0f} s/epoch from the single-step probe "
                    f"({pr['ms_per_obj']:.0f} ms per objective × {pr['objectives']} objectives)")
        if skip:
            cmp_runs.append(dict(ok=False, label=tag, method=method, backend=backend, mode=mode, relax=relax, note=f"skipped: {skip}"))
            say(f"  {tag:28s} skipped: {skip}")
            continue
        tlim = None if relax == "lp" else (stl if backend == "scip" else tl)
        r = train_run(d0, 10, 0, 0.01, args.lr, args.cmp_epochs, method, backend if method == "mibp" else "highs",
                      mode if method == "mibp" else "per_sample", relax if method == "mibp" else "lp", 1, tlim)
        r["label"] = tag
        cmp_runs.append(r)
        say(f"  {tag:28s} " + (f"final {fmt(r.get('final_acc'))} best {fmt(r.get('best_acc'))} "
                               f"s/epoch {r['epoch_seconds']:.2f} steps ratio {[round(x, 3) for x in r['step_ratio']]}"
                               if r["ok"] else r["note"]))
    # workers rows: HiGHS-LP with a process pool (per-sample programs spread out; the joint
    # program's objectives split into one slice per worker)
    if args.workers > 1 and not args.quick:
        for mode in ("per_sample", "joint"):
            r = train_run(d0, 10, 0, 0.01, args.lr, args.cmp_epochs, "mibp", "highs", mode, "lp", args.workers, None)
            r["label"] = f"highs-lp {mode}, workers={args.workers}"
            cmp_runs.append(r)
            say(f"  {r['label']:28s} s/epoch {r.get('epoch_seconds', float('nan')):.2f} pool start {r.get('overhead', 0):.1f}s")
    iv_cmp = cmp_runs[0]
    for r in cmp_runs:
        r["cum_ratio"] = cum_ratio(r, iv_cmp)
    return cmp_runs
