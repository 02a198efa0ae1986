"""The backend contract (``mibpcert.solvers.base``), checked for every backend: bounds contain the
known optimum of tiny programs (exact backends reach it), a time limit returns a dual bound and
never an incumbent, a failed objective gives infinite sides. The programs and their optima:
``tests/helpers/programs.py``."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mibpcert.ir.program import LinearExpr, ProgramBuilder
from mibpcert.solvers import SolveOptions, Status, available_backends, get_backend
from mibpcert.solvers.base import Backend
from tests.helpers.backends import require
from tests.helpers.programs import TINY, Tiny, brute, contains, without_binaries, random_mibp

HAS_GUROBI = importlib.util.find_spec("gurobipy") is not None
HAS_SCIP = importlib.util.find_spec("pyscipopt") is not None

# SCIP is disabled for certification (solvers/scip.py); its wrapper is tested here on programs
# whose answers are checked independently
pytestmark = pytest.mark.usefixtures("unverified_scip")


@pytest.mark.parametrize("tiny", TINY[:3])
def test_exact_optimum_reference_is_consistent(tiny: Tiny) -> None:
    lo, hi = brute(tiny)
    assert tiny.true_min <= lo + 1e-9 and hi <= tiny.true_max + 1e-9
    assert lo - tiny.true_min < 0.05 and tiny.true_max - hi < 0.05  # the grid gets close


@pytest.mark.parametrize("name", ["gurobi", "scip"])
@pytest.mark.parametrize("tiny", TINY, ids=[f"seed{i}" for i in range(len(TINY))])
def test_exact_backends_match_optimum(name: str, tiny: Tiny) -> None:
    require("gurobipy" if name == "gurobi" else "pyscipopt")
    be = get_backend(name)
    assert be.exact and be.name == name
    (b,) = be.bound(tiny.program, [tiny.objective], SolveOptions(warm_start=tiny.feasible))
    assert b.lower_status == b.upper_status == Status.OPTIMAL
    assert contains(b, tiny.true_min, tiny.true_max)
    # within 1e-5, plus the relative part of the outward padding (1e-6 |v| for SCIP)
    assert tiny.true_min - b.lower < 1e-5 * (1 + abs(tiny.true_min))
    assert b.upper - tiny.true_max < 1e-5 * (1 + abs(tiny.true_max))
    (lp,) = get_backend("highs").bound(tiny.program, [tiny.objective], SolveOptions(relax="milp"))
    tol = 1e-5 * (1.0 + np.abs(tiny.c).sum())
    assert lp.lower <= b.lower + tol and b.upper <= lp.upper + tol


@pytest.mark.parametrize("name", ["gurobi", "scip", "pyomo:gurobi_direct"])
def test_exact_backends_without_integer_variables(name: str) -> None:
    require("pyscipopt" if name == "scip" else "gurobipy")
    if name.startswith("pyomo"):
        require("pyomo")
    prog, lo, hi = without_binaries(TINY[2])
    (b,) = get_backend(name).bound(prog, [TINY[2].objective], SolveOptions())
    assert b.lower_status == b.upper_status == Status.OPTIMAL
    assert b.lower <= lo and b.upper >= hi
    assert lo - b.lower < 1e-5 * (1 + abs(lo)) and b.upper - hi < 1e-5 * (1 + abs(hi))


@pytest.fixture(scope="module")
def hard_instance():
    prog, val, objs = random_mibp(11, n_cont=20, n_bin=6, n_bil=20, n_rows=20)
    obj = objs[1]
    name = "gurobi" if HAS_GUROBI else ("scip" if HAS_SCIP else None)
    if name is None:
        pytest.fail("no exact backend installed (gurobipy or pyscipopt): the reference optimum cannot be computed")
    (ref,) = get_backend(name).bound(prog, [obj], SolveOptions())
    assert ref.lower_status == ref.upper_status == Status.OPTIMAL
    # ref's sides are within 1e-5 (gap + padding) of the true optimum; shift them inward by that
    return prog, val, obj, ref.lower + 2e-5, ref.upper - 2e-5


@pytest.mark.parametrize("name", ["gurobi", "scip", "highs"])
def test_time_limit_returns_dual_bound_not_incumbent(name: str, hard_instance) -> None:
    if name != "highs":
        require({"gurobi": "gurobipy", "scip": "pyscipopt"}[name])
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


def test_failure_gives_infinite_sides() -> None:
    tiny = TINY[0]
    bad = LinearExpr(np.array([tiny.program.num_vars + 5]), np.array([1.0]))
    require("gurobipy"), require("pyscipopt")
    names = ["highs", "gurobi", "scip"]
    names += ["pyomo:appsi_highs"] if "pyomo:appsi_highs" in available_backends() else []
    for name in names:
        good, failed = get_backend(name).bound(tiny.program, [tiny.objective, bad], SolveOptions())
        assert failed.lower == -np.inf and failed.upper == np.inf
        assert failed.lower_status == failed.upper_status == Status.FAILED
        assert contains(good, tiny.true_min, tiny.true_max)
    # an empty feasible set is reported as a failure, not as a bound
    B = ProgramBuilder()
    x = B.add_vars(np.zeros(2), np.ones(2))
    B.add_row(x, [1.0, 1.0], lo=3.0)
    (b,) = get_backend("highs").bound(B.build(), [LinearExpr.var(0)], SolveOptions(relax="lp"))
    assert b.lower_status == b.upper_status == Status.FAILED


def test_one_failing_side_keeps_the_other():
    """The shared solve loop (``Backend.bound``): a side that raises is FAILED (infinite), the other
    side of the same objective keeps its bound, and a failure to prepare fails every objective."""
    class HalfBroken(Backend):
        name = "half-broken"

        def _prepare(self, program, options):
            return program

        def _solve_side(self, state, task, sense_min, options):
            if not sense_min:
                raise RuntimeError("the maximisation fails")
            return -1.5, Status.OPTIMAL

    objs = [LinearExpr(np.array([0]), np.array([1.0]), 0.0)] * 2
    res = HalfBroken().bound(TINY[0].program, objs, SolveOptions())
    assert [(r.lower, r.lower_status) for r in res] == [(-1.5, Status.OPTIMAL)] * 2
    assert all(r.upper == np.inf and r.upper_status == Status.FAILED for r in res)

    class NoModel(HalfBroken):
        def _prepare(self, program, options):
            raise RuntimeError("cannot build the model")

    res = NoModel().bound(TINY[0].program, objs, SolveOptions())
    assert all(r.lower == -np.inf and r.upper == np.inf and r.lower_status == r.upper_status == Status.FAILED for r in res)


def test_no_side_starts_after_the_deadline() -> None:
    """A deadline already passed: every side is TIME_LIMIT without a bound (the caller keeps its
    fallback); a deadline far away changes nothing; the per-side limit is capped by it."""
    import time

    from mibpcert.solvers.base import time_limit

    t = TINY[0]
    past = get_backend("highs").bound(t.program, [t.objective], SolveOptions(deadline=time.monotonic() - 1.0))
    assert past[0].lower == -np.inf and past[0].upper == np.inf
    assert past[0].lower_status == past[0].upper_status == Status.TIME_LIMIT
    far = get_backend("highs").bound(t.program, [t.objective], SolveOptions(deadline=time.monotonic() + 600.0))
    plain = get_backend("highs").bound(t.program, [t.objective], SolveOptions())
    assert (far[0].lower, far[0].upper) == (plain[0].lower, plain[0].upper)
    assert time_limit(SolveOptions(time_limit=10.0, deadline=time.monotonic() + 2.0)) <= 2.0
    assert time_limit(SolveOptions(time_limit=10.0, deadline=time.monotonic() - 5.0)) == 0.0
