"""The Pyomo backend (``mibpcert.solvers.pyomo_backend``): appsi_highs and gurobi_direct against the
known optima, and a clear error for a solver Pyomo does not have."""
from __future__ import annotations

import pytest

from mibpcert import certified_train
from mibpcert.solvers import SolveOptions, SolverUnavailable, Status, get_backend
from tests.helpers.backends import require
from tests.helpers.mibp import case_data, mibp_cfg
from tests.helpers.programs import TINY, contains


def test_pyomo_appsi_highs_contains_optimum() -> None:
    require("pyomo")
    try:
        be = get_backend("pyomo:appsi_highs")
    except SolverUnavailable as e:  # fail, never skip
        pytest.fail(f"pyomo:appsi_highs cannot run this check: {e}")
    assert not be.exact and be.name == "pyomo:appsi_highs"
    for tiny in TINY[:3]:
        (b,) = be.bound(tiny.program, [tiny.objective], SolveOptions())
        assert b.lower_status == b.upper_status == Status.OPTIMAL
        assert contains(b, tiny.true_min, tiny.true_max)
        (ref,) = get_backend("highs").bound(tiny.program, [tiny.objective], SolveOptions())
        assert abs(b.lower - ref.lower) < 1e-4 and abs(b.upper - ref.upper) < 1e-4


def test_pyomo_gurobi_direct_matches_optimum() -> None:
    require("pyomo")
    require("gurobipy")
    be = get_backend("pyomo:gurobi_direct")
    assert be.exact
    tiny = TINY[1]
    (b,) = be.bound(tiny.program, [tiny.objective], SolveOptions())
    assert contains(b, tiny.true_min, tiny.true_max)
    assert tiny.true_min - b.lower < 1e-5 and b.upper - tiny.true_max < 1e-5


def test_unavailable_pyomo_solver_clear_error():
    require("pyomo")
    model, X, y, threat_f, _, loss = case_data("flip_k1-hinge")
    with pytest.raises(SolverUnavailable, match="highs"):
        certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, backend="pyomo:no_such_solver_xyz"))
