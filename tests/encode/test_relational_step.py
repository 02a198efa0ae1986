"""The joint step program on affine forms (``mibpcert.encode.relational_step``) through
``certified_train(method="mibp", relational=True)``: it is never looser than the affine step it
refines, it tightens where the affine relaxations lose, and a solver failure keeps the affine
step's forms (logged and counted, the run goes on)."""
from __future__ import annotations

import logging

import pytest
import torch

import mibpcert.solvers.highs as highs_mod
from mibpcert import TrainConfig, certified_train, mlp
from mibpcert.bounders import AffineBounder
from mibpcert.threats import LinfFeatures

F64 = torch.float64


def _data(n: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g, dtype=F64)
    y = (X[:, 0] * X[:, 1] + 0.3 * X[:, 0] > 0).to(F64)
    return X, y


def _widths(res) -> torch.Tensor:
    return torch.cat([(hi - lo).reshape(-1) for lo, hi in res.param_bounds.values()])


def _run(method: dict, eps: float, epochs: int = 5):
    X, y = _data()
    cfg = TrainConfig(loss="hinge", epochs=epochs, lr=0.3, batch_size=12, **method)
    return certified_train(mlp([2, 5, 1], seed=3), X, y, LinfFeatures(eps), cfg)


AFFINE = dict(method="affine")
RELATIONAL = dict(method="mibp", mode="joint", relax="lp", relational=True, time_limit=30.0)


@pytest.mark.slow
def test_relational_program_tightens_the_affine_step_where_relus_switch():
    """eps large enough that ReLUs and hinge points are ambiguous: the LP on the tied program
    (triangle relaxations, exact linear parts) leaves less independent error than the DeepZ forms
    it refines (the affine step without switch symbols, which the program has no variables for),
    step after step; the first step is never looser, and the result is no looser than the affine
    path with its switch symbols."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AffineBounder, "switch_symbols", False)
        refined = _run(AFFINE, 0.05, epochs=6)
    aff, rel = _run(AFFINE, 0.05, epochs=6), _run(RELATIONAL, 0.05, epochs=6)
    assert rel.log[0].mean_width <= refined.log[0].mean_width
    assert float(_widths(rel).mean()) < 0.9 * float(_widths(refined).mean()), (
        f"relational {float(_widths(rel).mean()):.4g} vs affine without switch symbols {float(_widths(refined).mean()):.4g}")
    assert float(_widths(rel).mean()) <= float(_widths(aff).mean())


def test_a_failing_solver_keeps_the_affine_forms(monkeypatch, caplog):
    """Every solve raises: each step falls back to the affine step it refines (bit-identical bounds), the
    failure is logged and counted, and the run finishes."""
    def broken(self, program, objectives, options):
        raise RuntimeError("solver crashed")

    with pytest.MonkeyPatch.context() as mp:  # the affine step the program refines: no switch symbols
        mp.setattr(AffineBounder, "switch_symbols", False)
        aff = _run(AFFINE, 0.02, epochs=3)
    monkeypatch.setattr(highs_mod.HighsBackend, "bound", broken)
    with caplog.at_level(logging.WARNING, logger="mibpcert"):
        rel = _run(RELATIONAL, 0.02, epochs=3)
    for name in aff.param_bounds:
        assert torch.equal(aff.param_bounds[name][0], rel.param_bounds[name][0])
        assert torch.equal(aff.param_bounds[name][1], rel.param_bounds[name][1])
    assert all(s.solver_bounds == 0 and s.fallback_reasons.get("failed", 0) > 0 for s in rel.log)
    assert "solver crashed" in caplog.text


def test_relational_needs_the_joint_program():
    with pytest.raises(ValueError, match="relational=True .* needs method='mibp' and mode='joint'"):
        TrainConfig(method="mibp", mode="per_sample", relational=True)
