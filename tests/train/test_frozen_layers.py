"""Frozen parameters (``requires_grad=False``) are not trained, as in ``torch.optim.SGD``: the
certified recipe is the fine-tuning recipe the user wrote. The nominal run equals plain torch SGD
over the trainable parameters only, frozen parameters keep their init exactly (a point box), and
concrete poisoned runs stay inside the interval and MIBP boxes."""
import pytest
import torch

from mibpcert import TrainConfig, certified_train, mlp
from mibpcert.threats import LinfFeatures
from tests.helpers.attacks import sgd_train
from tests.helpers.bounds import assert_in_box
from tests.helpers.mibp import attack_nets, budget, make_data

EPS, LR, BATCH, EPOCHS, WD = 0.05, 0.4, 4, 2, 0.01
FROZEN = ("0.weight", "0.bias")


def _frozen_model():
    model = mlp([2, 4, 1], seed=5)
    model[0].requires_grad_(False)
    return model


def _run(method: str, **kw):
    X, y = make_data("binary", 8, seed=2)
    model = _frozen_model()
    cfg = TrainConfig(epochs=EPOCHS, lr=LR, batch_size=BATCH, loss="hinge", weight_decay=WD, method=method, **kw)
    return model, X, y, certified_train(model, X, y, LinfFeatures(EPS), cfg)


@pytest.mark.parametrize("method, kw", [("interval", {}), ("mibp", dict(mode="joint", relax="lp")),
                                        ("mibp", dict(mode="per_sample", relax="milp"))])
def test_frozen_layers_are_not_trained_and_the_box_is_sound(method, kw):
    model, X, y, res = _run(method, **kw)
    init = model.state_dict()
    plain = sgd_train(model, X, y, "hinge", epochs=EPOCHS, lr=LR, batch_size=BATCH, weight_decay=WD)
    for name, p in plain.state_dict().items():
        assert torch.allclose(res.nominal.state_dict()[name], p, rtol=0, atol=1e-12), name
    for name in FROZEN:
        lo, hi = res.param_bounds[name]
        assert torch.equal(lo, init[name]) and torch.equal(hi, init[name]), f"{name} must stay a point box"
        assert torch.equal(res.nominal.state_dict()[name], init[name])
    assert float((res.param_bounds["2.weight"][1] - res.param_bounds["2.weight"][0]).min()) > 0  # trained
    bud = budget("binary", eps=EPS, feat_k=None)
    for what, net in attack_nets(model, X, y, bud, "hinge", epochs=EPOCHS, lr=LR, batch_size=BATCH,
                                 n_simple=2, n_guided=2, weight_decay=WD):
        assert_in_box(res, net, f"{method} {kw}: {what}")
    # one poisoned data set, drawn once and used in every epoch: random points and box corners
    g = torch.Generator().manual_seed(11)
    for k in range(4):
        delta = (2 * torch.rand(X.shape, generator=g, dtype=X.dtype) - 1) * EPS
        if k % 2:
            delta = torch.sign(delta) * EPS
        net = sgd_train(model, X + delta, y, "hinge", epochs=EPOCHS, lr=LR, batch_size=BATCH, weight_decay=WD)
        assert_in_box(res, net, f"{method} {kw}: fixed poisoned set {k}")


def test_frozen_parameters_are_not_solver_objectives():
    _, _, _, res = _run("mibp", mode="joint", relax="lp")
    trainable_entries = 4 + 1  # layer 2: 4 weights and 1 bias
    for s in res.log:
        assert 0 < s.solver_bounds + s.fallback_bounds <= 2 * trainable_entries


def test_everything_frozen_is_refused():
    X, y = make_data("binary", 8, seed=2)
    model = mlp([2, 4, 1], seed=5).requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad=False: nothing would be trained"):
        certified_train(model, X, y, LinfFeatures(EPS), TrainConfig(epochs=1, batch_size=BATCH, loss="hinge"))
