"""Bounded losses against torch autograd at sampled logits and labels.

The reference is torch autograd through the concrete losses (``per_sample_loss``, itself checked
against ``torch.nn.functional``), never the bound code. Losses that are monotone in every logit
(bce, hinge, ce) and gradients monotone in every logit (bce, ce, mse) attain their extremes at
corners of the logit box, so the bounds are also compared with brute force over all corners.
"""
import itertools

import pytest
import torch
import torch.nn.functional as F

from mibpcert import certify, mlp
from mibpcert.losses import bounded_loss, per_sample_loss
from mibpcert.interval.tensor import Interval, outward_rounding
from tests.helpers.attacks import torch_loss
from tests.helpers.inputs import binary_data, train

F64 = torch.float64


def loss_and_grad(name, z, y):
    """Per-sample loss (B,) and d loss / d logits (B, C) with autograd on ``per_sample_loss``."""
    z = z.detach().clone().requires_grad_(True)
    loss = per_sample_loss(name, z, y)
    (g,) = torch.autograd.grad(loss.sum(), z)
    return loss.detach(), g


def rand_box(B, C, scale=3.0, width=2.0, zero_frac=0.15):
    lo = torch.randn(B, C, dtype=F64) * scale
    w = torch.rand(B, C, dtype=F64) * width
    w = torch.where(torch.rand(B, C) < zero_frac, torch.zeros_like(w), w)
    return Interval(lo, lo + w)


def rand_mask(B, K, max_labels=None):
    """Random label sets: one or several allowed labels per row (never empty)."""
    mask = torch.rand(B, K) < 0.4
    mask[torch.arange(B), torch.randint(0, K, (B,))] = True
    if max_labels == 1:
        mask = torch.zeros(B, K, dtype=torch.bool)
        mask[torch.arange(B), torch.randint(0, K, (B,))] = True
    return mask


def box_samples(box: Interval, n: int):
    """n logit matrices inside the box: corners, interior points, both ends."""
    shape = (n,) + tuple(box.shape)
    corner = torch.where(torch.rand(shape) < 0.5, box.lo.expand(shape), box.hi.expand(shape))
    inter = box.lo + torch.rand(shape, dtype=F64) * (box.hi - box.lo)
    pts = torch.cat([corner[: n // 2], inter[n // 2 :]])
    pts[0], pts[1] = box.lo, box.hi
    return pts


def all_corners(box: Interval):
    """Every corner of each row's box: (2^C, B, C)."""
    C = box.shape[1]
    out = []
    for bits in itertools.product([False, True], repeat=C):
        sel = torch.tensor(bits).reshape(1, C)
        out.append(torch.where(sel, box.hi, box.lo))
    return torch.stack(out)


def labels_of(mask_row):
    return [int(k) for k in torch.nonzero(mask_row).reshape(-1)]


def check_sampled(name, logits, labels, loss_iv, grad_iv, pts, tol=0.0):
    """Every sampled logit matrix (pts: (n, B, C)) and every allowed label (or sampled targets
    inside the target box for mse): torch's loss and gradient lie inside the bounds."""
    n = pts.shape[0]
    B, C = logits.shape
    z = pts.reshape(n * B, C)
    if name == "mse":
        shape = (n, B, C)
        u = torch.rand(shape, dtype=F64)
        t = labels.lo + u * (labels.hi - labels.lo)
        t[: n // 3] = torch.where(torch.rand((n // 3, B, C)) < 0.5, labels.lo, labels.hi)
        choices = [(t.reshape(n * B, C), torch.ones(n * B, dtype=torch.bool))]
    else:
        K = labels.shape[1]
        choices = [(torch.full((n * B,), k, dtype=F64), labels[:, k].repeat(n)) for k in range(K)]
    lo_l, hi_l = loss_iv.lo.repeat(n), loss_iv.hi.repeat(n)
    lo_g, hi_g = grad_iv.lo.repeat(n, 1), grad_iv.hi.repeat(n, 1)
    for y, rows in choices:
        if not rows.any():
            continue
        l, g = loss_and_grad(name, z[rows], y[rows])
        assert torch.isfinite(l).all() and torch.isfinite(g).all()
        lo, hi = lo_l[rows], hi_l[rows]
        assert (l >= lo - tol).all() and (l <= hi + tol).all(), f"{name}: loss outside bounds by {float(torch.maximum(lo - l, l - hi).max()):.3e}"
        glo, ghi = lo_g[rows], hi_g[rows]
        assert (g >= glo - tol).all() and (g <= ghi + tol).all(), f"{name}: grad outside bounds by {float(torch.maximum(glo - g, g - ghi).max()):.3e}"


# ---------------------------------------------------------------------------------------------
def test_concrete_losses_match_torch_functional():
    z1 = torch.randn(20, 1, dtype=F64) * 4
    y2 = (torch.rand(20) < 0.5).to(F64)
    z3 = torch.randn(20, 3, dtype=F64) * 4
    y3 = torch.randint(0, 3, (20,)).to(F64)
    t = torch.randn(20, 3, dtype=F64)
    for name, z, y in (("bce", z1, y2), ("hinge", z1, y2), ("ce", z3, y3), ("mse", z3, t)):
        assert torch.allclose(per_sample_loss(name, z, y), torch_loss(name, z, y), rtol=0, atol=1e-13)
    # the hinge by hand
    assert float(per_sample_loss("hinge", torch.tensor([[0.3]], dtype=F64), torch.tensor([1.0], dtype=F64))) == pytest.approx(0.7)
    assert float(per_sample_loss("hinge", torch.tensor([[0.3]], dtype=F64), torch.tensor([0.0], dtype=F64))) == pytest.approx(1.3)
    assert float(per_sample_loss("hinge", torch.tensor([[2.0]], dtype=F64), torch.tensor([1.0], dtype=F64))) == 0.0


@pytest.mark.parametrize("name", ["bce", "hinge"])
@pytest.mark.parametrize("single", [True, False])
@pytest.mark.parametrize("rounding", [True, False])
def test_binary_bounds_sampling(name, single, rounding):
    logits = rand_box(12, 1)
    # make the hinge boxes straddle / touch its kinks
    if name == "hinge":
        logits.lo[:4, 0] = torch.tensor([0.5, 1.0, -1.5, -1.0], dtype=F64)
        logits.hi[:4, 0] = torch.tensor([1.5, 1.0, -0.5, -1.0], dtype=F64)
    mask = rand_mask(12, 2, max_labels=1 if single else None)
    with outward_rounding(rounding):
        loss_iv, grad_iv = bounded_loss(name, logits, mask)
    assert loss_iv.shape == (12,) and grad_iv.shape == (12, 1)
    tol = 0.0 if rounding else 1e-13
    check_sampled(name, logits, mask, loss_iv, grad_iv, box_samples(logits, 200), tol)


@pytest.mark.parametrize("single", [True, False])
@pytest.mark.parametrize("rounding", [True, False])
def test_ce_bounds_sampling(single, rounding):
    logits = rand_box(10, 3)
    mask = rand_mask(10, 3, max_labels=1 if single else None)
    with outward_rounding(rounding):
        loss_iv, grad_iv = bounded_loss("ce", logits, mask)
    assert loss_iv.shape == (10,) and grad_iv.shape == (10, 3)
    tol = 0.0 if rounding else 1e-13
    check_sampled("ce", logits, mask, loss_iv, grad_iv, box_samples(logits, 200), tol)


@pytest.mark.parametrize("rounding", [True, False])
def test_mse_bounds_sampling(rounding):
    logits = rand_box(10, 2)
    targets = rand_box(10, 2, width=1.0)
    # a row where logit and target boxes overlap (loss lower bound 0 inside)
    targets.lo[0], targets.hi[0] = logits.lo[0], logits.hi[0]
    with outward_rounding(rounding):
        loss_iv, grad_iv = bounded_loss("mse", logits, targets)
    tol = 0.0 if rounding else 1e-13
    check_sampled("mse", logits, targets, loss_iv, grad_iv, box_samples(logits, 200), tol)


# ---------------------------------------------------------------------------------------------
# tightness: the extremes are attained at corners of the logit box
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,C", [("bce", 1), ("hinge", 1), ("ce", 3), ("ce", 4)])
def test_loss_bounds_tight_at_corners(name, C):
    B = 12
    logits = rand_box(B, C, zero_frac=0.0)
    K = 2 if C == 1 else C
    mask = rand_mask(B, K)
    with outward_rounding(False):
        loss_iv, grad_iv = bounded_loss(name, logits, mask)
    corners = all_corners(logits)
    for b in range(B):
        losses, grads = [], []
        for k in labels_of(mask[b]):
            y = torch.full((corners.shape[0],), k, dtype=F64)
            l, g = loss_and_grad(name, corners[:, b, :], y)
            losses.append(l)
            grads.append(g)
        losses, grads = torch.cat(losses), torch.cat(grads)
        assert float(loss_iv.lo[b]) == pytest.approx(float(losses.min()), rel=1e-12, abs=1e-12)
        assert float(loss_iv.hi[b]) == pytest.approx(float(losses.max()), rel=1e-12, abs=1e-12)
        if name != "hinge":  # the hinge derivative is a step function; checked separately
            assert torch.allclose(grad_iv.lo[b], grads.min(0).values, rtol=1e-12, atol=1e-12)
            assert torch.allclose(grad_iv.hi[b], grads.max(0).values, rtol=1e-12, atol=1e-12)


def test_mse_grad_tight_and_loss_exact_range():
    B, C = 8, 2
    logits, targets = rand_box(B, C, zero_frac=0.0), rand_box(B, C, zero_frac=0.0)
    with outward_rounding(False):
        loss_iv, grad_iv = bounded_loss("mse", logits, targets)
    d_lo, d_hi = logits.lo - targets.hi, logits.hi - targets.lo
    assert torch.allclose(grad_iv.lo, 2 * d_lo / C, atol=1e-13) and torch.allclose(grad_iv.hi, 2 * d_hi / C, atol=1e-13)
    # range of (z - t)^2 over the difference interval, by hand
    sq_hi = torch.maximum(d_lo**2, d_hi**2)
    sq_lo = torch.where((d_lo <= 0) & (d_hi >= 0), torch.zeros_like(d_lo), torch.minimum(d_lo**2, d_hi**2))
    assert torch.allclose(loss_iv.hi, sq_hi.mean(1), atol=1e-12)
    assert torch.allclose(loss_iv.lo, sq_lo.mean(1), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# exactness for zero-width logits and one label
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,C", [("bce", 1), ("hinge", 1), ("ce", 3), ("mse", 2)])
@pytest.mark.parametrize("rounding", [True, False])
def test_point_logits_single_label_exact(name, C, rounding):
    B = 16
    z = torch.randn(B, C, dtype=F64) * 3
    if name == "hinge":  # away from the kinks (checked separately)
        z = torch.where((z.abs() - 1).abs() < 1e-3, z + 0.1, z)
    if name == "mse":
        y = torch.randn(B, C, dtype=F64)
        labels = Interval.point(y)
    else:
        K = 2 if C == 1 else C
        y = torch.randint(0, K, (B,)).to(F64)
        labels = F.one_hot(y.long(), K).bool()
    with outward_rounding(rounding):
        loss_iv, grad_iv = bounded_loss(name, Interval.point(z), labels)
    l, g = loss_and_grad(name, z, y)
    for bound in (loss_iv.lo, loss_iv.hi):
        assert torch.allclose(bound, l, rtol=0, atol=1e-12)
    for bound in (grad_iv.lo, grad_iv.hi):
        assert torch.allclose(bound, g, rtol=0, atol=1e-12)
    if rounding:  # outward rounding: torch's float values are enclosed, not just close
        assert (loss_iv.lo <= l).all() and (loss_iv.hi >= l).all()
        assert (grad_iv.lo <= g).all() and (grad_iv.hi >= g).all()


# ---------------------------------------------------------------------------------------------
# numerical stability at huge logits
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,C", [("bce", 1), ("hinge", 1), ("ce", 3), ("mse", 2)])
def test_large_logits_finite_and_sound(name, C):
    B = 8
    lo = torch.tensor([800.0, -800.0, -800.0, 799.0, 0.0, -800.0, 700.0, -5.0], dtype=F64)
    lo = lo.reshape(B, 1).expand(B, C).clone()
    if C > 1:
        lo[:, 1] = -lo[:, 1]  # opposite extremes in different logits
    hi = lo + torch.tensor([0.0, 0.0, 1600.0, 1.0, 800.0, 0.5, 100.0, 10.0], dtype=F64).reshape(B, 1)
    logits = Interval(lo, hi)
    if name == "mse":
        labels = Interval(torch.full((B, C), -1.0, dtype=F64), torch.full((B, C), 1.0, dtype=F64))
    else:
        K = 2 if C == 1 else C
        labels = torch.ones(B, K, dtype=torch.bool)
    loss_iv, grad_iv = bounded_loss(name, logits, labels)
    assert loss_iv.is_finite().all() and grad_iv.is_finite().all()
    # torch's values at the corners and the midpoint, for every label (relative tolerance: the
    # pads scale with the magnitude, ~1e-13 relative at 800)
    pts = box_samples(logits, 50)
    check_sampled(name, logits, labels, loss_iv, grad_iv, pts, tol=0.0)
    # and the bounds are not absurdly loose: loss bounds within a few ulps of corner values
    assert (loss_iv.hi <= 4000.0 * 1600).all()


@pytest.mark.parametrize("name", ["bce", "ce"])
def test_logits_around_softplus_threshold(name):
    """Logits of 15..40: exp(-z) does not underflow, but torch's softplus has switched to the
    identity (an error of up to 2e-9). The bounds must contain the exact loss: torch's
    binary_cross_entropy_with_logits itself rounds -35 + log1p(exp(35)) to 0 (an absolute error
    of half an ulp of |z|), so its loss is compared with that allowance, the gradient exactly."""
    z = torch.linspace(15.0, 40.0, 51, dtype=F64).reshape(-1, 1)
    if name == "ce":
        z = torch.cat([z, torch.zeros_like(z), -z / 2], dim=1)
    K = 2 if name == "bce" else 3
    for sign in (1.0, -1.0):
        logits = Interval.point(sign * z)
        for k in range(K):
            y = torch.full((z.shape[0],), k, dtype=F64)
            loss_iv, grad_iv = bounded_loss(name, logits, F.one_hot(y.long(), K).bool())
            l, g = loss_and_grad(name, sign * z, y)
            slack = 2 * torch.finfo(F64).eps * (1 + z[:, 0].abs())
            assert (loss_iv.lo <= l + slack).all() and (l - slack <= loss_iv.hi).all()
            assert (grad_iv.lo <= g).all() and (g <= grad_iv.hi).all()
            if name == "bce":  # the exact softplus, evaluated in a way that does not cancel
                zz = sign * z[:, 0]
                exact = torch.where(y == 0, zz.clamp_min(0) + torch.log1p(torch.exp(-zz.abs())), (-zz).clamp_min(0) + torch.log1p(torch.exp(-zz.abs())))
                assert (loss_iv.lo <= exact).all() and (exact <= loss_iv.hi).all()
                assert (loss_iv.hi - loss_iv.lo <= 1e-14 * (1 + exact)).all()


def test_bce_large_logit_exact_values():
    z = Interval.point(torch.tensor([[800.0], [-800.0]], dtype=F64))
    mask = torch.tensor([[True, False], [True, False]])  # label 0
    loss_iv, grad_iv = bounded_loss("bce", z, mask)
    # softplus(800) = 800, softplus(-800) = exp(-800) ~ 0
    assert float(loss_iv.lo[0]) == pytest.approx(800.0, rel=1e-14) and float(loss_iv.hi[0]) == pytest.approx(800.0, rel=1e-14)
    exact1 = float(F.binary_cross_entropy_with_logits(torch.tensor([-800.0], dtype=F64), torch.tensor([0.0], dtype=F64)))
    assert float(loss_iv.lo[1]) <= exact1 <= float(loss_iv.hi[1]) < 1e-300
    assert float(grad_iv.lo[0, 0]) <= 1.0 <= float(grad_iv.hi[0, 0])
    assert float(grad_iv.hi[1, 0]) < 1e-300


# ---------------------------------------------------------------------------------------------
# the hinge kink
# ---------------------------------------------------------------------------------------------
def test_hinge_kink():
    one = Interval.point(torch.tensor([[1.0], [-1.0]], dtype=F64))
    y1 = torch.tensor([[False, True], [True, False]])  # row 0: label 1 (kink at z=1), row 1: label 0 (kink at z=-1)
    loss_iv, grad_iv = bounded_loss("hinge", one, y1)
    # loss is 0 at the kink
    assert float(loss_iv.lo[0]) == 0.0 and float(loss_iv.hi[0]) <= 1e-300
    assert float(loss_iv.lo[1]) == 0.0 and float(loss_iv.hi[1]) <= 1e-300
    # torch's derivative at the kink, and both one-sided derivatives, are inside
    _, g = loss_and_grad("hinge", one.lo, torch.tensor([1.0, 0.0], dtype=F64))
    assert (grad_iv.lo <= g).all() and (g <= grad_iv.hi).all()
    assert grad_iv.lo[0, 0] <= -1.0 and grad_iv.hi[0, 0] >= 0.0
    assert grad_iv.lo[1, 0] <= 0.0 and grad_iv.hi[1, 0] >= 1.0
    # just off the kink the derivative is a single value
    off = Interval.point(torch.tensor([[1.0 + 1e-9], [1.0 - 1e-9]], dtype=F64))
    lab = torch.tensor([[False, True], [False, True]])
    l_iv, g_iv = bounded_loss("hinge", off, lab)
    assert g_iv.lo[0, 0] == 0.0 and g_iv.hi[0, 0] == 0.0
    assert g_iv.lo[1, 0] == -1.0 and g_iv.hi[1, 0] == -1.0
    # a box straddling the kink contains both derivatives and nothing else
    box = Interval(torch.tensor([[0.5]], dtype=F64), torch.tensor([[1.5]], dtype=F64))
    l_iv, g_iv = bounded_loss("hinge", box, torch.tensor([[False, True]]))
    assert g_iv.lo.item() == -1.0 and g_iv.hi.item() == 0.0
    assert l_iv.lo.item() == 0.0 and l_iv.hi.item() == pytest.approx(0.5)


def test_masks_of_wrong_shape_rejected():
    z = rand_box(4, 3)
    with pytest.raises(ValueError, match="label mask"):
        bounded_loss("ce", z, torch.ones(4, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="one output logit"):
        bounded_loss("bce", z, torch.ones(4, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="target bounds"):
        bounded_loss("mse", z, torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="unsupported loss"):
        bounded_loss("l1", z, torch.ones(4, 3, dtype=torch.bool))


def test_loss_bounds_stay_in_the_loss_range_for_a_huge_box():
    """A huge but finite box: the lower bound on every loss is >= 0 (it was about -1.8e285 for BCE)."""
    torch.manual_seed(0)
    X, y = binary_data(20)
    res = train(mlp([2, 4, 1], seed=0), X, y, loss="bce")
    res.param_bounds = {n: (lo - 1e150, hi + 1e150) for n, (lo, hi) in res.param_bounds.items()}
    rep = certify(res, X, y)
    lo, hi = rep.test_loss_bounds
    assert 0.0 <= lo <= hi
    from mibpcert.losses import bounded_loss, label_mask
    from mibpcert.interval.tensor import Interval

    z = Interval(torch.full((4, 3), -1e300, dtype=F64), torch.full((4, 3), 1e300, dtype=F64))
    labels = torch.tensor([0, 1, 2, 0])
    for loss, zz, lab in (("bce", z[:, :1], label_mask(labels % 2, 2)), ("hinge", z[:, :1], label_mask(labels % 2, 2)),
                          ("ce", z, label_mask(labels, 3)), ("mse", z, Interval.point(torch.zeros(4, 3, dtype=F64)))):
        assert bool((bounded_loss(loss, zz, lab)[0].lo >= 0).all()), loss


@pytest.mark.parametrize("name", ["bce", "hinge", "ce", "mse"])
@pytest.mark.parametrize("width", [1e-6, 0.05, 2.0])
def test_affine_gradient_contains_autograd(name, width):
    """``Loss.affine_grad``: for logits drawn from affine forms (shared symbols at random points and
    vertices) and every allowed label, torch's gradient of the loss lies in the returned form for
    the same symbol values (up to the check's own rounding)."""
    from mibpcert.interval.affine import Affine
    from mibpcert.losses import get_loss

    gen = torch.Generator().manual_seed(int(width * 1000) + len(name))
    B, C, m, S = 6, (3 if name == "ce" else 1), 3, 300
    z = Affine(torch.randn(B, C, generator=gen, dtype=F64) * 2, width * torch.randn(B, C, m, generator=gen, dtype=F64),
               width * torch.rand(B, C, generator=gen, dtype=F64))
    xi = 2 * torch.rand(S, m, generator=gen, dtype=F64) - 1
    xi[:60] = torch.sign(xi[:60])
    eta = torch.sign(2 * torch.rand(S, B, C, generator=gen, dtype=F64) - 1)
    zv = z.c + torch.einsum("bcm,sm->sbc", z.G, xi) + z.e * eta
    loss = get_loss(name)
    if name == "mse":
        t_lo = torch.randn(B, C, generator=gen, dtype=F64)
        labels = Interval(t_lo, t_lo + 0.1)
        label_draws = [t_lo, t_lo + 0.1, t_lo + 0.05]
    else:
        K = 2 if C == 1 else C
        labels = torch.rand(B, K, generator=gen) < 0.6
        labels[torch.arange(B), torch.randint(K, (B,), generator=gen)] = True
        label_draws = [torch.full((B,), k, dtype=F64) for k in range(K)]
    g = loss.affine_grad(z, labels)
    centre = g.c + torch.einsum("bcm,sm->sbc", g.G, xi)
    for k, yk in enumerate(label_draws):
        if name != "mse":
            ok = labels[:, k]
            if not bool(ok.any()):
                continue
        zz = zv.clone().requires_grad_(True)
        val = torch_loss(name, zz.reshape(-1, C), yk.repeat(S) if name != "mse" else yk.repeat(S, 1)).sum()
        (gv,) = torch.autograd.grad(val, zz)
        slack = 8 * torch.finfo(F64).eps * (gv.abs() + g.c.abs() + g.G.abs().sum(-1) + g.e)
        gap = (gv - centre).abs() - g.e - slack
        if name != "mse":
            gap = gap[:, ok]
        assert bool((gap <= 0).all()), f"{name} label {k}: outside by {float(gap.max()):.3e}"


# ---------------------------------------------------------------------------------------------
# the gradient-only bounds, the label hull and the label mask (the interval step's fast path)
# ---------------------------------------------------------------------------------------------
def _stacked_view(iv: Interval) -> Interval:
    """The same bounds held only as one stacked tensor (as the interval step's logits are)."""
    return Interval.from_stacked(torch.stack((iv.lo, iv.hi)))


def _monotone_reference(fn, lo, hi, rounding):
    """A monotone increasing function of interval bounds as first written (8 ulps of libm error)."""
    lo, hi = fn(lo), fn(hi)
    if not rounding:
        return lo, hi
    err = torch.maximum(lo.abs(), hi.abs()) * (8 * torch.finfo(F64).eps) + torch.finfo(F64).tiny
    return torch.nextafter(lo - err, torch.tensor(-torch.inf, dtype=F64)), torch.nextafter(hi + err, torch.tensor(torch.inf, dtype=F64))


def _grad_reference(name, logits, labels, rounding):
    """d loss / d logits bounds as the losses computed them before ``grad_bounds`` (inside
    ``interval_bounds``), written out independently of the package's helpers."""
    up, down = torch.tensor(torch.inf, dtype=F64), torch.tensor(-torch.inf, dtype=F64)
    if name == "mse":
        lo, hi = logits.lo - labels.hi, logits.hi - labels.lo
        if rounding:
            lo, hi = torch.nextafter(lo, down), torch.nextafter(hi, up)
        c = 2.0 / logits.shape[1]
        lo, hi = lo * c, hi * c
        return (torch.nextafter(lo, down), torch.nextafter(hi, up)) if rounding else (lo, hi)
    if name == "ce":
        from mibpcert.losses import log_softmax_bounds

        ls = log_softmax_bounds(logits)
        plo, phi = _monotone_reference(torch.exp, ls.lo, ls.hi, rounding)
        others = (labels.sum(dim=1, keepdim=True) - labels.to(torch.long)) > 0
        lo, hi = plo.clamp_min(0) - labels.to(F64), phi.clamp_max(1) - torch.where(others, 0.0, 1.0).to(F64)
        return (torch.nextafter(lo, down), torch.nextafter(hi, up)) if rounding else (lo, hi)
    z_lo, z_hi = logits.lo[:, 0], logits.hi[:, 0]
    if name == "bce":
        slo, shi = _monotone_reference(torch.sigmoid, z_lo, z_hi, rounding)
        m1lo, m1hi = slo - 1.0, shi - 1.0
        if rounding:
            m1lo, m1hi = torch.nextafter(m1lo, down), torch.nextafter(m1hi, up)
        per_label = [(slo, shi), (m1lo, m1hi)]
    else:  # hinge
        one, zero = torch.ones_like(z_lo), torch.zeros_like(z_lo)
        per_label = [(torch.where(z_lo <= -1.0, zero, one), torch.where(z_hi >= -1.0, one, zero)),
                     (torch.where(z_lo <= 1.0, -one, zero), torch.where(z_hi >= 1.0, zero, -one))]
    lo, hi = _over_labels_reference(labels, [Interval(a, b, check=False) for a, b in per_label])
    return lo.unsqueeze(1), hi.unsqueeze(1)


@pytest.mark.parametrize("name", ["bce", "hinge", "ce", "mse"])
@pytest.mark.parametrize("rounding", [True, False])
@pytest.mark.parametrize("stacked", [True, False])
def test_grad_bounds_equal_the_gradient_part_of_the_full_bounds(name, rounding, stacked):
    """``Loss.grad_bounds`` (what the interval step calls) gives the gradient bounds of
    ``Loss.interval_bounds``, and both the bounds these losses gave before ``grad_bounds``
    existed (written out above), bit for bit: for single and several allowed labels, an empty
    label set, kinks and huge boxes, whichever form the logits' bounds hold."""
    from mibpcert.losses import get_loss

    torch.manual_seed(len(name) + 10 * rounding + 100 * stacked)
    C = {"bce": 1, "hinge": 1, "ce": 3, "mse": 2}[name]
    logits = rand_box(40, C)
    logits.lo[:4], logits.hi[:4] = -1.0, 1.0  # at the hinge's kinks
    logits.lo[4], logits.hi[4] = -1e300, 1e300
    if name == "mse":
        labels = rand_box(40, C, width=0.5)
    else:
        labels = torch.cat([rand_mask(20, max(C, 2), max_labels=1), rand_mask(19, max(C, 2)),
                            torch.zeros(1, max(C, 2), dtype=torch.bool)])
    loss = get_loss(name)
    z = _stacked_view(logits) if stacked else logits
    with outward_rounding(rounding):
        full = loss.interval_bounds(logits, labels)[1]
        got = loss.grad_bounds(z, labels)
        lo, hi = _grad_reference(name, logits, labels, rounding)
    assert got.shape == full.shape == (40, C)
    for out in (got, full):
        assert torch.equal(out.lo, lo) and torch.equal(out.hi, hi)
    if name in ("bce", "hinge"):  # the hull over no label is empty
        assert bool((got.lo[-1] == torch.inf).all() and (got.hi[-1] == -torch.inf).all())


def _over_labels_reference(mask, per_label):
    """The label hull as first written: one where, minimum and maximum per label."""
    inf = torch.tensor(torch.inf, dtype=F64)
    lo = hi = None
    for k, iv in enumerate(per_label):
        allowed = mask[:, k].reshape((-1,) + (1,) * (iv.lo.dim() - 1))
        lk, hk = torch.where(allowed, iv.lo, inf), torch.where(allowed, iv.hi, -inf)
        lo = lk if lo is None else torch.minimum(lo, lk)
        hi = hk if hi is None else torch.maximum(hi, hk)
    return lo, hi


@pytest.mark.parametrize("shape", [(30,), (30, 3), (30, 2, 2)])
@pytest.mark.parametrize("K", [1, 2, 4])
def test_over_labels_equals_the_per_label_minimum_and_maximum(shape, K):
    from mibpcert.losses.base import over_labels

    torch.manual_seed(K * 7 + len(shape))
    per_label = [rand_box(*shape) if len(shape) == 2 else Interval(*(lambda lo: (lo, lo + 1.0))(torch.randn(*shape, dtype=F64)))
                 for _ in range(K)]
    per_label[0] = _stacked_view(per_label[0])
    per_label[-1].lo[0] = -torch.inf  # infinite bounds pass through
    mask = torch.rand(shape[0], K) < 0.5
    mask[-1] = False  # no label allowed: the empty hull [inf, -inf]
    lo, hi = _over_labels_reference(mask, per_label)
    out = over_labels(mask, per_label)
    assert out.shape == shape
    assert torch.equal(out.lo, lo) and torch.equal(out.hi, hi)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.long])
@pytest.mark.parametrize("K", [2, 3, 10])
def test_label_mask_equals_one_hot(dtype, K):
    from mibpcert.losses import label_mask

    y = torch.randint(0, K, (57,)).to(dtype)
    got = label_mask(y, K)
    assert got.dtype == torch.bool and got.shape == (57, K)
    assert torch.equal(got, F.one_hot(y.long(), K).bool())
    assert torch.equal(label_mask(y[10:20], K), got[10:20])  # a batch slice: the rows of the data set's mask


@pytest.mark.parametrize("name", ["bce", "hinge", "ce", "mse"])
def test_mean_value_is_the_mean_loss_as_torch_reduces_it(name):
    """``Loss.mean_value`` (the nominal run's objective) is the mean of ``value``, and for the
    losses torch has, torch's own ``reduction="mean"`` bit for bit (value and gradient)."""
    from mibpcert.losses import get_loss

    torch.manual_seed(3)
    C = {"bce": 1, "hinge": 1, "ce": 4, "mse": 3}[name]
    z = (torch.randn(33, C, dtype=F64) * 3).requires_grad_(True)
    y = {"bce": (torch.rand(33) < 0.5).to(F64), "hinge": (torch.rand(33) < 0.5).to(F64),
         "ce": torch.randint(0, C, (33,)).to(F64), "mse": torch.randn(33, C, dtype=F64)}[name]
    loss = get_loss(name)
    got = loss.mean_value(z, y)
    assert got.shape == ()
    assert float(got.detach()) == pytest.approx(float(loss.value(z, y).mean().detach()), rel=1e-14)
    ref = {"bce": lambda: F.binary_cross_entropy_with_logits(z[:, 0], y), "ce": lambda: F.cross_entropy(z, y.long()),
           "mse": lambda: F.mse_loss(z, y), "hinge": lambda: loss.value(z, y).mean()}[name]()
    assert torch.equal(got, ref)
    assert torch.equal(torch.autograd.grad(got, z)[0], torch.autograd.grad(ref, z)[0])
