"""Options and run order of the backend benchmark: ``python -m benchmarks.backends [--quick]``
(from the repository root; the package docstring describes the measurements)."""
from __future__ import annotations

import argparse
import logging
import os
import pickle
import sys
import time
import warnings

import torch

from . import __doc__ as DOC
from .compare import compare_backends
from .minibatch import minibatch_runs
from .probe import run_probes
from .profiling import run_profiles
from .report import write_outputs
from .settings import RESULTS, mibpcert_data, minibatch_data
from .sweep import accuracy_sweep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.backends", description=DOC.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="< 5 min: seed 0, h 10, eps 0.01, fewer epochs/steps")
    ap.add_argument("--seeds", type=int, default=3, help="accuracy sweep: seeds 0..N-1 (data and init)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[10, 20], help="accuracy sweep: hidden widths")
    ap.add_argument("--eps", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2], help="accuracy sweep: radii")
    ap.add_argument("--mibp-seeds-h20", type=int, default=1,
                    help="accuracy sweep: MIBP runs for hidden widths > 10 use only this many seeds "
                         "(joint LP costs ~30 s/epoch there); interval runs use all seeds")
    ap.add_argument("--lr", type=float, default=0.2, help="MIBP-Cert setting: gradient-descent step (mean loss)")
    ap.add_argument("--epochs", type=int, default=5, help="MIBP-Cert setting: epochs (= full-batch steps) of the sweep")
    ap.add_argument("--cmp-epochs", type=int, default=3, help="epochs of each run of the backend comparison")
    ap.add_argument("--mb-lr", type=float, default=0.1, help="mini-batch setting: SGD step")
    ap.add_argument("--mb-steps", type=int, default=10, help="mini-batch setting: steps (10 = one epoch)")
    ap.add_argument("--mb-mibp-steps", type=int, default=None, help="mini-batch: steps of the MIBP runs (default --mb-steps)")
    ap.add_argument("--workers", type=int, default=2, help="solver processes for the per-sample workers row")
    ap.add_argument("--time-limit", type=float, default=10.0, help="seconds per objective for MILP backends (HiGHS MILP, Gurobi)")
    ap.add_argument("--scip-time-limit", type=float, default=2.0, help="seconds per objective side for SCIP")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--save-raw", default=None, help="also pickle every measurement here")
    ap.add_argument("--from-raw", default=None, help="rewrite the .md and .png from a --save-raw pickle, no runs")
    ap.add_argument("--out", default=os.path.join(RESULTS, "backends.md"))
    ap.add_argument("--png", default=os.path.join(RESULTS, "backends_width.png"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.quick:
        args.seeds, args.hidden, args.eps, args.mibp_seeds_h20 = 1, [10], [1e-2], 1
        args.epochs, args.cmp_epochs = 3, 2
        args.mb_mibp_steps = args.mb_mibp_steps or 2
    mb_mibp_steps = args.mb_mibp_steps or args.mb_steps
    if args.from_raw:
        with open(args.from_raw, "rb") as f:
            raw = pickle.load(f)
        return write_outputs(args, **raw)
    load0 = os.getloadavg()
    T0 = time.perf_counter()
    C0 = time.process_time()
    md_cmd = " ".join(["python -m benchmarks.backends", *(argv if argv is not None else sys.argv[1:])])

    d0 = mibpcert_data(0)
    dmb = minibatch_data()
    probe_rows, tl_check, st_mc = run_probes(args, d0, dmb)
    t_probe = time.perf_counter() - T0
    profiles = run_profiles(args, st_mc)
    cmp_runs = compare_backends(args, d0, probe_rows)
    t_cmp = time.perf_counter() - T0 - t_probe
    sweep = accuracy_sweep(args)
    t_sweep = time.perf_counter() - T0 - t_probe - t_cmp
    mb_runs = minibatch_runs(args, dmb, probe_rows, mb_mibp_steps)
    t_mb = time.perf_counter() - T0 - t_probe - t_cmp - t_sweep
    total = time.perf_counter() - T0
    cpu = time.process_time() - C0
    load1 = os.getloadavg()

    raw = dict(cmd=md_cmd, probe_rows=probe_rows, tl_check=tl_check, profiles=profiles, cmp_runs=cmp_runs, sweep=sweep, mb_runs=mb_runs,
               mb_mibp_steps=mb_mibp_steps, saved_args=vars(args),
               tm=dict(total=total, probe=t_probe, cmp=t_cmp, sweep=t_sweep, mb=t_mb, load0=load0, load1=load1, cpu=cpu))
    if args.save_raw:
        with open(args.save_raw, "wb") as f:
            pickle.dump(raw, f)
    return write_outputs(args, **raw)


if __name__ == "__main__":
    raise SystemExit(main())
