"""Data sets that ship with scikit-learn (offline): two moons, digits 1 vs 7, breast cancer and
diabetes."""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_moons

from .dataset import Dataset, build, check_fraction, check_size, split


def two_moons(
    n_train: int = 1000,
    n_test: int = 200,
    n_val: int = 0,
    noise: float = 0.1,
    seed: int = 0,
    standardize: bool = False,
) -> Dataset:
    """Two interleaving half-circles (``sklearn.datasets.make_moons``).

    One call ``make_moons(n_train + n_val + n_test, noise=noise,
    random_state=seed)`` is split, in order, into train, val and test.
    Binary float labels in ``{0, 1}``. ``standardize`` uses training
    statistics only.
    """
    check_size("n_train", n_train, 1)
    check_size("n_test", n_test)
    check_size("n_val", n_val)
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    X, y = make_moons(
        n_samples=n_train + n_val + n_test, noise=noise, random_state=seed
    )
    a, b = n_train, n_train + n_val
    parts = (
        X[:a],
        y[:a],
        X[a:b] if n_val > 0 else None,
        y[a:b] if n_val > 0 else None,
        X[b:],
        y[b:],
    )
    return build(
        parts,
        task="binary",
        num_classes=2,
        name="two_moons",
        feature_names=("x1", "x2"),
        standardize=standardize,
    )


def digits_1v7(n_val: int = 0, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Scikit-learn's 8x8 digits restricted to classes 1 and 7.

    Features are pixels / 16 (in ``[0, 1]``, 64 columns). Labels: ``1.0`` for
    digit 7 and ``0.0`` for digit 1. The split is stratified and
    deterministic given ``seed``.
    """
    check_size("n_val", n_val)
    check_fraction(test_fraction)
    d = load_digits()
    mask = (d.target == 1) | (d.target == 7)
    X = d.data[mask] / 16.0
    y = (d.target[mask] == 7).astype(np.float64)
    names = tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8))
    parts = split(X, y, test_fraction, n_val, seed, stratify=True)
    return build(
        parts,
        task="binary",
        num_classes=2,
        name="digits_1v7",
        feature_names=names,
        standardize=False,
    )


def breast_cancer(
    n_val: int = 0,
    test_fraction: float = 0.2,
    seed: int = 0,
    standardize: bool = True,
) -> Dataset:
    """Wisconsin breast cancer (``load_breast_cancer``), 30 features.

    Labels as in scikit-learn (``1.0`` = benign, ``0.0`` = malignant).
    Stratified split; ``standardize`` uses training statistics only.
    """
    check_size("n_val", n_val)
    check_fraction(test_fraction)
    d = load_breast_cancer()
    y = d.target.astype(np.float64)
    parts = split(d.data, y, test_fraction, n_val, seed, stratify=True)
    return build(
        parts,
        task="binary",
        num_classes=2,
        name="breast_cancer",
        feature_names=tuple(str(n) for n in d.feature_names),
        standardize=standardize,
    )


def diabetes(
    n_val: int = 0,
    test_fraction: float = 0.2,
    seed: int = 0,
    standardize: bool = True,
) -> Dataset:
    """Diabetes regression (``load_diabetes``), 10 features.

    Targets have shape ``(N, 1)``. With ``standardize`` both the features and
    the targets are standardized with the *training* mean and std (so the
    training targets have mean 0 and std 1).
    """
    check_size("n_val", n_val)
    check_fraction(test_fraction)
    d = load_diabetes()
    y = d.target.astype(np.float64).reshape(-1, 1)
    parts = split(d.data, y, test_fraction, n_val, seed, stratify=False)
    return build(
        parts,
        task="regression",
        num_classes=None,
        name="diabetes",
        feature_names=tuple(str(n) for n in d.feature_names),
        standardize=standardize,
        standardize_targets=standardize,
    )
