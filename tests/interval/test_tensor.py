"""Interval tensor operations against dense sampling, brute-force corners and plain torch.

Every result interval must contain the torch result of the same operation at every sampled point
inside the input intervals (random interior points and random corners). With outward rounding on
(the default) containment is checked with no tolerance at all: the float result at a sample must
lie inside. Point (zero-width) inputs give exactly torch's result with rounding off and a strictly
enclosing interval with rounding on.
"""
import itertools

import pytest
import torch

from mibpcert.interval.tensor import Interval, cast_down, cast_up, linear, matmul, monotone, outer, outward_rounding

F64 = torch.float64
N_SAMPLES = 400


def rand_iv(*shape, scale=2.0, width=1.0, gen=None, zero_frac=0.2):
    """A random interval with some zero-width entries and some straddling zero."""
    lo = torch.randn(*shape, dtype=F64, generator=gen) * scale
    w = torch.rand(*shape, dtype=F64, generator=gen) * width
    w = torch.where(torch.rand(*shape, generator=gen) < zero_frac, torch.zeros_like(w), w)
    return Interval(lo, lo + w)


def samples(iv: Interval, n=N_SAMPLES, gen=None):
    """n points inside iv: random corners, uniform interior points, both ends and the midpoint."""
    shape = (n,) + tuple(iv.shape)
    u = torch.rand(shape, dtype=F64, generator=gen)
    interior = iv.lo + u * (iv.hi - iv.lo)
    interior = torch.minimum(torch.maximum(interior, iv.lo), iv.hi)
    corner = torch.where(torch.rand(shape, generator=gen) < 0.5, iv.lo.expand(shape), iv.hi.expand(shape))
    half = n // 2
    pts = torch.cat([corner[:half], interior[half:]])
    pts[0] = iv.lo
    pts[1] = iv.hi
    pts[2] = (iv.lo + iv.hi) / 2
    return pts


def assert_inside(out: Interval, vals: torch.Tensor, tol=0.0):
    """vals (n, *out.shape) all inside out."""
    assert torch.isfinite(out.lo).all() and torch.isfinite(out.hi).all()
    assert (out.lo <= out.hi).all()
    below = vals < out.lo - tol
    above = vals > out.hi + tol
    assert not below.any(), f"{int(below.sum())} sampled results below the lower bound, worst {float((out.lo - vals).max()):.3e}"
    assert not above.any(), f"{int(above.sum())} sampled results above the upper bound, worst {float((vals - out.hi).max()):.3e}"


# ---------------------------------------------------------------------------------------------
# construction
# ---------------------------------------------------------------------------------------------
def test_lower_above_upper_raises():
    with pytest.raises(ValueError, match="lower bound exceeds upper bound"):
        Interval(torch.tensor([0.0, 2.0], dtype=F64), torch.tensor([1.0, 1.0], dtype=F64))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="different shapes"):
        Interval(torch.zeros(2, dtype=F64), torch.zeros(3, dtype=F64))


def test_intersect_empty_raises_and_hull_contains():
    a = Interval(torch.tensor([0.0]), torch.tensor([1.0]))
    b = Interval(torch.tensor([2.0]), torch.tensor([3.0]))
    with pytest.raises(ValueError):
        a.intersect(b)
    h = a.hull(b)
    assert float(h.lo) == 0.0 and float(h.hi) == 3.0


def test_mid_rad_encloses():
    """With rounding on, [mid - rad, mid + rad] encloses [lo, hi] in exact arithmetic (checked with
    fractions); with rounding off only up to an ulp."""
    from fractions import Fraction

    iv = rand_iv(200)
    m, r = iv.mid_rad()
    for i in range(200):
        mi, ri = Fraction(float(m[i])), Fraction(float(r[i]))
        assert mi - ri <= Fraction(float(iv.lo[i])) and mi + ri >= Fraction(float(iv.hi[i]))
    with outward_rounding(False):
        m, r = iv.mid_rad()
    assert ((m - r) <= iv.lo + 1e-15).all() and ((m + r) >= iv.hi - 1e-15).all()


# ---------------------------------------------------------------------------------------------
# element-wise operations
# ---------------------------------------------------------------------------------------------
UNARY_BINARY = {
    "add": (lambda a, b: a + b, lambda x, y: x + y),
    "sub": (lambda a, b: a - b, lambda x, y: x - y),
    "mul": (lambda a, b: a * b, lambda x, y: x * y),
}


@pytest.mark.parametrize("op", sorted(UNARY_BINARY))
@pytest.mark.parametrize("rounding", [True, False])
def test_binary_elementwise_sampling(op, rounding):
    iv_op, t_op = UNARY_BINARY[op]
    a, b = rand_iv(6, 5), rand_iv(6, 5)
    with outward_rounding(rounding):
        out = iv_op(a, b)
    xa, xb = samples(a), samples(b)
    # with rounding off the real result is inside, the float one within an ulp
    tol = 0.0 if rounding else 1e-14
    assert_inside(out, t_op(xa, xb), tol)


@pytest.mark.parametrize("op", sorted(UNARY_BINARY))
def test_binary_elementwise_mixed_with_points_and_floats(op):
    iv_op, t_op = UNARY_BINARY[op]
    a = rand_iv(4, 3)
    p = torch.randn(4, 3, dtype=F64)
    xa = samples(a)
    assert_inside(iv_op(a, p), t_op(xa, p))
    assert_inside(iv_op(a, 1.7), t_op(xa, 1.7))
    # reflected forms
    if op == "add":
        assert_inside(2.5 + a, 2.5 + xa)
    if op == "sub":
        assert_inside(2.5 - a, 2.5 - xa)
    if op == "mul":
        assert_inside(-3.0 * a, -3.0 * xa)


def test_mul_is_tight_at_corners():
    """Element-wise product bounds equal the min/max over the four corner products."""
    a, b = rand_iv(30), rand_iv(30)
    with outward_rounding(False):
        out = a * b
    corners = torch.stack([a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi])
    assert torch.equal(out.lo, corners.min(0).values)
    assert torch.equal(out.hi, corners.max(0).values)


def test_neg():
    a = rand_iv(7, 3)
    out = -a
    assert_inside(out, -samples(a))
    assert torch.equal(out.lo, -a.hi) and torch.equal(out.hi, -a.lo)


@pytest.mark.parametrize("rounding", [True, False])
def test_scale_sampling(rounding):
    a = rand_iv(5, 4)
    c = torch.randn(5, 4, dtype=F64)
    c[0, 0] = 0.0
    c[1, 1] = -2.0
    with outward_rounding(rounding):
        out_t = a.scale(c)
        out_s = a.scale(-0.37)
    tol = 0.0 if rounding else 1e-14
    xs = samples(a)
    assert_inside(out_t, xs * c, tol)
    assert_inside(out_s, xs * -0.37, tol)


@pytest.mark.parametrize("rounding", [True, False])
@pytest.mark.parametrize("dim", [0, 1, 2])
def test_sum_sampling(rounding, dim):
    a = rand_iv(4, 6, 3, scale=10.0, width=3.0)
    with outward_rounding(rounding):
        out = a.sum(dim)
    tol = 0.0 if rounding else 1e-12
    assert_inside(out, samples(a).sum(dim + 1), tol)


def test_sum_cancellation_rounding_still_contains():
    """Large terms that cancel: the float sum has a large relative error, the bound must cover it."""
    lo = torch.tensor([[1e16, 1.0, -1e16, 3.0]], dtype=F64)
    a = Interval(lo, lo.clone())
    out = a.sum(1)
    exact = 4.0  # the real sum
    assert float(out.lo) <= exact <= float(out.hi)
    assert float(out.lo) <= float(lo.sum(1)) <= float(out.hi)


def test_relu_sampling_and_exactness():
    a = rand_iv(10, 4)
    out = a.relu()
    assert_inside(out, torch.relu(samples(a)))
    assert torch.equal(out.lo, a.lo.clamp_min(0)) and torch.equal(out.hi, a.hi.clamp_min(0))


def _relu_derivative(x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(torch.relu(x).sum(), x)
    return g


def test_relu_grad_against_autograd():
    a = rand_iv(10, 4)
    # intervals touching zero: [0, 0], [-1, 0], [0, 1]
    a.lo[0, :3] = torch.tensor([0.0, -1.0, 0.0], dtype=F64)
    a.hi[0, :3] = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    out = a.relu_grad()
    xs = samples(a)
    assert_inside(out, _relu_derivative(xs))
    # torch's derivative at 0 is 0: [0,0] and [-1,0] give exactly {0}, [0,1] gives [0,1]
    assert out.lo[0, :3].tolist() == [0.0, 0.0, 0.0]
    assert out.hi[0, :3].tolist() == [0.0, 0.0, 1.0]
    # every entry is 0 or 1
    assert set(out.lo.unique().tolist()) <= {0.0, 1.0} and set(out.hi.unique().tolist()) <= {0.0, 1.0}


MONOTONE = {
    "exp": (torch.exp, True),
    "sigmoid": (torch.sigmoid, True),
    "log1p_exp": (lambda t: torch.log1p(torch.exp(t)), True),
    "exp_neg": (lambda t: torch.exp(-t), False),
    "neg_cube": (lambda t: -(t**3), False),
}


@pytest.mark.parametrize("name", sorted(MONOTONE))
@pytest.mark.parametrize("rounding", [True, False])
def test_monotone_sampling(name, rounding):
    fn, inc = MONOTONE[name]
    a = rand_iv(8, 3, scale=3.0)
    with outward_rounding(rounding):
        out = monotone(fn, a, increasing=inc)
    tol = 0.0 if rounding else 1e-12
    assert_inside(out, fn(samples(a)), tol)


# ---------------------------------------------------------------------------------------------
# matrix products
# ---------------------------------------------------------------------------------------------
def _sample_products(a, b, n=N_SAMPLES):
    xa = samples(a, n) if isinstance(a, Interval) else a.expand((n,) + tuple(a.shape))
    xb = samples(b, n) if isinstance(b, Interval) else b.expand((n,) + tuple(b.shape))
    while xb.dim() < xa.dim():
        xb = xb.unsqueeze(1)
    return xa @ xb


MATMUL_CASES = ["point_x_interval", "interval_x_point", "interval_x_interval", "interval_x_interval_exact"]


def _matmul_operands(case, batch=False):
    sa = (3, 4, 5) if batch else (4, 5)
    sb = (5, 3)
    if case == "point_x_interval":
        return torch.randn(*sa, dtype=F64), rand_iv(*sb), False
    if case == "interval_x_point":
        return rand_iv(*sa), torch.randn(*sb, dtype=F64), False
    if case == "interval_x_interval":
        return rand_iv(*sa), rand_iv(*sb), False
    return rand_iv(*sa), rand_iv(*sb), True


@pytest.mark.parametrize("case", MATMUL_CASES)
@pytest.mark.parametrize("rounding", [True, False])
@pytest.mark.parametrize("batch", [False, True])
def test_matmul_sampling(case, rounding, batch):
    a, b, exact = _matmul_operands(case, batch)
    with outward_rounding(rounding):
        out = matmul(a, b, exact=exact)
    tol = 0.0 if rounding else 1e-12
    assert_inside(out, _sample_products(a, b), tol)


def test_matmul_exact_equals_brute_force_corners():
    """For a dot product of 3 interval pairs the exact product is the min/max over all 2^6 corners."""
    for trial in range(5):
        a, b = rand_iv(1, 3), rand_iv(3, 1)
        with outward_rounding(False):
            out = matmul(a, b, exact=True)
        vals = []
        for bits in itertools.product([0, 1], repeat=6):
            xa = torch.where(torch.tensor(bits[:3]).bool().reshape(1, 3), a.hi, a.lo)
            xb = torch.where(torch.tensor(bits[3:]).bool().reshape(3, 1), b.hi, b.lo)
            vals.append(float((xa @ xb).item()))
        assert abs(float(out.lo) - min(vals)) <= 1e-12
        assert abs(float(out.hi) - max(vals)) <= 1e-12


def test_matmul_point_factor_is_tight():
    """A point factor: each output is linear in the interval entries, so the range is attained
    at the corner chosen by the signs of the point factor."""
    a, b = torch.randn(4, 5, dtype=F64), rand_iv(5, 3)
    with outward_rounding(False):
        out = matmul(a, b)
    for i in range(4):
        for j in range(3):
            best_hi = torch.where(a[i] > 0, b.hi[:, j], b.lo[:, j])
            best_lo = torch.where(a[i] > 0, b.lo[:, j], b.hi[:, j])
            assert abs(float(out.hi[i, j]) - float(a[i] @ best_hi)) <= 1e-12
            assert abs(float(out.lo[i, j]) - float(a[i] @ best_lo)) <= 1e-12


def test_matmul_midrad_within_factor_1_5_of_exact():
    for trial in range(20):
        a, b = rand_iv(4, 6), rand_iv(6, 3)
        with outward_rounding(False):
            mr = matmul(a, b)
            ex = matmul(a, b, exact=True)
        # the exact range is contained in the mid-rad enclosure ...
        assert (mr.lo <= ex.lo + 1e-12).all() and (mr.hi >= ex.hi - 1e-12).all()
        # ... which is at most 1.5 times as wide
        assert (mr.width() <= 1.5 * ex.width() + 1e-12).all()


@pytest.mark.parametrize("case", MATMUL_CASES)
def test_matmul_point_inputs_exact_without_rounding(case):
    a, b, exact = _matmul_operands(case)
    pa = a.lo if isinstance(a, Interval) else a
    pb = b.lo if isinstance(b, Interval) else b
    ia = Interval.point(pa) if isinstance(a, Interval) else pa
    ib = Interval.point(pb) if isinstance(b, Interval) else pb
    ref = pa @ pb
    with outward_rounding(False):
        out = matmul(ia, ib, exact=exact)
    if exact:  # element-wise products summed in another order than torch's matmul
        assert torch.allclose(out.lo, ref, rtol=0, atol=1e-13) and torch.allclose(out.hi, ref, rtol=0, atol=1e-13)
    else:  # mid-rad with zero radius is torch's product itself
        assert torch.equal(out.lo, ref) and torch.equal(out.hi, ref)
    # with rounding on: strictly encloses the float result, and stays tight
    out_r = matmul(ia, ib, exact=exact)
    assert (out_r.lo < ref).all() and (out_r.hi > ref).all()
    assert (out_r.width() <= 1e-12 * (1 + ref.abs())).all()


def test_linear_sampling_and_bias():
    x = rand_iv(6, 4)
    W = rand_iv(3, 4, width=0.3)
    b = rand_iv(3, width=0.2)
    out = linear(x, W, b)
    xs, Ws, bs = samples(x, 300), samples(W, 300), samples(b, 300)
    ref = torch.einsum("nbi,noi->nbo", xs, Ws) + bs.unsqueeze(1)
    assert_inside(out, ref)
    out_nb = linear(x, W, None)
    assert_inside(out_nb, torch.einsum("nbi,noi->nbo", xs, Ws))
    # point input tensor and exact mode
    xp = torch.randn(6, 4, dtype=F64)
    out_p = linear(xp, W, b, exact=True)
    assert_inside(out_p, torch.einsum("bi,noi->nbo", xp, Ws) + bs.unsqueeze(1))


def test_linear_matches_torch_functional_on_points():
    x = torch.randn(5, 4, dtype=F64)
    W = torch.randn(3, 4, dtype=F64)
    b = torch.randn(3, dtype=F64)
    ref = torch.nn.functional.linear(x, W, b)
    with outward_rounding(False):
        out = linear(Interval.point(x), Interval.point(W), Interval.point(b))
    assert torch.allclose(out.lo, ref, atol=1e-13, rtol=0) and torch.allclose(out.hi, ref, atol=1e-13, rtol=0)
    out_r = linear(Interval.point(x), Interval.point(W), Interval.point(b))
    assert (out_r.lo < ref).all() and (out_r.hi > ref).all()


# ---------------------------------------------------------------------------------------------
# zero-width inputs: exact without rounding, strictly enclosing with rounding
# ---------------------------------------------------------------------------------------------
ELEMENTWISE_POINT_OPS = {
    "add": (lambda a, b: a + b, lambda x, y: x + y, True),
    "sub": (lambda a, b: a - b, lambda x, y: x - y, True),
    "mul": (lambda a, b: a * b, lambda x, y: x * y, True),
    "scale": (lambda a, b: a.scale(b.lo), lambda x, y: x * y, True),
    "neg": (lambda a, b: -a, lambda x, y: -x, False),
    "relu": (lambda a, b: a.relu(), lambda x, y: torch.relu(x), False),
    "sum": (lambda a, b: a.sum(1), lambda x, y: x.sum(1), True),
    "exp": (lambda a, b: monotone(torch.exp, a), lambda x, y: torch.exp(x), True),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE_POINT_OPS))
def test_point_inputs(name):
    iv_op, t_op, rounds = ELEMENTWISE_POINT_OPS[name]
    x = torch.randn(5, 4, dtype=F64) * 3 + 0.1  # away from exact zeros
    y = torch.randn(5, 4, dtype=F64) * 3 + 0.1
    ref = t_op(x, y)
    with outward_rounding(False):
        out = iv_op(Interval.point(x), Interval.point(y))
    assert torch.equal(out.lo, ref) and torch.equal(out.hi, ref)
    out_r = iv_op(Interval.point(x), Interval.point(y))
    if rounds:
        assert (out_r.lo < ref).all() and (out_r.hi > ref).all(), "outward rounding must strictly enclose"
        assert (out_r.width() <= 1e-12 * (1 + ref.abs())).all()
    else:
        assert torch.equal(out_r.lo, ref) and torch.equal(out_r.hi, ref)


def test_rounding_contains_the_real_result_where_float_rounds():
    """0.1 + 0.2 is not exactly 0.3 in binary; the real sum of the two doubles must be inside."""
    from fractions import Fraction

    a = Interval.point(torch.tensor([0.1], dtype=F64))
    b = Interval.point(torch.tensor([0.2], dtype=F64))
    out = a + b
    real = Fraction(0.1) + Fraction(0.2)
    assert Fraction(float(out.lo)) <= real <= Fraction(float(out.hi))
    m = a * b
    realm = Fraction(0.1) * Fraction(0.2)
    assert Fraction(float(m.lo)) <= realm <= Fraction(float(m.hi))
    # the product of point matrices: real dot product enclosed
    xa = torch.tensor([[0.1, 0.7, -0.3]], dtype=F64)
    xb = torch.tensor([[0.2], [0.9], [0.11]], dtype=F64)
    out = matmul(Interval.point(xa), Interval.point(xb))
    realdot = sum(Fraction(float(xa[0, i])) * Fraction(float(xb[i, 0])) for i in range(3))
    assert Fraction(float(out.lo)) <= realdot <= Fraction(float(out.hi))


def test_from_mid_rad_contains():
    m = torch.randn(10, dtype=F64)
    r = torch.rand(10, dtype=F64)
    iv = Interval.from_mid_rad(m, r)
    assert (iv.lo <= m - r).all() and (iv.hi >= m + r).all()


# ---------------------------------------------------------------------------------------------
# conversion to a lower precision rounds outward
# ---------------------------------------------------------------------------------------------
F32 = torch.float32


def test_interval_to_float32_contains_the_float64_interval():
    g = torch.Generator().manual_seed(0)
    lo = torch.randn(10000, generator=g, dtype=F64) * torch.logspace(-30, 30, 10000, dtype=F64)
    hi = lo + torch.rand(10000, generator=g, dtype=F64) * 1e-9
    iv = Interval(lo, hi).to(F32)
    assert iv.dtype == F32
    assert bool((iv.lo.double() <= lo).all()) and bool((iv.hi.double() >= hi).all())
    # no wider than needed: one float32 step at most from the nearest rounding
    near_lo, near_hi = lo.to(F32), hi.to(F32)
    assert bool((torch.nextafter(iv.lo, torch.tensor(torch.inf)) >= near_lo).all())
    assert bool((torch.nextafter(iv.hi, torch.tensor(-torch.inf)) <= near_hi).all())
    # round to nearest would have moved some bounds inward: the test can fail
    assert bool((near_lo.double() > lo).any()) and bool((near_hi.double() < hi).any())


def test_casts_of_extreme_values():
    big = torch.tensor([1e300, -1e300, 0.1, -0.1, 0.0, 5e-324], dtype=F64)
    down, up = cast_down(big, F32), cast_up(big, F32)
    assert bool((down.double() <= big).all()) and bool((up.double() >= big).all())
    assert torch.isfinite(down[0]) and torch.isinf(up[0]) and torch.isinf(down[1])
    same = torch.tensor([0.5, 2.0], dtype=F64)
    assert torch.equal(cast_down(same, F64), same) and torch.equal(cast_up(same, F64), same)


# ---------------------------------------------------------------------------------------------
# representation: separate bounds or one stacked (2, ...) tensor, same results
# ---------------------------------------------------------------------------------------------
def _stacked(iv: Interval) -> Interval:
    return Interval.from_stacked(torch.stack((iv.lo, iv.hi)))


REPRESENTATION_OPS = {
    "add": lambda a, b, w, p: a + b,
    "sub": lambda a, b, w, p: a - b,
    "mul": lambda a, b, w, p: a * b,
    "add_point": lambda a, b, w, p: a + p,
    "sub_float": lambda a, b, w, p: a - 0.3,
    "rsub_float": lambda a, b, w, p: 0.3 - a,
    "scale_neg": lambda a, b, w, p: a.scale(-0.7),
    "scale_tensor": lambda a, b, w, p: a.scale(p),
    "neg": lambda a, b, w, p: -a,
    "relu": lambda a, b, w, p: a.relu(),
    "sum": lambda a, b, w, p: a.sum(0),
    "gate": lambda a, b, w, p: a.gate(b.relu_grad()),
    "relu_backward": lambda a, b, w, p: a.relu_backward(b),
    "linear": lambda a, b, w, p: linear(a, w, b[0]),
    "linear_exact": lambda a, b, w, p: linear(a, w, b[0], exact=True),
    "matmul": lambda a, b, w, p: matmul(a, w),
    "matmul_exact": lambda a, b, w, p: matmul(a, w, exact=True),
    "monotone": lambda a, b, w, p: monotone(torch.sigmoid, a),
    "outer": lambda a, b, w, p: outer(a, b),
    "views": lambda a, b, w, p: a[1:, 2].reshape(-1).unsqueeze(0),
}


@pytest.mark.parametrize("op", sorted(REPRESENTATION_OPS))
@pytest.mark.parametrize("rounding", [True, False])
def test_stacked_bounds_give_the_same_results_bit_for_bit(op, rounding):
    """Every operation gives the same bounds whichever form (two tensors, one stacked tensor, or
    a mix) its operands hold."""
    fn = REPRESENTATION_OPS[op]
    a, b, w, p = rand_iv(6, 5), rand_iv(6, 5), rand_iv(5, 5), torch.randn(5, dtype=F64)
    with outward_rounding(rounding):
        ref = fn(a, b, w, p)
        for sa, sb in ((True, True), (True, False), (False, True)):
            out = fn(_stacked(a) if sa else a, _stacked(b) if sb else b, _stacked(w), p)
            assert torch.equal(out.lo, ref.lo) and torch.equal(out.hi, ref.hi), (sa, sb)


def test_outer_contains_the_sampled_products():
    a, b = rand_iv(7, 4), rand_iv(7, 3)
    out = outer(a, b)
    assert out.shape == (7, 4, 3)
    assert_inside(out, samples(a).unsqueeze(-1) * samples(b).unsqueeze(-2))


def test_pickles_of_both_forms_and_of_the_former_slots():
    import pickle

    a = rand_iv(3, 2)
    for iv in (a, _stacked(a)):
        back = pickle.loads(pickle.dumps(iv))
        assert torch.equal(back.lo, a.lo) and torch.equal(back.hi, a.hi) and torch.equal(back.stacked, iv.stacked)
    old = Interval.__new__(Interval)
    old.__setstate__((None, {"lo": a.lo, "hi": a.hi}))  # what versions with slots lo and hi pickled
    assert torch.equal(old.lo, a.lo) and torch.equal(old.hi, a.hi)
