"""The backends by name: :func:`get_backend` and :func:`available_backends`.

The backend modules are imported here at module level: each imports its optional solver package
(gurobipy, pyscipopt, pyomo) only when a backend is constructed or used, so importing them is
cheap and works without those packages.
"""
from __future__ import annotations

import importlib.util

from .base import Backend
from .gurobi import GurobiBackend
from .highs import HighsBackend
from .pyomo_backend import PyomoBackend
from .scip import ScipBackend, opted_in

# Pyomo solvers probed by ``available_backends``.
_PYOMO_PROBES = ("appsi_highs", "gurobi_direct", "scip")


def get_backend(name: str) -> Backend:
    """Backend by name: ``"highs"``, ``"gurobi"``, ``"scip"`` or ``"pyomo:<solver>"``.

    Raises ``ValueError`` for an unknown name and :class:`SolverUnavailable` when the backend's
    package is not installed.
    """
    key = name.strip()
    low = key.lower()
    if low == "highs":
        return HighsBackend()
    if low == "gurobi":
        return GurobiBackend()
    if low == "scip":
        return ScipBackend()
    if low.startswith("pyomo:") and key[len("pyomo:"):].strip():
        return PyomoBackend(key[len("pyomo:"):].strip())
    raise ValueError(
        f"unknown solver backend {name!r}; valid names: 'highs', 'gurobi', 'scip', "
        "'pyomo:<solver>' (e.g. 'pyomo:appsi_highs', 'pyomo:gurobi_direct')"
    )


def available_backends(probe_pyomo: bool = True) -> list[str]:
    """Backends whose package imports here (for Pyomo, the probed solvers that report available)."""
    out = []
    scip_ok = opted_in()
    for name, mod in (("highs", "highspy"), ("gurobi", "gurobipy"), ("scip", "pyscipopt")):
        if importlib.util.find_spec(mod) is not None and (name != "scip" or scip_ok):
            out.append(name)
    if probe_pyomo and importlib.util.find_spec("pyomo") is not None:
        try:
            import pyomo.environ  # noqa: F401  (registers the solver plugins)
            from pyomo.opt import SolverFactory

            for s in _PYOMO_PROBES:
                if "scip" in s and not scip_ok:
                    continue
                try:
                    if SolverFactory(s).available(exception_flag=False):
                        out.append(f"pyomo:{s}")
                except Exception:
                    pass
        except Exception:
            pass
    return out
