"""Bad input is rejected early with one ValueError/TypeError that names the problem; runs whose
bounds blow up raise BoundsDiverged; NaN bounds never certify anything."""
import math

import pytest
import torch

from mibpcert import BoundsDiverged, TrainConfig, certified_train, certify, mlp
from mibpcert.threats import Both, LabelFlip, LabelNoise, LinfFeatures, from_config

F64 = torch.float64


def binary_data(n=10, d=2):
    X = torch.randn(n, d, dtype=F64)
    y = (X[:, 0] > 0).to(F64)
    return X, y


def multi_data(n=10):
    X = torch.randn(n, 2, dtype=F64)
    y = torch.randint(0, 3, (n,)).to(F64)
    return X, y


def reg_data(n=10):
    X = torch.randn(n, 3, dtype=F64)
    return X, torch.randn(n, 2, dtype=F64)


CFG = dict(epochs=1, lr=0.1, batch_size=4)


def train(model, X, y, threat=None, **cfg):
    kw = dict(CFG, **cfg)
    return certified_train(model, X, y, threat if threat is not None else LinfFeatures(0.01), TrainConfig(**kw))


# ---------------------------------------------------------------------------------------------
# data shapes and values
# ---------------------------------------------------------------------------------------------
def test_X_one_dimensional():
    X, y = binary_data()
    with pytest.raises(ValueError, match=r"inputs must have shape \(N, 2\)"):
        train(mlp([2, 3, 1]), X[:, 0], y)


def test_wrong_number_of_features():
    X, y = binary_data(d=3)
    with pytest.raises(ValueError, match="3 features but the model expects 2"):
        train(mlp([2, 3, 1]), X, y)


def test_label_length_mismatch():
    X, y = binary_data()
    with pytest.raises(ValueError, match="labels have 9 rows but the inputs have 10"):
        train(mlp([2, 3, 1]), X, y[:9])


def test_X_not_a_tensor_and_empty():
    X, y = binary_data()
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        train(mlp([2, 3, 1]), X.numpy(), y)
    with pytest.raises(TypeError, match="labels must be a torch.Tensor"):
        train(mlp([2, 3, 1]), X, y.numpy())
    with pytest.raises(ValueError, match="empty"):
        train(mlp([2, 3, 1]), X[:0], y[:0])


@pytest.mark.parametrize("loss", ["bce", "hinge"])
def test_binary_labels_not_zero_one(loss):
    X, y = binary_data()
    for bad in (y * 2 - 1, y + 0.5, y.unsqueeze(1)):  # {-1, 1}, {0.5, 1.5}, 2-D
        with pytest.raises(ValueError, match="values 0 or 1"):
            train(mlp([2, 3, 1]), X, bad, loss=loss)


def test_ce_labels_out_of_range_or_not_integer():
    X, y = multi_data()
    for bad, what in ((y + 3, "too large"), (y - 1, "negative"), (y + 0.5, "fractional"), (y.unsqueeze(1), "2-D")):
        with pytest.raises(ValueError, match=r"integer class labels of shape \(N,\) in \[0, 2\]"):
            train(mlp([2, 3, 3]), X, bad, loss="ce", threat=LinfFeatures(0.01))


def test_loss_and_model_output_mismatch():
    X, y = binary_data()
    with pytest.raises(ValueError, match="needs a model with 1 output logit"):
        train(mlp([2, 3, 2]), X, y, loss="bce")
    with pytest.raises(ValueError, match="at least 2 output logits"):
        train(mlp([2, 3, 1]), X, y, loss="ce")
    Xr, yr = reg_data()
    with pytest.raises(ValueError, match=r"targets of shape \(N, 2\)"):
        train(mlp([3, 3, 2]), Xr, yr[:, :1], loss="mse")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_X(bad):
    X, y = binary_data()
    X[3, 1] = bad
    with pytest.raises(ValueError, match="inputs contain NaN or infinite values"):
        train(mlp([2, 3, 1]), X, y)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nonfinite_y(bad):
    X, y = reg_data()
    y[2, 0] = bad
    with pytest.raises(ValueError, match="labels contain NaN or infinite values"):
        train(mlp([3, 3, 2]), X, y, loss="mse", threat=LabelNoise(1, 0.1))
    Xb, yb = binary_data()
    yb[0] = bad
    with pytest.raises(ValueError, match="labels contain NaN or infinite values"):
        train(mlp([2, 3, 1]), Xb, yb)


def test_select_epoch_without_validation_data():
    X, y = binary_data()
    with pytest.raises(ValueError, match="select_epoch needs a validation set"):
        train(mlp([2, 3, 1]), X, y, select_epoch=True)
    Xv, yv = binary_data(6, d=3)
    with pytest.raises(ValueError, match="validation inputs have 3 features"):
        certified_train(mlp([2, 3, 1]), X, y, LinfFeatures(0.01), TrainConfig(select_epoch=True, **CFG), X_val=Xv, y_val=yv)


# ---------------------------------------------------------------------------------------------
# threat models
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [-0.1, math.nan, math.inf])
def test_bad_eps(eps):
    with pytest.raises(ValueError, match="eps must be a finite non-negative number"):
        LinfFeatures(eps)


@pytest.mark.parametrize("gamma", [-0.1, math.nan])
def test_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma must be a finite non-negative number"):
        LabelNoise(1, gamma)


@pytest.mark.parametrize("make", [lambda k: LinfFeatures(0.1, k=k), lambda k: LabelFlip(k), lambda k: LabelNoise(k, 0.1)])
@pytest.mark.parametrize("k", [-1, 1.5, True, "2"])
def test_bad_k(make, k):
    with pytest.raises(ValueError, match="k must be a non-negative integer"):
        make(k)


@pytest.mark.parametrize("threat", [LinfFeatures(0.1, k=5), LabelFlip(5)])
def test_k_larger_than_batch(threat):
    X, y = binary_data()
    with pytest.raises(ValueError, match="k=5 poisoned samples per batch is larger than the batch size 4"):
        train(mlp([2, 3, 1]), X, y, threat=threat)


def test_k_larger_than_small_data_set():
    X, y = binary_data(3)  # the whole data set is one batch of 3 (batch_size 4)
    with pytest.raises(ValueError, match="larger than the batch size 3"):
        train(mlp([2, 3, 1]), X, y, threat=LabelFlip(4))


def test_both_budgets_checked_separately():
    X, y = binary_data()
    with pytest.raises(ValueError, match="larger than the batch size"):
        train(mlp([2, 3, 1]), X, y, threat=Both(LinfFeatures(0.1, k=5), LabelFlip(1)))
    # each fits, their sum (6) may exceed the batch: accepted
    train(mlp([2, 3, 1]), X, y, threat=Both(LinfFeatures(0.1, k=3), LabelFlip(3)))


def test_label_flip_target_out_of_range():
    X, y = multi_data()
    with pytest.raises(ValueError, match="target class 3 out of range for 3 classes"):
        train(mlp([2, 3, 3]), X, y, loss="ce", threat=LabelFlip(1, to=3))
    Xb, yb = binary_data()
    with pytest.raises(ValueError, match="target class 2 out of range for 2 classes"):
        train(mlp([2, 3, 1]), Xb, yb, threat=LabelFlip(1, to=2))
    for bad in (-1, 1.0, True):
        with pytest.raises(ValueError, match="'to' must be a non-negative integer"):
            LabelFlip(1, to=bad)


def test_label_noise_on_classification_and_flip_on_regression():
    X, y = binary_data()
    with pytest.raises(ValueError, match="LabelNoise needs a regression task"):
        train(mlp([2, 3, 1]), X, y, threat=LabelNoise(1, 0.1))
    Xr, yr = reg_data()
    with pytest.raises(ValueError, match="LabelFlip needs a classification task"):
        train(mlp([3, 3, 2]), Xr, yr, loss="mse", threat=LabelFlip(1))


def test_domain_reversed():
    with pytest.raises(ValueError, match="domain must be"):
        LinfFeatures(0.1, domain=(1.0, 0.0))


def test_threat_type_checks():
    X, y = binary_data()
    with pytest.raises(TypeError, match="threat must be a mibpcert.threats model"):
        train(mlp([2, 3, 1]), X, y, threat={"type": "linf_features", "eps": 0.1})
    with pytest.raises(TypeError, match="must be threat models"):
        Both(LinfFeatures(0.1), 0.3)


def test_from_config_errors():
    with pytest.raises(ValueError, match="'type' key"):
        from_config({"eps": 0.1})
    with pytest.raises(ValueError, match="unknown threat type 'linf'"):
        from_config({"type": "linf", "eps": 0.1})
    with pytest.raises(ValueError, match="missing the parameter 'eps'"):
        from_config({"type": "linf_features"})
    with pytest.raises(ValueError, match="missing the parameter 'gamma'"):
        from_config({"type": "label_noise", "k": 1})
    with pytest.raises(ValueError, match="exactly two"):
        from_config({"type": "both", "parts": [{"type": "label_flip", "k": 1}]})
    with pytest.raises(ValueError, match="eps must be a finite non-negative"):
        from_config({"type": "linf_features", "eps": -1})
    t = from_config({"type": "both", "paired": True, "parts": [{"type": "linf_features", "eps": 0.1, "k": 2}, {"type": "label_flip", "k": 1, "to": 0}]})
    assert isinstance(t, Both) and t.paired and t.k == 2


# one valid table per threat type; every scalar key is then given values of the wrong type
_LINF = {"type": "linf_features", "eps": 0.1, "k": 1}
VALID_THREATS = {
    "linf_features": {"type": "linf_features", "eps": 0.1, "k": 1, "domain": [0.0, 1.0]},
    "label_flip": {"type": "label_flip", "k": 1, "to": 0},
    "label_noise": {"type": "label_noise", "k": 1, "gamma": 0.1},
    "feature_values": {"type": "feature_values", "feature": 0, "values": [0.0, 1.0], "k": 1},
    "one_hot_feature": {"type": "one_hot_feature", "columns": [0, 1], "k": 1},
    "missing_values": {"type": "missing_values", "features": [0], "low": -1.0, "high": 1.0, "k": 1},
    "l0_features": {"type": "l0_features", "eps": 0.1, "s": 1, "k": 1},
    "l1_features": {"type": "l1_features", "eps1": 0.1, "k": 1},
    "shared_trigger": {"type": "shared_trigger", "mask": [1, 0], "eps": 0.1, "k": 1, "target": 1},
    "union": {"type": "union", "parts": [_LINF, {"type": "label_flip", "k": 1}]},
    "global_budget": {"type": "global_budget", "threat": _LINF, "k": 2},
    "both": {"type": "both", "paired": False, "parts": [_LINF, {"type": "label_flip", "k": 1}]},
}
# what each scalar key holds, and values of another type for it (TOML gives strings, booleans,
# integers, floats and lists)
_KINDS = {"int": ["1", True, 1.5, [1]], "float": ["0.1", True, [0.1]], "bool": ["false", "true", 0, 1],
          "list": ["0", 0.5, True]}
KEY_KINDS = {
    "eps": "float", "eps1": "float", "gamma": "float", "low": "float", "high": "float",
    "k": "int", "to": "int", "feature": "int", "s": "int", "target": "int",
    "paired": "bool", "domain": "list", "values": "list", "columns": "list", "features": "list", "mask": "list",
}
WRONG_TYPED = [
    (kind, key, bad)
    for kind, table in VALID_THREATS.items()
    for key in table if key not in ("type", "parts", "threat")
    for bad in _KINDS[KEY_KINDS[key]]
]


@pytest.mark.parametrize("kind", sorted(VALID_THREATS))
def test_valid_threat_tables_build(kind):
    from_config(VALID_THREATS[kind])


@pytest.mark.parametrize("kind, key, bad", WRONG_TYPED, ids=[f"{k}-{key}-{b!r}" for k, key, b in WRONG_TYPED])
def test_threat_key_of_the_wrong_type_is_refused(kind, key, bad):
    """``paired = "false"`` used to mean True; no key may be coerced from another type."""
    table = dict(VALID_THREATS[kind], **{key: bad})
    with pytest.raises(ValueError, match=key if key not in ("values",) else "values"):
        from_config(table)


def test_nested_threat_keys_are_type_checked():
    inner = dict(_LINF, k="1")
    for table in ({"type": "union", "parts": [inner, {"type": "label_flip", "k": 1}]},
                  {"type": "global_budget", "threat": dict(_LINF, eps="0.1"), "k": 2},
                  {"type": "both", "paired": "false", "parts": [_LINF, {"type": "label_flip", "k": 1}]}):
        with pytest.raises(ValueError):
            from_config(table)


def test_domain_with_one_value_is_one_clear_error():
    with pytest.raises(ValueError, match="domain must be a pair"):
        from_config({"type": "linf_features", "eps": 0.1, "domain": [0]})


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
        (lambda: torch.nn.Identity(), "unsupported model type Identity"),
    ],
)
def test_unsupported_models(model, match):
    X, y = binary_data()
    with pytest.raises(TypeError, match=match):
        train(model(), X, y)


def test_mlp_widths_checked():
    with pytest.raises(ValueError, match="widths"):
        mlp([3])
    with pytest.raises(ValueError, match="widths"):
        mlp([3, 0, 1])


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(loss="foo"), "unsupported loss 'foo'"),
        (dict(epochs=0), "TrainConfig.epochs must be a positive integer"),
        (dict(epochs=1.5), "TrainConfig.epochs must be a positive integer"),
        (dict(batch_size=0), "TrainConfig.batch_size must be a positive integer"),
        (dict(lr=-0.1), "TrainConfig.lr must be"),
        (dict(lr=0.0), "TrainConfig.lr must be positive"),
        (dict(lr=math.nan), "TrainConfig.lr must be"),
        (dict(lr=math.inf), "TrainConfig.lr must be"),
        (dict(weight_decay=-1.0), "TrainConfig.weight_decay must be"),
        (dict(lr_decay=-0.5), "TrainConfig.lr_decay must be"),
        (dict(val_eps=math.nan), "TrainConfig.val_eps must be"),
        (dict(method="foo"), "TrainConfig.method must be one of"),
        (dict(mode="foo"), "TrainConfig.mode must be one of"),
        (dict(relax="foo"), "TrainConfig.relax must be one of"),
        (dict(dtype="float16"), "TrainConfig.dtype must be one of"),
        (dict(device="tpu"), "TrainConfig.device must be"),
        (dict(time_limit=0), "TrainConfig.time_limit must be positive"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


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


# ---------------------------------------------------------------------------------------------
# divergence and NaN bounds
# ---------------------------------------------------------------------------------------------
def test_bounds_blow_up_raises_bounds_diverged():
    torch.manual_seed(0)
    X = torch.randn(12, 3, dtype=F64)
    y = torch.randn(12, 2, dtype=F64)
    cfg = TrainConfig(epochs=6, lr=1e3, batch_size=4, loss="mse")
    with pytest.raises(BoundsDiverged, match=r"non-finite at step \d+ \(epoch \d+\)") as info:
        certified_train(mlp([3, 8, 2], seed=1), X, y, LinfFeatures(10.0), cfg)
    assert "Lower lr or eps" in str(info.value)


def test_select_epoch_keeps_the_best_finite_epoch_when_a_later_epoch_diverges():
    """With select_epoch, bounds that blow up in epoch 2 no longer discard the finished epochs:
    the result is the best of them (the same box as a run stopped after that epoch) and says
    where the bounds diverged; without select_epoch the run still raises."""
    torch.manual_seed(0)
    X, y = binary_data(40)
    Xv, yv = binary_data(40)
    kw = dict(lr=2.0, batch_size=10, loss="bce")
    model = mlp([2, 16, 16, 1], seed=1)
    res = certified_train(model, X, y, LinfFeatures(0.01), TrainConfig(epochs=40, select_epoch=True, **kw), Xv, yv)
    assert res.diverged is not None and "non-finite at step 13 (epoch 3)" in res.diverged
    assert len(res.log) == 12 and len(res.epoch_val_certified) == 3
    assert res.selected_epoch < 3
    ref = certified_train(model, X, y, LinfFeatures(0.01), TrainConfig(epochs=res.selected_epoch + 1, **kw))
    for name, (lo, hi) in res.param_bounds.items():
        assert torch.isfinite(lo).all() and torch.isfinite(hi).all()
        assert torch.equal(lo, ref.param_bounds[name][0]) and torch.equal(hi, ref.param_bounds[name][1])
        assert torch.equal(res.nominal.state_dict()[name], ref.nominal.state_dict()[name])
    from mibpcert.report import format_summary, run_summary

    text = format_summary(run_summary(res, certify(res, Xv, yv)))
    assert "WARNING: training stopped early, the bounds diverged" in text
    with pytest.raises(BoundsDiverged, match="step 13"):
        certified_train(model, X, y, LinfFeatures(0.01), TrainConfig(epochs=40, **kw))


def test_loss_bounds_stay_in_the_loss_range_for_a_huge_box():
    """A huge but finite box: the lower bound on every loss is >= 0 (it was about -1.8e285 for BCE)."""
    torch.manual_seed(0)
    X, y = binary_data(20)
    res = train(mlp([2, 4, 1], seed=0), X, y, loss="bce")
    res.param_bounds = {n: (lo - 1e150, hi + 1e150) for n, (lo, hi) in res.param_bounds.items()}
    rep = certify(res, X, y)
    lo, hi = rep.test_loss_bounds
    assert 0.0 <= lo <= hi
    from mibpcert.interval.losses import bounded_loss, label_mask
    from mibpcert.interval.tensor import Interval

    z = Interval(torch.full((4, 3), -1e300, dtype=F64), torch.full((4, 3), 1e300, dtype=F64))
    labels = torch.tensor([0, 1, 2, 0])
    for loss, zz, lab in (("bce", z[:, :1], label_mask(labels % 2, 2)), ("hinge", z[:, :1], label_mask(labels % 2, 2)),
                          ("ce", z, label_mask(labels, 3)), ("mse", z, Interval.point(torch.zeros(4, 3, dtype=F64)))):
        assert bool((bounded_loss(loss, zz, lab)[0].lo >= 0).all()), loss


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
