"""The Gurobi backend (``mibpcert.solvers.gurobi``): programs too large for the size-limited pip
licence raise :class:`SolverUnavailable` naming the alternatives (``per_sample``, ``highs``)."""
from __future__ import annotations

import numpy as np
import pytest

from mibpcert import TrainConfig, certified_train, mlp
from mibpcert.ir.program import LinearExpr, ProgramBuilder
from mibpcert.solvers import SolveOptions, SolverUnavailable, get_backend
from mibpcert.threats import LinfFeatures
from tests.helpers.backends import require
from tests.helpers.mibp import LR, make_data
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
    with pytest.raises(SolverUnavailable) as e:
        get_backend("gurobi").bound(prog, [LinearExpr.var(0)], SolveOptions())
    assert "size-limited Gurobi licence" in str(e.value) and "2500" in str(e.value)  # the caller adds advice for its mode
    # a quadratic program above 200 variables is also too large for that licence
    prog, _, objs = random_mibp(5, n_cont=120, n_bin=10, n_bil=80, n_rows=10)
    with pytest.raises(SolverUnavailable):
        get_backend("gurobi").bound(prog, objs[:1], SolveOptions())


def test_gurobi_too_large_program_names_alternatives():
    require("gurobipy")
    from mibpcert.solvers.gurobi import licence_is_size_limited

    if not licence_is_size_limited():
        pytest.skip("a full Gurobi licence is active")
    X, y = make_data("binary", 8, seed=1)
    model = mlp([2, 16, 1], seed=3)
    cfg = TrainConfig(epochs=1, lr=LR, batch_size=4, loss="bce", method="mibp", backend="gurobi", mode="joint")
    with pytest.raises(SolverUnavailable) as e:
        certified_train(model, X, y, LinfFeatures(0.1), cfg)
    msg = str(e.value)
    assert "per_sample" in msg and "highs" in msg
