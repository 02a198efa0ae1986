"""Attacks that poison the training set once (the same poisoned set in every epoch): random
perturbations, box vertices, and vertices chosen by the gradient of one final parameter (or
logit) with respect to the perturbation, through the unrolled training. This is the attacker the
affine method certifies against (``method="affine"``)."""
from __future__ import annotations

import copy

import torch

from .attacks import batch_indices, torch_loss


def unrolled(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, loss: str, *, epochs: int, lr: float,
             batch_size: int, weight_decay: float = 0.0, lr_decay: float = 1.0, shuffle: bool = False,
             seed: int = 0) -> list[torch.Tensor]:
    """Plain SGD as :func:`~tests.helpers.attacks.sgd_train`, differentiable in ``X``: the final
    parameters (in ``model.parameters()`` order), with the graph kept."""
    net = copy.deepcopy(model)
    names = [n for n, _ in net.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    n = X.shape[0]
    for epoch in range(epochs):
        for idx in batch_indices(n, batch_size, epoch, shuffle, seed):
            out = torch.func.functional_call(net, dict(zip(names, params)), (X[idx],))
            L = torch_loss(loss, out, y[idx]).mean()
            gs = torch.autograd.grad(L, params, create_graph=True)
            params = [p - lr * (g + weight_decay * p) for p, g in zip(params, gs)]
        lr = lr * lr_decay
    return params


def guided_vertices(model, X, y, loss, lo: torch.Tensor, hi: torch.Tensor, recipe: dict, picks: int,
                    gen: torch.Generator) -> list[torch.Tensor]:
    """Poisoned inputs at vertices of the box [lo, hi] chosen by the sign of d theta_j / d X
    (both signs) for ``picks`` random parameter entries j, evaluated at the box centre."""
    mid = ((lo + hi) / 2).detach()
    out = []
    flat = sum(p.numel() for p in model.parameters())
    for j in torch.randperm(flat, generator=gen)[:picks].tolist():
        Xv = mid.clone().requires_grad_(True)
        final = torch.cat([p.reshape(-1) for p in unrolled(model, Xv, y, loss, **recipe)])
        (g,) = torch.autograd.grad(final[j], Xv)
        for sign in (1.0, -1.0):
            out.append(torch.where(sign * g >= 0, hi, lo).detach())
    return out


def random_points(lo: torch.Tensor, hi: torch.Tensor, n_random: int, n_vertex: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Uniform points and random vertices of the box [lo, hi]."""
    pts = [lo + (hi - lo) * torch.rand(lo.shape, generator=gen, dtype=lo.dtype) for _ in range(n_random)]
    pts += [torch.where(torch.rand(lo.shape, generator=gen) < 0.5, lo, hi) for _ in range(n_vertex)]
    return pts
