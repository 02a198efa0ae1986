"""The poisoned data sets of the structured threats, listed in plain terms (never through
mibpcert's regions): every one of them for finite sets, box corners plus dense random samples for
continuous ones."""
from __future__ import annotations

import itertools

import torch

F64 = torch.float64


# ---------------------------------------------------------------------------------------------
# the poisoned data sets of each threat, in plain terms
# ---------------------------------------------------------------------------------------------
def subsets(n, k):
    k = n if k is None else min(k, n)
    return [list(c) for c in itertools.combinations(range(n), k)]


def per_sample_sets(X, y, k, options, limit=None, seed=0):
    """Every data set where at most k samples take one of ``options(i)`` ((x_row, y_i) pairs, the
    clean one included) and the others stay clean; with ``limit``, at most that many of the
    combinations per subset, drawn at random."""
    out = []
    g = torch.Generator().manual_seed(seed)
    for S in subsets(X.shape[0], k):
        opts = [options(i) for i in S]
        combos = list(itertools.product(*[range(len(o)) for o in opts]))
        if limit is not None and len(combos) > limit:
            combos = [combos[int(j)] for j in torch.randperm(len(combos), generator=g)[:limit]]
        for pick in combos:
            combo = [o[j] for o, j in zip(opts, pick)]
            Xp, yp = X.clone(), y.clone()
            for i, (xr, yr) in zip(S, combo):
                Xp[i], yp[i] = xr, yr
            out.append((Xp, yp))
    return out


def feature_values_sets(X, y, f, values, k):
    def opts(i):
        res = [(X[i], y[i])]
        for v in values:
            xr = X[i].clone()
            xr[f] = v
            res.append((xr, y[i]))
        return res

    return per_sample_sets(X, y, k, opts)


def onehot_sets(X, y, cols, k):
    def opts(i):
        res = [(X[i], y[i])]
        for c in range(len(cols)):
            xr = X[i].clone()
            xr[cols] = 0.0
            xr[cols[c]] = 1.0
            res.append((xr, y[i]))
        return res

    return per_sample_sets(X, y, k, opts)


def missing_sets(X, y, feats, low, high, k, n_random=6, seed=0):
    g = torch.Generator().manual_seed(seed)

    def opts(i):
        res = []
        fills = [None, low, high] + [float(low + (high - low) * torch.rand(1, generator=g, dtype=F64)) for _ in range(n_random)]
        for choice in itertools.product(fills, repeat=len(feats)):
            xr = X[i].clone()
            for f, v in zip(feats, choice):
                if v is not None:
                    xr[f] = v
            res.append((xr, y[i]))
        return res

    return per_sample_sets(X, y, k, opts)


def l0_sets(X, y, eps, s, k, n_random=8, seed=0, limit=None):
    """Vertices (delta in {-eps, 0, eps}^d with at most s nonzeros) and random sparse points."""
    d = X.shape[1]
    g = torch.Generator().manual_seed(seed)
    deltas = [torch.tensor(v, dtype=F64) for v in itertools.product([-eps, 0.0, eps], repeat=d) if sum(x != 0 for x in v) <= s]
    for _ in range(n_random):
        dl = torch.zeros(d, dtype=F64)
        idx = torch.randperm(d, generator=g)[:s]
        dl[idx] = eps * (2 * torch.rand(s, generator=g, dtype=F64) - 1)
        deltas.append(dl)
    return per_sample_sets(X, y, k, lambda i: [(X[i] + dl, y[i]) for dl in deltas], limit=limit, seed=seed)


def l1_sets(X, y, eps1, k, n_random=8, seed=0):
    """Vertices of the l1 ball (+-eps1 e_f), the centre, and random points of the ball."""
    d = X.shape[1]
    g = torch.Generator().manual_seed(seed)
    deltas = [torch.zeros(d, dtype=F64)] + [s * eps1 * torch.eye(d, dtype=F64)[f] for f in range(d) for s in (-1, 1)]
    for _ in range(n_random):
        v = torch.randn(d, generator=g, dtype=F64)
        r = float(torch.rand(1, generator=g, dtype=F64))
        deltas.append(eps1 * r * v / v.abs().sum())
    return per_sample_sets(X, y, k, lambda i: [(X[i] + dl, y[i]) for dl in deltas])


def trigger_sets(X, y, mask, eps, k, target, n_random=8, seed=0):
    """One shared pattern (box corners and random points on the mask) added to every subset of at
    most k samples, whose labels become ``target``."""
    g = torch.Generator().manual_seed(seed)
    m = torch.tensor(mask, dtype=F64)
    idx = [f for f, v in enumerate(mask) if v]
    pats = []
    for signs in itertools.product([-1.0, 1.0], repeat=len(idx)):
        dl = torch.zeros(len(mask), dtype=F64)
        dl[idx] = eps * torch.tensor(signs, dtype=F64)
        pats.append(dl)
    for _ in range(n_random):
        pats.append(eps * (2 * torch.rand(len(mask), generator=g, dtype=F64) - 1) * m)
    out = []
    n = X.shape[0]
    kk = n if k is None else min(k, n)
    for size in range(kk + 1):
        for S in itertools.combinations(range(n), size):
            for dl in pats:
                Xp, yp = X.clone(), y.clone()
                for i in S:
                    Xp[i] = X[i] + dl
                    if target is not None:
                        yp[i] = float(target)
                out.append((Xp, yp))
    return out


def l0_flip_sets(X, y, eps, s, k):
    """Paired: at most k samples, each with an L0 change and/or its label flipped."""
    d = X.shape[1]
    deltas = [torch.tensor(v, dtype=F64) for v in itertools.product([-eps, 0.0, eps], repeat=d) if sum(x != 0 for x in v) <= s]
    return per_sample_sets(X, y, k, lambda i: [(X[i] + dl, c) for dl in deltas for c in (y[i], 1 - y[i])])


def flip_sets(X, y, k, classes=(0.0, 1.0)):
    return per_sample_sets(X, y, k, lambda i: [(X[i], torch.tensor(c, dtype=F64)) for c in classes])
