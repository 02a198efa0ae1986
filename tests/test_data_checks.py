"""Bad training, validation and label data are rejected early (``mibpcert.data_checks``) with one
ValueError/TypeError that names the problem."""
from __future__ import annotations

import math

import pytest
import torch

from mibpcert import TrainConfig, certified_train, certify, mlp
from mibpcert.threats import LabelNoise, LinfFeatures
from tests.helpers.inputs import CFG, binary_data, multi_data, reg_data, train


def test_X_one_dimensional():
    X, y = binary_data()
    with pytest.raises(ValueError, match=r"inputs must have shape \(N, 2\)"):
        train(mlp([2, 3, 1]), X[:, 0], y)


def test_wrong_number_of_features():
    X, y = binary_data(d=3)
    with pytest.raises(ValueError, match="3 features but the model expects 2"):
        train(mlp([2, 3, 1]), X, y)


def test_label_length_mismatch():
    X, y = binary_data()
    with pytest.raises(ValueError, match="labels have 9 rows but the inputs have 10"):
        train(mlp([2, 3, 1]), X, y[:9])


def test_numpy_data_trains_and_certifies_like_tensors():
    """numpy arrays (and nested lists) are taken as torch.as_tensor takes them: the same box as
    with tensors, the same certificate."""
    X, y = binary_data()
    a = train(mlp([2, 3, 1]), X, y)
    b = train(mlp([2, 3, 1]), X.numpy(), y.numpy().tolist())
    for name in a.param_bounds:
        assert torch.equal(a.param_bounds[name][0], b.param_bounds[name][0])
        assert torch.equal(a.param_bounds[name][1], b.param_bounds[name][1])
    ra, rb = certify(a, X, y, test_eps=0.01), certify(b, X.numpy(), y.numpy(), test_eps=0.01)
    assert torch.equal(ra.certified, rb.certified)


def test_X_not_numeric_and_empty():
    X, y = binary_data()
    with pytest.raises(TypeError, match="training inputs must be a torch.Tensor or a numeric array"):
        train(mlp([2, 3, 1]), "not data", y)
    with pytest.raises(TypeError, match="training labels must be a torch.Tensor or a numeric array"):
        train(mlp([2, 3, 1]), X, {"labels": 1})
    with pytest.raises(TypeError, match="training inputs must be real numbers"):
        train(mlp([2, 3, 1]), X.to(torch.complex128), y)
    with pytest.raises(ValueError, match="empty"):
        train(mlp([2, 3, 1]), X[:0], y[:0])


@pytest.mark.parametrize("loss", ["bce", "hinge"])
def test_binary_labels_not_zero_one(loss):
    X, y = binary_data()
    for bad in (y * 2 - 1, y + 0.5, y.unsqueeze(1)):  # {-1, 1}, {0.5, 1.5}, 2-D
        with pytest.raises(ValueError, match="values 0 or 1"):
            train(mlp([2, 3, 1]), X, bad, loss=loss)


def test_ce_labels_out_of_range_or_not_integer():
    X, y = multi_data()
    for bad, what in ((y + 3, "too large"), (y - 1, "negative"), (y + 0.5, "fractional"), (y.unsqueeze(1), "2-D")):
        with pytest.raises(ValueError, match=r"integer class labels of shape \(N,\) in \[0, 2\]"):
            train(mlp([2, 3, 3]), X, bad, loss="ce", threat=LinfFeatures(0.01))


def test_loss_and_model_output_mismatch():
    X, y = binary_data()
    with pytest.raises(ValueError, match="needs a model with 1 output logit"):
        train(mlp([2, 3, 2]), X, y, loss="bce")
    with pytest.raises(ValueError, match="at least 2 output logits"):
        train(mlp([2, 3, 1]), X, y, loss="ce")
    Xr, yr = reg_data()
    with pytest.raises(ValueError, match=r"targets of shape \(N, 2\)"):
        train(mlp([3, 3, 2]), Xr, yr[:, :1], loss="mse")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_X(bad):
    X, y = binary_data()
    X[3, 1] = bad
    with pytest.raises(ValueError, match="inputs contain NaN or infinite values"):
        train(mlp([2, 3, 1]), X, y)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nonfinite_y(bad):
    X, y = reg_data()
    y[2, 0] = bad
    with pytest.raises(ValueError, match="labels contain NaN or infinite values"):
        train(mlp([3, 3, 2]), X, y, loss="mse", threat=LabelNoise(1, 0.1))
    Xb, yb = binary_data()
    yb[0] = bad
    with pytest.raises(ValueError, match="labels contain NaN or infinite values"):
        train(mlp([2, 3, 1]), Xb, yb)


def test_select_epoch_without_validation_data():
    X, y = binary_data()
    with pytest.raises(ValueError, match="select_epoch needs a validation set"):
        train(mlp([2, 3, 1]), X, y, select_epoch=True)
    Xv, yv = binary_data(6, d=3)
    with pytest.raises(ValueError, match="validation inputs have 3 features"):
        certified_train(mlp([2, 3, 1]), X, y, LinfFeatures(0.01), TrainConfig(select_epoch=True, **CFG), X_val=Xv, y_val=yv)
