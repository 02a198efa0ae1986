"""The training configuration (``mibpcert.config.TrainConfig``): every bad value is refused with an
error naming the field."""
from __future__ import annotations

import math

import pytest
import torch

from mibpcert import TrainConfig


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
        (dict(step_time_limit=-1.0), "TrainConfig.step_time_limit must be positive"),
        (dict(relational=1), "TrainConfig.relational must be true or false"),
        (dict(method="affine", relational=True), "needs method='mibp' and mode='joint' or 'auto'"),
        (dict(method="mibp", mode="per_sample", relational=True),
         "needs method='mibp' and mode='joint' or 'auto', got method='mibp', mode='per_sample'"),
        (dict(executor="dask"), r"TrainConfig.executor must be one of \('local', 'ray'\), got 'dask'"),
        (dict(executor=None), "TrainConfig.executor must be one of"),
        (dict(executor="ray", ray_address=6379), "TrainConfig.ray_address must be a Ray address string or None, got 6379"),
        (dict(executor="ray", ray_address=" "), "TrainConfig.ray_address must be a Ray address string"),
        (dict(ray_address="auto"), "TrainConfig.ray_address='auto' needs executor='ray', got executor='local'"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_a_dict_of_fields_is_a_config():
    """certified_train takes a dict of TrainConfig fields; unknown fields and other types are
    refused with the list of fields."""
    import torch

    from mibpcert import certified_train, mlp
    from mibpcert.threats import LinfFeatures

    X = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = (X[:, 0] > 0).to(torch.float64)
    a = certified_train(mlp([2, 3, 1]), X, y, LinfFeatures(0.01), {"epochs": 2, "batch_size": 4})
    b = certified_train(mlp([2, 3, 1]), X, y, LinfFeatures(0.01), TrainConfig(epochs=2, batch_size=4))
    assert len(a.log) == 4 and all(torch.equal(a.param_bounds[n][1], b.param_bounds[n][1]) for n in a.param_bounds)
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\) \['epoch'\]; the fields are \['epochs'"):
        TrainConfig.of({"epoch": 2})
    with pytest.raises(TypeError, match="config must be a TrainConfig or a dict of its fields, got list"):
        TrainConfig.of([("epochs", 2)])


@pytest.mark.parametrize("n,batch,relational,mode", [
    (100, 100, False, "joint"),       # one full batch of 100: one joint program
    (101, 101, False, "per_sample"),  # a full batch above the measured size
    (100, 50, False, "per_sample"),   # mini-batches
    (1000, 100, True, "joint"),       # the relational program is joint
])
def test_auto_mode_is_joint_only_for_small_full_batches(n, batch, relational, mode):
    from mibpcert.config import AUTO_JOINT_MAX_BATCH

    assert AUTO_JOINT_MAX_BATCH == 100
    cfg = TrainConfig(method="mibp", batch_size=batch, relational=relational)
    assert cfg.mode == "auto" and cfg.relax == "lp"
    assert cfg.resolved(n).mode == mode
    assert TrainConfig(method="mibp", mode="per_sample", batch_size=batch).resolved(n).mode == "per_sample"


def test_a_run_records_the_mode_it_used():
    from mibpcert import certified_train, mlp
    from mibpcert.threats import LinfFeatures

    X = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [1.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    for batch, mode in ((4, "joint"), (2, "per_sample")):
        res = certified_train(mlp([2, 3, 1], seed=0), X, y, LinfFeatures(0.01), dict(method="mibp", batch_size=batch))
        assert res.config.mode == mode
