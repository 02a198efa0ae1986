"""The backend registry (``mibpcert.solvers``: ``get_backend``, ``available_backends``): names,
missing packages (a clear :class:`SolverUnavailable` naming an alternative backend), unknown names
(``ValueError``)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from mibpcert import certified_train
from mibpcert.solvers import SolverUnavailable, available_backends, get_backend
from tests.helpers.mibp import case_data, mibp_cfg

HAS_GUROBI = importlib.util.find_spec("gurobipy") is not None
HAS_SCIP = importlib.util.find_spec("pyscipopt") is not None
HAS_PYOMO = importlib.util.find_spec("pyomo") is not None

# SCIP is disabled for certification (solvers/scip.py); its wrapper is tested here on programs
# whose answers are checked independently
pytestmark = pytest.mark.usefixtures("unverified_scip")


@pytest.mark.slow  # probes backends in a fresh interpreter
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
# 7. missing packages, unknown names, licence limits
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "backend,modules,alternative",
    [
        ("scip", ["pyscipopt"], "highs"),
        ("gurobi", ["gurobipy"], "highs"),
        ("pyomo:appsi_highs", ["pyomo", "pyomo.environ", "pyomo.opt"], "highs"),
    ],
)
def test_missing_solver_package_clear_error(monkeypatch, backend, modules, alternative):
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)  # "import m" raises ImportError
    with pytest.raises(SolverUnavailable) as e1:
        get_backend(backend)
    assert alternative in str(e1.value)
    model, X, y, threat_f, _, loss = case_data("flip_k1-hinge")
    with pytest.raises(SolverUnavailable) as e2:
        certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, backend=backend))
    assert alternative in str(e2.value)
    assert "install" in str(e2.value) or "not importable" in str(e2.value)


@pytest.mark.parametrize("name", ["cplex", "", "pyomo:", "HiGHS-lp"])
def test_unknown_backend_name_raises_value_error(name):
    model, X, y, threat_f, _, loss = case_data("flip_k1-hinge")
    with pytest.raises(ValueError, match="highs"):
        certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, backend=name))


def test_backend_names_are_case_insensitive():
    assert get_backend("HiGHS").name == "highs"
