"""MIP encoding of a threat's region: the training inputs and labels as program variables.

The generic encoding reads the threat's :class:`~mibpcert.threats.Region`: a sample's features lie
in its box and its label in its allowed set. In ``per_sample`` mode the caller says whether the
sample is picked (poisoned region) or not (base region). In ``joint`` mode a budget of k picked
samples gets one binary ``p_i`` per sample with ``sum p_i <= k``; every change beyond the base
region is gated by ``p_i`` (``x_i - base_hi <= (pois_hi - base_hi) p_i`` and the mirror row;
labels outside the base set need ``p_i = 1``). Both are exact descriptions of the region model, so
the program's feasible set contains every poisoned batch the threat allows.
"""
from __future__ import annotations

import numpy as np

from .expr import Encoder, Vec


def _np(t):
    return t.detach().to("cpu").double().numpy()


def label_vec(enc: Encoder, allowed, clean_row, task: str, name: str = "label") -> Vec:
    """Label encoding of one sample: the 0/1 label (binary), a one-hot vector (multiclass) or the
    target vector (regression, ``allowed`` = (lo, hi))."""
    if task == "regression":
        lo, hi = allowed
        return enc.var_or_const(lo, hi, clean_row, name=name)
    allowed = np.asarray(allowed, dtype=bool)
    y = int(clean_row)
    if task == "binary":
        if allowed.all():
            return enc.binaries(1, [float(y)], name=name)
        return enc.const([float(np.argmax(allowed))])
    C = allowed.shape[0]
    onehot = enc.const(np.eye(C)[y] if allowed.sum() == 1 and allowed[y] else np.eye(C)[np.argmax(allowed)])
    if allowed.sum() > 1:
        sel = np.nonzero(allowed)[0]
        b = enc.binaries(len(sel), (sel == y).astype(float), name=name)
        enc.b.add_eq(b.idx, np.ones(len(sel)), 1.0)
        onehot = enc.const(np.zeros(C))
        onehot.start = np.eye(C)[y]
        onehot.idx[sel], onehot.lo[sel], onehot.hi[sel] = b.idx, 0.0, 1.0
    return onehot


def _labels_of(region_labels, i, task):
    if task == "regression":
        return (_np(region_labels.lo[i]), _np(region_labels.hi[i]))
    return _np(region_labels[i]).astype(bool)


def _clean_label(y, i, task):
    return _np(y[i]).reshape(-1) if task == "regression" else int(y[i])


def region_sample(enc: Encoder, region, X, y, i: int, picked: bool, task: str) -> tuple[Vec, Vec]:
    """Sample i of the batch in its poisoned region (``picked``) or its base region."""
    feats = region.poisoned_features if picked else region.features
    labels = region.poisoned_labels if picked else region.labels
    x = enc.var_or_const(_np(feats.lo[i]), _np(feats.hi[i]), _np(X[i]), name=f"x{i}")
    lab = label_vec(enc, _labels_of(labels, i, task), _clean_label(y, i, task), task, name=f"y{i}")
    return x, lab


def region_batch(enc: Encoder, region, X, y, task: str) -> tuple[list[Vec], list[Vec]]:
    """Every sample of the batch; with a budget k < B, gated by one pick binary per sample."""
    B = X.shape[0]
    k = region.k
    if k is None or k >= B:
        pairs = [region_sample(enc, region, X, y, i, True, task) for i in range(B)]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    picks = enc.binaries(B, np.zeros(B), name="pick")
    enc.b.add_row(picks.idx, np.ones(B), hi=float(k))
    xs, labs = [], []
    for i in range(B):
        p = picks.idx[i]
        blo, bhi = _np(region.features.lo[i]), _np(region.features.hi[i])
        plo, phi = _np(region.poisoned_features.lo[i]), _np(region.poisoned_features.hi[i])
        x = enc.var_or_const(plo, phi, _np(X[i]), name=f"x{i}")
        _gate_box(enc, x, blo, bhi, plo, phi, p)
        task_lab = _labels_of(region.poisoned_labels, i, task)
        lab = label_vec(enc, task_lab, _clean_label(y, i, task), task, name=f"y{i}")
        if task == "regression":
            (blo_t, bhi_t), (plo_t, phi_t) = _labels_of(region.labels, i, task), task_lab
            _gate_box(enc, lab, blo_t, bhi_t, plo_t, phi_t, p)
        else:
            base_allowed = _labels_of(region.labels, i, task)
            extra = task_lab & ~base_allowed
            if task == "binary":
                if lab.idx[0] >= 0 and extra.any():
                    # the label may leave the base set only when picked: |y - y_base| <= p
                    if np.argmax(base_allowed) == 0:
                        enc.b.add_row([lab.idx[0], p], [1.0, -1.0], hi=0.0)  # y <= p
                    else:
                        enc.b.add_row([lab.idx[0], p], [-1.0, -1.0], hi=-1.0)  # 1 - y <= p
            elif extra.any():
                sel = np.nonzero(extra)[0]
                enc.b.add_row(np.concatenate([lab.idx[sel], [p]]), np.concatenate([np.ones(len(sel)), [-1.0]]), hi=0.0)
        xs.append(x)
        labs.append(lab)
    return xs, labs


def _gate_box(enc: Encoder, v: Vec, blo, bhi, plo, phi, p: int) -> None:
    """v in the poisoned box always, and in the base box unless pick p is 1."""
    for j in range(len(v)):
        if v.idx[j] < 0:
            continue
        if phi[j] > bhi[j]:
            enc.b.add_row([v.idx[j], p], [1.0, -(phi[j] - bhi[j])], hi=bhi[j])
        if plo[j] < blo[j]:
            enc.b.add_row([v.idx[j], p], [1.0, (blo[j] - plo[j])], lo=blo[j])
