"""The training recipe of ``certified_train`` (``mibpcert.train``): the nominal run equals plain
torch SGD (same init, batches, order, weight decay, step decay), the shuffle orders, and a zero
budget gives a point box."""
from __future__ import annotations

import pytest
import torch

from mibpcert import TrainConfig, certified_train
from mibpcert.threats import LabelFlip, LabelNoise, LinfFeatures
from tests.helpers.attacks import batch_indices, sgd_train
from tests.helpers.training import TASK, make_data, make_model


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


@pytest.mark.parametrize("loss", ["bce", "ce", "mse"])
def test_nominal_run_is_the_plain_torch_loop_bit_for_bit(loss):
    """The nominal model is what ``torch.optim.SGD`` on torch's mean loss gives, bit for bit."""
    import copy

    import torch.nn.functional as F

    task = TASK[loss]
    X, y = make_data(task, 11, seed=4)
    model = make_model(task, seed=5)
    res = certified_train(model, X, y, LinfFeatures(0.01), TrainConfig(epochs=2, lr=0.2, batch_size=4, loss=loss))
    fn = {"bce": lambda z, t: F.binary_cross_entropy_with_logits(z[:, 0], t), "ce": lambda z, t: F.cross_entropy(z, t.long()),
          "mse": F.mse_loss}[loss]
    net = copy.deepcopy(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    for _ in range(2):
        for i in range(0, 11, 4):
            opt.zero_grad()
            fn(net(X[i:i + 4]), y[i:i + 4]).backward()
            opt.step()
    for name, p in net.state_dict().items():
        assert torch.equal(res.nominal.state_dict()[name], p), name


@pytest.mark.parametrize("contiguous", [True, False])
def test_every_step_checks_the_updated_nominal_parameters(monkeypatch, contiguous):
    """The per-step check reads the nominal parameters after the step (flat views of them, or
    copies for a parameter that is not contiguous), not the values they had when the run began."""
    import mibpcert.train as train_mod

    X, y = make_data("binary", 11, seed=4)
    model = make_model("binary", seed=5)
    if not contiguous:
        w = model[0].weight.detach()
        model[0].weight = torch.nn.Parameter(w.T.contiguous().T)  # same values, column-major
        assert not model[0].weight.is_contiguous()
    seen = []
    real = train_mod._step_numbers

    def spy(flat, p, *args):
        seen.append(p.clone())
        return real(flat, p, *args)

    monkeypatch.setattr(train_mod, "_step_numbers", spy)
    res = certified_train(model, X, y, LinfFeatures(0.01), TrainConfig(epochs=2, lr=0.2, batch_size=4, loss="bce"))
    assert len(seen) == 6 and not torch.equal(seen[0], seen[-1])
    assert torch.equal(seen[-1], torch.cat([t.reshape(-1) for t in res.nominal.state_dict().values()]))


@pytest.mark.parametrize("shuffle", [False, True])
def test_batch_regions_are_made_once_and_give_the_same_bounds(monkeypatch, shuffle):
    """In the given order, each batch's threat region is made in the first epoch and reused (for a
    data set under ``REGION_CACHE_BYTES``); the box is the one of fresh regions, bit for bit."""
    import mibpcert.train as train_mod

    X, y = make_data("binary", 11, seed=4)
    model = make_model("binary", seed=5)
    cfg = TrainConfig(epochs=3, lr=0.2, batch_size=4, loss="bce", shuffle=shuffle, seed=1)
    calls = []

    class Counted(LinfFeatures):
        def region(self, Xb, yb, info):
            calls.append(Xb)
            return super().region(Xb, yb, info)

    cached = certified_train(model, X, y, Counted(0.01), cfg)
    assert len(calls) == (9 if shuffle else 3)
    monkeypatch.setattr(train_mod, "REGION_CACHE_BYTES", 0)
    calls.clear()
    fresh = certified_train(model, X, y, Counted(0.01), cfg)
    assert len(calls) == 9
    for name, (lo, hi) in fresh.param_bounds.items():
        assert torch.equal(cached.param_bounds[name][0], lo) and torch.equal(cached.param_bounds[name][1], hi), name


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
# what the result keeps per epoch and per step
# ---------------------------------------------------------------------------------------------
def test_every_epoch_keeps_its_box_and_nominal_model():
    """Epoch e of a 3-epoch run holds the box of a run stopped after e + 1 epochs and the model
    plain torch SGD reaches after e + 1 epochs."""
    task = TASK["bce"]
    X, y = make_data(task, 11, seed=4)
    model = make_model(task, seed=5)
    kw = dict(lr=0.2, batch_size=4, loss="bce", lr_decay=0.7)
    res = certified_train(model, X, y, LinfFeatures(0.01), TrainConfig(epochs=3, **kw))
    assert [e.epoch for e in res.epochs] == [0, 1, 2]
    for e in res.epochs:
        short = certified_train(model, X, y, LinfFeatures(0.01), TrainConfig(epochs=e.epoch + 1, **kw))
        ref = sgd_train(model, X, y, "bce", epochs=e.epoch + 1, lr=0.2, batch_size=4, lr_decay=0.7).state_dict()
        for name, (lo, hi) in short.param_bounds.items():
            assert torch.equal(e.param_bounds[name][0], lo) and torch.equal(e.param_bounds[name][1], hi)
            assert torch.allclose(e.nominal[name], ref[name], rtol=0, atol=1e-12)
    assert not torch.equal(res.epochs[0].param_bounds["0.weight"][1], res.epochs[2].param_bounds["0.weight"][1])


def test_step_log_has_the_mean_width_of_every_parameter_tensor():
    task = TASK["bce"]
    X, y = make_data(task, 11, seed=4)
    res = certified_train(make_model(task, seed=5), X, y, LinfFeatures(0.02), TrainConfig(epochs=2, lr=0.2, batch_size=4))
    last = res.log[-1].tensor_mean_width
    assert list(last) == list(res.param_bounds)
    for name, (lo, hi) in res.param_bounds.items():
        assert last[name] == pytest.approx(float((hi - lo).mean()), rel=1e-12)
    assert res.log[0].tensor_mean_width["0.weight"] < last["0.weight"]


def test_a_long_run_says_after_its_first_step_how_long_the_rest_takes(monkeypatch, caplog):
    import mibpcert.train as train

    task = TASK["bce"]
    X, y = make_data(task, 11, seed=4)
    cfg = TrainConfig(epochs=2, lr=0.2, batch_size=4)
    with caplog.at_level("WARNING", logger="mibpcert"):
        certified_train(make_model(task, seed=5), X, y, LinfFeatures(0.01), cfg)
    assert not [r for r in caplog.records if "remaining" in r.getMessage()]  # short runs say nothing
    monkeypatch.setattr(train, "LONG_RUN_SECONDS", 0.0)
    caplog.clear()
    with caplog.at_level("WARNING", logger="mibpcert"):
        certified_train(make_model(task, seed=5), X, y, LinfFeatures(0.01), cfg)
    lines = [r.getMessage() for r in caplog.records if "remaining" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("step 1 of 6 took ") and "remaining 5 steps" in lines[0]


@pytest.mark.parametrize("seconds,text", [(3.25, "3.2 s"), (42.4, "42 s"), (185, "3 min 5 s"), (8040, "2 h 14 min")])
def test_duration_text(seconds, text):
    from mibpcert.train import duration

    assert duration(seconds) == text
