"""The training configuration (``mibpcert.config.TrainConfig``): every bad value is refused with an
error naming the field."""
from __future__ import annotations

import math

import pytest

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
        (dict(relational=1), "TrainConfig.relational must be true or false"),
        (dict(method="affine", relational=True), "needs method='mibp' and mode='joint'"),
        (dict(method="mibp", relational=True), "needs method='mibp' and mode='joint', got method='mibp', mode='per_sample'"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)
