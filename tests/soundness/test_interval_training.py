"""Soundness of certified training against concrete poisoning attacks.

For every threat model and loss, ``certified_train`` runs on a small data set (a partial last
batch, several epochs, weight decay and step decay in some cases). Then a plain torch SGD loop
written here (same init, same batches in the same order, mean loss, same recipe) trains on many
poisoned data sets drawn from the threat model: uniform perturbations, box corners, and an
adaptive gradient-guided attacker that at every step picks the poisoned samples, labels and
feature corners that push one parameter coordinate (or one test point's margin) as far as it can.
Every resulting parameter must lie inside the certified box (no tolerance), every logit of a
perturbed test point inside ``certify(...).logits``, and no certified test point may be
misclassified by any of the poisoned models on any test perturbation tried.

The setting (data, models, budgets) is in ``tests/helpers/training.py``; the nominal run and the
zero budget: ``tests/train/test_recipe.py``; one step whose bound is attained:
``tests/steps/test_interval.py``; the threat regions: ``tests/threats/``.
"""
from __future__ import annotations

import functools

import pytest
import torch

from mibpcert import TrainConfig, certified_train, certify
from mibpcert.threats import Both, LabelFlip, LabelNoise, LinfFeatures
from tests.helpers.attacks import Poisoner, margin_direction, param_direction, perturb_inputs, sgd_train
from tests.helpers.bounds import assert_in_box
from tests.helpers.training import (
    BATCH, EPS, F64, N_TEST, N_TRAIN, TASK, TEST_EPS, budget, make_data, make_model,
)

pytestmark = pytest.mark.slow  # end to end: `make test` runs it, `make test-fast` does not

_budget = budget


RECIPE_PLAIN = dict(epochs=3, lr=0.1)


RECIPE_DECAY = dict(epochs=3, lr=0.15, weight_decay=0.01, lr_decay=0.8)


RECIPE_SMALL = dict(epochs=2, lr=0.05)  # small steps: label-flip boxes that still certify


def _cases():
    cases = {}
    for loss in ("bce", "hinge", "ce", "mse"):
        t = TASK[loss]
        cases[f"linf_all-{loss}"] = (lambda: LinfFeatures(EPS), loss, _budget(t, eps=EPS, feat_k=None), RECIPE_DECAY)
        cases[f"linf_k2-{loss}"] = (lambda: LinfFeatures(EPS, k=2), loss, _budget(t, eps=EPS, feat_k=2), RECIPE_PLAIN)
    for loss in ("bce", "hinge", "ce"):
        t = TASK[loss]
        cases[f"flip_k2-{loss}"] = (lambda: LabelFlip(2), loss, _budget(t, flip_k=2), RECIPE_PLAIN)
    cases["flip_k1-bce"] = (lambda: LabelFlip(1), "bce", _budget("binary", flip_k=1), RECIPE_SMALL)
    cases["flip_k1_to0-ce"] = (lambda: LabelFlip(1, to=0), "ce", _budget("multiclass", flip_k=1, flip_to=0), RECIPE_DECAY)
    cases["noise_k2-mse"] = (lambda: LabelNoise(2, 0.1), "mse", _budget("regression", gamma=0.1, noise_k=2), RECIPE_DECAY)
    for loss in ("bce", "ce"):
        t = TASK[loss]
        for paired in (False, True):
            tag = "paired" if paired else "unpaired"
            cases[f"both_linfall_flip1_{tag}-{loss}"] = (
                lambda paired=paired: Both(LinfFeatures(EPS), LabelFlip(1), paired=paired),
                loss,
                _budget(t, eps=EPS, feat_k=None, flip_k=1, paired=paired),
                RECIPE_SMALL if loss == "bce" else RECIPE_PLAIN,
            )
            cases[f"both_linfk2_flip1_{tag}-{loss}"] = (
                lambda paired=paired: Both(LinfFeatures(EPS, k=2), LabelFlip(1), paired=paired),
                loss,
                _budget(t, eps=EPS, feat_k=2, flip_k=1, paired=paired),
                RECIPE_PLAIN,
            )
    cases["both_linfk1_noise1_unpaired-mse"] = (
        lambda: Both(LinfFeatures(EPS, k=1), LabelNoise(1, 0.1)),
        "mse",
        _budget("regression", eps=EPS, feat_k=1, gamma=0.1, noise_k=1),
        RECIPE_PLAIN,
    )
    for loss in ("bce", "ce"):
        t = TASK[loss]
        cases[f"linf_domain-{loss}"] = (
            lambda: LinfFeatures(EPS, domain=(0.0, 1.0)),
            loss,
            _budget(t, eps=EPS, feat_k=None, domain=(0.0, 1.0)),
            RECIPE_DECAY,
        )
        cases[f"linf_k1_domain-{loss}"] = (
            lambda: LinfFeatures(EPS, k=1, domain=(0.0, 1.0)),
            loss,
            _budget(t, eps=EPS, feat_k=1, domain=(0.0, 1.0)),
            RECIPE_PLAIN,
        )
    return cases


CASES = _cases()


@functools.lru_cache(maxsize=None)
def certified(case_id: str):
    """Train the certified box once per case; returns everything the tests need."""
    threat_f, loss, budget, recipe = CASES[case_id]
    task = TASK[loss]
    unit = "domain" in case_id
    X, y = make_data(task, N_TRAIN, seed=1, unit_box=unit)
    Xt, yt = make_data(task, N_TEST, seed=2, unit_box=unit)
    model = make_model(task, seed=3)
    cfg = TrainConfig(batch_size=BATCH, loss=loss, **recipe)
    res = certified_train(model, X, y, threat_f(), cfg)
    rep = certify(res, Xt, yt, test_eps=TEST_EPS)
    return dict(model=model, X=X, y=y, Xt=Xt, yt=yt, res=res, rep=rep, budget=budget, loss=loss, recipe=recipe, task=task)


def train_concrete(c, poison=None):
    r = c["recipe"]
    return sgd_train(
        c["model"], c["X"], c["y"], c["loss"], epochs=r["epochs"], lr=r["lr"], batch_size=BATCH,
        weight_decay=r.get("weight_decay", 0.0), lr_decay=r.get("lr_decay", 1.0), poison=poison,
    )


def assert_test_predictions(c, net, seed=0):
    """Logits of perturbed test points inside the certified logit bounds; certified points are
    classified correctly on every perturbation tried."""
    rep, Xt, yt = c["rep"], c["Xt"], c["yt"]
    gen = torch.Generator().manual_seed(seed)
    for Xp in perturb_inputs(net, Xt, yt, TEST_EPS, c["loss"], gen=gen):
        assert ((Xp >= Xt - TEST_EPS) & (Xp <= Xt + TEST_EPS)).all()
        with torch.no_grad():
            z = net(Xp)
        assert ((z >= rep.logits.lo) & (z <= rep.logits.hi)).all(), "logits of a perturbed test point outside the certified logit bounds"
        if c["task"] == "regression":
            continue
        pred = (z[:, 0] > 0).to(F64) if z.shape[1] == 1 else z.argmax(1).to(F64)
        wrong = pred != yt
        assert not (wrong & rep.certified).any(), "a certified test point is misclassified by a poisoned model"
        assert not (~wrong & rep.provably_wrong).any(), "a provably wrong test point is classified correctly"


def guided_directions(c, n_coords=2, n_margins=1):
    """Random parameter coordinates (both signs), the margin of a (certified) test point, and
    ``None``: maximise the training loss."""
    g = torch.Generator().manual_seed(7)
    dirs = []
    names = [(n, p.numel()) for n, p in c["model"].named_parameters()]
    for _ in range(n_coords):
        n, size = names[int(torch.randint(0, len(names), (1,), generator=g))]
        j = int(torch.randint(0, size, (1,), generator=g))
        dirs += [param_direction(n, j, 1.0), param_direction(n, j, -1.0)]
    if c["task"] != "regression":
        rep = c["rep"]
        idx = torch.nonzero(rep.certified).reshape(-1).tolist() or list(range(N_TEST))
        C = c["model"][-1].out_features
        for i in idx[:n_margins]:
            dirs.append(margin_direction(c["Xt"][i], int(c["yt"][i]), C, sign=-1.0))
    dirs.append(None)  # maximise the training loss
    return dirs


# ---------------------------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case_id", sorted(CASES))
def test_clean_run_and_nominal_inside(case_id):
    c = certified(case_id)
    res = c["res"]
    for lo, hi in res.param_bounds.values():
        assert torch.isfinite(lo).all() and torch.isfinite(hi).all() and (lo <= hi).all()
    # the clean run (no poisoning) and the returned nominal model lie inside the box
    clean = train_concrete(c)
    assert_in_box(res, clean, "clean SGD")
    assert_in_box(res, res.nominal, "nominal")
    assert_test_predictions(c, clean)
    # at least one parameter was actually widened by the threat (the threat is not ignored)
    assert max(float((hi - lo).max()) for lo, hi in res.param_bounds.values()) > 1e-6


@pytest.mark.parametrize("mode", ["random", "vertex"])
@pytest.mark.parametrize("case_id", sorted(CASES))
def test_random_and_vertex_poisoning_inside_box(case_id, mode):
    c = certified(case_id)
    for seed in range(4):
        net = train_concrete(c, Poisoner(c["budget"], c["loss"], mode, seed=seed))
        assert_in_box(c["res"], net, f"{mode} attack seed {seed}")
        assert_test_predictions(c, net, seed)


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_gradient_guided_poisoning_inside_box(case_id):
    c = certified(case_id)
    for k, direction in enumerate(guided_directions(c)):
        net = train_concrete(c, Poisoner(c["budget"], c["loss"], "guided", seed=k, direction=direction))
        assert_in_box(c["res"], net, f"guided attack {k}")
        assert_test_predictions(c, net, k)


def test_some_points_certified():
    """The checks above have teeth: small feature perturbations certify some test points."""
    for case_id in ("linf_all-bce", "linf_all-ce", "linf_k2-hinge", "linf_domain-bce", "flip_k1-bce", "both_linfall_flip1_paired-bce"):
        rep = certified(case_id)["rep"]
        assert bool(rep.certified.any()), case_id


# ---------------------------------------------------------------------------------------------
# recipe variants: exact products, bias-free layers, epoch selection, single precision
# ---------------------------------------------------------------------------------------------
def _variant_check(model, X, y, threat, budget, cfg, n_attacks=4, epochs=None):
    res = certified_train(model, X, y, threat, cfg)
    ep = cfg.epochs if epochs is None else epochs
    kw = dict(epochs=ep, lr=cfg.lr, batch_size=cfg.batch_size, weight_decay=cfg.weight_decay, lr_decay=cfg.lr_decay)
    assert_in_box(res, sgd_train(model, X, y, cfg.loss, **kw), "clean")
    for s in range(n_attacks):
        for mode in ("vertex", "random"):
            assert_in_box(res, sgd_train(model, X, y, cfg.loss, poison=Poisoner(budget, cfg.loss, mode, seed=s), **kw), f"{mode} {s}")
    names = [n for n, _ in model.named_parameters()]
    for s, n in enumerate(names):
        net = sgd_train(model, X, y, cfg.loss, poison=Poisoner(budget, cfg.loss, "guided", seed=s, direction=param_direction(n, 0, (-1.0) ** s)), **kw)
        assert_in_box(res, net, f"guided {n}")
    return res


def test_exact_matmul_sound_and_not_wider():
    X, y = make_data("binary", N_TRAIN, seed=1)
    model = make_model("binary", seed=3)
    budget = _budget("binary", eps=0.05, feat_k=None)
    cfg = TrainConfig(epochs=2, lr=0.1, batch_size=BATCH, loss="bce", exact_matmul=True)
    res = _variant_check(model, X, y, LinfFeatures(0.05), budget, cfg)
    res_mr = certified_train(model, X, y, LinfFeatures(0.05), TrainConfig(epochs=2, lr=0.1, batch_size=BATCH, loss="bce"))
    w_ex = torch.cat([w.reshape(-1) for w in res.widths().values()])
    w_mr = torch.cat([w.reshape(-1) for w in res_mr.widths().values()])
    assert float(w_ex.mean()) <= float(w_mr.mean()) * (1 + 1e-9)


def test_bias_free_model_with_flatten():
    torch.manual_seed(11)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(2, 4, bias=False, dtype=F64), torch.nn.ReLU(), torch.nn.Linear(4, 1, dtype=F64)
    )
    X, y = make_data("binary", N_TRAIN, seed=1)
    budget = _budget("binary", eps=EPS, feat_k=2, flip_k=1)
    cfg = TrainConfig(epochs=2, lr=0.1, batch_size=BATCH, loss="bce")
    _variant_check(model, X, y, Both(LinfFeatures(EPS, k=2), LabelFlip(1)), budget, cfg)


def test_linear_linear_stack_model():
    torch.manual_seed(11)
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 4, dtype=F64), torch.nn.ReLU(), torch.nn.Linear(4, 3, dtype=F64), torch.nn.Linear(3, 1, dtype=F64)
    )
    X, y = make_data("binary", N_TRAIN, seed=1)
    budget = _budget("binary", eps=EPS, feat_k=None)
    cfg = TrainConfig(epochs=2, lr=0.1, batch_size=BATCH, loss="bce")
    _variant_check(model, X, y, LinfFeatures(EPS), budget, cfg, n_attacks=2)


def test_selected_epoch_box_contains_training_up_to_that_epoch():
    X, y = make_data("binary", N_TRAIN, seed=1)
    Xv, yv = make_data("binary", 8, seed=9)
    model = make_model("binary", seed=3)
    cfg = TrainConfig(epochs=4, lr=0.3, batch_size=BATCH, loss="bce", select_epoch=True, val_eps=0.0)
    budget = _budget("binary", eps=0.05, feat_k=None)
    res = certified_train(model, X, y, LinfFeatures(0.05), cfg, X_val=Xv, y_val=yv)
    assert len(res.epoch_val_certified) == 4
    assert res.selected_epoch == max(range(4), key=lambda e: (res.epoch_val_certified[e], -e))
    ep = res.selected_epoch + 1
    ref = sgd_train(model, X, y, "bce", epochs=ep, lr=0.3, batch_size=BATCH)
    for name, p in ref.state_dict().items():
        assert torch.allclose(res.nominal.state_dict()[name], p, atol=1e-9)
    for s in range(3):
        for mode in ("vertex", "random"):
            net = sgd_train(model, X, y, "bce", epochs=ep, lr=0.3, batch_size=BATCH, poison=Poisoner(budget, "bce", mode, seed=s))
            assert_in_box(res, net, f"{mode} {s}")


def test_float32_run_contains_float32_training():
    X, y = make_data("binary", N_TRAIN, seed=1)
    model = make_model("binary", seed=3).float()
    cfg = TrainConfig(epochs=2, lr=0.1, batch_size=BATCH, loss="bce", dtype="float32")
    res = certified_train(model, X.float(), y.float(), LinfFeatures(EPS), cfg)
    for lo, hi in res.param_bounds.values():
        assert lo.dtype == torch.float32
    budget = _budget("binary", eps=EPS, feat_k=None)
    for s in range(4):
        for mode in ("vertex", "random"):
            net = sgd_train(model, X.float(), y.float(), "bce", epochs=2, lr=0.1, batch_size=BATCH, poison=Poisoner(budget, "bce", mode, seed=s))
            assert_in_box(res, net, f"{mode} {s}")
