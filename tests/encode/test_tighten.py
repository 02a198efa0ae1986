"""The MIBP path when solvers time out, fail or are missing, and with parallel workers.

* A tiny time limit keeps the run sound (concrete poisoned training stays inside the box) and the
  step log's solver/fallback counts match what the backend actually returned.
* A backend that raises, one that returns ``Status.FAILED`` everywhere, and an encoder that
  raises all fall back to the interval step: the box equals ``method="interval"``'s.
* Programs the backend's licence cannot take (``Backend.misfit``, decided before any solve) are
  bounded by HiGHS, counted per step and announced once. A licence error the size check did not
  foresee raises at the first step; a later step that hits one keeps the interval bound and is
  counted as ``licence``. (Missing packages and unknown backend names:
  ``tests/solvers/test_registry.py``; Gurobi's too-large message: ``tests/solvers/test_gurobi.py``;
  the fallback lines of the summary and report.json: ``tests/test_report.py``.)
* ``workers=2`` gives the same bounds as ``workers=1``.
* Objectives bounded without a solver (too narrow for its bound to tighten them, or known exactly):
  never looser than HiGHS's dual bounds on them, the same box as solving everything, counted.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

import mibpcert.encode.tighten as tighten_mod
import mibpcert.solvers.highs as highs_mod
from mibpcert import TrainConfig, certified_train, describe, mlp
from mibpcert.data import two_moons
from mibpcert.data_checks import check_training_data
from mibpcert.encode.training_step import StepSetting, TraceBounds, joint_encoding
from mibpcert.interval.tensor import Interval
from mibpcert.ir.program import LinearExpr
from mibpcert.losses import get_loss
from mibpcert.solvers import ObjectiveBound, SolveOptions, SolverUnavailable, Status, get_backend
from mibpcert.steps.interval import interval_step
from mibpcert.threats import LinfFeatures
from tests.helpers.backends import require
from tests.helpers.bounds import assert_box_inside, assert_in_box, assert_same_box
from tests.helpers.mibp import BATCH, LR, N, TASK, attack_nets, budget, case_data, make_data, mibp_cfg, run_interval


class Spy:
    """Wraps a backend's ``bound`` and records every side's (value, status)."""

    def __init__(self, monkeypatch, cls):
        self.sides: list[tuple[float, Status]] = []
        orig = cls.bound
        spy = self

        def bound(backend, program, objectives, options):
            out = orig(backend, program, objectives, options)
            for r in out:
                spy.sides += [(r.lower, r.lower_status), (r.upper, r.upper_status)]
            return out

        monkeypatch.setattr(cls, "bound", bound)

    @property
    def failed(self) -> int:
        return sum(1 for v, st in self.sides if st == Status.FAILED or not np.isfinite(v))

    @property
    def time_limited(self) -> int:
        return sum(1 for v, st in self.sides if st == Status.TIME_LIMIT)


# ---------------------------------------------------------------------------------------------
# 6. time-outs
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow  # several MIBP runs and attacks
@pytest.mark.parametrize("case_id", ["linf_k1-bce", "flip_k1-hinge"])
@pytest.mark.parametrize("mode", ["joint", "per_sample"])
def test_tiny_time_limit_sound_and_logged(monkeypatch, case_id, mode):
    model, X, y, threat_f, bud, loss = case_data(case_id)
    spy = Spy(monkeypatch, highs_mod.HighsBackend)
    res = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, mode=mode, time_limit=1e-4))
    assert len(res.log) == N // BATCH
    # the time limit was hit: some sides stopped early (time-limited dual bound) or failed
    assert spy.sides and spy.failed + spy.time_limited > 0
    # the log counts exactly what the backend returned
    assert sum(s.fallback_bounds for s in res.log) == spy.failed
    assert sum(s.solver_bounds for s in res.log) == len(spy.sides) - spy.failed
    for s in res.log:
        assert s.fallback_bounds + s.solver_bounds > 0
    assert_box_inside(res, run_interval(model, X, y, threat_f(), loss), "time-limited vs interval")
    for what, net in attack_nets(model, X, y, bud, loss, n_simple=2, n_guided=2):
        assert_in_box(res, net, f"time-limited {case_id}/{mode}: {what}")


def test_tiny_time_limit_gurobi_sound():
    require("gurobipy")
    from mibpcert.solvers.gurobi import GurobiBackend

    model, X, y, threat_f, bud, loss = case_data("linf_all-hinge")
    mp = pytest.MonkeyPatch()
    try:
        spy = Spy(mp, GurobiBackend)
        try:
            res = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, backend="gurobi", time_limit=1e-4))
        except SolverUnavailable as e:  # a missing package or a too small licence: fail, never skip
            pytest.fail(f"gurobi cannot run this check: {e}")
    finally:
        mp.undo()
    assert spy.failed > 0  # measured: with 1e-4 s Gurobi returns no dual bound at all
    assert sum(s.fallback_bounds for s in res.log) == spy.failed
    assert sum(s.solver_bounds for s in res.log) == len(spy.sides) - spy.failed
    assert_box_inside(res, run_interval(model, X, y, threat_f(), loss), "gurobi time-limited vs interval")
    for what, net in attack_nets(model, X, y, bud, loss, n_simple=2, n_guided=2):
        assert_in_box(res, net, f"gurobi time-limited: {what}")


@pytest.mark.slow  # several MIBP runs and attacks
def test_limit_stopped_milp_uses_its_partial_dual_bound(monkeypatch):
    """HiGHS stopped by a limit (deterministic here: after the first improving solution, status
    TIME_LIMIT) still returns its dual bound so far: counted as a solver bound, looser than or
    equal to the full solve, and sound."""
    model, X, y, threat_f, bud, loss = case_data("linf_k1-bce")
    full = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss))
    orig = highs_mod.HighsBackend.bound

    def limited(self, program, objectives, options):
        return orig(self, program, objectives, dataclasses.replace(options, extra={"mip_max_improving_sols": 1}))

    monkeypatch.setattr(highs_mod.HighsBackend, "bound", limited)
    spy = Spy(monkeypatch, highs_mod.HighsBackend)
    res = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss))
    finite_limited = sum(1 for v, st in spy.sides if st == Status.TIME_LIMIT and np.isfinite(v))
    assert finite_limited > 0
    assert sum(s.solver_bounds for s in res.log) == len(spy.sides) - spy.failed
    assert sum(s.fallback_bounds for s in res.log) == spy.failed
    # Not a soundness property (that is checked against attacks below): two HiGHS searches reach
    # their dual bounds on different paths, and where both end at the same LP bound the values
    # agree only to LP round-off (measured 1.7e-12 with highspy 1.16), far below the 1e-6 pad.
    assert_box_inside(full, res, "full solve inside the limit-stopped box", tol=1e-9)
    assert_box_inside(res, run_interval(model, X, y, threat_f(), loss), "limit-stopped vs interval")
    for what, net in attack_nets(model, X, y, bud, loss, n_simple=2, n_guided=2):
        assert_in_box(res, net, f"limit-stopped: {what}")


# ---------------------------------------------------------------------------------------------
# 6. solver failures fall back to the interval step
# ---------------------------------------------------------------------------------------------
def _expected_sides(res_log):
    return [s.solver_bounds + s.fallback_bounds for s in res_log]


@pytest.mark.parametrize("mode", ["joint", "per_sample"])
def test_backend_exception_falls_back_to_interval(monkeypatch, mode):
    model, X, y, threat_f, _, loss = case_data("linf_k1-bce")

    def boom(self, program, objectives, options):
        raise RuntimeError("simulated solver crash")

    monkeypatch.setattr(highs_mod.HighsBackend, "bound", boom)
    built = []  # objectives and known entries of every step's programs: a failed step counts the sides it sent
    orig = tighten_mod.StepTightener.programs

    def programs(self, *a, **k):
        progs = orig(self, *a, **k)
        built.append((sum(len(p.exprs) for p, _, _ in progs), sum(len(p.constants) for p, _, _ in progs)))
        return progs

    monkeypatch.setattr(tighten_mod.StepTightener, "programs", programs)
    res = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, mode=mode))
    ref = run_interval(model, X, y, threat_f(), loss)
    assert_same_box(res, ref, "backend raising")
    assert len(built) == len(res.log)
    for s, (n_obj, n_known) in zip(res.log, built):
        sent = n_obj - (s.skipped_objectives - n_known)  # the rest were too narrow for a solver to tighten
        assert 0 < sent <= n_obj and s.solver_bounds == 0 and s.fallback_bounds == 2 * sent
        assert s.fallback_reasons == {"failed": 2 * sent}
        assert s.width_ratio == pytest.approx(1.0)


def test_encoder_exception_falls_back_to_interval(monkeypatch):
    model, X, y, threat_f, _, loss = case_data("flip_k1-hinge")

    def boom(*a, **k):
        raise ValueError("simulated encoder failure")

    monkeypatch.setattr(tighten_mod, "joint_program", boom)
    res = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss))
    assert_same_box(res, run_interval(model, X, y, threat_f(), loss), "encoder raising")
    assert all(s.fallback_bounds > 0 and s.solver_bounds == 0 for s in res.log)


@pytest.mark.parametrize("mode", ["joint", "per_sample"])
def test_failed_status_everywhere_falls_back_to_interval(monkeypatch, mode):
    """No solver bound at all: every side is counted as a fallback and the box is the interval
    box ("a side with no finite dual bound keeps the interval bound"). Joint mode reproduces it
    bit for bit; per_sample recombines the per-sample interval values in another order, which
    differs from the interval step in the last ulp (measured: up to 2.5e-16)."""
    model, X, y, threat_f, bud, loss = case_data("linf_k1-bce")
    calls = []

    def failed(self, program, objectives, options):
        objectives = list(objectives)
        calls.append(len(objectives))
        return [ObjectiveBound(-np.inf, np.inf, Status.FAILED, Status.FAILED) for _ in objectives]

    monkeypatch.setattr(highs_mod.HighsBackend, "bound", failed)
    res = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, mode=mode))
    ref = run_interval(model, X, y, threat_f(), loss)
    assert calls, "the backend was never called"
    assert sum(s.solver_bounds for s in res.log) == 0
    assert sum(s.fallback_bounds for s in res.log) == 2 * sum(calls)
    assert_same_box(res, ref, f"all FAILED ({mode})", tol=0.0 if mode == "joint" else 1e-12)
    for what, net in attack_nets(model, X, y, bud, loss, n_simple=2, n_guided=2):
        assert_in_box(res, net, f"all FAILED: {what}")


def test_nan_bounds_are_not_used(monkeypatch):
    """A backend reporting NaN with an OPTIMAL status must not poison the box."""
    model, X, y, threat_f, bud, loss = case_data("flip_k1-hinge")
    monkeypatch.setattr(
        highs_mod.HighsBackend, "bound",
        lambda self, p, objs, o: [ObjectiveBound(np.nan, np.nan, Status.OPTIMAL, Status.OPTIMAL) for _ in objs],
    )
    res = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss))
    for lo, hi in res.param_bounds.values():
        assert torch.isfinite(lo).all() and torch.isfinite(hi).all()
    assert sum(s.fallback_bounds for s in res.log) > 0
    for what, net in attack_nets(model, X, y, bud, loss, n_simple=1, n_guided=1):
        assert_in_box(res, net, what)


def test_licence_limit_raises_first_then_falls_back(monkeypatch):
    """A licence too small for the first step's program is an error before any work is spent;
    once bounds were solved, a later step whose program outgrows the licence keeps the interval
    bound, is logged and counted as ``licence``."""
    from mibpcert.solvers import LicenceLimit

    model, X, y, threat_f, _, loss = case_data("linf_k1-bce")
    real = tighten_mod.bound_many
    calls = []

    def limited_after(n_ok):
        def bound_many(*a, **k):
            calls.append(1)
            if len(calls) > n_ok:
                raise LicenceLimit("program too large for the size-limited licence (simulated)")
            return real(*a, **k)
        return bound_many

    monkeypatch.setattr(tighten_mod, "bound_many", limited_after(0))
    with pytest.raises(LicenceLimit, match=r"simulated\); use mode='per_sample' \(one small program per sample\)"):
        certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, epochs=2))
    calls.clear()
    with pytest.raises(LicenceLimit, match=r"simulated\); use a smaller model or batch, or backend='highs'$"):
        certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, epochs=2, mode="per_sample"))  # no advice of the mode in use
    calls.clear()
    monkeypatch.setattr(tighten_mod, "bound_many", limited_after(1))
    res = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, epochs=2))
    assert res.log[0].solver_bounds > 0 and "licence" not in res.log[0].fallback_reasons
    for s in res.log[1:]:
        assert s.solver_bounds == 0 and set(s.fallback_reasons) == {"licence"} and s.fallback_bounds > 0


def test_programs_the_licence_cannot_take_are_bounded_by_highs(monkeypatch, caplog):
    """A program the backend reports as not fitting (decided from its size, before any solve) is
    bounded by HiGHS instead: every program moved gives the HiGHS run's box bit for bit, the moved
    programs are counted per step, and the run says so once."""
    require("gurobipy")
    import mibpcert.solvers.gurobi as gurobi_mod

    model, X, y, threat_f, bud, loss = case_data("linf_k1-bce")
    cfg = dict(loss=loss, epochs=2, mode="per_sample", relax="lp", time_limit=None)
    highs = certified_train(model, X, y, threat_f(), mibp_cfg(backend="highs", **cfg))
    monkeypatch.setattr(gurobi_mod.GurobiBackend, "misfit", lambda self, program: "too large (simulated)")
    with caplog.at_level("WARNING", logger="mibpcert"):
        moved = certified_train(model, X, y, threat_f(), mibp_cfg(backend="gurobi", **cfg))
    assert_same_box(moved, highs, "every program moved to HiGHS")
    programs = 2 * BATCH  # base and poisoned region of each sample (k-of-N threat)
    assert [s.licence_fallback_programs for s in moved.log] == [programs] * len(moved.log)
    said = [r.getMessage() for r in caplog.records if "cannot take" in r.getMessage()]
    assert len(said) == 1 and f"gurobi cannot take {programs} of the {programs} programs" in said[0]
    assert "too large (simulated)" in said[0] and "mode='per_sample'" not in said[0]  # no advice of the mode in use

    # half the programs moved: sound (inside the interval box, every attack inside), counted
    calls = []

    def every_other(self, program):
        calls.append(1)
        return "too large (simulated)" if len(calls) % 2 else None

    monkeypatch.setattr(gurobi_mod.GurobiBackend, "misfit", every_other)
    mixed = certified_train(model, X, y, threat_f(), mibp_cfg(backend="gurobi", **cfg))
    assert sum(s.licence_fallback_programs for s in mixed.log) == (len(calls) + 1) // 2
    assert all(s.solver_bounds > 0 and s.fallback_bounds == 0 for s in mixed.log)
    assert_box_inside(mixed, run_interval(model, X, y, threat_f(), loss, epochs=2), "half moved vs interval")
    for what, net in attack_nets(model, X, y, bud, loss, n_simple=2, n_guided=1, epochs=2):
        assert_in_box(mixed, net, f"half moved: {what}")


def test_a_joint_program_too_large_for_the_real_licence_runs_on_highs(caplog):
    """With Gurobi's size-limited (pip) licence, a joint program of 12 samples on a 2-10-1 net has
    over 200 variables and bilinear terms: the run does not stop, HiGHS bounds it."""
    require("gurobipy")
    from mibpcert.model import mlp
    from mibpcert.solvers.gurobi import licence_is_size_limited
    from mibpcert.threats import LinfFeatures

    if not licence_is_size_limited():
        pytest.fail("a full Gurobi licence is active here, so the size-limited licence cannot be checked")
    X, y = make_data("binary", 12, seed=1)
    model = mlp([2, 10, 1], seed=3)
    cfg = dict(epochs=1, batch_size=12, loss="hinge", relax="lp", mode="joint", time_limit=None)
    with caplog.at_level("WARNING", logger="mibpcert"):
        res = certified_train(model, X, y, LinfFeatures(0.05), mibp_cfg(backend="gurobi", **cfg))
    ref = certified_train(model, X, y, LinfFeatures(0.05), mibp_cfg(backend="highs", **cfg))
    assert_same_box(res, ref, "joint program on HiGHS")
    assert [s.licence_fallback_programs for s in res.log] == [1]
    assert any("size-limited Gurobi licence" in r.getMessage() and "mode='per_sample'" in r.getMessage()
               for r in caplog.records)


# ---------------------------------------------------------------------------------------------
# 8. parallel workers give the same bounds
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_workers_two_equals_one():
    """per_sample mode (eight programs per step, spread over the workers): bit for bit, since
    every program is bounded whole by one backend call wherever it runs. Worker start-up
    (spawn + import) takes seconds."""
    mode = "per_sample"
    model, X, y, threat_f, _, loss = case_data("linf_k1-bce")
    cfg = dict(loss=loss, mode=mode, time_limit=None)
    r1 = certified_train(model, X, y, threat_f(), mibp_cfg(workers=1, **cfg))
    r2 = certified_train(model, X, y, threat_f(), mibp_cfg(workers=2, **cfg))
    assert_same_box(r1, r2, f"workers {mode}")
    assert [s.solver_bounds for s in r1.log] == [s.solver_bounds for s in r2.log]
    assert [s.fallback_bounds for s in r1.log] == [s.fallback_bounds for s in r2.log]


@pytest.mark.slow
def test_joint_workers_split_objectives():
    """joint mode shares one program's objectives out over the workers (each builds its own
    solver model): the LP optima are unique, so the boxes agree up to the solver tolerances,
    every objective is still bounded, and the box stays sound."""
    model, X, y, threat_f, _, loss = case_data("linf_k1-bce")
    cfg = dict(loss=loss, mode="joint", relax="lp", time_limit=None)
    r1 = certified_train(model, X, y, threat_f(), mibp_cfg(workers=1, **cfg))
    r3 = certified_train(model, X, y, threat_f(), mibp_cfg(workers=3, **cfg))
    assert_same_box(r1, r3, "workers joint", tol=1e-6)
    assert [s.solver_bounds for s in r1.log] == [s.solver_bounds for s in r3.log]
    assert all(s.fallback_bounds == 0 and s.solver_bounds > 0 for s in r3.log)
    _, _, _, _, bud, _ = case_data("linf_k1-bce")
    for what, net in attack_nets(model, X, y, bud, loss, n_simple=2, n_guided=2):
        assert_in_box(r3, net, f"joint workers=3: {what}")


def test_step_time_limit_stops_starting_objectives():
    """With a step budget already spent when the step starts, no side is solved: every bound is
    the interval bound, counted as ``time_limit``; a generous budget changes nothing."""
    model, X, y, threat_f, _, loss = case_data("linf_k1-bce")
    ref = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, epochs=2, time_limit=None))
    spent = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, epochs=2, time_limit=None, step_time_limit=1e-9))
    interval = certified_train(model, X, y, threat_f(), TrainConfig(epochs=2, lr=ref.config.lr, batch_size=ref.config.batch_size,
                                                                    loss=loss))
    for n, (lo, hi) in interval.param_bounds.items():
        assert torch.equal(spent.param_bounds[n][0], lo) and torch.equal(spent.param_bounds[n][1], hi), n
    assert all(s.solver_bounds == 0 and set(s.fallback_reasons) == {"time_limit"} for s in spent.log)
    roomy = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, epochs=2, time_limit=None, step_time_limit=600.0))
    for n, (lo, hi) in ref.param_bounds.items():
        assert torch.equal(roomy.param_bounds[n][0], lo) and torch.equal(roomy.param_bounds[n][1], hi), n


# ---------------------------------------------------------------------------------------------
# 7. objectives that need no solver (StepTightener.solve: Backend.margin, StepProgram.constants)
# ---------------------------------------------------------------------------------------------
class SolveSpy:
    """Records, per call of ``StepTightener.solve``, the programs, the known bounds it was given
    and the results (``Status.SKIPPED`` marks the objectives it did not send to a solver)."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[list, list, list]] = []
        orig = tighten_mod.StepTightener.solve
        spy = self

        def solve(tightener, build, sides, known, options=None):
            seen = []
            progs, results, stats = orig(tightener, build, sides, lambda p: seen.extend(known(p)) or seen, options)
            spy.calls.append((progs, seen, results))
            return progs, results, stats

        monkeypatch.setattr(tighten_mod.StepTightener, "solve", solve)

    def skipped(self):
        """(program, known lo, known hi) of the skipped objectives of every recorded program."""
        for progs, seen, results in self.calls:
            for (p, _, _), (lo, hi), res in zip(progs, seen, results):
                k = [t for t, r in enumerate(res) if r.lower_status == Status.SKIPPED]
                if k:
                    yield p, [p.exprs[t] for t in k], lo[k], hi[k]


def _no_skipping(monkeypatch):
    monkeypatch.setattr(highs_mod.HighsBackend, "margin", lambda self, program, options: -1.0)


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


SKIP_RUNS = {  # settings where objectives are skipped for their width
    # per_sample, k=1: the base programs of step 1 start from a point box and clean data; their
    # gradient variables are only the outward-padded rounding of a point (width ~1e-15)
    "per_sample-k1": ("linf_k1-bce", dict(mode="per_sample")),
    # joint, features moved by 1e-13: every interval bound is far below the LP padding
    "joint-tiny": ("linf_k1-bce", dict(mode="joint", relax="lp")),
    # relational, one full-batch step on Moons-20: residuals of exact affine forms are points
    "relational": (None, dict(mode="joint", relax="lp", relational=True, batch_size=20)),
}


def _skip_run(name):
    case, kw = SKIP_RUNS[name]
    if case is None:
        d = two_moons(n_train=20, n_test=0, noise=0.1, seed=0)
        return mlp([2, 6, 1], seed=0), d.X_train, d.y_train, LinfFeatures(0.01), mibp_cfg(**kw)
    model, X, y, threat_f, _, loss = case_data(case)
    threat = LinfFeatures(1e-13) if name == "joint-tiny" else threat_f()
    return model, X, y, threat, mibp_cfg(loss=loss, **kw)


@pytest.mark.parametrize("name", list(SKIP_RUNS))
def test_skipped_objectives_are_no_looser_than_the_solver(monkeypatch, name):
    """Every objective the step did not solve for its width: its known bound lies inside HiGHS's
    dual bounds on it, solved here independently (LP and MILP relaxation), so solving it could not
    have tightened the box."""
    model, X, y, threat, cfg = _skip_run(name)
    spy = SolveSpy(monkeypatch)
    res = certified_train(model, X, y, threat, cfg)
    skipped = list(spy.skipped())
    assert skipped, "nothing was skipped: the setting no longer exercises skipping"
    assert sum(s.skipped_objectives for s in res.log) >= sum(len(e) for _, e, _, _ in skipped)
    highs = get_backend("highs")
    for p, exprs, lo, hi in skipped:
        for relax in ("lp", "milp"):
            for b, l, h in zip(highs.bound(p.program, exprs, SolveOptions(relax=relax)), lo, hi):
                assert b.lower_status == b.upper_status == Status.OPTIMAL
                assert b.lower <= l and h <= b.upper, f"{name}/{relax}: solver [{b.lower}, {b.upper}] inside [{l}, {h}]"


@pytest.mark.parametrize("name", list(SKIP_RUNS))
def test_skipping_gives_the_box_of_solving_everything(monkeypatch, name):
    """The same run with every objective sent to the solver (margin < 0) gives the same box bit
    for bit where whole programs were skipped, and the counts add up: what one run skipped the
    other solved."""
    model, X, y, threat, cfg = _skip_run(name)
    with_skip = certified_train(model, X, y, threat, cfg)
    _no_skipping(monkeypatch)
    without = certified_train(model, X, y, threat, cfg)
    # relational: skipped and solved objectives share one LP, whose later solves start from other
    # bases when objectives are left out: equal up to the LP's tolerances
    assert_same_box(with_skip, without, name, tol=0.0 if name != "relational" else 1e-8)
    for a, b in zip(with_skip.log, without.log):
        extra = a.skipped_objectives - b.skipped_objectives
        assert extra >= 0 and b.solver_bounds + b.fallback_bounds == a.solver_bounds + a.fallback_bounds + 2 * extra
    assert sum(a.skipped_objectives - b.skipped_objectives for a, b in zip(with_skip.log, without.log)) > 0


@pytest.mark.parametrize("mode", ["joint", "per_sample"])
def test_tiny_perturbations_need_no_solver(monkeypatch, mode):
    """Features moved by 1e-13: every trainable entry of every program is bounded without the
    solver (the backend is never called) and counted, and the box still holds the attacks."""
    model, X, y, _, _, loss = case_data("linf_k1-bce")
    calls = []
    monkeypatch.setattr(highs_mod.HighsBackend, "bound", lambda *a: calls.append(a) or [])
    res = certified_train(model, X, y, LinfFeatures(1e-13), mibp_cfg(loss=loss, mode=mode, relax="lp"))
    assert not calls
    programs = 1 if mode == "joint" else BATCH  # k=None: one region per sample
    assert [s.skipped_objectives for s in res.log] == [programs * _trainable(model)] * len(res.log)
    assert all(s.solver_bounds == s.fallback_bounds == 0 for s in res.log)
    bud = budget(TASK[loss], eps=1e-13, feat_k=None)
    for what, net in attack_nets(model, X, y, bud, loss, n_simple=2, n_guided=1):
        assert_in_box(res, net, f"tiny eps: {what}")


def test_known_entries_are_exact_over_the_program():
    """StepProgram.constants (counted as skipped): entries whose update depends on their own
    parameter alone (here: the units of a hidden layer dead for every input). Every value of that
    parameter in the box is feasible in the program (HiGHS's dual bounds on it reach the box's
    ends), so the interval value of the update is its exact range."""
    model, X, y, threat_f, _, loss = case_data("linf_k1-bce")
    model = copy.deepcopy(model)  # case_data is cached: other tests get the same model object
    with torch.no_grad():
        model[0].bias[:2] = -50.0  # two hidden units dead for every input
    spec = describe(model)
    box = {n: Interval(p.detach() - 0.01, p.detach() + 0.01) for n, p in model.state_dict().items()}
    Xc, yc, info = check_training_data(spec, X, y, loss, X.shape[0], torch.float64, "cpu")
    region = threat_f().region(Xc, yc, info)
    sb = interval_step(spec, box, region, loss, LR, 0.0)
    st = StepSetting(spec, box, dict(model.state_dict()), threat_f(), get_loss(loss), LR)
    J = joint_encoding(st, region, Xc, yc, TraceBounds.of(sb.base).hull(TraceBounds.of(sb.poisoned)))
    prog, _ = J.enc.build()
    theta = np.concatenate([J.theta[n].idx for n in spec.param_names])
    known = sorted(J.constants)
    assert len(known) == 2 * (2 + 1 + 1) and all(theta[t] >= 0 for t in known)  # the dead units: 2 inputs, bias, output
    bounds = get_backend("highs").bound(prog, [LinearExpr.var(int(theta[t])) for t in known], SolveOptions(relax="milp"))
    for t, b in zip(known, bounds):
        j = int(theta[t])
        assert b.lower <= prog.lb[j] and prog.ub[j] <= b.upper
        assert prog.lb[j] - b.lower < 1e-5 and b.upper - prog.ub[j] < 1e-5
        lo, hi = J.constants[t]
        assert hi - lo == pytest.approx(prog.ub[j] - prog.lb[j], rel=1e-12)  # no weight decay: the update is theta_j
