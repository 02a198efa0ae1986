"""The Gurobi backend (``mibpcert.solvers.gurobi``): programs too large for the size-limited pip
licence are named by ``misfit`` before any solve and raise :class:`SolverUnavailable` when bounded
anyway (a certified run sends them to HiGHS: ``tests/encode/test_tighten.py``)."""
from __future__ import annotations

import numpy as np
import pytest

from mibpcert.ir.program import LinearExpr, ProgramBuilder
from mibpcert.solvers import SolveOptions, SolverUnavailable, get_backend
from tests.helpers.backends import require
from tests.helpers.programs import random_mibp


def test_gurobi_licence_too_small_raises() -> None:
    require("gurobipy")
    from mibpcert.solvers.gurobi import licence_is_size_limited

    if not licence_is_size_limited():
        pytest.skip("a full Gurobi licence is active")
    B = ProgramBuilder()
    x = B.add_vars(-np.ones(2500), np.ones(2500))
    B.add_row(x[:10], np.ones(10), hi=1.0)
    prog = B.build()
    assert "2500 variables" in get_backend("gurobi").misfit(prog)
    with pytest.raises(SolverUnavailable) as e:
        get_backend("gurobi").bound(prog, [LinearExpr.var(0)], SolveOptions())
    assert "size-limited Gurobi licence" in str(e.value) and "2500" in str(e.value)  # the caller adds advice for its mode
    # a quadratic program above 200 variables is also too large for that licence
    prog, _, objs = random_mibp(5, n_cont=120, n_bin=10, n_bil=80, n_rows=10)
    assert "bilinear" in get_backend("gurobi").misfit(prog)
    assert get_backend("highs").misfit(prog) is None
    with pytest.raises(SolverUnavailable):
        get_backend("gurobi").bound(prog, objs[:1], SolveOptions())
