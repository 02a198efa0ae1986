"""Encodings of d loss / d logits (the start of the backward pass) for every supported loss.

* ``mse``: ``g = 2 (z - t) / C``, linear and exact.
* ``hinge``: ``g = -s h`` with ``s = 2y - 1`` and one binary ``h`` per sample that is 1 only where
  the margin ``1 - s z >= 0`` and 0 only where it is ``<= 0`` (both at the kink): exact.
* ``bce``: ``g = sigmoid(z) - y``. The sigmoid is enclosed piecewise linearly over the logit's
  interval: P segments, one binary each; on segment [a, b] the value lies within the chord through
  (a, sigmoid(a)), (b, sigmoid(b)) plus/minus the interpolation error ``(b - a)^2 / 8 * max|sigmoid''|``
  and between sigmoid(a) and sigmoid(b) (monotone). ``|sigmoid''| <= min(1 / (6 sqrt 3),
  sigmoid'(d))`` with d the segment's distance to 0, since ``sigmoid'' = sigmoid' (1 - 2 sigmoid)``
  and sigmoid' falls with |z|. Sound, and tighter with more pieces.
* ``ce``: ``g = p - onehot(y)`` with every softmax output p_j in its interval (monotone
  log-softmax bounds) and ``sum_j p_j = 1``: a sound linear enclosure.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..interval.losses import log_softmax_bounds
from ..interval.tensor import Interval
from ..ir.encoder import Encoder, Vec, _down, _up

SIGMOID_CURVATURE = 1.0 / (6.0 * math.sqrt(3.0)) * (1 + 1e-12)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def encode_loss_grad(enc: Encoder, loss: str, z: Vec, label: Vec, bounds, pieces: int = 4) -> Vec:
    """d loss / d logits of one sample for logits ``z`` and label encoding ``label`` (binary:
    the 0/1 label; ce: one-hot; mse: targets). ``bounds``: sound interval bounds on the result."""
    if loss == "mse":
        C = len(z)
        terms_rows = np.concatenate([np.arange(C)[z.is_var], np.arange(C)[label.is_var]])
        terms_vars = np.concatenate([z.idx[z.is_var], label.idx[label.is_var]])
        coefs = np.concatenate([np.full(int(z.is_var.sum()), 2.0 / C), np.full(int(label.is_var.sum()), -2.0 / C)])
        const = 2.0 / C * (np.where(z.is_var, 0, z.lo) - np.where(label.is_var, 0, label.lo))
        lo = 2.0 / C * (z.lo - label.hi)
        hi = 2.0 / C * (z.hi - label.lo)
        return enc.affine(C, terms_rows, terms_vars, coefs, const, lo, hi, 2.0 / C * (z.start - label.start), bounds, "dmse")
    if loss == "hinge":
        return _hinge(enc, z, label, bounds)
    if loss == "bce":
        s = _sigmoid_enclosure(enc, z, pieces)
        return _minus(enc, s, label, bounds, "dbce")
    if loss == "ce":
        zl = torch.as_tensor(z.lo).unsqueeze(0)
        zh = torch.as_tensor(z.hi).unsqueeze(0)
        ls = log_softmax_bounds(Interval(zl, zh, check=False))
        plo = np.exp(ls.lo.numpy()[0])
        phi = np.exp(ls.hi.numpy()[0])
        plo, phi = np.clip(_down(plo), 0, 1), np.clip(_up(phi), 0, 1)
        zs = z.start - z.start.max()
        pstart = np.exp(zs) / np.exp(zs).sum()
        p = enc.var(plo, phi, pstart, name="softmax")
        enc.equal(p.idx, np.ones(len(p)), 1.0)
        return _minus(enc, p, label, bounds, "dce")
    raise ValueError(f"unsupported loss {loss!r}")


def _minus(enc: Encoder, a: Vec, b: Vec, bounds, name: str) -> Vec:
    """``a - b`` element-wise as new variables."""
    n = len(a)
    rows = np.concatenate([np.arange(n)[a.is_var], np.arange(n)[b.is_var]])
    vars_ = np.concatenate([a.idx[a.is_var], b.idx[b.is_var]])
    coefs = np.concatenate([np.ones(int(a.is_var.sum())), -np.ones(int(b.is_var.sum()))])
    const = np.where(a.is_var, 0, a.lo) - np.where(b.is_var, 0, b.lo)
    return enc.affine(n, rows, vars_, coefs, const, a.lo - b.hi, a.hi - b.lo, a.start - b.start, bounds, name)


def _sigmoid_enclosure(enc: Encoder, z: Vec, pieces: int) -> Vec:
    """A variable s with s = sigmoid(z) inside the piecewise-linear enclosure (module docstring)."""
    lo, hi = float(z.lo[0]), float(z.hi[0])
    slo, shi = float(_down(_sigmoid(lo))), float(_up(_sigmoid(hi)))
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


def _hinge(enc: Encoder, z: Vec, label: Vec, bounds) -> Vec:
    """Derivative of max(0, 1 - s z), s = 2y - 1, for a constant or binary label y."""
    zlo, zhi, zs = float(z.lo[0]), float(z.hi[0]), float(z.start[0])
    if label.idx[0] < 0:
        s = 2.0 * label.lo[0] - 1.0
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
    # label is a binary y: g = -(2y - 1) h = h - 2 w with w = y AND h; margin 1 + z - 2 y z
    y = label
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
