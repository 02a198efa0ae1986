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
"""
from __future__ import annotations

import functools

import pytest
import torch

from attacks import Budget, Poisoner, batch_indices, margin_direction, param_direction, perturb_inputs, sgd_train
from mibpcert import TrainConfig, certified_train, certify, mlp
from mibpcert.threats import Both, LabelFlip, LabelNoise, LinfFeatures, TaskInfo

F64 = torch.float64
EPS = 0.02
TEST_EPS = 0.02
N_TRAIN, N_TEST, BATCH = 10, 12, 4  # batches of 4, 4 and a partial 2
TASK = {"bce": "binary", "hinge": "binary", "ce": "multiclass", "mse": "regression"}


# ---------------------------------------------------------------------------------------------
# data and models
# ---------------------------------------------------------------------------------------------
def make_data(task: str, n: int, seed: int, unit_box: bool = False):
    g = torch.Generator().manual_seed(seed)
    if task == "regression":
        X = torch.randn(n, 3, dtype=F64, generator=g)
        W = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.8, -1.0]], dtype=F64)
        y = X @ W.T + 0.1 * torch.randn(n, 2, dtype=F64, generator=g)
        return X, y
    if unit_box:
        X = torch.rand(n, 2, dtype=F64, generator=g)
        X[0, 0], X[1, 1], X[2] = 0.0, 1.0, torch.tensor([1.0, 0.0], dtype=F64)
        X[3] = torch.tensor([0.995, 0.005], dtype=F64)  # within eps of both ends
        c = X - 0.5
    else:
        X = torch.randn(n, 2, dtype=F64, generator=g)
        c = X
    if task == "binary":
        y = (c[:, 0] + 0.5 * c[:, 1] > 0).to(F64)
    else:
        ang = torch.atan2(c[:, 1], c[:, 0])
        y = torch.bucketize(ang, torch.tensor([-1.0, 1.2], dtype=F64)).to(F64)
    return X, y


def make_model(task: str, seed: int = 0):
    widths = {"binary": [2, 4, 1], "multiclass": [2, 5, 3], "regression": [3, 4, 2]}[task]
    return mlp(widths, seed=seed)


# ---------------------------------------------------------------------------------------------
# the cases: (threat, loss, plain-terms budget, recipe)
# ---------------------------------------------------------------------------------------------
def _budget(task, **kw):
    return Budget(task=task, num_classes={"binary": 2, "multiclass": 3}.get(task), **kw)


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


def assert_in_box(res, net, what=""):
    state = net.state_dict()
    for name, (lo, hi) in res.param_bounds.items():
        p = state[name]
        out = (p < lo) | (p > hi)
        assert not out.any(), (
            f"{what}: {int(out.sum())} entries of {name} outside the certified box, "
            f"by up to {float(torch.maximum(lo - p, p - hi).max()):.3e}"
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
# nominal run, zero budget
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["bce", "hinge", "ce", "mse"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_nominal_equals_plain_sgd(loss, shuffle):
    task = TASK[loss]
    X, y = make_data(task, 11, seed=4)
    model = make_model(task, seed=5)
    cfg = TrainConfig(epochs=3, lr=0.2, batch_size=4, loss=loss, weight_decay=0.05, lr_decay=0.7, shuffle=shuffle, seed=3)
    res = certified_train(model, X, y, LinfFeatures(0.01), cfg)
    ref = sgd_train(model, X, y, loss, epochs=3, lr=0.2, batch_size=4, weight_decay=0.05, lr_decay=0.7, shuffle=shuffle, seed=3)
    got = res.nominal.state_dict()
    for name, p in ref.state_dict().items():
        assert torch.allclose(got[name], p, rtol=0, atol=1e-9), name
    # a different order gives a different model (the comparison is sensitive to the order)
    other = sgd_train(model, X, y, loss, epochs=3, lr=0.2, batch_size=4, weight_decay=0.05, lr_decay=0.7, shuffle=not shuffle, seed=3)
    assert any(not torch.allclose(got[n], p, atol=1e-9) for n, p in other.state_dict().items())
    # the user's model is the init and is left untouched
    for name, p in make_model(task, seed=5).state_dict().items():
        assert torch.equal(model.state_dict()[name], p)


def test_shuffle_orders_are_permutations_that_change_per_epoch():
    orders = [torch.cat(batch_indices(11, 4, e, True, 3)) for e in range(3)]
    for o in orders:
        assert sorted(o.tolist()) == list(range(11))
    assert not torch.equal(orders[0], orders[1])


@pytest.mark.parametrize("loss", ["bce", "ce", "mse"])
def test_zero_budget_box_is_a_point(loss):
    task = TASK[loss]
    X, y = make_data(task, 10, seed=6)
    model = make_model(task, seed=7)
    cfg = TrainConfig(epochs=3, lr=0.1, batch_size=4, loss=loss, weight_decay=0.01, lr_decay=0.9)
    threats = [LinfFeatures(0.0), LinfFeatures(0.5, k=0)]
    threats.append(LabelNoise(2, 0.0) if task == "regression" else LabelFlip(0))
    ref = sgd_train(model, X, y, loss, epochs=3, lr=0.1, batch_size=4, weight_decay=0.01, lr_decay=0.9).state_dict()
    for threat in threats:
        res = certified_train(model, X, y, threat, cfg)
        for name, (lo, hi) in res.param_bounds.items():
            assert float((hi - lo).max()) <= 1e-10, (threat.describe(), name)
            assert (lo <= ref[name] + 1e-12).all() and (hi >= ref[name] - 1e-12).all()


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


# ---------------------------------------------------------------------------------------------
# region level: the threat regions contain what the threat allows
# ---------------------------------------------------------------------------------------------
def _info(task, n):
    return TaskInfo(task, {"binary": 2, "multiclass": 3}.get(task), 2 if task != "regression" else 3, n)


def test_linf_region_contains_its_corners():
    X, y = make_data("binary", 50, seed=12)
    r = LinfFeatures(0.1).region(X, y, _info("binary", 50))
    for Xp in (X - 0.1, X + 0.1):
        assert ((Xp >= r.features.lo) & (Xp <= r.features.hi)).all()


def test_linf_domain_region_is_the_clipped_box():
    X, y = make_data("binary", 50, seed=12, unit_box=True)
    X[5] = torch.tensor([1.2, -0.3], dtype=F64)  # a point outside the domain keeps its own value
    eps = 0.1
    r = LinfFeatures(eps, domain=(0.0, 1.0)).region(X, y, _info("binary", 50))
    lo = torch.tensor([[min(max(v - eps, 0.0), v) for v in row] for row in X.tolist()], dtype=F64)
    hi = torch.tensor([[max(min(v + eps, 1.0), v) for v in row] for row in X.tolist()], dtype=F64)
    assert torch.equal(r.features.lo, lo) and torch.equal(r.features.hi, hi)
    assert torch.equal(r.poisoned_features.lo, lo) and torch.equal(r.poisoned_features.hi, hi)
    # with a budget k, unpicked samples stay clean
    rk = LinfFeatures(eps, k=2, domain=(0.0, 1.0)).region(X, y, _info("binary", 50))
    assert torch.equal(rk.features.lo, X) and torch.equal(rk.features.hi, X) and rk.k == 2
    assert torch.equal(rk.poisoned_features.lo, lo)


def test_label_regions():
    X, y = make_data("multiclass", 6, seed=13)
    info = _info("multiclass", 6)
    clean = torch.nn.functional.one_hot(y.long(), 3).bool()
    r = LabelFlip(2).region(X, y, info)
    assert torch.equal(r.labels, clean) and r.poisoned_labels.all() and r.k == 2
    r0 = LabelFlip(1, to=0).region(X, y, info)
    expect = clean.clone()
    expect[:, 0] = True
    assert torch.equal(r0.poisoned_labels, expect)
    rn = LabelFlip(None).region(X, y, info)
    assert rn.labels.all() and rn.k is None
    Xr, yr = make_data("regression", 6, seed=13)
    rr = LabelNoise(1, 0.25).region(Xr, yr, _info("regression", 6))
    assert torch.equal(rr.labels.lo, yr) and torch.equal(rr.poisoned_labels.lo, yr - 0.25) and torch.equal(rr.poisoned_labels.hi, yr + 0.25)


def test_both_region_contains_the_feature_corners_exactly():
    X, y = make_data("binary", 50, seed=12)
    info = _info("binary", 50)
    part = LinfFeatures(0.1)
    r = Both(part, LabelFlip(1)).region(X, y, info)
    box = part.box(X)
    assert ((box.lo >= r.poisoned_features.lo) & (box.hi <= r.poisoned_features.hi)).all()
    assert ((box.lo >= r.features.lo) & (box.hi <= r.features.hi)).all()


# ---------------------------------------------------------------------------------------------
# one SGD step: containment, and the bound on the last bias is attained where it is exact
# ---------------------------------------------------------------------------------------------
# In the first step the parameters are a point. For a linear model with bce, the bias gradient
# sigmoid(w.x + b) - y is monotone in every feature and in the label, and for label-only threats
# the logits are a point: the interval bound on the bias is then exactly the best an attacker can
# do (the per-coordinate top-k is exactly a best choice of samples), so the guided attacker must
# reach it. This catches regions that are too small, not only ones that are wrong.
def _one_step_cases():
    def b(task, **kw):
        return _budget(task, **kw)

    return {
        # id: (threat, loss, model kind, budget, bound attained exactly)
        "linf_all-bce-linear": (lambda: LinfFeatures(0.1), "bce", "linear", b("binary", eps=0.1, feat_k=None), True),
        "linf_k2-bce-linear": (lambda: LinfFeatures(0.1, k=2), "bce", "linear", b("binary", eps=0.1, feat_k=2), True),
        "linf_k1-ce-linear": (lambda: LinfFeatures(0.1, k=1), "ce", "linear", b("multiclass", eps=0.1, feat_k=1), False),
        "linf_all-mse-mlp": (lambda: LinfFeatures(0.1), "mse", "mlp", b("regression", eps=0.1, feat_k=None), False),
        "flip_k2-bce-mlp": (lambda: LabelFlip(2), "bce", "mlp", b("binary", flip_k=2), True),
        "flip_k2-hinge-mlp": (lambda: LabelFlip(2), "hinge", "mlp", b("binary", flip_k=2), True),
        "flip_k1-ce-mlp": (lambda: LabelFlip(1), "ce", "mlp", b("multiclass", flip_k=1), True),
        "flip_k1_to0-ce-mlp": (lambda: LabelFlip(1, to=0), "ce", "mlp", b("multiclass", flip_k=1, flip_to=0), True),
        "noise_k2-mse-mlp": (lambda: LabelNoise(2, 0.2), "mse", "mlp", b("regression", gamma=0.2, noise_k=2), True),
        "linf_domain-bce-linear": (
            lambda: LinfFeatures(0.1, domain=(0.0, 1.0)), "bce", "linear", b("binary", eps=0.1, feat_k=None, domain=(0.0, 1.0)), True,
        ),
        "both_linfall_flip1-bce-linear": (
            lambda: Both(LinfFeatures(0.1), LabelFlip(1)), "bce", "linear", b("binary", eps=0.1, feat_k=None, flip_k=1), True,
        ),
        "both_flip1_flip1_unpaired-bce-mlp": (
            lambda: Both(LabelFlip(1), LabelFlip(1)), "bce", "mlp", b("binary", flip_k=2), True,
        ),
        "both_linfk2_flip2_paired-bce-linear": (
            lambda: Both(LinfFeatures(0.1, k=2), LabelFlip(2), paired=True), "bce", "linear",
            b("binary", eps=0.1, feat_k=2, flip_k=2, paired=True), True,
        ),
        "both_linfk1_flip1_unpaired-bce-linear": (
            lambda: Both(LinfFeatures(0.3, k=1), LabelFlip(1)), "bce", "linear", b("binary", eps=0.3, feat_k=1, flip_k=1), False,
        ),
        "flip_all-bce-mlp": (lambda: LabelFlip(None), "bce", "mlp", b("binary", flip_k=None), True),
        "noise_all-mse-mlp": (lambda: LabelNoise(None, 0.2), "mse", "mlp", b("regression", gamma=0.2, noise_k=None), True),
        "both_noise1_noise1_paired-mse-mlp": (
            lambda: Both(LabelNoise(1, 0.1), LabelNoise(1, 0.15), paired=True), "mse", "mlp", b("regression", gamma=0.25, noise_k=1), True,
        ),
        "both_noise1_noise1_unpaired-mse-mlp": (
            lambda: Both(LabelNoise(1, 0.1), LabelNoise(1, 0.15)), "mse", "mlp", b("regression", gamma=0.1, noise_k=2), False,
        ),
        "both_linfk2_linfk2_paired-bce-linear": (
            lambda: Both(LinfFeatures(0.05, k=2), LinfFeatures(0.1, k=2), paired=True), "bce", "linear", b("binary", eps=0.15, feat_k=2), True,
        ),
        "both_linfk1_noise1_unpaired-mse-mlp": (
            lambda: Both(LinfFeatures(0.1, k=1), LabelNoise(1, 0.2)), "mse", "mlp", b("regression", eps=0.1, feat_k=1, gamma=0.2, noise_k=1), False,
        ),
    }


ONE_STEP = _one_step_cases()


@pytest.mark.parametrize("case_id", sorted(ONE_STEP))
def test_one_step_bounds_contain_and_attain(case_id):
    threat_f, loss, kind, budget, exact = ONE_STEP[case_id]
    task = TASK[loss]
    X, y = make_data(task, 4, seed=21, unit_box="domain" in case_id)
    if kind == "linear":
        torch.manual_seed(22)
        model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 1 if task == "binary" else 3, dtype=F64))
    else:
        model = make_model(task, seed=23)
    lr = 0.5
    res = certified_train(model, X, y, threat_f(), TrainConfig(epochs=1, lr=lr, batch_size=4, loss=loss))
    assert len(res.log) == 1
    last_bias = res.spec.layers[-1].bias
    lo, hi = res.param_bounds[last_bias]
    reached_lo, reached_hi = lo.clone().fill_(torch.inf), hi.clone().fill_(-torch.inf)
    names = [n for n, _ in model.named_parameters()]
    dirs = [(last_bias, j, s) for j in range(lo.numel()) for s in (1.0, -1.0)]
    dirs += [(n, 0, s) for n in names if n != last_bias for s in (1.0, -1.0)]
    for k, (n, j, s) in enumerate(dirs):
        net = sgd_train(model, X, y, loss, epochs=1, lr=lr, batch_size=4, poison=Poisoner(budget, loss, "guided", seed=k, direction=param_direction(n, j, s)))
        assert_in_box(res, net, f"guided {n}[{j}] {s:+}")
        p = net.state_dict()[last_bias]
        reached_lo, reached_hi = torch.minimum(reached_lo, p), torch.maximum(reached_hi, p)
    for s in range(4):
        for mode in ("vertex", "random"):
            assert_in_box(res, sgd_train(model, X, y, loss, epochs=1, lr=lr, batch_size=4, poison=Poisoner(budget, loss, mode, seed=s)), mode)
    if exact:
        tol = 1e-9
        assert torch.allclose(reached_hi, hi, rtol=0, atol=tol), f"upper bound not attained: bound {hi.tolist()}, attack {reached_hi.tolist()}"
        assert torch.allclose(reached_lo, lo, rtol=0, atol=tol), f"lower bound not attained: bound {lo.tolist()}, attack {reached_lo.tolist()}"
