"""Mean squared error for regression targets."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..interval.tensor import Interval, rounding_enabled
from ..ir.encoder import AffineSum
from .base import RegressionLoss


class MSE(RegressionLoss):
    """MSE averaged over the C outputs, as torch's ``reduction="mean"`` per sample:
    loss = mean_j (z_j - t_j)^2, d loss / d z_j = 2 (z_j - t_j) / C (linear: its MIP encoding is
    exact)."""

    name = "mse"

    def value(self, logits, y):
        return ((logits - y.reshape(logits.shape).to(logits.dtype)) ** 2).mean(dim=1)

    def mean_value(self, logits, y):
        return F.mse_loss(logits, y.reshape(logits.shape).to(logits.dtype))

    def interval_bounds(self, logits, targets):
        d = self._difference(logits, targets)
        C = logits.shape[1]
        sq_hi = torch.maximum(d.lo * d.lo, d.hi * d.hi)
        sq_lo = torch.where(d.lo > 0, d.lo * d.lo, torch.where(d.hi < 0, d.hi * d.hi, torch.zeros_like(d.lo)))
        sq = Interval(sq_lo, sq_hi, check=False)
        if rounding_enabled():
            sq = Interval(torch.nextafter(sq.lo, -sq.hi - 1).clamp_min(0), torch.nextafter(sq.hi, sq.hi * 2 + 1), check=False)
        return sq.sum(dim=1).scale(1.0 / C), _grad(d)

    def grad_bounds(self, logits, targets):
        return _grad(self._difference(logits, targets))

    @staticmethod
    def _difference(logits: Interval, targets: Interval) -> Interval:
        """Bounds on ``z - t`` (B, C) for the logits and targets in their boxes."""
        if not isinstance(targets, Interval) or targets.shape != logits.shape:
            raise ValueError(f"loss 'mse' needs target bounds of shape {tuple(logits.shape)}")
        return logits - targets

    def affine_grad(self, z, targets):
        """Exact: ``2 (z - t) / C`` with the targets as independent terms."""
        return z.shift(Interval(-targets.hi, -targets.lo, check=False)).scale(2.0 / z.shape[1])

    def encode_grad(self, enc, z, label, bounds, pieces):
        C = len(z)
        rows = np.concatenate([np.arange(C)[z.is_var], np.arange(C)[label.is_var]])
        vars_ = np.concatenate([z.idx[z.is_var], label.idx[label.is_var]])
        coefs = np.concatenate([np.full(int(z.is_var.sum()), 2.0 / C), np.full(int(label.is_var.sum()), -2.0 / C)])
        const = 2.0 / C * (np.where(z.is_var, 0, z.lo) - np.where(label.is_var, 0, label.lo))
        lo = 2.0 / C * (z.lo - label.hi)
        hi = 2.0 / C * (z.hi - label.lo)
        return enc.affine(AffineSum(rows, vars_, coefs, const, lo, hi, 2.0 / C * (z.start - label.start)), bounds, "dmse")


def _grad(d: Interval) -> Interval:
    """d loss / d z = 2 (z - t) / C from bounds ``d`` (B, C) on ``z - t``."""
    return d.scale(2.0 / d.shape[1])
