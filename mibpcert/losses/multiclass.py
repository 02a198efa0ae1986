"""Cross-entropy over C logits with integer class labels.

Interval bounds come from monotone log-softmax bounds; the MIP encoding of d loss / d logits is
``g = p - onehot(y)`` with every softmax output p_j in its interval and ``sum_j p_j = 1``: a sound
linear enclosure.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..interval.tensor import Interval, hull_last, monotone, rounding_enabled
from ..ir.encoder import pad_down, pad_up
from .base import MulticlassLoss, encode_difference


def _logsumexp_interval(v: torch.Tensor, dim: int) -> Interval:
    """logsumexp of a point tensor, padded by its floating-point error (stable: max-shifted)."""
    val = torch.logsumexp(v, dim=dim)
    if not rounding_enabled():
        return Interval.point(val)
    n = v.shape[dim]
    eps = torch.finfo(v.dtype).eps
    err = (n + 8) * eps * (1.0 + val.abs())
    return Interval(val - err, val + err, check=False)


def log_softmax_bounds(logits: Interval) -> Interval:
    """log softmax_c increases in z_c and decreases in every other logit: the lower bound takes
    z_c low and the others high, the upper bound the opposite (each evaluated stably)."""
    B, C = logits.shape
    eye = torch.eye(C, dtype=torch.bool, device=logits.device)
    v_low = torch.where(eye, logits.lo.unsqueeze(1), logits.hi.unsqueeze(1))  # (B, c, j)
    v_high = torch.where(eye, logits.hi.unsqueeze(1), logits.lo.unsqueeze(1))
    lse_low = _logsumexp_interval(v_low, dim=2)
    lse_high = _logsumexp_interval(v_high, dim=2)
    lo = (Interval.point(logits.lo) - lse_low).lo
    hi = (Interval.point(logits.hi) - lse_high).hi
    return Interval(lo, torch.minimum(hi, torch.zeros_like(hi)), check=False)


def _grad(ls: Interval, mask: torch.Tensor) -> Interval:
    """d loss / d logits ``p_j - [j == y]`` from log-softmax bounds ``ls`` (B, C), p = exp(ls)
    (padded for libm, clipped to [0, 1]), over the labels allowed by ``mask`` (B, C)."""
    p = monotone(torch.exp, ls, increasing=True)
    p = Interval(p.lo.clamp_min(0), p.hi.clamp_max(1), check=False)
    onehot_lo = mask.to(p.dtype)  # subtracting 1 at j is possible when j is an allowed label
    others = (mask.sum(dim=1, keepdim=True) - mask.to(torch.long)) > 0  # some allowed label != j
    sub_hi = torch.where(others, torch.zeros_like(p.lo), torch.ones_like(p.lo))  # least amount subtracted
    return p - Interval(sub_hi, onehot_lo, check=False)  # rounded outward


class CrossEntropy(MulticlassLoss):
    """Cross-entropy from log-softmax bounds; gradient p_j - [j == y] with p_j = exp(log p_j)."""

    name = "ce"

    def value(self, logits, y):
        return F.cross_entropy(logits, y.long(), reduction="none")

    def mean_value(self, logits, y):
        return F.cross_entropy(logits, y.long())

    def interval_bounds(self, logits, mask):
        ls = self._log_softmax(logits, mask)
        return hull_last(-ls, mask), _grad(ls, mask)  # the loss for label c lies in -ls[:, c]

    def grad_bounds(self, logits, mask):
        return _grad(self._log_softmax(logits, mask), mask)

    @staticmethod
    def _log_softmax(logits: Interval, mask: torch.Tensor) -> Interval:
        B, C = logits.shape
        if mask.shape != (B, C):
            raise ValueError(f"loss 'ce' needs a label mask of shape (B, {C}), got {tuple(mask.shape)}")
        return log_softmax_bounds(logits)

    def encode_grad(self, enc, z, label, bounds, pieces):
        ls = log_softmax_bounds(Interval(torch.as_tensor(z.lo).unsqueeze(0), torch.as_tensor(z.hi).unsqueeze(0), check=False))
        plo = np.clip(pad_down(np.exp(ls.lo.numpy()[0])), 0, 1)
        phi = np.clip(pad_up(np.exp(ls.hi.numpy()[0])), 0, 1)
        zs = z.start - z.start.max()
        p = enc.var(plo, phi, np.exp(zs) / np.exp(zs).sum(), name="softmax")
        enc.equal(p.idx, np.ones(len(p)), 1.0)
        return encode_difference(enc, p, label, bounds, "dce")
