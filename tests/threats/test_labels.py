"""Label threats (``mibpcert.threats`` labels: LabelFlip, LabelNoise): their regions, their
parameters, and the task they need."""
from __future__ import annotations

import math

import pytest
import torch

from mibpcert import mlp
from mibpcert.threats import LabelFlip, LabelNoise
from tests.helpers.inputs import binary_data, multi_data, reg_data, train
from tests.helpers.training import make_data as training_data
from tests.helpers.training import task_info


@pytest.mark.parametrize("gamma", [-0.1, math.nan])
def test_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma must be a finite non-negative number"):
        LabelNoise(1, gamma)


def test_label_flip_target_out_of_range():
    X, y = multi_data()
    with pytest.raises(ValueError, match="target class 3 out of range for 3 classes"):
        train(mlp([2, 3, 3]), X, y, loss="ce", threat=LabelFlip(1, to=3))
    Xb, yb = binary_data()
    with pytest.raises(ValueError, match="target class 2 out of range for 2 classes"):
        train(mlp([2, 3, 1]), Xb, yb, threat=LabelFlip(1, to=2))
    for bad in (-1, 1.0, True):
        with pytest.raises(ValueError, match="'to' must be a non-negative integer"):
            LabelFlip(1, to=bad)


def test_label_noise_on_classification_and_flip_on_regression():
    X, y = binary_data()
    with pytest.raises(ValueError, match="LabelNoise needs a regression task"):
        train(mlp([2, 3, 1]), X, y, threat=LabelNoise(1, 0.1))
    Xr, yr = reg_data()
    with pytest.raises(ValueError, match="LabelFlip needs a classification task"):
        train(mlp([3, 3, 2]), Xr, yr, loss="mse", threat=LabelFlip(1))


def test_label_regions():
    X, y = training_data("multiclass", 6, seed=13)
    info = task_info("multiclass", 6)
    clean = torch.nn.functional.one_hot(y.long(), 3).bool()
    r = LabelFlip(2).region(X, y, info)
    assert torch.equal(r.labels, clean) and r.poisoned_labels.all() and r.k == 2
    r0 = LabelFlip(1, to=0).region(X, y, info)
    expect = clean.clone()
    expect[:, 0] = True
    assert torch.equal(r0.poisoned_labels, expect)
    rn = LabelFlip(None).region(X, y, info)
    assert rn.labels.all() and rn.k is None
    Xr, yr = training_data("regression", 6, seed=13)
    rr = LabelNoise(1, 0.25).region(Xr, yr, task_info("regression", 6))
    assert torch.equal(rr.labels.lo, yr) and torch.equal(rr.poisoned_labels.lo, yr - 0.25) and torch.equal(rr.poisoned_labels.hi, yr + 0.25)
