"""Working precision: the MIBP
path (whose solver works in float64 and cannot see the rounding of a float32 SGD step) refuses
float32 before any work; in float64 the campaign's float32 reproducer stays sound over many seeds. (Outward rounding
of a bound converted to a lower precision: ``tests/interval/test_tensor.py``.)"""
import pytest
import torch

from mibpcert import TrainConfig, certified_train, mlp
from mibpcert.threats import LabelFlip, LinfFeatures
from tests.helpers.attacks import sgd_train
from tests.helpers.bounds import assert_in_box
from tests.helpers.mibp import make_data

F64, F32 = torch.float64, torch.float32


@pytest.mark.parametrize("mode", ["joint", "per_sample"])
@pytest.mark.parametrize("relax", ["lp", "milp"])
def test_mibp_refuses_float32_before_any_work(mode, relax):
    with pytest.raises(ValueError, match="method='mibp' needs dtype='float64'"):
        TrainConfig(method="mibp", mode=mode, relax=relax, dtype="float32")
    TrainConfig(method="interval", dtype="float32")  # the interval path keeps float32


@pytest.mark.slow
@pytest.mark.parametrize("mode, relax", [("joint", "lp"), ("joint", "milp"), ("per_sample", "lp"), ("per_sample", "milp")])
def test_float32_reproducer_in_float64_is_sound_over_seeds(mode, relax):
    """The campaign's setting (linear 2-1 model, hinge, lr 0.3, batch 6; no poisoning, one
    flipped label, eps 0.01) over 8 seeds: the clean run and a label-flip run trained in plain
    torch lie in every MIBP box, without tolerance (a violation raises SoundnessError first)."""
    for seed in range(8):
        X, y = make_data("binary", 12, seed=seed)
        model = mlp([2, 1], seed=seed)
        for threat in (LabelFlip(0), LinfFeatures(0.01), LabelFlip(1)):
            cfg = TrainConfig(epochs=2, lr=0.3, batch_size=6, loss="hinge", method="mibp", mode=mode, relax=relax)
            res = certified_train(model, X, y, threat, cfg)
            assert_in_box(res, sgd_train(model, X, y, "hinge", epochs=2, lr=0.3, batch_size=6), f"seed {seed} {threat.describe()}")
            if isinstance(threat, LabelFlip) and threat.k == 1:
                y_flip = y.clone()
                y_flip[0], y_flip[6] = 1 - y_flip[0], 1 - y_flip[6]  # one flip per batch, the same in every epoch
                net = sgd_train(model, X, y_flip, "hinge", epochs=2, lr=0.3, batch_size=6)
                assert_in_box(res, net, f"seed {seed} flipped")
