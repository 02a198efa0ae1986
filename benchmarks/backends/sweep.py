"""Part 3: the accuracy sweep, interval vs MIBP (HiGHS, McCormick LP, joint) over hidden widths,
radii and seeds (MIBP-Cert setting)."""
from __future__ import annotations

from benchmarks.common import fmt, say

from .runs import cum_ratio, train_run
from .settings import mibpcert_data


def accuracy_sweep(args) -> list[dict]:
    """One row per (hidden, eps, seed): the interval run and, where it fits, the MIBP run."""
    say(f"== accuracy sweep (MIBP-Cert setting, lr {args.lr}, {args.epochs} epochs)")
    sweep = []
    for h in args.hidden:
        for eps in args.eps:
            for seed in range(args.seeds):
                d = mibpcert_data(seed)
                iv = train_run(d, h, seed, eps, args.lr, args.epochs)
                row = dict(hidden=h, eps=eps, seed=seed, iv=iv, mibp=None)
                if h <= 10 or (seed < args.mibp_seeds_h20 and eps == max(args.eps)):
                    mb = train_run(d, h, seed, eps, args.lr, args.epochs, "mibp", "highs", "joint", "lp", 1, None)
                    mb["cum_ratio"] = cum_ratio(mb, iv)
                    row["mibp"] = mb
                sweep.append(row)
                m = row["mibp"]
                say(f"  h {h} eps {eps:g} seed {seed}: interval final {fmt(iv.get('final_acc'))} best {fmt(iv.get('best_acc'))} | "
                    + ("mibp skipped" if m is None else
                       (f"mibp final {fmt(m.get('final_acc'))} best {fmt(m.get('best_acc'))} cum ratio {fmt(m.get('cum_ratio'))} "
                        f"s/epoch {fmt(m.get('epoch_seconds'), '.1f')}" if m["ok"] else m["note"])))
    return sweep
