"""Single-step probe: the programs of one step bounded by every backend (time per objective, estimated
step time, width vs interval and vs HiGHS-LP), and the check of HiGHS's time limit."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time

import numpy as np
import torch

from benchmarks.common import fmt, say
from mibpcert.config import TrainConfig
from mibpcert.data_checks import check_training_data
from mibpcert.encode.tighten import StepTightener
from mibpcert.steps.interval import interval_step
from mibpcert.model import describe, mlp
from mibpcert.solvers import SolveOptions, SolverUnavailable, Status, get_backend
from mibpcert.solvers.gurobi import exceeds_limited_licence, licence_is_size_limited
from mibpcert.threats import LinfFeatures
from mibpcert.train import certified_train


@contextlib.contextmanager
def quiet_stderr():
    """Silence C-level writes to fd 2 (SoPlex prints a tolerance warning per SCIP model)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def step_state(d, widths, seed, eps, lr, loss, batch, k):
    """Box and nominal parameters after ``k`` interval steps, and the interval bounds of step k+1
    (full batch: k epochs; mini-batch: one epoch over the first k batches, i.e. the same first k
    steps as a run over all the data)."""
    model = mlp(widths, seed=seed)
    spec = describe(model)
    threat = LinfFeatures(eps)
    X, y, info = check_training_data(spec, d.X_train, d.y_train, loss, batch, torch.float64, torch.device("cpu"))
    n = X.shape[0]
    cfg = TrainConfig(epochs=k, lr=lr, batch_size=batch, loss=loss)
    if n == batch:
        res = certified_train(model, X, y, threat, cfg)
        Xb, yb = X, y
    else:
        assert (k + 1) * batch <= n, "probe state: k + 1 batches must fit in one epoch"
        res = certified_train(model, X[: k * batch], y[: k * batch], threat, dataclasses.replace(cfg, epochs=1))
        Xb, yb = X[k * batch:(k + 1) * batch], y[k * batch:(k + 1) * batch]
    assert len(res.log) == k
    box = res.box()
    nominal = {kk: v.detach().clone() for kk, v in res.nominal.state_dict().items()}
    region = threat.region(Xb, yb, info)
    sb = interval_step(spec, box, region, loss, lr)
    return dict(spec=spec, info=info, threat=threat, box=box, nominal=nominal, region=region, sb=sb, Xb=Xb, yb=yb,
                lr=lr, loss=loss)


def build_programs(st, mode):
    cfg = TrainConfig(method="mibp", mode=mode, loss=st["loss"], lr=st["lr"])
    t = StepTightener(st["spec"], cfg, st["info"])
    t0 = time.perf_counter()
    # the tightener's own program list, so that the probe bounds exactly the
    # programs a training step would)
    progs = t.programs(st["box"], st["sb"], st["region"], st["Xb"], st["yb"], st["lr"], st["nominal"], st["threat"])
    t.close()
    return progs, time.perf_counter() - t0


def interval_of_targets(st, mode, prog, sample):
    """Interval bounds of the program's objectives (what the step would use without the solver)."""
    names = st["spec"].param_names
    if mode == "joint":
        lo = torch.cat([st["sb"].params[n].lo.reshape(-1) for n in names]).numpy()
        hi = torch.cat([st["sb"].params[n].hi.reshape(-1) for n in names]).numpy()
    else:
        lr, box, g = st["lr"], st["box"], st["sb"].base.grads
        th_lo = torch.cat([box[n].lo.reshape(-1) for n in names])
        th_hi = torch.cat([box[n].hi.reshape(-1) for n in names])
        g_lo = torch.cat([g[n].lo[sample].reshape(-1) for n in names])
        g_hi = torch.cat([g[n].hi[sample].reshape(-1) for n in names])
        lo, hi = (th_lo - lr * g_hi).numpy(), (th_hi - lr * g_lo).numpy()
    return lo[prog.targets], hi[prog.targets]


def probe(setting: str, st, modes_subsets: dict, backends: list[tuple], caps: dict | None = None) -> list[dict]:
    """Bound a subset of one step's programs with every backend; returns one row per mode/backend.
    ``caps[backend]``: at most this many objectives for that backend (the first ones of the subset,
    so they are compared with the same objectives of HiGHS-LP)."""
    caps = caps or {}  # {mode: {backend: max objectives}}
    rows = []
    for mode, subset in modes_subsets.items():
        progs, build_s = build_programs(st, mode)
        p0 = progs[0][0].program
        total_objs = sum(len(p.exprs) for p, _, _ in progs)
        if mode == "joint":
            jobs = [(progs[0][0], -1, progs[0][0].exprs[:subset] if subset else progs[0][0].exprs)]
        else:
            jobs = [(p, i, p.exprs) for p, _, i in progs[:subset]]
        n_objs = sum(len(e) for _, _, e in jobs)
        size = (f"{len(progs)} × ({p0.num_vars} vars, {p0.num_rows} rows, {p0.num_binaries} bin, "
                f"{p0.num_bilinear} bilinear)")
        say(f"  [{setting}] {mode}: {size}; {total_objs} objectives per step; build {build_s:.2f}s; probing {n_objs}")
        ref = None
        all_jobs = jobs
        for label, relax, tl in backends:
            cap = caps.get(mode, {}).get(label)
            jobs, left = [], cap if cap is not None else 10**9
            for prog, sample, exprs in all_jobs:
                if left <= 0:
                    break
                jobs.append((prog, sample, exprs[:left]))
                left -= len(exprs[:left])
            n_objs = sum(len(e) for _, _, e in jobs)
            name = label.split("-")[0] if label.startswith("highs") else label
            row = dict(setting=setting, mode=mode, backend=label, size=size, objectives=total_objs, build_s=build_s,
                       measured=n_objs, time_limit=tl, relax=relax)
            try:
                be = get_backend(name)
            except Exception as e:
                row.update(note=f"unavailable: {e}")
                rows.append(row)
                continue
            if label == "gurobi":
                if licence_is_size_limited() and exceeds_limited_licence(p0):
                    row.update(note=f"licence too small ({p0.num_vars} vars with {p0.num_bilinear} bilinear > 200)")
                    rows.append(row)
                    say(f"    {label:18s} licence too small")
                    continue
            opts = SolveOptions(time_limit=tl, relax=relax, threads=1)
            widths, iv_widths, timed_out, failed = [], [], 0, 0
            t0 = time.perf_counter()
            try:
                with quiet_stderr() if label == "scip" else contextlib.nullcontext():
                    res_all = []
                    for prog, sample, exprs in jobs:
                        o = dataclasses.replace(opts, warm_start=prog.start)
                        # HiGHS's time limit counts from the model's creation (cumulative over its
                        # objectives, see docs/backends.md): with a limit, one model per objective
                        if tl is not None and mode == "joint":
                            res_all.append([r for e in exprs for r in be.bound(prog.program, [e], o)])
                        else:
                            res_all.append(be.bound(prog.program, exprs, o))
                dt = time.perf_counter() - t0
                for (prog, sample, exprs), res in zip(jobs, res_all):
                    ilo, ihi = interval_of_targets(st, mode, prog, sample)  # noqa: E501 (first len(exprs) targets)
                    ilo, ihi = ilo[: len(exprs)], ihi[: len(exprs)]
                    for r, a, b in zip(res, ilo, ihi):
                        lo = max(a, r.lower) if r.lower_status != Status.FAILED else a
                        hi = min(b, r.upper) if r.upper_status != Status.FAILED else b
                        widths.append(max(hi - lo, 0.0))
                        iv_widths.append(b - a)
                        timed_out += (r.lower_status == Status.TIME_LIMIT) + (r.upper_status == Status.TIME_LIMIT)
                        failed += (r.lower_status == Status.FAILED) + (r.upper_status == Status.FAILED)
            except SolverUnavailable as e:
                row.update(note=f"licence too small: {str(e)[:120]}" if "licen" in str(e) else f"unavailable: {e}")
                rows.append(row)
                continue
            w, iw = np.array(widths), np.array(iv_widths)
            ok = iw > 0
            row.update(ms_per_obj=1000 * dt / max(1, len(widths)), est_step_s=dt / max(1, len(widths)) * total_objs + build_s,
                       est_is_lower=bool(tl is not None and (timed_out + failed) > 0),
                       vs_interval=float(np.mean(w[ok] / iw[ok])) if ok.any() else 1.0, timed_out=timed_out, failed=failed,
                       widths=w)
            if ref is None and label == "highs-lp":
                ref = w
            if ref is not None and len(ref) >= len(w):
                r0 = ref[: len(w)]
                okr = r0 > 0
                row["vs_lp"] = float(np.mean(w[okr] / r0[okr])) if okr.any() else 1.0
            rows.append(row)
            say(f"    {label:18s} {row['ms_per_obj']:9.1f} ms/objective, est. step {row['est_step_s']:8.1f}s, "
                f"width vs interval {row['vs_interval']:.4f}, vs highs-lp {fmt(row.get('vs_lp'), '.4f')}, "
                f"time-limit sides {timed_out}, failed sides {failed}")
    return rows


def highs_time_limit_check(st) -> dict:
    """HiGHS's ``time_limit`` on one joint program bounded for 6 objectives: first without a
    limit, then with a limit of half the first objective's time (see note 3 of the analysis)."""
    progs, _ = build_programs(st, "joint")
    pp = progs[0][0]
    be = get_backend("highs")
    objs = pp.exprs[:6]
    free = be.bound(pp.program, objs, SolveOptions(relax="lp"))
    limit = max(0.02, 0.5 * free[0].seconds)
    lim = be.bound(pp.program, objs, SolveOptions(relax="lp", time_limit=limit))
    row = lambda rs: [(r.lower_status.value, r.upper_status.value, 1000 * r.seconds) for r in rs]  # noqa: E731
    return dict(limit=limit, free=row(free), limited=row(lim))


def probe_of(probe_rows: list[dict], setting: str, mode: str, backend: str) -> dict | None:
    """The probe row of one setting, mode and backend, or None."""
    for r in probe_rows:
        if r["setting"] == setting and r["mode"] == mode and r["backend"] == backend:
            return r
    return None


def run_probes(args, d0, dmb) -> tuple[list[dict], dict, dict]:
    """Part 2 of the benchmark: the probes of the MIBP-Cert setting (h 10, step 3) and of the
    mini-batch setting (step 6), and the HiGHS time-limit check. Returns the probe rows, the check
    and the MIBP-Cert probe state (the profile uses it)."""
    say("== single-step probe (MIBP-Cert setting, h 10, eps 0.01, seed 0, step 3)")
    st_mc = step_state(d0, [2, 10, 1], 0, 0.01, args.lr, "hinge", 100, 2)
    tl, stl = args.time_limit, args.scip_time_limit
    probe_backends = [("highs-lp", "lp", None), ("highs-milp", "milp", tl), ("gurobi", "milp", tl),
                      ("scip", "milp", stl), ("pyomo:appsi_highs", "lp", None)]
    n_ps = 5 if args.quick else 10
    # joint: HiGHS-LP bounds every objective of the step (its later objectives re-solve from the
    # previous basis, so a prefix would over-estimate); the slow backends a few objectives each
    caps = {"per_sample": {"scip": 6 if args.quick else 30, "pyomo:appsi_highs": 30 if args.quick else 60},
            "joint": {"highs-milp": 2 if args.quick else 4, "scip": 1 if args.quick else 2,
                      "pyomo:appsi_highs": 2 if args.quick else 4}}
    probe_rows = probe("MIBP-Cert h10", st_mc, {"per_sample": n_ps, "joint": None}, probe_backends, caps)
    say("== single-step probe (mini-batch setting, 2-16-1, step 6)")
    st_mb = step_state(dmb, [2, 16, 1], 0, 0.01, args.mb_lr, "bce", 100, 5)
    probe_rows += probe("mini-batch", st_mb, {"per_sample": 3 if args.quick else 5}, probe_backends, caps)
    # the joint mini-batch program: one objective, HiGHS LP only (~1 min; not in --quick)
    if not args.quick:
        probe_rows += probe("mini-batch", st_mb, {"joint": 1}, [("highs-lp", "lp", None)])
    tl_check = highs_time_limit_check(st_mc)
    say(f"  HiGHS time-limit check (limit {tl_check['limit']:.2f}s): {tl_check['limited']}")
    return probe_rows, tl_check, st_mc
