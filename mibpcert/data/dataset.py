"""The :class:`Dataset` container and what every loader shares: deterministic (optionally
stratified) train / validation / test splits, standardisation with training statistics only,
float64 tensors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from sklearn.model_selection import train_test_split

TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test (optionally validation) split of one data set.

    ``X_*`` have shape ``(N, num_features)``; ``y_*`` have shape ``(N,)`` for
    classification and ``(N, 1)`` for regression. ``X_val``/``y_val`` are
    ``None`` unless a validation set was requested.
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    task: str
    num_classes: Optional[int]
    name: str
    feature_names: Optional[tuple] = None
    X_val: Optional[torch.Tensor] = None
    y_val: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if (self.X_val is None) != (self.y_val is None):
            raise ValueError("X_val and y_val must both be given or both be None")

    @property
    def num_features(self) -> int:
        """Number of input features (columns of ``X_train``)."""
        return int(self.X_train.shape[1])


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64))


def check_size(name: str, value: int, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_fraction(test_fraction: float) -> None:
    if not (0.0 < float(test_fraction) < 1.0):
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")


def standardize_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and stds of ``X``; zero stds are replaced by 1."""
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return mean, std


def split(
    X: np.ndarray,
    y: np.ndarray,
    test_fraction: float,
    n_val: int,
    seed: int,
    stratify: bool,
) -> tuple[np.ndarray, ...]:
    """Deterministic (optionally stratified) train/val/test split.

    The test set (``test_fraction`` of all samples) is split off first, then
    ``n_val`` samples are split off the remaining training part.
    Returns ``(X_tr, y_tr, X_va, y_va, X_te, y_te)`` (val entries ``None``
    when ``n_val == 0``).
    """
    strat = y if stratify else None
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_fraction, random_state=seed, stratify=strat
    )
    X_tr, y_tr, X_va, y_va = split_validation(X_tr, y_tr, n_val, seed, stratify, "after the test split")
    return X_tr, y_tr, X_va, y_va, X_te, y_te


def split_validation(X: np.ndarray, y: np.ndarray, n_val: int, seed: int, stratify: bool, where: str = ""):
    """``n_val`` samples split off a training part (stratified when asked and every class can
    be represented): ``(X_tr, y_tr, X_va, y_va)``, the last two None when ``n_val == 0``."""
    if n_val == 0:
        return X, y, None, None
    if n_val >= len(y):
        raise ValueError(f"n_val={n_val} leaves no training data ({len(y)} samples remain{' ' + where if where else ''})")
    strat = y if stratify and n_val >= len(np.unique(y)) else None
    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=n_val, random_state=seed, stratify=strat)
    return X_tr, y_tr, X_va, y_va


def _standardized(train: np.ndarray, *others):
    """``train`` and ``others`` (None stays None) standardised with the training statistics."""
    mean, std = standardize_stats(train)
    return [None if a is None else (a - mean) / std for a in (train, *others)]


def build(
    parts: tuple[np.ndarray, ...],
    *,
    task: str,
    num_classes: Optional[int],
    name: str,
    feature_names: Optional[tuple],
    standardize: bool,
    standardize_targets: bool = False,
) -> Dataset:
    X_tr, y_tr, X_va, y_va, X_te, y_te = parts
    if standardize:
        X_tr, X_te, X_va = _standardized(X_tr, X_te, X_va)
    if standardize_targets:
        y_tr, y_te, y_va = _standardized(y_tr, y_te, y_va)
    return Dataset(
        X_train=to_tensor(X_tr),
        y_train=to_tensor(y_tr),
        X_test=to_tensor(X_te),
        y_test=to_tensor(y_te),
        task=task,
        num_classes=num_classes,
        name=name,
        feature_names=feature_names,
        X_val=None if X_va is None else to_tensor(X_va),
        y_val=None if y_va is None else to_tensor(y_va),
    )
