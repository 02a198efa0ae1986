"""The settings of the backend benchmark: targets, the backend comparison's rows, the data."""
from __future__ import annotations

import os

from mibpcert.data import two_moons

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")
TARGET_ACC, TARGET_EPS, TARGET_SEC = 0.85, 0.01, 10.0  # MIBP-Cert setting (issue)
TARGET_MB_RATIO = 0.5  # mini-batch setting, after 10 steps
PAPER = "MIBP-Cert paper: ~0.81 certified at eps 0.01 vs ~0.70 for interval methods, 19-156 s/epoch on 32 cores with Gurobi"

# (label, method, backend, mode, relax) rows of the backend comparison
COMBOS = [
    ("interval", "interval", "-", "-", "-"),
    ("highs-lp", "mibp", "highs", "per_sample", "lp"),
    ("highs-lp", "mibp", "highs", "joint", "lp"),
    ("highs-milp", "mibp", "highs", "per_sample", "milp"),
    ("highs-milp", "mibp", "highs", "joint", "milp"),
    ("scip", "mibp", "scip", "per_sample", "milp"),
    ("scip", "mibp", "scip", "joint", "milp"),
    ("gurobi", "mibp", "gurobi", "per_sample", "milp"),
    ("gurobi", "mibp", "gurobi", "joint", "milp"),
    ("pyomo:appsi_highs", "mibp", "pyomo:appsi_highs", "per_sample", "lp"),
    ("pyomo:appsi_highs", "mibp", "pyomo:appsi_highs", "joint", "lp"),
]


def mibpcert_data(seed: int):
    """MIBP-Cert setting: 100 train / 200 validation / 200 test points."""
    return two_moons(n_train=100, n_test=200, n_val=200, noise=0.1, seed=seed)


def minibatch_data():
    """Mini-batch setting: 1000 train points (seed 0)."""
    return two_moons(n_train=1000, n_test=200, noise=0.1, seed=0)
