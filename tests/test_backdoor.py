"""The backdoor certificate (``mibpcert.backdoor.backdoor_certificate``): sound against backdoor
attacks in plain torch (no point certified safe is flipped to the target, the attack success stays
below the bound), multiclass, without a target, and clear errors."""
from __future__ import annotations

import pytest
import torch

from mibpcert import TrainConfig, certified_train, mlp
from mibpcert.backdoor import backdoor_certificate
from mibpcert.threats import SharedTrigger
from tests.helpers.attacks import sgd_train
from tests.helpers.structured import F64, make_data


# ---------------------------------------------------------------------------------------------
# backdoor certificate
# ---------------------------------------------------------------------------------------------
def test_backdoor_certificate_sound_against_backdoor_attacks():
    """Fine-tuning a pre-trained net for 2 epochs while at most one sample per batch carries a
    shared trigger and the target label: no point certified safe is flipped to the target by a
    backdoored model on a triggered input, and the attack success stays below the bound."""
    g = torch.Generator().manual_seed(0)
    n, d = 48, 4
    X = torch.randn(n, d, dtype=F64, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).to(F64)
    Xt = torch.randn(40, d, dtype=F64, generator=g)
    yt = (Xt[:, 0] + Xt[:, 1] > 0).to(F64)
    mask = [0, 0, 1, 1]
    eps = 0.05
    trig = SharedTrigger(mask, eps, k=1, target=1)
    model = sgd_train(mlp([d, 5, 1], seed=0), X, y, "bce", epochs=40, lr=1.0, batch_size=n).requires_grad_(True)  # the init
    recipe = dict(epochs=2, lr=0.1, batch_size=16)
    res = certified_train(model, X, y, trig, TrainConfig(loss="bce", **recipe))
    rep = backdoor_certificate(res, Xt, yt, trig)
    assert 0.5 < rep.certified_fraction and rep.success_upper < 0.5  # measured 0.72 / 0.28
    m = torch.tensor(mask, dtype=F64)
    for s in range(6):
        gs = torch.Generator().manual_seed(s)
        delta = eps * (2 * torch.rand(d, generator=gs, dtype=F64) - 1) * m
        if s % 2:
            delta = eps * torch.sign(delta)

        def poison(net, Xb, yb, lr, delta=delta, gs=gs):
            Xp, yp = Xb.clone(), yb.clone()
            i = int(torch.randint(0, Xb.shape[0], (1,), generator=gs))
            Xp[i] = Xb[i] + delta
            yp[i] = 1.0
            return Xp, yp

        net = sgd_train(model, X, y, "bce", poison=poison, **recipe)
        for test_delta in (delta, -delta, eps * m, -eps * m):
            with torch.no_grad():
                z = net(Xt + test_delta)
            assert ((z >= rep.logits.lo) & (z <= rep.logits.hi)).all()
            hit = (z[:, 0] > 0) & (yt == 0)
            assert not (hit & rep.safe).any(), "a point certified safe was flipped to the target"
            assert float(hit.double().sum() / (yt == 0).sum()) <= rep.success_upper + 1e-12


def test_backdoor_certificate_multiclass_and_no_target():
    X, y = make_data("ce", 4, seed=3)
    X, y = torch.cat([X, X + 0.1]), torch.cat([y, y])
    trig = SharedTrigger([1, 0, 0, 0], 0.01, k=1, target=2)
    res = certified_train(mlp([4, 5, 3], seed=1), X, y, trig, TrainConfig(epochs=1, lr=0.05, batch_size=3, loss="ce"))
    rep = backdoor_certificate(res, X, y, trig)
    assert rep.eligible.sum() == int((y != 2).sum())
    assert set(rep.summary()) >= {"attack_success_upper", "certified_not_flipped", "eligible"}
    rep2 = backdoor_certificate(res, X, y, SharedTrigger([1, 0, 0, 0], 0.01, k=1))
    assert rep2.target is None and int(rep2.eligible.sum()) == X.shape[0]
    with torch.no_grad():
        z = res.nominal(X)
    assert ((z >= rep.logits.lo) & (z <= rep.logits.hi)).all()
    with pytest.raises(ValueError, match="mask has 3 entries"):
        backdoor_certificate(res, X, y, SharedTrigger([1, 0, 0], 0.1, k=1))
    with pytest.raises(ValueError, match="target"):
        backdoor_certificate(res, X, y, trig, target=7)
