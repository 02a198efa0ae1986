"""Value-set feature perturbations: a column replaced by one of finitely many values, a one-hot
categorical group switched to another category, or columns replaced by anything in a range
(missing or imputed values). Each keeps the clean value allowed, so the poisoned region contains
the base region; labels stay clean."""
from __future__ import annotations

import numbers

import numpy as np

from ..ir.inputs import as_array, choose_vector, gated_box
from .base import FeatureThreat
from .checks import check_finite, check_index_list, check_k


class FeatureValues(FeatureThreat):
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
        vals = [check_finite(v, "FeatureValues: every value") for v in values]
        if not vals:
            raise ValueError("FeatureValues: the value set is empty")
        check_k(k, "FeatureValues")
        self.feature, self.values, self.k = feature, sorted(set(vals)), k

    def validate(self, info):
        super().validate(info)
        self.check_columns([self.feature], info, "feature")

    def poisoned_box(self, X):
        return self.widen_columns(X, [self.feature], min(self.values), max(self.values))

    def encode_x(self, enc, X, i, pick):
        row = as_array(X[i])
        x = enc.const(row)
        if pick is False:
            return x
        f = self.feature
        clean = float(row[f])
        cands = sorted(set(self.values) | {clean})
        v = choose_vector(enc, np.array(cands).reshape(-1, 1), cands.index(clean), pick, name=f"x{i}_{f}")
        x.idx[f], x.lo[f], x.hi[f] = v.idx[0], v.lo[0], v.hi[0]
        return x

    def describe(self):
        return {"type": "feature_values", "feature": self.feature, "values": self.values, "k": self.k}


class OneHotFeature(FeatureThreat):
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
            groups = [check_index_list(g, "OneHotFeature: a column group") for g in cols]
        else:
            groups = [check_index_list(cols, "OneHotFeature: columns")]
        flat = [c for g in groups for c in g]
        if len(set(flat)) != len(flat):
            raise ValueError(f"OneHotFeature: the groups overlap: {groups!r}")
        for g in groups:
            if len(g) < 2:
                raise ValueError(f"OneHotFeature: a one-hot group needs at least 2 columns, got {g!r}")
        check_k(k, "OneHotFeature")
        self.groups, self.k = groups, k

    @property
    def columns(self) -> list[int]:
        return [c for g in self.groups for c in g]

    def validate(self, info):
        super().validate(info)
        self.check_columns(self.columns, info, "columns")

    def poisoned_box(self, X):
        return self.widen_columns(X, self.columns, 0.0, 1.0)

    def encode_x(self, enc, X, i, pick):
        row = as_array(X[i])
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
            v = choose_vector(enc, np.stack(cands), c0, pick, name=f"x{i}_g{gi}")
            x.idx[g], x.lo[g], x.hi[g] = v.idx, v.lo, v.hi
        return x

    def describe(self):
        cols = self.groups[0] if len(self.groups) == 1 else self.groups
        return {"type": "one_hot_feature", "columns": cols, "k": self.k}


class MissingValues(FeatureThreat):
    """In every sample (``k=None``) or at most ``k`` samples per batch, each of the listed
    ``features`` may be replaced by any value in ``[low, high]`` (e.g. an imputation or sentinel
    range); the others keep their values.

    Interval enclosure: the listed columns in ``[min(clean, low), max(clean, high)]``. MIP
    encoding: where the clean value lies in ``[low, high]`` the hull is the set itself (a free
    variable, gated by the pick binary); otherwise one binary m per feature,
    ``x = clean (1 - m) + u`` with ``low m <= u <= high m`` (``{clean} ∪ [low, high]``, a
    non-convex set, exactly). With a budget ``m <= p``."""

    def __init__(self, features, low: float, high: float, k: int | None = None) -> None:
        self.features = check_index_list(features, "MissingValues: features")
        self.low = check_finite(low, "MissingValues: low")
        self.high = check_finite(high, "MissingValues: high")
        if not self.low <= self.high:
            raise ValueError(f"MissingValues: need low <= high, got low={low!r}, high={high!r}")
        check_k(k, "MissingValues")
        self.k = k

    def validate(self, info):
        super().validate(info)
        self.check_columns(self.features, info, "features")

    def poisoned_box(self, X):
        return self.widen_columns(X, self.features, self.low, self.high)

    def encode_x(self, enc, X, i, pick):
        row = as_array(X[i])
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
            enc.row([ui, mi], [1.0, -self.low], lo=0.0)  # u >= low m
            enc.row([ui, mi], [1.0, -self.high], hi=0.0)  # u <= high m
            enc.equal([xi, mi, ui], [1.0, c, -1.0], c)  # x = c (1 - m) + u
            if pick is not True:
                enc.row([mi, pick], [1.0, -1.0], hi=0.0)  # m <= p
            x.idx[f], x.lo[f], x.hi[f] = xi, xv.lo[0], xv.hi[0]
        return x

    def describe(self):
        return {"type": "missing_values", "features": self.features, "low": self.low, "high": self.high, "k": self.k}
