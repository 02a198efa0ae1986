"""Working precision: a bound converted to a lower precision is rounded outward, and the MIBP
path (whose solver works in float64 and cannot see the rounding of a float32 SGD step) refuses
float32 before any work; in float64 the campaign's float32 reproducer stays sound over many seeds."""
import pytest
import torch

from attacks import sgd_train
from mibpcert import TrainConfig, certified_train, mlp
from mibpcert.interval.tensor import Interval, cast_down, cast_up
from mibpcert.threats import LabelFlip, LinfFeatures
from test_mibp_soundness import assert_in_box, make_data

F64, F32 = torch.float64, torch.float32


def test_interval_to_float32_contains_the_float64_interval():
    g = torch.Generator().manual_seed(0)
    lo = torch.randn(10000, generator=g, dtype=F64) * torch.logspace(-30, 30, 10000, dtype=F64)
    hi = lo + torch.rand(10000, generator=g, dtype=F64) * 1e-9
    iv = Interval(lo, hi).to(F32)
    assert iv.dtype == F32
    assert bool((iv.lo.double() <= lo).all()) and bool((iv.hi.double() >= hi).all())
    # no wider than needed: one float32 step at most from the nearest rounding
    near_lo, near_hi = lo.to(F32), hi.to(F32)
    assert bool((torch.nextafter(iv.lo, torch.tensor(torch.inf)) >= near_lo).all())
    assert bool((torch.nextafter(iv.hi, torch.tensor(-torch.inf)) <= near_hi).all())
    # round to nearest would have moved some bounds inward: the test can fail
    assert bool((near_lo.double() > lo).any()) and bool((near_hi.double() < hi).any())


def test_casts_of_extreme_values():
    big = torch.tensor([1e300, -1e300, 0.1, -0.1, 0.0, 5e-324], dtype=F64)
    down, up = cast_down(big, F32), cast_up(big, F32)
    assert bool((down.double() <= big).all()) and bool((up.double() >= big).all())
    assert torch.isfinite(down[0]) and torch.isinf(up[0]) and torch.isinf(down[1])
    same = torch.tensor([0.5, 2.0], dtype=F64)
    assert torch.equal(cast_down(same, F64), same) and torch.equal(cast_up(same, F64), same)


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
