"""The MIBP step: tighten the interval box of one SGD step with solver bounds.

For each step the programs of :mod:`.training_step` are built (one per sample and region in
``per_sample`` mode, one per batch in ``joint`` mode), warm-started with the nominal trajectory,
and every parameter's updated value is minimised and maximised by the backend, except the
objectives whose bound needs no solver (:meth:`StepTightener.solve`: the range is known, or the
interval bound is no wider than the backend's margin; counted as ``skipped_objectives``). A side the solver
could not bound (failure, or no finite dual bound before the time limit) keeps its interval bound.
The result is always the interval box intersected with the solver box, so it is never looser than
the interval step and it is sound whenever both are.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Callable

import numpy as np
import torch

from ..config import TrainConfig
from ..steps.interval import ParamBox, StepBounds, aggregate, flat_grads, flatten, keep_frozen, unflatten
from ..interval.affine import Affine
from ..interval.tensor import Interval, cast_down, cast_up, rounding_enabled
from ..losses import get_loss
from ..model import ModelSpec
from ..solvers import LicenceLimit, ObjectiveBound, SolveOptions, SolverUnavailable, Status, get_backend
from ..solvers.executors import make_executor
from ..solvers.parallel import bound_many
from ..threats import TaskInfo
from .relational_step import relational_program
from .training_step import StepProgram, StepSetting, TraceBounds, joint_program, sample_program

log = logging.getLogger("mibpcert")

LICENCE_FALLBACK = "highs"  # bounds the programs a backend's licence cannot take
_SKIPPED = ObjectiveBound(-np.inf, np.inf, Status.SKIPPED, Status.SKIPPED)  # an objective no solver bounded


class StepTightener:
    """Runs the MIBP part of every step for one training run (see module docstring)."""

    def __init__(self, spec: ModelSpec, cfg: TrainConfig, info: TaskInfo) -> None:
        self.spec, self.cfg, self.info = spec, cfg, info
        self.backend_name = cfg.backend
        self.backend = get_backend(cfg.backend)  # fail early: unknown name or missing package
        self.fallback = get_backend(LICENCE_FALLBACK)
        self.misfit_said = False  # the licence fallback is announced once, at its first step
        self.options = SolveOptions(time_limit=cfg.time_limit, threads=cfg.threads, relax=cfg.relax, partitions=cfg.partitions)
        # reused by every step; a missing Ray is said here, before any step
        self.pool = (make_executor(cfg.executor, cfg.workers, cfg.ray_address)
                     if cfg.executor != "local" or cfg.workers > 1 else None)
        self.solved_before = False  # a licence limit after the first solved step falls back, before it raises
        # The symbol ties of the relational program make HiGHS's dual simplex slow (about 2 s per
        # side on Moons-100 against 0.4 s): its LPs are solved by the interior point method without
        # crossover, whose row duals give the same Lagrangian bound (sound for any duals).
        self.tied_options = self.options
        if cfg.backend == "highs" and cfg.relax == "lp":
            self.tied_options = replace(self.options, extra={"solver": "ipm", "run_crossover": "off", **self.options.extra})

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def programs(self, box, sb: StepBounds, region, Xb, yb, lr, theta_nominal, threat) -> list[tuple[StepProgram, int, int]]:
        """The step's programs as (program, region slot, sample) triples; slot 0 = base trace, 1 =
        poisoned trace. Public so that benchmarks bound exactly the programs a training step would."""
        cfg = self.cfg
        B = Xb.shape[0]
        st = StepSetting(self.spec, box, theta_nominal, threat, get_loss(cfg.loss), lr, cfg.weight_decay, cfg.pwl_pieces)
        if cfg.mode == "joint":
            prog = joint_program(st, region, Xb, yb, _joint_trace(sb))
            return [(prog, 0, -1)]
        out = []
        if sb.poisoned is not None:
            slots = [(sb.base, False), (sb.poisoned, True)]
        else:
            slots = [(sb.base, region.k is None or region.k >= B)]
        for slot, (trace, picked) in enumerate(slots):
            tb = TraceBounds.of(trace)
            for i in range(B):
                prog = sample_program(st, region, Xb, yb, tb, i, picked)
                out.append((prog, slot, i))
        return out

    def tighten(self, box: ParamBox, sb: StepBounds, region, Xb, yb, lr: float, theta_nominal: dict, threat) -> tuple[ParamBox, dict]:
        """New box = interval box of ``sb`` intersected with the solver's bounds (see :meth:`solve`
        for the statistics)."""
        B = Xb.shape[0]
        names = self.spec.param_names
        if self.cfg.mode == "joint":  # each program's bounds are intersected with these, in place
            flat = flatten(sb.params, names)
            los, his = [flat.lo.clone()], [flat.hi.clone()]
            into = lambda slot, i: (los[0], his[0])  # noqa: E731
        else:
            los, his = self._sample_bounds(box, sb, lr)
            into = lambda slot, i: (los[slot][i], his[slot][i])  # noqa: E731
        progs, results, stats = self.solve(lambda: self.programs(box, sb, region, Xb, yb, lr, theta_nominal, threat),
                                           lambda progs: self._sides(progs, sb, B),
                                           lambda progs: [_at(*into(slot, i), p.targets) for p, slot, i in progs])
        if results is None:
            return sb.params, stats
        for (prog, slot, i), res in zip(progs, results):
            self._apply(*into(slot, i), prog, res)
        if self.cfg.mode == "joint":
            solver_box = Interval(los[0], his[0], check=False)
        else:  # per-sample bounds on h_ij summed with the k-of-N rule and divided by B
            hs = [Interval(lo, hi, check=False) for lo, hi in zip(los, his)]
            solver_box = aggregate(hs[0], hs[1] if len(hs) > 1 else None, region.k).scale(1.0 / B)
        new = unflatten(keep_frozen(self.spec, flatten(box, names), solver_box), self.spec)
        final = {n: sb.params[n].intersect(new[n]) for n in names}
        return final, stats

    def solve(self, build: Callable[[], list[tuple[StepProgram, int, int]]], sides: Callable[[list | None], int],
              known: Callable[[list], list[tuple[np.ndarray, np.ndarray]]],
              options: SolveOptions | None = None) -> tuple[list | None, list | None, dict]:
        """Build a step's programs with ``build`` and bound every objective that needs a solver;
        returns the programs, the results per program (None when the step falls back to its
        interval bound as a whole) and the statistics. ``known(progs)``: per program, sound float64
        bounds (lo, hi) of each objective's values, those its solver bounds will be intersected with.

        Skipped objectives (result ``Status.SKIPPED``, never sent to a solver; the known bound is
        kept) are those with ``hi - lo <= margin``, the :meth:`~mibpcert.solvers.Backend.margin` of
        the backend that bounds the program. Sound and never looser than solving: the objective's
        values R over the threat are nonempty and inside [lo, hi] and inside the program's
        feasible set, so the program's minimum m <= min R <= hi = lo + (hi - lo) <= lo + margin,
        and the backend's lower bound is at most m - margin <= lo (upper side alike): intersecting
        with it could not move the known bound. The statistics count them, together with the
        entries whose range a program already knows exactly (``StepProgram.constants``), as
        ``skipped_objectives``.

        The stats count the bounds (objective sides) that came from the solver and those that
        kept the fallback bound, by reason (``fallback_reasons``: ``time_limit`` = no finite
        dual bound before the limit, ``failed`` = the solver or the step failed, ``licence`` = the
        licence is too small for a later step's program; when it is too small before any bound
        was solved, the :class:`LicenceLimit` is raised instead). ``sides(progs)`` counts the
        objective sides of a step that fell back; ``options`` replace the run's solver options."""
        t0 = time.perf_counter()
        options = options or self.options
        if self.cfg.step_time_limit is not None:  # this step's deadline, shared by every worker
            options = replace(options, deadline=time.monotonic() + self.cfg.step_time_limit)
        progs = None
        moved = skipped = unsent = 0  # unsent: skipped objectives that a program lists in exprs
        try:
            progs = build()
            misfits = [self.backend.misfit(p.program) for p, _, _ in progs]
            moved = sum(m is not None for m in misfits)
            if moved:
                self._say_misfit(misfits, progs)
            skips = [hi - lo <= (self.backend if m is None else self.fallback).margin(p.program, options)
                     for (p, _, _), m, (lo, hi) in zip(progs, misfits, known(progs))]
            unsent = int(sum(s.sum() for s in skips))
            skipped = unsent + sum(len(p.constants) for p, _, _ in progs)
            results: list = [[_SKIPPED] * len(s) for s in skips]  # replaced where anything is solved
            for name, which in ((self.backend_name, [i for i, m in enumerate(misfits) if m is None]),
                                (LICENCE_FALLBACK, [i for i, m in enumerate(misfits) if m is not None])):
                which = [i for i in which if not skips[i].all()]
                jobs = [(progs[i][0].program, [e for e, s in zip(progs[i][0].exprs, skips[i]) if not s], progs[i][0].start)
                        for i in which]
                split = len(which) == 1 and progs[which[0]][2] < 0
                for i, res in zip(which, self._bound(name, jobs, split, options)):
                    solved = iter(res)
                    results[i] = [_SKIPPED if s else next(solved) for s in skips[i]]
        except LicenceLimit as e:
            if not self.solved_before:  # the first step already does not fit: say so before any work is spent
                advice = ("use mode='per_sample' (one small program per sample), a smaller model, or backend='highs'"
                          if self.cfg.mode == "joint" else "use a smaller model or batch, or backend='highs'")
                raise LicenceLimit(f"{e}; {advice}") from e
            log.warning("MIBP step: %s; using the interval bound for this step", e)
            return progs, None, _stats(0, {"licence": sides(progs) - 2 * unsent}, t0, skipped=skipped)
        except SolverUnavailable:
            raise
        except Exception as e:  # a solver failure must never end the run: keep the interval box
            log.warning("MIBP step failed (%s: %s); using the interval bound for this step", type(e).__name__, e)
            return progs, None, _stats(0, {"failed": sides(progs) - 2 * unsent}, t0, skipped=skipped)
        solved = 0
        reasons: dict[str, int] = {}
        for res in results:
            for r in res:
                for val, st in ((r.lower, r.lower_status), (r.upper, r.upper_status)):
                    if st == Status.SKIPPED:
                        continue
                    if np.isfinite(_usable(val, st)):
                        solved += 1
                    else:
                        why = "time_limit" if st == Status.TIME_LIMIT else "failed"
                        reasons[why] = reasons.get(why, 0) + 1
        self.solved_before = self.solved_before or solved > 0
        return progs, results, _stats(solved, reasons, t0, moved, skipped)

    def _bound(self, backend_name: str, jobs: list, split: bool, options: SolveOptions) -> list:
        """Bounds of the objectives of ``jobs`` ((program, objectives, warm start) each) with one
        backend; with ``split`` (a single joint program) its objectives are shared out over the
        executor's workers, one consecutive slice each (the program itself is sent once per step to
        Ray, once per slice to local workers)."""
        if not jobs:
            return []
        if not (split and self.pool is not None):
            return bound_many(backend_name, jobs, options, self.cfg.workers, pool=self.pool)
        prog, exprs, start = jobs[0]
        size = -(-len(exprs) // self.pool.workers)
        parts = bound_many(backend_name, [(prog, exprs[i:i + size], start) for i in range(0, len(exprs), size)],
                           options, self.cfg.workers, jobs_per_chunk=1, pool=self.pool)
        return [[r for part in parts for r in part]]

    def _say_misfit(self, misfits: list[str | None], progs: list) -> None:
        """Announce, once per run, that programs the backend cannot take go to HiGHS instead."""
        if self.misfit_said:
            return
        self.misfit_said = True
        reason, _ = max(((m, p.program.num_vars) for (p, _, _), m in zip(progs, misfits) if m is not None),
                        key=lambda t: t[1])
        log.warning("%s cannot take %d of the %d programs of this step (the largest: %s); they are bounded by HiGHS "
                    "(McCormick relaxation, relax=%r, sound but possibly looser) instead, here and in later steps "
                    "(counted as licence_fallback_programs in the step log and the summary); for exact bounds use %s",
                    self.backend_name, sum(m is not None for m in misfits), len(misfits), reason, self.cfg.relax,
                    "mode='per_sample' (one small program per sample), a smaller model or batch, or a full licence"
                    if self.cfg.mode == "joint" else "a smaller model or a full licence")

    def tighten_forms(self, box: ParamBox, sb: StepBounds, region, Xb, yb, lr: float, theta_nominal: dict, threat,
                      before: dict, update) -> tuple[dict, ParamBox, dict]:
        """The affine step's result ``update.theta`` (an :class:`~mibpcert.steps.affine.AffineUpdate`
        from the forms ``before``) refined by the relational program
        (:func:`~.relational_step.relational_program`): each solved entry's independent part
        becomes the intersection of its range and the solver's residual bounds, and the interval
        step's box is intersected with the solver's bounds on the values. Entries and sides the
        solver did not bound keep the affine step's form and the interval bound. Returns the
        forms, the box and the step's statistics."""
        tb = _joint_trace(sb)
        if update.trace is not None:
            tb = tb.intersect(*update.trace)
        st = StepSetting(self.spec, box, theta_nominal, threat, get_loss(self.cfg.loss), lr, self.cfg.weight_decay,
                         self.cfg.pwl_pieces)
        names = self.spec.param_names
        after = update.theta
        c = torch.cat([after[n].c.reshape(-1) for n in names])
        e = torch.cat([after[n].e.reshape(-1) for n in names])
        r_lo, r_hi = (c - e).clone(), (c + e).clone()  # the residuals' ranges, then the values' box
        if rounding_enabled():  # c - e and c + e may round inward; exact entries (e = 0) stay points
            r_lo = torch.where(e > 0, torch.nextafter(r_lo, torch.full_like(r_lo, -torch.inf)), r_lo)
            r_hi = torch.where(e > 0, torch.nextafter(r_hi, torch.full_like(r_hi, torch.inf)), r_hi)
        flat = flatten(sb.params, names)
        v_lo, v_hi = flat.lo.clone(), flat.hi.clone()

        def known(progs):
            t = progs[0][0].targets
            T = len(t) // 2
            (a_lo, a_hi), (b_lo, b_hi) = _at(r_lo, r_hi, t[:T]), _at(v_lo, v_hi, t[T:])
            return [(np.concatenate([a_lo, b_lo]), np.concatenate([a_hi, b_hi]))]

        progs, results, stats = self.solve(
            lambda: [(relational_program(st, region, Xb, yb, tb, before, update.inputs, update.theta), 0, -1)],
            lambda progs: 2 * len(progs[0][0].exprs) if progs else 4 * int((~self.spec.frozen_mask()).sum()),
            known, self.tied_options)
        if results is None:
            return update.theta, sb.params, stats
        prog, res = progs[0][0], results[0]
        T = len(prog.exprs) // 2
        self._apply(r_lo, r_hi, StepProgram(prog.program, prog.start, prog.exprs[:T], prog.targets[:T], {}), res[:T])
        resid = Affine.from_interval(Interval(r_lo, r_hi, check=False), 0)
        out, at = {}, 0
        for n in names:
            f, size = after[n], after[n].c.numel()
            out[n] = Affine(resid.c[at:at + size].reshape(f.shape), f.G, resid.e[at:at + size].reshape(f.shape))
            at += size
        self._apply(v_lo, v_hi, StepProgram(prog.program, prog.start, prog.exprs[T:], prog.targets[T:], prog.constants), res[T:])
        return out, unflatten(Interval(v_lo, v_hi, check=False), self.spec), stats

    def _sides(self, progs, sb: StepBounds, B: int) -> int:
        """Objective sides of a step that fell back as a whole: those of its programs, or, when
        they could not be built, two per trainable entry and program the step would have had."""
        if progs is not None:
            return sum(2 * len(p.exprs) for p, _, _ in progs)
        trainable = int((~self.spec.frozen_mask()).sum())
        programs = 1 if self.cfg.mode == "joint" else B * (2 if sb.poisoned is not None else 1)
        return 2 * trainable * programs

    @staticmethod
    def _apply(lo: torch.Tensor, hi: torch.Tensor, prog: StepProgram, res) -> None:
        """Intersect (lo, hi) with the program's known ranges and solver bounds (in place). The
        intersection is taken in float64 and written back rounded outward to the working dtype."""
        new_lo = lo.detach().to("cpu", torch.float64).numpy().copy()
        new_hi = hi.detach().to("cpu", torch.float64).numpy().copy()
        if prog.constants:
            t = np.fromiter(prog.constants, dtype=np.int64, count=len(prog.constants))
            c = np.array(list(prog.constants.values()), dtype=np.float64).reshape(-1, 2)
            pad = 1e-12 * (1 + np.abs(c[:, 0]) + np.abs(c[:, 1]))
            new_lo[t] = np.maximum(new_lo[t], c[:, 0] - pad)
            new_hi[t] = np.minimum(new_hi[t], c[:, 1] + pad)
        if len(prog.targets):
            s_lo = np.array([_usable(r.lower, r.lower_status) for r in res], dtype=np.float64)
            s_hi = np.array([_usable(r.upper, r.upper_status) for r in res], dtype=np.float64)
            t = prog.targets
            new_lo[t] = np.fmax(new_lo[t], s_lo)  # fmax/fmin ignore the NaN of an unusable side
            new_hi[t] = np.fmin(new_hi[t], s_hi)
        # an empty intersection means one of the two bounds is unsound: a bug, never hidden
        bad = new_lo > new_hi
        if bool(bad.any()):
            raise RuntimeError(f"solver bounds contradict the interval bounds at {int(bad.sum())} entries")
        lo.copy_(cast_down(torch.from_numpy(new_lo).to(lo.device), lo.dtype))
        hi.copy_(cast_up(torch.from_numpy(new_hi).to(hi.device), hi.dtype))

    def _sample_bounds(self, box: ParamBox, sb: StepBounds, lr: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Interval bounds (lo, hi), (B, P) per region slot, of every per-sample update
        ``h_ij = (1 - lr wd) theta_j - lr g_ij``: what per-sample solver bounds are intersected with."""
        names = self.spec.param_names
        theta = flatten(box, names).scale(1.0 - lr * self.cfg.weight_decay).unsqueeze(0)
        hs = [theta - flat_grads(t, names).scale(lr) for t in [sb.base] + ([sb.poisoned] if sb.poisoned is not None else [])]
        return [h.lo.clone() for h in hs], [h.hi.clone() for h in hs]


def _joint_trace(sb: StepBounds) -> TraceBounds:
    """Bounds of every sample's intermediate quantities in either of its regions (the joint
    program lets each sample be in its base or its poisoned region)."""
    tb = TraceBounds.of(sb.base)
    return tb if sb.poisoned is None else tb.hull(TraceBounds.of(sb.poisoned))


def _stats(solved: int, reasons: dict[str, int], t0: float, moved: int = 0, skipped: int = 0) -> dict:
    return dict(solver_bounds=solved, fallback_bounds=sum(reasons.values()), fallback_reasons=reasons,
                solver_seconds=time.perf_counter() - t0, licence_fallback_programs=moved, skipped_objectives=skipped)


def _at(lo: torch.Tensor, hi: torch.Tensor, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entries ``targets`` of the bounds (lo, hi) as float64 numpy arrays."""
    return tuple(t.detach().to("cpu", torch.float64).numpy()[targets] for t in (lo, hi))


def _usable(value: float, status: Status) -> float:
    """A solver side's bound, or NaN when it cannot be used (failed, or no finite dual bound)."""
    return value if status != Status.FAILED and np.isfinite(value) else np.nan
