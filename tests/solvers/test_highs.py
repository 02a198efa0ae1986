"""The HiGHS backend (``mibpcert.solvers.highs``): the safe LP bound, nested relaxations, and no
stale bounds when the thread pool size changes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp

from mibpcert.ir.program import LinearExpr, Program
from mibpcert.solvers import Backend, SolveOptions, Status, get_backend
from mibpcert.solvers.highs import LP_MARGIN, safe_lp_bound
from tests.helpers.programs import TINY, Tiny, contains


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


@pytest.mark.parametrize("tiny", TINY, ids=[f"seed{i}" for i in range(len(TINY))])
def test_highs_relaxations_contain_optimum_and_nest(tiny: Tiny) -> None:
    hi = get_backend("highs")
    assert hi.name == "highs" and not hi.exact
    (lp,) = hi.bound(tiny.program, [tiny.objective], SolveOptions(relax="lp"))
    (milp,) = hi.bound(tiny.program, [tiny.objective], SolveOptions(relax="milp"))
    (p4,) = hi.bound(tiny.program, [tiny.objective], SolveOptions(relax="milp", partitions=4))
    for b in (lp, milp, p4):
        assert contains(b, tiny.true_min, tiny.true_max)
        assert b.lower_status == b.upper_status == Status.OPTIMAL
    tol = 1e-5 * (1.0 + np.abs(tiny.c).sum())  # up to the (different) outward paddings
    assert lp.lower <= milp.lower + tol and milp.upper <= lp.upper + tol
    assert milp.lower <= p4.lower + tol and p4.upper <= milp.upper + tol


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
            assert contains(b, tiny.true_min, tiny.true_max)
    assert ref.lower_status == Status.OPTIMAL


# ------------------------------------------------------------------------------------------------
# margin: how far outside the range every LP bound lies (objectives narrower are not solved)
# ------------------------------------------------------------------------------------------------
def _box_program(lb: np.ndarray, ub: np.ndarray, A=None, rlo=None, rhi=None) -> Program:
    n = len(lb)
    A = sp.csr_matrix((0, n)) if A is None else sp.csr_matrix(A)
    rlo = np.zeros(0) if rlo is None else np.asarray(rlo, float)
    rhi = np.zeros(0) if rhi is None else np.asarray(rhi, float)
    return Program(lb, ub, np.zeros(n, bool), A, rlo, rhi, np.zeros((0, 3), np.int64))


def test_lp_bounds_lie_the_margin_outside_the_exact_range() -> None:
    """HiGHS LP bounds are at least ``margin`` outside the objective's exact range: on box
    programs (range = the interval sum, exact up to 1e-15 here), on a polytope with a known
    optimum, and on the tiny MIBPs (exact range by enumeration, inside the LP relaxation's), so a
    known enclosure no wider than the margin is never tightened by solving."""
    highs, lp = get_backend("highs"), SolveOptions(relax="lp")
    rng = np.random.default_rng(7)
    for _ in range(5):
        n = 6
        lb = rng.uniform(-2, 1, n)
        ub = lb + rng.choice([0.0, 1e-12, 1e-3, 1.0], n)
        prog = _box_program(lb, ub)
        assert highs.margin(prog, lp) == LP_MARGIN
        c = rng.normal(size=n) * rng.choice([1e-6, 1.0, 100.0], n)
        const = float(rng.normal())
        (b,) = highs.bound(prog, [LinearExpr(np.arange(n), c, const)], lp)
        exact_lo = const + math.fsum(np.minimum(c * lb, c * ub))
        exact_hi = const + math.fsum(np.maximum(c * lb, c * ub))
        assert b.lower <= exact_lo - LP_MARGIN and b.upper >= exact_hi + LP_MARGIN
    # x + y <= 1 on [0, 1]^2: x + 2 y ranges over [0, 2] exactly
    prog = _box_program(np.zeros(2), np.ones(2), [[1.0, 1.0]], [-np.inf], [1.0])
    (b,) = highs.bound(prog, [LinearExpr(np.arange(2), np.array([1.0, 2.0]))], lp)
    assert b.lower <= -LP_MARGIN and b.upper >= 2.0 + LP_MARGIN
    for tiny in TINY:
        assert highs.margin(tiny.program, lp) == LP_MARGIN
        (b,) = highs.bound(tiny.program, [tiny.objective], lp)
        assert b.lower <= tiny.true_min - LP_MARGIN and b.upper >= tiny.true_max + LP_MARGIN


def test_margin_is_zero_where_the_bound_is_the_solvers_own() -> None:
    """A MILP's dual bound (binaries kept, or partition binaries added) is padded only for the
    solver's tolerances: no margin; nor for the base class (exact backends)."""
    highs = get_backend("highs")
    tiny = TINY[0]
    assert tiny.program.num_binaries > 0 and tiny.program.num_bilinear > 0
    assert highs.margin(tiny.program, SolveOptions(relax="milp")) == 0.0
    no_bin = Program(tiny.program.lb, tiny.program.ub, np.zeros(tiny.program.num_vars, bool), tiny.program.A,
                     tiny.program.row_lb, tiny.program.row_ub, tiny.program.bilinear)
    assert highs.margin(no_bin, SolveOptions(relax="milp")) == LP_MARGIN
    assert highs.margin(no_bin, SolveOptions(relax="milp", partitions=4)) == 0.0
    assert Backend().margin(no_bin, SolveOptions()) == 0.0
