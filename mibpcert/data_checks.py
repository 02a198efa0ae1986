"""Validation of user data against the model and loss, with one clear message per problem."""
from __future__ import annotations

import torch

from .losses import get_loss
from .model import ModelSpec
from .threats import TaskInfo


def as_tensor(v, what: str) -> torch.Tensor:
    """``v`` as a tensor: tensors as they are, else what ``torch.as_tensor`` makes of it (numpy
    arrays, nested lists of numbers); anything else is refused naming ``what``."""
    try:
        t = v if isinstance(v, torch.Tensor) else torch.as_tensor(v)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{what} must be a torch.Tensor or a numeric array (numpy, nested lists), got "
                        f"{type(v).__name__}: {e}") from None
    if t.is_complex():
        raise TypeError(f"{what} must be real numbers, got {t.dtype}")
    return t


def check_inputs(spec: ModelSpec, X, what: str = "training", dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Check an input matrix (N, in_features): a finite real tensor (or array) of the model's width."""
    X = as_tensor(X, f"{what} inputs")
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
    y = as_tensor(y, f"{what} labels")
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
