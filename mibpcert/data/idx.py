"""MNIST-style data from IDX files the user already has (plain or gzip-compressed)."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .dataset import Dataset, build, check_fraction, check_size, split, split_validation, to_tensor

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
    return to_tensor(arr.astype(np.float64).reshape(dims))


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
        check_size("limit", limit, 1)
    check_size("n_val", n_val)
    check_fraction(test_fraction)
    if (test_images_path is None) != (test_labels_path is None):
        raise ValueError("give both test_images_path and test_labels_path, or neither")

    X, y = _mnist_pairs(images_path, labels_path, classes, limit)
    if len(y) == 0:
        raise ValueError(f"no samples of classes {classes} in {labels_path}")
    if test_images_path is not None:
        X_te, y_te = _mnist_pairs(test_images_path, test_labels_path, classes, limit)
        X, y, X_va, y_va = split_validation(X, y, n_val, seed, stratify=True)
        parts = (X, y, X_va, y_va, X_te, y_te)
    else:
        strat = len(np.unique(y)) > 1 and np.bincount(y.astype(int)).min() >= 2
        parts = split(X, y, test_fraction, n_val, seed, stratify=bool(strat))
    return build(
        parts,
        task="binary",
        num_classes=2,
        name=f"mnist_{classes[0]}v{classes[1]}",
        feature_names=None,
        standardize=False,
    )
