"""Binary losses on one logit z with labels y in {0, 1}: BCE-with-logits and hinge.

MIP encodings of d loss / dz:

* hinge: ``g = -s h`` with ``s = 2y - 1`` and one binary ``h`` per sample that is 1 only where the
  margin ``1 - s z >= 0`` and 0 only where it is ``<= 0`` (both at the kink): exact.
* bce: ``g = sigmoid(z) - y``. The sigmoid is enclosed piecewise linearly over the logit's
  interval: P segments, one binary each; on segment [a, b] the value lies within the chord through
  (a, sigmoid(a)), (b, sigmoid(b)) plus/minus the interpolation error ``(b - a)^2 / 8 * max|sigmoid''|``
  and between sigmoid(a) and sigmoid(b) (monotone). ``|sigmoid''| <= min(1 / (6 sqrt 3),
  sigmoid'(d))`` with d the segment's distance to 0, since ``sigmoid'' = sigmoid' (1 - 2 sigmoid)``
  and sigmoid' falls with |z|. Sound, and tighter with more pieces.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..interval.tensor import Interval, monotone, rounding_enabled
from ..ir.encoder import Encoder, Vec, pad_down, pad_up
from .base import BinaryLoss, encode_difference, over_labels

SIGMOID_CURVATURE = 1.0 / (6.0 * math.sqrt(3.0)) * (1 + 1e-12)


def _softplus(x: torch.Tensor) -> torch.Tensor:
    # exact formula (torch's softplus switches to the identity above a threshold, an error of
    # up to 2e-9 that would make the bound unsound)
    return x.clamp_min(0) + torch.log1p(torch.exp(-x.abs()))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class BCE(BinaryLoss):
    """BCE-with-logits: loss(z, 0) = softplus(z) increases in z, loss(z, 1) = softplus(-z)
    decreases; d loss / dz = sigmoid(z) - y increases in z."""

    name = "bce"

    def value(self, logits, y):
        return F.binary_cross_entropy_with_logits(logits[:, 0], y.to(logits.dtype), reduction="none")

    def mean_value(self, logits, y):
        return F.binary_cross_entropy_with_logits(logits[:, 0], y.to(logits.dtype))

    def interval_bounds(self, logits, mask):
        self.check_logits(logits, mask)
        z = logits[:, 0]
        loss0 = monotone(_softplus, z, increasing=True)
        loss1 = monotone(lambda t: _softplus(-t), z, increasing=False)
        return over_labels(mask, [loss0, loss1]), self.grad_bounds(logits, mask)

    def grad_bounds(self, logits, mask):
        """``sigmoid(z) - y``: sigmoid of the bounds (padded for libm), minus 1 rounded outward for
        label 1, hull over the allowed labels."""
        self.check_logits(logits, mask)
        sig = monotone(torch.sigmoid, logits[:, 0], increasing=True)
        return over_labels(mask, [sig, sig - 1.0]).unsqueeze(1)

    def encode_grad(self, enc, z, label, bounds, pieces):
        return encode_difference(enc, _sigmoid_enclosure(enc, z, pieces), label, bounds, "dbce")

    def affine_grad(self, z, mask):
        """``sigmoid(z) - y``: ``sigmoid(z) - lam z`` is increasing on [l, u] for ``lam`` the smaller
        endpoint slope (sigmoid' falls with |z|), so sigmoid(z) lies in ``lam z`` plus
        ``[sigmoid(l) - lam l, sigmoid(u) - lam u]``; the label is an independent term in the hull
        of the allowed labels."""
        zb = z.bounds()
        l, u = zb.lo[:, 0], zb.hi[:, 0]
        lam = torch.minimum(torch.sigmoid(l) * torch.sigmoid(-l), torch.sigmoid(u) * torch.sigmoid(-u))
        lam = lam * (1 - 64 * torch.finfo(lam.dtype).eps)  # below the true slopes despite rounding
        sl = monotone(torch.sigmoid, Interval(l, l, check=False)).lo
        su = monotone(torch.sigmoid, Interval(u, u, check=False)).hi
        low = Interval.point(sl) - Interval.point(l).scale(lam)
        high = Interval.point(su) - Interval.point(u).scale(lam)
        s = z.reshape(-1).scale(lam).shift(Interval(low.lo, high.hi, check=False))
        y_lo, y_hi = torch.where(mask[:, 0], 0.0, 1.0), torch.where(mask[:, 1], 1.0, 0.0)
        g = s.shift(Interval(-y_hi.to(l.dtype), -y_lo.to(l.dtype), check=False))
        return g.reshape(-1, 1)


def _sigmoid_enclosure(enc: Encoder, z: Vec, pieces: int) -> Vec:
    """A variable s with s = sigmoid(z) inside the piecewise-linear enclosure (module docstring)."""
    lo, hi = float(z.lo[0]), float(z.hi[0])
    slo, shi = float(pad_down(_sigmoid(lo))), float(pad_up(_sigmoid(hi)))
    start = _sigmoid(z.start)
    s = enc.var([max(slo, 0.0)], [min(shi, 1.0)], start, name="sigmoid")
    if z.idx[0] < 0 or hi - lo <= 1e-9:
        return s  # the interval bound is already as good as a linearisation
    t = np.linspace(lo, hi, pieces + 1)
    t[0], t[-1] = lo, hi
    seg = int(np.clip(np.searchsorted(t, z.start[0], side="right") - 1, 0, pieces - 1))
    y = enc.binaries(pieces, (np.arange(pieces) == seg).astype(float), name="sig_seg")
    enc.equal(y.idx, np.ones(pieces), 1.0)
    zp = enc.var(np.minimum(t[:-1], 0), np.maximum(t[1:], 0), np.where(np.arange(pieces) == seg, z.start[0], 0.0), name="sig_z")
    sp = enc.var(np.zeros(pieces), np.ones(pieces), np.where(np.arange(pieces) == seg, start[0], 0.0), name="sig_s")
    enc.equal(np.concatenate([[z.idx[0]], zp.idx]), np.concatenate([[-1.0], np.ones(pieces)]), 0.0)
    enc.equal(np.concatenate([[s.idx[0]], sp.idx]), np.concatenate([[-1.0], np.ones(pieces)]), 0.0)
    for p in range(pieces):
        a, b = t[p], t[p + 1]
        zi, si, yi = zp.idx[p], sp.idx[p], y.idx[p]
        enc.row([zi, yi], [1.0, -a], lo=0.0)  # z_p >= a y_p
        enc.row([zi, yi], [1.0, -b], hi=0.0)  # z_p <= b y_p
        sa, sb = _sigmoid(a), _sigmoid(b)
        pad = 1e-12 * (1.0 + abs(a) + abs(b))
        enc.row([si, yi], [1.0, -(sa - pad)], lo=0.0)  # s_p >= sigmoid(a) y_p
        enc.row([si, yi], [1.0, -(sb + pad)], hi=0.0)  # s_p <= sigmoid(b) y_p
        if b - a <= 1e-12:
            continue
        d = 0.0 if a <= 0 <= b else min(abs(a), abs(b))
        curv = min(SIGMOID_CURVATURE, _sigmoid(d) * (1 - _sigmoid(d)) * (1 + 1e-9))
        err = (b - a) ** 2 / 8.0 * curv + pad
        alpha = (sb - sa) / (b - a)
        beta = sa - alpha * a
        enc.row([si, zi, yi], [1.0, -alpha, -(beta - err)], lo=0.0)  # s_p >= chord - err
        enc.row([si, zi, yi], [1.0, -alpha, -(beta + err)], hi=0.0)  # s_p <= chord + err
    return s


class Hinge(BinaryLoss):
    """Hinge max(0, 1 - s z) with s = 2y - 1. Its derivative is -s where 1 - s z > 0 and 0 where
    1 - s z < 0; where the box touches the kink both values are included."""

    name = "hinge"

    def value(self, logits, y):
        s = 2.0 * y.to(logits.dtype) - 1.0
        return torch.clamp(1.0 - s * logits[:, 0], min=0.0)

    def interval_bounds(self, logits, mask):
        self.check_logits(logits, mask)
        z = logits[:, 0]
        one = torch.ones_like(z.lo)
        # y = 1: margin 1 - z; y = 0: margin 1 + z
        l1 = Interval((1.0 - z.hi).clamp_min(0), (1.0 - z.lo).clamp_min(0), check=False)
        l0 = Interval((1.0 + z.lo).clamp_min(0), (1.0 + z.hi).clamp_min(0), check=False)
        if rounding_enabled():
            l1 = Interval(torch.nextafter(l1.lo, -one).clamp_min(0), torch.nextafter(l1.hi, 2 * l1.hi + 1), check=False)
            l0 = Interval(torch.nextafter(l0.lo, -one).clamp_min(0), torch.nextafter(l0.hi, 2 * l0.hi + 1), check=False)
        return over_labels(mask, [l0, l1]), self.grad_bounds(logits, mask)

    def grad_bounds(self, logits, mask):
        """The derivative's possible values (-s, 0 or both) from where the box lies relative to
        the kink, hull over the allowed labels; exact (values 0 and +-1)."""
        self.check_logits(logits, mask)
        z = logits[:, 0]
        one = torch.ones_like(z.lo)
        zero = torch.zeros_like(z.lo)
        g1_lo = torch.where(z.lo <= 1.0, -one, zero)  # y = 1: some point with 1 - z >= 0: derivative -1 possible
        g1_hi = torch.where(z.hi >= 1.0, zero, -one)  # some point with 1 - z <= 0: derivative 0 possible
        g0_lo = torch.where(z.lo <= -1.0, zero, one)  # y = 0: margin 1 + z
        g0_hi = torch.where(z.hi >= -1.0, one, zero)
        grad = over_labels(mask, [Interval(g0_lo, g0_hi, check=False), Interval(g1_lo, g1_hi, check=False)])
        return grad.unsqueeze(1)

    def encode_grad(self, enc, z, label, bounds, pieces):
        if label.idx[0] < 0:
            return _hinge_fixed_label(enc, z, 2.0 * label.lo[0] - 1.0)
        return _hinge_binary_label(enc, z, label, bounds)


def _hinge_fixed_label(enc: Encoder, z: Vec, s: float) -> Vec:
    """Derivative of max(0, 1 - s z) for a constant sign s."""
    zlo, zhi, zs = float(z.lo[0]), float(z.hi[0]), float(z.start[0])
    mlo, mhi = (1 - s * zhi, 1 - s * zlo) if s > 0 else (1 - s * zlo, 1 - s * zhi)
    h_start = 1.0 if 1 - s * zs >= 0 else 0.0
    if mlo > 0:
        return enc.const([-s])
    if mhi < 0:
        return enc.const([0.0])
    h = enc.binaries(1, [h_start], name="hinge_on")
    # margin m = 1 - s z: h = 1 -> m >= 0 ; h = 0 -> m <= 0
    if z.idx[0] >= 0:
        enc.row([z.idx[0], h.idx[0]], [-s, mlo], lo=mlo - 1.0)  # 1 - s z >= mlo (1 - h)
        enc.row([z.idx[0], h.idx[0]], [-s, -mhi], hi=-1.0)  # 1 - s z <= mhi h
    g = enc.var([min(-s, 0.0)], [max(-s, 0.0)], [-s * h_start], name="dhinge")
    enc.equal([g.idx[0], h.idx[0]], [1.0, s], 0.0)  # g = -s h
    return g


def _hinge_binary_label(enc: Encoder, z: Vec, y: Vec, bounds) -> Vec:
    """Derivative for a binary label y: g = -(2y - 1) h = h - 2 w with w = y AND h; margin
    1 + z - 2 y z."""
    zlo, zhi, zs = float(z.lo[0]), float(z.hi[0]), float(z.start[0])
    mlo = min(1 - zhi, 1 + zlo)
    mhi = max(1 - zlo, 1 + zhi)
    ys = float(y.start[0])
    s0 = 2 * ys - 1
    h_start = 1.0 if 1 - s0 * zs >= 0 else 0.0
    h = enc.binaries(1, [h_start], name="hinge_on")
    yz = enc.product(y, z, name="label_logit")
    m_terms_idx = [z.idx[0], yz.idx[0], h.idx[0]] if z.idx[0] >= 0 else [yz.idx[0], h.idx[0]]
    m_coefs = [1.0, -2.0] if z.idx[0] >= 0 else [-2.0]
    zc = 0.0 if z.idx[0] >= 0 else zlo
    if yz.idx[0] < 0:
        raise AssertionError("label x logit product must be a variable")
    # m = 1 + z - 2 yz ; h = 1 -> m >= 0: m >= mlo (1 - h) ; h = 0 -> m <= 0: m <= mhi h
    enc.row(m_terms_idx, m_coefs + [mlo], lo=mlo - 1.0 - zc)
    enc.row(m_terms_idx, m_coefs + [-mhi], hi=-1.0 - zc)
    w = enc.var([0.0], [1.0], [ys * h_start], name="hinge_and")
    enc.row([w.idx[0], y.idx[0]], [1.0, -1.0], hi=0.0)
    enc.row([w.idx[0], h.idx[0]], [1.0, -1.0], hi=0.0)
    enc.row([w.idx[0], y.idx[0], h.idx[0]], [1.0, -1.0, -1.0], lo=-1.0)
    g = enc.var([-1.0], [1.0], [h_start - 2 * ys * h_start], name="dhinge")
    enc.equal([g.idx[0], h.idx[0], w.idx[0]], [1.0, -1.0, 2.0], 0.0)
    if bounds is not None:
        g.lo[:] = np.maximum(g.lo, bounds[0])
        g.hi[:] = np.minimum(g.hi, bounds[1])
    return g
