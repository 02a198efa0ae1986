"""Label perturbations: class labels flipped (classification) and targets moved (regression).
Features stay clean; the label sets are exact, so the generic region encoding is exact."""
from __future__ import annotations

import torch

from ..interval.tensor import Interval
from .base import Region, Threat, clean_labels
from .checks import check_class, check_k, check_nonneg


class LabelFlip(Threat):
    """At most ``k`` labels per batch flipped to any other class, or only to class ``to``."""

    def __init__(self, k: int | None, to: int | None = None) -> None:
        check_k(k, "LabelFlip")
        self.k = k
        self.to = check_class(to, "LabelFlip: target class 'to'")

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
        check_k(k, "LabelNoise")
        self.k = k
        self.gamma = check_nonneg(gamma, "LabelNoise: gamma")

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
