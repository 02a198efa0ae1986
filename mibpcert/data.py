"""Bundled data sets for certified training.

Everything here works offline: the synthetic and scikit-learn data sets ship
with scikit-learn, and MNIST is read from IDX files the user already has.
All arrays are returned as ``torch.float64`` tensors.

Label conventions
-----------------
* ``"binary"`` tasks: labels are float64 tensors of shape ``(N,)`` with values
  in ``{0.0, 1.0}`` (ready for BCE / hinge losses).
* ``"regression"`` tasks: targets are float64 tensors of shape ``(N, 1)`` so that
  an MSE loss against a one-output model needs no reshaping.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

__all__ = [
    "Dataset",
    "two_moons",
    "digits_1v7",
    "breast_cancer",
    "diabetes",
    "read_idx",
    "mnist_binary",
    "load",
    "DATASETS",
]

_TASKS = ("binary", "multiclass", "regression")


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
        if self.task not in _TASKS:
            raise ValueError(f"task must be one of {_TASKS}, got {self.task!r}")
        if (self.X_val is None) != (self.y_val is None):
            raise ValueError("X_val and y_val must both be given or both be None")

    @property
    def num_features(self) -> int:
        """Number of input features (columns of ``X_train``)."""
        return int(self.X_train.shape[1])


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64))


def _check_size(name: str, value: int, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_fraction(test_fraction: float) -> None:
    if not (0.0 < float(test_fraction) < 1.0):
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")


def _standardize_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and stds of ``X``; zero stds are replaced by 1."""
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return mean, std


def _split(
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
    from sklearn.model_selection import train_test_split

    strat = y if stratify else None
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_fraction, random_state=seed, stratify=strat
    )
    X_va = y_va = None
    if n_val > 0:
        if n_val >= len(y_tr):
            raise ValueError(
                f"n_val={n_val} leaves no training data ({len(y_tr)} samples "
                "remain after the test split)"
            )
        strat_v = y_tr if stratify and n_val >= len(np.unique(y_tr)) else None
        X_tr, X_va, y_tr, y_va = train_test_split(
            X_tr, y_tr, test_size=n_val, random_state=seed, stratify=strat_v
        )
    return X_tr, y_tr, X_va, y_va, X_te, y_te


def _build(
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
        mean, std = _standardize_stats(X_tr)
        X_tr = (X_tr - mean) / std
        X_te = (X_te - mean) / std
        if X_va is not None:
            X_va = (X_va - mean) / std
    if standardize_targets:
        m, s = _standardize_stats(y_tr)
        y_tr = (y_tr - m) / s
        y_te = (y_te - m) / s
        if y_va is not None:
            y_va = (y_va - m) / s
    return Dataset(
        X_train=_t(X_tr),
        y_train=_t(y_tr),
        X_test=_t(X_te),
        y_test=_t(y_te),
        task=task,
        num_classes=num_classes,
        name=name,
        feature_names=feature_names,
        X_val=None if X_va is None else _t(X_va),
        y_val=None if y_va is None else _t(y_va),
    )


# ----------------------------------------------------------------------------
# bundled data sets
# ----------------------------------------------------------------------------


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
    from sklearn.datasets import make_moons

    _check_size("n_train", n_train, 1)
    _check_size("n_test", n_test)
    _check_size("n_val", n_val)
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
    return _build(
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
    from sklearn.datasets import load_digits

    _check_size("n_val", n_val)
    _check_fraction(test_fraction)
    d = load_digits()
    mask = (d.target == 1) | (d.target == 7)
    X = d.data[mask] / 16.0
    y = (d.target[mask] == 7).astype(np.float64)
    names = tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8))
    parts = _split(X, y, test_fraction, n_val, seed, stratify=True)
    return _build(
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
    from sklearn.datasets import load_breast_cancer

    _check_size("n_val", n_val)
    _check_fraction(test_fraction)
    d = load_breast_cancer()
    y = d.target.astype(np.float64)
    parts = _split(d.data, y, test_fraction, n_val, seed, stratify=True)
    return _build(
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
    from sklearn.datasets import load_diabetes

    _check_size("n_val", n_val)
    _check_fraction(test_fraction)
    d = load_diabetes()
    y = d.target.astype(np.float64).reshape(-1, 1)
    parts = _split(d.data, y, test_fraction, n_val, seed, stratify=False)
    return _build(
        parts,
        task="regression",
        num_classes=None,
        name="diabetes",
        feature_names=tuple(str(n) for n in d.feature_names),
        standardize=standardize,
        standardize_targets=standardize,
    )


# ----------------------------------------------------------------------------
# MNIST IDX files
# ----------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

PathLike = Union[str, Path]


def read_idx(path: PathLike) -> torch.Tensor:
    """Read an IDX file (the MNIST format), plain or gzip-compressed.

    Format: two zero bytes, a dtype code (0x08 ubyte, 0x09 byte, 0x0B short,
    0x0C int, 0x0D float, 0x0E double), the number of dimensions, the
    big-endian int32 dimension sizes, then the big-endian data. Gzip files are
    detected from their content. Returns a float64 tensor of the stored values
    with the stored shape. Raises ``ValueError`` on a bad magic number, a
    truncated file or trailing bytes.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: corrupt gzip data ({e})") from e
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file (no 4-byte magic number)")
    zero0, zero1, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES or ndim < 1:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 00 00, a "
            "dtype code in {08,09,0B,0C,0D,0E} and ndim >= 1)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dims declared)")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    if any(d < 0 for d in dims):
        raise ValueError(f"{path}: negative dimension in IDX header {dims}")
    dtype = _IDX_DTYPES[code]
    count = int(np.prod(dims, dtype=np.int64))
    expected = header + count * dtype.itemsize
    if len(raw) < expected:
        raise ValueError(
            f"{path}: truncated IDX data ({len(raw)} bytes, expected {expected})"
        )
    if len(raw) > expected:
        raise ValueError(
            f"{path}: {len(raw) - expected} unexpected trailing bytes in IDX file"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header)
    return _t(arr.astype(np.float64).reshape(dims))


def _mnist_pairs(
    images_path: PathLike, labels_path: PathLike, classes: tuple, limit: Optional[int]
) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path).numpy()
    labels = read_idx(labels_path).numpy()
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: labels must be 1-D, got shape {labels.shape}")
    if images.ndim < 2 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"images {images.shape} and labels {labels.shape} do not match"
        )
    mask = (labels == classes[0]) | (labels == classes[1])
    X = images[mask].reshape(int(mask.sum()), int(np.prod(images.shape[1:]))) / 255.0
    y = (labels[mask] == classes[1]).astype(np.float64)
    if limit is not None:
        X, y = X[:limit], y[:limit]
    return X, y


def mnist_binary(
    images_path: PathLike,
    labels_path: PathLike,
    classes: Sequence[int] = (1, 7),
    limit: Optional[int] = None,
    test_images_path: Optional[PathLike] = None,
    test_labels_path: Optional[PathLike] = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    n_val: int = 0,
) -> Dataset:
    """Binary MNIST-style data set from user-supplied IDX files.

    Keeps only ``classes`` (label ``1.0`` for ``classes[1]``, ``0.0`` for
    ``classes[0]``); pixels are divided by 255 and flattened. ``limit`` keeps
    the first ``limit`` matching samples of each file. With test files given
    they form the test set; otherwise a stratified ``test_fraction`` split of
    the training files is used (with ``seed``). ``n_val`` samples are split
    off the training part.
    """
    classes = tuple(int(c) for c in classes)
    if len(classes) != 2 or classes[0] == classes[1]:
        raise ValueError(f"classes must be two distinct labels, got {classes}")
    if limit is not None:
        _check_size("limit", limit, 1)
    _check_size("n_val", n_val)
    _check_fraction(test_fraction)
    if (test_images_path is None) != (test_labels_path is None):
        raise ValueError("give both test_images_path and test_labels_path, or neither")

    X, y = _mnist_pairs(images_path, labels_path, classes, limit)
    if len(y) == 0:
        raise ValueError(f"no samples of classes {classes} in {labels_path}")
    if test_images_path is not None:
        X_te, y_te = _mnist_pairs(test_images_path, test_labels_path, classes, limit)
        X_va = y_va = None
        if n_val > 0:
            from sklearn.model_selection import train_test_split

            if n_val >= len(y):
                raise ValueError(f"n_val={n_val} leaves no training data")
            strat = y if n_val >= len(np.unique(y)) else None
            X, X_va, y, y_va = train_test_split(
                X, y, test_size=n_val, random_state=seed, stratify=strat
            )
        parts = (X, y, X_va, y_va, X_te, y_te)
    else:
        strat = len(np.unique(y)) > 1 and np.bincount(y.astype(int)).min() >= 2
        parts = _split(X, y, test_fraction, n_val, seed, stratify=bool(strat))
    return _build(
        parts,
        task="binary",
        num_classes=2,
        name=f"mnist_{classes[0]}v{classes[1]}",
        feature_names=None,
        standardize=False,
    )


# ----------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------

DATASETS: dict[str, Callable[..., Dataset]] = {
    "two_moons": two_moons,
    "digits_1v7": digits_1v7,
    "breast_cancer": breast_cancer,
    "diabetes": diabetes,
    "mnist": mnist_binary,
}


def load(name: str, **kwargs: Any) -> Dataset:
    """Load a data set by name (see ``DATASETS``), forwarding ``kwargs``."""
    try:
        fn = DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown data set {name!r}; valid names: {', '.join(sorted(DATASETS))}"
        ) from None
    return fn(**kwargs)
