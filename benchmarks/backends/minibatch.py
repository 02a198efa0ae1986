"""The mini-batch setting: interval and per-sample HiGHS-LP runs (mean and max width per step); the
backends that do not fit get a row from the single-step probe."""
from __future__ import annotations

import dataclasses

from benchmarks.common import say

from .probe import probe_of
from .runs import train_run


def minibatch_runs(args, dmb, probe_rows: list[dict], mb_mibp_steps: int) -> list[dict]:
    """The interval run first, then the MIBP run(s) and the rows skipped with the probe's estimate."""
    say(f"== mini-batch setting (1000 points, 2-16-1, BCE, batch 100, eps 0.01, lr {args.mb_lr}, {args.mb_steps} steps)")
    mb_runs = []
    for label, method, backend, mode, relax, steps in [
        ("interval", "interval", "highs", "per_sample", "lp", args.mb_steps),
        ("highs-lp per_sample", "mibp", "highs", "per_sample", "lp", mb_mibp_steps),
    ]:
        # exactly `steps` steps: one epoch over the first `steps` batches (the same first steps as a
        # run over all 1000 points)
        n = min(steps * 100, dmb.X_train.shape[0])
        dsub = dataclasses.replace(dmb, X_train=dmb.X_train[:n], y_train=dmb.y_train[:n])
        r = train_run(dsub, 16, 0, 0.01, args.mb_lr, -(-steps * 100 // n), method, backend, mode, relax, 1, None,
                      loss="bce", widths=[2, 16, 1])
        if r["ok"]:
            for k in ("mean_width", "max_width", "step_ratio", "step_seconds"):
                r[k] = r[k][:steps]
        r["label"] = label
        mb_runs.append(r)
        say(f"  {label}: mean widths {[f'{x:.3g}' for x in r.get('mean_width', [])]}")
    # rows that do not fit: from the probe
    for label, mode in (("highs-milp", "per_sample"), ("scip", "per_sample"), ("gurobi", "per_sample"),
                        ("pyomo:appsi_highs", "per_sample"), ("highs-lp", "joint")):
        pr = probe_of(probe_rows, "mini-batch", mode, label)
        note = "not probed in --quick (one objective of the joint program takes 20-50 s)" if args.quick else "not probed"
        if pr is not None:
            note = pr.get("note") or (f"est. {'≥ ' if pr.get('est_is_lower') else ''}{pr['est_step_s']:.0f} s/step from the single-step probe "
                                      f"({pr['ms_per_obj']:.0f} ms per objective × {pr['objectives']} objectives"
                                      + (f", {pr['timed_out'] + pr['failed']} of {2 * pr['measured']} sides hit the "
                                         f"{pr['time_limit']:g} s limit" if pr['time_limit'] and pr['timed_out'] + pr['failed'] else "")
                                      + f"; width vs interval on the probed objectives {pr['vs_interval']:.3f})")
        mb_runs.append(dict(ok=False, label=f"{label} {mode}", method="mibp", backend=label, mode=mode, note=f"skipped: {note}"))
    return mb_runs
