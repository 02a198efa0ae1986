"""What every threat shares (``mibpcert.threats`` base: ``Threat``, ``TaskInfo``, budgets): the
budget k is type-checked and must fit the batch, and non-threats are refused."""
from __future__ import annotations

import numpy as np
import pytest

from mibpcert import mlp
from mibpcert.threats import (
    Both, GlobalBudget, L1Features, LabelFlip, LabelNoise, LinfFeatures, MissingValues, OneHotFeature, SharedTrigger, TaskInfo,
)
from tests.helpers.inputs import binary_data, train


@pytest.mark.parametrize("make", [lambda k: LinfFeatures(0.1, k=k), lambda k: LabelFlip(k), lambda k: LabelNoise(k, 0.1)])
@pytest.mark.parametrize("k", [-1, 1.5, True, "2"])
def test_bad_k(make, k):
    with pytest.raises(ValueError, match="k must be a non-negative integer"):
        make(k)


@pytest.mark.parametrize("threat", [LinfFeatures(0.1, k=5), LabelFlip(5)])
def test_k_larger_than_batch(threat):
    X, y = binary_data()
    with pytest.raises(ValueError, match="k=5 poisoned samples per batch is larger than the batch size 4"):
        train(mlp([2, 3, 1]), X, y, threat=threat)


def test_k_larger_than_small_data_set():
    X, y = binary_data(3)  # the whole data set is one batch of 3 (batch_size 4)
    with pytest.raises(ValueError, match="larger than the batch size 3"):
        train(mlp([2, 3, 1]), X, y, threat=LabelFlip(4))


def test_threat_type_checks():
    X, y = binary_data()
    with pytest.raises(TypeError, match="threat must be a mibpcert.threats model"):
        train(mlp([2, 3, 1]), X, y, threat={"type": "linf_features", "eps": 0.1})
    with pytest.raises(TypeError, match="must be threat models"):
        Both(LinfFeatures(0.1), 0.3)


def test_task_info_validation_direct():
    info = TaskInfo("binary", 2, 4, 3)
    OneHotFeature([0, 1, 2, 3], k=3).validate(info)
    SharedTrigger([1, 0, 0, 1], 0.1, k=3, target=1).validate(info)
    with pytest.raises(ValueError, match="larger than the batch size"):
        MissingValues([0], 0.0, 1.0, k=4).validate(info)
    GlobalBudget(MissingValues([0], 0.0, 1.0), 40).validate(info)  # a global budget may exceed the batch
    np.testing.assert_equal(GlobalBudget(L1Features(0.1), 40).inner(3).k, 3)
