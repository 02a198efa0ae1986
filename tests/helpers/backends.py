"""Solver packages for the checks that need them: a missing package fails the test with the
reason (``make test`` installs the ``[solvers]`` extra), it never skips it silently."""
from __future__ import annotations

import importlib

import pytest


def require(package: str):
    """Import ``package`` (gurobipy, pyscipopt, pyomo); fail the calling test if it is missing."""
    try:
        return importlib.import_module(package)
    except ImportError as e:
        pytest.fail(
            f"{package} is not installed, so this check cannot run ({e}); "
            "install the solver extra: pip install -e '.[solvers]'"
        )
