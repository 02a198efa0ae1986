"""Bundled data sets for certified training.

Everything here works offline: the synthetic and scikit-learn data sets ship with scikit-learn
(:mod:`.bundled`), MNIST is read from IDX files the user already has (:mod:`.idx`), and your own
data from CSV or ``.npz`` files (:mod:`.files`, data set ``"file"``). All
arrays are returned as ``torch.float64`` tensors.

Label conventions: ``"binary"`` tasks have float64 labels of shape ``(N,)`` with values in
``{0.0, 1.0}`` (ready for BCE / hinge losses); ``"regression"`` tasks have float64 targets of
shape ``(N, 1)``, so that an MSE loss against a one-output model needs no reshaping.
"""
from __future__ import annotations

from typing import Any, Callable

from .bundled import breast_cancer, diabetes, digits_1v7, two_moons
from .dataset import Dataset
from .files import table
from .idx import mnist_binary, read_idx

__all__ = ["Dataset", "two_moons", "digits_1v7", "breast_cancer", "diabetes", "read_idx", "mnist_binary", "table", "load",
           "DATASETS"]

DATASETS: dict[str, Callable[..., Dataset]] = {
    "two_moons": two_moons,
    "digits_1v7": digits_1v7,
    "breast_cancer": breast_cancer,
    "diabetes": diabetes,
    "mnist": mnist_binary,
    "file": table,
}


def load(name: str, **kwargs: Any) -> Dataset:
    """Load a data set by name (see ``DATASETS``), forwarding ``kwargs``."""
    try:
        fn = DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(sorted(DATASETS))}") from None
    return fn(**kwargs)
