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

from dataclasses import dataclass
from typing import Any

import torch

from .interval.tensor import Interval, rounding_enabled

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
    v = float(value)
    if v != v or v < 0 or v == float("inf"):
        raise ValueError(f"{what} must be a finite non-negative number, got {value!r}")
    return v


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
        from .encode.inputs import region_sample

        return region_sample(enc, region, X, y, i, picked, task)

    def mip_batch(self, enc, region: Region, X, y, task: str):
        """Encode a whole batch with the budget: at most k samples leave their base region."""
        from .encode.inputs import region_batch

        return region_batch(enc, region, X, y, task)


class LinfFeatures(Threat):
    """Every sample (``k=None``) or at most ``k`` samples per batch may have every feature moved by
    at most ``eps``; ``domain=(lo, hi)`` optionally clips perturbed features to a valid range."""

    def __init__(self, eps: float, k: int | None = None, domain: tuple[float, float] | None = None) -> None:
        self.eps = _check_nonneg(eps, "LinfFeatures: eps")
        _check_k(k, "LinfFeatures")
        self.k = k
        if domain is not None:
            lo, hi = float(domain[0]), float(domain[1])
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
    set is exactly the threat's, the hull is its sound enclosure."""

    def __init__(self, feature: int, values, k: int | None = None) -> None:
        if isinstance(feature, bool) or not isinstance(feature, int) or feature < 0:
            raise ValueError(f"FeatureValues: feature must be a non-negative column index, got {feature!r}")
        vals = [float(v) for v in values]
        if not vals:
            raise ValueError("FeatureValues: the value set is empty")
        if any(v != v or abs(v) == float("inf") for v in vals):
            raise ValueError("FeatureValues: values must be finite numbers")
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
        import numpy as np

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
        from .encode.inputs import _clean_label, _labels_of, label_vec

        x = self._encode_x(enc, X, i, bool(picked) or self.k is None)
        labels = region.poisoned_labels if picked else region.labels
        return x, label_vec(enc, _labels_of(labels, i, task), _clean_label(y, i, task), task, name=f"y{i}")

    def mip_batch(self, enc, region, X, y, task):
        import numpy as np

        from .encode.inputs import _clean_label, _labels_of, label_vec

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
        self.a, self.b, self.paired = a, b, bool(paired)
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


_REGISTRY = {
    "linf_features": lambda d: LinfFeatures(d["eps"], d.get("k"), tuple(d["domain"]) if d.get("domain") is not None else None),
    "label_flip": lambda d: LabelFlip(d.get("k"), d.get("to")),
    "label_noise": lambda d: LabelNoise(d.get("k"), d["gamma"]),
    "feature_values": lambda d: FeatureValues(d["feature"], d["values"], d.get("k")),
}


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
        return Both(from_config(parts[0]), from_config(parts[1]), paired=bool(d.get("paired", False)))
    if kind not in _REGISTRY:
        raise ValueError(f"unknown threat type {kind!r}; choose one of {', '.join(sorted(_REGISTRY) + ['both'])}")
    try:
        return _REGISTRY[kind](d)
    except KeyError as e:
        raise ValueError(f"threat {kind!r} is missing the parameter {e.args[0]!r}") from None
