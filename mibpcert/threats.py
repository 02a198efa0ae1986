"""Threat models: which changes an attacker may make to the training data.

Every threat model is one object used by both certification paths. For the interval path it
describes, for a batch, a :class:`Region`:

* ``features`` / ``labels``: an enclosure of what *every* sample of the batch may become (the
  clean data for budgeted threats, the perturbed box for threats that touch every sample);
* ``poisoned_features`` / ``poisoned_labels``: an enclosure of what a sample the attacker picks
  may become (it contains the first enclosure);
* ``k``: how many samples of the batch the attacker may pick (``None``: every sample).

Why the k-of-N aggregation is sound: for each parameter coordinate j let ``c_i`` be an upper bound
of sample i's gradient over the unpicked region and ``p_i >= c_i`` one over the picked region. For
any set S of at most k picked samples, the batch gradient sum is at most
``sum_{i not in S} c_i + sum_{i in S} p_i = sum_i c_i + sum_{i in S} (p_i - c_i)``, which is at
most ``sum_i c_i`` plus the k largest differences ``p_i - c_i`` (all differences are >= 0). The
lower bound is symmetric. Taking the top k per coordinate lets the attacker choose a different S
for every coordinate, which only loosens the bound.

Labels are a boolean mask (B, K) of allowed classes for classification and an interval of targets
for regression.
"""
from __future__ import annotations

import copy
import inspect
import numbers
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .interval.tensor import Interval, rounding_enabled
from .ir.encoder import Vec
from .ir.inputs import _clean_label, _labels_of, as_array, box_union_sample, clean_label_vec, gated_box, label_vec, one_hot_selector, pick_binaries, region_batch, region_sample, select

@dataclass
class Region:
    features: Interval
    labels: Any  # bool mask (B, K) or Interval (B, C)
    poisoned_features: Interval
    poisoned_labels: Any
    k: int | None


@dataclass(frozen=True)
class TaskInfo:
    """What a threat needs to know of the data to validate itself and build label sets."""

    task: str  # "binary" | "multiclass" | "regression"
    num_classes: int | None  # label classes (2 for binary), None for regression
    num_features: int
    batch_size: int


def clean_labels(y: torch.Tensor, info: TaskInfo):
    """The clean label set of a batch: one-hot mask, or a point interval of the targets."""
    if info.task == "regression":
        t = y.reshape(y.shape[0], -1)
        return Interval.point(t)
    return torch.nn.functional.one_hot(y.long(), info.num_classes).bool()


def _check_k(k: int | None, name: str) -> None:
    if k is None:
        return
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"{name}: k must be a non-negative integer or None, got {k!r}")


def _check_nonneg(value: float, what: str) -> float:
    return _check_finite(value, what, nonneg=True)


def _check_finite(value, what: str, nonneg: bool = False) -> float:
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


def _check_flag(value, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {value!r} ({type(value).__name__})")
    return value


class Threat:
    """Base class. Subclasses implement :meth:`region` and :meth:`describe`."""

    k: int | None = None

    def validate(self, info: TaskInfo) -> None:
        """Raise ``ValueError`` when the threat does not fit the data or the batch size."""
        if self.k is not None and self.k > info.batch_size:
            raise ValueError(
                f"{type(self).__name__}: k={self.k} poisoned samples per batch is larger than the batch size {info.batch_size}"
            )

    def region(self, X: torch.Tensor, y: torch.Tensor, info: TaskInfo) -> Region:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError

    # -- MIP encoding (used by the MIBP path) ---------------------------------------------------
    def mip_sample(self, enc, region: Region, X, y, i: int, picked: bool, task: str):
        """Encode sample i of a batch in its poisoned (``picked``) or base region; returns the
        input and label encodings. The default reads the region (exact for box-and-label-set
        threats); structured threats override it."""
        return region_sample(enc, region, X, y, i, picked, task)

    def mip_batch(self, enc, region: Region, X, y, task: str):
        """Encode a whole batch with the budget: at most k samples leave their base region."""
        return region_batch(enc, region, X, y, task)


class LinfFeatures(Threat):
    """Every sample (``k=None``) or at most ``k`` samples per batch may have every feature moved by
    at most ``eps``; ``domain=(lo, hi)`` optionally clips perturbed features to a valid range."""

    def __init__(self, eps: float, k: int | None = None, domain: tuple[float, float] | None = None) -> None:
        self.eps = _check_nonneg(eps, "LinfFeatures: eps")
        _check_k(k, "LinfFeatures")
        self.k = k
        if domain is not None:
            if isinstance(domain, (str, bytes)) or not hasattr(domain, "__len__") or len(domain) != 2:
                raise ValueError(f"LinfFeatures: domain must be a pair (low, high) of numbers, got {domain!r}")
            lo, hi = _check_finite(domain[0], "LinfFeatures: domain low"), _check_finite(domain[1], "LinfFeatures: domain high")
            if not lo <= hi:
                raise ValueError(f"LinfFeatures: domain must be (low, high) with low <= high, got {domain!r}")
            domain = (lo, hi)
        self.domain = domain

    def box(self, X: torch.Tensor) -> Interval:
        lo, hi = X - self.eps, X + self.eps
        if self.domain is not None:
            lo = torch.minimum(lo.clamp_min(self.domain[0]), X)
            hi = torch.maximum(hi.clamp_max(self.domain[1]), X)
        return Interval(lo, hi, check=False)

    def region(self, X, y, info):
        box = self.box(X)
        labels = clean_labels(y, info)
        base = box if self.k is None else Interval.point(X)
        return Region(base, labels, box, labels, self.k)

    def describe(self):
        return {"type": "linf_features", "eps": self.eps, "k": self.k, "domain": self.domain}


class LabelFlip(Threat):
    """At most ``k`` labels per batch flipped to any other class, or only to class ``to``."""

    def __init__(self, k: int | None, to: int | None = None) -> None:
        _check_k(k, "LabelFlip")
        self.k = k
        if to is not None and (isinstance(to, bool) or not isinstance(to, int) or to < 0):
            raise ValueError(f"LabelFlip: target class 'to' must be a non-negative integer, got {to!r}")
        self.to = to

    def validate(self, info):
        super().validate(info)
        if info.task == "regression":
            raise ValueError("LabelFlip needs a classification task; use LabelNoise for regression targets")
        if self.to is not None and self.to >= info.num_classes:
            raise ValueError(f"LabelFlip: target class {self.to} out of range for {info.num_classes} classes")

    def region(self, X, y, info):
        labels = clean_labels(y, info)
        if self.to is None:
            poisoned = torch.ones_like(labels)
        else:
            poisoned = labels.clone()
            poisoned[:, self.to] = True
        point = Interval.point(X)
        base_labels = poisoned if self.k is None else labels
        return Region(point, base_labels, point, poisoned, self.k)

    def describe(self):
        return {"type": "label_flip", "k": self.k, "to": self.to}


class LabelNoise(Threat):
    """Regression: at most ``k`` targets per batch (every target if ``k=None``) moved by at most
    ``gamma`` in every output."""

    def __init__(self, k: int | None, gamma: float) -> None:
        _check_k(k, "LabelNoise")
        self.k = k
        self.gamma = _check_nonneg(gamma, "LabelNoise: gamma")

    def validate(self, info):
        super().validate(info)
        if info.task != "regression":
            raise ValueError("LabelNoise needs a regression task; use LabelFlip for class labels")

    def region(self, X, y, info):
        labels = clean_labels(y, info)
        poisoned = Interval(labels.lo - self.gamma, labels.hi + self.gamma, check=False)
        point = Interval.point(X)
        return Region(point, poisoned if self.k is None else labels, point, poisoned, self.k)

    def describe(self):
        return {"type": "label_noise", "k": self.k, "gamma": self.gamma}


class FeatureValues(Threat):
    """The feature ``feature`` of every sample (``k=None``) or of at most ``k`` samples per batch
    may be replaced by any value of the finite set ``values`` (it may also keep its own value).

    Interval enclosure: the hull of the values and the clean value. MIP encoding: one binary per
    candidate value (the clean value included) summing to one, the feature equal to the chosen
    value; with a budget, the clean value's binary is forced unless the sample is picked. The MIP
    set is exactly the threat's, the hull is its sound enclosure.

    ``FeatureValues(feature=[3, 4, 5], values="onehot", k=...)`` builds a :class:`OneHotFeature`
    instead: the one-hot group of columns 3..5 may switch to any category."""

    def __new__(cls, feature=None, values=None, k=None):
        if isinstance(values, str):
            if values.strip().lower() != "onehot":
                raise ValueError(f"FeatureValues: values must be a list of numbers or \"onehot\", got {values!r}")
            return OneHotFeature(feature, k)
        return super().__new__(cls)

    def __init__(self, feature: int, values, k: int | None = None) -> None:
        if isinstance(feature, bool) or not isinstance(feature, int) or feature < 0:
            raise ValueError(f"FeatureValues: feature must be a non-negative column index, got {feature!r}")
        if isinstance(values, (bytes, numbers.Number)) or not hasattr(values, "__iter__"):
            raise ValueError(f"FeatureValues: values must be a list of numbers or \"onehot\", got {values!r}")
        vals = [_check_finite(v, "FeatureValues: every value") for v in values]
        if not vals:
            raise ValueError("FeatureValues: the value set is empty")
        _check_k(k, "FeatureValues")
        self.feature, self.values, self.k = feature, sorted(set(vals)), k

    def validate(self, info):
        super().validate(info)
        if self.feature >= info.num_features:
            raise ValueError(f"FeatureValues: feature {self.feature} out of range for {info.num_features} features")

    def _box(self, X: torch.Tensor) -> Interval:
        col = X[:, self.feature]
        lo, hi = X.clone(), X.clone()
        lo[:, self.feature] = torch.clamp(col, max=min(self.values))
        hi[:, self.feature] = torch.clamp(col, min=max(self.values))
        return Interval(lo, hi, check=False)

    def region(self, X, y, info):
        box = self._box(X)
        labels = clean_labels(y, info)
        return Region(box if self.k is None else Interval.point(X), labels, box, labels, self.k)

    def describe(self):
        return {"type": "feature_values", "feature": self.feature, "values": self.values, "k": self.k}

    def _encode_x(self, enc, X, i, pick):
        """Sample i's input with the feature chosen among its candidates; ``pick`` is True/False
        or the index of the sample's pick binary (joint mode)."""
        row = X[i].detach().to("cpu").double().numpy()
        x = enc.const(row)
        if pick is False:
            return x
        clean = float(row[self.feature])
        cands = sorted(set(self.values) | {clean})
        start = [1.0 if v == clean else 0.0 for v in cands]
        b = enc.binaries(len(cands), start, name=f"value{i}")
        enc.b.add_eq(b.idx, np.ones(len(cands)), 1.0)
        xf = enc.var([cands[0]], [cands[-1]], [clean], name=f"x{i}_{self.feature}")
        enc.b.add_eq(np.concatenate([[xf.idx[0]], b.idx]), np.concatenate([[-1.0], cands]), 0.0)
        if pick is not True:  # joint mode with a budget: unpicked samples keep their value
            enc.b.add_row([b.idx[cands.index(clean)], pick], [1.0, 1.0], lo=1.0)
        x.idx[self.feature], x.lo[self.feature], x.hi[self.feature] = xf.idx[0], cands[0], cands[-1]
        return x

    def mip_sample(self, enc, region, X, y, i, picked, task):
        x = self._encode_x(enc, X, i, bool(picked) or self.k is None)
        labels = region.poisoned_labels if picked else region.labels
        return x, label_vec(enc, _labels_of(labels, i, task), _clean_label(y, i, task), task, name=f"y{i}")

    def mip_batch(self, enc, region, X, y, task):
        B = X.shape[0]
        if self.k is None or self.k >= B:
            picks = [True] * B
        else:
            pv = enc.binaries(B, np.zeros(B), name="pick")
            enc.b.add_row(pv.idx, np.ones(B), hi=float(self.k))
            picks = [int(p) for p in pv.idx]
        xs = [self._encode_x(enc, X, i, picks[i]) for i in range(B)]
        labs = [label_vec(enc, _labels_of(region.labels, i, task), _clean_label(y, i, task), task, name=f"y{i}") for i in range(B)]
        return xs, labs


def _is_point(iv: Interval, X: torch.Tensor) -> bool:
    return bool((iv.lo == X).all() and (iv.hi == X).all())


def _widened(lo: torch.Tensor, hi: torch.Tensor) -> Interval:
    """An interval computed with one rounding per term, moved outward when rounding is on."""
    if rounding_enabled():
        lo = torch.nextafter(torch.nextafter(lo, lo - 1), lo - 1)
        hi = torch.nextafter(torch.nextafter(hi, hi + 1), hi + 1)
    return Interval(lo, hi, check=False)


def _combine_features(X: torch.Tensor, a: Interval, b: Interval) -> Interval:
    """Both perturbations applied: X + (a - X) + (b - X) (Minkowski sum of the two offsets); exact
    when one part leaves the features unchanged, rounded outward otherwise."""
    if _is_point(a, X):
        return b
    if _is_point(b, X):
        return a
    return _widened(a.lo + (b.lo - X), a.hi + (b.hi - X))


class Both(Threat):
    """The attacker uses both budgets. ``paired=True``: the same samples (at most max(k_a, k_b))
    carry both changes; ``paired=False``: the two budgets may hit different samples, so up to
    k_a + k_b samples change and, soundly, each of them may carry both changes. A part with
    ``k=None`` touches every sample and goes into the region of every sample."""

    def __init__(self, a: Threat, b: Threat, paired: bool = False) -> None:
        if not isinstance(a, Threat) or not isinstance(b, Threat):
            raise TypeError("Both(a, b): a and b must be threat models")
        self.a, self.b, self.paired = a, b, _check_flag(paired, "Both: paired")
        ks = [t.k for t in (a, b) if t.k is not None]
        if not ks:
            self.k = None
        else:
            self.k = max(ks) if self.paired else sum(ks)

    def validate(self, info):
        # each budget must fit the batch; their sum may exceed it (then every sample may change)
        self.a.validate(info)
        self.b.validate(info)

    def region(self, X, y, info):
        ra, rb = self.a.region(X, y, info), self.b.region(X, y, info)
        base_x = _combine_features(X, ra.features, rb.features)
        pois_x = _combine_features(X, ra.poisoned_features, rb.poisoned_features)
        return Region(
            base_x,
            _union_labels(ra.labels, rb.labels, y, info),
            pois_x,
            _union_labels(ra.poisoned_labels, rb.poisoned_labels, y, info),
            self.k,
        )

    def describe(self):
        return {"type": "both", "paired": self.paired, "parts": [self.a.describe(), self.b.describe()]}


def _union_labels(a, b, y, info):
    """Label set when both label changes may apply: union of masks; for regression targets the
    offsets of both add up (exact when one part leaves the targets unchanged)."""
    if isinstance(a, Interval):
        t = clean_labels(y, info).lo
        return _combine_features(t, a, b)
    return a | b


# =============================================================================================
# structured threats: finite and combinatorial perturbation sets with exact MIP encodings
# =============================================================================================
def _check_index_list(cols, what: str) -> list[int]:
    if isinstance(cols, (int,)) and not isinstance(cols, bool):
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


def _row(X: torch.Tensor, i: int):
    return as_array(X[i])


class _FeatureThreat(Threat):
    """Threats that change only the features of a picked sample, with a set that contains the
    clean sample (so the poisoned region contains the base region). Subclasses give the interval
    box of a picked sample (:meth:`poisoned_box`) and its exact encoding (:meth:`encode_x`);
    labels stay clean. ``k=None``: every sample may change."""

    def poisoned_box(self, X: torch.Tensor) -> Interval:
        raise NotImplementedError

    def encode_x(self, enc, X, i: int, pick):
        """Sample i's features: ``pick`` True (free in the set), False (clean) or the index of
        the sample's pick binary (clean unless it is 1)."""
        raise NotImplementedError

    def region(self, X, y, info):
        box = self.poisoned_box(X)
        labels = clean_labels(y, info)
        return Region(box if self.k is None else Interval.point(X), labels, box, labels, self.k)

    def mip_sample(self, enc, region, X, y, i, picked, task):
        x = self.encode_x(enc, X, i, bool(picked) or region.k is None)
        return x, clean_label_vec(enc, region, y, i, task)

    def mip_batch(self, enc, region, X, y, task):
        B = X.shape[0]
        picks = pick_binaries(enc, B, region.k)
        xs = [self.encode_x(enc, X, i, picks[i]) for i in range(B)]
        return xs, [clean_label_vec(enc, region, y, i, task) for i in range(B)]

    def _check_columns(self, cols, info, what):
        bad = [c for c in cols if c >= info.num_features]
        if bad:
            raise ValueError(f"{type(self).__name__}: {what} {bad} out of range for {info.num_features} features")

    @staticmethod
    def _widen_columns(X: torch.Tensor, cols: list[int], low: float, high: float) -> Interval:
        """Box of the samples with columns ``cols`` free in ``[low, high]`` (and still allowed
        to keep their clean value): ``[min(clean, low), max(clean, high)]`` there, clean elsewhere."""
        lo, hi = X.clone(), X.clone()
        idx = torch.tensor(cols, device=X.device)
        lo[:, idx] = torch.clamp(X[:, idx], max=low)
        hi[:, idx] = torch.clamp(X[:, idx], min=high)
        return Interval(lo, hi, check=False)


class OneHotFeature(_FeatureThreat):
    """A one-hot encoded categorical feature (a group of columns, exactly one of them 1) that the
    attacker may switch to any category, in every sample (``k=None``) or at most ``k`` samples
    per batch. ``columns``: the group's column indices, or a list of groups (each may switch).
    Also reachable as ``FeatureValues(feature=[3, 4, 5], values="onehot", k=...)``.

    Interval enclosure: each column of the group in ``[min(clean, 0), max(clean, 1)]`` (the hull).
    MIP encoding: one binary per category (plus one for the clean row if it is not one-hot) with
    sum 1 and the columns equal to the chosen vector; with a budget the clean choice is forced
    unless the sample is picked. The MIP set is exactly the threat's."""

    def __init__(self, columns, k: int | None = None) -> None:
        if isinstance(columns, (bool, str, bytes, float)) or not (isinstance(columns, int) or hasattr(columns, "__iter__")):
            raise ValueError(f"OneHotFeature: columns must be a list of column indices (or of groups), got {columns!r}")
        cols = [columns] if isinstance(columns, int) else list(columns)
        if cols and all(isinstance(c, (list, tuple)) for c in cols):
            groups = [_check_index_list(g, "OneHotFeature: a column group") for g in cols]
        else:
            groups = [_check_index_list(cols, "OneHotFeature: columns")]
        flat = [c for g in groups for c in g]
        if len(set(flat)) != len(flat):
            raise ValueError(f"OneHotFeature: the groups overlap: {groups!r}")
        for g in groups:
            if len(g) < 2:
                raise ValueError(f"OneHotFeature: a one-hot group needs at least 2 columns, got {g!r}")
        _check_k(k, "OneHotFeature")
        self.groups, self.k = groups, k

    @property
    def columns(self) -> list[int]:
        return [c for g in self.groups for c in g]

    def validate(self, info):
        super().validate(info)
        self._check_columns(self.columns, info, "columns")

    def poisoned_box(self, X):
        return self._widen_columns(X, self.columns, 0.0, 1.0)

    def encode_x(self, enc, X, i, pick):
        row = _row(X, i)
        x = enc.const(row)
        if pick is False:
            return x
        for gi, g in enumerate(self.groups):
            clean = row[g]
            K = len(g)
            cands = [np.eye(K)[c] for c in range(K)]
            unit = np.isin(clean, (0.0, 1.0)).all() and clean.sum() == 1.0
            c0 = int(np.argmax(clean)) if unit else K
            if not unit:
                cands.append(clean.copy())
            C = np.stack(cands)  # (m, K)
            m = C.shape[0]
            b = enc.binaries(m, (np.arange(m) == c0).astype(float), name=f"cat{i}_{gi}")
            enc.b.add_eq(b.idx, np.ones(m), 1.0)
            xv = enc.var(C.min(0), C.max(0), clean, name=f"x{i}_g{gi}")
            for j in range(K):
                enc.b.add_eq(np.concatenate([[xv.idx[j]], b.idx]), np.concatenate([[-1.0], C[:, j]]), 0.0)
            if pick is not True:  # clean unless picked: b_clean + p >= 1
                enc.b.add_row([b.idx[c0], pick], [1.0, 1.0], lo=1.0)
            x.idx[g], x.lo[g], x.hi[g] = xv.idx, xv.lo, xv.hi
        return x

    def describe(self):
        cols = self.groups[0] if len(self.groups) == 1 else self.groups
        return {"type": "one_hot_feature", "columns": cols, "k": self.k}


class MissingValues(_FeatureThreat):
    """In every sample (``k=None``) or at most ``k`` samples per batch, each of the listed
    ``features`` may be replaced by any value in ``[low, high]`` (e.g. an imputation or sentinel
    range); the others keep their values.

    Interval enclosure: the listed columns in ``[min(clean, low), max(clean, high)]``. MIP
    encoding: where the clean value lies in ``[low, high]`` the hull is the set itself (a free
    variable, gated by the pick binary); otherwise one binary m per feature,
    ``x = clean (1 - m) + u`` with ``low m <= u <= high m`` (``{clean} ∪ [low, high]``, a
    non-convex set, exactly). With a budget ``m <= p``."""

    def __init__(self, features, low: float, high: float, k: int | None = None) -> None:
        self.features = _check_index_list(features, "MissingValues: features")
        self.low = _check_finite(low, "MissingValues: low")
        self.high = _check_finite(high, "MissingValues: high")
        if not self.low <= self.high:
            raise ValueError(f"MissingValues: need low <= high, got low={low!r}, high={high!r}")
        _check_k(k, "MissingValues")
        self.k = k

    def validate(self, info):
        super().validate(info)
        self._check_columns(self.features, info, "features")

    def poisoned_box(self, X):
        return self._widen_columns(X, self.features, self.low, self.high)

    def encode_x(self, enc, X, i, pick):
        row = _row(X, i)
        x = enc.const(row)
        if pick is False:
            return x
        for f in self.features:
            c = float(row[f])
            if self.low <= c <= self.high:
                v = gated_box(enc, [self.low], [self.high], [c], pick, name=f"x{i}_{f}")
                x.idx[f], x.lo[f], x.hi[f] = v.idx[0], v.lo[0], v.hi[0]
                continue
            m = enc.binaries(1, [0.0], name=f"missing{i}_{f}")
            u = enc.var([min(self.low, 0.0)], [max(self.high, 0.0)], [0.0], name=f"fill{i}_{f}")
            xv = enc.var([min(c, self.low)], [max(c, self.high)], [c], name=f"x{i}_{f}")
            mi, ui, xi = int(m.idx[0]), int(u.idx[0]), int(xv.idx[0])
            enc.b.add_row([ui, mi], [1.0, -self.low], lo=0.0)  # u >= low m
            enc.b.add_row([ui, mi], [1.0, -self.high], hi=0.0)  # u <= high m
            enc.b.add_eq([xi, mi, ui], [1.0, c, -1.0], c)  # x = c (1 - m) + u
            if pick is not True:
                enc.b.add_row([mi, pick], [1.0, -1.0], hi=0.0)  # m <= p
            x.idx[f], x.lo[f], x.hi[f] = xi, xv.lo[0], xv.hi[0]
        return x

    def describe(self):
        return {"type": "missing_values", "features": self.features, "low": self.low, "high": self.high, "k": self.k}


class L0Features(_FeatureThreat):
    """Sparse feature perturbations: in every sample (``k=None``) or at most ``k`` samples per
    batch at most ``s`` features change, each by at most ``eps``.

    Interval enclosure: the l-infinity box ``X ± eps`` (the hull of the set, as each single
    feature may use the full ``eps``). MIP encoding: one binary ``b_f`` per feature ("changed"),
    ``|x_f - X_f| <= eps b_f`` and ``sum_f b_f <= s`` (``<= s p`` and ``b_f <= p`` with a pick
    binary p): exactly the threat's set."""

    def __init__(self, eps: float, s: int, k: int | None = None) -> None:
        self.eps = _check_nonneg(eps, "L0Features: eps")
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ValueError(f"L0Features: s (features changed per sample) must be an integer >= 1, got {s!r}")
        _check_k(k, "L0Features")
        self.s, self.k = s, k

    def poisoned_box(self, X):
        return Interval(X - self.eps, X + self.eps, check=False)

    def encode_x(self, enc, X, i, pick):
        row = _row(X, i)
        d = row.shape[0]
        if pick is False or self.eps == 0:
            return enc.const(row)
        if self.s >= d:  # no sparsity: the box itself
            return gated_box(enc, row - self.eps, row + self.eps, row, pick, name=f"x{i}")
        x = enc.var(row - self.eps, row + self.eps, row, name=f"x{i}")
        b = enc.binaries(d, np.zeros(d), name=f"changed{i}")
        for f in range(d):
            enc.b.add_row([x.idx[f], b.idx[f]], [1.0, -self.eps], hi=row[f])  # x - X <= eps b
            enc.b.add_row([x.idx[f], b.idx[f]], [1.0, self.eps], lo=row[f])  # X - x <= eps b
            if pick is not True:
                enc.b.add_row([b.idx[f], pick], [1.0, -1.0], hi=0.0)  # b_f <= p
        if pick is True:
            enc.b.add_row(b.idx, np.ones(d), hi=float(self.s))
        else:
            enc.b.add_row(np.concatenate([b.idx, [pick]]), np.concatenate([np.ones(d), [-float(self.s)]]), hi=0.0)
        return x

    def describe(self):
        return {"type": "l0_features", "eps": self.eps, "s": self.s, "k": self.k}


class L1Features(_FeatureThreat):
    """In every sample (``k=None``) or at most ``k`` samples per batch the features change by a
    total absolute amount of at most ``eps1`` (``||x - X||_1 <= eps1``).

    Interval enclosure: the box ``X ± eps1``. MIP encoding: ``x = X + d⁺ - d⁻`` with
    ``0 <= d± <= eps1`` and ``sum(d⁺ + d⁻) <= eps1`` (``<= eps1 p`` with a pick binary): the exact
    linear description of the l1 ball (its projection onto x is the ball)."""

    def __init__(self, eps1: float, k: int | None = None) -> None:
        self.eps1 = _check_nonneg(eps1, "L1Features: eps1")
        _check_k(k, "L1Features")
        self.k = k

    def poisoned_box(self, X):
        return Interval(X - self.eps1, X + self.eps1, check=False)

    def encode_x(self, enc, X, i, pick):
        row = _row(X, i)
        d = row.shape[0]
        e = self.eps1
        if pick is False or e == 0:
            return enc.const(row)
        x = enc.var(row - e, row + e, row, name=f"x{i}")
        dp = enc.var(np.zeros(d), np.full(d, e), np.zeros(d), name=f"up{i}")
        dm = enc.var(np.zeros(d), np.full(d, e), np.zeros(d), name=f"down{i}")
        for f in range(d):
            enc.b.add_eq([x.idx[f], dp.idx[f], dm.idx[f]], [1.0, -1.0, 1.0], row[f])
        idx = np.concatenate([dp.idx, dm.idx])
        if pick is True:
            enc.b.add_row(idx, np.ones(2 * d), hi=e)
        else:
            enc.b.add_row(np.concatenate([idx, [pick]]), np.concatenate([np.ones(2 * d), [-e]]), hi=0.0)
        return x

    def describe(self):
        return {"type": "l1_features", "eps1": self.eps1, "k": self.k}


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
    (a sound relaxation of one pattern for the whole run). See :func:`mibpcert.backdoor.backdoor_certificate`
    for the matching test-time certificate."""

    def __init__(self, mask, eps: float, k: int | None = None, target: int | None = None) -> None:
        self.mask = _check_mask(mask)
        self.eps = _check_nonneg(eps, "SharedTrigger: eps")
        _check_k(k, "SharedTrigger")
        if target is not None and (isinstance(target, bool) or not isinstance(target, int) or target < 0):
            raise ValueError(f"SharedTrigger: target must be a non-negative class index or None, got {target!r}")
        self.k, self.target = k, target

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

    def _mask(self, X):
        return torch.tensor(self.mask, dtype=X.dtype, device=X.device)

    def trigger_box(self, X: torch.Tensor) -> Interval:
        """Every input ``X + delta`` with ``delta`` on the mask and ``|delta| <= eps``."""
        m = self._mask(X) * self.eps
        return Interval(X - m, X + m, check=False)

    def region(self, X, y, info):
        box = self.trigger_box(X)
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
            return enc.const(_row(X, i)), clean_label_vec(enc, region, y, i, task)
        feats = region.poisoned_features
        x = enc.var_or_const(as_array(feats.lo[i]), as_array(feats.hi[i]), _row(X, i), name=f"x{i}")
        B = X.shape[0]
        if self.target is not None and region.k is not None and region.k < B:
            # a picked sample of a budget below the batch carries the target label exactly

            allowed = np.zeros(region.poisoned_labels.shape[1], dtype=bool)
            allowed[self.target] = True
            return x, label_vec(enc, allowed, _clean_label(y, i, task), task, name=f"y{i}")
        return x, label_vec(enc, _labels_of(region.poisoned_labels, i, task), _clean_label(y, i, task), task, name=f"y{i}")

    def mip_batch(self, enc, region, X, y, task):
        B = X.shape[0]
        picks = pick_binaries(enc, B, region.k, force=True)
        F = self.features
        e = self.eps
        delta = enc.var(np.full(len(F), -e), np.full(len(F), e), np.zeros(len(F)), name="trigger") if e > 0 else None
        xs, labs = [], []
        for i in range(B):
            p = picks[i]
            row = _row(X, i)
            x = enc.const(row)
            if delta is not None:
                xv = enc.var(row[F] - e, row[F] + e, row[F], name=f"x{i}")
                for t, f in enumerate(F):
                    xi, di = int(xv.idx[t]), int(delta.idx[t])
                    # x - X = p delta: |x - X| <= eps p and |x - X - delta| <= eps (1 - p)
                    enc.b.add_row([xi, p], [1.0, -e], hi=row[f])
                    enc.b.add_row([xi, p], [1.0, e], lo=row[f])
                    enc.b.add_row([xi, di, p], [1.0, -1.0, e], hi=row[f] + e)
                    enc.b.add_row([xi, di, p], [1.0, -1.0, -e], lo=row[f] - e)
                x.idx[F], x.lo[F], x.hi[F] = xv.idx, xv.lo, xv.hi
            xs.append(x)
            if self.target is None or int(y[i]) == self.target:
                labs.append(clean_label_vec(enc, region, y, i, task))  # a single allowed label: constant
                continue
            c = int(y[i])
            pv = Vec(np.array([p], dtype=np.int64), np.zeros(1), np.ones(1), np.zeros(1))
            if task == "binary":
                if self.target == 1:  # y = p
                    labs.append(pv)
                else:  # y = 1 - p
                    yv = enc.binaries(1, [1.0], name=f"y{i}")
                    enc.b.add_eq([int(yv.idx[0]), p], [1.0, 1.0], 1.0)
                    labs.append(yv)
                continue
            K = region.labels.shape[1]
            lab = enc.const(np.eye(K)[c])
            keep = enc.binaries(1, [1.0], name=f"y{i}_clean")
            enc.b.add_eq([int(keep.idx[0]), p], [1.0, 1.0], 1.0)  # clean entry = 1 - p
            lab.idx[c], lab.lo[c], lab.hi[c] = keep.idx[0], 0.0, 1.0
            lab.idx[self.target], lab.lo[self.target], lab.hi[self.target] = p, 0.0, 1.0
            labs.append(lab)
        return xs, labs

    def describe(self):
        return {"type": "shared_trigger", "mask": [int(m) for m in self.mask], "eps": self.eps, "k": self.k, "target": self.target}


# =============================================================================================
# combinations: union of threats, a budget over the whole training set
# =============================================================================================
@dataclass
class CompositeRegion(Region):
    """A region that also keeps the regions of its parts (for the exact MIP encoding of a union)."""

    parts: list = field(default_factory=list)  # [(threat, Region)]


def _hull_labels(a, b):
    if isinstance(a, Interval):
        return a.hull(b)
    return a | b


def _uses_region_encoding(t: Threat) -> bool:
    """Whether the threat's MIP encoding is the generic box-and-label-set encoding of its region."""
    return type(t).mip_sample is Threat.mip_sample and type(t).mip_batch is Threat.mip_batch


class Union(Threat):
    """The attacker uses one of several threats (``Union(a, b)``, or more parts): the poisoned
    data set is one that ``a`` allows or one that ``b`` allows.

    Interval enclosure: the hull of the parts' regions (features and label sets), with budget
    ``max(k)`` (``None`` if a part has none): whichever part is used, its picked samples lie in
    the hull of the poisoned regions and the others in the hull of the base regions. MIP
    encoding, exact: a one-hot selector over the parts (one per sample program in ``per_sample``,
    one per batch in ``joint``). Parts with the generic region encoding (boxes and label sets)
    get gated bounds ``sum_t s_t lo_t <= x <= sum_t s_t hi_t`` (the hull of two boxes would not
    be exact); structured parts are encoded each by its own encoding and the sample is the
    selected part's sample (big-M selection). The choice is made per batch, which relaxes a choice
    made once for the whole training set."""

    def __init__(self, *parts: Threat) -> None:
        if len(parts) == 1 and isinstance(parts[0], (list, tuple)):
            parts = tuple(parts[0])
        if len(parts) < 2:
            raise ValueError(f"Union needs at least two threats, got {len(parts)}")
        for p in parts:
            if not isinstance(p, Threat):
                raise TypeError(f"Union: every part must be a threat model, got {type(p).__name__}")
        self.parts = list(parts)
        ks = [p.k for p in parts]
        self.k = None if any(k is None for k in ks) else max(ks)

    @property
    def a(self) -> Threat:
        return self.parts[0]

    @property
    def b(self) -> Threat:
        return self.parts[1]

    def validate(self, info):
        for p in self.parts:
            p.validate(info)

    def region(self, X, y, info):
        rs = [p.region(X, y, info) for p in self.parts]
        feats, labs, pf, pl = rs[0].features, rs[0].labels, rs[0].poisoned_features, rs[0].poisoned_labels
        for r in rs[1:]:
            feats, pf = feats.hull(r.features), pf.hull(r.poisoned_features)
            labs, pl = _hull_labels(labs, r.labels), _hull_labels(pl, r.poisoned_labels)
        ks = [r.k for r in rs]
        k = None if any(kk is None for kk in ks) else max(ks)
        return CompositeRegion(feats, labs, pf, pl, k, parts=list(zip(self.parts, rs)))

    def _parts_of(self, region):
        if not isinstance(region, CompositeRegion) or len(region.parts) != len(self.parts):
            raise ValueError("Union: the region was not built by this union's region()")
        return region.parts

    def mip_sample(self, enc, region, X, y, i, picked, task):
        parts = self._parts_of(region)
        sel = one_hot_selector(enc, len(parts), name=f"choose{i}")
        if all(_uses_region_encoding(t) for t, _ in parts):
            return box_union_sample(enc, [r for _, r in parts], X, y, i, picked, task, sel)
        enc_parts = [t.mip_sample(enc, r, X, y, i, picked, task) for t, r in parts]
        x = select(enc, sel, [e[0] for e in enc_parts], name=f"x{i}", binary=False)
        lab = select(enc, sel, [e[1] for e in enc_parts], name=f"y{i}")
        return x, lab

    def mip_batch(self, enc, region, X, y, task):
        parts = self._parts_of(region)
        sel = one_hot_selector(enc, len(parts), name="choose")
        encs = [t.mip_batch(enc, r, X, y, task) for t, r in parts]
        B = X.shape[0]
        xs = [select(enc, sel, [e[0][i] for e in encs], name=f"x{i}", binary=False) for i in range(B)]
        labs = [select(enc, sel, [e[1][i] for e in encs], name=f"y{i}") for i in range(B)]
        return xs, labs

    def describe(self):
        return {"type": "union", "parts": [p.describe() for p in self.parts]}


def _rebudget(t: Threat, k: int) -> Threat:
    """A copy of ``t`` whose per-batch budget is ``min(own k, k)``."""
    if isinstance(t, GlobalBudget):
        raise ValueError("GlobalBudget: nested global budgets are not supported")
    if isinstance(t, Both):
        return Both(_rebudget(t.a, k), _rebudget(t.b, k), paired=t.paired)
    if isinstance(t, Union):
        return Union(*[_rebudget(p, k) for p in t.parts])
    c = copy.copy(t)
    c.k = k if t.k is None else min(t.k, k)
    return c


class GlobalBudget(Threat):
    """At most ``k`` poisoned samples in the whole training set (rather than per batch); what a
    poisoned sample may become is given by ``threat`` (its own per-batch ``k``, if any, still
    applies on top).

    Sound per-batch encoding: every sample lies in exactly one batch per epoch, so a batch of B
    samples holds at most ``min(k, B)`` poisoned samples; each step is bounded with that
    per-batch budget (interval and MIP alike). This is looser than tracking the budget across
    steps (the batches of an epoch together hold at most k poisoned samples, and the same samples
    stay poisoned in every epoch); a tighter encoding would carry one box per (step, budget
    used so far) pair, or bound several steps in one program."""

    def __init__(self, threat: Threat, k: int) -> None:
        if not isinstance(threat, Threat):
            raise TypeError(f"GlobalBudget: threat must be a threat model, got {type(threat).__name__}")
        if k is None:
            raise ValueError("GlobalBudget: k must be a non-negative integer (the number of poisoned samples in the training set)")
        _check_k(k, "GlobalBudget")
        _rebudget(threat, k)  # fails early for unsupported inner threats
        self.threat, self.k = threat, k

    def inner(self, B: int) -> Threat:
        """The threat with its per-batch budget for a batch of B samples."""
        return _rebudget(self.threat, min(self.k, B))

    def validate(self, info):
        if getattr(self.threat, "k", None) is not None and not isinstance(self.threat, (Both, Union)):
            self.threat.validate(info)  # its own per-batch budget must fit the batch
        self.inner(info.batch_size).validate(info)

    def region(self, X, y, info):
        return self.inner(X.shape[0]).region(X, y, info)

    def mip_sample(self, enc, region, X, y, i, picked, task):
        return self.inner(X.shape[0]).mip_sample(enc, region, X, y, i, picked, task)

    def mip_batch(self, enc, region, X, y, task):
        return self.inner(X.shape[0]).mip_batch(enc, region, X, y, task)

    def describe(self):
        return {"type": "global_budget", "k": self.k, "threat": self.threat.describe()}


_REGISTRY = {
    "linf_features": lambda d: LinfFeatures(d["eps"], d.get("k"), d.get("domain")),
    "label_flip": lambda d: LabelFlip(d.get("k"), d.get("to")),
    "label_noise": lambda d: LabelNoise(d.get("k"), d["gamma"]),
    "feature_values": lambda d: FeatureValues(d["feature"], d["values"], d.get("k")),
    "one_hot_feature": lambda d: OneHotFeature(d["columns"], d.get("k")),
    "missing_values": lambda d: MissingValues(d["features"], d["low"], d["high"], d.get("k")),
    "l0_features": lambda d: L0Features(d["eps"], d["s"], d.get("k")),
    "l1_features": lambda d: L1Features(d["eps1"], d.get("k")),
    "shared_trigger": lambda d: SharedTrigger(d["mask"], d["eps"], d.get("k"), d.get("target")),
    "union": lambda d: Union(*[from_config(_nested(p, "threat.parts")) for p in _union_parts(d)]),
    "global_budget": lambda d: GlobalBudget(from_config(_nested(d["threat"], "threat.threat")), d["k"]),
}


def _union_parts(d: dict) -> list:
    parts = d["parts"]
    if not isinstance(parts, list) or len(parts) < 2:
        raise ValueError("threat type 'union' needs 'parts' with at least two threat tables ([[threat.parts]])")
    return parts


def _nested(d, where: str) -> dict:
    """A nested threat table, with its keys checked like the top-level one."""
    if not isinstance(d, dict):
        raise ValueError(f"[{where}] must be a threat table")
    check_threat_table(d, where)
    return d


def check_keys(table: str, d: dict, allowed, what: str = "") -> None:
    """Refuse a key of config table ``table`` that is not in ``allowed``."""
    for k in d:
        if k not in allowed:
            raise ValueError(f"unknown key {k!r} in [{table}]{what}; allowed keys: {', '.join(sorted(allowed))}")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def threat_keys() -> dict[str, list[str] | None]:
    """For every threat ``type`` of the config registry, the keys its table accepts (``None`` if
    unknown). The keys are read from the constructor of the threat class whose snake-case name is
    the type (``linf_features`` -> ``LinfFeatures``)."""
    classes = {_snake(c.__name__): c for c in _all_subclasses(Threat)}
    out: dict[str, list[str] | None] = {}
    for kind in _REGISTRY:
        cls = classes.get(kind)
        out[kind] = None if cls is None else ["type"] + [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    out["both"] = ["type", "paired", "parts"]
    return out


def _all_subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_all_subclasses(sub))]


def check_threat_table(d: Any, where: str = "threat") -> None:
    """Check the structure and keys of a threat config table (values are checked when the threat
    is built, by its constructor)."""
    if not isinstance(d, dict):
        raise ValueError(f"[{where}] must be a table")
    if "type" not in d:
        raise ValueError(f"[{where}] needs a 'type' key")
    keys = threat_keys()
    kind = d["type"]
    if kind not in keys:
        raise ValueError(f"unknown threat type {kind!r}; choose one of {', '.join(sorted(keys))}")
    if keys[kind] is not None:
        check_keys(where, d, keys[kind], f" for threat type {kind!r}")
    if kind == "both":
        parts = d.get("parts")
        if not isinstance(parts, list) or len(parts) != 2:
            raise ValueError("threat type 'both' needs 'parts' with exactly two threat tables ([[threat.parts]])")
        for p in parts:
            check_threat_table(p, "threat.parts")


def from_config(d: dict) -> Threat:
    """Build a threat from a config table such as ``{"type": "linf_features", "eps": 0.01}``;
    ``{"type": "both", "paired": false, "parts": [{...}, {...}]}`` combines two."""
    if not isinstance(d, dict) or "type" not in d:
        raise ValueError("a threat config needs a 'type' key")
    kind = d["type"]
    if kind == "both":
        parts = d.get("parts")
        if not isinstance(parts, list) or len(parts) != 2:
            raise ValueError("threat type 'both' needs 'parts' with exactly two threat tables")
        return Both(from_config(parts[0]), from_config(parts[1]), paired=d.get("paired", False))
    if kind not in _REGISTRY:
        raise ValueError(f"unknown threat type {kind!r}; choose one of {', '.join(sorted(_REGISTRY) + ['both'])}")
    try:
        return _REGISTRY[kind](d)
    except KeyError as e:
        raise ValueError(f"threat {kind!r} is missing the parameter {e.args[0]!r}") from None
