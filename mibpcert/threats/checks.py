"""Argument checks shared by the threat constructors: every number, flag and index list is
type-checked, so that a config value such as ``"0.01"`` or ``"false"`` is refused with a message
naming the threat and the argument instead of being read as something else."""
from __future__ import annotations

import numbers

import torch


def check_k(k: int | None, name: str) -> None:
    """A per-batch budget: a non-negative integer, or None (every sample)."""
    if k is None:
        return
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"{name}: k must be a non-negative integer or None, got {k!r}")


def check_finite(value, what: str, nonneg: bool = False) -> float:
    """A finite real number (int or float, not a bool or a string) as a float."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype.is_floating_point:
        value = value.item()
    kind = "finite non-negative number" if nonneg else "finite number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a {kind}, got {value!r} ({type(value).__name__})")
    v = float(value)
    if v != v or abs(v) == float("inf") or (nonneg and v < 0):
        raise ValueError(f"{what} must be a {kind}, got {value!r}")
    return v


def check_nonneg(value, what: str) -> float:
    return check_finite(value, what, nonneg=True)


def check_flag(value, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {value!r} ({type(value).__name__})")
    return value


def check_class(value, what: str) -> int | None:
    """A class index (non-negative integer) or None."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{what} must be a non-negative integer (a class index) or None, got {value!r}")
    return value


def check_index_list(cols, what: str) -> list[int]:
    """A column index or a non-empty list of distinct column indices, as a list."""
    if isinstance(cols, int) and not isinstance(cols, bool):
        cols = [cols]
    try:
        out = list(cols)
    except TypeError:
        raise ValueError(f"{what} must be a column index or a list of column indices, got {cols!r}") from None
    if not out:
        raise ValueError(f"{what} is empty")
    for c in out:
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 0:
            raise ValueError(f"{what} must be non-negative integer column indices, got {c!r}")
    out = [int(c) for c in out]
    if len(set(out)) != len(out):
        raise ValueError(f"{what} lists a column twice: {out!r}")
    return out
