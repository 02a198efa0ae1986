"""The McCormick relaxation (``mibpcert.solvers.mccormick``): envelopes contain the products,
binary factors are exact, partitioning tightens."""
from __future__ import annotations

import numpy as np
import pytest

from mibpcert.ir.program import LinearExpr, Program, ProgramBuilder
from mibpcert.solvers import SolveOptions, Status, get_backend
from mibpcert.solvers.mccormick import relax, relax_bilinear, relax_binaries
from tests.helpers.programs import TINY


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
