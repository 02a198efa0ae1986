"""The interval training step: bounds on every parameter after one SGD step.

For every sample of a batch the forward pass, the loss gradient and the backward pass are run on
intervals (parameters in the current box, inputs and labels in the threat's region), giving an
interval on the sample's gradient of every parameter. The batch gradient is the mean of the
per-sample gradients; with a budget of k poisoned samples the sum is bounded by the clean sums
plus the k largest per-sample increases (see :mod:`mibpcert.threats`). The update
``theta' = (1 - lr*wd) theta - lr * mean_i g_i`` is then bounded term by term; frozen parameters
(``requires_grad=False``) keep their value. Every operation is
an inclusion-monotone interval operation, so each real trajectory stays inside the boxes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..interval.tensor import Interval, directed_sums, linear, matmul, outer
from ..losses import Loss, as_loss
from ..model import ModelSpec

ParamBox = dict  # name -> Interval


class FlatBox(dict):
    """A box made by :func:`unflatten`: its intervals are views of one flat interval, which
    :func:`flatten` returns as it is (no copy) while the box still holds those intervals."""

    def __init__(self, items: dict, flat: Interval) -> None:
        super().__init__(items)
        self.flat = flat
        self.made = tuple(items.items())


@dataclass
class SampleTrace:
    """Per-sample bounds on every intermediate quantity of one forward/backward pass.

    ``pre[l]``/``post[l]``: pre-activation and activation of layer l (B, out_l); ``inputs``: the
    input box (B, in); ``dlogits``: d loss / d logits (B, C); ``deltas[l]``: d loss / d pre[l];
    ``grads[name]``: the sample's gradient of each parameter (B, *shape). (The loss values are not
    bounded: the step needs only their gradient.)
    """

    inputs: Interval
    pre: list[Interval]
    post: list[Interval]
    dlogits: Interval
    deltas: list[Interval]
    grads: dict[str, Interval]


def forward(spec: ModelSpec, params: ParamBox, x: Interval | torch.Tensor, exact: bool = False) -> tuple[list[Interval], list[Interval]]:
    """Interval forward pass; returns pre-activations and activations of every layer."""
    pre: list[Interval] = []
    post: list[Interval] = []
    a: Interval | torch.Tensor = x
    for layer in spec.layers:
        z = linear(a, params[layer.weight], params[layer.bias] if layer.bias else None, exact=exact)
        pre.append(z)
        a = z.relu() if layer.relu else z
        post.append(a)
    return pre, post


def sample_bounds(
    spec: ModelSpec, params: ParamBox, x: Interval, labels, loss: Loss | str, exact: bool = False
) -> SampleTrace:
    """Bounds on each sample's intermediate quantities and parameter gradients."""
    pre, post = forward(spec, params, x, exact=exact)
    delta = dlogits = as_loss(loss).grad_bounds(pre[-1], labels)
    deltas: list[Interval] = [delta] * len(spec.layers)
    grads: dict[str, Interval] = {}
    for li in range(len(spec.layers) - 1, -1, -1):
        layer = spec.layers[li]
        a_prev = x if li == 0 else post[li - 1]
        deltas[li] = delta
        grads[layer.weight] = outer(delta, a_prev)  # (B, out, in)
        if layer.bias is not None:
            grads[layer.bias] = delta
        if li > 0:
            back = matmul(delta, params[layer.weight], exact=exact)
            delta = back.relu_backward(pre[li - 1]) if spec.layers[li - 1].relu else back
    return SampleTrace(x, pre, post, dlogits, deltas, grads)


def aggregate(base: Interval, poisoned: Interval | None, k: int | None) -> Interval:
    """Bounds on the batch sum of per-sample gradients (dim 0) when at most ``k`` samples lie in
    the poisoned region and the rest in the base region (``k=None``: all may be poisoned)."""
    B = base.shape[0]
    if poisoned is None or k is None or k >= B:
        src = base if poisoned is None else poisoned.hull(base)
        return Interval.from_stacked(directed_sums(src.stacked))
    if k == 0:
        return Interval.from_stacked(directed_sums(base.stacked))
    sign = torch.tensor([-1.0, 1.0], dtype=base.dtype, device=base.device).reshape(2, 1, 1)
    inc = ((poisoned.stacked - base.stacked) * sign).clamp_min(0)  # how far each bound may move outward
    top = torch.topk(inc, k, dim=1).values * sign
    return Interval.from_stacked(directed_sums(torch.cat([base.stacked, top], 1)))


def flatten(box: ParamBox, names: list[str]) -> Interval:
    """All parameters of a box as one flat interval vector, in ``names`` order."""
    if isinstance(box, FlatBox) and len(names) == len(box.made) and all(
            n == m and box.get(n) is iv for n, (m, iv) in zip(names, box.made)):
        return box.flat
    return Interval.from_stacked(torch.cat([box[n].stacked.reshape(2, -1) for n in names], 1))


def box_widths(box: ParamBox) -> torch.Tensor:
    """Every parameter's width ``hi - lo`` as one flat vector."""
    return flatten(box, list(box)).width()


def unflatten(flat: Interval, spec: ModelSpec) -> ParamBox:
    """Inverse of :func:`flatten` for ``spec.param_names`` (the parameters' bounds are views of
    ``flat``'s)."""
    shapes = spec.param_shapes()
    parts = flat.stacked.split([int(torch.Size(s).numel()) for s in shapes.values()], dim=1)
    return FlatBox({name: Interval.from_stacked(part.reshape((2,) + shape)) for (name, shape), part in zip(shapes.items(), parts)}, flat)


def flat_grads(trace: SampleTrace, names: list[str]) -> Interval:
    """Per-sample gradients of every parameter as one (B, P) interval."""
    B = trace.inputs.shape[0]
    return Interval.from_stacked(torch.cat([trace.grads[n].stacked.reshape(2, B, -1) for n in names], 2))


@dataclass
class StepBounds:
    """Result of one interval step: the new box and the traces of the base and poisoned regions
    (``poisoned`` is None when every sample uses one region)."""

    params: ParamBox
    base: SampleTrace
    poisoned: SampleTrace | None


def interval_step(
    spec: ModelSpec,
    params: ParamBox,
    region,
    loss: Loss | str,
    lr: float,
    weight_decay: float = 0.0,
    exact: bool = False,
) -> StepBounds:
    """One SGD step on the mean batch loss, bounded with intervals (see module docstring).

    Computed in ``torch.inference_mode`` (the same operators and values without autograd's
    bookkeeping, which costs ~15% of a small step): the new box holds ordinary tensors, the
    traces inference tensors (to read, not to change in place or differentiate through)."""
    with torch.inference_mode():
        B = region.features.shape[0]
        k = region.k
        split = k is not None and 0 < k < B
        if split:
            # both regions in one batched pass: rows [0, B) base, [B, 2B) poisoned
            x = Interval(torch.cat([region.features.lo, region.poisoned_features.lo]), torch.cat([region.features.hi, region.poisoned_features.hi]), check=False)
            labels = _cat_labels(region.labels, region.poisoned_labels)
            both = sample_bounds(spec, params, x, labels, loss, exact)
            base, pois = _split_trace(both, B)
        else:
            use_pois = k is None or k >= B
            feats = region.poisoned_features if use_pois else region.features
            labs = region.poisoned_labels if use_pois else region.labels
            base, pois = sample_bounds(spec, params, feats, labs, loss, exact), None
        names = spec.param_names
        grad_sum = aggregate(flat_grads(base, names), flat_grads(pois, names) if pois else None, k)
        theta = flatten(params, names)
        new = keep_frozen(spec, theta, theta.scale(1.0 - lr * weight_decay) - grad_sum.scale(lr / B))
    return StepBounds(unflatten(Interval.from_stacked(new.stacked.clone()), spec), base, pois)


def keep_frozen(spec: ModelSpec, before: Interval, after: Interval) -> Interval:
    """``after`` (flat) with the frozen parameters' entries taken from ``before``: parameters with
    ``requires_grad=False`` are neither updated nor decayed by SGD, so their box does not change."""
    if not spec.frozen:
        return after
    keep = spec.frozen_mask(after.device)
    return Interval.from_stacked(torch.where(keep, before.stacked, after.stacked))


def _cat_labels(a, b):
    if isinstance(a, Interval):
        return Interval.from_stacked(torch.cat([a.stacked, b.stacked], 1))
    return torch.cat([a, b])


def _split_trace(t: SampleTrace, B: int) -> tuple[SampleTrace, SampleTrace]:
    def part(sl):
        return SampleTrace(
            t.inputs[sl],
            [p[sl] for p in t.pre],
            [p[sl] for p in t.post],
            t.dlogits[sl],
            [d[sl] for d in t.deltas],
            {n: g[sl] for n, g in t.grads.items()},
        )

    return part(slice(0, B)), part(slice(B, 2 * B))
