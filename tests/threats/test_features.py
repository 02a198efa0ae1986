"""Structured threat models: one-hot groups, missing values, L0/L1 features, a shared trigger,
unions and a global budget (``mibpcert.threats``), and the backdoor certificate.

For every threat, on tiny instances (3-3-1 or 4-3-1 nets, 3 samples, one SGD step), the poisoned
data sets are listed in plain terms here (never through mibpcert's regions): every one of them
for finite sets, box corners plus dense random samples for continuous ones. Each is trained with
one plain torch SGD step (``tests/attacks.py``). Then

* the interval box and both MIBP boxes (``per_sample`` and ``joint``) contain every trained
  parameter vector, without tolerance;
* for finite sets and an exact backend (Gurobi, else SCIP) the ``joint`` bounds equal the
  enumerated minimum and maximum (within ``1e-5 (1 + |v|)``): the encoding is exact. At step 1 the
  parameter box is a point, yet the first-layer gradient ``delta x^T`` still multiplies two
  data-dependent quantities, so a McCormick backend would not be exact here;
* the raw solver bounds of the joint program (before the intersection with the interval box) lie
  inside the interval box;
* the MIP box is strictly tighter than the interval box for FeatureValues, L0Features and
  SharedTrigger (measured width ratios in the comments);
* bad parameters raise a clear ValueError before training, and every threat runs through
  ``certified_train`` (interval, MIBP per_sample and joint) and through the CLI.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from attacks import sgd_train
from mibpcert import TrainConfig, certified_train, describe, mlp
from mibpcert.backdoor import backdoor_certificate
from mibpcert.data_checks import check_training_data
from mibpcert.encode.training_step import TraceBounds, joint_program
from mibpcert.interval.step import interval_step
from mibpcert.interval.tensor import Interval
from mibpcert.solvers import SolveOptions, SolverUnavailable, available_backends, get_backend
from mibpcert.threats import (
    Both,
    FeatureValues,
    GlobalBudget,
    L0Features,
    L1Features,
    LabelFlip,
    LinfFeatures,
    MissingValues,
    OneHotFeature,
    SharedTrigger,
    TaskInfo,
    Union,
    from_config,
)

F64 = torch.float64
LR = 0.5
B = 3
_BACKENDS = available_backends(probe_pyomo=False)
EXACT = "gurobi" if "gurobi" in _BACKENDS else ("scip" if "scip" in _BACKENDS else None)
needs_exact = pytest.mark.skipif(EXACT is None, reason="needs an exact backend (gurobipy or pyscipopt)")


# ---------------------------------------------------------------------------------------------
# data, one concrete SGD step, certified boxes
# ---------------------------------------------------------------------------------------------
def make_data(loss: str, d: int = 3, seed: int = 0, onehot: list[int] | None = None):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, d, dtype=F64, generator=g)
    if onehot:
        cats = torch.tensor([0, 1, 2, 0, 1][:B]) % len(onehot)
        X[:, onehot] = torch.nn.functional.one_hot(cats, len(onehot)).to(F64)
    if loss == "mse":
        y = (X[:, :1] - 0.5 * X[:, 1:2]).to(F64)
    elif loss == "ce":
        y = torch.tensor([0.0, 1.0, 2.0], dtype=F64)[:B]
    else:
        y = torch.tensor([1.0, 0.0, 1.0], dtype=F64)[:B]
    return X, y


def make_model(d: int, loss: str, seed: int = 0):
    return mlp([d, 3, 3 if loss == "ce" else 1], seed=seed)


def flat_state(net) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.state_dict().values()])


def trained(model, datasets, loss, lr=LR, batch_size=B, epochs=1) -> torch.Tensor:
    """(n, P): the parameters after plain torch SGD on each poisoned data set."""
    rows = []
    for Xp, yp in datasets:
        net = sgd_train(model, Xp, yp, loss, epochs=epochs, lr=lr, batch_size=batch_size)
        rows.append(flat_state(net))
    return torch.stack(rows)


def box(model, X, y, threat, loss, method="interval", mode="per_sample", backend="highs", lr=LR, epochs=1,
        batch_size=B):
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, loss=loss, method=method, mode=mode,
                      backend=backend, time_limit=60.0)
    try:
        res = certified_train(model, X, y, threat, cfg)
    except SolverUnavailable as e:
        pytest.skip(f"{backend}: {e}")
    names = list(model.state_dict())
    lo = torch.cat([res.param_bounds[n][0].reshape(-1) for n in names])
    hi = torch.cat([res.param_bounds[n][1].reshape(-1) for n in names])
    return lo, hi, res


def assert_contains(lo, hi, P, what):
    out = (P < lo) | (P > hi)
    assert not out.any(), (
        f"{what}: {int(out.any(1).sum())} of {P.shape[0]} poisoned runs leave the box, by up to "
        f"{float(torch.maximum(lo - P, P - hi).max()):.3e}"
    )


def assert_inside(inner, outer, what, tol=1e-12):
    (lo, hi), (olo, ohi) = inner, outer
    pad = tol * (1 + torch.maximum(olo.abs(), ohi.abs()))
    assert (lo >= olo - pad).all() and (hi <= ohi + pad).all(), what


def mean_width(lo, hi) -> float:
    return float((hi - lo).mean())


def raw_joint_bounds(model, X, y, threat, loss, backend, lr=LR):
    """Solver bounds of the step-1 joint program, without the intersection with the interval box."""
    spec = describe(model)
    Xc, yc, info = check_training_data(spec, X, y, loss, X.shape[0], F64, "cpu")
    threat.validate(info)
    region = threat.region(Xc, yc, info)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    pbox = {n: Interval.point(p) for n, p in state.items()}
    sb = interval_step(spec, pbox, region, loss, lr)
    tb = TraceBounds.of(sb.base)
    if sb.poisoned is not None:
        tb = tb.hull(TraceBounds.of(sb.poisoned))
    prog = joint_program(spec, pbox, state, threat, region, Xc, yc, tb, loss, info.task, lr, 0.0, 4)
    try:
        res = get_backend(backend).bound(prog.program, prog.exprs, SolveOptions(time_limit=60.0))
    except SolverUnavailable as e:
        pytest.skip(f"{backend}: {e}")
    n = sum(p.numel() for p in state.values())
    lo, hi = torch.full((n,), -torch.inf, dtype=F64), torch.full((n,), torch.inf, dtype=F64)
    for t, (l, h) in prog.constants.items():
        lo[t], hi[t] = l, h
    for t, r in zip(prog.targets, res):
        lo[t], hi[t] = r.lower, r.upper
    return lo, hi


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


# ---------------------------------------------------------------------------------------------
# the cases
# ---------------------------------------------------------------------------------------------
def _cases():
    """id: (d, loss, threat factory, poisoned-set factory (X, y) -> list, finite?)."""
    oh = [1, 2, 3]
    return {
        "feature_values-mse": (3, "mse", lambda: FeatureValues(0, [-1.0, 0.5, 2.0], k=1),
                               lambda X, y: feature_values_sets(X, y, 0, [-1.0, 0.5, 2.0], 1), True),
        "feature_values_all-hinge": (3, "hinge", lambda: FeatureValues(1, [-1.0, 1.0]),
                                     lambda X, y: feature_values_sets(X, y, 1, [-1.0, 1.0], None), True),
        "onehot-hinge": (4, "hinge", lambda: FeatureValues(feature=oh, values="onehot", k=2),
                         lambda X, y: onehot_sets(X, y, oh, 2), True),
        "onehot_all-mse": (4, "mse", lambda: OneHotFeature(oh), lambda X, y: onehot_sets(X, y, oh, None), True),
        "missing-mse": (3, "mse", lambda: MissingValues([0, 2], -0.5, 0.5, k=1),
                        lambda X, y: missing_sets(X, y, [0, 2], -0.5, 0.5, 1), False),
        "l0-hinge": (3, "hinge", lambda: L0Features(0.3, 1, k=2), lambda X, y: l0_sets(X, y, 0.3, 1, 2), False),
        "l0_all-mse": (3, "mse", lambda: L0Features(0.2, 2), lambda X, y: l0_sets(X, y, 0.2, 2, None, n_random=3, limit=600), False),
        "l1-mse": (3, "mse", lambda: L1Features(0.3, k=2), lambda X, y: l1_sets(X, y, 0.3, 2), False),
        "trigger-hinge": (3, "hinge", lambda: SharedTrigger([1, 1, 0], 0.3, k=2, target=1),
                          lambda X, y: trigger_sets(X, y, [1, 1, 0], 0.3, 2, 1), False),
        "trigger_notarget-mse": (3, "mse", lambda: SharedTrigger([0, 1, 1], 0.3, k=None),
                                 lambda X, y: trigger_sets(X, y, [0, 1, 1], 0.3, None, None), False),
        "union_finite-mse": (4, "mse", lambda: Union(FeatureValues(0, [-1.0, 1.0], k=1), OneHotFeature(oh, k=1)),
                             lambda X, y: feature_values_sets(X, y, 0, [-1.0, 1.0], 1) + onehot_sets(X, y, oh, 1), True),
        "union_boxes-hinge": (3, "hinge", lambda: Union(FeatureValues(0, [2.0], k=1), LabelFlip(1)),
                              lambda X, y: feature_values_sets(X, y, 0, [2.0], 1) + flip_sets(X, y, 1), True),
        "union_linf_flip-hinge": (3, "hinge", lambda: Union(LinfFeatures(0.3, k=1), LabelFlip(1)),
                                  lambda X, y: l0_sets(X, y, 0.3, 3, 1, n_random=4) + flip_sets(X, y, 1), False),
        "global_budget-mse": (3, "mse", lambda: GlobalBudget(FeatureValues(2, [-1.5, 1.5]), 1),
                              lambda X, y: feature_values_sets(X, y, 2, [-1.5, 1.5], 1), True),
        "both_l0_flip-hinge": (3, "hinge", lambda: Both(L0Features(0.2, 1, k=1), LabelFlip(1), paired=True),
                               lambda X, y: l0_flip_sets(X, y, 0.2, 1, 1), False),
    }


CASES = _cases()


def _setup(case_id):
    d, loss, threat_f, sets_f, finite = CASES[case_id]
    onehot = [1, 2, 3] if d == 4 else None
    X, y = make_data(loss, d, seed=1, onehot=onehot)
    model = make_model(d, loss, seed=2)
    return d, loss, threat_f, X, y, model, sets_f(X, y), finite


@pytest.mark.parametrize("case_id", list(CASES))
def test_interval_and_mibp_contain_every_poisoned_step(case_id):
    d, loss, threat_f, X, y, model, sets, finite = _setup(case_id)
    P = trained(model, sets, loss)
    ilo, ihi, _ = box(model, X, y, threat_f(), loss)
    assert_contains(ilo, ihi, P, f"{case_id} interval")
    backend = EXACT or "highs"
    for mode in ("per_sample", "joint"):
        lo, hi, res = box(model, X, y, threat_f(), loss, method="mibp", mode=mode, backend=backend)
        assert_contains(lo, hi, P, f"{case_id} mibp {mode}")
        assert_inside((lo, hi), (ilo, ihi), f"{case_id}: the {mode} box must lie in the interval box")
        assert res.log[-1].fallback_bounds == 0, f"{case_id} {mode}: solver fell back to intervals"
    if finite and EXACT is not None:
        # exact encoding: the joint bounds are the enumerated extremes
        elo, ehi = P.min(0).values, P.max(0).values
        tol = 1e-5 * (1 + torch.maximum(elo.abs(), ehi.abs()))
        assert bool(((lo - elo).abs() <= tol).all()), (
            f"{case_id}: joint lower bounds differ from the enumerated minimum by {float((lo - elo).abs().max()):.3e}")
        assert bool(((hi - ehi).abs() <= tol).all()), (
            f"{case_id}: joint upper bounds differ from the enumerated maximum by {float((hi - ehi).abs().max()):.3e}")


@needs_exact
@pytest.mark.parametrize("case_id", ["feature_values-mse", "onehot-hinge", "l0-hinge", "trigger-hinge", "union_finite-mse", "missing-mse", "l1-mse"])
def test_raw_joint_bounds_inside_interval_box(case_id):
    """The solver's own bounds (before intersecting) lie inside the interval step's box and
    around every poisoned step."""
    d, loss, threat_f, X, y, model, sets, _ = _setup(case_id)
    P = trained(model, sets, loss)
    ilo, ihi, _ = box(model, X, y, threat_f(), loss)
    rlo, rhi = raw_joint_bounds(model, X, y, threat_f(), loss, EXACT)
    assert bool(torch.isfinite(rlo).all() and torch.isfinite(rhi).all())
    # up to the solver's outward padding (1e-6 (1 + |c|) + 1e-7 |v| for Gurobi) where the interval
    # bound is already exact
    assert_inside((rlo, rhi), (ilo, ihi), f"{case_id}: raw MIP bounds outside the interval box", tol=1e-5)
    assert_contains(rlo, rhi, P, f"{case_id} raw joint")


@needs_exact
@pytest.mark.parametrize(
    "case_id, max_ratio",
    [
        ("feature_values-mse", 0.8),  # measured 0.741: the interval hull [-1, 2] vs three values
        ("l0-hinge", 0.65),  # measured 0.571: at most one of three features moves
        ("trigger-hinge", 0.93),  # measured 0.877: one pattern for both poisoned samples, forced label
        ("trigger_notarget-mse", 0.85),  # measured 0.782: one pattern for all three samples
    ],
)
def test_mip_strictly_tighter(case_id, max_ratio):
    d, loss, threat_f, X, y, model, _, _ = _setup(case_id)
    ilo, ihi, _ = box(model, X, y, threat_f(), loss)
    lo, hi, _ = box(model, X, y, threat_f(), loss, method="mibp", mode="joint", backend=EXACT)
    ratio = mean_width(lo, hi) / mean_width(ilo, ihi)
    assert ratio < max_ratio, f"{case_id}: MIP/interval width ratio {ratio:.3f}"


@needs_exact
def test_shared_trigger_sharing_is_exact():
    """Every sample may carry the trigger (k=None): the joint program shares one pattern, so
    independent per-sample patterns (not allowed by the threat) leave the joint box while the
    shared ones stay inside; per_sample mode, which relaxes the sharing, contains both."""
    d, loss, threat_f, X, y, model, sets, _ = _setup("trigger_notarget-mse")
    lo, hi, _ = box(model, X, y, threat_f(), loss, method="mibp", mode="joint", backend=EXACT)
    plo, phi, _ = box(model, X, y, threat_f(), loss, method="mibp", mode="per_sample", backend=EXACT)
    corners = [torch.tensor(c, dtype=F64) * 0.3 for c in itertools.product([-1.0, 1.0], repeat=2)]
    indep = []
    for cs in itertools.product(corners, repeat=B):
        Xp = X.clone()
        for i, c in enumerate(cs):
            Xp[i, [1, 2]] = X[i, [1, 2]] + c
        indep.append((Xp, y))
    Pi = trained(model, indep, loss)
    escaped = ((Pi < lo - 1e-9) | (Pi > hi + 1e-9)).any(1)
    assert int(escaped.sum()) >= len(indep) // 2  # measured: 48 of 64
    assert_contains(plo, phi, Pi, "per_sample relaxes the sharing")
    ratio = mean_width(lo, hi) / mean_width(plo, phi)
    assert ratio < 0.9, f"joint/per_sample width ratio {ratio:.3f}"  # measured 0.858


@needs_exact
def test_global_budget_two_batches():
    """k = 1 poisoned sample in the whole training set, two batches of 3: every data set with at
    most one changed sample lies in the box, and the box is no looser than per-batch k=1."""
    X1, y1 = make_data("mse", 3, seed=1)
    X2, y2 = make_data("mse", 3, seed=5)
    X, y = torch.cat([X1, X2]), torch.cat([y1, y2])
    model = make_model(3, "mse", seed=2)
    g = GlobalBudget(FeatureValues(0, [-1.0, 1.0]), 1)
    sets = [(X, y)]
    for i in range(6):
        for v in (-1.0, 1.0):
            Xp = X.clone()
            Xp[i, 0] = v
            sets.append((Xp, y))
    P = trained(model, sets, "mse", batch_size=3)
    for method, mode in (("interval", "per_sample"), ("mibp", "joint")):
        lo, hi, _ = box(model, X, y, g, "mse", method=method, mode=mode, backend=EXACT, batch_size=3)
        assert_contains(lo, hi, P, f"global budget {method}")
    lo_g, hi_g, _ = box(model, X, y, g, "mse", batch_size=3)
    lo_b, hi_b, _ = box(model, X, y, FeatureValues(0, [-1.0, 1.0], k=1), "mse", batch_size=3)
    assert torch.equal(lo_g, lo_b) and torch.equal(hi_g, hi_b)
    # a global budget above the batch size is fine (every sample of a batch may change)
    lo_big, hi_big, _ = box(model, X, y, GlobalBudget(FeatureValues(0, [-1.0, 1.0]), 5), "mse", batch_size=3)
    lo_all, hi_all, _ = box(model, X, y, FeatureValues(0, [-1.0, 1.0]), "mse", batch_size=3)
    assert torch.equal(lo_big, lo_all) and torch.equal(hi_big, hi_all)


@needs_exact
def test_union_of_boxes_tighter_than_their_hull():
    """Union(l-inf on one sample, one label flip): the selector keeps "features moved" and "label
    flipped" apart; the hull of the two regions (= Both(..., paired=True)) allows both at once."""
    d, loss, threat_f, X, y, model, _, _ = _setup("union_linf_flip-hinge")
    both = Both(LinfFeatures(0.3, k=1), LabelFlip(1), paired=True)
    for mode in ("per_sample", "joint"):
        u = box(model, X, y, threat_f(), loss, method="mibp", mode=mode, backend=EXACT)
        h = box(model, X, y, both, loss, method="mibp", mode=mode, backend=EXACT)
        assert_inside(u[:2], h[:2], "union inside the hull")
        ratio = mean_width(*u[:2]) / mean_width(*h[:2])
        assert ratio < 0.93, f"{mode}: union/hull width ratio {ratio:.3f}"  # measured 0.870 (both modes)


def test_union_is_no_looser_than_hull_and_contains_parts():
    """The union's interval box contains each part's box."""
    d, loss, threat_f, X, y, model, _, _ = _setup("union_finite-mse")
    u = box(model, X, y, threat_f(), loss)
    for part in threat_f().parts:
        p = box(model, X, y, part, loss)
        assert_inside(p[:2], u[:2], "a part's box must lie in the union's box")


def test_multiclass_trigger_and_onehot_contain_poisoned_steps():
    """Cross-entropy (the softmax is relaxed in the MIP): containment only."""
    X, y = make_data("ce", 4, seed=3, onehot=[1, 2, 3])
    model = make_model(4, "ce", seed=4)
    cases = [
        (SharedTrigger([1, 0, 0, 0], 0.4, k=1, target=2), trigger_sets(X, y, [1, 0, 0, 0], 0.4, 1, 2)),
        (OneHotFeature([1, 2, 3], k=1), onehot_sets(X, y, [1, 2, 3], 1)),
        (Union(LinfFeatures(0.4, k=1), LabelFlip(1, to=1)),
         l0_sets(X, y, 0.4, 4, 1, n_random=0) + per_sample_sets(X, y, 1, lambda i: [(X[i], torch.tensor(1.0, dtype=F64))])),
        (Union(SharedTrigger([1, 0, 0, 0], 0.4, k=1, target=0), LabelFlip(1, to=1)),
         trigger_sets(X, y, [1, 0, 0, 0], 0.4, 1, 0) + per_sample_sets(X, y, 1, lambda i: [(X[i], torch.tensor(1.0, dtype=F64))])),
    ]
    for threat, sets in cases:
        P = trained(model, sets, "ce")
        for method, mode in (("interval", "per_sample"), ("mibp", "per_sample"), ("mibp", "joint")):
            lo, hi, _ = box(model, X, y, threat, "ce", method=method, mode=mode, backend=EXACT or "highs")
            assert_contains(lo, hi, P, f"{threat.describe()['type']} ce {method} {mode}")


# ---------------------------------------------------------------------------------------------
# several steps: the boxes contain randomly poisoned multi-step runs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case_id", ["onehot-hinge", "trigger-hinge", "missing-mse", "union_boxes-hinge"])
def test_three_steps_random_attacks(case_id):
    d, loss, threat_f, X1, y1, model, _, _ = _setup(case_id)
    X2, y2 = make_data(loss, d, seed=9, onehot=[1, 2, 3] if d == 4 else None)
    X, y = torch.cat([X1, X2]), torch.cat([y1, y2])
    lo, hi, _ = box(model, X, y, threat_f(), loss, epochs=2, lr=0.2)
    g = torch.Generator().manual_seed(0)
    _, _, _, sets_f, _ = CASES[case_id]

    def poison(net, Xb, yb, lr):  # an adaptive attacker: a random allowed batch at every step
        opts = sets_f(Xb, yb)
        return opts[int(torch.randint(0, len(opts), (1,), generator=g))]

    nets = [sgd_train(model, X, y, loss, epochs=2, lr=0.2, batch_size=B, poison=poison) for _ in range(15)]
    assert_contains(lo, hi, torch.stack([flat_state(n) for n in nets]), f"{case_id} two epochs")


# ---------------------------------------------------------------------------------------------
# backdoor certificate
# ---------------------------------------------------------------------------------------------
def test_backdoor_certificate_sound_against_backdoor_attacks():
    """Fine-tuning a pre-trained net for 2 epochs while at most one sample per batch carries a
    shared trigger and the target label: no point certified safe is flipped to the target by a
    backdoored model on a triggered input, and the attack success stays below the bound."""
    g = torch.Generator().manual_seed(0)
    n, d = 48, 4
    X = torch.randn(n, d, dtype=F64, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).to(F64)
    Xt = torch.randn(40, d, dtype=F64, generator=g)
    yt = (Xt[:, 0] + Xt[:, 1] > 0).to(F64)
    mask = [0, 0, 1, 1]
    eps = 0.05
    trig = SharedTrigger(mask, eps, k=1, target=1)
    model = sgd_train(mlp([d, 5, 1], seed=0), X, y, "bce", epochs=40, lr=1.0, batch_size=n).requires_grad_(True)  # the init
    recipe = dict(epochs=2, lr=0.1, batch_size=16)
    res = certified_train(model, X, y, trig, TrainConfig(loss="bce", **recipe))
    rep = backdoor_certificate(res, Xt, yt, trig)
    assert 0.5 < rep.certified_fraction and rep.success_upper < 0.5  # measured 0.72 / 0.28
    m = torch.tensor(mask, dtype=F64)
    for s in range(6):
        gs = torch.Generator().manual_seed(s)
        delta = eps * (2 * torch.rand(d, generator=gs, dtype=F64) - 1) * m
        if s % 2:
            delta = eps * torch.sign(delta)

        def poison(net, Xb, yb, lr, delta=delta, gs=gs):
            Xp, yp = Xb.clone(), yb.clone()
            i = int(torch.randint(0, Xb.shape[0], (1,), generator=gs))
            Xp[i] = Xb[i] + delta
            yp[i] = 1.0
            return Xp, yp

        net = sgd_train(model, X, y, "bce", poison=poison, **recipe)
        for test_delta in (delta, -delta, eps * m, -eps * m):
            with torch.no_grad():
                z = net(Xt + test_delta)
            assert ((z >= rep.logits.lo) & (z <= rep.logits.hi)).all()
            hit = (z[:, 0] > 0) & (yt == 0)
            assert not (hit & rep.safe).any(), "a point certified safe was flipped to the target"
            assert float(hit.double().sum() / (yt == 0).sum()) <= rep.success_upper + 1e-12


def test_backdoor_certificate_multiclass_and_no_target():
    X, y = make_data("ce", 4, seed=3)
    X, y = torch.cat([X, X + 0.1]), torch.cat([y, y])
    trig = SharedTrigger([1, 0, 0, 0], 0.01, k=1, target=2)
    res = certified_train(mlp([4, 5, 3], seed=1), X, y, trig, TrainConfig(epochs=1, lr=0.05, batch_size=3, loss="ce"))
    rep = backdoor_certificate(res, X, y, trig)
    assert rep.eligible.sum() == int((y != 2).sum())
    assert set(rep.summary()) >= {"attack_success_upper", "certified_not_flipped", "eligible"}
    rep2 = backdoor_certificate(res, X, y, SharedTrigger([1, 0, 0, 0], 0.01, k=1))
    assert rep2.target is None and int(rep2.eligible.sum()) == X.shape[0]
    with torch.no_grad():
        z = res.nominal(X)
    assert ((z >= rep.logits.lo) & (z <= rep.logits.hi)).all()
    with pytest.raises(ValueError, match="mask has 3 entries"):
        backdoor_certificate(res, X, y, SharedTrigger([1, 0, 0], 0.1, k=1))
    with pytest.raises(ValueError, match="target"):
        backdoor_certificate(res, X, y, trig, target=7)


# ---------------------------------------------------------------------------------------------
# bad parameters: a clear ValueError before any training
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: OneHotFeature([1], k=1), "at least 2 columns"),
        (lambda: OneHotFeature([], k=1), "empty"),
        (lambda: OneHotFeature([[0, 1], [1, 2]]), "overlap"),
        (lambda: OneHotFeature([0, 1], k=-1), "k must be"),
        (lambda: FeatureValues([0, 1], "one-hot"), "onehot"),
        (lambda: FeatureValues(0, []), "empty"),
        (lambda: MissingValues([], 0.0, 1.0, k=1), "empty"),
        (lambda: MissingValues([0], 1.0, 0.0, k=1), "low <= high"),
        (lambda: MissingValues([0], float("nan"), 0.0), "finite"),
        (lambda: MissingValues([0, 0], 0.0, 1.0), "twice"),
        (lambda: MissingValues([-1], 0.0, 1.0), "non-negative"),
        (lambda: L0Features(-0.1, 1), "eps"),
        (lambda: L0Features(0.1, 0), "s .* >= 1"),
        (lambda: L0Features(0.1, 1.5), "s .* >= 1"),
        (lambda: L1Features(-1.0), "eps1"),
        (lambda: L1Features(0.1, k=2.5), "k must be"),
        (lambda: SharedTrigger([0, 0, 0], 0.1, k=1), "selects no feature"),
        (lambda: SharedTrigger([0, 2, 1], 0.1, k=1), "0/1"),
        (lambda: SharedTrigger([1, 0], -0.1, k=1), "eps"),
        (lambda: SharedTrigger([1, 0], 0.1, k=1, target=-1), "target"),
        (lambda: SharedTrigger([[1, 0]], 0.1, k=1), "flat"),
        (lambda: Union(LinfFeatures(0.1)), "at least two"),
        (lambda: GlobalBudget(LinfFeatures(0.1), -1), "k must be"),
        (lambda: GlobalBudget(LinfFeatures(0.1), None), "k must be"),
        (lambda: GlobalBudget(GlobalBudget(LinfFeatures(0.1), 1), 2), "nested"),
    ],
)
def test_bad_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "threat, loss, match",
    [
        (OneHotFeature([1, 2, 5]), "hinge", r"columns \[5\] out of range"),
        (MissingValues([3], 0.0, 1.0), "hinge", r"features \[3\] out of range"),
        (SharedTrigger([1, 0], 0.1, k=1), "hinge", "mask has 2 entries"),
        (SharedTrigger([1, 0, 0], 0.1, k=1, target=1), "mse", "classification"),
        (SharedTrigger([1, 0, 0], 0.1, k=1, target=3), "ce", "target class 3 out of range"),
        (L0Features(0.1, 1, k=4), "hinge", "larger than the batch size"),
        (Union(L1Features(0.1, k=5), LabelFlip(1)), "hinge", "larger than the batch size"),
        (GlobalBudget(OneHotFeature([1, 7]), 2), "hinge", "out of range"),
        (GlobalBudget(LabelFlip(None), 2), "mse", "classification"),
    ],
)
def test_bad_parameters_fail_before_training(threat, loss, match, monkeypatch):
    import mibpcert.bounders as bounders_mod

    def no_step(*a, **kw):
        raise AssertionError("training started")

    monkeypatch.setattr(bounders_mod, "interval_step", no_step)
    X, y = make_data(loss if loss != "ce" else "ce", 3, seed=0)
    with pytest.raises(ValueError, match=match):
        certified_train(make_model(3, loss), X, y, threat, TrainConfig(epochs=1, lr=0.1, batch_size=3, loss=loss))


def test_from_config_round_trip():
    tables = [
        {"type": "feature_values", "feature": [1, 2, 3], "values": "onehot", "k": 2},
        {"type": "one_hot_feature", "columns": [[0, 1], [2, 3]]},
        {"type": "missing_values", "features": [0, 2], "low": -1.0, "high": 1.0, "k": 1},
        {"type": "l0_features", "eps": 0.1, "s": 2, "k": 3},
        {"type": "l1_features", "eps1": 0.5},
        {"type": "shared_trigger", "mask": [1, 0, 0, 1], "eps": 0.2, "k": 2, "target": 0},
        {"type": "union", "parts": [{"type": "l1_features", "eps1": 0.5, "k": 1}, {"type": "label_flip", "k": 1}]},
        {"type": "global_budget", "k": 4, "threat": {"type": "linf_features", "eps": 0.1}},
    ]
    for t in tables:
        th = from_config(t)
        again = from_config(th.describe())
        assert again.describe() == th.describe()
    assert isinstance(from_config(tables[0]), OneHotFeature)
    with pytest.raises(ValueError, match="unknown key"):
        from_config({"type": "union", "parts": [{"type": "l1_features", "eps": 0.5}, {"type": "label_flip", "k": 1}]})
    with pytest.raises(ValueError, match="at least two"):
        from_config({"type": "union", "parts": [{"type": "label_flip", "k": 1}]})
    with pytest.raises(ValueError, match="missing the parameter 's'"):
        from_config({"type": "l0_features", "eps": 0.1})


# ---------------------------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------------------------
CLI_THREATS = {
    "onehot": 'type = "feature_values"\nfeature = [0, 1]\nvalues = "onehot"\nk = 2',
    "missing": 'type = "missing_values"\nfeatures = [1]\nlow = -0.5\nhigh = 0.5\nk = 1',
    "l0": 'type = "l0_features"\neps = 0.05\ns = 1\nk = 2',
    "l1": 'type = "l1_features"\neps1 = 0.05',
    "trigger": 'type = "shared_trigger"\nmask = [1, 0]\neps = 0.05\nk = 2\ntarget = 1',
    "union": 'type = "union"\n[[threat.parts]]\ntype = "l1_features"\neps1 = 0.05\nk = 1\n[[threat.parts]]\ntype = "label_flip"\nk = 1',
    "global": 'type = "global_budget"\nk = 3\n[threat.threat]\ntype = "l0_features"\neps = 0.05\ns = 1',
}

CLI_TEMPLATE = """
[data]
name = "two_moons"
n_train = 12
n_test = 10
seed = 0

[model]
hidden = [3]
seed = 0

[threat]
{threat}

[train]
epochs = 1
lr = 0.1
batch_size = 6
loss = "hinge"
{train}
"""


@pytest.mark.parametrize("name", list(CLI_THREATS))
def test_cli_runs_every_threat(name, tmp_path, capsys):
    from mibpcert.cli import main

    train = 'method = "mibp"\nmode = "joint"\nbackend = "highs"' if name in ("union", "trigger") else ""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CLI_TEMPLATE.format(threat=CLI_THREATS[name], train=train))
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    doc = json.loads((out / "report.json").read_text())
    assert doc["summary"]["steps"] == 2
    assert json.dumps(doc).count(from_config(_parse_threat(cfg)).describe()["type"]) >= 1


def test_cli_backdoor_certificate_for_shared_trigger(tmp_path, capsys):
    """A shared trigger in the threat (here inside a union) makes the CLI bound the trigger's
    success on triggered test points: the report lists every trigger with per-point ``safe``
    flags, and no point flagged safe is flipped to the target by a model trained in plain torch
    on trigger-poisoned data and tested with a trigger of the threat's set."""
    from mibpcert import data
    from mibpcert.cli import main

    threat = ('type = "union"\n[[threat.parts]]\ntype = "shared_trigger"\nmask = [1, 0]\neps = 0.1\nk = 2\n'
              'target = 1\n[[threat.parts]]\ntype = "label_flip"\nk = 1')
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CLI_TEMPLATE.format(threat=threat, train=""))
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    assert "trigger success <=" in capsys.readouterr().out
    doc = json.loads((out / "report.json").read_text())
    (bd,) = doc["backdoor"]
    assert (bd["mask"], bd["trigger_eps"], bd["target"]) == ([1, 0], 0.1, 1)
    assert doc["summary"]["trigger_attack_success_upper"] == bd["attack_success_upper"]
    safe, eligible = torch.tensor(bd["per_point"]["safe"]), torch.tensor(bd["per_point"]["eligible"])
    assert bd["eligible"] == int(eligible.sum())
    ds = data.two_moons(n_train=12, n_test=10, seed=0)
    assert torch.equal(eligible, ds.y_test != 1)
    assert abs(bd["attack_success_upper"] - float((~safe & eligible).sum()) / int(eligible.sum())) < 1e-12
    model = mlp([2, 3, 1], seed=0)
    g = torch.Generator().manual_seed(0)
    for trial in range(12):
        delta = torch.tensor([0.1 if trial % 2 else -0.1, 0.0], dtype=F64)
        if trial >= 4:
            delta[0] = 0.1 * (2 * float(torch.rand(1, generator=g, dtype=F64)) - 1)

        def poison(net, Xb, yb, lr, delta=delta):
            Xp, yp = Xb.clone(), yb.clone()
            for i in torch.randperm(Xb.shape[0], generator=g)[: int(torch.randint(0, 3, (1,), generator=g))]:
                Xp[i], yp[i] = Xb[i] + delta, 1.0
            return Xp, yp

        net = sgd_train(model, ds.X_train, ds.y_train, "hinge", epochs=1, lr=0.1, batch_size=6, poison=poison)
        for test_delta in (delta, torch.tensor([0.1, 0.0], dtype=F64), torch.tensor([-0.1, 0.0], dtype=F64)):
            with torch.no_grad():
                hit = net(ds.X_test + test_delta)[:, 0] > 0
            assert not (hit & safe & eligible).any(), "a point certified safe was flipped to the target"
    # the check is not vacuous: some eligible points are certified safe, not all of them
    assert (safe & eligible).any() and (~safe & eligible).any()


def _parse_threat(path: Path) -> dict:
    from mibpcert.cli import load_config

    return load_config(str(path))["threat"]


def test_cli_rejects_bad_threat_tables(tmp_path, capsys):
    from mibpcert.cli import main

    bad = {
        "unknown key": 'type = "l1_features"\neps = 0.05',
        "at least 2 columns": 'type = "one_hot_feature"\ncolumns = [0]',
        "mask has 3 entries": 'type = "shared_trigger"\nmask = [1, 0, 0]\neps = 0.05\nk = 1',
        "unknown key 'epsilon'": 'type = "global_budget"\nk = 3\n[threat.threat]\ntype = "l0_features"\nepsilon = 0.05\ns = 1',
    }
    for msg, table in bad.items():
        cfg = tmp_path / "bad.toml"
        cfg.write_text(CLI_TEMPLATE.format(threat=table, train=""))
        assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert msg in err, err


def test_task_info_validation_direct():
    info = TaskInfo("binary", 2, 4, 3)
    OneHotFeature([0, 1, 2, 3], k=3).validate(info)
    SharedTrigger([1, 0, 0, 1], 0.1, k=3, target=1).validate(info)
    with pytest.raises(ValueError, match="larger than the batch size"):
        MissingValues([0], 0.0, 1.0, k=4).validate(info)
    GlobalBudget(MissingValues([0], 0.0, 1.0), 40).validate(info)  # a global budget may exceed the batch
    np.testing.assert_equal(GlobalBudget(L1Features(0.1), 40).inner(3).k, 3)
