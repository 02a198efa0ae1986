"""Norm-ball feature perturbations: l-infinity (with an optional valid range), sparse (l0) and
l1. Labels stay clean; ``k=None`` perturbs every sample, an integer k at most k per batch."""
from __future__ import annotations

import numpy as np
import torch

from ..interval.tensor import Interval
from ..ir.inputs import as_array, gated_box
from .base import FeatureThreat, Region, Threat, clean_labels
from .checks import check_finite, check_k, check_nonneg


class LinfFeatures(Threat):
    """Every sample (``k=None``) or at most ``k`` samples per batch may have every feature moved by
    at most ``eps``; ``domain=(lo, hi)`` optionally clips perturbed features to a valid range.
    The region is a box, so the generic region encoding is exact."""

    def __init__(self, eps: float, k: int | None = None, domain: tuple[float, float] | None = None) -> None:
        self.eps = check_nonneg(eps, "LinfFeatures: eps")
        check_k(k, "LinfFeatures")
        self.k = k
        if domain is not None:
            if isinstance(domain, (str, bytes)) or not hasattr(domain, "__len__") or len(domain) != 2:
                raise ValueError(f"LinfFeatures: domain must be a pair (low, high) of numbers, got {domain!r}")
            lo, hi = check_finite(domain[0], "LinfFeatures: domain low"), check_finite(domain[1], "LinfFeatures: domain high")
            if not lo <= hi:
                raise ValueError(f"LinfFeatures: domain must be (low, high) with low <= high, got {domain!r}")
            domain = (lo, hi)
        self.domain = domain

    def poisoned_box(self, X: torch.Tensor) -> Interval:
        lo, hi = X - self.eps, X + self.eps
        if self.domain is not None:
            lo = torch.minimum(lo.clamp_min(self.domain[0]), X)
            hi = torch.maximum(hi.clamp_max(self.domain[1]), X)
        return Interval(lo, hi, check=False)

    def region(self, X, y, info):
        box = self.poisoned_box(X)
        labels = clean_labels(y, info)
        base = box if self.k is None else Interval.point(X)
        return Region(base, labels, box, labels, self.k)

    def describe(self):
        return {"type": "linf_features", "eps": self.eps, "k": self.k, "domain": self.domain}


class L0Features(FeatureThreat):
    """Sparse feature perturbations: in every sample (``k=None``) or at most ``k`` samples per
    batch at most ``s`` features change, each by at most ``eps``.

    Interval enclosure: the l-infinity box ``X ± eps`` (the hull of the set, as each single
    feature may use the full ``eps``). MIP encoding: one binary ``b_f`` per feature ("changed"),
    ``|x_f - X_f| <= eps b_f`` and ``sum_f b_f <= s`` (``<= s p`` and ``b_f <= p`` with a pick
    binary p): exactly the threat's set."""

    def __init__(self, eps: float, s: int, k: int | None = None) -> None:
        self.eps = check_nonneg(eps, "L0Features: eps")
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ValueError(f"L0Features: s (features changed per sample) must be an integer >= 1, got {s!r}")
        check_k(k, "L0Features")
        self.s, self.k = s, k

    def poisoned_box(self, X):
        return Interval(X - self.eps, X + self.eps, check=False)

    def encode_x(self, enc, X, i, pick):
        row = as_array(X[i])
        d = row.shape[0]
        if pick is False or self.eps == 0:
            return enc.const(row)
        if self.s >= d:  # no sparsity: the box itself
            return gated_box(enc, row - self.eps, row + self.eps, row, pick, name=f"x{i}")
        x = enc.var(row - self.eps, row + self.eps, row, name=f"x{i}")
        b = enc.binaries(d, np.zeros(d), name=f"changed{i}")
        for f in range(d):
            enc.row([x.idx[f], b.idx[f]], [1.0, -self.eps], hi=row[f])  # x - X <= eps b
            enc.row([x.idx[f], b.idx[f]], [1.0, self.eps], lo=row[f])  # X - x <= eps b
            if pick is not True:
                enc.row([b.idx[f], pick], [1.0, -1.0], hi=0.0)  # b_f <= p
        if pick is True:
            enc.row(b.idx, np.ones(d), hi=float(self.s))
        else:
            enc.row(np.concatenate([b.idx, [pick]]), np.concatenate([np.ones(d), [-float(self.s)]]), hi=0.0)
        return x

    def describe(self):
        return {"type": "l0_features", "eps": self.eps, "s": self.s, "k": self.k}


class L1Features(FeatureThreat):
    """In every sample (``k=None``) or at most ``k`` samples per batch the features change by a
    total absolute amount of at most ``eps1`` (``||x - X||_1 <= eps1``).

    Interval enclosure: the box ``X ± eps1``. MIP encoding: ``x = X + d⁺ - d⁻`` with
    ``0 <= d± <= eps1`` and ``sum(d⁺ + d⁻) <= eps1`` (``<= eps1 p`` with a pick binary): the exact
    linear description of the l1 ball (its projection onto x is the ball)."""

    def __init__(self, eps1: float, k: int | None = None) -> None:
        self.eps1 = check_nonneg(eps1, "L1Features: eps1")
        check_k(k, "L1Features")
        self.k = k

    def poisoned_box(self, X):
        return Interval(X - self.eps1, X + self.eps1, check=False)

    def encode_x(self, enc, X, i, pick):
        row = as_array(X[i])
        d = row.shape[0]
        e = self.eps1
        if pick is False or e == 0:
            return enc.const(row)
        x = enc.var(row - e, row + e, row, name=f"x{i}")
        dp = enc.var(np.zeros(d), np.full(d, e), np.zeros(d), name=f"up{i}")
        dm = enc.var(np.zeros(d), np.full(d, e), np.zeros(d), name=f"down{i}")
        for f in range(d):
            enc.equal([x.idx[f], dp.idx[f], dm.idx[f]], [1.0, -1.0, 1.0], row[f])
        idx = np.concatenate([dp.idx, dm.idx])
        if pick is True:
            enc.row(idx, np.ones(2 * d), hi=e)
        else:
            enc.row(np.concatenate([idx, [pick]]), np.concatenate([np.ones(2 * d), [-e]]), hi=0.0)
        return x

    def describe(self):
        return {"type": "l1_features", "eps1": self.eps1, "k": self.k}
