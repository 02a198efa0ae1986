"""Training losses as objects (:class:`~.base.Loss`): concrete value, interval bounds, MIP
gradient encoding, task and output width of each loss in one place. ``TrainConfig.loss`` names
one of :data:`LOSSES`; :func:`get_loss` gives its object."""
from __future__ import annotations

import torch

from ..interval.tensor import Interval
from .base import BinaryLoss, Loss, MulticlassLoss, RegressionLoss, label_mask
from .binary import BCE, Hinge
from .multiclass import CrossEntropy, log_softmax_bounds
from .regression import MSE

_LOSSES: dict[str, Loss] = {loss.name: loss for loss in (BCE(), CrossEntropy(), MSE(), Hinge())}
LOSSES = tuple(_LOSSES)


def get_loss(name: str) -> Loss:
    """The loss named ``name``; ``ValueError`` for an unknown name."""
    if not isinstance(name, str) or name not in _LOSSES:
        raise ValueError(f"unsupported loss {name!r}; choose one of {', '.join(LOSSES)}")
    return _LOSSES[name]


def as_loss(loss: "str | Loss") -> Loss:
    """A loss object from a loss or its name."""
    return loss if isinstance(loss, Loss) else get_loss(loss)


def per_sample_loss(name: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The concrete loss of every sample (B,)."""
    return get_loss(name).value(logits, y)


def bounded_loss(name: str, logits: Interval, labels) -> tuple[Interval, Interval]:
    """Sound bounds (B,) on the loss and (B, C) on d loss / d logits (:meth:`Loss.bounds`)."""
    return get_loss(name).bounds(logits, labels)


__all__ = ["BCE", "BinaryLoss", "CrossEntropy", "Hinge", "LOSSES", "Loss", "MSE", "MulticlassLoss", "RegressionLoss",
           "as_loss", "bounded_loss", "get_loss", "label_mask", "log_softmax_bounds", "per_sample_loss"]
