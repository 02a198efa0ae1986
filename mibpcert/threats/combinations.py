"""Combinations of threats: both budgets at once (:class:`Both`), one threat out of several
(:class:`Union`), and a budget over the whole training set instead of per batch
(:class:`GlobalBudget`)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from ..interval.tensor import Interval, rounding_enabled
from ..ir.inputs import box_union_sample, one_hot_selector, select
from .base import Region, Threat, clean_labels, uses_region_encoding
from .checks import check_flag, check_k


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


def _union_labels(a, b, y, info):
    """Label set when both label changes may apply: union of masks; for regression targets the
    offsets of both add up (exact when one part leaves the targets unchanged)."""
    if isinstance(a, Interval):
        return _combine_features(clean_labels(y, info).lo, a, b)
    return a | b


def _hull_labels(a, b):
    return a.hull(b) if isinstance(a, Interval) else a | b


class Both(Threat):
    """The attacker uses both budgets. ``paired=True``: the same samples (at most max(k_a, k_b))
    carry both changes; ``paired=False``: the two budgets may hit different samples, so up to
    k_a + k_b samples change and, soundly, each of them may carry both changes. A part with
    ``k=None`` touches every sample and goes into the region of every sample."""

    def __init__(self, a: Threat, b: Threat, paired: bool = False) -> None:
        if not isinstance(a, Threat) or not isinstance(b, Threat):
            raise TypeError("Both(a, b): a and b must be threat models")
        self.a, self.b, self.paired = a, b, check_flag(paired, "Both: paired")
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
        return Region(
            _combine_features(X, ra.features, rb.features),
            _union_labels(ra.labels, rb.labels, y, info),
            _combine_features(X, ra.poisoned_features, rb.poisoned_features),
            _union_labels(ra.poisoned_labels, rb.poisoned_labels, y, info),
            self.k,
        )

    def describe(self):
        return {"type": "both", "paired": self.paired, "parts": [self.a.describe(), self.b.describe()]}


@dataclass
class CompositeRegion(Region):
    """A region that also keeps the regions of its parts (for the exact MIP encoding of a union)."""

    parts: list = field(default_factory=list)  # [(threat, Region)]


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
        if all(uses_region_encoding(t) for t, _ in parts):
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
        check_k(k, "GlobalBudget")
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
