"""The affine SGD step (``mibpcert.steps.affine``): symbol bookkeeping and input checks. Its
soundness against concrete poisoned trainings is in ``tests/soundness/test_affine_training.py``,
the arithmetic in ``tests/interval/test_affine.py``."""
from __future__ import annotations

import pytest
import torch

from mibpcert import TrainConfig, certified_train, mlp
from mibpcert.interval.tensor import Interval
from mibpcert.threats import LinfFeatures, TaskInfo
from mibpcert.steps.affine import SymbolTable

F64 = torch.float64


def test_one_symbol_per_sample_feature_shared_by_every_step():
    sym = SymbolTable()
    lo = torch.zeros(4, 3, dtype=F64)
    hi = torch.tensor([[1.0, 0.0, 1.0]] * 4, dtype=F64)  # the middle feature is a point
    idx = torch.tensor([7, 2, 9, 4])
    x1 = sym.input_form(Interval(lo, hi), idx, "poisoned")
    assert sym.m == 8, "one symbol per sample and feature of width"
    x2 = sym.input_form(Interval(lo[[1, 3]], hi[[1, 3]]), idx[[1, 3]], "poisoned")  # a later batch
    assert sym.m == 8, "a sample seen again reuses its symbols"
    assert torch.equal(x2.G, x1.G[[1, 3]]), "the same sample gets the same symbols"
    assert bool((x1.e == 0).all()), "shared features carry no independent part"
    other = hi.clone()
    other[0, 0] = 2.0  # a different box for sample 7: an independent term, never a shared symbol
    x3 = sym.input_form(Interval(lo[:1], other[:1]), idx[:1], "poisoned")
    assert float(x3.e[0, 0]) >= 1.0 and bool((x3.G[0, 0] == 0).all())
    x4 = sym.input_form(Interval(lo, hi), None, "poisoned")  # unknown indices: independent terms
    assert bool((x4.G == 0).all()) and bool((x4.e[:, 0] > 0).all())


def test_too_large_a_run_is_refused_before_training():
    X = torch.randn(3000, 64, dtype=F64)
    y = (X[:, 0] > 0).to(F64)
    with pytest.raises(ValueError, match=r"the affine forms \(method='affine', or relational=True\) would need about \d+ GiB"):
        certified_train(mlp([64, 32, 1], seed=0), X, y, LinfFeatures(0.01),
                        TrainConfig(method="affine", loss="hinge", batch_size=500))


def test_float32_is_refused():
    with pytest.raises(ValueError, match="method='affine' needs dtype='float64'"):
        TrainConfig(method="affine", dtype="float32")


def test_chunks_of_samples_give_the_same_step():
    """The batch gradient built a few samples at a time (bounded memory) equals the one built in
    one piece, up to rounding and the numbering of the switch symbols: the relaxations are per
    sample, chunking only splits the sum."""
    import mibpcert.steps.affine as A
    from mibpcert import describe
    from mibpcert.losses import get_loss

    g = torch.Generator().manual_seed(1)
    X = torch.randn(9, 3, dtype=F64, generator=g)
    y = (X[:, 0] > 0).to(F64)
    spec = describe(mlp([3, 4, 1], seed=2))
    net = mlp([3, 4, 1], seed=2)
    region = LinfFeatures(0.05).region(X, y, TaskInfo("binary", 2, 3, 9))
    box = {n: Interval.point(p.detach()) for n, p in net.named_parameters()}
    out = []
    for max_elements in (1 << 24, 1):  # one chunk; one sample per chunk
        sym = SymbolTable()
        theta = A.params_from_box(box, sym)
        orig = A._batch_grads.__defaults__
        A._batch_grads.__defaults__ = (max_elements,)
        try:
            upd = A.affine_update(spec, theta, sym, region, torch.arange(9), get_loss("hinge"), 0.3, with_trace=True)
        finally:
            A._batch_grads.__defaults__ = orig
        out.append(upd)
    for n in out[0].theta:
        a, b = out[0].theta[n], out[1].theta[n]
        # chunks number the switch symbols in another order: compare each entry's coefficients as a set
        assert a.m == b.m
        assert torch.allclose(a.c, b.c, rtol=0, atol=1e-12)
        assert torch.allclose(a.G.sort(-1).values, b.G.sort(-1).values, rtol=0, atol=1e-12)
        assert torch.allclose(a.e, b.e, rtol=1e-6, atol=1e-12)
    for ia, ib in zip(out[0].trace[0], out[1].trace[0]):
        assert torch.allclose(ia.lo, ib.lo, atol=1e-12) and torch.allclose(ia.hi, ib.hi, atol=1e-12)


def _kink_step(switch_symbols: bool):
    """One step on one sample exactly at the hinge kink (margin 1, dyadic values, so exact): its
    gradient is on or off, nothing else is uncertain. Returns the forms after the step and the two
    concrete outcomes (flat)."""
    import mibpcert.steps.affine as A
    from mibpcert import describe
    from mibpcert.losses import get_loss

    net = mlp([2, 2, 1], seed=0)
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2, dtype=F64))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, 2.0]], dtype=F64))
        net[2].bias.zero_()
    X, y = torch.tensor([[0.5, 0.25]], dtype=F64), torch.tensor([1.0], dtype=F64)
    assert float(net(X).detach()) == 1.0, "the sample must sit exactly at the kink"
    spec = describe(net)
    region = LinfFeatures(0.0).region(X, y, TaskInfo("binary", 2, 2, 1))
    sym = SymbolTable()
    theta = A.params_from_box({n: Interval.point(p.detach()) for n, p in net.named_parameters()}, sym)
    upd = A.affine_update(spec, theta, sym, region, torch.arange(1), get_loss("hinge"), 0.5, switch_symbols=switch_symbols)
    params = list(net.parameters())
    (-net(X)[0, 0]).backward()  # d (1 - z) / d theta: the gradient when the hinge is on
    off = torch.cat([p.detach().reshape(-1) for p in params])
    on = torch.cat([(p.detach() - 0.5 * p.grad).reshape(-1) for p in params])
    return upd.theta, off, on


def test_a_switching_sample_moves_the_parameters_along_its_gradient():
    """With switch symbols the step's result is the segment between the two outcomes: a functional
    orthogonal to the sample's gradient has (up to rounding) no width; without them the same
    functional is as wide as the gradient's entries (a box). Both outcomes lie in both results."""
    widths = {}
    for switch in (True, False):
        theta, off, on = _kink_step(switch)
        names = list(theta)
        c = torch.cat([theta[n].c.reshape(-1) for n in names])
        G = torch.cat([theta[n].G.reshape(theta[n].c.numel(), -1) for n in names])
        e = torch.cat([theta[n].e.reshape(-1) for n in names])
        rad = G.abs().sum(1) + e
        for point in (off, on):
            assert bool(((point - c).abs() <= rad + 1e-12).all()), "a concrete outcome is outside the step's forms"
        v = on - off
        i, j = 4, 5  # the output weights, moved by 0.5 * (0.5, 0.25) when the hinge is on
        assert float(v[i]) != 0 and float(v[j]) != 0
        w = torch.zeros_like(c)
        w[i], w[j] = v[j], -v[i]  # orthogonal to the gradient
        widths[switch] = float((w @ G).abs().sum() + (w.abs() * e).sum())
    assert widths[True] < 1e-12, widths
    assert widths[False] > 1e-2, widths
