"""Reading the model: what is certified is exactly what torch runs (a module used twice counts
twice), and whatever the reader cannot see through (hooks, parametrizations, subclasses with
their own forward, shared weights) is refused before any work with an error naming it."""
import dataclasses
import subprocess
import sys

import pytest
import torch
import torch.optim.optimizer as torch_optimizer

from mibpcert import TrainConfig, certified_train, certify, describe, mlp
from mibpcert.threats import LinfFeatures
from tests.helpers.inputs import binary_data, train

F64 = torch.float64
nn = torch.nn


def _data(n=40, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=F64)
    return X, (X[:, 0] + 0.3 * X[:, 1] > 0).to(F64)


def _shared_relu_net(bias2: float = 0.0) -> nn.Sequential:
    torch.manual_seed(3)
    relu = nn.ReLU()
    net = nn.Sequential(nn.Linear(2, 4), relu, nn.Linear(4, 4), relu, nn.Linear(4, 1)).double()
    with torch.no_grad():
        net[2].bias.fill_(bias2)
    return net


def test_relu_module_used_twice_is_read_twice():
    spec = describe(_shared_relu_net())
    assert [(d.in_features, d.out_features, d.relu) for d in spec.layers] == [(2, 4, True), (4, 4, True), (4, 1, False)]
    assert spec.param_names == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]


def test_shared_relu_bounds_contain_the_torch_model_everywhere():
    """The reproducer of the false certificate: layer 2's pre-activations are positive on the
    training data (so a dropped ReLU goes unnoticed in training) but not on far-away test points;
    every logit of the trained torch model must lie in the certified logit bounds, and no
    certified point may be one the torch model gets wrong."""
    X, y = _data()
    net = _shared_relu_net(bias2=3.0)
    res = certified_train(net, X, y, LinfFeatures(0.001), TrainConfig(epochs=2, lr=0.1, batch_size=20, loss="bce"))
    g = torch.Generator().manual_seed(1)
    Xt = 6.0 * torch.randn(2000, 2, generator=g, dtype=F64)
    with torch.no_grad():
        z = res.nominal(Xt)[:, 0]
        pre2 = res.nominal[:3](Xt)
    assert bool((pre2 < 0).any()), "the test points must reach the ReLU's negative side"
    wrong = (z <= 0).to(F64)  # labels the torch model gets wrong
    rep = certify(res, Xt, wrong)
    assert bool(((rep.logits.lo[:, 0] <= z) & (z <= rep.logits.hi[:, 0])).all())
    assert int(rep.certified.sum()) == 0


def test_same_linear_module_twice_is_refused():
    lin = nn.Linear(4, 4)
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), lin, nn.ReLU(), lin, nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(TypeError, match="layer '4' is the same Linear module as layer '2'"):
        describe(net)


def test_tied_parameters_are_refused():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    net[2].weight = net[0].weight
    with pytest.raises(TypeError, match="'0.weight' and '2.weight' share their memory"):
        describe(net)


class _Scaled(nn.Linear):
    def forward(self, x):
        return 2.0 * super().forward(x)


class _PlainSubclass(nn.Linear):
    """A subclass that computes exactly what Linear computes."""


class _DoubledSequential(nn.Sequential):
    def forward(self, x):
        return 2.0 * super().forward(x)


class _CallOverride(nn.Sequential):
    """Passes the structural checks (no own forward) but changes what calling it computes."""

    def __call__(self, x):
        return super().__call__(x) + 1.0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: nn.Sequential(_Scaled(2, 3), nn.ReLU(), nn.Linear(3, 1)), r"layer '0' of type _Scaled \(a subclass\)"),
        (lambda: nn.Sequential(_PlainSubclass(2, 3), nn.ReLU(), nn.Linear(3, 1)), r"layer '0' of type _PlainSubclass \(a subclass\)"),
        (lambda: _DoubledSequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), "a subclass of Sequential"),
        (lambda: _CallOverride(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), "a subclass of Sequential"),
        (lambda: _Scaled(2, 1), "a subclass of Linear"),
        (lambda: nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU()), nn.Linear(3, 1)), "layer '1' of type Sequential"),
        (lambda: nn.Sequential(nn.Flatten(0), nn.Linear(2, 1)), r"only Flatten\(start_dim=1, end_dim=-1\)"),
    ],
)
def test_subclasses_and_nesting_are_refused(make, match):
    with pytest.raises(TypeError, match=match):
        describe(make())


def test_leading_flatten_and_inplace_relu_are_read():
    spec = describe(nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.ReLU(inplace=True), nn.Linear(3, 1)))
    assert [d.relu for d in spec.layers] == [True, False]
    assert spec.param_names == ["1.weight", "1.bias", "3.weight", "3.bias"]


def test_shared_storage_is_refused():
    net = mlp([3, 3, 3, 1], seed=0)
    net[2].weight = nn.Parameter(net[0].weight.data)  # another Parameter object over the same memory
    with pytest.raises(TypeError, match="'0.weight' and '2.weight' share their memory"):
        describe(net)


def test_gradient_hook_on_a_parameter_is_refused():
    net = mlp([2, 3, 1], seed=0)
    net[0].weight.register_hook(lambda g: 10 * g)
    with pytest.raises(TypeError, match="parameter 'weight' of module '0' has gradient hooks"):
        describe(net)


@pytest.mark.parametrize("how", ["buffer", "plain_tensor", "bias_shape"])
def test_linear_parameters_must_be_its_own_parameters(how):
    net = mlp([2, 3, 1], seed=0)
    lin = net[0]
    if how == "buffer":
        w = lin.weight.detach().clone()
        del lin.weight
        lin.register_buffer("weight", w)
    elif how == "plain_tensor":
        w = lin.weight.detach().clone()
        del lin.weight
        lin.weight = w
    else:
        lin.bias = nn.Parameter(torch.zeros(1, dtype=F64))
    with pytest.raises(TypeError, match="layer '0'"):
        describe(net)


def test_reduced_precision_float32_matmuls_are_refused():
    X, y = _data()
    prec = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        with pytest.raises(ValueError, match="IEEE float32 matmuls"):
            certified_train(mlp([2, 3, 1], seed=0, dtype=torch.float32), X, y, LinfFeatures(0.01),
                            TrainConfig(epochs=1, batch_size=20, dtype="float32"))
    finally:
        torch.set_float32_matmul_precision(prec)


def _hooked(kind: str) -> nn.Module:
    net = mlp([2, 3, 1], seed=0)
    target = net if kind.startswith("model_") else net[0]
    if kind.endswith("forward_hook"):
        target.register_forward_hook(lambda m, i, o: o * 2)
    elif kind.endswith("forward_pre_hook"):
        target.register_forward_pre_hook(lambda m, i: (i[0] * 2,))
    elif kind.endswith("backward_hook"):
        target.register_full_backward_hook(lambda m, gi, go: None)
    return net


@pytest.mark.parametrize("kind", ["forward_hook", "forward_pre_hook", "backward_hook", "model_forward_hook"])
def test_module_hooks_are_refused(kind):
    with pytest.raises(TypeError, match="hooks?"):
        describe(_hooked(kind))


def test_global_hook_is_refused():
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o)
    try:
        with pytest.raises(TypeError, match="global torch.nn module hooks"):
            describe(mlp([2, 3, 1], seed=0))
    finally:
        handle.remove()


def test_weight_norm_is_refused_with_a_clear_message():
    net = nn.Sequential(torch.nn.utils.parametrizations.weight_norm(nn.Linear(2, 3)), nn.ReLU(), nn.Linear(3, 1)).double()
    with pytest.raises(TypeError, match="module '0' .*parametrized parameters .*weight_norm"):
        describe(net)
    X, y = _data()
    with pytest.raises(TypeError, match="parametrized"):
        certified_train(net, X, y, LinfFeatures(0.01), TrainConfig(epochs=1, batch_size=20))


def test_forward_that_differs_from_the_description_is_refused_before_training(monkeypatch):
    """The structural checks are backed by a numerical one: a model that passes them but
    computes something else on the training inputs is refused before any step."""
    import mibpcert.train as train_mod

    net = mlp([2, 3, 1], seed=0)
    def without_relu(m):
        spec = describe(m)
        return dataclasses.replace(spec, layers=(dataclasses.replace(spec.layers[0], relu=False), spec.layers[1]))

    monkeypatch.setattr(train_mod, "describe", without_relu)
    X, y = _data()
    with pytest.raises(TypeError, match="does not compute the network mibpcert read"):
        certified_train(net, X, y, LinfFeatures(0.01), TrainConfig(epochs=1, batch_size=20))


def test_description_forward_equals_torch():
    net = mlp([3, 5, 4, 2], seed=2)
    X = torch.randn(7, 3, dtype=F64)
    spec = describe(net)
    with torch.no_grad():
        assert torch.equal(spec.forward(net.state_dict(), X), net(X))


def _instance_forward(m):
    import types

    lin = m[2]
    lin.forward = types.MethodType(lambda self, x: -nn.functional.linear(x, self.weight, self.bias), lin)
    return m


def _instance_deepcopy(m):
    m.__deepcopy__ = lambda memo: mlp([2, 3, 1], seed=9)
    return m


def _state_dict_hook(m):
    m[0]._register_state_dict_hook(lambda mod, sd, prefix, local: sd)
    return m


@pytest.mark.parametrize("tamper, match", [(_instance_forward, "module '2' .*overrides forward on the instance"),
                                           (_instance_deepcopy, "the model .*overrides __deepcopy__"),
                                           (_state_dict_hook, "module '0' .*state dict hooks")])
def test_instance_overrides_and_state_dict_hooks_are_refused(tamper, match):
    with pytest.raises(TypeError, match=match):
        describe(tamper(mlp([2, 3, 1], seed=0)))


def test_plain_attributes_are_fine():
    net = mlp([2, 3, 1], seed=0)
    net[0].note = "first layer"  # not callable, not shadowing anything: harmless
    describe(net)


def test_global_optimizer_hook_is_refused():
    X, y = _data()
    handle = torch_optimizer.register_optimizer_step_post_hook(lambda opt, args, kwargs: None)
    try:
        with pytest.raises(TypeError, match="global optimizer hooks"):
            certified_train(mlp([2, 3, 1], seed=0), X, y, LinfFeatures(0.01), TrainConfig(epochs=1, batch_size=20))
    finally:
        handle.remove()


def test_model_dtype_other_than_the_config_is_announced(caplog):
    X, y = _data()
    certified_train(mlp([2, 3, 1], seed=0, dtype=torch.float32), X, y, LinfFeatures(0.01), TrainConfig(epochs=1, batch_size=20))
    assert "certifying SGD in torch.float64" in caplog.text


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model,match",
    [
        (lambda: torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)), "unsupported layer '1' of type Tanh"),
        (lambda: torch.nn.Sequential(torch.nn.Conv1d(1, 1, 2), torch.nn.Flatten(), torch.nn.Linear(1, 1)), "unsupported layer '0' of type Conv1d"),
        (lambda: torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1), torch.nn.ReLU()), "last layer must be Linear"),
        (lambda: torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(2, 1)), "ReLU must follow a Linear layer"),
        (lambda: torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(4, 1)), "widths do not chain"),
        (lambda: torch.nn.Sequential(), "no Linear layer"),
        (lambda: torch.nn.Identity(), "the model has no Linear layer"),
        (lambda: _Chain(lambda m, x: m.fc2(torch.sigmoid(m.fc1(x)))), r"unsupported operation `%sigmoid .* in _Chain.forward"),
        (lambda: _Chain(lambda m, x: m.fc2(m.fc1(x) + torch.relu(m.fc1(x)))), r"_Chain.forward is not a chain at `%fc1_1"),
        (lambda: _Chain(lambda m, x: m.fc2(m.fc1(x)) if x.sum() > 0 else m.fc1(x)), "torch.fx cannot read its forward"),
        (lambda: _Chain(lambda m, x: m.fc2(torch.relu(m.fc1(x))), unused=True), r"parameters \['spare.bias', 'spare.weight'\] are not used"),
        (lambda: _Chain(lambda m, x: m.fc2(torch.relu(m.fc1(x * 2)))), r"unsupported operation `%mul"),
    ],
)
def test_unsupported_models(model, match):
    """Each is refused before training with a TypeError naming the problem."""
    X, y = binary_data()
    with pytest.raises(TypeError, match=match):
        train(model(), X, y)


class _Chain(torch.nn.Module):
    """A module (not a Sequential) whose forward is written by the test."""

    def __init__(self, fwd, unused: bool = False) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(2, 3, dtype=torch.float64), torch.nn.Linear(3, 1, dtype=torch.float64)
        if unused:
            self.spare = torch.nn.Linear(2, 2, dtype=torch.float64)
        type(self).fwd = fwd

    def forward(self, x):
        return type(self).fwd(self, x)


@pytest.mark.parametrize("relu", ["F.relu", "torch.relu", "method", "module"])
def test_a_module_whose_forward_is_a_chain_trains_like_its_sequential(relu):
    """torch.fx reads a custom module's forward (Flatten, Linear, each way of writing a ReLU): its
    box equals the one of the Sequential with the same weights, bit for bit."""
    import torch.nn.functional as F

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.flat, self.fc1, self.act = torch.nn.Flatten(), torch.nn.Linear(2, 4), torch.nn.ReLU()
            self.fc2 = torch.nn.Linear(4, 1)

        def forward(self, x):
            h = self.fc1(self.flat(x))
            h = {"F.relu": F.relu, "torch.relu": torch.relu, "method": lambda t: t.relu(), "module": self.act}[relu](h)
            return self.fc2(h)

    net = Net().double()
    seq = torch.nn.Sequential(torch.nn.Flatten(), net.fc1, torch.nn.ReLU(), net.fc2)
    X, y = binary_data()
    a = train(net, X, y)
    b = train(seq, X, y)
    assert list(a.param_bounds) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    for (na, (la, ha)), (lb, hb) in zip(a.param_bounds.items(), b.param_bounds.values()):
        assert torch.equal(la, lb) and torch.equal(ha, hb), na


def test_mlp_widths_checked():
    with pytest.raises(ValueError, match="widths"):
        mlp([3])
    with pytest.raises(ValueError, match="widths"):
        mlp([3, 0, 1])


def test_mlp_starts_from_the_same_weights_in_every_dtype():
    """float32 is the float64 init rounded, not another draw: dtype changes the arithmetic only."""
    a, b = mlp([2, 7, 3], seed=5), mlp([2, 7, 3], seed=5, dtype=torch.float32)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and pb.dtype == torch.float32
        assert torch.equal(pa.float(), pb)


@pytest.mark.parametrize("setting, refused", [
    ("torch.backends.fp32_precision = 'tf32'", {"cpu", "cuda"}),
    ("torch.backends.cuda.matmul.fp32_precision = 'tf32'", {"cuda", "cpu"}),  # cpu: the legacy query is refused, so unknown
    ("torch.backends.mkldnn.matmul.fp32_precision = 'bf16'", {"cpu", "cuda"}),
    ("torch.backends.cuda.matmul.allow_tf32 = True", {"cuda", "cpu"}),
    ("torch.backends.fp32_precision = 'ieee'", set()),
    ("pass", set()),
])
def test_reduced_precision_through_either_precision_api_is_refused(setting, refused):
    """torch's per-backend fp32_precision settings (which make its legacy queries raise once used)
    are read too: a reduced or unknown float32 matmul precision is mibpcert's ValueError, IEEE
    passes. In a subprocess, since these settings are process-wide."""
    code = ("import torch\nfrom mibpcert.interval.tensor import check_exact_float32_matmul\n" + setting + "\n"
            "for dev in ('cpu', 'cuda'):\n"
            "    try:\n"
            "        check_exact_float32_matmul(torch.float32, dev)\n"
            "        check_exact_float32_matmul(torch.float64, dev)\n"
            "    except ValueError as e:\n"
            "        assert 'IEEE float32 matmuls' in str(e)\n"
            "        print('refused', dev)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {line.split()[1] for line in out.stdout.splitlines() if line.startswith("refused")} == refused
