"""Gradient-guided, multi-step poisoning attacks on the structured threat models.

``tests/threats/`` train on random and enumerated poisoned data (mostly one
step). Here an adaptive attacker is called at *every* SGD step of a 4-step run (6 samples, batches
of 3, 2 epochs) and steers the training towards one end of one parameter coordinate. Every
parameter vector it reaches must lie in the interval box and in the MIBP boxes (``per_sample`` and
``joint``, HiGHS), without tolerance.

The attacker
============
Written in plain torch from the *meaning* of each threat (its docstring in
``mibpcert.threats``): which samples may change and into what. It never reads mibpcert's
regions, intervals or encodings, so a bug in those cannot make the attack weaker in the same way.

At a step with current parameters ``theta``, clean batch ``(X, y)`` and a target direction
"push ``s * theta_j`` up" (one coordinate ``j``, sign ``s``), the step
``theta <- theta - lr/B sum_i grad loss_i`` moves ``s theta_j`` up by ``-lr/B sum_i v_i`` with
``v_i = s * d loss(x_i, y_i) / d theta_j``. The objective ``sum_i v_i`` is separable over the
samples, so per sample the attacker takes the input gradient ``d v_i / d x_i`` (double backward,
``create_graph=True``) and moves to the vertex of the threat set that minimises the linearised
objective (a Frank-Wolfe step, repeated once from the new vertex; every iterate's *true* value
is evaluated and the best kept):

* ``L0Features(eps, s, k)``: the ``s`` features of largest ``|grad|`` move by ``-eps sign(grad)``;
* ``L1Features(eps1, k)``: all of ``eps1`` on the feature of largest ``|grad|``, sign ``-sign(grad)``;
* ``MissingValues(features, low, high, k)``: each listed feature at ``low`` or ``high`` by the
  gradient sign, plus every {clean, low, high} combination evaluated exactly;
* ``FeatureValues`` / ``OneHotFeature``: finite sets, every candidate evaluated exactly;
* ``SharedTrigger(mask, eps, k, target)``: ONE pattern ``delta = -eps sign(sum of the picked
  samples' gradients)`` on the mask (gradients taken with the target label when there is one),
  the picked samples labelled ``target``.

The budget ``k``: samples are picked greedily by their true (re-evaluated) improvement and only
while the objective improves, so sometimes fewer than ``k``; for the trigger every greedy
candidate set gets its own shared pattern. The "loss" attacker does the same with
``v_i = -loss_i`` (maximise the batch loss). Mixed strategies alternate guided steps with
"vertex" steps (a random corner of the threat set, on a random number of samples up to ``k``).

Every poisoned batch is checked against the threat set before it is used (``Attack.check``), by
exact comparisons: the data lie on the grid ``2^-16 Z`` and every ``eps``, bound and value is
dyadic, so ``X + eps`` and ``Xp - X`` are exact in float64 and membership needs no tolerance
(an attack that left the set would make the containment assertions meaningless).
``test_threat_set_checks_reject_outside_batches`` shows the checks do reject near misses.

The runs
========
Per case (12 cases, every structured threat with a budget and with ``k=None``; hinge, mse and
one bce case; a 3-3-1 or 4-3-1 net, lr 0.2-0.5): the 4 widest coordinates of the interval box,
both signs, each pushed by four strategies (all steps guided, guided/vertex alternating in both
orders, all vertex) and by a guided attacker that picks a random 0..k samples per step; plus the
loss-maximising attacker with the four strategies. That is 44 runs of 4 SGD steps, each
checked against the interval box and the MIBP box of every mode listed for the case (both
modes for L0, L1, MissingValues and SharedTrigger with a target; one for the others, to keep
the file near 30 s on 2 cores). MIBP cases also assert that no bound fell back to intervals.

Measured (how far the best run gets towards the bound, as a fraction of the gap between the
clean run's value and the bound; mean / max over the 8 directions; recorded with
``record_property``, not asserted)::

    case                       interval     mibp per_sample  mibp joint
    l0-hinge                   0.33 / 0.51  0.63 / 0.92      0.66 / 0.95
    l0_all-bce                 0.39 / 0.77
    l1-mse                     0.21 / 0.50  0.54 / 0.81      0.55 / 0.81
    l1_all-hinge               0.33 / 0.60
    missing-hinge              0.70 / 0.85  0.71 / 0.85      0.75 / 0.87
    missing_all-mse            0.13 / 0.26
    trigger_target-hinge       0.31 / 0.81  0.57 / 0.94      0.51 / 0.95
    trigger_target_all-hinge   0.48 / 1.00
    trigger_notarget-mse       0.26 / 0.54  0.57 / 0.83
    feature_values-hinge       0.60 / 0.88                   0.71 / 0.92
    onehot-hinge               0.44 / 0.73                   0.63 / 0.98
    onehot_all-mse             0.01 / 0.02  (the interval box blows up: mean width ~4e3)

By strategy (mean fraction of the interval gap; guided / guided-vertex / vertex-guided / vertex
only): l0-hinge 0.23 / 0.15 / 0.08 / -0.01, missing-hinge 0.70 / 0.32 / 0.33 / 0.00,
trigger_target-hinge 0.27 / -0.82 / -0.94 / -1.45, feature_values-hinge 0.60 / 0.31 / 0.29 /
0.01: random corners alone barely move the coordinate, the guided attacker does.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from mibpcert.threats import (
    FeatureValues,
    L0Features,
    L1Features,
    MissingValues,
    OneHotFeature,
    SharedTrigger,
)
from tests.helpers.attacks import per_sample_forward, sgd_train, torch_loss
from tests.helpers.structured import assert_contains, box, flat_state, make_data, make_model

pytestmark = pytest.mark.slow  # end to end: `make test` runs it, `make test-fast` does not

F64 = torch.float64
B = 3  # batch size: 6 samples, 2 steps per epoch
EPOCHS = 2
GRID = 2.0**16


# ---------------------------------------------------------------------------------------------
# the attacker's objective, in plain torch
# ---------------------------------------------------------------------------------------------
def sample_values(net, X, Y, loss, obj, need_dx=False):
    """Per row: ``v = s * d loss(net(x), y) / d theta_j`` for ``obj = (name, index, s)``, or
    ``v = -loss`` for ``obj = None``; with ``need_dx`` also ``dv/dx`` (m, d). Every row gets its own
    copy of the parameters (``helpers.attacks.per_sample_forward``), so one backward gives per-row
    gradients; row i's value depends on row i only."""
    m = X.shape[0]
    X = X.detach().clone().requires_grad_(need_dx)
    pb = {n: p.detach().unsqueeze(0).expand((m,) + tuple(p.shape)).clone().requires_grad_(True) for n, p in net.named_parameters()}
    losses = torch_loss(loss, per_sample_forward(net, pb, X), Y)
    if obj is None:
        v = -losses
    else:
        name, j, s = obj
        (g,) = torch.autograd.grad(losses.sum(), [pb[name]], create_graph=need_dx)
        v = s * g.reshape(m, -1)[:, j]
    if not need_dx:
        return v.detach(), None
    if not v.requires_grad:
        return v.detach(), torch.zeros_like(X)
    (dx,) = torch.autograd.grad(v.sum(), X, allow_unused=True)
    return v.detach(), (torch.zeros_like(X) if dx is None else dx.detach())


def _sign(g):
    return torch.sign(g).to(F64)


# ---------------------------------------------------------------------------------------------
# attackers, one per threat, from the threat's meaning only
# ---------------------------------------------------------------------------------------------
class Attack:
    """Guided and vertex poisoning of one batch for one threat, and the threat-set check."""

    k: int | None = None
    fw_iters = 2  # a second linearisation at the first vertex (measured: the first is already the best)

    def budget(self, B_):
        return B_ if self.k is None else min(self.k, B_)

    def check(self, Xb, yb, Xp, yp):
        raise NotImplementedError


class RowAttack(Attack):
    """Threats that change the features of at most k samples independently (labels clean)."""

    def lmo(self, X, G):
        """The vertex of each row's set minimising ``G . x`` (continuous sets)."""
        raise NotImplementedError

    def extra_candidates(self, X):
        """Candidates evaluated exactly, (n_cand, m, d) (finite sets, set corners)."""
        return X.new_zeros((0,) + tuple(X.shape))

    def random_vertex(self, X, gen):
        raise NotImplementedError

    def guided(self, net, Xb, yb, loss, obj, max_pick):
        m = Xb.shape[0]
        v0, G = sample_values(net, Xb, yb, loss, obj, need_dx=self.fw_iters > 0)
        cands, vals = [], []
        for t in range(self.fw_iters):  # Frank-Wolfe vertex hopping on the linearised objective
            cur = self.lmo(Xb, G)
            cands.append(cur)
            if t + 1 < self.fw_iters:  # the true value here, and the gradient for the next vertex
                v, G = sample_values(net, cur, yb, loss, obj, need_dx=True)
                vals.append(v)
        cands += list(self.extra_candidates(Xb))
        rest = cands[len(vals):]
        if rest:  # the other candidates' true values, in one call
            Y = yb.repeat((len(rest),) + (1,) * (yb.dim() - 1))
            v, _ = sample_values(net, torch.cat(rest), Y, loss, obj)
            vals += list(v.reshape(len(rest), m))
        best_v, best_x = v0.clone(), Xb.clone()
        for Xc, v in zip(cands, vals):
            self.check_rows(Xb, Xc)
            better = v < best_v
            best_v[better], best_x[better] = v[better], Xc[better]
        gain = v0 - best_v  # the true improvement of each sample; separable, so the top k are best
        Xp = Xb.clone()
        for i in torch.argsort(gain, descending=True)[: min(self.budget(m), max_pick)].tolist():
            if gain[i] > 0:
                Xp[i] = best_x[i]
        return Xp, yb.clone()

    def vertex(self, Xb, yb, gen, max_pick):
        Xp = Xb.clone()
        n = min(self.budget(Xb.shape[0]), max_pick)
        rows = torch.randperm(Xb.shape[0], generator=gen)[:n]
        V = self.random_vertex(Xb, gen)
        Xp[rows] = V[rows]
        return Xp, yb.clone()

    def check_rows(self, Xb, Xp):
        """Each row of Xp is in its row's set (no budget)."""
        raise NotImplementedError

    def check(self, Xb, yb, Xp, yp):
        assert torch.equal(yp, yb), "labels must stay clean"
        changed = (Xp != Xb).any(1)
        assert int(changed.sum()) <= self.budget(Xb.shape[0]), f"{int(changed.sum())} samples changed, k={self.k}"
        self.check_rows(Xb, Xp)


def _sparse_descent(X, G, n: int, size: float):
    """Per row, the ``n`` features of largest ``|G|`` moved by ``-size * sign(G)`` (the
    linearised minimiser over "at most n features, each by at most size"; with n = 1 also the
    l1-ball vertex)."""
    top = torch.topk(G.abs(), n, dim=1).indices
    D = torch.zeros_like(X)
    D.scatter_(1, top, -size * _sign(G.gather(1, top)))
    return X + D


class L0Attack(RowAttack):
    def __init__(self, eps, s, k):
        self.eps, self.s, self.k = eps, s, k

    def threat(self):
        return L0Features(self.eps, self.s, k=self.k)

    def lmo(self, X, G):
        return _sparse_descent(X, G, self.s, self.eps)

    def random_vertex(self, X, gen):
        m, d = X.shape
        D = torch.zeros_like(X)
        for i in range(m):
            f = torch.randperm(d, generator=gen)[: self.s]
            D[i, f] = self.eps * torch.where(torch.rand(self.s, generator=gen) < 0.5, -1.0, 1.0).to(F64)
        return X + D

    def check_rows(self, Xb, Xp):
        D = Xp - Xb  # exact: dyadic data and eps
        assert ((D != 0).sum(1) <= self.s).all(), "more than s features changed"
        assert (D.abs() <= self.eps).all() and (Xp <= Xb + self.eps).all() and (Xp >= Xb - self.eps).all()


class L1Attack(RowAttack):
    def __init__(self, eps1, k):
        self.eps1, self.k = eps1, k

    def threat(self):
        return L1Features(self.eps1, k=self.k)

    def lmo(self, X, G):
        return _sparse_descent(X, G, 1, self.eps1)

    def random_vertex(self, X, gen):
        m, d = X.shape
        D = torch.zeros_like(X)
        f = torch.randint(0, d, (m,), generator=gen)
        D[torch.arange(m), f] = self.eps1 * torch.where(torch.rand(m, generator=gen) < 0.5, -1.0, 1.0).to(F64)
        return X + D

    def check_rows(self, Xb, Xp):
        # exact: Xp - Xb are dyadic multiples of 2^-16 far from overflow; no tolerance
        assert ((Xp - Xb).abs().sum(1) <= self.eps1).all(), "l1 budget exceeded"


class MissingAttack(RowAttack):
    def __init__(self, features, low, high, k):
        self.features, self.low, self.high, self.k = list(features), low, high, k

    def threat(self):
        return MissingValues(self.features, self.low, self.high, k=self.k)

    def lmo(self, X, G):
        # min of g * x over {clean} U [low, high]: low if g > 0, high if g < 0, compared with clean
        Xp = X.clone()
        for f in self.features:
            g, c = G[:, f], X[:, f]
            v = torch.where(g > 0, torch.full_like(c, self.low), torch.full_like(c, self.high))
            Xp[:, f] = torch.where(g * v < g * c, v, c)
        return Xp

    def extra_candidates(self, X):
        out = []
        for fills in itertools.product([None, self.low, self.high], repeat=len(self.features)):
            Xc = X.clone()
            for f, v in zip(self.features, fills):
                if v is not None:
                    Xc[:, f] = v
            out.append(Xc)
        return torch.stack(out)

    def random_vertex(self, X, gen):
        Xc = X.clone()
        for f in self.features:
            u = torch.randint(0, 3, (X.shape[0],), generator=gen)
            Xc[:, f] = torch.where(u == 0, X[:, f], torch.where(u == 1, torch.full_like(X[:, f], self.low), torch.full_like(X[:, f], self.high)))
        return Xc

    def check_rows(self, Xb, Xp):
        other = [f for f in range(Xb.shape[1]) if f not in self.features]
        assert torch.equal(Xp[:, other], Xb[:, other]), "an unlisted feature changed"
        D = Xp[:, self.features]
        ok = (D == Xb[:, self.features]) | ((D >= self.low) & (D <= self.high))
        assert ok.all(), "a missing value outside [low, high]"


class FiniteAttack(RowAttack):
    """FeatureValues and OneHotFeature: finite per-sample sets, every candidate evaluated."""

    fw_iters = 0

    def __init__(self, k, feature=None, values=None, onehot=None):
        self.k, self.feature, self.values, self.onehot = k, feature, values, onehot

    def threat(self):
        if self.onehot is not None:
            return OneHotFeature(self.onehot, k=self.k)
        return FeatureValues(self.feature, self.values, k=self.k)

    def _options(self, X):
        out = []
        if self.onehot is not None:
            for c in range(len(self.onehot)):
                Xc = X.clone()
                Xc[:, self.onehot] = 0.0
                Xc[:, self.onehot[c]] = 1.0
                out.append(Xc)
        else:
            for v in self.values:
                Xc = X.clone()
                Xc[:, self.feature] = v
                out.append(Xc)
        return torch.stack(out)

    def extra_candidates(self, X):
        return self._options(X)

    def random_vertex(self, X, gen):
        opts = self._options(X)
        pick = torch.randint(0, opts.shape[0], (X.shape[0],), generator=gen)
        return opts[pick, torch.arange(X.shape[0])]

    def check_rows(self, Xb, Xp):
        cols = self.onehot if self.onehot is not None else [self.feature]
        other = [f for f in range(Xb.shape[1]) if f not in cols]
        assert torch.equal(Xp[:, other], Xb[:, other]), "a column outside the threat changed"
        for i in range(Xb.shape[0]):
            if torch.equal(Xp[i], Xb[i]):
                continue
            if self.onehot is not None:
                g = Xp[i, self.onehot]
                assert ((g == 0) | (g == 1)).all() and float(g.sum()) == 1.0, "not a one-hot category"
            else:
                assert float(Xp[i, self.feature]) in self.values, "a value outside the set"


class TriggerAttack(Attack):
    """One pattern per batch shared by every picked sample; picked samples get ``target``."""

    def __init__(self, mask, eps, k, target):
        self.mask, self.eps, self.k, self.target = list(mask), eps, k, target
        self.m = torch.tensor(mask, dtype=F64)

    def threat(self):
        return SharedTrigger(self.mask, self.eps, k=self.k, target=self.target)

    def _apply(self, Xb, yb, S, delta):
        Xp, yp = Xb.clone(), yb.clone()
        for i in S:
            Xp[i] = Xb[i] + delta
            if self.target is not None:
                yp[i] = float(self.target)
        return Xp, yp

    def _lab(self, yb):
        return yb.clone() if self.target is None else torch.full_like(yb, float(self.target))

    def _fit(self, net, Xb, yb, loss, obj, trials, v0, delta0):
        """Frank-Wolfe on the shared pattern for each candidate picked set S in ``trials`` (all
        trials in one call per iteration); returns one (true total value, delta) per trial."""
        ylab = self._lab(yb)
        sizes = [len(S) for S in trials]
        labs = torch.cat([ylab[S] for S in trials])
        cands = [[torch.zeros_like(self.m), delta0] for _ in trials]
        cur = [delta0] * len(trials)
        for _ in range(self.fw_iters):
            rows = torch.cat([Xb[S] + dl for S, dl in zip(trials, cur)])
            _, G = sample_values(net, rows, labs, loss, obj, need_dx=True)
            cur = [-self.eps * _sign(g.sum(0)) * self.m for g in torch.split(G, sizes)]  # shared vertex
            for c, dl in zip(cands, cur):
                c.append(dl)
        nc = len(cands[0])
        rows = torch.cat([Xb[S] + dl for S, c in zip(trials, cands) for dl in c])
        Y = torch.cat([ylab[S] for S in trials for _ in range(nc)])
        v, _ = sample_values(net, rows, Y, loss, obj)
        sums = [float(x.sum()) for x in torch.split(v, [s for s in sizes for _ in range(nc)])]
        out = []
        for t, S in enumerate(trials):
            rest = float(v0.sum() - v0[S].sum())
            tot = [rest + sums[t * nc + c] for c in range(nc)]
            c = min(range(nc), key=tot.__getitem__)
            out.append((tot[c], cands[t][c]))
        return out

    def guided(self, net, Xb, yb, loss, obj, max_pick):
        n = Xb.shape[0]
        kk = min(self.budget(n), max_pick)
        v0, _ = sample_values(net, Xb, yb, loss, obj)
        S, delta, cur = [], torch.zeros_like(self.m), float(v0.sum())
        while len(S) < kk:  # greedy: add the sample whose pick (with a re-fitted pattern) helps most
            free = [i for i in range(n) if i not in S]
            fits = self._fit(net, Xb, yb, loss, obj, [S + [i] for i in free], v0, delta)
            t = min(range(len(free)), key=lambda t: fits[t][0])
            if not fits[t][0] < cur:
                break
            S, (cur, delta) = S + [free[t]], fits[t]
        return self._apply(Xb, yb, S, delta)

    def vertex(self, Xb, yb, gen, max_pick):
        n = min(self.budget(Xb.shape[0]), max_pick)
        S = torch.randperm(Xb.shape[0], generator=gen)[:n].tolist()
        delta = self.eps * torch.where(torch.rand(self.m.shape, generator=gen) < 0.5, -1.0, 1.0).to(F64) * self.m
        return self._apply(Xb, yb, S, delta)

    def check(self, Xb, yb, Xp, yp):
        picked = ((Xp != Xb).any(1) | (yp != yb).reshape(Xb.shape[0], -1).any(1)).nonzero().flatten().tolist()
        assert len(picked) <= self.budget(Xb.shape[0]), f"{len(picked)} samples carry the trigger, k={self.k}"
        if not picked:
            return
        delta = Xp[picked[0]] - Xb[picked[0]]  # exact (dyadic data and eps)
        assert torch.equal(delta * (1 - self.m), torch.zeros_like(delta)), "trigger off the mask"
        assert (delta.abs() <= self.eps).all(), "trigger larger than eps"
        for i in picked:
            assert torch.equal(Xp[i] - Xb[i], delta), "the pattern is not shared"
            if self.target is None:
                assert torch.equal(yp[i], yb[i]), "labels must stay clean without a target"
            else:
                assert float(yp[i]) == self.target, "a triggered sample without the target label"


# ---------------------------------------------------------------------------------------------
# multi-step runs
# ---------------------------------------------------------------------------------------------
STRATEGIES = {  # which attacker acts at steps 0, 1, 2, 3
    "guided": ("g", "g", "g", "g"),
    "guided/vertex": ("g", "v", "g", "v"),
    "vertex/guided": ("v", "g", "v", "g"),
    "vertex": ("v", "v", "v", "v"),  # the baseline: random corners only
}


def attacked_run(model, X, y, loss, lr, attack, obj, strategy, seed=0, fewer=False):
    """Parameters after plain SGD (``attacks.sgd_train``) with ``attack`` poisoning every batch:
    guided steps ("g", towards ``obj``) and random vertex steps ("v") as ``strategy`` says;
    ``fewer``: every step at most a random number (0..k) of samples."""
    gen = torch.Generator().manual_seed(seed)
    plan = STRATEGIES[strategy]
    step = [0]

    def poison(net, Xb, yb, lr_):
        kind = plan[step[0] % len(plan)]
        step[0] += 1
        cap = Xb.shape[0]
        if fewer or kind == "v":
            cap = int(torch.randint(0 if fewer else 1, attack.budget(Xb.shape[0]) + 1, (1,), generator=gen))
        if kind == "g":
            Xp, yp = attack.guided(net, Xb, yb, loss, obj, cap)
        else:
            Xp, yp = attack.vertex(Xb, yb, gen, cap)
        attack.check(Xb, yb, Xp, yp)  # the attack really is inside the threat set
        return Xp, yp

    return flat_state(sgd_train(model, X, y, loss, epochs=EPOCHS, lr=lr, batch_size=B, poison=poison))


def coordinate(model, flat_index):
    """(name, index inside the tensor) of a flat parameter index (state_dict order)."""
    off = 0
    for n, p in model.state_dict().items():
        if flat_index < off + p.numel():
            return n, flat_index - off
        off += p.numel()
    raise IndexError(flat_index)


def data(loss, d, onehot=None):
    """6 samples (two seeds of ``make_data``) rounded to the grid 2^-16 Z (exact attacks)."""
    X1, y1 = make_data(loss, d, seed=1, onehot=onehot)
    X2, y2 = make_data(loss, d, seed=9, onehot=onehot)
    X, y = torch.cat([X1, X2]), torch.cat([y1, y2])
    X = torch.round(X * GRID) / GRID
    if loss == "mse":
        y = torch.round(y * GRID) / GRID
    return X, y


# ---------------------------------------------------------------------------------------------
# the cases: id -> (d, loss, lr, attack, MIBP modes)
# ---------------------------------------------------------------------------------------------
BOTH = ("per_sample", "joint")
CASES = {
    "l0-hinge": (3, "hinge", 0.3, lambda: L0Attack(0.25, 1, k=2), BOTH),
    "l0_all-bce": (3, "bce", 0.5, lambda: L0Attack(0.25, 2, k=None), ()),
    "l1-mse": (3, "mse", 0.2, lambda: L1Attack(0.25, k=1), BOTH),
    "l1_all-hinge": (3, "hinge", 0.3, lambda: L1Attack(0.375, k=None), ()),
    "missing-hinge": (3, "hinge", 0.3, lambda: MissingAttack([0, 2], -0.5, 0.5, k=1), BOTH),
    "missing_all-mse": (3, "mse", 0.3, lambda: MissingAttack([1], -0.5, 0.5, k=None), ()),
    "trigger_target-hinge": (3, "hinge", 0.3, lambda: TriggerAttack([1, 1, 0], 0.25, k=2, target=0), BOTH),
    "trigger_target_all-hinge": (3, "hinge", 0.3, lambda: TriggerAttack([0, 1, 1], 0.25, k=None, target=1), ()),
    "trigger_notarget-mse": (3, "mse", 0.3, lambda: TriggerAttack([0, 1, 1], 0.25, k=None, target=None), ("per_sample",)),
    "feature_values-hinge": (3, "hinge", 0.3, lambda: FiniteAttack(1, feature=0, values=[-1.0, 0.5, 2.0]), ("joint",)),
    "onehot-hinge": (4, "hinge", 0.3, lambda: FiniteAttack(2, onehot=[1, 2, 3]), ("joint",)),
    "onehot_all-mse": (4, "mse", 0.2, lambda: FiniteAttack(None, onehot=[1, 2, 3]), ()),
}
N_COORDS = 4  # directions: the widest coordinates of the interval box, both signs


@pytest.mark.parametrize("case_id", list(CASES))
def test_guided_multistep_attacks_stay_in_boxes(case_id, record_property):
    d, loss, lr, attack_f, modes = CASES[case_id]
    X, y = data(loss, d, [1, 2, 3] if d == 4 else None)
    model = make_model(d, loss, seed=2)
    attack = attack_f()
    boxes = {"interval": box(model, X, y, attack.threat(), loss, epochs=EPOCHS, lr=lr)[:2]}
    for mode in modes:
        lo, hi, res = box(model, X, y, attack.threat(), loss, method="mibp", mode=mode, epochs=EPOCHS, lr=lr)
        assert sum(s.fallback_bounds for s in res.log) == 0, f"{case_id} {mode}: the solver fell back to intervals"
        boxes[f"mibp {mode}"] = (lo, hi)

    clean = flat_state(sgd_train(model, X, y, loss, epochs=EPOCHS, lr=lr, batch_size=B))
    ilo, ihi = boxes["interval"]
    coords = torch.argsort(ihi - ilo, descending=True)[:N_COORDS].tolist()
    runs = {}  # (j, s, strategy) -> parameters
    for j in coords:
        name, jj = coordinate(model, j)
        for s in (1.0, -1.0):
            for r, strategy in enumerate(STRATEGIES):
                runs[j, s, strategy] = attacked_run(model, X, y, loss, lr, attack, (name, jj, s), strategy, seed=17 * j + r)
            runs[j, s, "fewer"] = attacked_run(model, X, y, loss, lr, attack, (name, jj, s), "guided", fewer=True, seed=j)
    for strategy in STRATEGIES:  # maximise the training loss
        runs[None, 0.0, strategy] = attacked_run(model, X, y, loss, lr, attack, None, strategy, seed=5)
    P = torch.stack(list(runs.values()))
    for what, (lo, hi) in boxes.items():
        assert_contains(lo, hi, P, f"{case_id} {what}")

    # the attack does something: the pushed coordinate moves at least as far as without poisoning
    # (measured: every direction in every case but trigger_notarget-mse, 7 of 8)
    dirs = [(j, s) for j in coords for s in (1.0, -1.0)]
    moved = [s * float(runs[j, s, "guided"][j] - clean[j]) >= 0 for j, s in dirs]
    assert sum(moved) > len(moved) / 2, f"{case_id}: the guided attack beat clean training in {sum(moved)} of {len(moved)} directions"
    # and it pushes further than random corners (measured in the module docstring's table)
    push = {st: sum(s * float(runs[j, s, st][j] - clean[j]) for j, s in dirs) for st in ("guided", "vertex")}
    assert push["guided"] > push["vertex"], f"{case_id}: guided {push['guided']:.3e} vs random corners {push['vertex']:.3e}"
    # how far the best run gets towards each bound: the fraction of the gap between the clean
    # value and the bound (see the table in the module docstring); recorded, not asserted
    for what, (lo, hi) in boxes.items():
        fr = []
        for j, s in dirs:
            gap = float(hi[j] - clean[j]) if s > 0 else float(clean[j] - lo[j])
            fr.append(max(s * float(p[j] - clean[j]) for p in P) / gap if gap > 0 else 1.0)
        record_property(f"reached {what}", f"mean {sum(fr) / len(fr):.2f} max {max(fr):.2f}")


# ---------------------------------------------------------------------------------------------
# the checks themselves reject batches just outside the threat sets
# ---------------------------------------------------------------------------------------------
def test_threat_set_checks_reject_outside_batches():
    X, y = data("hinge", 3)
    Xb, yb = X[:3], y[:3]

    def rejects(attack, Xp, yp):
        with pytest.raises(AssertionError):
            attack.check(Xb, yb, Xp, yp)

    def moved(i, f, dv):
        Xp = Xb.clone()
        Xp[i, f] += dv
        return Xp

    l0 = L0Attack(0.25, 1, k=2)
    l0.check(Xb, yb, moved(0, 0, 0.25), yb)
    rejects(l0, moved(0, 0, 0.25 + 2**-16), yb)  # |change| > eps
    rejects(l0, moved(0, 1, 0.25) + moved(0, 0, 0.25) - Xb, yb)  # two features, s = 1
    rejects(l0, moved(0, 0, 0.25) + moved(1, 0, 0.25) + moved(2, 0, 0.25) - 2 * Xb, yb)  # 3 samples, k = 2
    rejects(l0, Xb, 1 - yb)  # labels changed
    l1 = L1Attack(0.375, k=None)
    l1.check(Xb, yb, moved(0, 0, 0.25) + moved(0, 1, -0.125) - Xb, yb)
    rejects(l1, moved(0, 0, 0.25) + moved(0, 1, -0.125 - 2**-16) - Xb, yb)
    mv = MissingAttack([0, 2], -0.5, 0.5, k=1)
    mv.check(Xb, yb, moved(0, 0, -float(Xb[0, 0]) + 0.5), yb)
    rejects(mv, moved(0, 0, -float(Xb[0, 0]) + 0.5 + 2**-16), yb)
    rejects(mv, moved(0, 1, -float(Xb[0, 1])), yb)
    fv = FiniteAttack(1, feature=0, values=[-1.0, 0.5, 2.0])
    fv.check(Xb, yb, moved(0, 0, 2.0 - float(Xb[0, 0])), yb)
    rejects(fv, moved(0, 0, 1.0 - float(Xb[0, 0])), yb)
    tr = TriggerAttack([1, 1, 0], 0.25, k=2, target=0)
    d = torch.tensor([0.25, -0.125, 0.0], dtype=F64)
    Xp = Xb.clone()
    Xp[[0, 1]] += d
    yp = yb.clone()
    yp[[0, 1]] = 0.0
    tr.check(Xb, yb, Xp, yp)
    rejects(tr, Xp, yb)  # a triggered sample keeps its label 1
    Xq = Xp.clone()
    Xq[1, 1] += 2**-16
    rejects(tr, Xq, yp)  # not the same pattern
    Xq = Xp.clone()
    Xq[[0, 1], 2] += 0.125
    rejects(tr, Xq, yp)  # off the mask
    Xq, yq = Xp.clone(), yp.clone()
    Xq[2] += d
    yq[2] = 0.0
    rejects(tr, Xq, yq)  # three samples, k = 2
