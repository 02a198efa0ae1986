"""Small random data sets (seeded per test by conftest's ``_seed``) and a one-epoch interval run,
for the input-validation tests (formerly the helpers of ``test_bad_input.py``)."""
from __future__ import annotations

import torch

from mibpcert import TrainConfig, certified_train
from mibpcert.threats import LinfFeatures

F64 = torch.float64


def binary_data(n=10, d=2):
    X = torch.randn(n, d, dtype=F64)
    y = (X[:, 0] > 0).to(F64)
    return X, y


def multi_data(n=10):
    X = torch.randn(n, 2, dtype=F64)
    y = torch.randint(0, 3, (n,)).to(F64)
    return X, y


def reg_data(n=10):
    X = torch.randn(n, 3, dtype=F64)
    return X, torch.randn(n, 2, dtype=F64)


CFG = dict(epochs=1, lr=0.1, batch_size=4)


def train(model, X, y, threat=None, **cfg):
    kw = dict(CFG, **cfg)
    return certified_train(model, X, y, threat if threat is not None else LinfFeatures(0.01), TrainConfig(**kw))
