"""Backdoor triggers: one pattern shared by every poisoned sample, optionally with a target
label (see :func:`mibpcert.backdoor.backdoor_certificate` for the test-time certificate)."""
from __future__ import annotations

import numpy as np
import torch

from ..interval.tensor import Interval
from ..ir.encoder import Vec
from ..ir.inputs import as_array, clean_label, clean_label_vec, label_vec, labels_of, pick_binaries
from .base import Region, Threat, clean_labels
from .checks import check_class, check_k, check_nonneg


def _check_mask(mask) -> list[bool]:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().to("cpu").reshape(-1).tolist() if mask.dim() <= 1 else None
        if mask is None:
            raise ValueError("SharedTrigger: mask must be a 1-D vector over the features")
    try:
        vals = list(mask)
    except TypeError:
        raise ValueError(f"SharedTrigger: mask must be a list of 0/1 (or booleans), one per feature, got {mask!r}") from None
    out = []
    for v in vals:
        if isinstance(v, (list, tuple)):
            raise ValueError("SharedTrigger: mask must be a flat list (one 0/1 entry per feature)")
        if v in (0, 1) or isinstance(v, bool):
            out.append(bool(v))
        else:
            raise ValueError(f"SharedTrigger: mask entries must be 0/1 or booleans, got {v!r}")
    if not any(out):
        raise ValueError("SharedTrigger: the mask selects no feature (the trigger would be empty)")
    return out


class SharedTrigger(Threat):
    """A backdoor: one trigger pattern ``delta`` (the same for every poisoned sample, nonzero only
    on the features of ``mask``, ``|delta_f| <= eps``) is added to at most ``k`` samples per batch
    (every sample may carry it if ``k=None``); if ``target`` is given, every poisoned sample is
    labelled ``target`` (dirty-label backdoor), else the labels stay clean.

    Interval enclosure (and ``per_sample`` MIP): the sharing is relaxed, each poisoned sample
    independently in the box ``X ± eps·mask`` with label in ``{clean, target}`` (a picked sample
    of a budget k < B gets exactly ``target`` in ``per_sample``). ``joint`` MIP: ``delta`` is one
    vector of variables shared by the batch, a pick binary ``p_i`` per sample (``sum <= k``),
    ``x_i = X_i + p_i delta`` by exact big-M rows, and the label ``target`` exactly when
    ``p_i = 1``. The pattern is shared within a batch; across steps each batch may use its own
    (a sound relaxation of one pattern for the whole run)."""

    def __init__(self, mask, eps: float, k: int | None = None, target: int | None = None) -> None:
        self.mask = _check_mask(mask)
        self.eps = check_nonneg(eps, "SharedTrigger: eps")
        check_k(k, "SharedTrigger")
        self.k, self.target = k, check_class(target, "SharedTrigger: target")

    @property
    def features(self) -> list[int]:
        return [f for f, m in enumerate(self.mask) if m]

    def validate(self, info):
        super().validate(info)
        if len(self.mask) != info.num_features:
            raise ValueError(f"SharedTrigger: the mask has {len(self.mask)} entries but the data has {info.num_features} features")
        if self.target is not None:
            if info.task == "regression":
                raise ValueError("SharedTrigger: a target label needs a classification task (use target=None for regression)")
            if self.target >= info.num_classes:
                raise ValueError(f"SharedTrigger: target class {self.target} out of range for {info.num_classes} classes")

    def poisoned_box(self, X: torch.Tensor) -> Interval:
        """Every input ``X + delta`` with ``delta`` on the mask and ``|delta| <= eps``."""
        m = torch.tensor(self.mask, dtype=X.dtype, device=X.device) * self.eps
        return Interval(X - m, X + m, check=False)

    def region(self, X, y, info):
        box = self.poisoned_box(X)
        labels = clean_labels(y, info)
        pois = labels
        if self.target is not None:
            pois = labels.clone()
            pois[:, self.target] = True
        if self.k is None:
            return Region(box, pois, box, pois, None)
        return Region(Interval.point(X), labels, box, pois, self.k)

    def mip_sample(self, enc, region, X, y, i, picked, task):
        if not picked:
            return enc.const(as_array(X[i])), clean_label_vec(enc, region, y, i, task)
        feats = region.poisoned_features
        x = enc.var_or_const(as_array(feats.lo[i]), as_array(feats.hi[i]), as_array(X[i]), name=f"x{i}")
        allowed = labels_of(region.poisoned_labels, i, task)
        if self.target is not None and region.k is not None and region.k < X.shape[0]:
            # a picked sample of a budget below the batch carries the target label exactly
            allowed = np.zeros(region.poisoned_labels.shape[1], dtype=bool)
            allowed[self.target] = True
        return x, label_vec(enc, allowed, clean_label(y, i, task), task, name=f"y{i}")

    def mip_batch(self, enc, region, X, y, task):
        B = X.shape[0]
        picks = pick_binaries(enc, B, region.k, force=True)
        delta = None
        if self.eps > 0:
            n = len(self.features)
            delta = enc.var(np.full(n, -self.eps), np.full(n, self.eps), np.zeros(n), name="trigger")
        xs, labs = [], []
        for i in range(B):  # each sample's input, then its label (the program's variable order)
            xs.append(self._triggered(enc, as_array(X[i]), picks[i], delta, i))
            labs.append(self._label(enc, region, y, i, picks[i], task))
        return xs, labs

    def _triggered(self, enc, row: np.ndarray, p: int, delta: Vec | None, i: int) -> Vec:
        """``x = X_i + p delta`` on the mask: ``|x - X| <= eps p`` and ``|x - X - delta| <= eps (1 - p)``."""
        x = enc.const(row)
        if delta is None:
            return x
        F, e = self.features, self.eps
        xv = enc.var(row[F] - e, row[F] + e, row[F], name=f"x{i}")
        for t, f in enumerate(F):
            xi, di = int(xv.idx[t]), int(delta.idx[t])
            enc.row([xi, p], [1.0, -e], hi=row[f])
            enc.row([xi, p], [1.0, e], lo=row[f])
            enc.row([xi, di, p], [1.0, -1.0, e], hi=row[f] + e)
            enc.row([xi, di, p], [1.0, -1.0, -e], lo=row[f] - e)
        x.idx[F], x.lo[F], x.hi[F] = xv.idx, xv.lo, xv.hi
        return x

    def _label(self, enc, region: Region, y, i: int, p: int, task: str) -> Vec:
        """Sample i's label: ``target`` exactly when picked (p = 1), the clean label otherwise."""
        if self.target is None or int(y[i]) == self.target:
            return clean_label_vec(enc, region, y, i, task)  # a single allowed label: constant
        c = int(y[i])
        if task == "binary":
            if self.target == 1:  # y = p
                return Vec(np.array([p], dtype=np.int64), np.zeros(1), np.ones(1), np.zeros(1))
            yv = enc.binaries(1, [1.0], name=f"y{i}")  # y = 1 - p
            enc.equal([int(yv.idx[0]), p], [1.0, 1.0], 1.0)
            return yv
        K = region.labels.shape[1]
        lab = enc.const(np.eye(K)[c])
        keep = enc.binaries(1, [1.0], name=f"y{i}_clean")
        enc.equal([int(keep.idx[0]), p], [1.0, 1.0], 1.0)  # clean entry = 1 - p
        lab.idx[c], lab.lo[c], lab.hi[c] = keep.idx[0], 0.0, 1.0
        lab.idx[self.target], lab.lo[self.target], lab.hi[self.target] = p, 0.0, 1.0
        return lab

    def describe(self):
        return {"type": "shared_trigger", "mask": [int(m) for m in self.mask], "eps": self.eps, "k": self.k, "target": self.target}
