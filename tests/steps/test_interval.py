"""One interval SGD step (``mibpcert.steps.interval``, through ``certified_train`` with one step):
the box contains every guided, vertex and random poisoned step, and the bound on the last bias is
attained where it is exact."""
from __future__ import annotations

import pytest
import torch

from mibpcert import TrainConfig, certified_train
from mibpcert.threats import Both, LabelFlip, LabelNoise, LinfFeatures
from tests.helpers.attacks import Poisoner, param_direction, sgd_train
from tests.helpers.bounds import assert_in_box
from tests.helpers.training import F64, TASK, budget, make_data, make_model

_budget = budget


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


def test_flatten_returns_the_flat_vector_an_unflattened_box_views():
    """The box the step returns views one flat vector, which ``flatten`` hands back without a copy
    while the box holds the intervals ``unflatten`` made; any other box is concatenated."""
    from mibpcert.interval.tensor import Interval
    from mibpcert.model import describe
    from mibpcert.steps.interval import flatten, unflatten

    spec = describe(make_model(TASK["bce"], seed=1))
    names = spec.param_names
    flat = Interval.from_stacked(torch.randn(2, spec.num_params, dtype=F64).sort(0).values)
    box = unflatten(flat, spec)
    assert flatten(box, names) is flat
    reordered = {n: box[n] for n in reversed(names)}
    box[names[0]] = Interval(box[names[0]].lo.clone(), box[names[0]].hi.clone())  # no longer a view
    for b in (box, reordered):
        again = flatten(b, names)
        assert again is not flat and torch.equal(again.stacked, flat.stacked)


def test_interval_step_returns_ordinary_tensors_and_constants_stay_ordinary():
    """The step runs in inference mode, but its box (and the cached constants it first made
    there) are ordinary tensors: they can be changed in place and take part in autograd."""
    import mibpcert.interval.tensor as T
    from mibpcert import mlp
    from mibpcert.interval.tensor import Interval
    from mibpcert.model import describe
    from mibpcert.steps.interval import interval_step
    from mibpcert.threats import LinfFeatures, TaskInfo

    T._PAIRS.clear()
    T._INF.clear()
    model = mlp([2, 3, 1], seed=0)
    spec = describe(model)
    X = torch.randn(5, 2, dtype=torch.float64)
    y = (X[:, 0] > 0).to(torch.float64)
    box = {n: Interval.point(p.detach().clone()) for n, p in model.state_dict().items()}
    sb = interval_step(spec, box, LinfFeatures(0.1).region(X, y, TaskInfo("binary", 2, 2, 5)), "bce", 0.1)
    assert T._PAIRS and T._INF
    for t in list(T._PAIRS.values()) + list(T._INF.values()):
        assert not t.is_inference()
    for iv in sb.params.values():
        assert not iv.lo.is_inference() and not iv.hi.is_inference()
        w = torch.zeros_like(iv.lo, requires_grad=True)
        torch.clamp(w, iv.lo, iv.hi).sum().backward()  # saves the bounds for backward
        iv.lo.clone().add_(1.0)
