"""Runs whose bounds blow up (``mibpcert.train``): ``BoundsDiverged``, or with ``select_epoch`` the
best finite epoch and a warning."""
from __future__ import annotations

import pytest
import torch

from mibpcert import BoundsDiverged, TrainConfig, certified_train, certify, mlp
from mibpcert.threats import LinfFeatures
from tests.helpers.inputs import F64, binary_data


# ---------------------------------------------------------------------------------------------
# divergence and NaN bounds
# ---------------------------------------------------------------------------------------------
def test_bounds_blow_up_raises_bounds_diverged():
    torch.manual_seed(0)
    X = torch.randn(12, 3, dtype=F64)
    y = torch.randn(12, 2, dtype=F64)
    cfg = TrainConfig(epochs=6, lr=1e3, batch_size=4, loss="mse")
    with pytest.raises(BoundsDiverged, match=r"non-finite at step \d+ \(epoch \d+\)") as info:
        certified_train(mlp([3, 8, 2], seed=1), X, y, LinfFeatures(10.0), cfg)
    assert "Lower lr or eps" in str(info.value)


def test_select_epoch_keeps_the_best_finite_epoch_when_a_later_epoch_diverges():
    """With select_epoch, bounds that blow up in epoch 2 no longer discard the finished epochs:
    the result is the best of them (the same box as a run stopped after that epoch) and says
    where the bounds diverged; without select_epoch the run still raises."""
    torch.manual_seed(0)
    X, y = binary_data(40)
    Xv, yv = binary_data(40)
    kw = dict(lr=2.0, batch_size=10, loss="bce")
    model = mlp([2, 16, 16, 1], seed=1)
    res = certified_train(model, X, y, LinfFeatures(0.01), TrainConfig(epochs=40, select_epoch=True, **kw), Xv, yv)
    assert res.diverged is not None and "non-finite at step 13 (epoch 3)" in res.diverged
    assert len(res.log) == 12 and len(res.epoch_val_certified) == 3
    assert res.selected_epoch < 3
    ref = certified_train(model, X, y, LinfFeatures(0.01), TrainConfig(epochs=res.selected_epoch + 1, **kw))
    for name, (lo, hi) in res.param_bounds.items():
        assert torch.isfinite(lo).all() and torch.isfinite(hi).all()
        assert torch.equal(lo, ref.param_bounds[name][0]) and torch.equal(hi, ref.param_bounds[name][1])
        assert torch.equal(res.nominal.state_dict()[name], ref.nominal.state_dict()[name])
    from mibpcert.report import format_summary, run_summary

    text = format_summary(run_summary(res, certify(res, Xv, yv)))
    assert "WARNING: training stopped early, the bounds diverged" in text
    with pytest.raises(BoundsDiverged, match="step 13"):
        certified_train(model, X, y, LinfFeatures(0.01), TrainConfig(epochs=40, **kw))
