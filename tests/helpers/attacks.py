"""Concrete SGD training and poisoning attacks for the soundness tests.

Everything here is written independently of the bound code: plain torch losses
(``torch.nn.functional``), a hand-written SGD loop and attackers that only know the threat
model's *meaning* (which samples may change, by how much), never mibpcert's regions or bounds.

An :class:`Budget` states a threat model in plain terms; a :class:`Poisoner` is called at every
SGD step with the current network and the clean batch and returns a poisoned batch inside the
budget. Attackers may be adaptive (a fresh choice every step): each step's region in the bound
depends only on the clean batch, so an adaptive attacker is still inside the threat model.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

F64 = torch.float64


# ---------------------------------------------------------------------------------------------
# losses and SGD
# ---------------------------------------------------------------------------------------------
def torch_loss(name: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample loss (B,) straight from torch.nn.functional."""
    if name == "bce":
        return F.binary_cross_entropy_with_logits(z[:, 0], y.to(z.dtype), reduction="none")
    if name == "hinge":
        return torch.relu(1.0 - (2.0 * y.to(z.dtype) - 1.0) * z[:, 0])
    if name == "ce":
        return F.cross_entropy(z, y.long(), reduction="none")
    if name == "mse":
        return F.mse_loss(z, y.reshape(z.shape).to(z.dtype), reduction="none").mean(dim=1)
    raise ValueError(name)


def batch_indices(n: int, batch_size: int, epoch: int, shuffle: bool = False, seed: int = 0) -> list[torch.Tensor]:
    """Consecutive batches of ``batch_size`` (last one partial). With shuffle, the order is the
    one mibpcert's training loop uses: ``torch.randperm(n)`` from a generator seeded with
    ``seed * 100003 + epoch``."""
    if shuffle:
        g = torch.Generator().manual_seed(seed * 100003 + epoch)
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def sgd_train(
    model: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    loss: str,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float = 0.0,
    lr_decay: float = 1.0,
    shuffle: bool = False,
    seed: int = 0,
    poison: "Callable | None" = None,
) -> torch.nn.Module:
    """Plain SGD on the mean batch loss: ``p <- p - lr * (grad + weight_decay * p)``, the step
    size multiplied by ``lr_decay`` after every epoch. ``poison(net, Xb, yb, lr)`` may replace
    every batch just before its step. Like ``torch.optim.SGD``, only the parameters with
    ``requires_grad`` are trained; the returned network is frozen (for evaluation)."""
    net = copy.deepcopy(model)
    params = [p for p in net.parameters() if p.requires_grad]
    n = X.shape[0]
    for epoch in range(epochs):
        for idx in batch_indices(n, batch_size, epoch, shuffle, seed):
            Xb, yb = X[idx], y[idx]
            if poison is not None:
                Xb, yb = poison(net, Xb, yb, lr)
            L = torch_loss(loss, net(Xb), yb).mean()
            gs = torch.autograd.grad(L, params)
            with torch.no_grad():
                for p, g in zip(params, gs):
                    p.sub_(lr * (g + weight_decay * p))
        lr = lr * lr_decay
    return net.requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# threat budgets in plain terms
# ---------------------------------------------------------------------------------------------
@dataclass
class Budget:
    """What the attacker may do to each batch.

    ``eps``/``feat_k``: move every feature of at most ``feat_k`` samples (``None``: of every
    sample) by at most ``eps`` (clipped to ``domain`` when given, the clean value always allowed);
    ``flip_k``/``flip_to``: change at most ``flip_k`` labels to any class (or only to ``flip_to``);
    ``gamma``/``noise_k``: move at most ``noise_k`` regression targets by at most ``gamma`` per
    output. ``paired``: the feature and label budgets must hit the same samples (at most
    max(k) samples changed, each label change on a sample whose features may change too).
    Budgets of 0 (the defaults) are off.
    """

    task: str  # "binary" | "multiclass" | "regression"
    num_classes: int | None = None
    eps: float = 0.0
    feat_k: int | None = 0
    domain: tuple[float, float] | None = None
    flip_k: int | None = 0
    flip_to: int | None = None
    gamma: float = 0.0
    noise_k: int | None = 0
    paired: bool = False

    @property
    def feat_on(self) -> bool:
        return self.eps > 0 and self.feat_k != 0

    @property
    def label_k(self) -> int | None:
        return self.noise_k if self.task == "regression" else self.flip_k

    @property
    def label_on(self) -> bool:
        if self.task == "regression":
            return self.gamma > 0 and self.noise_k != 0
        return self.flip_k != 0

    def feature_box(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = X - self.eps, X + self.eps
        if self.domain is not None:
            lo = torch.minimum(torch.clamp(lo, min=self.domain[0]), X)
            hi = torch.maximum(torch.clamp(hi, max=self.domain[1]), X)
        return lo, hi

    def label_options(self, yb: torch.Tensor) -> list[torch.Tensor]:
        """Candidate labels for a poisoned sample (the clean label first), each of yb's shape."""
        if self.task == "regression":
            t = yb.reshape(yb.shape[0], -1)
            C = t.shape[1]
            opts = [t]
            for signs in itertools.product([-1.0, 1.0], repeat=C):
                opts.append(t + self.gamma * torch.tensor(signs, dtype=t.dtype))
            return [o.reshape(yb.shape) for o in opts]
        classes = range(self.num_classes) if self.flip_to is None else [self.flip_to]
        return [yb] + [torch.full_like(yb, float(c)) for c in classes]

    def sizes(self, B: int) -> tuple[int, int]:
        ka = 0 if not self.feat_on else (B if self.feat_k is None else min(self.feat_k, B))
        kb = 0 if not self.label_on else (B if self.label_k is None else min(self.label_k, B))
        return ka, kb

    def is_paired(self) -> bool:
        return self.paired and self.feat_on and self.label_on and self.feat_k is not None and self.label_k is not None

    def check(self, Xc, yc, Xp, yp) -> None:
        """Assert a poisoned batch is inside the budget (guards the attacks themselves)."""
        B = Xc.shape[0]
        lo, hi = self.feature_box(Xc)
        assert ((Xp >= lo) & (Xp <= hi)).all()
        fchanged = (Xp != Xc).any(dim=1)
        if self.task == "regression":
            assert ((yp >= yc - self.gamma) & (yp <= yc + self.gamma)).all()
            lchanged = (yp != yc).reshape(B, -1).any(dim=1)
        else:
            lchanged = yp != yc
            if self.flip_to is not None:
                assert (yp[lchanged] == self.flip_to).all()
        ka, kb = self.sizes(B)
        assert int(fchanged.sum()) <= ka and int(lchanged.sum()) <= kb
        if self.is_paired():
            assert int((fchanged | lchanged).sum()) <= max(ka, kb)


def per_sample_forward(net: torch.nn.Sequential, params_b: dict, X: torch.Tensor) -> torch.Tensor:
    """Forward pass of a Linear/ReLU Sequential where sample b uses its own parameter copy
    ``params_b[name][b]``."""
    a = X
    mods = [("", net)] if isinstance(net, torch.nn.Linear) else list(net.named_children())
    for name, mod in mods:
        pre = f"{name}." if name else ""
        if isinstance(mod, torch.nn.Linear):
            a = torch.einsum("bi,boi->bo", a, params_b[pre + "weight"])
            if mod.bias is not None:
                a = a + params_b[pre + "bias"]
        elif isinstance(mod, torch.nn.ReLU):
            a = torch.relu(a)
        elif isinstance(mod, torch.nn.Flatten):
            a = a.flatten(1)
        else:
            raise TypeError(type(mod).__name__)
    return a


# ---------------------------------------------------------------------------------------------
# attackers
# ---------------------------------------------------------------------------------------------
def _subsets(B: int, k: int):
    return [list(c) for c in itertools.combinations(range(B), k)]


class Poisoner:
    """A poisoning attacker called at every step.

    ``mode``: ``"random"`` (uniform feature perturbations, random poisoned samples and labels),
    ``"vertex"`` (features at random corners of the box, labels flipped to a random other class,
    targets at +-gamma), or ``"guided"``: ``direction(net)`` returns a dict of parameter-shaped
    tensors ``c``; every step the attacker minimises ``sum_i c . g_i`` over the batch (so the
    step ``theta - lr * mean_i g_i`` moves ``c . theta`` up as far as it can), over the feature
    corners given by the sign of the gradient of ``c . g_i`` in ``x_i`` and over every label
    option, choosing the poisoned samples by brute force over the allowed subsets. ``direction=None``: the same attacker maximises the
    batch's training loss instead (FGSM on the loss, loss-maximising labels).
    """

    def __init__(self, budget: Budget, loss: str, mode: str, seed: int = 0, direction=None) -> None:
        self.b, self.loss, self.mode = budget, loss, mode
        self.gen = torch.Generator().manual_seed(seed)
        self.direction = direction

    # random / vertex ---------------------------------------------------------------------
    def _perm(self, n):
        return torch.randperm(n, generator=self.gen)

    def _choose_sets(self, B):
        ka, kb = self.b.sizes(B)
        if self.mode == "random":  # sometimes less than the budget
            if self.b.feat_k is not None and ka > 0:
                ka = int(torch.randint(0, ka + 1, (1,), generator=self.gen))
            if self.b.label_k is not None and kb > 0:
                kb = int(torch.randint(0, kb + 1, (1,), generator=self.gen))
        if self.b.is_paired():
            m = max(ka, kb)
            U = self._perm(B)[:m]
            return U[self._perm(m)[:ka]], U[self._perm(m)[:kb]]
        return self._perm(B)[:ka], self._perm(B)[:kb]

    def _simple(self, Xb, yb):
        Xp, yp = Xb.clone(), yb.clone()
        Sa, Sb = self._choose_sets(Xb.shape[0])
        lo, hi = self.b.feature_box(Xb)
        if len(Sa):
            if self.mode == "random":
                u = torch.rand(Xb[Sa].shape, dtype=Xb.dtype, generator=self.gen)
                Xp[Sa] = lo[Sa] + u * (hi[Sa] - lo[Sa])
            else:
                s = torch.rand(Xb[Sa].shape, generator=self.gen) < 0.5
                Xp[Sa] = torch.where(s, lo[Sa], hi[Sa])
        if len(Sb):
            if self.b.task == "regression":
                t = yb[Sb]
                if self.mode == "random":
                    u = torch.rand(t.shape, dtype=t.dtype, generator=self.gen) * 2 - 1
                else:
                    u = torch.where(torch.rand(t.shape, generator=self.gen) < 0.5, -1.0, 1.0).to(t.dtype)
                yp[Sb] = t + self.b.gamma * u
            elif self.b.flip_to is not None:
                yp[Sb] = float(self.b.flip_to)
            else:
                K = self.b.num_classes
                if self.mode == "random":
                    yp[Sb] = torch.randint(0, K, (len(Sb),), generator=self.gen).to(yb.dtype)
                else:  # a different class
                    off = torch.randint(1, K, (len(Sb),), generator=self.gen)
                    yp[Sb] = ((yb[Sb].long() + off) % K).to(yb.dtype)
        return Xp, yp

    # guided ------------------------------------------------------------------------------
    def _guided(self, net, Xb, yb):
        B = Xb.shape[0]
        params = {k: v.detach() for k, v in net.named_parameters()}
        c = None if self.direction is None else {k: v.detach() for k, v in self.direction(net).items()}
        loss = self.loss

        def value(X, T, need_dx=False):
            """Per-sample ``c . grad_theta loss_i`` (B,) and, if asked, its gradient in x_i (every
            sample gets its own copy of the parameters, so one backward pass gives per-sample
            gradients; value_i depends on x_i only)."""
            X = X.detach().clone().requires_grad_(need_dx)
            pb = {n: p.unsqueeze(0).expand((B,) + tuple(p.shape)).clone().requires_grad_(True) for n, p in params.items()}
            losses = torch_loss(loss, per_sample_forward(net, pb, X), T)
            if c is None:  # no direction: maximise the training loss
                v = -losses
            else:
                gs = torch.autograd.grad(losses.sum(), list(pb.values()), create_graph=need_dx, allow_unused=True)
                v = torch.zeros(B, dtype=X.dtype)
                for n, g in zip(pb, gs):
                    if g is not None:
                        v = v + (c[n] * g).reshape(B, -1).sum(1)
            if not need_dx:
                return v.detach(), None
            if not v.requires_grad:
                return v.detach(), torch.zeros_like(X)
            (dx,) = torch.autograd.grad(v.sum(), X, allow_unused=True)
            return v.detach(), torch.zeros_like(X) if dx is None else dx

        lo, hi = self.b.feature_box(Xb)
        opts = self.b.label_options(yb) if self.b.label_on else [yb]
        vals = torch.empty(len(opts), 2, B, dtype=Xb.dtype)
        xs = []
        for li, t in enumerate(opts):
            vals[li, 0], d = value(Xb, t, need_dx=self.b.feat_on)
            if self.b.feat_on:
                xa = torch.where(d > 0, lo, torch.where(d < 0, hi, Xb))
                vals[li, 1] = value(xa, t)[0]
            else:
                xa = Xb
                vals[li, 1] = vals[li, 0]
            xs.append(xa)
        vals = vals.tolist()

        def best(i, feat: bool, lab: bool):
            cand = []
            for li in range(len(opts) if lab else 1):
                cand.append((vals[li][0][i], li, False))
                if feat:
                    cand.append((vals[li][1][i], li, True))
            return min(cand)

        table = [[[best(i, f, l) for l in (False, True)] for f in (False, True)] for i in range(B)]
        ka, kb = self.b.sizes(B)
        everyone = list(range(B))
        choices = []
        if self.b.is_paired():
            m = max(ka, kb)
            for U in _subsets(B, m):
                for Sa in _subsets(m, ka):
                    for Sb in _subsets(m, kb):
                        choices.append(([U[j] for j in Sa], [U[j] for j in Sb]))
        else:
            fa = [everyone] if self.b.feat_k is None and ka else _subsets(B, ka)
            fb = [everyone] if self.b.label_k is None and kb else _subsets(B, kb)
            choices = [(a, b) for a in fa for b in fb]
        best_total, best_pick = None, None
        for Sa, Sb in choices:
            sa, sb = set(Sa), set(Sb)
            total = sum(table[i][i in sa][i in sb][0] for i in range(B))
            if best_total is None or total < best_total:
                best_total, best_pick = total, (sa, sb)
        sa, sb = best_pick
        Xp, yp = Xb.clone(), yb.clone()
        for i in range(B):
            _, li, feat = table[i][i in sa][i in sb]
            if feat:
                Xp[i] = xs[li][i]
            yp[i] = opts[li][i]
        return Xp, yp

    def __call__(self, net, Xb, yb, lr):
        Xp, yp = self._guided(net, Xb, yb) if self.mode == "guided" else self._simple(Xb, yb)
        self.b.check(Xb, yb, Xp, yp)
        return Xp, yp


# ---------------------------------------------------------------------------------------------
# directions for the guided attacker
# ---------------------------------------------------------------------------------------------
def param_direction(name: str, flat_index: int, sign: float):
    """Push one parameter coordinate up (sign=+1) or down (sign=-1)."""

    def direction(net):
        out = {}
        for n, p in net.named_parameters():
            c = torch.zeros_like(p)
            if n == name:
                c.view(-1)[flat_index] = sign
            out[n] = c
        return out

    return direction


def margin_direction(x_test: torch.Tensor, y_test: int, num_out: int, sign: float = -1.0):
    """Push the classification margin of one test point down (sign=-1) or up: the direction is
    the parameter gradient of the margin at the current parameters."""

    def direction(net):
        params = [p for _, p in net.named_parameters()]
        with torch.enable_grad():
            z = net(x_test.unsqueeze(0))[0]
            if num_out == 1:
                m = z[0] if y_test == 1 else -z[0]
            else:
                others = torch.cat([z[:y_test], z[y_test + 1 :]])
                m = z[y_test] - others.max()
            gs = torch.autograd.grad(m, params)
        return {n: sign * g for (n, _), g in zip(net.named_parameters(), gs)}

    return direction


# ---------------------------------------------------------------------------------------------
# test-time perturbations
# ---------------------------------------------------------------------------------------------
def perturb_inputs(net, X, y, eps: float, loss: str, n_random: int = 4, n_vertex: int = 4, gen=None) -> list[torch.Tensor]:
    """Inputs within ``eps`` of X (l-infinity): the clean points, random interior and corner
    points, and an FGSM step that lowers each point's margin on ``net``."""
    out = [X]
    if eps == 0:
        return out
    for _ in range(n_random):
        out.append(X + eps * (2 * torch.rand(X.shape, dtype=X.dtype, generator=gen) - 1))
    for _ in range(n_vertex):
        out.append(X + eps * torch.where(torch.rand(X.shape, generator=gen) < 0.5, -1.0, 1.0).to(X.dtype))
    Xg = X.clone().requires_grad_(True)
    z = net(Xg)
    if loss == "mse":  # regression: push every output up
        m = -z.sum(1)
    elif z.shape[1] == 1:
        m = torch.where(y > 0.5, z[:, 0], -z[:, 0])
    else:
        zy = z.gather(1, y.long().reshape(-1, 1))[:, 0]
        zo = z.masked_fill(torch.nn.functional.one_hot(y.long(), z.shape[1]).bool(), -torch.inf).max(1).values
        m = zy - zo
    (gx,) = torch.autograd.grad(m.sum(), Xg)
    out.append((X - eps * gx.sign()).detach())
    return out
