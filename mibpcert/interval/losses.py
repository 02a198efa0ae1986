"""Bounded losses: bounds on the per-sample loss and on d loss / d logits.

Each function takes interval logits (B, C) and the *set* of labels a sample may carry (a boolean
mask (B, K) over classes for classification, an interval (B, C) of targets for regression) and
returns ``(loss, grad)``: an interval (B,) containing the loss and an interval (B, C) containing its
gradient with respect to the logits, for every logit vector in the box and every allowed label.
Each bound uses monotonicity of the loss (or its gradient) in every logit, so it is attained at a
corner of the box; the minimum/maximum over the label set is taken last. Binary losses ("bce",
"hinge") use one logit and labels in {0, 1}; "ce" uses C logits; "mse" compares C outputs with C
targets and averages over outputs, matching torch's ``reduction="mean"`` per sample.

Concrete (torch) versions of the same losses live here too, so the nominal run, the attacks in the
tests and the bounds all mean the same function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .tensor import Interval, monotone, rounding_enabled

LOSSES = ("bce", "ce", "mse", "hinge")
BINARY_LOSSES = ("bce", "hinge")


def check_loss(name: str) -> str:
    if name not in LOSSES:
        raise ValueError(f"unsupported loss {name!r}; choose one of {', '.join(LOSSES)}")
    return name


# ---------------------------------------------------------------------------------------------
# concrete losses (per sample, shape (B,))
# ---------------------------------------------------------------------------------------------
def per_sample_loss(name: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss of every sample; the training objective of a batch is its mean."""
    if name == "bce":
        return F.binary_cross_entropy_with_logits(logits[:, 0], y.to(logits.dtype), reduction="none")
    if name == "hinge":
        s = 2.0 * y.to(logits.dtype) - 1.0
        return torch.clamp(1.0 - s * logits[:, 0], min=0.0)
    if name == "ce":
        return F.cross_entropy(logits, y.long(), reduction="none")
    if name == "mse":
        return ((logits - y.reshape(logits.shape).to(logits.dtype)) ** 2).mean(dim=1)
    raise ValueError(f"unsupported loss {name!r}")


def label_mask(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot boolean mask (B, K) of the clean labels."""
    return F.one_hot(y.long(), num_classes).bool()


# ---------------------------------------------------------------------------------------------
# bounded losses
# ---------------------------------------------------------------------------------------------
def bounded_loss(name: str, logits: Interval, labels: "torch.Tensor | Interval") -> tuple[Interval, Interval]:
    """Dispatch to the bounded version of loss ``name`` (see module docstring). Every loss here is
    non-negative, so the loss bounds are clamped to [0, inf) (outward rounding of a huge box can
    otherwise push a lower bound below the loss's range)."""
    if name == "bce":
        loss, grad = bce_bounds(logits, labels)
    elif name == "hinge":
        loss, grad = hinge_bounds(logits, labels)
    elif name == "ce":
        loss, grad = ce_bounds(logits, labels)
    elif name == "mse":
        loss, grad = mse_bounds(logits, labels)
    else:
        raise ValueError(f"unsupported loss {name!r}")
    return Interval(loss.lo.clamp_min(0), loss.hi.clamp_min(0), check=False), grad


def _softplus(x: torch.Tensor) -> torch.Tensor:
    # exact formula (torch's softplus switches to the identity above a threshold, an error of
    # up to 2e-9 that would make the bound unsound)
    return x.clamp_min(0) + torch.log1p(torch.exp(-x.abs()))


def _select(mask: torch.Tensor, per_label_lo: list[Interval], per_label_hi: list[Interval] | None = None):
    """min of lower bounds and max of upper bounds over the allowed labels (mask (B, K))."""
    inf = torch.tensor(torch.inf, dtype=per_label_lo[0].dtype, device=per_label_lo[0].device)
    lo = None
    hi = None
    for k, iv in enumerate(per_label_lo):
        allowed = mask[:, k].reshape((-1,) + (1,) * (iv.lo.dim() - 1))
        lk = torch.where(allowed, iv.lo, inf)
        hk = torch.where(allowed, iv.hi, -inf)
        lo = lk if lo is None else torch.minimum(lo, lk)
        hi = hk if hi is None else torch.maximum(hi, hk)
    return Interval(lo, hi, check=False)


def _check_binary(logits: Interval, mask: torch.Tensor, name: str) -> None:
    if logits.shape[1] != 1:
        raise ValueError(f"loss {name!r} needs a model with one output logit, got {logits.shape[1]}")
    if mask.shape != (logits.shape[0], 2):
        raise ValueError(f"loss {name!r} needs a label mask of shape (B, 2), got {tuple(mask.shape)}")


def bce_bounds(logits: Interval, mask: torch.Tensor) -> tuple[Interval, Interval]:
    """BCE-with-logits: loss(z, 0) = softplus(z) increases in z, loss(z, 1) = softplus(-z)
    decreases; d loss / dz = sigmoid(z) - y increases in z."""
    _check_binary(logits, mask, "bce")
    z = logits[:, 0]
    loss0 = monotone(_softplus, z, increasing=True)
    loss1 = monotone(lambda t: _softplus(-t), z, increasing=False)
    sig = monotone(torch.sigmoid, z, increasing=True)
    grad0, grad1 = sig, sig - 1.0
    loss = _select(mask, [loss0, loss1])
    grad = _select(mask, [grad0, grad1])
    return loss, grad.unsqueeze(1)


def hinge_bounds(logits: Interval, mask: torch.Tensor) -> tuple[Interval, Interval]:
    """Hinge max(0, 1 - s z) with s = 2y - 1. Its derivative is -s where 1 - s z > 0 and 0 where
    1 - s z < 0; where the box touches the kink both values are included."""
    _check_binary(logits, mask, "hinge")
    z = logits[:, 0]
    one = torch.ones_like(z.lo)
    zero = torch.zeros_like(z.lo)
    # y = 1: margin 1 - z
    l1 = Interval((1.0 - z.hi).clamp_min(0), (1.0 - z.lo).clamp_min(0), check=False)
    g1_lo = torch.where(z.lo <= 1.0, -one, zero)  # some point with 1 - z >= 0: derivative -1 possible
    g1_hi = torch.where(z.hi >= 1.0, zero, -one)  # some point with 1 - z <= 0: derivative 0 possible
    # y = 0: margin 1 + z
    l0 = Interval((1.0 + z.lo).clamp_min(0), (1.0 + z.hi).clamp_min(0), check=False)
    g0_lo = torch.where(z.lo <= -1.0, zero, one)
    g0_hi = torch.where(z.hi >= -1.0, one, zero)
    if rounding_enabled():
        l1 = Interval(torch.nextafter(l1.lo, -one).clamp_min(0), torch.nextafter(l1.hi, 2 * l1.hi + 1), check=False)
        l0 = Interval(torch.nextafter(l0.lo, -one).clamp_min(0), torch.nextafter(l0.hi, 2 * l0.hi + 1), check=False)
    loss = _select(mask, [l0, l1])
    grad = _select(mask, [Interval(g0_lo, g0_hi, check=False), Interval(g1_lo, g1_hi, check=False)])
    return loss, grad.unsqueeze(1)


def _logsumexp_interval(v: torch.Tensor, dim: int) -> Interval:
    """logsumexp of a point tensor, padded by its floating-point error (stable: max-shifted)."""
    val = torch.logsumexp(v, dim=dim)
    if not rounding_enabled():
        return Interval.point(val)
    n = v.shape[dim]
    eps = torch.finfo(v.dtype).eps
    err = (n + 8) * eps * (1.0 + val.abs())
    return Interval(val - err, val + err, check=False)


def log_softmax_bounds(logits: Interval) -> Interval:
    """log softmax_c increases in z_c and decreases in every other logit: the lower bound takes
    z_c low and the others high, the upper bound the opposite (each evaluated stably)."""
    B, C = logits.shape
    eye = torch.eye(C, dtype=torch.bool, device=logits.device)
    v_low = torch.where(eye, logits.lo.unsqueeze(1), logits.hi.unsqueeze(1))  # (B, c, j)
    v_high = torch.where(eye, logits.hi.unsqueeze(1), logits.lo.unsqueeze(1))
    lse_low = _logsumexp_interval(v_low, dim=2)
    lse_high = _logsumexp_interval(v_high, dim=2)
    lo = (Interval.point(logits.lo) - lse_low).lo
    hi = (Interval.point(logits.hi) - lse_high).hi
    return Interval(lo, torch.minimum(hi, torch.zeros_like(hi)), check=False)


def ce_bounds(logits: Interval, mask: torch.Tensor) -> tuple[Interval, Interval]:
    """Cross-entropy from log-softmax bounds; gradient p_j - [j == y] with p_j = exp(log p_j)."""
    B, C = logits.shape
    if mask.shape != (B, C):
        raise ValueError(f"loss 'ce' needs a label mask of shape (B, {C}), got {tuple(mask.shape)}")
    ls = log_softmax_bounds(logits)
    p = monotone(torch.exp, ls, increasing=True)
    p = Interval(p.lo.clamp_min(0), p.hi.clamp_max(1), check=False)
    neg = -ls  # loss for label c lies in neg[:, c]
    inf = torch.tensor(torch.inf, dtype=p.dtype, device=p.device)
    loss = Interval(
        torch.where(mask, neg.lo, inf).amin(dim=1), torch.where(mask, neg.hi, -inf).amax(dim=1), check=False
    )
    onehot_lo = mask.to(p.dtype)  # subtracting 1 at j is possible when j is an allowed label
    others = (mask.sum(dim=1, keepdim=True) - mask.to(torch.long)) > 0  # some allowed label != j
    sub_hi = torch.where(others, torch.zeros_like(p.lo), torch.ones_like(p.lo))  # least amount subtracted
    grad = Interval(p.lo - onehot_lo, p.hi - sub_hi, check=False)
    if rounding_enabled():
        grad = Interval(torch.nextafter(grad.lo, -inf), torch.nextafter(grad.hi, inf), check=False)
    return loss, grad


def mse_bounds(logits: Interval, targets: Interval) -> tuple[Interval, Interval]:
    """MSE averaged over the C outputs: loss = mean_j (z_j - t_j)^2, grad_j = 2 (z_j - t_j) / C."""
    if not isinstance(targets, Interval) or targets.shape != logits.shape:
        raise ValueError(f"loss 'mse' needs target bounds of shape {tuple(logits.shape)}")
    C = logits.shape[1]
    d = logits - targets
    sq_hi = torch.maximum(d.lo * d.lo, d.hi * d.hi)
    sq_lo = torch.where(d.lo > 0, d.lo * d.lo, torch.where(d.hi < 0, d.hi * d.hi, torch.zeros_like(d.lo)))
    sq = Interval(sq_lo, sq_hi, check=False)
    if rounding_enabled():
        sq = Interval(torch.nextafter(sq.lo, -sq.hi - 1).clamp_min(0), torch.nextafter(sq.hi, sq.hi * 2 + 1), check=False)
    loss = sq.sum(dim=1).scale(1.0 / C)
    grad = d.scale(2.0 / C)
    return loss, grad
