"""The loss interface: everything the certification paths need to know of a training loss.

A :class:`Loss` holds, in one place, the concrete per-sample value (the nominal run and the
attacks in the tests train on it), sound interval bounds on the loss and on d loss / d logits
(the interval path), the exact or relaxed MIP encoding of d loss / d logits (the MIBP path), the
task it serves and the model output width it needs, and the checks of the labels it accepts.
Task classes (:class:`BinaryLoss`, :class:`MulticlassLoss`, :class:`RegressionLoss`) hold what is
shared by the losses of one task.

Labels in the bounded versions are *sets*: a boolean mask (B, K) of the classes a sample may carry
(classification) or an Interval (B, C) of targets (regression); bounds hold for every logit vector
in the box and every allowed label.
"""
from __future__ import annotations

import numpy as np
import torch

from ..interval.affine import Affine
from ..interval.tensor import Interval, hull_where
from ..ir.encoder import AffineSum, Encoder, Vec


class Loss:
    """Base class; see the module docstring. Subclasses set ``name`` and implement the rest."""

    name: str
    task: str  # "binary" | "multiclass" | "regression"

    def output_width(self, num_classes: int | None, target_columns: int) -> int:
        """Model outputs needed for ``num_classes`` classes or ``target_columns`` targets."""
        raise NotImplementedError

    def value(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of every sample (B,); a batch's training objective is the mean."""
        raise NotImplementedError

    def mean_value(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """A batch's training objective, the mean of :meth:`value` (what the nominal run trains
        on). Losses that torch has compute it as torch's ``reduction="mean"`` does, so that the
        nominal run is the plain torch loop with that loss, bit for bit."""
        return self.value(logits, y).mean()

    def interval_bounds(self, logits: Interval, labels) -> tuple[Interval, Interval]:
        """Bounds (B,) on the loss and (B, C) on d loss / d logits over the logit box and labels."""
        raise NotImplementedError

    def grad_bounds(self, logits: Interval, labels) -> Interval:
        """Bounds (B, C) on d loss / d logits alone over the logit box and labels (what the
        interval step needs: no loss values), the same bounds, bit for bit, as the gradient part
        of :meth:`interval_bounds`. Subclasses override it with the gradient's own computation."""
        return self.interval_bounds(logits, labels)[1]

    def bounds(self, logits: Interval, labels) -> tuple[Interval, Interval]:
        """:meth:`interval_bounds` with the loss clamped to [0, inf): every loss here is
        non-negative, and outward rounding of a huge box can push a lower bound below that."""
        loss, grad = self.interval_bounds(logits, labels)
        return Interval(loss.lo.clamp_min(0), loss.hi.clamp_min(0), check=False), grad

    def affine_grad(self, z: Affine, labels) -> Affine:
        """d loss / d logits (B, C) as affine forms over the logits' symbols, for logit forms ``z``
        and every allowed label. Default: the interval bounds of the gradient over the logits'
        range, as independent terms (sound for every loss; losses whose gradient is close to
        linear in the logits override it to keep the relation)."""
        return Affine.from_interval(self.grad_bounds(z.bounds(), labels), z.m)

    def encode_grad(self, enc: Encoder, z: Vec, label: Vec, bounds, pieces: int) -> Vec:
        """d loss / d logits of one sample for logits ``z`` and label encoding ``label`` (binary:
        the 0/1 label; multiclass: one-hot; regression: targets). ``bounds``: sound interval
        bounds on the result, or None; ``pieces``: segments of piecewise-linear enclosures."""
        raise NotImplementedError

    def check_labels(self, y: torch.Tensor, outputs: int) -> tuple[torch.Tensor, int | None]:
        """Raise ``ValueError`` unless ``y`` (already on the run's dtype) fits this loss and a
        model with ``outputs`` outputs; returns the labels in the shape the loss reads and the
        number of classes (None for regression)."""
        raise NotImplementedError


class BinaryLoss(Loss):
    """Binary classification: one logit, labels in {0, 1}."""

    task = "binary"

    def output_width(self, num_classes, target_columns):
        return 1

    def check_labels(self, y, outputs):
        if outputs != 1:
            raise ValueError(f"loss {self.name!r} needs a model with 1 output logit, the model has {outputs}")
        if y.dim() != 1 or not bool(((y == 0) | (y == 1)).all()):
            raise ValueError(f"loss {self.name!r} needs labels of shape (N,) with values 0 or 1")
        return y, 2

    def check_logits(self, logits: Interval, mask: torch.Tensor) -> None:
        if logits.shape[1] != 1:
            raise ValueError(f"loss {self.name!r} needs a model with one output logit, got {logits.shape[1]}")
        if mask.shape != (logits.shape[0], 2):
            raise ValueError(f"loss {self.name!r} needs a label mask of shape (B, 2), got {tuple(mask.shape)}")


class MulticlassLoss(Loss):
    """Multi-class classification: one logit per class, integer labels."""

    task = "multiclass"

    def output_width(self, num_classes, target_columns):
        if not num_classes:
            raise ValueError(f"loss {self.name!r} needs a classification data set")
        return int(num_classes)

    def check_labels(self, y, outputs):
        if outputs < 2:
            raise ValueError(f"loss {self.name!r} needs a model with at least 2 output logits")
        if y.dim() != 1 or not bool((y == y.round()).all()) or bool((y < 0).any()) or bool((y >= outputs).any()):
            raise ValueError(f"loss {self.name!r} needs integer class labels of shape (N,) in [0, {outputs - 1}]")
        return y, outputs


class RegressionLoss(Loss):
    """Regression: one output per target column."""

    task = "regression"

    def output_width(self, num_classes, target_columns):
        return target_columns

    def check_labels(self, y, outputs):
        if y.dim() == 1 and outputs == 1:
            y = y.unsqueeze(1)
        if y.dim() != 2 or y.shape[1] != outputs:
            raise ValueError(f"loss {self.name!r} needs targets of shape (N, {outputs}), got {tuple(y.shape)}")
        return y, None


_CLASSES: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def label_mask(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot boolean mask (B, K) of the clean labels ``y`` (B,): integers in [0, K) of any
    dtype, as :meth:`Loss.check_labels` accepts them (another value allows no class). One
    comparison with the class numbers, no host synchronisation (``one_hot`` checks the range)."""
    key = (num_classes, y.dtype, y.device)
    classes = _CLASSES.get(key)
    if classes is None:
        classes = _CLASSES[key] = torch.arange(num_classes, dtype=y.dtype, device=y.device)
    return y.unsqueeze(1) == classes


def over_labels(mask: torch.Tensor, per_label: list[Interval]) -> Interval:
    """The hull over the allowed labels (mask (B, K)) of per-label bounds (B, ...): min of the
    lower bounds and max of the upper bounds of the labels a sample may carry."""
    ndim = per_label[0].ndim
    return hull_where(per_label, mask if ndim == 1 else mask.reshape((mask.shape[0],) + (1,) * (ndim - 1) + (-1,)))


def encode_difference(enc: Encoder, a: Vec, b: Vec, bounds, name: str) -> Vec:
    """``a - b`` element-wise as new variables."""
    n = len(a)
    rows = np.concatenate([np.arange(n)[a.is_var], np.arange(n)[b.is_var]])
    vars_ = np.concatenate([a.idx[a.is_var], b.idx[b.is_var]])
    coefs = np.concatenate([np.ones(int(a.is_var.sum())), -np.ones(int(b.is_var.sum()))])
    const = np.where(a.is_var, 0, a.lo) - np.where(b.is_var, 0, b.lo)
    return enc.affine(AffineSum(rows, vars_, coefs, const, a.lo - b.hi, a.hi - b.lo, a.start - b.start), bounds, name)
