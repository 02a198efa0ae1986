"""The structured-threat setting (formerly the helpers of ``test_threats_structured.py``): tiny
instances (3-3-1 or 4-3-1 nets, 3 samples, one SGD step), one plain torch SGD step per poisoned
data set (``helpers.attacks``), the certified boxes, the raw solver bounds of the joint program,
the cases (id -> threat and its poisoned sets, ``helpers.enumeration``), and the checks that the
per-kind test modules in ``tests/threats/`` run on their cases."""
from __future__ import annotations

import functools

import pytest
import torch

from mibpcert import TrainConfig, certified_train, describe, mlp
from mibpcert.data_checks import check_training_data
from mibpcert.encode.training_step import StepSetting, TraceBounds, joint_program
from mibpcert.losses import get_loss
from mibpcert.steps.interval import interval_step
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
    Union,
)

from .attacks import sgd_train
from .enumeration import (
    feature_values_sets, flip_sets, l0_flip_sets, l0_sets, l1_sets, missing_sets, onehot_sets, trigger_sets,
)

F64 = torch.float64
LR = 0.5
B = 3
_BACKENDS = available_backends(probe_pyomo=False)
EXACT = "gurobi" if "gurobi" in _BACKENDS else ("scip" if "scip" in _BACKENDS else None)


def needs_exact(test):
    """The test needs an exact backend (Gurobi, else SCIP): without one it fails, never skips."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        if EXACT is None:
            pytest.fail("needs an exact backend (gurobipy or pyscipopt), none is installed: pip install -e '.[solvers]'")
        return test(*args, **kwargs)

    return run


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
    except SolverUnavailable as e:  # a missing package or a too small licence: fail, never skip
        pytest.fail(f"{backend} cannot run this check: {e}")
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
    prog = joint_program(StepSetting(spec, pbox, state, threat, get_loss(loss), lr), region, Xc, yc, tb)
    try:
        res = get_backend(backend).bound(prog.program, prog.exprs, SolveOptions(time_limit=60.0))
    except SolverUnavailable as e:  # a missing package or a too small licence: fail, never skip
        pytest.fail(f"{backend} cannot run this check: {e}")
    n = sum(p.numel() for p in state.values())
    lo, hi = torch.full((n,), -torch.inf, dtype=F64), torch.full((n,), torch.inf, dtype=F64)
    for t, (l, h) in prog.constants.items():
        lo[t], hi[t] = l, h
    for t, r in zip(prog.targets, res):
        lo[t], hi[t] = r.lower, r.upper
    return lo, hi


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


def setup_case(case_id):
    d, loss, threat_f, sets_f, finite = CASES[case_id]
    onehot = [1, 2, 3] if d == 4 else None
    X, y = make_data(loss, d, seed=1, onehot=onehot)
    model = make_model(d, loss, seed=2)
    return d, loss, threat_f, X, y, model, sets_f(X, y), finite


def check_every_poisoned_step(case_id):
    d, loss, threat_f, X, y, model, sets, finite = setup_case(case_id)
    P = trained(model, sets, loss)
    ilo, ihi, _ = box(model, X, y, threat_f(), loss)
    assert_contains(ilo, ihi, P, f"{case_id} interval")
    backend = EXACT or "highs"
    for mode in ("per_sample", "joint"):
        lo, hi, res = box(model, X, y, threat_f(), loss, method="mibp", mode=mode, backend=backend)
        assert_contains(lo, hi, P, f"{case_id} mibp {mode}")
        assert_inside((lo, hi), (ilo, ihi), f"{case_id}: the {mode} box must lie in the interval box")
        assert res.log[-1].fallback_bounds == 0, f"{case_id} {mode}: solver fell back to intervals"
    if finite:
        if EXACT is None:  # never skip the exactness check silently
            pytest.fail(f"{case_id}: the exactness check needs an exact backend (gurobipy or pyscipopt)")
        # exact encoding: the joint bounds are the enumerated extremes
        elo, ehi = P.min(0).values, P.max(0).values
        tol = 1e-5 * (1 + torch.maximum(elo.abs(), ehi.abs()))
        assert bool(((lo - elo).abs() <= tol).all()), (
            f"{case_id}: joint lower bounds differ from the enumerated minimum by {float((lo - elo).abs().max()):.3e}")
        assert bool(((hi - ehi).abs() <= tol).all()), (
            f"{case_id}: joint upper bounds differ from the enumerated maximum by {float((hi - ehi).abs().max()):.3e}")


def check_raw_joint_bounds_inside_interval_box(case_id):
    """The solver's own bounds (before intersecting) lie inside the interval step's box and
    around every poisoned step."""
    d, loss, threat_f, X, y, model, sets, _ = setup_case(case_id)
    P = trained(model, sets, loss)
    ilo, ihi, _ = box(model, X, y, threat_f(), loss)
    rlo, rhi = raw_joint_bounds(model, X, y, threat_f(), loss, EXACT)
    assert bool(torch.isfinite(rlo).all() and torch.isfinite(rhi).all())
    # up to the solver's outward padding (1e-6 (1 + |c|) + 1e-7 |v| for Gurobi) where the interval
    # bound is already exact
    assert_inside((rlo, rhi), (ilo, ihi), f"{case_id}: raw MIP bounds outside the interval box", tol=1e-5)
    assert_contains(rlo, rhi, P, f"{case_id} raw joint")


def check_mip_strictly_tighter(case_id, max_ratio):
    d, loss, threat_f, X, y, model, _, _ = setup_case(case_id)
    ilo, ihi, _ = box(model, X, y, threat_f(), loss)
    lo, hi, _ = box(model, X, y, threat_f(), loss, method="mibp", mode="joint", backend=EXACT)
    ratio = mean_width(lo, hi) / mean_width(ilo, ihi)
    assert ratio < max_ratio, f"{case_id}: MIP/interval width ratio {ratio:.3f}"


def check_fails_before_training(threat, loss, match, monkeypatch):
    import mibpcert.bounders as bounders_mod

    def no_step(*a, **kw):
        raise AssertionError("training started")

    monkeypatch.setattr(bounders_mod, "interval_step", no_step)
    X, y = make_data(loss if loss != "ce" else "ce", 3, seed=0)
    with pytest.raises(ValueError, match=match):
        certified_train(make_model(3, loss), X, y, threat, TrainConfig(epochs=1, lr=0.1, batch_size=3, loss=loss))
