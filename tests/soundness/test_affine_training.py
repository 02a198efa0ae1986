"""Soundness of the relational methods against poisoning the training set once: ``method="affine"``
and the joint MIBP program on affine forms (``method="mibp", relational=True``).

The affine method certifies the attacker who poisons the training set before training: each
sample's poisoned value (and label) is the same in every epoch, the budget ``k`` still lets the
poisoned samples differ from batch to batch. For every threat and loss below, certified training
runs on a small data set (several epochs, a partial last batch, shuffling, weight decay and step
decay in some cases); then plain torch SGD trains on many fixed poisoned sets drawn from the
threat: uniform points, box vertices, and vertices chosen by the gradient of a final parameter
through the unrolled training. Every final parameter must lie in the certified box (no
tolerance) and every logit of a test point in ``certify(...).logits``.
"""
from __future__ import annotations

import pytest
import torch

from mibpcert import TrainConfig, certified_train, certify, mlp
from mibpcert.threats import Both, FeatureValues, LabelFlip, LabelNoise, LinfFeatures, Union
from tests.helpers.attacks import batch_indices, sgd_train
from tests.helpers.bounds import assert_in_box
from tests.helpers.fixed_poison import guided_vertices, random_points

pytestmark = pytest.mark.slow

F64 = torch.float64
N, BATCH = 12, 5
TEST_EPS = 0.03


def _data(task: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N + 40, 2, generator=g, dtype=F64)
    if task == "binary":
        y = (X[:, 0] * X[:, 1] + 0.3 * X[:, 0] > 0).to(F64)
    elif task == "multiclass":
        y = (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()
    else:
        y = (X[:, :1] ** 2 - X[:, 1:]).to(F64)
    return X[:N], y[:N], X[N:], y[N:]


CASES = {
    # name: (task, loss, outputs, threat, recipe)
    "linf-hinge-shuffle": ("binary", "hinge", 1, lambda: LinfFeatures(0.05), dict(epochs=3, lr=0.3, shuffle=True)),
    "linf-bce-decay": ("binary", "bce", 1, lambda: LinfFeatures(0.05), dict(epochs=3, lr=0.5, weight_decay=0.01, lr_decay=0.9)),
    "linf-ce": ("multiclass", "ce", 3, lambda: LinfFeatures(0.04), dict(epochs=2, lr=0.4, shuffle=True)),
    "linf-noise-mse": ("regression", "mse", 1, lambda: Both(LinfFeatures(0.03), LabelNoise(None, 0.05)), dict(epochs=2, lr=0.05)),
    "linf-k1-hinge": ("binary", "hinge", 1, lambda: LinfFeatures(0.1, k=1), dict(epochs=3, lr=0.3)),
    "flip-k1-hinge": ("binary", "hinge", 1, lambda: LabelFlip(1), dict(epochs=3, lr=0.3)),
    "values-hinge": ("binary", "hinge", 1, lambda: FeatureValues(0, [-1.0, 0.0, 1.0]), dict(epochs=2, lr=0.2, shuffle=True)),
    "union-bce": ("binary", "bce", 1, lambda: Union(LinfFeatures(0.05, k=1), LabelFlip(1)), dict(epochs=2, lr=0.5)),
}


def _recipe(recipe: dict) -> dict:
    return dict(batch_size=BATCH, **recipe)


def _poisoned_sets(name, threat, model, X, y, loss, recipe, gen):
    """Fixed poisoned training sets (X', y') drawn from the threat."""
    r = _recipe(recipe)
    batches = batch_indices(N, BATCH, 0, False)
    out = []
    if name.startswith("linf") and "k1" not in name:
        part = threat.a if isinstance(threat, Both) else threat
        lo, hi = X - part.eps, X + part.eps
        pts = random_points(lo, hi, 3, 3, gen) + guided_vertices(model, X, y, loss, lo, hi, r, 4, gen)
        for Xp in pts:
            yp = y
            if isinstance(threat, Both):  # targets moved too, by a fixed random offset in [-gamma, gamma]
                g = threat.b.gamma
                yp = y + g * (2 * torch.rand(y.shape, generator=gen, dtype=F64) - 1)
            out.append((Xp, yp))
    elif name.startswith("linf-k1") or name.startswith("union"):
        for _ in range(8):
            mask = torch.zeros(N, 1, dtype=F64)
            for idx in batches:  # one poisoned sample per batch (batches do not shuffle here)
                mask[idx[torch.randint(len(idx), (1,), generator=gen)]] = 1.0
            if name.startswith("union") and bool(torch.rand(1, generator=gen) < 0.5):
                out.append((X, torch.where(mask[:, 0] > 0, 1 - y, y)))  # the label part of the union
                continue
            eps = threat.a.eps if name.startswith("union") else threat.eps
            for Xv in random_points(X - eps * mask, X + eps * mask, 1, 1, gen) + guided_vertices(
                    model, X, y, loss, X - eps * mask, X + eps * mask, r, 1, gen):
                out.append((Xv, y))
    elif name.startswith("flip"):
        for _ in range(12):
            yp = y.clone()
            for idx in batches:
                i = idx[torch.randint(len(idx), (1,), generator=gen)]
                yp[i] = 1 - yp[i]
            out.append((X, yp))
    elif name.startswith("values"):
        vals = torch.tensor([-1.0, 0.0, 1.0], dtype=F64)
        for _ in range(12):
            Xp = X.clone()
            change = torch.rand(N, generator=gen) < 0.5
            Xp[change, 0] = vals[torch.randint(3, (int(change.sum()),), generator=gen)]
            out.append((Xp, y))
    return out


METHODS = {
    "affine": dict(method="affine"),
    "relational-mibp": dict(method="mibp", mode="joint", relax="lp", relational=True, time_limit=30.0),
    "relational-milp": dict(method="mibp", mode="joint", relax="milp", relational=True, time_limit=30.0),
}


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_fixed_poisoned_trainings_stay_in_the_relational_box(name, method):
    task, loss, outputs, threat_f, recipe = CASES[name]
    X, y, X_test, y_test = _data(task)
    model = mlp([2, 5, outputs], seed=3)
    cfg = TrainConfig(loss=loss, batch_size=BATCH, **METHODS[method], **recipe)
    res = certified_train(model, X, y, threat_f(), cfg)
    assert res.relational is not None, "the affine forms are not kept for certification"
    if method != "affine":
        assert sum(s.solver_bounds for s in res.log) > 0, "no bound came from the solver: the relational program was not used"
    rep = certify(res, X_test, y_test, test_eps=TEST_EPS)
    gen = torch.Generator().manual_seed(7)
    sets = _poisoned_sets(name, threat_f(), model, X, y, loss, recipe, gen)
    assert len(sets) >= 8, "too few poisoned sets drawn"
    tests = [X_test] + [X_test + TEST_EPS * (2 * torch.rand(X_test.shape, generator=gen, dtype=F64) - 1) for _ in range(3)]
    tests += [X_test + TEST_EPS * torch.where(torch.rand(X_test.shape, generator=gen) < 0.5, 1.0, -1.0).to(F64) for _ in range(3)]
    for t, (Xp, yp) in enumerate(sets):
        net = sgd_train(model, Xp, yp, loss, **_recipe(recipe))
        assert_in_box(res, net, f"{name}: poisoned set {t}")
        for Xt in tests:
            logits = net(Xt)
            assert bool(((logits >= rep.logits.lo) & (logits <= rep.logits.hi)).all()), f"{name}: logits of set {t}"
            if task != "regression":
                pred = (logits[:, 0] > 0).long() if outputs == 1 else logits.argmax(1)
                assert bool((pred[rep.certified] == y_test.long()[rep.certified]).all()), f"{name}: certified but wrong, set {t}"


def test_affine_is_tighter_than_interval_where_nothing_switches():
    """Small eps, full batch: the forms keep the relations the interval box forgets."""
    X, y, _, _ = _data("binary")
    model = mlp([2, 5, 1], seed=3)
    widths = {}
    for method in ("interval", "affine"):
        res = certified_train(model, X, y, LinfFeatures(1e-4), TrainConfig(loss="hinge", method=method, epochs=6, lr=0.3, batch_size=N))
        widths[method] = float(torch.cat([(h - lo).reshape(-1) for lo, h in res.param_bounds.values()]).mean())
    assert widths["affine"] < 0.8 * widths["interval"], widths


@pytest.mark.parametrize("method", sorted(METHODS))
def test_order_reduction_and_a_frozen_layer_stay_sound(method):
    """Few symbols (order reduction merges step symbols every step) and a frozen bias: fixed
    poisoned trainings (random, vertex and gradient-guided) stay inside, the frozen entries stay
    points."""
    X, y, X_test, y_test = _data("binary")
    model = mlp([2, 5, 1], seed=3)
    model[0].bias.requires_grad_(False)
    recipe = dict(epochs=4, lr=0.3, shuffle=True)
    cfg = TrainConfig(loss="hinge", batch_size=BATCH, affine_symbols=40, **METHODS[method], **recipe)
    res = certified_train(model, X, y, LinfFeatures(0.08), cfg)
    P = sum(p.numel() for p in model.parameters())
    assert 0 < max(s.symbols for s in res.log) <= 40 + P < N * 2 + 12 * P, "order reduction did not run"
    lo, hi = res.param_bounds["0.bias"]
    assert torch.equal(lo, hi), "a frozen parameter must stay a point"
    gen = torch.Generator().manual_seed(11)
    sets = random_points(X - 0.08, X + 0.08, 4, 4, gen) + guided_vertices(model, X, y, "hinge", X - 0.08, X + 0.08,
                                                                          _recipe(recipe), 4, gen)
    for t, Xp in enumerate(sets):
        assert_in_box(res, sgd_train(model, Xp, y, "hinge", **_recipe(recipe)), f"{method}: poisoned set {t}")
