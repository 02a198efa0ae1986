"""Affine forms (``mibpcert.interval.affine``) against dense sampling.

Each operation is applied to concrete values drawn from its input forms (symbols at random
points and at vertices, independent parts at random signs) with plain torch; the result must lie
in the output form *for the same symbol values* (``|v - (c + G xi)| <= e``), which checks the
relation and not only the bounds. Inputs include widths from 1e-8 to 1, values of both signs,
and entries that straddle 0 (ReLU, gates)."""
from __future__ import annotations

import pytest
import torch

from mibpcert.interval.affine import Affine, linear, linear_t, outer_each, outer_sum
from mibpcert.interval.tensor import Interval
from mibpcert.steps.affine import SymbolTable, _reduce, params_from_box

F64 = torch.float64
M = 4  # symbols
S = 400  # samples of the symbols


def rand_form(shape, gen, scale=1.0, width=0.3) -> Affine:
    c = scale * torch.randn(*shape, generator=gen, dtype=F64)
    G = width * torch.randn(*shape, M, generator=gen, dtype=F64) * (torch.rand(*shape, M, generator=gen) < 0.7)
    e = width * torch.rand(*shape, generator=gen, dtype=F64) * (torch.rand(*shape, generator=gen) < 0.5)
    return Affine(c, G, e)


def draws(gen) -> torch.Tensor:
    xi = 2 * torch.rand(S, M, generator=gen, dtype=F64) - 1
    xi[: S // 4] = torch.where(xi[: S // 4] > 0, 1.0, -1.0)  # vertices
    return xi


def value(f: Affine, xi: torch.Tensor, gen) -> torch.Tensor:
    """Concrete values (S, *shape) of ``f`` at symbols ``xi`` and random independent parts."""
    eta = 2 * torch.rand(xi.shape[0], *f.shape, generator=gen, dtype=F64) - 1
    eta[: xi.shape[0] // 4] = torch.sign(eta[: xi.shape[0] // 4])
    return f.c + torch.einsum("...m,sm->s...", f.G, xi) + f.e * eta


def assert_contains(f: Affine, v: torch.Tensor, xi: torch.Tensor, what: str) -> None:
    centre = f.c + torch.einsum("...m,sm->s...", f.G, xi)
    # the check's own rounding (computing v and the centre here): a few ulps of the magnitudes
    slack = 8 * torch.finfo(F64).eps * (v.abs() + f.c.abs() + f.G.abs().sum(-1) + f.e)
    gap = (v - centre).abs() - f.e - slack
    assert bool((gap <= 0).all()), f"{what}: outside the form by {float(gap.max()):.3e}"
    b = f.bounds()
    assert bool(((v >= b.lo) & (v <= b.hi)).all()), f"{what}: outside the bounds"


@pytest.mark.parametrize("seed", range(6))
def test_products_and_linear_maps(seed):
    gen = torch.Generator().manual_seed(seed)
    width = [1e-8, 1e-3, 0.3, 1.0][seed % 4]
    x, W, b = rand_form((5, 3), gen, width=width), rand_form((4, 3), gen, width=width), rand_form((4,), gen, width=width)
    d = rand_form((5, 4), gen, width=width)
    xi = draws(gen)
    xv, Wv, bv, dv = value(x, xi, gen), value(W, xi, gen), value(b, xi, gen), value(d, xi, gen)
    assert_contains(linear(x, W, b), xv @ Wv.transpose(1, 2) + bv.unsqueeze(1), xi, "linear")
    assert_contains(linear(x, W, None), xv @ Wv.transpose(1, 2), xi, "linear without bias")
    assert_contains(linear_t(d, W), dv @ Wv, xi, "linear_t")
    assert_contains(outer_sum(d, x), torch.einsum("sbj,sbk->sjk", dv, xv), xi, "outer_sum")
    assert_contains(outer_each(d, x), dv.unsqueeze(3) * xv.unsqueeze(2), xi, "outer_each")
    assert_contains(x.combine(0.9, x, -0.3), 0.9 * xv - 0.3 * xv, xi, "combine (same form twice)")
    assert_contains(x - x, torch.zeros_like(xv), xi, "x - x")
    assert_contains(d.sum(0), dv.sum(1), xi, "sum")
    assert_contains(x.scale(-2.5), -2.5 * xv, xi, "scale")
    lo = -torch.rand(5, 3, generator=gen, dtype=F64)
    hi = torch.rand(5, 3, generator=gen, dtype=F64)
    t = lo + (hi - lo) * torch.rand(S, 5, 3, generator=gen, dtype=F64)
    assert_contains(x.shift(Interval(lo, hi)), xv + t, xi, "shift")


@pytest.mark.parametrize("seed", range(6))
def test_relu_and_gate(seed):
    gen = torch.Generator().manual_seed(seed)
    z = rand_form((50,), gen, scale=0.5, width=[1e-6, 0.1, 0.4][seed % 3])
    xi = draws(gen)
    zv = value(z, xi, gen)
    a, grad = z.relu()
    assert_contains(a, torch.relu(zv), xi, "relu")
    r = (zv > 0).to(F64)  # torch's ReLU derivative
    assert bool(((r >= grad.lo) & (r <= grad.hi)).all()), "relu derivative"
    q = rand_form((50,), gen, width=0.3)
    qv = value(q, xi, gen)
    assert_contains(q.gate(grad), r * qv, xi, "gate")
    assert int(((grad.lo == 0) & (grad.hi == 1)).sum()) > 0 or seed % 3 == 0, "no ambiguous ReLU drawn"


@pytest.mark.parametrize("seed", range(4))
def test_lifted_independent_parts_keep_every_value_and_relate_what_follows(seed):
    """``lift`` names the independent parts of chosen entries by new symbols (after a gap of
    unused ones): each concrete value is the lifted form at the same symbols plus, as the new
    symbols, the independent parts' own values; the other entries keep their independent part.
    A form over fewer symbols meets it padded (a product with it stays sound), and a sum over
    the lifted entries is no wider than before (shared, not independent)."""
    gen = torch.Generator().manual_seed(seed)
    f = rand_form((6, 3), gen, width=[1e-6, 0.1, 0.5, 1.0][seed])
    f = Affine(f.c, f.G, f.e + 0.1 * torch.rand(6, 3, generator=gen, dtype=F64))  # every entry has one
    where = torch.rand(6, 3, generator=gen) < 0.5
    lifted = f.lift(where, M + 2)
    n = int(where.sum())
    assert lifted.m == M + 2 + n and bool((lifted.e[where] == 0).all()) and torch.equal(lifted.e[~where], f.e[~where])
    xi = draws(gen)
    eta = 2 * torch.rand(S, 6, 3, generator=gen, dtype=F64) - 1
    eta[: S // 4] = torch.sign(eta[: S // 4])
    v = f.c + torch.einsum("...m,sm->s...", f.G, xi) + f.e * eta
    gap = 2 * torch.rand(S, 2, generator=gen, dtype=F64) - 1  # the unused symbols: any value
    xi_l = torch.cat([xi, gap, eta.reshape(S, -1)[:, where.reshape(-1)]], 1)
    assert_contains(lifted, v, xi_l, "lifted form")
    centre = lifted.c + torch.einsum("...m,sm->s...", lifted.G, xi_l)
    assert torch.allclose(centre[:, where], v[:, where], rtol=0, atol=1e-12), "lifted entries are exact at their symbols"
    W = rand_form((2, 3), gen, width=0.2)  # over the first M symbols only
    Wv = value(W, xi, gen)
    assert_contains(linear(lifted, W, None), v @ Wv.transpose(1, 2), xi_l, "product with a form over fewer symbols")
    total, before = lifted.sum(0), f.sum(0)
    assert bool((total.radius() <= before.radius() * (1 + 1e-12)).all())


def test_interval_and_bounds_round_outward():
    gen = torch.Generator().manual_seed(0)
    lo = torch.randn(1000, generator=gen, dtype=F64) * 1e3
    hi = lo + torch.rand(1000, generator=gen, dtype=F64) * 1e-9
    f = Affine.from_interval(Interval(lo, hi), 3)
    b = f.bounds()
    assert bool(((b.lo <= lo) & (b.hi >= hi)).all())


def test_order_reduction_encloses_the_dropped_symbols():
    gen = torch.Generator().manual_seed(1)
    sym = SymbolTable()
    box = {"w": Interval(torch.zeros(3, 2, dtype=F64), torch.rand(3, 2, generator=gen, dtype=F64))}
    theta = params_from_box(box, sym)
    for _ in range(5):  # more symbols: random mixtures
        extra = torch.randn(3, 2, 6, generator=gen, dtype=F64) * 0.1
        theta = {"w": Affine(theta["w"].c, torch.cat([theta["w"].G, extra], -1), theta["w"].e)}
        sym.m += 6
    before = theta["w"]
    xi = 2 * torch.rand(S, sym.m, generator=gen, dtype=F64) - 1
    v = before.c + torch.einsum("...m,sm->s...", before.G, xi)
    after = _reduce(theta, sym, cap=12)["w"]
    assert after.m <= 12 + 6
    b = after.bounds()
    assert bool(((v >= b.lo) & (v <= b.hi)).all()), "reduced form excludes values of the original"
