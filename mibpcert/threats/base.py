"""What every threat model provides, and the region it describes for a batch.

A threat is one object used by both certification paths: :meth:`Threat.region` gives the
interval path an enclosure of the poisoned batch, and :meth:`Threat.mip_sample` /
:meth:`Threat.mip_batch` write the same set exactly into a program through the encoding API of
:mod:`mibpcert.ir.inputs`. Keeping the two in one class is what keeps them describing the same
attacker.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..interval.tensor import Interval
from ..ir.encoder import Encoder, Vec
from ..ir.inputs import clean_label_vec, pick_binaries, region_batch, region_sample
from ..losses import label_mask


@dataclass
class Region:
    """A batch's enclosure: ``features`` / ``labels`` hold what every sample may become,
    ``poisoned_features`` / ``poisoned_labels`` what a sample the attacker picks may become (they
    contain the first pair), ``k`` how many samples of the batch may be picked (None: every one).
    Labels are a boolean mask (B, K) of allowed classes, or an Interval of targets (regression)."""

    features: Interval
    labels: Any
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
        return Interval.point(y.reshape(y.shape[0], -1))
    return label_mask(y, info.num_classes)


class Threat:
    """Base class. Subclasses implement :meth:`region` and :meth:`describe`; the MIP encoding
    defaults to the region's boxes and label sets, which is exact for box-and-label-set threats."""

    k: int | None = None

    def validate(self, info: TaskInfo) -> None:
        """Raise ``ValueError`` when the threat does not fit the data or the batch size."""
        if self.k is not None and self.k > info.batch_size:
            raise ValueError(
                f"{type(self).__name__}: k={self.k} poisoned samples per batch is larger than the batch size {info.batch_size}"
            )

    def region(self, X: torch.Tensor, y: torch.Tensor, info: TaskInfo) -> Region:
        """The batch's :class:`Region`: a function of ``(X, y, info)`` alone, never changed
        afterwards (the training loop reuses a batch's region in every epoch)."""
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError

    def mip_sample(self, enc: Encoder, region: Region, X, y, i: int, picked: bool, task: str) -> tuple[Vec, Vec]:
        """Sample i of the batch in its poisoned (``picked``) or base region: its input and label
        encodings."""
        return region_sample(enc, region, X, y, i, picked, task)

    def mip_batch(self, enc: Encoder, region: Region, X, y, task: str) -> tuple[list[Vec], list[Vec]]:
        """The whole batch with the budget: at most k samples leave their base region."""
        return region_batch(enc, region, X, y, task)


def uses_region_encoding(t: Threat) -> bool:
    """Whether the threat's MIP encoding is the generic box-and-label-set encoding of its region."""
    return type(t).mip_sample is Threat.mip_sample and type(t).mip_batch is Threat.mip_batch


class FeatureThreat(Threat):
    """Threats that change only the features of a picked sample, within a set that contains the
    clean sample (so the poisoned region contains the base region); labels stay clean and
    ``k=None`` lets every sample change. Subclasses give the interval box of a picked sample
    (:meth:`poisoned_box`) and its exact encoding (:meth:`encode_x`)."""

    def poisoned_box(self, X: torch.Tensor) -> Interval:
        raise NotImplementedError

    def encode_x(self, enc: Encoder, X, i: int, pick) -> Vec:
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

    def check_columns(self, cols: list[int], info: TaskInfo, what: str) -> None:
        bad = [c for c in cols if c >= info.num_features]
        if bad:
            raise ValueError(f"{type(self).__name__}: {what} {bad} out of range for {info.num_features} features")

    @staticmethod
    def widen_columns(X: torch.Tensor, cols: list[int], low: float, high: float) -> Interval:
        """Box of the samples with columns ``cols`` free in ``[low, high]`` (and still allowed
        to keep their clean value): ``[min(clean, low), max(clean, high)]`` there, clean elsewhere."""
        lo, hi = X.clone(), X.clone()
        idx = torch.tensor(cols, device=X.device)
        lo[:, idx] = torch.clamp(X[:, idx], max=low)
        hi[:, idx] = torch.clamp(X[:, idx], min=high)
        return Interval(lo, hi, check=False)
