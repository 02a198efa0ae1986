"""Certificates over a parameter box, checked against dense sampling of parameters in the box and
of test inputs in the perturbation ball (plain torch forward passes)."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from mibpcert import TrainConfig, certified_train, certify, mlp
from mibpcert.threats import LabelFlip, LinfFeatures
from tests.helpers.attacks import perturb_inputs, torch_loss
from tests.helpers.inputs import CFG, binary_data, multi_data

F64 = torch.float64


def make(task, n, seed):
    g = torch.Generator().manual_seed(seed)
    if task == "regression":
        X = torch.randn(n, 3, dtype=F64, generator=g)
        return X, X @ torch.tensor([[1.0, -0.5], [0.3, 0.2], [0.8, -1.0]], dtype=F64) + 0.1 * torch.randn(n, 2, dtype=F64, generator=g)
    X = torch.randn(n, 2, dtype=F64, generator=g)
    if task == "binary":
        return X, (X[:, 0] + 0.5 * X[:, 1] > 0).to(F64)
    ang = torch.atan2(X[:, 1], X[:, 0])
    return X, torch.bucketize(ang, torch.tensor([-1.0, 1.2], dtype=F64)).to(F64)


SETUPS = {
    # name: (task, loss, widths, threat, recipe)
    "binary": ("binary", "bce", [2, 6, 1], lambda: LinfFeatures(0.01), dict(epochs=3, lr=0.2, batch_size=8)),
    "binary_flip": ("binary", "hinge", [2, 6, 1], lambda: LabelFlip(1), dict(epochs=2, lr=0.05, batch_size=10)),
    "multiclass": ("multiclass", "ce", [2, 8, 3], lambda: LinfFeatures(0.01), dict(epochs=3, lr=0.2, batch_size=8)),
    "regression": ("regression", "mse", [3, 5, 2], lambda: LinfFeatures(0.01), dict(epochs=3, lr=0.05, batch_size=8)),
}
_CACHE = {}


def setup(name):
    if name not in _CACHE:
        task, loss, widths, threat, recipe = SETUPS[name]
        X, y = make(task, 30, seed=1)
        Xt, yt = make(task, 40, seed=2)
        res = certified_train(mlp(widths, seed=4), X, y, threat(), TrainConfig(loss=loss, **recipe))
        _CACHE[name] = (res, Xt, yt, task, loss)
    return _CACHE[name]


def predict(z):
    return (z[:, 0] > 0).to(F64) if z.shape[1] == 1 else z.argmax(1).to(F64)


def margin(z, y):
    if z.shape[1] == 1:
        return torch.where(y > 0.5, z[:, 0], -z[:, 0])
    zy = z.gather(1, y.long().reshape(-1, 1))[:, 0]
    zo = z.masked_fill(F.one_hot(y.long(), z.shape[1]).bool(), -torch.inf).max(1).values
    return zy - zo


def box_models(res, n, seed=0):
    """n networks with parameters drawn from the certified box: the two extreme corners, random
    corners and uniform interior points."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        net = copy.deepcopy(res.nominal)
        state = {}
        for name, (lo, hi) in res.param_bounds.items():
            if i == 0:
                p = lo
            elif i == 1:
                p = hi
            elif i % 2:
                p = torch.where(torch.rand(lo.shape, generator=g) < 0.5, lo, hi)
            else:
                p = lo + torch.rand(lo.shape, dtype=lo.dtype, generator=g) * (hi - lo)
            state[name] = p.clone()
        net.load_state_dict(state)
        out.append(net)
    return out


CLASSIFY = ["binary", "binary_flip", "multiclass"]


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CLASSIFY)
@pytest.mark.parametrize("test_eps", [0.0, 0.01, 0.05])
def test_certified_implies_nominal_correct_and_accuracy_bounds(name, test_eps):
    res, Xt, yt, task, loss = setup(name)
    rep = certify(res, Xt, yt, test_eps=test_eps)
    with torch.no_grad():
        nominal_pred = predict(res.nominal(Xt))
    correct = nominal_pred == yt
    assert torch.equal(rep.nominal_correct, correct)
    assert not (rep.certified & ~correct).any()
    assert not (rep.provably_wrong & correct).any()
    acc = float(correct.double().mean())
    lo, hi = rep.accuracy_bounds
    assert lo <= acc <= hi
    assert rep.clean_accuracy == pytest.approx(acc)
    assert rep.certified_accuracy == pytest.approx(float(rep.certified.double().mean())) == pytest.approx(lo)
    assert rep.certified_accuracy <= rep.clean_accuracy
    s = rep.summary()
    assert s["n"] == 40 and s["test_eps"] == test_eps


@pytest.mark.parametrize("name", CLASSIFY + ["regression"])
@pytest.mark.parametrize("test_eps", [0.0, 0.02])
def test_loss_and_logit_bounds_contain_sampled_models(name, test_eps):
    res, Xt, yt, task, loss = setup(name)
    rep = certify(res, Xt, yt, test_eps=test_eps)
    lo, hi = rep.test_loss_bounds
    nets = [res.nominal] + box_models(res, 30)
    g = torch.Generator().manual_seed(3)
    for net in nets:
        for Xp in perturb_inputs(net, Xt, yt, test_eps, loss, n_random=2, n_vertex=2, gen=g):
            with torch.no_grad():
                z = net(Xp)
                mean_loss = float(torch_loss(loss, z, yt).mean())
            assert lo <= mean_loss <= hi
            assert ((z >= rep.logits.lo) & (z <= rep.logits.hi)).all()
            if task == "regression":
                continue
            pred = predict(z)
            assert not (rep.certified & (pred != yt)).any(), "certified point misclassified by a model in the box"
            assert not (rep.provably_wrong & (pred == yt)).any()
            m = margin(z, yt)
            assert ((m >= rep.margin.lo) & (m <= rep.margin.hi)).all()


def test_nominal_test_loss_inside_bounds_exactly():
    for name in ("binary", "multiclass", "regression"):
        res, Xt, yt, task, loss = setup(name)
        rep = certify(res, Xt, yt)
        with torch.no_grad():
            z = res.nominal(Xt)
        if loss == "bce":
            ref = F.binary_cross_entropy_with_logits(z[:, 0], yt)
        elif loss == "ce":
            ref = F.cross_entropy(z, yt.long())
        else:
            ref = F.mse_loss(z, yt)
        lo, hi = rep.test_loss_bounds
        assert lo <= float(ref) <= hi
        assert hi - lo < 1.0  # and the bounds are informative


def test_regression_report_has_no_classification_fields():
    res, Xt, yt, task, loss = setup("regression")
    rep = certify(res, Xt, yt, test_eps=0.01, trigger_eps=0.1)
    assert rep.margin is None and rep.accuracy_bounds is None and rep.backdoor_success_upper is None
    assert rep.certified_accuracy is None and rep.clean_accuracy is None
    assert not rep.certified.any()


# ---------------------------------------------------------------------------------------------
# backdoor triggers
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CLASSIFY)
@pytest.mark.parametrize("trigger_eps", [0.02, 0.1, 0.5])
def test_backdoor_upper_bound_vs_concrete_triggers(name, trigger_eps):
    res, Xt, yt, task, loss = setup(name)
    rep = certify(res, Xt, yt, test_eps=0.0, trigger_eps=trigger_eps)
    ub = rep.backdoor_success_upper
    assert 0.0 <= ub <= 1.0
    g = torch.Generator().manual_seed(5)
    for net in [res.nominal] + box_models(res, 8, seed=1):
        with torch.no_grad():
            clean_pred = predict(net(Xt))
        flipped = torch.zeros_like(yt, dtype=torch.bool)
        wrong = torch.zeros_like(yt, dtype=torch.bool)
        for Xp in perturb_inputs(net, Xt, yt, trigger_eps, loss, n_random=4, n_vertex=4, gen=g):
            with torch.no_grad():
                p = predict(net(Xp))
            flipped |= p != clean_pred
            wrong |= p != yt
        # every point a trigger changed (or that any triggered input gets wrong) is uncertified
        assert float(flipped.double().mean()) <= ub
        assert float(wrong.double().mean()) <= ub
    # a bigger trigger can only succeed more often
    rep_small = certify(res, Xt, yt, trigger_eps=trigger_eps / 2)
    assert rep_small.backdoor_success_upper <= ub


# ---------------------------------------------------------------------------------------------
# multiclass margins against dense sampling
# ---------------------------------------------------------------------------------------------
def test_multiclass_margin_vs_dense_sampling():
    res, Xt, yt, task, loss = setup("multiclass")
    test_eps = 0.03
    rep = certify(res, Xt, yt, test_eps=test_eps)
    assert rep.certified.any() and (~rep.certified).any()
    g = torch.Generator().manual_seed(9)
    min_margin = torch.full((Xt.shape[0],), torch.inf, dtype=F64)
    for net in box_models(res, 60, seed=2):
        for Xp in perturb_inputs(net, Xt, yt, test_eps, loss, n_random=3, n_vertex=3, gen=g):
            with torch.no_grad():
                m = margin(net(Xp), yt)
            min_margin = torch.minimum(min_margin, m)
    # no sampled model/input misclassifies a certified point; the lower bound is below every sample
    assert (min_margin[rep.certified] > 0).all()
    assert (rep.margin.lo <= min_margin).all()


def test_margin_certificate_at_least_as_tight_as_separate_logits():
    res, Xt, yt, task, loss = setup("multiclass")
    rep = certify(res, Xt, yt, test_eps=0.01)
    lo, hi = rep.logits.lo, rep.logits.hi
    ly = lo.gather(1, yt.long().reshape(-1, 1))[:, 0]
    others = hi.masked_fill(F.one_hot(yt.long(), 3).bool(), -torch.inf).max(1).values
    naive = ly > others
    assert not (naive & ~rep.certified).any()


def test_point_box_certifies_exactly_the_correct_points():
    """With no threat the box is (numerically) the nominal model: every point the nominal model
    classifies correctly with a non-tiny margin is certified at test_eps=0."""
    for task, loss, widths in (("binary", "bce", [2, 6, 1]), ("multiclass", "ce", [2, 8, 3])):
        X, y = make(task, 30, seed=1)
        Xt, yt = make(task, 40, seed=2)
        res = certified_train(mlp(widths, seed=4), X, y, LinfFeatures(0.0), TrainConfig(loss=loss, epochs=2, lr=0.2, batch_size=8))
        rep = certify(res, Xt, yt)
        with torch.no_grad():
            m = margin(res.nominal(Xt), yt)
        assert torch.equal(rep.certified[m.abs() > 1e-8], (m > 0)[m.abs() > 1e-8])
        assert torch.equal(rep.provably_wrong[m.abs() > 1e-8], (m < 0)[m.abs() > 1e-8])


def test_binary_zero_logit_is_not_certified():
    """torch predicts class 0 at z = 0 (z > 0 is class 1): neither label may be certified there."""
    X, y = make("binary", 10, seed=1)
    # rounding off: the logit bounds are exactly [0, 0] (no outward padding to hide behind)
    cfg = TrainConfig(epochs=1, lr=0.1, batch_size=10, outward_rounding=False)
    res = certified_train(mlp([2, 3, 1], seed=0), X, y, LinfFeatures(0.0), cfg)
    zero = {n: (torch.zeros_like(lo), torch.zeros_like(hi)) for n, (lo, hi) in res.param_bounds.items()}
    res.param_bounds = zero
    res.nominal.load_state_dict({n: lo for n, (lo, _) in zero.items()})
    yt = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=F64)
    rep = certify(res, X[:4], yt)
    assert (rep.logits.lo == 0).all() and (rep.logits.hi == 0).all()
    assert not rep.certified.any()
    assert not rep.provably_wrong.any()
    assert torch.equal(rep.nominal_correct, yt == 0)
    # the trigger certificate uses the same strict rule
    assert certify(res, X[:4], yt, trigger_eps=0.0).backdoor_success_upper == 1.0


# ---------------------------------------------------------------------------------------------
# certify arguments
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# certify arguments
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_result():
    torch.manual_seed(0)
    X, y = binary_data()
    return certified_train(mlp([2, 3, 1]), X, y, LinfFeatures(0.01), TrainConfig(**CFG)), X, y


def test_certify_bad_arguments(small_result):
    res, X, y = small_result
    for eps in (-0.1, math.nan):
        with pytest.raises(ValueError, match="test_eps must be a non-negative number"):
            certify(res, X, y, test_eps=eps)
        with pytest.raises(ValueError, match="trigger_eps must be a non-negative number"):
            certify(res, X, y, trigger_eps=eps)
    with pytest.raises(ValueError, match="test inputs have 3 features"):
        certify(res, torch.randn(4, 3, dtype=F64), y[:4])
    with pytest.raises(ValueError, match="test labels have 3 rows"):
        certify(res, X[:4], y[:3])
    with pytest.raises(ValueError, match="values 0 or 1"):
        certify(res, X, y + 1)


def _nan_result(res, name, index):
    lo, hi = res.param_bounds[name]
    lo, hi = lo.clone(), hi.clone()
    lo.view(-1)[index] = math.nan
    res.param_bounds = dict(res.param_bounds)
    res.param_bounds[name] = (lo, hi)
    return res


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize("where", ["first_weight", "last_bias", "inf_hidden"])
def test_nan_bounds_never_certify(task, where):
    torch.manual_seed(0)
    if task == "binary":
        X, y = binary_data(20)
        model, loss = mlp([2, 4, 1], seed=0), "bce"
    else:
        X, y = multi_data(20)
        model, loss = mlp([2, 4, 3], seed=0), "ce"
    res = certified_train(model, X, y, LinfFeatures(1e-4), TrainConfig(epochs=1, lr=0.01, batch_size=10, loss=loss))
    before = certify(res, X, y)
    assert before.certified.any()  # without the NaN some points certify
    if where == "first_weight":
        res = _nan_result(res, "0.weight", 0)
    elif where == "last_bias":
        res = _nan_result(res, "2.bias", res.spec.out_features - 1)
    else:
        lo, hi = res.param_bounds["0.bias"]
        hi = hi.clone()
        hi[1] = math.inf
        res.param_bounds = dict(res.param_bounds)
        res.param_bounds["0.bias"] = (lo, hi)
    rep = certify(res, X, y)
    assert not rep.certified.any()
    assert not rep.provably_wrong.any()
    rep_t = certify(res, X, y, test_eps=0.01, trigger_eps=0.01)
    assert not rep_t.certified.any()
    assert rep_t.backdoor_success_upper == 1.0
    assert rep.accuracy_bounds == (0.0, 1.0)


def test_relational_bounds_do_not_depend_on_the_chunk_of_test_points():
    """Test points go through the affine forms in chunks sized to bound memory: one point per
    chunk gives the bounds of one chunk for all (each point's input symbols are its own)."""
    from mibpcert.certificates import relational_bounds

    X, y = multi_data()
    res = certified_train(mlp([2, 4, 3], seed=1), X, y, LinfFeatures(0.02),
                          TrainConfig(loss="ce", method="affine", epochs=2, batch_size=5))
    a = relational_bounds(res.spec, res.relational, X, y, 0.01)
    b = relational_bounds(res.spec, res.relational, X, y, 0.01, max_elements=1)
    for ia, ib in zip(a, b):
        assert torch.allclose(ia.lo, ib.lo, rtol=0, atol=1e-12) and torch.allclose(ia.hi, ib.hi, rtol=0, atol=1e-12)
