"""Validation of user data against the model and loss, with one clear message per problem."""
from __future__ import annotations

import torch

from .losses import get_loss
from .model import ModelSpec
from .threats import TaskInfo


def check_inputs(spec: ModelSpec, X, what: str = "training", dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Check an input matrix (N, in_features): a finite real tensor of the model's width."""
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{what} inputs must be a torch.Tensor, got {type(X).__name__}")
    if X.dim() != 2:
        raise ValueError(f"{what} inputs must have shape (N, {spec.in_features}), got {tuple(X.shape)}")
    if X.shape[1] != spec.in_features:
        raise ValueError(f"{what} inputs have {X.shape[1]} features but the model expects {spec.in_features}")
    if X.shape[0] == 0:
        raise ValueError(f"{what} inputs are empty")
    X = X.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{what} inputs contain NaN or infinite values ({int((~torch.isfinite(X)).sum())} entries)")
    return X


def check_labels(spec: ModelSpec, y, n: int, loss: str, what: str = "training", dtype=torch.float64, device="cpu"):
    """Check labels for ``loss``; returns (labels, task, num_classes)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{what} labels must be a torch.Tensor, got {type(y).__name__}")
    if y.shape[0] != n:
        raise ValueError(f"{what} labels have {y.shape[0]} rows but the inputs have {n}")
    y = y.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"{what} labels contain NaN or infinite values")
    lossobj = get_loss(loss)
    y, num_classes = lossobj.check_labels(y, spec.out_features)
    return y, lossobj.task, num_classes


def check_training_data(spec: ModelSpec, X, y, loss: str, batch_size: int, dtype, device, what: str = "training"):
    """Validate a data set; returns ``(X, y, TaskInfo)`` on the run's device and dtype."""
    X = check_inputs(spec, X, what, dtype, device)
    y, task, num_classes = check_labels(spec, y, X.shape[0], loss, what, dtype, device)
    return X, y, TaskInfo(task, num_classes, spec.in_features, min(batch_size, X.shape[0]))


def check_test_data(result, X_test, y_test):
    """A trained result's test set, checked against its model and loss and moved to the dtype and
    device of its parameter box: ``(X, y, task, num_classes)``."""
    lo = next(iter(result.param_bounds.values()))[0]
    X = check_inputs(result.spec, X_test, "test", lo.dtype, lo.device)
    y, task, num_classes = check_labels(result.spec, y_test, X.shape[0], result.config.loss, "test", lo.dtype, lo.device)
    return X, y, task, num_classes
