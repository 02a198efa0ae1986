"""cProfile of one MIBP step: program building vs relaxation vs HiGHS vs the safe dual bound."""
from __future__ import annotations

import cProfile
import os
import pstats
import time

from benchmarks.common import profile_top, say
from mibpcert.config import TrainConfig
from mibpcert.encode.tighten import StepTightener

# (column, key of profile_step's "cum") of the profile table; the keys are the library functions'
# names as cProfile reports them (matched as strings)
PROFILE_GROUPS = [
    ("build programs (encode)", "programs"),
    ("McCormick relaxation", "relax"),
    ("HiGHS model load", "_load"),
    ("HiGHS solve (run)", "run"),
    ("safe LP bound (duals)", "safe_lp_bound"),
    ("bound() total", "bound"),
    ("tighten() total", "tighten"),
]


def profile_step(st, mode: str, relax: str) -> dict:
    """Profile one ``StepTightener.tighten`` call on the probe state ``st``: wall time, cumulative
    seconds per group (``cum``) and the top 12 functions by own time."""
    cfg = TrainConfig(method="mibp", mode=mode, loss=st["loss"], lr=st["lr"], relax=relax, time_limit=None, workers=1)
    t = StepTightener(st["spec"], cfg, st["info"])
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    t.tighten(st["box"], st["sb"], st["region"], st["Xb"], st["yb"], st["lr"], st["nominal"], st["threat"])
    pr.disable()
    wall = time.perf_counter() - t0
    t.close()
    stats = pstats.Stats(pr)
    cum: dict[str, float] = {}
    for (fname, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        key = None
        if func == "programs" and "tighten" in fname:
            key = "programs"
        elif func == "relax" and "mccormick" in fname:
            key = "relax"
        elif func == "_load" and "highs" in fname:
            key = "_load"
        elif func == "_solve_side" and "highs" in fname:
            key = "_solve_side"
        elif func == "safe_lp_bound" or (func == "__call__" and fname.endswith(os.path.join("solvers", "highs.py"))):
            key = "safe_lp_bound"  # LagrangianBound.__call__ (or the one-off function)
        elif func == "bound" and fname.endswith(os.path.join("solvers", "base.py")):
            key = "bound"  # the shared solve loop (Backend.bound)
        elif func == "tighten" and "tighten" in fname:
            key = "tighten"
        elif "highspy" in func and func.rstrip(">").endswith(".run"):
            key = "run"  # <built-in method highspy._core.run>
        if key:
            cum[key] = cum.get(key, 0.0) + ct
    return dict(mode=mode, relax=relax, wall=wall, cum=cum, top=profile_top(pr, 12))


def step_total(p: dict) -> float:
    """Seconds of the profiled step: ``tighten()``'s cumulative time, else the wall time."""
    return p["cum"].get("tighten", p["wall"])


def share(p: dict, *keys: str) -> str:
    """The groups ``keys`` together as a share of the profiled step, e.g. "42%"."""
    return f"{100 * sum(p['cum'].get(k, 0) for k in keys) / step_total(p):.0f}%"


def run_profiles(args, st_mc) -> list[dict]:
    """The profiles of one joint (and, without ``--quick``, one per-sample) HiGHS-LP step."""
    say("== cProfile of one MIBP step (MIBP-Cert h10, step 3)")
    profiles = [profile_step(st_mc, "joint", "lp")] + ([] if args.quick else [profile_step(st_mc, "per_sample", "lp")])
    for p in profiles:
        say(f"  {p['mode']}/{p['relax']}: {p['wall']:.2f}s " + ", ".join(f"{k} {v:.2f}" for k, v in p["cum"].items()))
    return profiles
