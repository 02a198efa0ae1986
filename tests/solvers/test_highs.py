"""Tests of the solver backends and the McCormick relaxation (mibpcert.solvers).

Known optima come from an independent computation: for the tiny programs below every binary is
enumerated and the remaining problem is a quadratic with an indefinite Hessian over a polygon in
(x, y), whose extrema lie on the polygon's edges (endpoints or the stationary point of the
quadratic along the edge).
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp

from mibpcert.ir.program import LinearExpr, Program, ProgramBuilder
from mibpcert.solvers import (
    ObjectiveBound,
    SolveOptions,
    SolverUnavailable,
    Status,
    available_backends,
    get_backend,
)
from mibpcert.solvers.highs import safe_lp_bound
from mibpcert.solvers.mccormick import relax, relax_bilinear, relax_binaries
from mibpcert.solvers.parallel import SolverPool, bound_many, bound_parallel

HAS_GUROBI = importlib.util.find_spec("gurobipy") is not None
HAS_SCIP = importlib.util.find_spec("pyscipopt") is not None
# SCIP is disabled for certification (solvers/scip.py); its wrapper is tested here on programs
# whose answers are checked independently
pytestmark = pytest.mark.usefixtures("unverified_scip")
HAS_PYOMO = importlib.util.find_spec("pyomo") is not None


def _need(pkg_present: bool, name: str) -> None:
    if not pkg_present:
        pytest.skip(f"{name} is not installed")


# ------------------------------------------------------------------------------------------------
# Tiny MIBPs with an exactly computable optimum
# ------------------------------------------------------------------------------------------------
def _clip(poly: list[np.ndarray], a: np.ndarray, h: float) -> list[np.ndarray]:
    """Sutherland–Hodgman clip of a convex polygon by ``a . p <= h``."""
    out = []
    for i in range(len(poly)):
        p, q = poly[i], poly[(i + 1) % len(poly)]
        fp, fq = a @ p - h, a @ q - h
        if fp <= 0:
            out.append(p)
        if (fp < 0 < fq) or (fq < 0 < fp):
            out.append(p + (q - p) * (fp / (fp - fq)))
    return out


class Tiny:
    """x in [xl,xu], y in [yl,yu], b binary, s fixed; z = x*y, q = x*x, w = b*x, t = s*y;
    rows  a1 x + a2 y + a3 b <= h1,  a4 x + a5 y >= h2;  objective over (z, q, w, t, x, y, b)."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.xl, self.yl = rng.uniform(-2, 0.5, 2)
        self.xu, self.yu = self.xl + rng.uniform(0.5, 3), self.yl + rng.uniform(0.5, 3)
        self.s0 = float(rng.uniform(-1.5, 1.5))
        x0, y0, b0 = rng.uniform(self.xl, self.xu), rng.uniform(self.yl, self.yu), float(rng.integers(0, 2))
        self.a = rng.normal(size=5)
        self.h1 = self.a[0] * x0 + self.a[1] * y0 + self.a[2] * b0 + rng.uniform(0.0, 0.5)
        self.h2 = self.a[3] * x0 + self.a[4] * y0 - rng.uniform(0.0, 0.5)
        self.c = rng.normal(size=7)  # on z, q, w, t, x, y, b
        self.c[0] = np.sign(self.c[0]) * max(abs(self.c[0]), 0.3)  # keep the Hessian indefinite
        self.const = float(rng.normal())

        B = ProgramBuilder()
        x = int(B.add_vars(self.xl, self.xu, name="x"))
        y = int(B.add_vars(self.yl, self.yu, name="y"))
        b = int(B.add_binaries((), name="b"))
        s = int(B.add_vars(self.s0, self.s0, name="s"))
        pz = [self.xl * self.yl, self.xl * self.yu, self.xu * self.yl, self.xu * self.yu]
        z = int(B.add_vars(min(pz), max(pz), name="z"))
        q = int(B.add_vars(0.0 if self.xl <= 0 <= self.xu else min(self.xl**2, self.xu**2),
                           max(self.xl**2, self.xu**2), name="q"))
        w = int(B.add_vars(min(0.0, self.xl), max(0.0, self.xu), name="w"))
        pt = [self.s0 * self.yl, self.s0 * self.yu]
        t = int(B.add_vars(min(pt), max(pt), name="t"))
        B.add_bilinear(z, x, y)
        B.add_bilinear(q, x, x)
        B.add_bilinear(w, b, x)
        B.add_bilinear(t, s, y)
        B.add_row([x, y, b], self.a[:3], hi=self.h1)
        B.add_row([x, y], self.a[3:], lo=self.h2)
        self.program = B.build()
        self.objective = LinearExpr(np.array([z, q, w, t, x, y, b]), self.c.copy(), self.const)
        self.feasible = np.zeros(self.program.num_vars)
        self.feasible[[x, y, b, s, z, q, w, t]] = [x0, y0, b0, self.s0, x0 * y0, x0 * x0, b0 * x0, self.s0 * y0]
        assert self.program.max_violation(self.feasible) < 1e-9
        self.true_min, self.true_max = self._exact()

    def _f(self, px: float, py: float, b: float) -> float:
        cz, cq, cw, ct, cx, cy, cb = self.c
        return (cz * px * py + cq * px * px + cw * b * px + ct * self.s0 * py + cx * px + cy * py
                + cb * b + self.const)

    def _exact(self, bs: tuple[float, ...] = (0.0, 1.0)) -> tuple[float, float]:
        vals = []
        for b in bs:
            poly = [np.array(p, dtype=float) for p in
                    [(self.xl, self.yl), (self.xu, self.yl), (self.xu, self.yu), (self.xl, self.yu)]]
            poly = _clip(poly, np.array(self.a[:2]), self.h1 - self.a[2] * b)
            poly = _clip(poly, -np.array(self.a[3:]), -self.h2) if poly else poly
            cz, cq, cw, ct, cx, cy, _ = self.c
            alpha, gamma = cw * b + cx, ct * self.s0 + cy
            for i in range(len(poly)):
                p, d = poly[i], poly[(i + 1) % len(poly)] - poly[i]
                # f(p + t d) = A t^2 + B t + const along the edge
                A = cz * d[0] * d[1] + cq * d[0] ** 2
                Bt = cz * (p[0] * d[1] + p[1] * d[0]) + 2 * cq * p[0] * d[0] + alpha * d[0] + gamma * d[1]
                ts = [0.0, 1.0]
                if abs(A) > 1e-14:
                    ts.append(float(np.clip(-Bt / (2 * A), 0.0, 1.0)))
                vals += [self._f(p[0] + tt * d[0], p[1] + tt * d[1], b) for tt in ts]
        return min(vals), max(vals)


TINY = [Tiny(s) for s in range(6)]


def _brute(tiny: Tiny, n: int = 301) -> tuple[float, float]:
    """Grid check of the edge-based exact optimum (grid values lie inside it)."""
    xs, ys = np.meshgrid(np.linspace(tiny.xl, tiny.xu, n), np.linspace(tiny.yl, tiny.yu, n))
    lo, hi = np.inf, -np.inf
    for b in (0.0, 1.0):
        ok = (tiny.a[0] * xs + tiny.a[1] * ys + tiny.a[2] * b <= tiny.h1) & (tiny.a[3] * xs + tiny.a[4] * ys >= tiny.h2)
        if ok.any():
            f = tiny._f(xs[ok], ys[ok], b)
            lo, hi = min(lo, f.min()), max(hi, f.max())
    return lo, hi


@pytest.mark.parametrize("tiny", TINY[:3])
def test_exact_optimum_reference_is_consistent(tiny: Tiny) -> None:
    lo, hi = _brute(tiny)
    assert tiny.true_min <= lo + 1e-9 and hi <= tiny.true_max + 1e-9
    assert lo - tiny.true_min < 0.05 and tiny.true_max - hi < 0.05  # the grid gets close


# ------------------------------------------------------------------------------------------------
# McCormick
# ------------------------------------------------------------------------------------------------
def _one_product(uL, uU, vL, vU, u_binary=False) -> Program:
    B = ProgramBuilder()
    u = int(B.add_vars(uL, uU, binary=u_binary, name="u"))
    v = int(B.add_vars(vL, vU, name="v"))
    p = [uL * vL, uL * vU, uU * vL, uU * vU]
    z = int(B.add_vars(min(p), max(p), name="z"))
    B.add_bilinear(z, u, v)
    return B.build()


def _rows_hold(prog: Program, x: np.ndarray, tol: float = 0.0) -> bool:
    ax = prog.A @ x
    return bool(np.all(ax >= prog.row_lb - tol) and np.all(ax <= prog.row_ub + tol))


def test_mccormick_envelope_contains_products_dense_sampling() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        uL, vL = rng.uniform(-3, 2, 2)
        uU, vU = uL + rng.uniform(1e-3, 4), vL + rng.uniform(1e-3, 4)
        rel = relax_bilinear(_one_product(uL, uU, vL, vU))
        assert rel.num_bilinear == 0 and rel.num_vars == 3 and rel.num_rows == 4
        us, vs = np.meshgrid(np.linspace(uL, uU, 61), np.linspace(vL, vU, 61))
        X = np.stack([us.ravel(), vs.ravel(), (us * vs).ravel()])
        AX = rel.A @ X
        assert np.all(AX >= rel.row_lb[:, None]) and np.all(AX <= rel.row_ub[:, None])
        # ... and it is not vacuous: z far from u*v violates it at an interior point.
        um, vm = 0.5 * (uL + uU), 0.5 * (vL + vU)
        gap = 0.25 * (uU - uL) * (vU - vL)  # envelope width at the centre is half the range product
        assert not _rows_hold(rel, np.array([um, vm, um * vm + 1.01 * gap]))
        assert not _rows_hold(rel, np.array([um, vm, um * vm - 1.01 * gap]))


def test_mccormick_binary_factor_is_exact_and_fixed_factor_linear() -> None:
    rel = relax_bilinear(_one_product(0.0, 1.0, -2.0, 3.0, u_binary=True))
    hi = get_backend("highs")
    z = LinearExpr.var(2)
    for u in (0.0, 1.0):
        for v in (-2.0, 0.7, 3.0):
            fixed = Program(np.array([u, v, -6.0]), np.array([u, v, 6.0]), rel.is_binary[:3], rel.A,
                            rel.row_lb, rel.row_ub, rel.bilinear)
            (b,) = hi.bound(fixed, [z], SolveOptions(relax="lp"))
            assert b.lower == pytest.approx(u * v, abs=1e-6) and b.upper == pytest.approx(u * v, abs=1e-6)
    # u fixed at 1.5: z = 1.5 v exactly; v in [-2, 3] gives z in [-3, 4.5]
    prog = _one_product(1.5, 1.5, -2.0, 3.0)
    rel = relax_bilinear(prog)
    assert rel.num_rows == 1
    (b,) = hi.bound(prog, [z], SolveOptions(relax="lp"))
    assert b.lower == pytest.approx(-3.0, abs=1e-6) and b.upper == pytest.approx(4.5, abs=1e-6)
    # z + ... with v fixed too: the whole thing is a constant
    (b,) = hi.bound(_one_product(1.5, 1.5, 2.0, 2.0), [z], SolveOptions(relax="lp"))
    assert b.lower == pytest.approx(3.0, abs=1e-6) and b.upper == pytest.approx(3.0, abs=1e-6)


def test_relax_binaries_and_relax_modes() -> None:
    prog = TINY[0].program
    r = relax_binaries(prog)
    assert not r.is_binary.any() and r.num_bilinear == prog.num_bilinear
    # x*y and x*x are partitioned (3 binaries each); b*x is exact, s*y linear
    assert relax(prog, "milp", 3).is_binary.sum() == prog.num_binaries + 6
    assert not relax(prog, "lp", 3).is_binary.any()
    with pytest.raises(ValueError):
        relax(prog, "nope")


def _product_program(uL, uU, vL, vU, fix=None, diff=None) -> tuple[Program, int]:
    """z = u v on a box; ``fix=(u0, v0)`` adds rows pinning (u, v, z) to (u0, v0, u0 v0) (bounds
    untouched, so the partitioned formulation is used); ``diff=d`` adds the row u - v = d."""
    B = ProgramBuilder()
    u = int(B.add_vars(uL, uU, name="u"))
    v = int(B.add_vars(vL, vU, name="v"))
    p = [uL * vL, uL * vU, uU * vL, uU * vU]
    z = int(B.add_vars(min(p), max(p), name="z"))
    B.add_bilinear(z, u, v)
    if fix is not None:
        u0, v0 = fix
        B.add_eq([u], [1.0], u0)
        B.add_eq([v], [1.0], v0)
        B.add_eq([z], [1.0], u0 * v0)
    if diff is not None:
        B.add_eq([u, v], [1.0, -1.0], diff)
    return B.build(), z


def test_partitioned_mccormick_contains_products_and_is_tighter() -> None:
    rng = np.random.default_rng(2)
    hi = get_backend("highs")
    strictly_tighter = 0
    for trial in range(6):
        if trial == 0:  # z = u^2 on [-1, 1]: plain envelope allows z = -1, pieces give z >= -1/4
            uL = vL = -1.0
            uU = vU = 1.0
        else:
            uL, vL = rng.uniform(-3, 1, 2)
            uU, vU = uL + rng.uniform(0.5, 4), vL + rng.uniform(0.5, 4)
        assert relax_bilinear(_product_program(uL, uU, vL, vU)[0], partitions=4).num_binaries == 4
        # containment: with (u, v, u v) pinned by rows the partitioned relaxation stays feasible
        for _ in range(8):
            u, v = rng.uniform(uL, uU), rng.uniform(vL, vU)
            prog, z = _product_program(uL, uU, vL, vU, fix=(u, v))
            (b,) = hi.bound(prog, [LinearExpr.var(z)], SolveOptions(partitions=4))
            assert b.lower_status == Status.OPTIMAL, (u, v)
            assert b.lower <= u * v <= b.upper
        # tightness: a row u - v = d makes the box envelope inexact
        lo_d, hi_d = uL - vU, uU - vL  # u - v ranges over [lo_d, hi_d]
        d = 0.0 if trial == 0 else 0.5 * (lo_d + hi_d) + rng.uniform(-0.6, 0.6) * 0.5 * (hi_d - lo_d)
        lo_u, hi_u = max(uL, vL + d), min(uU, vU + d)
        assert lo_u < hi_u
        prog, z = _product_program(uL, uU, vL, vU, diff=d)
        (plain,) = hi.bound(prog, [LinearExpr.var(z)], SolveOptions(partitions=1))
        (p4,) = hi.bound(prog, [LinearExpr.var(z)], SolveOptions(partitions=4))
        # (the MILP bound carries a padding of ~1e-6, the LP bound almost none)
        assert p4.lower >= plain.lower - 1e-5 and p4.upper <= plain.upper + 1e-5
        strictly_tighter += (p4.lower > plain.lower + 1e-3) or (p4.upper < plain.upper - 1e-3)
        us = np.linspace(lo_u, hi_u, 2001)
        true = us * (us - d)
        assert p4.lower <= true.min() + 1e-7 and p4.upper >= true.max() - 1e-7
    assert strictly_tighter >= 3


# ------------------------------------------------------------------------------------------------
# HiGHS safe LP bound
# ------------------------------------------------------------------------------------------------
def test_safe_lp_bound_valid_for_any_multipliers() -> None:
    rng = np.random.default_rng(3)
    n, m = 12, 8
    A = sp.random(m, n, density=0.5, random_state=4, format="csr")
    lb, ub = -rng.uniform(0.5, 2, n), rng.uniform(0.5, 2, n)
    rlo = np.where(rng.random(m) < 0.3, -np.inf, -rng.uniform(0, 1, m))
    rhi = np.where(rng.random(m) < 0.3, np.inf, rng.uniform(0, 1, m))
    c = rng.normal(size=n)
    A_ub = sp.vstack([A[np.isfinite(rhi)], -A[np.isfinite(rlo)]])
    b_ub = np.concatenate([rhi[np.isfinite(rhi)], -rlo[np.isfinite(rlo)]])
    lo_true = so.linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=list(zip(lb, ub)), method="highs").fun
    hi_true = -so.linprog(-c, A_ub=A_ub, b_ub=b_ub, bounds=list(zip(lb, ub)), method="highs").fun
    for _ in range(50):
        y = rng.normal(size=m) * rng.uniform(0, 3)
        assert safe_lp_bound(c, y, A, rlo, rhi, lb, ub, True) <= lo_true + 1e-12
        assert safe_lp_bound(c, y, A, rlo, rhi, lb, ub, False) >= hi_true - 1e-12
    # through the backend: the bound is tight at the optimum
    prog = Program(lb, ub, np.zeros(n, bool), A, rlo, rhi, np.zeros((0, 3), np.int64))
    (b,) = get_backend("highs").bound(prog, [LinearExpr(np.arange(n), c)], SolveOptions(relax="lp"))
    assert b.lower <= lo_true and lo_true - b.lower < 1e-7
    assert b.upper >= hi_true and b.upper - hi_true < 1e-7


# ------------------------------------------------------------------------------------------------
# Backends on tiny programs with known optimum
# ------------------------------------------------------------------------------------------------
def _contains(b: ObjectiveBound, lo: float, hi: float, tol: float = 0.0) -> bool:
    return b.lower <= lo + tol and b.upper >= hi - tol


@pytest.mark.parametrize("tiny", TINY, ids=[f"seed{i}" for i in range(len(TINY))])
def test_highs_relaxations_contain_optimum_and_nest(tiny: Tiny) -> None:
    hi = get_backend("highs")
    assert hi.name == "highs" and not hi.exact
    (lp,) = hi.bound(tiny.program, [tiny.objective], SolveOptions(relax="lp"))
    (milp,) = hi.bound(tiny.program, [tiny.objective], SolveOptions(relax="milp"))
    (p4,) = hi.bound(tiny.program, [tiny.objective], SolveOptions(relax="milp", partitions=4))
    for b in (lp, milp, p4):
        assert _contains(b, tiny.true_min, tiny.true_max)
        assert b.lower_status == b.upper_status == Status.OPTIMAL
    tol = 1e-5 * (1.0 + np.abs(tiny.c).sum())  # up to the (different) outward paddings
    assert lp.lower <= milp.lower + tol and milp.upper <= lp.upper + tol
    assert milp.lower <= p4.lower + tol and p4.upper <= milp.upper + tol


@pytest.mark.parametrize("name", ["gurobi", "scip"])
@pytest.mark.parametrize("tiny", TINY, ids=[f"seed{i}" for i in range(len(TINY))])
def test_exact_backends_match_optimum(name: str, tiny: Tiny) -> None:
    _need(HAS_GUROBI if name == "gurobi" else HAS_SCIP, name)
    be = get_backend(name)
    assert be.exact and be.name == name
    (b,) = be.bound(tiny.program, [tiny.objective], SolveOptions(warm_start=tiny.feasible))
    assert b.lower_status == b.upper_status == Status.OPTIMAL
    assert _contains(b, tiny.true_min, tiny.true_max)
    # within 1e-5, plus the relative part of the outward padding (1e-6 |v| for SCIP)
    assert tiny.true_min - b.lower < 1e-5 * (1 + abs(tiny.true_min))
    assert b.upper - tiny.true_max < 1e-5 * (1 + abs(tiny.true_max))
    (lp,) = get_backend("highs").bound(tiny.program, [tiny.objective], SolveOptions(relax="milp"))
    tol = 1e-5 * (1.0 + np.abs(tiny.c).sum())
    assert lp.lower <= b.lower + tol and b.upper <= lp.upper + tol


def test_pyomo_appsi_highs_contains_optimum() -> None:
    pytest.importorskip("pyomo")
    try:
        be = get_backend("pyomo:appsi_highs")
    except SolverUnavailable as e:
        pytest.skip(str(e))
    assert not be.exact and be.name == "pyomo:appsi_highs"
    for tiny in TINY[:3]:
        (b,) = be.bound(tiny.program, [tiny.objective], SolveOptions())
        assert b.lower_status == b.upper_status == Status.OPTIMAL
        assert _contains(b, tiny.true_min, tiny.true_max)
        (ref,) = get_backend("highs").bound(tiny.program, [tiny.objective], SolveOptions())
        assert abs(b.lower - ref.lower) < 1e-4 and abs(b.upper - ref.upper) < 1e-4


def _without_binaries(tiny: Tiny) -> tuple[Program, float, float] | None:
    """The tiny program with b fixed (as a continuous variable): no integer variables left."""
    for b in (0.0, 1.0):
        try:
            lo, hi = tiny._exact((b,))
        except ValueError:  # empty polygon for this b
            continue
        p = tiny.program
        lb, ub = p.lb.copy(), p.ub.copy()
        lb[2] = ub[2] = b
        return Program(lb, ub, np.zeros_like(p.is_binary), p.A, p.row_lb, p.row_ub, p.bilinear), lo, hi
    return None


@pytest.mark.parametrize("name", ["gurobi", "scip", "pyomo:gurobi_direct"])
def test_exact_backends_without_integer_variables(name: str) -> None:
    _need(HAS_SCIP if name == "scip" else HAS_GUROBI, name)
    if name.startswith("pyomo"):
        pytest.importorskip("pyomo")
    prog, lo, hi = _without_binaries(TINY[2])
    (b,) = get_backend(name).bound(prog, [TINY[2].objective], SolveOptions())
    assert b.lower_status == b.upper_status == Status.OPTIMAL
    assert b.lower <= lo and b.upper >= hi
    assert lo - b.lower < 1e-5 * (1 + abs(lo)) and b.upper - hi < 1e-5 * (1 + abs(hi))


def test_pyomo_gurobi_direct_matches_optimum() -> None:
    pytest.importorskip("pyomo")
    _need(HAS_GUROBI, "gurobipy")
    be = get_backend("pyomo:gurobi_direct")
    assert be.exact
    tiny = TINY[1]
    (b,) = be.bound(tiny.program, [tiny.objective], SolveOptions())
    assert _contains(b, tiny.true_min, tiny.true_max)
    assert tiny.true_min - b.lower < 1e-5 and b.upper - tiny.true_max < 1e-5


# ------------------------------------------------------------------------------------------------
# Time limits, failures, licence
# ------------------------------------------------------------------------------------------------
def random_mibp(seed: int, n_cont: int, n_bin: int, n_bil: int, n_rows: int, row_nnz: int = 5):
    """Random feasible MIBP (products of continuous pairs and binary-continuous pairs, sparse rows
    around a known feasible point); returns (program, feasible point, objectives)."""
    rng = np.random.default_rng(seed)
    B = ProgramBuilder()
    x0 = rng.normal(size=n_cont)
    xl, xu = x0 - rng.uniform(0.5, 2, n_cont), x0 + rng.uniform(0.5, 2, n_cont)
    x = B.add_vars(xl, xu, name="x")
    b = B.add_binaries(n_bin)
    val = list(x0) + list(rng.integers(0, 2, n_bin).astype(float))
    lo, hi = list(xl) + [0.0] * n_bin, list(xu) + [1.0] * n_bin
    zs = []
    for _ in range(n_bil):
        u = int(rng.choice(b)) if (n_bin and rng.random() < 0.3) else int(rng.choice(x))
        v = int(rng.choice(x))
        p = [lo[u] * lo[v], lo[u] * hi[v], hi[u] * lo[v], hi[u] * hi[v]]
        z = int(B.add_vars(min(p), max(p), name="z"))
        B.add_bilinear(z, u, v)
        val.append(val[u] * val[v])
        lo.append(min(p))
        hi.append(max(p))
        zs.append(z)
    val = np.array(val)
    for _ in range(n_rows):
        idx = rng.choice(B.num_vars, size=row_nnz, replace=False)
        coef = rng.normal(size=row_nnz)
        a = float(coef @ val[idx])
        B.add_row(idx, coef, a - rng.uniform(0.05, 0.5), a + rng.uniform(0.05, 0.5))
    prog = B.build()
    assert prog.max_violation(val) < 1e-9
    objs = [LinearExpr(np.array(zs[i:i + 3]), rng.normal(size=3), 0.25) for i in range(0, min(n_bil, 12), 3)]
    return prog, val, objs


@pytest.fixture(scope="module")
def hard_instance():
    prog, val, objs = random_mibp(11, n_cont=20, n_bin=6, n_bil=20, n_rows=20)
    obj = objs[1]
    name = "gurobi" if HAS_GUROBI else ("scip" if HAS_SCIP else None)
    if name is None:
        pytest.skip("no exact backend installed")
    (ref,) = get_backend(name).bound(prog, [obj], SolveOptions())
    assert ref.lower_status == ref.upper_status == Status.OPTIMAL
    # ref's sides are within 1e-5 (gap + padding) of the true optimum; shift them inward by that
    return prog, val, obj, ref.lower + 2e-5, ref.upper - 2e-5


@pytest.mark.parametrize("name", ["gurobi", "scip", "highs"])
def test_time_limit_returns_dual_bound_not_incumbent(name: str, hard_instance) -> None:
    _need({"gurobi": HAS_GUROBI, "scip": HAS_SCIP, "highs": True}[name], name)
    prog, val, obj, true_min_upper, true_max_lower = hard_instance
    opts = SolveOptions(time_limit=1e-3, warm_start=val)
    (b,) = get_backend(name).bound(prog, [obj], opts)
    for st in (b.lower_status, b.upper_status):
        assert st in (Status.TIME_LIMIT, Status.FAILED)
    # sound: the true minimum is at most ref.lower + 2e-5, so a dual bound is below that
    assert b.lower <= true_min_upper and b.upper >= true_max_lower
    assert b.lower <= obj.evaluate(val) <= b.upper
    if b.lower_status == Status.FAILED:
        assert b.lower == -np.inf
    if b.upper_status == Status.FAILED:
        assert b.upper == np.inf


def test_highs_thread_count_changes_do_not_give_stale_bounds() -> None:
    """HiGHS's global thread pool is fixed at first use; a clashing run fails with stale info,
    which must never be read as a bound."""
    import highspy

    tiny = TINY[0]
    ref = get_backend("highs").bound(tiny.program, [tiny.objective], SolveOptions(threads=1))[0]
    for th in (2, 1, 3):
        # someone else in the process starts the pool with another size
        other = highspy.Highs()
        other.setOptionValue("output_flag", False)
        other.setOptionValue("threads", th + 1)
        other.addVar(0.0, 1.0)
        other.run()
        for relax_mode in ("milp", "lp"):
            (b,) = get_backend("highs").bound(tiny.program, [tiny.objective],
                                              SolveOptions(threads=th, relax=relax_mode))
            assert b.lower_status == b.upper_status == Status.OPTIMAL
            assert _contains(b, tiny.true_min, tiny.true_max)
    assert ref.lower_status == Status.OPTIMAL


def test_failure_gives_infinite_sides() -> None:
    tiny = TINY[0]
    bad = LinearExpr(np.array([tiny.program.num_vars + 5]), np.array([1.0]))
    names = ["highs"] + (["gurobi"] if HAS_GUROBI else []) + (["scip"] if HAS_SCIP else [])
    names += ["pyomo:appsi_highs"] if "pyomo:appsi_highs" in available_backends() else []
    for name in names:
        good, failed = get_backend(name).bound(tiny.program, [tiny.objective, bad], SolveOptions())
        assert failed.lower == -np.inf and failed.upper == np.inf
        assert failed.lower_status == failed.upper_status == Status.FAILED
        assert _contains(good, tiny.true_min, tiny.true_max)
    # an empty feasible set is reported as a failure, not as a bound
    B = ProgramBuilder()
    x = B.add_vars(np.zeros(2), np.ones(2))
    B.add_row(x, [1.0, 1.0], lo=3.0)
    (b,) = get_backend("highs").bound(B.build(), [LinearExpr.var(0)], SolveOptions(relax="lp"))
    assert b.lower_status == b.upper_status == Status.FAILED


def test_gurobi_licence_too_small_raises() -> None:
    _need(HAS_GUROBI, "gurobipy")
    from mibpcert.solvers.gurobi import licence_is_size_limited

    if not licence_is_size_limited():
        pytest.skip("a full Gurobi licence is active")
    B = ProgramBuilder()
    x = B.add_vars(-np.ones(2500), np.ones(2500))
    B.add_row(x[:10], np.ones(10), hi=1.0)
    prog = B.build()
    with pytest.raises(SolverUnavailable) as e:
        get_backend("gurobi").bound(prog, [LinearExpr.var(0)], SolveOptions())
    assert "per_sample" in str(e.value) and "highs" in str(e.value) and "2500" in str(e.value)
    # a quadratic program above 200 variables is also too large for that licence
    prog, _, objs = random_mibp(5, n_cont=120, n_bin=10, n_bil=80, n_rows=10)
    with pytest.raises(SolverUnavailable):
        get_backend("gurobi").bound(prog, objs[:1], SolveOptions())


# ------------------------------------------------------------------------------------------------
# Parallel helpers and registry
# ------------------------------------------------------------------------------------------------
def _numbers(res):
    return [(b.lower, b.upper, b.lower_status, b.upper_status) for b in res]


def test_bound_many_and_parallel_identical_for_worker_counts() -> None:
    jobs = [(t.program, [t.objective, LinearExpr.var(0, 2.0, 1.0)]) for t in TINY]
    prog, _, objs = random_mibp(7, n_cont=30, n_bin=5, n_bil=20, n_rows=20)
    objs = objs * 3
    one = bound_many("highs", jobs, SolveOptions(), workers=1)
    s1 = bound_parallel("highs", prog, objs, SolveOptions(relax="lp"), workers=1, chunk_size=3)
    # one pool of spawned workers for both calls (a worker start imports mibpcert, i.e. torch)
    with SolverPool(2) as pool:
        two = bound_many("highs", jobs, SolveOptions(), pool=pool, jobs_per_chunk=2)
        s2 = bound_parallel("highs", prog, objs, SolveOptions(relax="lp"), chunk_size=3, pool=pool)
    assert [_numbers(r) for r in one] == [_numbers(r) for r in two]
    for t, r in zip(TINY, one):
        assert _contains(r[0], t.true_min, t.true_max)
    assert _numbers(s1) == _numbers(s2) and len(s1) == len(objs)
    direct = get_backend("highs").bound(prog, objs[:3], SolveOptions(relax="lp"))
    assert _numbers(direct) == _numbers(s1[:3])


def test_get_backend_registry() -> None:
    with pytest.raises(ValueError) as e:
        get_backend("nope")
    for valid in ("highs", "gurobi", "scip", "pyomo:"):
        assert valid in str(e.value)
    avail = available_backends(probe_pyomo=False)
    assert "highs" in avail
    assert ("gurobi" in avail) == HAS_GUROBI and ("scip" in avail) == HAS_SCIP  # opted in (pytestmark)
    if HAS_PYOMO:
        with pytest.raises(SolverUnavailable):
            get_backend("pyomo:definitely_not_a_solver")
        # Pyomo's in-process HiGHS interface only needs highspy, which is a hard dependency; the
        # probe must find it in a fresh interpreter where nothing has imported pyomo.environ yet
        code = "from mibpcert.solvers import available_backends as a; print(a())"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert "pyomo:appsi_highs" in out.stdout
        assert "not registered" not in out.stderr


# ---------------------------------------------------------------------------------------------
# SCIP is disabled for certification
# ---------------------------------------------------------------------------------------------
def test_scip_disabled_without_opt_in(monkeypatch):
    """Without the opt-in, SCIP is neither listed nor usable, and a run asking for it fails
    before training with one clear error naming the reason and the alternatives."""
    import torch

    from mibpcert import TrainConfig, certified_train, mlp
    from mibpcert.solvers.scip import ALLOW_ENV
    from mibpcert.threats import LinfFeatures

    monkeypatch.delenv(ALLOW_ENV, raising=False)
    assert "scip" not in available_backends(probe_pyomo=False)
    _need(HAS_SCIP, "scip")
    with pytest.raises(SolverUnavailable, match="disabled for certification.*gurobi.*highs"):
        get_backend("scip")
    X = torch.zeros(2, 2, dtype=torch.float64)
    y = torch.tensor([0.0, 1.0], dtype=torch.float64)
    cfg = TrainConfig(epochs=1, lr=0.1, batch_size=2, loss="hinge", method="mibp", backend="scip")
    with pytest.raises(SolverUnavailable, match=ALLOW_ENV):
        certified_train(mlp([2, 2, 1], seed=0), X, y, LinfFeatures(0.1), cfg)


def test_scip_known_wrong_program_still_wrong():
    """Why SCIP is disabled: on the joint step program of a union threat (l-inf move of one
    sample or one label flip, hinge loss) SCIP reports bounds with status "optimal" that exclude
    parameters reached by plain torch training on enumerated poisoned data sets, while Gurobi's
    bounds contain them. If this test fails, a SCIP release gets this program right: run the
    structured-threat enumeration tests with SCIP (``MIBPCERT_ALLOW_UNVERIFIED_SCIP=1``) before
    re-enabling it."""
    _need(HAS_SCIP and HAS_GUROBI, "scip and gurobi")
    import torch
    from test_threats_structured import _setup, raw_joint_bounds, trained

    _, loss, threat_f, X, y, model, sets, _ = _setup("union_linf_flip-hinge")
    P = trained(model, sets, loss)
    g_lo, g_hi = raw_joint_bounds(model, X, y, threat_f(), loss, "gurobi")
    assert bool(((P >= g_lo) & (P <= g_hi)).all()), "Gurobi's bounds must contain every trained run"
    s_lo, s_hi = raw_joint_bounds(model, X, y, threat_f(), loss, "scip")
    outside = float(torch.maximum(s_lo - P.min(0).values, P.max(0).values - s_hi).max())
    assert outside > 1e-3, f"SCIP now contains every trained run (worst margin {outside:.3e})"  # measured 0.020
